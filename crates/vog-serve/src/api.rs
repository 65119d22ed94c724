//! The JSON API (`/api/…`). Requests and answers are documented in `docs/serve.md`.

use std::time::Duration;

use axum::extract::{Form, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use vog_store::{Decision, ExportFormat, SearchRequest};

use crate::guard::Identity;
use crate::{blocking, ApiError, AppState};

/// Hits one API search returns at most.
pub(crate) const MAX_API_LIMIT: usize = 1000;

/// [`Query`] whose rejection is a JSON error.
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError(e.status(), e.body_text())),
        }
    }
}

/// [`Path`] whose rejection is a JSON error.
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError(e.status(), e.body_text())),
        }
    }
}

/// [`Form`] whose rejection (a body over the route's limit, a bad encoding) is a JSON error.
pub(crate) struct ApiForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Form::<T>::from_request(req, state).await {
            Ok(Form(v)) => Ok(ApiForm(v)),
            Err(e) => Err(ApiError(e.status(), e.body_text())),
        }
    }
}

/// [`Json`] whose rejection (bad JSON, wrong content type, a body over the route's limit) is a
/// JSON error.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(ApiError(e.status(), e.body_text())),
        }
    }
}

/// Search parameters shared by the search page, `/api/search` and `/api/export`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SearchParams {
    pub q: Option<String>,
    pub run: Option<String>,
    pub class: Option<String>,
    pub split: Option<String>,
    pub status: Option<String>,
    pub decision: Option<String>,
    pub flagged: Option<String>,
    pub min_score: Option<String>,
    pub max_score: Option<String>,
    pub sort: Option<String>,
    pub asc: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub format: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

impl SearchParams {
    /// The store request; bad numbers, and a limit over `max_limit`, are a 400 naming the
    /// parameter.
    pub fn request(
        &self,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<SearchRequest, ApiError> {
        fn num<T: std::str::FromStr>(
            name: &str,
            v: &Option<String>,
        ) -> Result<Option<T>, ApiError> {
            match nonempty(v) {
                None => Ok(None),
                Some(s) => s.parse().map(Some).map_err(|_| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "parameter `{name}`: `{}` is not a number in range",
                            s.chars().take(40).collect::<String>()
                        ),
                    )
                }),
            }
        }
        let flagged = match nonempty(&self.flagged).as_deref() {
            None => None,
            Some("true" | "1" | "yes") => Some(true),
            Some("false" | "0" | "no") => Some(false),
            Some(other) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("parameter `flagged`: `{other}` is not true or false"),
                ))
            }
        };
        let limit = num("limit", &self.limit)?.unwrap_or(default_limit);
        if limit > max_limit {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("parameter `limit`: {limit} is over the maximum of {max_limit}"),
            ));
        }
        Ok(SearchRequest {
            query: nonempty(&self.q),
            run: nonempty(&self.run),
            class: num("class", &self.class)?,
            min_score: num("min_score", &self.min_score)?,
            max_score: num("max_score", &self.max_score)?,
            split: nonempty(&self.split),
            wheres: Vec::new(),
            status: nonempty(&self.status),
            decision: nonempty(&self.decision),
            flagged,
            sort: nonempty(&self.sort),
            ascending: matches!(nonempty(&self.asc).as_deref(), Some("true" | "1" | "yes")),
            limit,
            offset: num("offset", &self.offset)?.unwrap_or(0),
        })
    }
}

/// `GET /api/search`.
pub(crate) async fn search(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<vog_store::SearchResults>, ApiError> {
    let req = p.request(50, MAX_API_LIMIT)?;
    blocking(move || Ok(Json(state.store.search(&req)?))).await
}

/// `GET /api/example/{key}`.
pub(crate) async fn example(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let (doc, history) = state.store.example(&key)?;
        Ok(Json(json!({ "example": doc, "history": history })))
    })
    .await
}

/// `GET /api/queues`.
pub(crate) async fn queues(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    blocking(move || Ok(Json(json!(state.store.queues(None)?)))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimBody {
    queue: String,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default = "one")]
    n: usize,
    #[serde(default = "ten_minutes")]
    lease_s: u64,
}

fn one() -> usize {
    1
}

fn ten_minutes() -> u64 {
    600
}

/// `POST /api/claim`: the next items of a queue for a reviewer, under a lease.
pub(crate) async fn claim(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(b): ApiJson<ClaimBody>,
) -> Result<Json<Value>, ApiError> {
    if b.n == 0 || b.n > 100 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`n` must be between 1 and 100".into(),
        ));
    }
    let reviewer = who.reviewer(b.reviewer.as_deref())?;
    blocking(move || {
        let claims = state.store.claim(
            &b.queue,
            &reviewer,
            b.n,
            Duration::from_secs(b.lease_s.clamp(10, 86_400)),
        )?;
        let status = state.store.queues(Some(&b.queue))?;
        Ok(Json(json!({ "claims": claims, "queue": status.first() })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SkipBody {
    queue: String,
    #[serde(default)]
    reviewer: Option<String>,
    example: String,
}

/// `POST /api/skip`: puts a claimed item back at the end of its queue.
pub(crate) async fn skip(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(b): ApiJson<SkipBody>,
) -> Result<Json<Value>, ApiError> {
    let reviewer = who.reviewer(b.reviewer.as_deref())?;
    blocking(move || {
        let key = state.store.resolve_key(&b.example)?;
        let skipped = state.store.skip(&b.queue, &reviewer, &key)?;
        if !skipped {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "`{key}` is not claimed by `{reviewer}` in queue `{}`",
                    b.queue
                ),
            ));
        }
        Ok(Json(json!({ "skipped": key })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    example: String,
    #[serde(default)]
    reviewer: Option<String>,
    decision: String,
    #[serde(default)]
    label: Option<u64>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    force: bool,
}

/// `POST /api/decision`: records a decision durably (answered after the commit); the search index
/// follows within a moment.
pub(crate) async fn decision(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(b): ApiJson<DecisionBody>,
) -> Result<Json<vog_store::DecisionRecord>, ApiError> {
    let reviewer = who.reviewer(b.reviewer.as_deref())?;
    let wake = state.sync.clone();
    let record = blocking(move || {
        Ok(state.store.record_decision_only(&Decision {
            example: b.example,
            reviewer,
            decision: b.decision,
            label: b.label,
            note: b.note.filter(|n| !n.trim().is_empty()),
            force: b.force,
        })?)
    })
    .await?;
    wake.notify_one();
    Ok(Json(record))
}

/// `GET /api/export?format=csv|jsonl|relabel|label-studio&limit=&offset=&…search parameters`:
/// streamed, at most `limit` rows (every match without one).
pub(crate) async fn export(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Response, ApiError> {
    let name = nonempty(&p.format).unwrap_or_else(|| "csv".into());
    let format = ExportFormat::from_name(&name).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "format `{}`: use csv, jsonl, relabel or label-studio",
                name.chars().take(40).collect::<String>()
            ),
        )
    })?;
    // A limit of 0 (no limit given) exports every match.
    let req = p.request(0, usize::MAX)?;
    // Errors in the request are answered before the body starts.
    let store = state.store.clone();
    let checked = req.clone();
    blocking(move || Ok(store.check_request(&checked)?)).await?;
    let (ctype, ext) = match format {
        ExportFormat::Csv | ExportFormat::Relabel => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        ExportFormat::LabelStudio => ("application/json", "json"),
    };
    let body = crate::stream::blocking_body("export", move |out| {
        state.store.export(&req, format, out).map(|_| ())
    });
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"vog-export.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}
