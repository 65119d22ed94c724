//! Results directories: `scores.csv`, `scores.jsonl` and `run.json`, written whole or not at all.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{OutputConfig, OutputFormat};
use crate::results::{ExampleMap, ExampleScore, Manifest, RunResult};
use crate::{Error, Result};
use vog_core::Window;
use vog_results::{map_file, MapKind, ScoreRow, Trajectory, SCORES_CSV, SCORES_JSONL};

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
        let mut rows = RowWriter::create(
            tmp,
            &out.formats,
            &result.windows,
            &result.extra_columns,
            meta_keys(result),
            result.manifest.data.split.clone(),
        )?;
        for e in &result.examples {
            rows.write(e)?;
        }
        rows.finish()?;
        write_maps(tmp, &result.maps)?;
        write_manifest(tmp, &result.manifest)
    })
}

/// Writes `maps/ROW.vog.npy` and `maps/ROW.grad.npy` of each kept map into `dir`.
pub(crate) fn write_maps(dir: &Path, maps: &[ExampleMap]) -> Result<()> {
    let mut w = MapWriter::new(dir);
    maps.iter().try_for_each(|m| w.write(m))
}

/// Writes maps into `DIR/maps/` one at a time (the directory is created with the first).
pub(crate) struct MapWriter {
    dir: PathBuf,
    created: bool,
}

impl MapWriter {
    pub fn new(dir: &Path) -> Self {
        MapWriter {
            dir: dir.join(vog_results::MAPS_DIR),
            created: false,
        }
    }

    pub fn write(&mut self, m: &ExampleMap) -> Result<()> {
        if !self.created {
            std::fs::create_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            self.created = true;
        }
        vog_data::write_npy_f32(
            &self.dir.join(map_file(m.row as u64, MapKind::Vog)),
            &m.vog_map_shape,
            &m.vog_map,
        )?;
        vog_data::write_npy_f32(
            &self.dir.join(map_file(m.row as u64, MapKind::Grad)),
            &m.gradient_shape,
            &m.gradient,
        )?;
        Ok(())
    }
}

/// Writes `run.json` into `dir`.
pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let p = dir.join(vog_results::RUN_JSON);
    std::fs::write(&p, manifest.to_json()).map_err(|e| Error::io(&p, e))
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

/// A score as rows hold it: `None` when undefined (NaN or infinite).
pub(crate) fn defined(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
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

/// The line of `scores.jsonl` of one example (`windows` and `extra_columns` name its scores).
pub(crate) fn score_row(
    e: &ExampleScore,
    windows: &[String],
    extra_columns: &[String],
    split: Option<String>,
) -> ScoreRow {
    ScoreRow {
        checkpoints: (!e.trajectory.is_empty()).then(|| Trajectory {
            margin: e.trajectory.iter().map(|t| defined(t.1)).collect(),
            predicted: e.trajectory.iter().map(|t| t.0).collect(),
        }),
        flagged: e.flagged,
        has_map: e.has_map,
        id: e.id.clone(),
        label_used: e.label_used,
        meta: e.meta.clone(),
        predicted: e.predicted,
        row: e.row as u64,
        scores: extra_columns
            .iter()
            .cloned()
            .zip(e.extra.iter().map(|&v| defined(v)))
            .collect(),
        split,
        true_label: e.true_label,
        vog: windows
            .iter()
            .cloned()
            .zip(e.vog.iter().map(|&v| defined(v)))
            .collect(),
        vog_norm: windows
            .iter()
            .cloned()
            .zip(e.vog_norm.iter().map(|v| v.and_then(defined)))
            .collect(),
    }
}

/// Writes `scores.csv` and/or `scores.jsonl` one example at a time.
pub(crate) struct RowWriter {
    csv: Option<(PathBuf, csv::Writer<std::io::BufWriter<std::fs::File>>)>,
    jsonl: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    windows: Vec<String>,
    extra_columns: Vec<String>,
    keys: Vec<String>,
    split: Option<String>,
    record: Vec<String>,
}

impl RowWriter {
    /// Creates the files of `formats` in `dir` and writes the CSV header (`keys`: the metadata
    /// columns).
    pub fn create(
        dir: &Path,
        formats: &[OutputFormat],
        windows: &[Window],
        extra_columns: &[String],
        keys: Vec<String>,
        split: Option<String>,
    ) -> Result<Self> {
        let create = |name: &str| -> Result<(PathBuf, std::io::BufWriter<std::fs::File>)> {
            let path = dir.join(name);
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            Ok((path, std::io::BufWriter::with_capacity(1 << 16, file)))
        };
        let mut w = RowWriter {
            csv: None,
            jsonl: None,
            windows: windows.iter().map(|w| w.name.clone()).collect(),
            extra_columns: extra_columns.to_vec(),
            keys,
            split,
            record: Vec::new(),
        };
        for f in formats {
            match f {
                OutputFormat::Csv if w.csv.is_none() => {
                    let (path, file) = create(SCORES_CSV)?;
                    w.csv = Some((path, csv::Writer::from_writer(file)));
                }
                OutputFormat::Jsonl if w.jsonl.is_none() => w.jsonl = Some(create(SCORES_JSONL)?),
                _ => {}
            }
        }
        if let Some((path, csv)) = w.csv.as_mut() {
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
            header.extend(w.windows.iter().map(|w| format!("vog_{w}")));
            header.extend(w.windows.iter().map(|w| format!("vog_{w}_norm")));
            header.extend(w.extra_columns.iter().cloned());
            header.extend(["flagged".to_string(), "has_map".to_string()]);
            header.extend(w.keys.iter().map(|k| format!("meta.{k}")));
            csv.write_record(&header)
                .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        }
        Ok(w)
    }

    /// Writes one finished example.
    pub fn write(&mut self, e: &ExampleScore) -> Result<()> {
        if let Some((path, csv)) = self.csv.as_mut() {
            let rec = &mut self.record;
            rec.clear();
            rec.extend([
                e.id.clone(),
                e.row.to_string(),
                self.split.clone().unwrap_or_default(),
                fmt_opt(e.true_label),
                fmt_opt(e.label_used),
                fmt_opt(e.predicted),
            ]);
            rec.extend(e.vog.iter().map(|&v| fmt_f64(v)));
            rec.extend(
                e.vog_norm
                    .iter()
                    .map(|v| v.map(fmt_f64).unwrap_or_default()),
            );
            rec.extend(e.extra.iter().map(|&v| fmt_f64(v)));
            rec.extend([e.flagged.to_string(), e.has_map.to_string()]);
            rec.extend(
                self.keys
                    .iter()
                    .map(|k| e.meta.get(k).map(csv_cell).unwrap_or_default()),
            );
            csv.write_record(&*rec)
                .map_err(|err| Error::Input(format!("{}: {err}", path.display())))?;
        }
        if let Some((path, w)) = self.jsonl.as_mut() {
            let line = score_row(e, &self.windows, &self.extra_columns, self.split.clone());
            serde_json::to_writer(&mut *w, &line)
                .map_err(|err| Error::Input(format!("{}: {err}", path.display())))?;
            w.write_all(b"\n").map_err(|err| Error::io(&*path, err))?;
        }
        Ok(())
    }

    /// Flushes the files.
    pub fn finish(self) -> Result<()> {
        if let Some((path, mut csv)) = self.csv {
            csv.flush().map_err(|e| Error::io(&path, e))?;
        }
        if let Some((path, mut w)) = self.jsonl {
            w.flush().map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}
