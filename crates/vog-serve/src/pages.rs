//! Server-rendered pages: search, example, queue mode, queues, login.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use vog_store::{QueueStatus, SearchResults};

use crate::api::{ApiForm, ApiPath, ApiQuery, SearchParams, MAX_API_LIMIT};
use crate::guard::Identity;
use crate::html::{escape as e, page, percent_encode as enc, percent_encode_path as enc_path};
use crate::{blocking, ApiError, AppState};

mod example;

use example::{example_body, QueueContext};

const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// An error as a page (pages answer HTML, the API JSON).
fn error_page(err: ApiError, who: Option<&str>) -> Response {
    let body = format!("<h1>{}</h1><p class=error>{}</p>", err.0, e(&err.1));
    (err.0, Html(page("error", who, &body))).into_response()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The parameters as `(name, value)` pairs, for building links.
fn pairs(p: &SearchParams) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut add = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.trim().is_empty()) {
            out.push((k, v.to_string()));
        }
    };
    add("q", &p.q);
    add("run", &p.run);
    add("class", &p.class);
    add("split", &p.split);
    add("status", &p.status);
    add("decision", &p.decision);
    add("flagged", &p.flagged);
    add("min_score", &p.min_score);
    add("max_score", &p.max_score);
    add("sort", &p.sort);
    add("asc", &p.asc);
    out
}

