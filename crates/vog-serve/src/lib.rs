//! `vog serve`: the review web app over an audit store.
//!
//! Server-rendered pages (search with facet counts, example pages with the input drawn from its
//! tensor and the kept VoG map or gradient overlaid, a keyboard-driven queue mode) and a JSON API
//! (`/api/…`, documented in `docs/serve.md`) over the same [`vog_store::Store`] calls the CLI uses.
//!
//! Security model (the threat model is in `docs/serve.md`): the server binds 127.0.0.1 unless
//! told otherwise and refuses any other address without a token ([`check_bind`]); without a token
//! it answers only loopback `Host` names, which stops DNS rebinding; with `--tokens` each
//! reviewer's token decides whom a decision is recorded under ([`guard`]). State changes are POSTs
//! refused when a browser says they come from another site. Every request is bounded: header
//! size and time, body size per route, time to the response, open connections ([`Limits`]),
//! search paging and query size (the store's caps). Every piece of user-supplied text is escaped
//! on output ([`html::escape`]); files are served only when an indexed example names them, from
//! beneath the asset root, without following links ([`assets::open_beneath`]).

#![deny(missing_docs)]

mod api;
pub mod assets;
pub mod guard;
pub mod html;
mod net;
mod pages;
mod report;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use vog_store::Store;

pub use guard::{read_tokens, Access};
pub use net::Limits;

/// What can go wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-loopback address without a token, a bad tokens file, or a bad address.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] vog_store::Error),
    /// Binding or serving failed (the cause is the error's source: `{:#}` prints both).
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The audit store directory.
    pub store: PathBuf,
    /// Address to bind (default 127.0.0.1:8787).
    pub addr: SocketAddr,
    /// How requests are authenticated; anything but [`Access::Open`] is required when `addr` is
    /// not a loopback address.
    pub access: Access,
    /// Further `Host` names answered without a token (besides loopback names and `addr`).
    pub allow_hosts: Vec<String>,
    /// The directory that images named in metadata are resolved beneath (default: each run's
    /// metadata file's directory, or its data file's).
    pub assets: Option<PathBuf>,
    /// Bounds on connections and requests.
    pub limits: Limits,
}

/// Refuses a non-loopback bind without a token (and a token shorter than
/// [`guard::MIN_TOKEN_CHARS`] anywhere).
pub fn check_bind(addr: &SocketAddr, access: &Access) -> Result<(), Error> {
    match access {
        Access::Shared(t) if t.trim().chars().count() < guard::MIN_TOKEN_CHARS => {
            Err(Error::Config(format!(
                "the access token must be at least {} characters",
                guard::MIN_TOKEN_CHARS
            )))
        }
        Access::Shared(_) | Access::Team(_) => Ok(()),
        Access::Open if addr.ip().is_loopback() => Ok(()),
        Access::Open => Err(Error::Config(format!(
            "refusing to serve on {addr} without an access token: anyone who can reach it could \
             read the data and record decisions. Give --tokens FILE (one per reviewer) or --token \
             (or VOG_SERVE_TOKEN), or bind 127.0.0.1"
        ))),
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub access: Arc<Access>,
    /// The address the server is bound to (its IP is an allowed `Host` without a token).
    pub bound: SocketAddr,
    pub allow_hosts: Arc<[String]>,
    pub assets: Option<Arc<std::path::Path>>,
    pub request_timeout: Duration,
    /// Open dataset readers, per run.
    pub inputs: Arc<assets::InputCache>,
    /// Wakes the background task that brings the search index up to date with decisions.
    pub sync: Arc<tokio::sync::Notify>,
}

/// Request bodies of the JSON API are at most this large.
pub const MAX_API_BODY: usize = 64 * 1024;
/// The login form's body is at most this large.
const MAX_FORM_BODY: usize = 4 * 1024;

/// The application: pages, API and the access check, for a server bound to `bound`. Spawns the
/// index-sync task, so it must be called inside a tokio runtime.
pub fn app(store: Arc<Store>, config: &ServeConfig, bound: SocketAddr) -> Router {
    let state = AppState {
        store,
        access: Arc::new(config.access.clone()),
        bound,
        allow_hosts: config.allow_hosts.clone().into(),
        assets: config.assets.as_deref().map(Arc::from),
        request_timeout: config.limits.request_timeout,
        inputs: Arc::new(assets::InputCache::default()),
        sync: Arc::new(tokio::sync::Notify::new()),
    };
    tokio::spawn(sync_task(state.store.clone(), state.sync.clone()));
    let form_limit = DefaultBodyLimit::max(MAX_FORM_BODY);
    Router::new()
        .route("/", get(pages::search))
        .route(
            "/login",
            get(pages::login_form).post(pages::login).layer(form_limit),
        )
        .route("/queues", get(pages::queues))
        .route(
            "/queue/{name}",
            get(pages::queue_page).post(pages::queue_claim),
        )
        .route("/example/{*key}", get(pages::example))
        .route("/report/{run}", get(report::report))
        .route("/asset/{run}/{*path}", get(assets::asset))
        .route("/static/app.js", get(pages::script))
        .route("/static/app.css", get(pages::style))
        .route("/api/search", get(api::search))
        .route("/api/example/{*key}", get(api::example))
        .route("/api/tensor/{what}/{*key}", get(assets::tensor))
        .route("/api/queues", get(api::queues))
        .route("/api/claim", post(api::claim))
        .route("/api/skip", post(api::skip))
        .route("/api/decision", post(api::decision))
        .route("/api/export", get(api::export))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::access,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such page".into())
}

/// Answers 408 when a request (its body included) takes longer than the request timeout to
/// produce its response head.
async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took longer than {} s",
                state.request_timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Decisions are recorded in SQLite at once; the search index follows within a moment, in one
/// writer commit for a burst of decisions rather than one per decision.
async fn sync_task(store: Arc<Store>, wake: Arc<tokio::sync::Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.sync_index(Duration::from_secs(5))).await {
            Ok(Ok(true)) => {}
            // Another process holds the writer; it, or the next search, catches up.
            Ok(Ok(false)) => tracing::debug!("index sync deferred: writer busy"),
            Ok(Err(e)) => tracing::warn!("index sync failed: {e}"),
            Err(e) => tracing::warn!("index sync task failed: {e}"),
        }
    }
}

