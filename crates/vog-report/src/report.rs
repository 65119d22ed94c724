//! `vog report`: one self-contained HTML file (inline SVG charts, PNG data URIs, no external
//! resources) summarizing a scored run: per-class score distributions, error rate by VoG decile,
//! a data map coloured by VoG, the highest- and lowest-VoG examples of each class with their
//! heat maps, and a summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use vog_results::{Manifest, MapKind, ResultsDir, ScoreRow};

use crate::html::escape as e;

mod trust;
use crate::png::{data_uri, heat_png, image_dims, input_png};
use crate::{Error, Result};
use trust::trust;

/// One example, as the report needs it.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    row: usize,
    class: Option<u64>,
    true_label: Option<u64>,
    predicted: Option<u64>,
    /// Class-normalized VoG of the main window (raw VoG when there is no class to normalize in).
    score: f64,
    raw: f64,
    confidence: Option<f64>,
    variability: Option<f64>,
    has_map: bool,
    /// Every score column, in the order of [`Report::score_names`] (NaN: undefined).
    scores: Vec<f64>,
}

/// A run, read from a results directory or from a store, ready to render.
pub struct Report {
    title: String,
    manifest: Manifest,
    rows: Vec<Row>,
    maps: PathBuf,
    window: String,
    normalized: bool,
    class_names: BTreeMap<u64, String>,
    /// Every score column of the run (VoG windows raw and normalized, the panel).
    score_names: Vec<String>,
}

/// The run's main window (`all` for a manifest without windows).
fn main_window(manifest: &Manifest) -> String {
    manifest.main_window().unwrap_or("all").to_string()
}

impl Row {
    fn from_score_row(r: &ScoreRow, window: &str, names: &[String]) -> Row {
        let raw = r.vog.get(window).copied().flatten().unwrap_or(f64::NAN);
        Row {
            id: r.id.clone(),
            row: r.row as usize,
            class: r.label_used.map(u64::from),
            true_label: r.true_label.map(u64::from),
            predicted: r.predicted.map(u64::from),
            score: r.ranking_score(window).unwrap_or(raw),
            raw,
            confidence: r.column("confidence"),
            variability: r.column("variability"),
            has_map: r.has_map,
            scores: names
                .iter()
                .map(|n| r.column(n).unwrap_or(f64::NAN))
                .collect(),
        }
    }
}

impl Report {
    /// Reads a results directory (a results directory or an audit store), whichever `input` is;
    /// `run` chooses a run of a store that holds several.
    pub fn open(input: &Path, run: Option<&str>) -> Result<Report> {
        let report = if input.join("store.json").is_file() {
            Report::from_store_dir(input, run)?
        } else if input.join(vog_results::SCORES_JSONL).is_file()
            || input.join(vog_results::RUN_JSON).is_file()
        {
            Report::from_results(input)?
        } else {
            return Err(Error::Input(format!(
                "{}: neither a results directory (scores.jsonl, run.json) nor an audit store (store.json)",
                input.display()
            )));
        };
        if report.rows.is_empty() {
            return Err(Error::Input(format!("{}: no examples", input.display())));
        }
        Ok(report)
    }

    /// The HTML page (self-contained: inline SVG and PNG data URIs), with the `per_class`
    /// highest- and lowest-scored examples of each class.
    pub fn render(&self, per_class: usize) -> Result<String> {
        render(self, per_class)
    }

    /// Renders the page into `out`, through a temporary file: a failure leaves nothing.
    pub fn write(&self, per_class: usize, out: &Path) -> Result<()> {
        let html = self.render(per_class)?;
        let tmp = out.with_extension("html.partial");
        std::fs::write(&tmp, html).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(out, e)
        })
    }

    /// The run of a results directory written by `vog score` or `vog merge`.
    pub fn from_results(dir: &Path) -> Result<Report> {
        from_results(dir)
    }

    /// A run of an audit store in directory `dir` (`run` may be left out when the store holds
    /// one).
    pub fn from_store_dir(dir: &Path, run: Option<&str>) -> Result<Report> {
        let store = vog_store::Store::open(dir)?;
        let run = match run {
            Some(r) => r.to_string(),
            None => only_run(dir)?,
        };
        Report::from_store(&store, &run)
    }

    /// Run `run` of an open audit store.
    pub fn from_store(store: &vog_store::Store, run: &str) -> Result<Report> {
        from_store(store, run)
    }
}

