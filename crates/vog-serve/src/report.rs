//! `GET /report/{run}`: a run's report page ([`vog_report::Report`]), rendered from the store.
//!
//! The page is self-contained (inline styles, SVG and PNG data URIs) and has no script; it is
//! served under a policy that allows nothing else, so even a value that escaped escaping could
//! not run or load anything.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::ApiPath;
use crate::{blocking, ApiError, AppState};

/// What the report page may load: its inline styles and `data:` images, nothing else.
const REPORT_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

impl From<vog_report::Error> for ApiError {
    fn from(e: vog_report::Error) -> Self {
        match e {
            vog_report::Error::Store(e) => e.into(),
            e @ vog_report::Error::Input(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            e => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// `GET /report/{run}`.
pub(crate) async fn report(
    State(state): State<AppState>,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    let html = blocking(move || {
        vog_store::check_run_name(&run)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        if !state
            .store
            .run_dir(&run)
            .join(vog_results::RUN_JSON)
            .is_file()
        {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no run `{run}` in the store"),
            ));
        }
        Ok(vog_report::Report::from_store(&state.store, &run)?
            .render(vog_report::DEFAULT_PER_CLASS)?)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, REPORT_POLICY),
        ],
        html,
    )
        .into_response())
}