/// A link to the search page with some parameters changed (`None` removes one). Paging restarts.
fn link(p: &SearchParams, changes: &[(&'static str, Option<String>)], base: &str) -> String {
    let mut ps = pairs(p);
    for (k, v) in changes {
        ps.retain(|(name, _)| name != k);
        if let Some(v) = v {
            ps.push((k, v.clone()));
        }
    }
    let q: Vec<String> = ps.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    format!("{base}?{}", q.join("&"))
}

fn facet(
    out: &mut String,
    p: &SearchParams,
    name: &'static str,
    title: &str,
    counts: &std::collections::BTreeMap<String, u64>,
) {
    let _ = write!(
        out,
        "<section class=facet data-facet={name}><h3>{}</h3><ul>",
        e(title)
    );
    for (value, n) in counts {
        let shown = if value.is_empty() { "(none)" } else { value };
        let _ = write!(
            out,
            "<li><a href=\"{}\">{}</a> <span class=count>{n}</span></li>",
            e(&link(p, &[(name, Some(value.clone()))], "/")),
            e(shown)
        );
    }
    out.push_str("</ul></section>");
}

/// `GET /`: the search page.
pub(crate) async fn search(
    State(state): State<AppState>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Response {
    let who = id.shown(&headers);
    let req = match p.request(50, MAX_API_LIMIT) {
        Ok(r) => r,
        Err(err) => return error_page(err, who.as_deref()),
    };
    let (limit, offset) = (req.limit, req.offset);
    let results: Result<SearchResults, ApiError> =
        blocking(move || Ok(state.store.search(&req)?)).await;
    let mut body = String::new();
    let q = p.q.clone().unwrap_or_default();
    let sort = p.sort.clone().unwrap_or_default();
    let _ = write!(
        body,
        "<form class=search method=get action=\"/\">\
         <input id=q name=q value=\"{}\" placeholder=\"query: class:3 AND meta.camera:b, notes:blurry, scores.vog_late_norm:[2 TO *]  (press / to focus)\">\
         <label>sort <input name=sort value=\"{}\" placeholder=score list=sorts size=18></label>\
         <datalist id=sorts><option value=score><option value=vog><option value=rank><option value=percentile>\
         <option value=class_percentile><option value=row><option value=scores.margin_mean><option value=scores.loss_last></datalist>\
         <label><input type=checkbox name=asc value=true{}> ascending</label>",
        e(&q),
        e(&sort),
        if matches!(p.asc.as_deref(), Some("true")) { " checked" } else { "" }
    );
    for (k, v) in pairs(&p) {
        if !matches!(k, "q" | "sort" | "asc") {
            let _ = write!(body, "<input type=hidden name={k} value=\"{}\">", e(&v));
        }
    }
    body.push_str("<button>search</button></form>");
    let chips: Vec<String> = pairs(&p)
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "q" | "sort" | "asc"))
        .map(|(k, v)| {
            format!(
                "<a class=chip href=\"{}\" title=\"remove\">{k}: {} ✕</a>",
                e(&link(&p, &[(k, None)], "/")),
                e(&v)
            )
        })
        .collect();
    if !chips.is_empty() {
        let _ = write!(body, "<p class=chips>{}</p>", chips.join(" "));
    }
    let status = match &results {
        Err(err) => err.0,
        Ok(_) => StatusCode::OK,
    };
    match results {
        Err(err) => {
            let _ = write!(body, "<p class=error>{}</p>", e(&err.1));
        }
        Ok(r) => {
            body.push_str("<div class=layout><aside>");
            facet(&mut body, &p, "class", "class", &r.counts.class);
            facet(&mut body, &p, "split", "split", &r.counts.split);
            facet(&mut body, &p, "status", "status", &r.counts.status);
            facet(&mut body, &p, "decision", "decision", &r.counts.decision);
            let _ = write!(
                body,
                "<section class=facet data-facet=flagged><h3>flagged</h3><ul><li><a href=\"{}\">flagged</a> <span class=count>{}</span></li></ul></section>",
                e(&link(&p, &[("flagged", Some("true".into()))], "/")),
                r.counts.flagged
            );
            body.push_str("</aside><section class=results>");
            let _ = write!(
                body,
                "<p><b id=total>{}</b> matches · query <code>{}</code> · export <a href=\"{}\">csv</a> <a href=\"{}\">jsonl</a> <a href=\"{}\">relabel</a></p>",
                r.total,
                e(&r.query),
                e(&link(&p, &[("format", Some("csv".into()))], "/api/export")),
                e(&link(&p, &[("format", Some("jsonl".into()))], "/api/export")),
                e(&link(&p, &[("format", Some("relabel".into()))], "/api/export")),
            );
            body.push_str("<table class=hits><thead><tr><th>example</th><th>class</th><th>true</th><th>predicted</th><th>score</th><th>rank</th><th>percentile</th><th>status</th><th>decision</th><th>flagged</th></tr></thead><tbody>");
            for h in &r.hits {
                let key = h["key"].as_str().unwrap_or_default();
                let named = |num: &str, name: &str| {
                    let n = value_text(&h[num]);
                    match h[name].as_str() {
                        Some(s) => format!("{n} {s}"),
                        None => n,
                    }
                };
                let _ = write!(
                    body,
                    "<tr><td><a class=hit href=\"/example/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e(&enc_path(key)),
                    e(key),
                    e(&named("class", "class_name")),
                    e(&named("true_label", "true_name")),
                    e(&named("predicted", "predicted_name")),
                    e(&value_text(&h["score"])),
                    e(&value_text(&h["rank"])),
                    e(&value_text(&h["percentile"])),
                    e(&value_text(&h["status"])),
                    e(&value_text(&h["decision"])),
                    if h["flagged"].as_bool() == Some(true) { "⚑" } else { "" },
                );
            }
            body.push_str("</tbody></table><p class=pager>");
            if offset > 0 {
                let prev = offset.saturating_sub(limit);
                let mut l = link(&p, &[], "/");
                let _ = write!(l, "&offset={prev}");
                let _ = write!(body, "<a href=\"{}\">← previous</a> ", e(&l));
            }
            let _ = write!(
                body,
                "{}–{} of {}",
                (offset + 1).min(r.total),
                (offset + r.hits.len()).min(r.total),
                r.total
            );
            if offset + r.hits.len() < r.total {
                let mut l = link(&p, &[], "/");
                let _ = write!(l, "&offset={}", offset + limit);
                let _ = write!(body, " <a href=\"{}\" id=next>next →</a>", e(&l));
            }
            body.push_str("</p></section></div>");
        }
    }
    (status, Html(page("search", who.as_deref(), &body))).into_response()
}

/// `GET /example/{key}`.
pub(crate) async fn example(
    State(state): State<AppState>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    ApiPath(key): ApiPath<String>,
) -> Response {
    let who = id.shown(&headers);
    let found = blocking(move || Ok(state.store.example(&key)?)).await;
    match found {
        Ok((doc, history)) => {
            let title = value_text(&doc["key"]);
            let body = example_body(&doc, &history, None, who.as_deref());
            Html(page(&title, who.as_deref(), &body)).into_response()
        }
        Err(err) => error_page(err, who.as_deref()),
    }
}

/// A line about items dropped from a queue because their examples left the index.
fn dropped_note(s: &QueueStatus) -> String {
    if s.dropped == 0 {
        return String::new();
    }
    format!(
        " <span class=muted id=dropped>· {} dropped: their examples are no longer in the index</span>",
        s.dropped
    )
}

/// The queue page's path and the reviewer; without a reviewer, the redirect to the login form
/// (and back).
fn queue_reviewer(
    id: &Identity,
    headers: &HeaderMap,
    name: &str,
) -> Result<(String, String), Redirect> {
    let here = format!("/queue/{}", enc(name));
    match id.shown(headers) {
        Some(who) => Ok((here, who)),
        None => Err(Redirect::to(&format!("/login?next={}", enc(&here)))),
    }
}

/// `GET /queue/{name}`: the item the reviewer holds in the queue, in queue mode; without one, the
/// queue's progress and a button that claims the next item (claiming is a POST: a GET changes
/// nothing).
pub(crate) async fn queue_page(
    State(state): State<AppState>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Response {
    let (here, who) = match queue_reviewer(&id, &headers, &name) {
        Ok(found) => found,
        Err(login) => return login.into_response(),
    };
    let reviewer = who.clone();
    let queue = name.clone();
    let got = blocking(move || {
        let status = state.store.queues(Some(&queue))?.into_iter().next();
        let held = match state.store.held(&queue, &reviewer)? {
            // An item whose example left the index is dropped by the next claim.
            Some(c) => state.store.example(&c.key).ok(),
            None => None,
        };
        Ok((held, status))
    })
    .await;
    match got {
        Ok((Some((doc, history)), status)) => {
            let ctx = QueueContext { name, status };
            let body = example_body(&doc, &history, Some(&ctx), Some(&who));
            Html(page(&format!("queue {}", ctx.name), Some(&who), &body)).into_response()
        }
        Ok((None, status)) => {
            let s = status.as_ref();
            let open = s.map_or(0, |s| s.total - s.reviewed - s.claimed);
            let progress = s.map_or(String::new(), |s| {
                format!(
                    "{} of {} reviewed; {} claimed by others{}",
                    s.reviewed,
                    s.total,
                    s.claimed,
                    dropped_note(s)
                )
            });
            let body = if open > 0 {
                format!(
                    "<h1>queue {}</h1><p id=queue-progress>{progress}</p>\
                     <form method=post action=\"{}\"><button id=claim-next autofocus>review the next item ▸</button></form>\
                     <p class=muted>the item is yours for 10 minutes; nobody else gets it meanwhile</p>",
                    e(&name),
                    e(&here)
                )
            } else {
                format!(
                    "<h1>queue {} is done</h1><p id=queue-done>nothing left for you: {progress}</p><p><a href=\"/queues\">all queues</a></p>",
                    e(&name)
                )
            };
            Html(page(&format!("queue {name}"), Some(&who), &body)).into_response()
        }
        Err(err) => error_page(err, Some(&who)),
    }
}

/// `POST /queue/{name}`: claims the reviewer's next item, then shows it (303 to the queue page).
pub(crate) async fn queue_claim(
    State(state): State<AppState>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Response {
    let (here, who) = match queue_reviewer(&id, &headers, &name) {
        Ok(found) => found,
        Err(login) => return login.into_response(),
    };
    let queue = name.clone();
    let reviewer = who.clone();
    let claimed = blocking(move || {
        Ok(state
            .store
            .claim(&queue, &reviewer, 1, Duration::from_secs(600))?)
    })
    .await;
    match claimed {
        Ok(_) => Redirect::to(&here).into_response(),
        Err(err) => error_page(err, Some(&who)),
    }
}

/// `GET /queues`.
pub(crate) async fn queues(
    State(state): State<AppState>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
) -> Response {
    let who = id.shown(&headers);
    match blocking(move || Ok(state.store.queues(None)?)).await {
        Ok(qs) => {
            let mut b = String::from("<h1>queues</h1><table class=hits><thead><tr><th>queue</th><th>query</th><th>reviewed</th><th>claimed</th><th>total</th><th></th></tr></thead><tbody>");
            for q in &qs {
                let _ = write!(
                    b,
                    "<tr><td><a href=\"/queue/{}\">{}</a></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><progress max={} value={}></progress></td></tr>",
                    e(&enc(&q.name)),
                    e(&q.name),
                    e(&q.query),
                    q.reviewed,
                    q.claimed,
                    q.total,
                    q.total,
                    q.reviewed
                );
            }
            if qs.is_empty() {
                b.push_str("<tr><td colspan=6 class=muted>no queues: create one with <code>vog queue create</code></td></tr>");
            }
            b.push_str("</tbody></table>");
            Html(page("queues", who.as_deref(), &b)).into_response()
        }
        Err(err) => error_page(err, who.as_deref()),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct LoginParams {
    next: Option<String>,
    reviewer: Option<String>,
}

/// Only same-site paths: `/x`, not `//host` or `/\\host`, and nothing a browser would strip
/// or reinterpret (control characters, whitespace, backslashes) anywhere in it.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 2048
                && !n
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `GET /login`.
pub(crate) async fn login_form(
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<LoginParams>,
) -> Response {
    let who = id.shown(&headers);
    if id.0.is_some() {
        let body = format!(
            "<h1>Signed in</h1><p>Your access token is <b>{}</b>'s: decisions are recorded under \
             that name.</p><p><a href=\"{}\">continue</a></p>",
            e(who.as_deref().unwrap_or("")),
            e(&safe_next(p.next.as_deref()))
        );
        return Html(page("login", who.as_deref(), &body)).into_response();
    }
    let body = format!(
        "<h1>Who is reviewing?</h1><form method=post action=\"/login\" class=login>\
         <input type=hidden name=next value=\"{}\">\
         <label>your name <input id=reviewer name=reviewer required maxlength=64 value=\"{}\" autofocus></label> \
         <button>continue</button></form><p class=muted>Decisions are recorded under this name.</p>",
        e(&safe_next(p.next.as_deref())),
        e(who.as_deref().unwrap_or(""))
    );
    Html(page("login", who.as_deref(), &body)).into_response()
}

/// `POST /login`: sets the reviewer cookie (refused when a per-reviewer token says who it is).
pub(crate) async fn login(
    Extension(id): Extension<Identity>,
    ApiForm(p): ApiForm<LoginParams>,
) -> Response {
    if id.0.is_some() {
        let body = "<h1>Signed in</h1><p class=error>your access token says who you are; the name cannot be changed here</p>";
        return (StatusCode::FORBIDDEN, Html(page("login", None, body))).into_response();
    }
    let name = p.reviewer.unwrap_or_default().trim().to_string();
    if vog_store::check_reviewer(&name).is_err() {
        let body = "<h1>Who is reviewing?</h1><p class=error>give a name of 1 to 64 characters</p><p><a href=\"/login\">try again</a></p>";
        return (StatusCode::BAD_REQUEST, Html(page("login", None, body))).into_response();
    }
    let next = safe_next(p.next.as_deref());
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!(
                    "vog_reviewer={}; Path=/; SameSite=Strict; Max-Age=31536000",
                    enc(&name)
                ),
            ),
            (header::LOCATION, next),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vog_store::DecisionRecord;

    #[test]
    fn next_stays_on_site() {
        assert_eq!(safe_next(Some("/queue/a")), "/queue/a");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(Some("/ /evil.example")), "/");
        assert_eq!(safe_next(Some("/%2F/evil.example")), "/%2F/evil.example");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn example_page_escapes_everything_from_the_store() {
        let doc = json!({
            "key": "r/<b>id", "run": "r", "id": "<b>id", "row": 3, "class": 1,
            "class_name": "<i>cat</i>", "status": "unreviewed", "has_map": false,
            "scores": {"vog_all": 0.5, "vog_all_norm": 1.5, "margin_mean": 2.0},
            "meta": {"caption": "<script>alert(1)</script>", "image": "imgs/\"x.png"},
            "checkpoints": {"predicted": [0, 1], "margin": [-0.5, 1.0]},
        });
        let history = vec![DecisionRecord {
            seq: 1,
            key: "r/<b>id".into(),
            reviewer: "<img src=x onerror=alert(1)>".into(),
            decision: "ok".into(),
            label: None,
            note: Some("</td><script>".into()),
            at: "now".into(),
        }];
        let html = example_body(&doc, &history, None, Some("\"><script>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("<b>id"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("src=\"/asset/r/imgs/%22x.png\""), "{html}");
        assert!(html.contains("<svg class=trajectory"));
    }
}