fn from_results(dir: &Path) -> Result<Report> {
    let results = ResultsDir::open(dir)?;
    let window = main_window(results.manifest());
    let mut rows = Vec::new();
    let mut normalized = false;
    let mut score_names: Option<Vec<String>> = None;
    for r in results.rows()? {
        let r = r?;
        normalized |= r.vog_norm.get(&window).copied().flatten().is_some();
        let names = score_names.get_or_insert_with(|| r.columns().map(|(n, _)| n).collect());
        rows.push(Row::from_score_row(&r, &window, names));
    }
    let title = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    Ok(Report {
        title,
        manifest: results.into_manifest(),
        rows,
        maps: dir.join(vog_results::MAPS_DIR),
        window,
        normalized,
        class_names: BTreeMap::new(),
        score_names: score_names.unwrap_or_default(),
    })
}

/// The one run of the store in `dir`.
fn only_run(dir: &Path) -> Result<String> {
    let runs_dir = dir.join("runs");
    let mut names: Vec<String> = std::fs::read_dir(&runs_dir)
        .map_err(|e| Error::io(&runs_dir, e))?
        .filter_map(|d| d.ok())
        .filter(|d| d.path().join(vog_results::RUN_JSON).is_file())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => Err(Error::Input(format!(
            "{}: the store holds no runs",
            dir.display()
        ))),
        _ => Err(Error::Input(format!(
            "{}: the store holds several runs ({}); choose one with --run",
            dir.display(),
            names.join(", ")
        ))),
    }
}

