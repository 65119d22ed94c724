//! `vog merge`: joins the shards of a run (`vog score --shard I/N`) into one results directory.
//!
//! Class normalization needs every example of a class, which no shard has. Each shard's
//! `run.json` carries its per-class sufficient statistics (count, mean, population std per
//! window); merging them with Chan's formula gives the whole run's, and every row's normalized
//! scores are recomputed from its raw VoG while the shards' rows stream through. Memory holds the
//! statistics and one row, whatever the number of examples.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vog_core::{ClassStats, ClassSummary};

use crate::config::OutputConfig;
use crate::output::{fmt_f64, num, write_dir_atomically};
use crate::{Error, Result};

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// Where the merged results are.
    pub dir: PathBuf,
    /// Shards merged.
    pub shards: usize,
    /// Examples in all.
    pub examples: usize,
}

struct ShardRun {
    dir: PathBuf,
    manifest: Value,
    index: usize,
    count: usize,
    rows: [usize; 2],
}

fn read_manifest(dir: &Path) -> Result<Value> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: not a vog manifest: {e}", path.display())))
}

fn shard_of(dir: &Path) -> Result<ShardRun> {
    let manifest = read_manifest(dir)?;
    let s = &manifest["config"]["shard"];
    let (Some(index), Some(count)) = (s["index"].as_u64(), s["count"].as_u64()) else {
        return Err(Error::Input(format!(
            "{}: not a shard (scored without --shard)",
            dir.display()
        )));
    };
    let r = &manifest["data"]["shard_rows"];
    let rows = [
        r[0].as_u64().unwrap_or(0) as usize,
        r[1].as_u64().unwrap_or(0) as usize,
    ];
    Ok(ShardRun {
        dir: dir.to_path_buf(),
        manifest,
        index: index as usize,
        count: count as usize,
        rows,
    })
}

/// Checks that the shards are the slices of one run, each exactly once.
fn check(shards: &mut [ShardRun]) -> Result<()> {
    shards.sort_by_key(|s| s.index);
    let first = &shards[0];
    let n = first.count;
    for s in shards.iter() {
        if s.count != n {
            return Err(Error::Input(format!(
                "{} is shard {}/{} but {} is shard {}/{}: not the same split",
                s.dir.display(),
                s.index,
                s.count,
                first.dir.display(),
                first.index,
                first.count
            )));
        }
        // Same checkpoints (by content), data, windows, labels and target.
        for (what, pick) in [
            (
                "checkpoints",
                &(|m: &Value| {
                    Value::Array(
                        m["checkpoints"]
                            .as_array()
                            .map(|c| c.iter().map(|c| c["sha256"].clone()).collect())
                            .unwrap_or_default(),
                    )
                }) as &dyn Fn(&Value) -> Value,
            ),
            ("data", &|m: &Value| {
                json!([m["data"]["path"], m["data"]["rows"]])
            }),
            ("windows", &|m: &Value| m["scoring"]["windows"].clone()),
            ("labels and target", &|m: &Value| {
                json!([
                    m["scoring"]["labels"],
                    m["scoring"]["target"],
                    m["scoring"]["second_target"]
                ])
            }),
        ] {
            if pick(&s.manifest) != pick(&first.manifest) {
                return Err(Error::Input(format!(
                    "{} and {} differ in their {what}: shards of one run must share them",
                    first.dir.display(),
                    s.dir.display()
                )));
            }
        }
    }
    let mut seen = vec![Vec::new(); n];
    for s in shards.iter() {
        seen[s.index].push(s.dir.display().to_string());
    }
    if let Some((i, dirs)) = seen.iter().enumerate().find(|(_, d)| d.len() > 1) {
        return Err(Error::Input(format!(
            "shard {i}/{n} given twice: {}",
            dirs.join(", ")
        )));
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_empty())
        .map(|(i, _)| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "missing shard(s) {} of {n}",
            missing.join(", ")
        )));
    }
    let mut next = 0;
    for s in shards.iter() {
        if s.rows[0] != next {
            return Err(Error::Input(format!(
                "{}: rows {}..{} do not follow row {next}",
                s.dir.display(),
                s.rows[0],
                s.rows[1]
            )));
        }
        next = s.rows[1];
    }
    Ok(())
}

