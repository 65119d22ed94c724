//! The example page (`/example/RUN/ID`, and each item of queue mode), section by section.

use std::fmt::Write;

use serde_json::Value;
use vog_store::{DecisionRecord, QueueStatus, DECISIONS};

use super::{dropped_note, value_text};
use crate::html::{escape as e, percent_encode as enc, percent_encode_path as enc_path};

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

/// The queue an example is shown in, and its progress.
pub(super) struct QueueContext {
    pub(super) name: String,
    pub(super) status: Option<QueueStatus>,
}

/// The example page's body: its header, decision panel, view, scores, metadata and history.
pub(super) fn example_body(
    doc: &Value,
    history: &[DecisionRecord],
    queue: Option<&QueueContext>,
    who: Option<&str>,
) -> String {
    let key = doc["key"].as_str().unwrap_or_default();
    let run = doc["run"].as_str().unwrap_or_default();
    let mut b = String::new();
    header(&mut b, doc, run, queue);
    decision_panel(&mut b, doc, key, queue, who);
    view_panel(&mut b, doc, key);
    scores_section(&mut b, doc);
    metadata_section(&mut b, doc, run);
    history_section(&mut b, history);
    b
}

/// The queue bar (in queue mode), the title and the labels line.
fn header(b: &mut String, doc: &Value, run: &str, queue: Option<&QueueContext>) {
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
}

/// The decision buttons, relabel and note fields (and skip, in queue mode).
fn decision_panel(
    b: &mut String,
    doc: &Value,
    key: &str,
    queue: Option<&QueueContext>,
    who: Option<&str>,
) {
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
}

/// The canvases the page script draws the input and heat maps on.
fn view_panel(b: &mut String, doc: &Value, key: &str) {
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
}

/// Raw and normalized VoG per window, the ranks, every other score, the trajectory chart.
fn scores_section(b: &mut String, doc: &Value) {
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
}

/// The metadata, image paths shown as images served from the run\'s assets.
fn metadata_section(b: &mut String, doc: &Value, run: &str) {
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
}

/// Every decision on the example, oldest first.
fn history_section(b: &mut String, history: &[DecisionRecord]) {
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
}