fn from_store(store: &vog_store::Store, run: &str) -> Result<Report> {
    let run = run.to_string();
    vog_store::check_run_name(&run)?;
    let manifest = ResultsDir::open(&store.run_dir(&run))?.into_manifest();
    let window = main_window(&manifest);
    let mut hits = Vec::new();
    store.for_each_match(
        &vog_store::SearchRequest {
            run: Some(run.clone()),
            sort: Some("row".into()),
            ascending: true,
            ..Default::default()
        },
        |h| {
            hits.push(h);
            Ok(())
        },
    )?;
    if hits.is_empty() {
        return Err(Error::Input(format!(
            "{}: no run `{run}` in the store",
            store.dir().display()
        )));
    }
    let mut class_names = BTreeMap::new();
    let mut normalized = false;
    let score_names: Vec<String> = hits[0]["scores"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let rows = hits
        .iter()
        .map(|h| {
            if let (Some(c), Some(n)) = (h["class"].as_u64(), h["class_name"].as_str()) {
                class_names.insert(c, n.to_string());
            }
            let norm = h["scores"][format!("vog_{window}_norm")].as_f64();
            normalized |= norm.is_some();
            let raw = h["scores"][format!("vog_{window}")]
                .as_f64()
                .unwrap_or(f64::NAN);
            Row {
                id: h["id"].as_str().unwrap_or_default().to_string(),
                row: h["row"].as_u64().unwrap_or(0) as usize,
                class: h["class"].as_u64(),
                true_label: h["true_label"].as_u64(),
                predicted: h["predicted"].as_u64(),
                score: norm.unwrap_or(raw),
                raw,
                confidence: h["scores"]["confidence"].as_f64(),
                variability: h["scores"]["variability"].as_f64(),
                has_map: h["has_map"].as_bool() == Some(true),
                scores: score_names
                    .iter()
                    .map(|n| h["scores"][n].as_f64().unwrap_or(f64::NAN))
                    .collect(),
            }
        })
        .collect();
    Ok(Report {
        title: run.clone(),
        manifest,
        rows,
        maps: store.run_dir(&run).join(vog_results::MAPS_DIR),
        window,
        normalized,
        class_names,
        score_names,
    })
}

// ---------------------------------------------------------------------------------------------
// Charts (inline SVG).

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

fn histogram_svg(values: &[f64], lo: f64, hi: f64, bins: usize) -> String {
    let (w, h) = (220.0, 90.0);
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let b = (((v - lo) / (hi - lo)) * bins as f64).floor();
        counts[(b.max(0.0) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = w / bins as f64;
    let mut s = format!(
        "<svg width={w} height={} viewBox=\"0 0 {w} {}\">",
        h + 14.0,
        h + 14.0
    );
    for (i, &c) in counts.iter().enumerate() {
        let bh = h * c as f64 / top;
        let _ = write!(
            s,
            "<rect x={:.1} y={:.1} width={:.1} height={:.1} fill=\"#4a72c4\"><title>{} examples</title></rect>",
            i as f64 * bw + 0.5,
            h - bh,
            bw - 1.0,
            bh,
            c
        );
    }
    let _ = write!(
        s,
        "<text x=0 y={} class=tick>{lo:.2}</text><text x={w} y={} class=tick text-anchor=end>{hi:.2}</text></svg>",
        h + 12.0,
        h + 12.0
    );
    s
}

fn colour(t: f64) -> String {
    // Blue (low VoG) → gray → red (high VoG).
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        let u = t / 0.5;
        (40.0 + 140.0 * u, 90.0 + 90.0 * u, 200.0 - 20.0 * u)
    } else {
        let u = (t - 0.5) / 0.5;
        (180.0 + 40.0 * u, 180.0 - 150.0 * u, 180.0 - 150.0 * u)
    };
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

// ---------------------------------------------------------------------------------------------

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1200px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde;padding-bottom:4px}\
table{border-collapse:collapse}td,th{border:1px solid #dde;padding:3px 8px;text-align:right}th{background:#f3f5f9}\
td:first-child,th:first-child{text-align:left}.multiples{display:flex;flex-wrap:wrap;gap:14px}\
.multiples figure{margin:0}figcaption{font-size:12px;color:#445}.tick{font-size:10px;fill:#556}\
.thumbs{display:flex;gap:6px;flex-wrap:wrap;margin:4px 0 10px}.thumb{position:relative;width:84px;font-size:10px;color:#445}\
.thumb img{width:84px;height:84px;image-rendering:pixelated;display:block}.thumb img.heat{position:absolute;left:0;top:0;opacity:.65}\
.muted{color:#667}.legend{font-size:12px;color:#445}";

fn class_label(src: &Report, c: u64) -> String {
    match src.class_names.get(&c) {
        Some(n) => format!("{c} ({n})"),
        None => c.to_string(),
    }
}

/// What every section of the page reads.
struct Page<'a> {
    src: &'a Report,
    /// Rows by class (`u64::MAX`: no class).
    by_class: BTreeMap<u64, Vec<&'a Row>>,
    /// Whether rows have both a label and a prediction (error rates can be shown).
    labelled: bool,
    /// What the score is, in words.
    score_name: String,
    /// The score axis every chart shares.
    axis: (f64, f64),
}

fn render(src: &Report, per_class: usize) -> Result<String> {
    let rows = &src.rows;
    let score_name = if src.normalized {
        format!("class-normalized VoG ({})", src.window)
    } else {
        format!("VoG ({}, raw: no labels to normalize within)", src.window)
    };
    let mut by_class: BTreeMap<u64, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_class
            .entry(r.class.unwrap_or(u64::MAX))
            .or_default()
            .push(r);
    }
    let labelled = rows
        .iter()
        .any(|r| r.true_label.is_some() && r.predicted.is_some());
    let mut b = String::new();
    let _ = write!(
        b,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>vog report · {}</title><style>{STYLE}</style></head><body>\
         <h1>vog report · {}</h1><p class=muted>generated {} by vog {} · score: {}</p>",
        e(&src.title),
        e(&src.title),
        e(&vog_core::now_rfc3339()),
        env!("CARGO_PKG_VERSION"),
        e(&score_name)
    );

    // One score axis for every chart: the 0.5th to 99.5th percentile.
    let mut all: Vec<f64> = rows
        .iter()
        .map(|r| r.score)
        .filter(|v| v.is_finite())
        .collect();
    all.sort_by(f64::total_cmp);
    let (lo, hi) = (quantile(&all, 0.005), quantile(&all, 0.995));
    let axis = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let page = Page {
        src,
        by_class,
        labelled,
        score_name,
        axis,
    };
    summary(&page, &mut b);
    distributions(&page, &mut b);
    deciles(&page, &mut b);
    trust(&page, &mut b);
    datamap(&page, &mut b);
    examples(&page, &mut b, per_class);
    b.push_str("</section></body></html>\n");
    Ok(b)
}

/// The run at a glance: counts, settings, and per class the raw VoG, the highest score and the error rate.
fn summary(p: &Page<'_>, b: &mut String) {
    let src = p.src;
    let m = &p.src.manifest;
    let rows = &p.src.rows;
    let by_class = &p.by_class;
    let labelled = p.labelled;
    let flagged = m.flagged;
    let k = m.checkpoints.len();
    let windows = m.window_names();
    let errors = rows
        .iter()
        .filter(|r| matches!((r.true_label, r.predicted), (Some(t), Some(p)) if t != p))
        .count();
    let _ = write!(
        b,
        "<section id=summary><h2>Summary</h2><table><tbody>\
         <tr><th>examples</th><td>{}</td></tr><tr><th>classes</th><td>{}</td></tr>\
         <tr><th>checkpoints</th><td>{k}</td></tr><tr><th>windows</th><td>{}</td></tr>\
         <tr><th>labels / target</th><td>{} / {}</td></tr><tr><th>backend</th><td>{}</td></tr>\
         <tr><th>data</th><td>{}</td></tr><tr><th>flagged</th><td>{flagged}</td></tr>{}</tbody></table>",
        rows.len(),
        by_class.len(),
        e(&windows.join(", ")),
        e(m.scoring.labels.map_or("-", |l| l.as_str())),
        e(m.scoring.target.map_or("-", |t| t.as_str())),
        e(m.backend.as_ref().map_or("stored gradients", |b| b.name.as_str())),
        e(&m
            .data
            .path
            .as_ref()
            .map_or_else(|| "-".into(), |p| p.display().to_string())),
        if labelled {
            format!(
                "<tr><th>error rate (last checkpoint)</th><td>{:.2}%</td></tr>",
                100.0 * errors as f64 / rows.len() as f64
            )
        } else {
            String::new()
        }
    );
    b.push_str("<h3>Per class</h3><table><thead><tr><th>class</th><th>examples</th><th>raw VoG mean</th><th>raw VoG std</th><th>max score</th>");
    if labelled {
        b.push_str("<th>error rate</th>");
    }
    b.push_str("</tr></thead><tbody>");
    for (c, members) in by_class {
        let raw: Vec<f64> = members
            .iter()
            .map(|r| r.raw)
            .filter(|v| v.is_finite())
            .collect();
        let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
        let std =
            (raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / raw.len().max(1) as f64).sqrt();
        let max = members
            .iter()
            .map(|r| r.score)
            .fold(f64::NEG_INFINITY, f64::max);
        let name = if *c == u64::MAX {
            "(none)".to_string()
        } else {
            class_label(src, *c)
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{mean:.4e}</td><td>{std:.4e}</td><td>{max:.3}</td>",
            e(&name),
            members.len()
        );
        if labelled {
            let err = members
                .iter()
                .filter(|r| matches!((r.true_label, r.predicted), (Some(t), Some(p)) if t != p))
                .count();
            let _ = write!(
                b,
                "<td>{:.2}%</td>",
                100.0 * err as f64 / members.len() as f64
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table></section>");
}

/// Per class, a histogram of the score on one shared axis.
fn distributions(p: &Page<'_>, b: &mut String) {
    let src = p.src;
    let by_class = &p.by_class;
    let score_name = &p.score_name;
    let (lo, hi) = p.axis;
    let _ = write!(
        b,
        "<section id=distributions><h2>Score distributions per class</h2><p class=legend>{}; shared axis {lo:.2} … {hi:.2} (0.5th–99.5th percentile; outside values in the end bins)</p><div class=multiples>",
        e(score_name)
    );
    for (c, members) in by_class {
        let v: Vec<f64> = members.iter().map(|r| r.score).collect();
        let name = if *c == u64::MAX {
            "(none)".to_string()
        } else {
            class_label(src, *c)
        };
        let _ = write!(
            b,
            "<figure>{}<figcaption>class {} · n = {}</figcaption></figure>",
            histogram_svg(&v, lo, hi, 24),
            e(&name),
            members.len()
        );
    }
    b.push_str("</div></section>");
}

/// The error rate of the last checkpoint in each decile of the score (labelled runs).
fn deciles(p: &Page<'_>, b: &mut String) {
    let rows = &p.src.rows;
    let labelled = p.labelled;
    let score_name = &p.score_name;
    b.push_str("<section id=deciles><h2>Error rate by VoG decile</h2>");
    if labelled {
        let mut order: Vec<&Row> = rows.iter().filter(|r| r.score.is_finite()).collect();
        order.sort_by(|a, b| a.score.total_cmp(&b.score));
        let n = order.len();
        let mut rates = Vec::new();
        for d in 0..10 {
            let part = &order[d * n / 10..(d + 1) * n / 10];
            let err = part
                .iter()
                .filter(|r| matches!((r.true_label, r.predicted), (Some(t), Some(p)) if t != p))
                .count();
            rates.push((
                part.len(),
                if part.is_empty() {
                    0.0
                } else {
                    err as f64 / part.len() as f64
                },
            ));
        }
        let top = rates.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-9);
        let (w, h) = (560.0, 200.0);
        let _ = write!(
            b,
            "<svg width={w} height={} viewBox=\"0 0 {w} {}\">",
            h + 40.0,
            h + 40.0
        );
        for (d, (count, rate)) in rates.iter().enumerate() {
            let bh = (h - 20.0) * rate / top;
            let x = 20.0 + d as f64 * 52.0;
            let _ = write!(
                b,
                "<rect x={x} y={:.1} width=44 height={bh:.1} fill=\"{}\"><title>decile {}: {count} examples, error {:.1}%</title></rect>\
                 <text x={} y={:.1} class=tick text-anchor=middle>{:.1}%</text><text x={} y={} class=tick text-anchor=middle>{}</text>",
                h - bh,
                colour(d as f64 / 9.0),
                d + 1,
                100.0 * rate,
                x + 22.0,
                h - bh - 4.0,
                100.0 * rate,
                x + 22.0,
                h + 14.0,
                d + 1
            );
        }
        let _ = write!(
            b,
            "<text x=20 y={} class=tick>decile of {} (1 = lowest, 10 = highest); error: last checkpoint's prediction ≠ label</text></svg>",
            h + 34.0,
            e(score_name)
        );
    } else {
        b.push_str("<p class=muted>No true labels with predictions in this run: the error rate by decile needs both.</p>");
    }
    b.push_str("</section>");
}

/// Confidence against variability across checkpoints, each example coloured by its score.
fn datamap(p: &Page<'_>, b: &mut String) {
    let rows = &p.src.rows;
    let (lo, hi) = p.axis;
    let score_name = &p.score_name;
    b.push_str("<section id=datamap><h2>Data map</h2>");
    let points: Vec<&Row> = rows
        .iter()
        .filter(|r| r.confidence.is_some() && r.variability.is_some() && r.score.is_finite())
        .collect();
    if points.is_empty() {
        b.push_str("<p class=muted>No confidence/variability in this run (stored gradients have no logits).</p>");
    } else {
        let step = points.len().div_ceil(4000);
        let vmax = points
            .iter()
            .filter_map(|r| r.variability)
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let (w, h, pad) = (520.0, 420.0, 40.0);
        let _ = write!(
            b,
            "<p class=legend>confidence (mean probability of the label over checkpoints) against variability (its std); colour: {} from blue (low) to red (high){}</p>\
             <svg width={w} height={h} viewBox=\"0 0 {w} {h}\"><rect x={pad} y=10 width={} height={} fill=none stroke=\"#ccd\"/>",
            e(score_name),
            if step > 1 { format!("; every {step}th example of {}", points.len()) } else { String::new() },
            w - pad - 10.0,
            h - pad - 10.0
        );
        for r in points.iter().step_by(step) {
            let x = pad + (w - pad - 10.0) * r.variability.unwrap_or(0.0) / vmax;
            let y = 10.0 + (h - pad - 10.0) * (1.0 - r.confidence.unwrap_or(0.0));
            let t = (r.score - lo) / (hi - lo);
            let _ = write!(
                b,
                "<circle cx={x:.1} cy={y:.1} r=2.6 fill=\"{}\" fill-opacity=.8><title>{} · score {:.2}</title></circle>",
                colour(t),
                e(&r.id),
                r.score
            );
        }
        let _ = write!(
            b,
            "<text x={pad} y={} class=tick>0</text><text x={} y={} class=tick text-anchor=end>variability {vmax:.2}</text>\
             <text x=4 y=18 class=tick>1.0</text><text x=4 y={} class=tick>0.0</text><text x=4 y={} class=tick>confidence</text></svg>",
            h - 16.0,
            w - 10.0,
            h - 16.0,
            h - pad,
            h / 2.0
        );
    }
    b.push_str("</section>");
}

/// The highest- and lowest-scored examples of each class, with their inputs and VoG heat maps.
fn examples(p: &Page<'_>, b: &mut String, per_class: usize) {
    let src = p.src;
    let m = &p.src.manifest;
    let by_class = &p.by_class;
    b.push_str("<section id=examples><h2>Highest- and lowest-VoG examples per class</h2>");
    // The data file is opened once; thumbnails are read from it only for image data.
    let mut images = crate::input::InputReader::open(m)
        .ok()
        .filter(|r| r.layout() == "image");
    match images {
        None => {
            b.push_str("<p class=muted>Not image data: ids and scores only.</p>");
        }
        Some(_) => {
            let _ = write!(
                b,
                "<p class=legend>{per_class} per class each way; images in gray under their VoG map (hot colours) where the run kept one (flagged examples; all of these with <code>[flag] extremes_per_class</code>), in colour otherwise</p>"
            );
        }
    }
    for (c, members) in by_class {
        let mut sorted = members.clone();
        sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
        let name = if *c == u64::MAX {
            "(none)".to_string()
        } else {
            class_label(src, *c)
        };
        let _ = write!(b, "<h3>class {}</h3>", e(&name));
        let high: Vec<&Row> = sorted.iter().take(per_class).copied().collect();
        // The lowest, without repeating any of the highest in a small class.
        let low_start = per_class
            .max(sorted.len().saturating_sub(per_class))
            .min(sorted.len());
        let low: Vec<&Row> = sorted[low_start..].iter().rev().copied().collect();
        for (label, group) in [("highest", high), ("lowest", low)] {
            if group.is_empty() {
                let _ = write!(b, "<div class=legend>{label}: all shown above</div>");
                continue;
            }
            let _ = write!(b, "<div class=legend>{label}</div><div class=thumbs>");
            for r in group {
                let mut pics = String::new();
                if let Some(t) = images.as_mut().and_then(|i| i.read(r.row).ok()) {
                    if let Some(dims) = image_dims(&t.shape).filter(|_| t.layout == "image") {
                        let map = if r.has_map {
                            read_map(&src.maps, r.row)
                        } else {
                            None
                        };
                        let _ = write!(
                            pics,
                            "<img alt=\"input\" src=\"{}\">",
                            data_uri(&input_png(&t.data, dims, map.is_some()))
                        );
                        if let Some((shape, data)) = map {
                            if let Some(md) = image_dims(&shape) {
                                let _ = write!(
                                    pics,
                                    "<img class=heat alt=\"VoG map\" src=\"{}\">",
                                    data_uri(&heat_png(&data, md))
                                );
                            }
                        }
                    }
                }
                let _ = write!(
                    b,
                    "<div class=thumb>{pics}{} · {:.2}{}</div>",
                    e(&r.id),
                    r.score,
                    match (r.true_label, r.predicted) {
                        (Some(t), Some(p)) if t != p => format!(" · pred {p}"),
                        _ => String::new(),
                    }
                );
            }
            b.push_str("</div>");
        }
    }
}

fn read_map(maps: &Path, row: usize) -> Option<(Vec<usize>, Vec<f32>)> {
    let file = vog_results::map_file(row as u64, MapKind::Vog);
    let mut a = vog_data::ArrayFile::open_npy(&maps.join(file)).ok()?;
    let shape = a.shape().to_vec();
    let mut data = Vec::new();
    let n = a.rows();
    a.read_f32(0, n, &mut data).ok()?;
    Some((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!((quantile(&v, 0.5) - 2.5).abs() < 1e-12);
    }
}