/// Merged per-window class statistics from the shards' manifests.
fn merged_stats(shards: &[ShardRun]) -> Result<BTreeMap<String, ClassStats>> {
    let mut out: BTreeMap<String, ClassStats> = BTreeMap::new();
    for s in shards {
        let Some(classes) = s.manifest["classes"].as_object() else {
            continue;
        };
        for (window, entries) in classes {
            let summaries = entries.as_array().into_iter().flatten().filter_map(|e| {
                Some((
                    e["class"].as_u64()? as u32,
                    ClassSummary {
                        count: e["count"].as_u64()?,
                        mean: e["mean"].as_f64()?,
                        std: e["std"].as_f64()?,
                    },
                ))
            });
            out.entry(window.clone())
                .or_default()
                .merge(&ClassStats::from_summaries(summaries));
        }
    }
    Ok(out)
}

/// Merges shard results into `out` (scores.jsonl and scores.csv when every shard has them, and
/// run.json), recomputing class-normalized VoG from the merged statistics.
pub fn merge_shards(dirs: &[PathBuf], out: &OutputConfig) -> Result<MergeSummary> {
    if dirs.is_empty() {
        return Err(Error::Input("no shard directories given".into()));
    }
    let mut shards = dirs
        .iter()
        .map(|d| shard_of(d))
        .collect::<Result<Vec<_>>>()?;
    check(&mut shards)?;
    let stats = merged_stats(&shards)?;
    let windows = vog_core::manifest::window_names(&shards[0].manifest);
    let normalize = |window: &str, class: Option<u64>, raw: Option<f64>| -> Option<f64> {
        let (c, v) = (class?, raw?);
        Some(stats.get(window)?.normalize(c as u32, v))
    };
    let has = |file: &str| shards.iter().all(|s| s.dir.join(file).is_file());
    if !has("scores.jsonl") && !has("scores.csv") {
        return Err(Error::Input(
            "the shards have neither scores.jsonl nor scores.csv in common".into(),
        ));
    }
    let mut examples = 0usize;
    let dir = write_dir_atomically(out, |tmp| {
        if has("scores.jsonl") {
            let path = tmp.join("scores.jsonl");
            let mut w =
                BufWriter::new(std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?);
            for s in &shards {
                let src = s.dir.join("scores.jsonl");
                let file = std::fs::File::open(&src).map_err(|e| Error::io(&src, e))?;
                for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(|e| Error::io(&src, e))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let mut r: Value = serde_json::from_str(&line).map_err(|e| {
                        Error::Input(format!("{} line {}: {e}", src.display(), i + 1))
                    })?;
                    let class = r["label_used"].as_u64();
                    for wn in &windows {
                        let v = normalize(wn, class, r["vog"][wn].as_f64());
                        r["vog_norm"][wn] = v.map_or(Value::Null, num);
                    }
                    serde_json::to_writer(&mut w, &r)
                        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
                    w.write_all(b"\n").map_err(|e| Error::io(&path, e))?;
                    examples += 1;
                }
            }
            w.flush().map_err(|e| Error::io(&path, e))?;
        }
        if has("scores.csv") {
            examples = merge_csv(&shards, &windows, &normalize, &tmp.join("scores.csv"))?;
        }
        let manifest = merged_manifest(&shards, &stats, dirs);
        let p = tmp.join("run.json");
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::Input(format!("cannot encode run.json: {e}")))?;
        std::fs::write(&p, text + "\n").map_err(|e| Error::io(&p, e))
    })?;
    Ok(MergeSummary {
        dir,
        shards: shards.len(),
        examples,
    })
}

type Normalize<'a> = dyn Fn(&str, Option<u64>, Option<f64>) -> Option<f64> + 'a;

