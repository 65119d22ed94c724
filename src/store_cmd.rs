//! Audit-store commands: index, search, show, queue, review, export.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use vog_store::{Decision, ExportFormat, ImportOptions, SearchRequest, Store};

use crate::cli::{
    ExportArgs, ExportFormatArg, Filters, IndexArgs, OutputFormatArg, QueueArgs, QueueCommand,
    ReviewArgs, SearchArgs, ShowArgs,
};

fn request(f: &Filters) -> SearchRequest {
    SearchRequest {
        query: f.query.clone(),
        run: f.run.clone(),
        class: f.class,
        min_score: f.min_score,
        max_score: f.max_score,
        split: f.split.clone(),
        wheres: f.wheres.clone(),
        status: f.status.clone(),
        decision: f.decision.clone(),
        flagged: f.flagged.then_some(true),
        limit: 20,
        ..Default::default()
    }
}

fn open(path: &std::path::Path) -> Result<Store> {
    Ok(Store::open(path)?)
}

/// Indexes a results directory (also used by `vog score --store`).
pub fn index(
    results: &std::path::Path,
    store: &std::path::Path,
    run: Option<String>,
    names: Option<&std::path::Path>,
) -> Result<vog_store::ImportSummary> {
    let store = Store::open_or_create(store)?;
    let class_names = names.map(vog_store::read_class_names).transpose()?;
    Ok(store.index_results(results, &ImportOptions { run, class_names })?)
}

