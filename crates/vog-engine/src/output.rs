//! Results directories: `scores.csv`, `scores.jsonl` and `run.json`, written whole or not at all.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::config::{OutputConfig, OutputFormat};
use crate::engine::RunResult;
use crate::{Error, Result};

/// Fails early when the results directory exists and may not be replaced, so that a long run
/// does not end in a refusal.
pub fn check_output_dir(out: &OutputConfig) -> Result<()> {
    if out.dir.exists() && !out.overwrite {
        return Err(Error::Config(format!(
            "results directory {} already exists; pass --overwrite (output.overwrite = true) or \
             choose another --out",
            out.dir.display()
        )));
    }
    Ok(())
}

/// Writes the results into a hidden sibling directory, then renames it into place: readers never
/// see a half-written results directory, and a failed run leaves nothing behind.
pub fn write_results(result: &RunResult, out: &OutputConfig) -> Result<PathBuf> {
    write_dir_atomically(out, |tmp| {
        for f in &out.formats {
            match f {
                OutputFormat::Csv => write_csv(result, &tmp.join("scores.csv"))?,
                OutputFormat::Jsonl => write_jsonl(result, &tmp.join("scores.jsonl"))?,
            }
        }
        if !result.maps.is_empty() {
            let maps = tmp.join("maps");
            std::fs::create_dir(&maps).map_err(|e| Error::io(&maps, e))?;
            for m in &result.maps {
                vog_data::write_npy_f32(
                    &maps.join(format!("{}.vog.npy", m.row)),
                    &m.vog_map_shape,
                    &m.vog_map,
                )?;
                vog_data::write_npy_f32(
                    &maps.join(format!("{}.grad.npy", m.row)),
                    &m.gradient_shape,
                    &m.gradient,
                )?;
            }
        }
        let manifest = serde_json::to_string_pretty(&result.manifest)
            .map_err(|e| Error::Input(format!("cannot encode run.json: {e}")))?;
        let p = tmp.join("run.json");
        std::fs::write(&p, manifest + "\n").map_err(|e| Error::io(&p, e))
    })
}

/// Fills a hidden sibling of `out.dir` with `fill`, then renames it into place (replacing an
/// existing directory only with `out.overwrite`); on failure nothing is left behind.
pub(crate) fn write_dir_atomically(
    out: &OutputConfig,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    check_output_dir(out)?;
    let dir = &out.dir;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vog-results".into());
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = fill(&tmp).and_then(|()| {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    Ok(dir.clone())
}

pub(crate) fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn meta_keys(result: &RunResult) -> Vec<String> {
    let keys: BTreeSet<&String> = result.examples.iter().flat_map(|e| e.meta.keys()).collect();
    keys.into_iter().cloned().collect()
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub(crate) fn fmt_f64(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

fn write_csv(result: &RunResult, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let csv_err = |e: csv::Error| Error::Input(format!("{}: {e}", path.display()));
    let keys = meta_keys(result);
    let mut header: Vec<String> = [
        "id",
        "row",
        "split",
        "true_label",
        "label_used",
        "predicted",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(result.windows.iter().map(|w| format!("vog_{}", w.name)));
    header.extend(
        result
            .windows
            .iter()
            .map(|w| format!("vog_{}_norm", w.name)),
    );
    header.extend(result.extra_columns.iter().cloned());
    header.extend(["flagged".to_string(), "has_map".to_string()]);
    header.extend(keys.iter().map(|k| format!("meta.{k}")));
    w.write_record(&header).map_err(csv_err)?;
    let split = result.manifest.data.split.clone().unwrap_or_default();
    for e in &result.examples {
        let mut rec = vec![
            e.id.clone(),
            e.row.to_string(),
            split.clone(),
            fmt_opt(e.true_label),
            fmt_opt(e.label_used),
            fmt_opt(e.predicted),
        ];
        rec.extend(e.vog.iter().map(|&v| fmt_f64(v)));
        rec.extend(
            e.vog_norm
                .iter()
                .map(|v| v.map(fmt_f64).unwrap_or_default()),
        );
        rec.extend(e.extra.iter().map(|&v| fmt_f64(v)));
        rec.extend([e.flagged.to_string(), e.has_map.to_string()]);
        rec.extend(
            keys.iter()
                .map(|k| e.meta.get(k).map(csv_cell).unwrap_or_default()),
        );
        w.write_record(&rec).map_err(csv_err)?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

fn write_jsonl(result: &RunResult, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let split = result.manifest.data.split.clone();
    for e in &result.examples {
        let vog: Map<String, Value> = result
            .windows
            .iter()
            .zip(&e.vog)
            .map(|(w, &v)| (w.name.clone(), num(v)))
            .collect();
        let vog_norm: Map<String, Value> = result
            .windows
            .iter()
            .zip(&e.vog_norm)
            .map(|(w, v)| (w.name.clone(), v.map_or(Value::Null, num)))
            .collect();
        let scores: Map<String, Value> = result
            .extra_columns
            .iter()
            .zip(&e.extra)
            .map(|(c, &v)| (c.clone(), num(v)))
            .collect();
        let line = json!({
            "id": e.id,
            "row": e.row,
            "split": split,
            "true_label": e.true_label,
            "label_used": e.label_used,
            "predicted": e.predicted,
            "vog": vog,
            "vog_norm": vog_norm,
            "scores": scores,
            "flagged": e.flagged,
            "has_map": e.has_map,
            "meta": e.meta,
        });
        let mut line = line;
        if !e.trajectory.is_empty() {
            line["checkpoints"] = json!({
                "predicted": e.trajectory.iter().map(|t| t.0).collect::<Vec<_>>(),
                "margin": e.trajectory.iter().map(|t| num(t.1)).collect::<Vec<_>>(),
            });
        }
        serde_json::to_writer(&mut w, &line)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}