/// Opens the store, checks the bind, and serves until Ctrl-C (or SIGTERM).
pub fn run(config: &ServeConfig) -> Result<(), Error> {
    check_bind(&config.addr, &config.access)?;
    let store = Arc::new(Store::open(&config.store)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "starting the server runtime".into(),
            source,
        })?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Io {
                context: format!("binding {}", config.addr),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let link = match &config.access {
            Access::Shared(t) => format!("http://{local}/?token={}", html::percent_encode(t)),
            Access::Team(t) => format!(
                "http://{local}/?token=TOKEN ({} reviewers' tokens loaded)",
                t.len()
            ),
            Access::Open => format!("http://{local}/"),
        };
        // The one line a user (or a test) needs: where to point the browser.
        println!("serving {} on {link}", config.store.display());
        tracing::info!(addr = %local, "serving");
        net::serve(
            listener,
            app(store, config, local),
            &config.limits,
            shutdown(),
        )
        .await
        .map_err(|source| Error::Io {
            context: "serving".into(),
            source,
        })
    })
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A JSON error with a status, for the API and the asset routes.
#[derive(Debug)]
pub(crate) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<vog_store::Error> for ApiError {
    fn from(e: vog_store::Error) -> Self {
        let status = match &e {
            vog_store::Error::Input(m)
                if m.starts_with("no example") || m.starts_with("no queue") =>
            {
                StatusCode::NOT_FOUND
            }
            vog_store::Error::Input(_) | vog_store::Error::Query { .. } => StatusCode::BAD_REQUEST,
            vog_store::Error::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        let v6: SocketAddr = "[::1]:8787".parse().unwrap();
        assert!(check_bind(&lo, &Access::Open).is_ok());
        assert!(check_bind(&v6, &Access::Open).is_ok());
        let err = check_bind(&any, &Access::Open).unwrap_err().to_string();
        assert!(err.contains("without an access token"), "{err}");
        assert!(check_bind(&any, &Access::Shared("s3cret-token".into())).is_ok());
        assert!(check_bind(&any, &Access::Shared("short".into())).is_err());
        let team = [("s3cret-token".to_string(), "ana".to_string())].into();
        assert!(check_bind(&any, &Access::Team(team)).is_ok());
    }
}
