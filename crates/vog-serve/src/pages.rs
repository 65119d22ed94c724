//! Server-rendered pages: search, example, queue mode, queues, login.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use vog_store::{DecisionRecord, QueueStatus, SearchResults, DECISIONS};

use crate::api::{ApiForm, ApiPath, ApiQuery, SearchParams, MAX_API_LIMIT};
use crate::guard::Identity;
use crate::html::{escape as e, page, percent_encode as enc, percent_encode_path as enc_path};
use crate::{blocking, ApiError, AppState};

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

fn trajectory_svg(doc: &Value) -> Option<String> {
    let margin: Vec<f64> = doc["checkpoints"]["margin"]
        .as_array()?
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    let predicted: Vec<Option<u64>> = doc["checkpoints"]["predicted"]
        .as_array()?
        .iter()
        .map(Value::as_u64)
        .collect();
    let k = margin.len();
    if k == 0 || predicted.len() != k {
        return None;
    }
    let class = doc["class"].as_u64();
    let (w, h, pad) = (420.0, 150.0, 28.0);
    let finite = margin.iter().copied().filter(|m| m.is_finite());
    let lo = finite.clone().fold(0.0f64, f64::min);
    let hi = finite.fold(0.0f64, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x = |i: usize| {
        pad + (w - 2.0 * pad)
            * if k > 1 {
                i as f64 / (k - 1) as f64
            } else {
                0.5
            }
    };
    let y = |m: f64| pad + (h - 2.0 * pad) * (hi - m) / span;
    let mut s = format!(
        "<svg class=trajectory viewBox=\"0 0 {w} {h}\" width={w} height={h} role=img aria-label=\"margin and prediction per checkpoint\">\
         <line x1={pad} x2={} y1={y0:.1} y2={y0:.1} class=zero />",
        w - pad,
        y0 = y(0.0)
    );
    let points: Vec<String> = margin
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_finite())
        .map(|(i, &m)| format!("{:.1},{:.1}", x(i), y(m)))
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" class=margin />",
        points.join(" ")
    );
    for (i, (&m, p)) in margin.iter().zip(&predicted).enumerate() {
        if !m.is_finite() {
            continue;
        }
        let ok = p.is_some() && *p == class;
        let _ = write!(
            s,
            "<circle cx={:.1} cy={:.1} r=3.5 class={}><title>checkpoint {}: predicted {}, margin {m:.3}</title></circle>",
            x(i),
            y(m),
            if ok { "right" } else { "wrong" },
            i + 1,
            p.map_or("?".into(), |p| p.to_string()),
        );
        if k <= 30 {
            let _ = write!(
                s,
                "<text x={:.1} y={} class=pred>{}</text>",
                x(i),
                h - 6.0,
                p.map_or("?".into(), |p| p.to_string())
            );
        }
    }
    let _ = write!(
        s,
        "<text x=2 y=12 class=axis>margin {hi:.2}</text><text x=2 y={:.1} class=axis>{lo:.2}</text></svg>",
        h - pad + 4.0
    );
    Some(s)
}

struct QueueContext {
    name: String,
    status: Option<QueueStatus>,
}

