//! `vog serve`: the review web app over an audit store.
//!
//! Server-rendered pages (search with facet counts, example pages with the input drawn from its
//! tensor and the kept VoG map or gradient overlaid, a keyboard-driven queue mode) and a JSON API
//! (`/api/…`, documented in `docs/serve.md`) over the same [`vog_store::Store`] calls the CLI uses.
//!
//! Security model: the server binds 127.0.0.1 unless told otherwise, and refuses to bind any
//! other address without an access token ([`check_bind`]). Every piece of user-supplied text is
//! escaped on output ([`html::escape`]); files are served only from inside a run's dataset
//! directory ([`assets::resolve_asset`]).

#![deny(missing_docs)]

mod api;
pub mod assets;
pub mod html;
mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use vog_store::Store;

/// What can go wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-loopback address without a token, or a bad address.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] vog_store::Error),
    /// Binding or serving failed.
    #[error("{context}: {source}")]
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
    /// Access token; required when `addr` is not a loopback address.
    pub token: Option<String>,
}

/// Refuses a non-loopback bind without a token (and an empty token anywhere).
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), Error> {
    match token {
        Some(t) if t.trim().len() < 8 => Err(Error::Config(
            "the access token must be at least 8 characters".into(),
        )),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(Error::Config(format!(
            "refusing to serve on {addr} without an access token: anyone who can reach it could \
             read the data and record decisions. Give --token (or VOG_SERVE_TOKEN), or bind 127.0.0.1"
        ))),
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<Store>,
    token: Option<Arc<str>>,
    /// Wakes the background task that brings the search index up to date with decisions.
    pub sync: Arc<tokio::sync::Notify>,
}

/// The application: pages, API and the access check. Spawns the index-sync task, so it must be
/// called inside a tokio runtime.
pub fn app(store: Arc<Store>, token: Option<String>) -> Router {
    let state = AppState {
        store,
        token: token.map(Arc::from),
        sync: Arc::new(tokio::sync::Notify::new()),
    };
    tokio::spawn(sync_task(state.store.clone(), state.sync.clone()));
    Router::new()
        .route("/", get(pages::search))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/queues", get(pages::queues))
        .route("/queue/{name}", get(pages::queue_next))
        .route("/example/{*key}", get(pages::example))
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), access))
        .with_state(state)
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

/// Checks the access token when one is configured: `Authorization: Bearer T`, the `vog_token`
/// cookie, or `?token=T` (which sets the cookie and redirects to the same page without it).
async fn access(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| same(b, token))
        || cookie(headers, "vog_token").is_some_and(|c| same(&c, token))
    {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let from_query = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .any(|t| same(&html::percent_decode(t), token));
    if from_query {
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
            .collect();
        let mut location = req.uri().path().to_string();
        if !rest.is_empty() {
            location = format!("{location}?{}", rest.join("&"));
        }
        return (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!(
                        "vog_token={}; Path=/; HttpOnly; SameSite=Strict",
                        html::percent_encode(token)
                    ),
                ),
                (header::LOCATION, location),
            ],
        )
            .into_response();
    }
    let body = Json(serde_json::json!({
        "error": "an access token is required: open the link with ?token=…, or send Authorization: Bearer …"
    }));
    (StatusCode::UNAUTHORIZED, body).into_response()
}

/// Constant-time comparison (the token must not leak through timing).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value, percent-decoded.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| html::percent_decode(v))
}

/// Opens the store, checks the bind, and serves until Ctrl-C (or SIGTERM).
pub fn run(config: &ServeConfig) -> Result<(), Error> {
    check_bind(&config.addr, config.token.as_deref())?;
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
        let link = match &config.token {
            Some(t) => format!("http://{local}/?token={}", html::percent_encode(t)),
            None => format!("http://{local}/"),
        };
        // The one line a user (or a test) needs: where to point the browser.
        println!("serving {} on {link}", config.store.display());
        tracing::info!(addr = %local, "serving");
        axum::serve(listener, app(store, config.token.clone()))
            .with_graceful_shutdown(shutdown())
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
        assert!(check_bind(&lo, None).is_ok());
        assert!(check_bind(&v6, None).is_ok());
        let err = check_bind(&any, None).unwrap_err().to_string();
        assert!(err.contains("without an access token"), "{err}");
        assert!(check_bind(&any, Some("s3cret-token")).is_ok());
        assert!(check_bind(&any, Some("short")).is_err());
    }

    #[test]
    fn token_comparison() {
        assert!(same("abcdefgh", "abcdefgh"));
        assert!(!same("abcdefgh", "abcdefgi"));
        assert!(!same("abc", "abcdefgh"));
    }
}