/// Concatenates the shards' CSV files under the union of their columns (metadata keys may differ
/// between shards), recomputing the `vog_WINDOW_norm` columns.
fn merge_csv(
    shards: &[ShardRun],
    windows: &[String],
    normalize: &Normalize<'_>,
    path: &Path,
) -> Result<usize> {
    let csv_err = |p: &Path, e: csv::Error| Error::Input(format!("{}: {e}", p.display()));
    let mut columns: Vec<String> = Vec::new();
    for s in shards {
        let src = s.dir.join("scores.csv");
        let mut r = csv::Reader::from_path(&src).map_err(|e| csv_err(&src, e))?;
        for h in r.headers().map_err(|e| csv_err(&src, e))? {
            if !columns.iter().any(|c| c == h) {
                columns.push(h.to_string());
            }
        }
    }
    let mut w = csv::Writer::from_path(path).map_err(|e| csv_err(path, e))?;
    w.write_record(&columns).map_err(|e| csv_err(path, e))?;
    let mut rows = 0;
    for s in shards {
        let src = s.dir.join("scores.csv");
        let mut r = csv::Reader::from_path(&src).map_err(|e| csv_err(&src, e))?;
        let header: Vec<String> = r
            .headers()
            .map_err(|e| csv_err(&src, e))?
            .iter()
            .map(String::from)
            .collect();
        let at = |name: &str| header.iter().position(|h| h == name);
        for record in r.records() {
            let record = record.map_err(|e| csv_err(&src, e))?;
            let cell = |name: &str| at(name).and_then(|i| record.get(i)).unwrap_or("");
            let class = cell("label_used").parse::<u64>().ok();
            let mut out: Vec<String> = columns.iter().map(|c| cell(c).to_string()).collect();
            for wn in windows {
                if let Some(i) = columns.iter().position(|c| *c == format!("vog_{wn}_norm")) {
                    let raw = cell(&format!("vog_{wn}")).parse::<f64>().ok();
                    out[i] = normalize(wn, class, raw).map_or(String::new(), fmt_f64);
                }
            }
            w.write_record(&out).map_err(|e| csv_err(path, e))?;
            rows += 1;
        }
    }
    w.flush().map_err(|e| Error::io(path, e))?;
    Ok(rows)
}

/// The first shard's manifest, made the whole run's: no shard, merged class statistics, summed
/// timings, every shard's warnings, and where it came from.
fn merged_manifest(
    shards: &[ShardRun],
    stats: &BTreeMap<String, ClassStats>,
    dirs: &[PathBuf],
) -> Value {
    let mut m = shards[0].manifest.clone();
    if let Some(c) = m["config"].as_object_mut() {
        c.remove("shard");
    }
    if let Some(d) = m["data"].as_object_mut() {
        d.remove("shard_rows");
    }
    m["classes"] = stats
        .iter()
        .map(|(w, s)| {
            let entries: Vec<Value> = s
                .summaries()
                .into_iter()
                .map(|(class, x)| json!({"class": class, "count": x.count, "mean": x.mean, "std": x.std}))
                .collect();
            (w.clone(), Value::Array(entries))
        })
        .collect::<serde_json::Map<String, Value>>()
        .into();
    let mut timings = serde_json::Map::new();
    for s in shards {
        if let Some(t) = s.manifest["timings"].as_object() {
            for (k, v) in t {
                let sum = timings.get(k).and_then(Value::as_f64).unwrap_or(0.0)
                    + v.as_f64().unwrap_or(0.0);
                timings.insert(k.clone(), json!(sum));
            }
        }
    }
    m["timings"] = Value::Object(timings);
    let mut warnings: Vec<Value> = Vec::new();
    for s in shards {
        for w in s.manifest["warnings"].as_array().into_iter().flatten() {
            // Shard-local degenerate-class notes no longer hold for the whole run.
            let text = w.as_str().unwrap_or_default();
            if !text.contains("normalized VoG is set to 0") && !warnings.contains(w) {
                warnings.push(w.clone());
            }
        }
    }
    for (window, s) in stats {
        for (class, x) in s.degenerate_classes() {
            warnings.push(json!(format!(
                "window `{window}`: class {class} has {} example(s) and std {:.3e}; its normalized VoG is set to 0",
                x.count, x.std
            )));
        }
    }
    m["warnings"] = Value::Array(warnings);
    m["created_utc"] = json!(vog_core::now_rfc3339());
    m["merged_from"] = json!({
        "shards": shards.len(),
        "dirs": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
    });
    m
}
