//! The JSON API (`/api/…`). Requests and answers are documented in `docs/serve.md`.

use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vog_store::{Decision, ExportFormat, SearchRequest};

use crate::{blocking, ApiError, AppState};

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
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    pub format: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

impl SearchParams {
    /// The store request; bad numbers are a 400 naming the parameter.
    pub fn request(&self, default_limit: usize) -> Result<SearchRequest, ApiError> {
        fn num<T: std::str::FromStr>(
            name: &str,
            v: &Option<String>,
        ) -> Result<Option<T>, ApiError> {
            match nonempty(v) {
                None => Ok(None),
                Some(s) => s.parse().map(Some).map_err(|_| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("parameter `{name}`: `{s}` is not a number"),
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
            limit: self.limit.unwrap_or(default_limit).min(1000),
            offset: self.offset.unwrap_or(0),
        })
    }
}

/// `GET /api/search`.
pub(crate) async fn search(
    State(state): State<AppState>,
    Query(p): Query<SearchParams>,
) -> Result<Json<vog_store::SearchResults>, ApiError> {
    let req = p.request(50)?;
    blocking(move || Ok(Json(state.store.search(&req)?))).await
}

/// `GET /api/example/{key}`.
pub(crate) async fn example(
    State(state): State<AppState>,
    UrlPath(key): UrlPath<String>,
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
pub(crate) struct ClaimBody {
    queue: String,
    reviewer: String,
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
    Json(b): Json<ClaimBody>,
) -> Result<Json<Value>, ApiError> {
    if b.n == 0 || b.n > 100 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`n` must be between 1 and 100".into(),
        ));
    }
    blocking(move || {
        let claims = state.store.claim(
            &b.queue,
            &b.reviewer,
            b.n,
            Duration::from_secs(b.lease_s.clamp(10, 86_400)),
        )?;
        let status = state.store.queues(Some(&b.queue))?;
        Ok(Json(json!({ "claims": claims, "queue": status.first() })))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct SkipBody {
    queue: String,
    reviewer: String,
    example: String,
}

/// `POST /api/skip`: puts a claimed item back at the end of its queue.
pub(crate) async fn skip(
    State(state): State<AppState>,
    Json(b): Json<SkipBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let key = state.store.resolve_key(&b.example)?;
        let skipped = state.store.skip(&b.queue, &b.reviewer, &key)?;
        if !skipped {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "`{key}` is not claimed by `{}` in queue `{}`",
                    b.reviewer, b.queue
                ),
            ));
        }
        Ok(Json(json!({ "skipped": key })))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecisionBody {
    example: String,
    reviewer: String,
    decision: String,
    #[serde(default)]
    label: Option<u64>,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/decision`: records a decision durably (answered after the commit); the search index
/// follows within a moment.
pub(crate) async fn decision(
    State(state): State<AppState>,
    Json(b): Json<DecisionBody>,
) -> Result<Json<vog_store::DecisionRecord>, ApiError> {
    let wake = state.sync.clone();
    let record = blocking(move || {
        Ok(state.store.record_decision_only(&Decision {
            example: b.example,
            reviewer: b.reviewer,
            decision: b.decision,
            label: b.label,
            note: b.note.filter(|n| !n.trim().is_empty()),
        })?)
    })
    .await?;
    wake.notify_one();
    Ok(Json(record))
}

/// `GET /api/export?format=csv|jsonl|relabel|label-studio&…search parameters`.
pub(crate) async fn export(
    State(state): State<AppState>,
    Query(p): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let name = nonempty(&p.format).unwrap_or_else(|| "csv".into());
    let format = ExportFormat::from_name(&name).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("format `{name}`: use csv, jsonl, relabel or label-studio"),
        )
    })?;
    let mut req = p.request(50)?;
    req.limit = p.limit.unwrap_or(usize::MAX);
    let body = blocking(move || {
        let mut out = Vec::new();
        state.store.export(&req, format, &mut out)?;
        Ok(out)
    })
    .await?;
    let (ctype, ext) = match format {
        ExportFormat::Csv | ExportFormat::Relabel => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        ExportFormat::LabelStudio => ("application/json", "json"),
    };
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