pub fn run_index(a: IndexArgs) -> Result<ExitCode> {
    let s = index(&a.results, &a.store.store, a.run, a.class_names.as_deref())?;
    println!(
        "indexed run `{}`: {} examples ({} flagged, {} with review decisions) into {}",
        s.run,
        s.examples,
        s.flagged,
        s.reviewed,
        a.store.store.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn fmt_num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() => format!("{f:.3}"),
        _ => match v {
            Value::Null => "-".into(),
            Value::String(s) if s.is_empty() => "-".into(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

pub fn run_search(a: SearchArgs) -> Result<ExitCode> {
    let store = open(&a.store.store)?;
    let mut req = request(&a.filters);
    if a.query_text.is_some() {
        if req.query.is_some() {
            bail!("give the query once: as the argument or with --query");
        }
        req.query = a.query_text.clone();
    }
    req.sort = a.sort.clone();
    req.ascending = a.asc;
    req.limit = a.limit;
    req.offset = a.offset;
    let res = store.search(&req)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        OutputFormatArg::Json => {
            let text = serde_json::to_string_pretty(&res)?;
            writeln!(out, "{text}")?;
        }
        OutputFormatArg::Csv => {
            store.export(
                &SearchRequest {
                    limit: a.limit,
                    ..req
                },
                ExportFormat::Csv,
                &mut out,
            )?;
        }
        OutputFormatArg::Table => {
            writeln!(
                out,
                "{} of {} matching `{}`",
                res.hits.len(),
                res.total,
                res.query
            )?;
            writeln!(
                out,
                "{:<28} {:>6} {:>6} {:>8} {:>6} {:>10} {:<11} meta",
                "key", "class", "pred", "score", "rank", "status", "decision"
            )?;
            for h in &res.hits {
                let meta = h["meta"].as_object().map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", fmt_num(v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                writeln!(
                    out,
                    "{:<28} {:>6} {:>6} {:>8} {:>6} {:>10} {:<11} {}",
                    fmt_num(&h["key"]),
                    fmt_num(&h["class"]),
                    fmt_num(&h["predicted"]),
                    fmt_num(&h["score"]),
                    fmt_num(&h["rank"]),
                    fmt_num(&h["status"]),
                    fmt_num(&h["decision"]),
                    meta.unwrap_or_default()
                )?;
            }
            if a.counts {
                let c = &res.counts;
                for (name, m) in [
                    ("class", &c.class),
                    ("split", &c.split),
                    ("status", &c.status),
                    ("decision", &c.decision),
                ] {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    writeln!(out, "{name:>9}: {}", parts.join(", "))?;
                }
                writeln!(out, "  flagged: {}", c.flagged)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_show(a: ShowArgs) -> Result<ExitCode> {
    let store = open(&a.store.store)?;
    let (doc, history) = store.example(&a.example)?;
    let out = serde_json::json!({ "example": doc, "history": history });
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&out)?
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_queue(a: QueueArgs) -> Result<ExitCode> {
    match a.command {
        QueueCommand::Create {
            name,
            store,
            filters,
            order,
        } => {
            let store = open(&store.store)?;
            let n = store.create_queue(&name, &request(&filters), &order)?;
            println!("queue `{name}`: {n} items ({order})");
        }
        QueueCommand::Next {
            name,
            store,
            reviewer,
            n,
            lease,
            json,
        } => {
            let store = open(&store.store)?;
            let claims = store.claim(&name, &reviewer, n, Duration::from_secs(lease))?;
            if let Some(q) = store.queues(Some(&name))?.first().filter(|q| q.dropped > 0) {
                eprintln!(
                    "queue `{name}`: {} items dropped so far: their examples are no longer in the index",
                    q.dropped
                );
            }
            if json {
                println!("{}", serde_json::to_string(&claims)?);
            } else if claims.is_empty() {
                println!("queue `{name}`: nothing left for {reviewer}");
            } else {
                for c in &claims {
                    println!("{}", c.key);
                }
            }
        }
        QueueCommand::Status { name, store } => {
            let store = open(&store.store)?;
            for q in store.queues(name.as_deref())? {
                let dropped = if q.dropped > 0 {
                    format!(", {} dropped (no longer indexed)", q.dropped)
                } else {
                    String::new()
                };
                println!(
                    "{}: {} of {} reviewed, {} claimed{dropped} ({})",
                    q.name, q.reviewed, q.total, q.claimed, q.query
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_review(a: ReviewArgs) -> Result<ExitCode> {
    let store = open(&a.store.store)?;
    if a.stdin {
        if a.example.is_some() || a.decision.is_some() {
            bail!("with --stdin, decisions come from standard input only");
        }
        let mut out = std::io::stdout().lock();
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.context("reading standard input")?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", i + 1))?;
            let d = Decision {
                example: v["example"]
                    .as_str()
                    .with_context(|| format!("line {}: no \"example\"", i + 1))?
                    .into(),
                reviewer: v["reviewer"].as_str().unwrap_or(&a.reviewer).into(),
                decision: v["decision"]
                    .as_str()
                    .with_context(|| format!("line {}: no \"decision\"", i + 1))?
                    .into(),
                label: v["label"].as_u64(),
                note: v["note"].as_str().map(String::from),
                force: v["force"].as_bool().unwrap_or(a.force),
            };
            let r = store
                .record_decision_only(&d)
                .with_context(|| format!("line {}", i + 1))?;
            writeln!(out, "ack {} {}", r.seq, r.key)?;
            out.flush()?;
        }
        store.sync_index(Duration::from_secs(30))?;
        return Ok(ExitCode::SUCCESS);
    }
    let example = a
        .example
        .context("give the example to review (run/id or id), or --stdin")?;
    let decision = a.decision.context("give --decision")?;
    let r = store.record_decision(&Decision {
        example,
        reviewer: a.reviewer,
        decision,
        label: a.label,
        note: a.note,
        force: a.force,
    })?;
    println!(
        "recorded #{}: {} {} by {}",
        r.seq, r.key, r.decision, r.reviewer
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_export(a: ExportArgs) -> Result<ExitCode> {
    let store = open(&a.store.store)?;
    let format = match a.format {
        ExportFormatArg::Csv => ExportFormat::Csv,
        ExportFormatArg::Jsonl => ExportFormat::Jsonl,
        ExportFormatArg::Relabel => ExportFormat::Relabel,
        ExportFormatArg::LabelStudio => ExportFormat::LabelStudio,
    };
    let req = SearchRequest {
        // 0: every match.
        limit: a.limit.unwrap_or(0),
        ..request(&a.filters)
    };
    match &a.out {
        Some(path) => {
            // Written beside the target and renamed into place: a failed export leaves nothing.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let n = {
                let mut f = std::io::BufWriter::new(tmp.as_file_mut());
                let n = store.export(&req, format, &mut f)?;
                f.flush()?;
                n
            };
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("exported {n} examples to {}", path.display());
        }
        None => {
            store.export(&req, format, &mut std::io::stdout().lock())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