fn example_body(
    doc: &Value,
    history: &[DecisionRecord],
    queue: Option<&QueueContext>,
    who: Option<&str>,
) -> String {
    let key = doc["key"].as_str().unwrap_or_default();
    let run = doc["run"].as_str().unwrap_or_default();
    let mut b = String::new();
    if let Some(q) = queue {
        let progress = q.status.as_ref().map_or(String::new(), |s| {
            format!(
                "<progress max={} value={}></progress> <span id=progress>{} of {} reviewed</span>{}",
                s.total,
                s.reviewed,
                s.reviewed,
                s.total,
                dropped_note(s)
            )
        });
        let _ = write!(
            b,
            "<p class=queuebar>queue <b>{}</b> {progress}</p>",
            e(&q.name)
        );
    }
    let _ = write!(
        b,
        "<h1 id=example-title>{}</h1><p class=sub>run <b>{}</b> · dataset {} · split {} · row {}</p>",
        e(&value_text(&doc["id"])),
        e(run),
        e(&value_text(&doc["dataset"])),
        e(&value_text(&doc["split"])),
        e(&value_text(&doc["row"])),
    );
    let named = |num: &str, name: &str| {
        let n = value_text(&doc[num]);
        match doc[name].as_str() {
            Some(s) => format!("{n} ({s})"),
            None => n,
        }
    };
    let _ = write!(
        b,
        "<p class=labels>class used <b>{}</b> · true <b>{}</b> · predicted <b>{}</b> · status <b id=status>{}</b> {}</p>",
        e(&named("class", "class_name")),
        e(&named("true_label", "true_name")),
        e(&named("predicted", "predicted_name")),
        e(&value_text(&doc["status"])),
        match doc["decision"].as_str().filter(|d| !d.is_empty()) {
            Some(d) => format!(
                "· decision <b id=decision>{}</b> by {}",
                e(d),
                e(&value_text(&doc["reviewer"]))
            ),
            None => String::new(),
        }
    );
    // Decision panel.
    let _ = write!(
        b,
        "<section class=decide id=decide data-key=\"{}\" data-reviewer=\"{}\" data-queue=\"{}\"><p>",
        e(key),
        e(who.unwrap_or("")),
        e(queue.map_or("", |q| q.name.as_str()))
    );
    for (i, d) in DECISIONS.iter().enumerate() {
        let _ = write!(
            b,
            "<button class=decision data-decision=\"{d}\"><kbd>{}</kbd> {d}</button> ",
            i + 1
        );
    }
    let _ = write!(
        b,
        "</p><p><label><kbd>l</kbd> relabel as <input id=new-label type=number min=0 size=5 value=\"{}\"></label> \
         <button id=relabel>mislabeled → new label <kbd>Enter</kbd></button> \
         <label><kbd>n</kbd> note <input id=note size=40></label> {}</p><p id=decide-status class=muted></p></section>",
        e(&value_text(&doc["new_label"])),
        if queue.is_some() {
            "<button id=skip><kbd>s</kbd> skip</button>"
        } else {
            ""
        }
    );
    let has_map = doc["has_map"].as_bool() == Some(true);
    let _ = write!(
        b,
        "<div class=grid><section class=view id=view data-key=\"{}\" data-has-map=\"{has_map}\">\
         <div class=pictures><div class=stack><canvas id=input-canvas></canvas><canvas id=heat-canvas></canvas></div><canvas id=heat-alone title=\"the heat map alone\"></canvas></div>\
         <div id=table-view></div>\
         <p class=controls><label>overlay <select id=overlay>{}<option value=none>none</option></select></label> \
         <label>opacity <input id=opacity type=range min=0 max=100 value=55></label></p>\
         <p id=view-status class=muted></p></section>",
        e(key),
        if has_map {
            "<option value=map selected>VoG map</option><option value=grad>input gradient (last checkpoint)</option>"
        } else {
            ""
        }
    );
    // Scores per window.
    b.push_str("<section><h2>scores</h2><table class=scores><thead><tr><th>window</th><th>VoG</th><th>normalized</th></tr></thead><tbody>");
    let scores = doc["scores"].as_object().cloned().unwrap_or_default();
    let mut others = Vec::new();
    for (name, v) in &scores {
        if let Some(w) = name.strip_prefix("vog_") {
            if w.ends_with("_norm") {
                continue;
            }
            let norm = scores
                .get(&format!("vog_{w}_norm"))
                .map(value_text)
                .unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(w),
                e(&value_text(v)),
                e(&norm)
            );
        } else {
            others.push((name.clone(), v.clone()));
        }
    }
    b.push_str("</tbody></table><table class=scores><tbody>");
    for f in [
        "score",
        "rank",
        "percentile",
        "class_rank",
        "class_percentile",
    ] {
        let _ = write!(
            b,
            "<tr><th>{f}</th><td>{}</td></tr>",
            e(&value_text(&doc[f]))
        );
    }
    for (name, v) in &others {
        let _ = write!(
            b,
            "<tr><th>{}</th><td>{}</td></tr>",
            e(name),
            e(&value_text(v))
        );
    }
    b.push_str("</tbody></table>");
    if let Some(svg) = trajectory_svg(doc) {
        let _ = write!(
            b,
            "<h2>per checkpoint</h2>{svg}<p class=muted>margin of the class used; dots green where the prediction is that class, red elsewhere; numbers: predicted class</p>"
        );
    }
    b.push_str("</section></div>");
    // Metadata.
    b.push_str("<section><h2>metadata</h2><table class=meta id=meta><tbody>");
    if let Some(meta) = doc["meta"].as_object() {
        for (k, v) in meta {
            let text = value_text(v);
            let cell = match v.as_str().and_then(vog_store::asset_path) {
                Some(path) => format!(
                    "{}<br><img class=asset alt=\"{}\" src=\"/asset/{}/{}\">",
                    e(&text),
                    e(&text),
                    e(&enc(run)),
                    e(&enc_path(&path))
                ),
                None => e(&text),
            };
            let _ = write!(b, "<tr><th>{}</th><td>{cell}</td></tr>", e(k));
        }
    }
    b.push_str("</tbody></table></section>");
    // History.
    b.push_str("<section><h2>history</h2><table class=history id=history><thead><tr><th>#</th><th>when</th><th>reviewer</th><th>decision</th><th>label</th><th>note</th></tr></thead><tbody>");
    for h in history {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            h.seq,
            e(&h.at),
            e(&h.reviewer),
            e(&h.decision),
            h.label.map_or(String::new(), |l| l.to_string()),
            e(h.note.as_deref().unwrap_or(""))
        );
    }
    if history.is_empty() {
        b.push_str("<tr><td colspan=6 class=muted>no decisions yet</td></tr>");
    }
    b.push_str("</tbody></table></section>");
    b
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
