//! `run.json`: how a run was made. [`Manifest`] is written by the engine with its typed
//! configuration (`Manifest<vog_engine::Config>`) and read by everyone else with the
//! configuration left as JSON (`Manifest`, i.e. `Manifest<serde_json::Value>`): readers need the
//! run's settings, not the engine's configuration type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vog_core::{BackendInfo, ChannelReduce, ClassSummary, Target, Window};

use crate::{Error, Result};

/// The results format this crate writes and reads (`run.json`'s `format`). Bump it when a
/// reader of the previous format would misread the new one; readers refuse any other.
pub const FORMAT: u32 = 1;

/// Which class's score is differentiated, per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// `true` when the dataset has labels, else `predicted`.
    #[default]
    Auto,
    /// The dataset's labels.
    True,
    /// The last checkpoint's argmax, held fixed across checkpoints (label-free, test-time mode).
    Predicted,
    /// Each checkpoint's own argmax.
    PredictedEach,
}

impl LabelMode {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelMode::Auto => "auto",
            LabelMode::True => "true",
            LabelMode::Predicted => "predicted",
            LabelMode::PredictedEach => "predicted-each",
        }
    }
}

/// How checkpoints and examples are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkOrder {
    /// Every checkpoint loaded; batches stream through all of them.
    Resident,
    /// Chunks of examples; one checkpoint loaded at a time, once per chunk.
    Chunked,
}

impl WorkOrder {
    /// The name written to manifests and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkOrder::Resident => "resident",
            WorkOrder::Chunked => "chunked",
        }
    }
}

/// The work order as recorded in `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkSummary {
    /// Resident or chunked.
    pub order: WorkOrder,
    /// Examples per chunk (one batch when resident).
    pub chunk_rows: usize,
    /// The budget, in bytes, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
    /// The estimate the order was chosen from, in bytes.
    pub estimated_bytes: u64,
}

/// One checkpoint as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Position in training order (0-based).
    pub position: usize,
    /// The file or directory.
    pub path: PathBuf,
    /// Size in bytes (sum of files for a directory).
    pub bytes: u64,
    /// SHA-256 of the file (of the concatenated files, in order, for a directory).
    pub sha256: String,
}

/// Where gradients came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientSource {
    /// Computed by a backend from checkpoints.
    Backend,
    /// Read from stored `.npy` files.
    StoredGradients,
}

/// Summary of the data scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Examples file (absent for stored gradients).
    pub path: Option<PathBuf>,
    /// Number of examples.
    pub rows: usize,
    /// Shape of one example as stored.
    pub example_shape: Vec<usize>,
    /// Shape of one example as given to the model (after `input_shape`).
    pub model_input_shape: Vec<usize>,
    /// Labels file or column, if any.
    pub labels: Option<String>,
    /// Split name.
    pub split: Option<String>,
    /// Examples whose id found no metadata record.
    pub metadata_missing: usize,
    /// The rows `[start, end)` this run scored, when it is one shard of a larger run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_rows: Option<[usize; 2]>,
}

/// How scoring was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringSummary {
    /// Label mode after resolving `auto`; `null` when stored gradients come without labels.
    pub labels: Option<LabelMode>,
    /// Logit or probability (`null` for stored gradients).
    pub target: Option<Target>,
    /// The target of the second VoG (windows `WINDOW_TARGET`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_target: Option<Target>,
    /// Checkpoint position (1-based) of `el2n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub el2n_checkpoint: Option<usize>,
    /// Channel reduction.
    pub channels: ChannelReduce,
    /// Shape of the per-element statistics (the VoG map).
    pub vog_map_shape: Vec<usize>,
    /// Windows scored.
    pub windows: Vec<Window>,
    /// The panel's score columns in the order `scores.csv` holds them, after the VoG columns
    /// (absent for stored gradients, and in runs of vog before the Python package).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Number of classes the model produces.
    pub num_classes: Option<usize>,
    /// Examples per pass.
    pub batch_size: usize,
    /// How checkpoints and examples were visited (absent for stored gradients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<WorkSummary>,
}

/// Class statistics of one window, as used for normalization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    /// Class index.
    pub class: u32,
    /// Count, mean and std of the raw VoG.
    #[serde(flatten)]
    pub summary: ClassSummary,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Opening data and loading checkpoints.
    pub load_s: f64,
    /// Hashing checkpoint files for the manifest.
    pub hash_s: f64,
    /// The scoring loop.
    pub score_s: f64,
    /// Time inside backend calls (part of `score_s`).
    pub backend_s: f64,
    /// Loading checkpoints again, once per chunk, in the chunked work order (part of `score_s`).
    pub reload_s: f64,
}

impl Timings {
    /// The sum of two runs' timings (shards merged into one run).
    pub fn add(&self, other: &Timings) -> Timings {
        Timings {
            load_s: self.load_s + other.load_s,
            hash_s: self.hash_s + other.hash_s,
            score_s: self.score_s + other.score_s,
            backend_s: self.backend_s + other.backend_s,
            reload_s: self.reload_s + other.reload_s,
        }
    }
}

/// Where a merged run came from (`vog merge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedFrom {
    /// Number of shards.
    pub shards: usize,
    /// The shards' results directories, as given.
    pub dirs: Vec<String>,
}

/// Everything `run.json` records about a run. `C` is the configuration as run: the engine's
/// typed `Config` when writing, JSON when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest<C = serde_json::Value> {
    /// The results format ([`FORMAT`]); readers refuse any other.
    pub format: u32,
    /// `vog` and its version.
    pub tool: BTreeMap<String, String>,
    /// When the run finished (UTC, RFC 3339).
    pub created_utc: String,
    /// Backend or stored gradients.
    pub source: GradientSource,
    /// The backend, when one was used.
    pub backend: Option<BackendInfo>,
    /// The plugin library the backend came from (`null` for a built-in backend).
    pub backend_library: Option<PathBuf>,
    /// The configuration as run (CLI overrides applied).
    pub config: C,
    /// The data.
    pub data: DataSummary,
    /// Checkpoints in training order.
    pub checkpoints: Vec<CheckpointRecord>,
    /// Scoring settings.
    pub scoring: ScoringSummary,
    /// Per-window class statistics.
    pub classes: BTreeMap<String, Vec<ClassEntry>>,
    /// Examples flagged by the `[flag]` policy.
    pub flagged: usize,
    /// Flagged examples whose VoG map and last gradient were kept (`maps/ROW.vog.npy`,
    /// `maps/ROW.grad.npy`).
    pub maps: usize,
    /// Warnings raised during the run.
    pub warnings: Vec<String>,
    /// Time per phase.
    pub timings: Timings,
    /// The shards this run was merged from (`vog merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<MergedFrom>,
}

impl<C> Manifest<C> {
    /// The names of the run's windows, in column order.
    pub fn window_names(&self) -> Vec<&str> {
        self.scoring
            .windows
            .iter()
            .map(|w| w.name.as_str())
            .collect()
    }

    /// The window results are ranked by: `all` when the run has it, else its first window;
    /// `None` for a run without windows.
    pub fn main_window(&self) -> Option<&str> {
        let names = self.window_names();
        if names.contains(&"all") {
            Some("all")
        } else {
            names.first().copied()
        }
    }
}

impl<C: Serialize> Manifest<C> {
    /// `run.json`'s text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest is JSON") + "\n"
    }

    /// Writes `run.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(crate::RUN_JSON);
        std::fs::write(&path, self.to_json()).map_err(|e| Error::io(&path, e))
    }
}

impl Manifest {
    /// Reads a `run.json` file, refusing another results format.
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Manifest::parse(&text, path)
    }

    /// Parses `run.json` text (`path` names it in errors), refusing another results format.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("not a vog manifest: {e}")))?;
        let found = value.get("format").and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT)) {
            if value.get("tool").is_none() && value.get("scoring").is_none() {
                return Err(Error::format(path, "not a vog manifest (run.json)"));
            }
            return Err(Error::Version {
                path: path.to_path_buf(),
                found,
                expected: FORMAT,
            });
        }
        serde_json::from_value(value)
            .map_err(|e| Error::format(path, format!("not a vog manifest: {e}")))
    }

    /// How the run's input data is read again (drawing examples, resolving assets): the
    /// `[data]` settings the run was made with. Fields absent from the configuration are `None`.
    pub fn input(&self) -> InputSettings {
        let data = self.config.get("data").cloned().unwrap_or_default();
        let mut s: InputSettings = serde_json::from_value(data).unwrap_or_default();
        if let Some(p) = &self.data.path {
            s.path = Some(p.clone());
        }
        s
    }

    /// `(index, count)` of a run scored with `--shard index/count`.
    pub fn shard(&self) -> Option<(usize, usize)> {
        let s = self.config.get("shard")?;
        let index = s.get("index")?.as_u64()?;
        let count = s.get("count")?.as_u64()?;
        Some((index as usize, count as usize))
    }
}

/// The `[data]` settings a reader needs to open a run's input data again.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InputSettings {
    /// The examples file (the manifest's `data.path`, which has relative paths resolved).
    pub path: Option<PathBuf>,
    /// Its format, when set (`npy`, `npz`, `idx`, `csv`).
    pub format: Option<String>,
    /// The array of an `.npz` file.
    pub key: Option<String>,
    /// CSV: the label column.
    pub label_column: Option<String>,
    /// CSV: the id column.
    pub id_column: Option<String>,
    /// CSV: the feature columns.
    pub features: Option<Vec<String>>,
    /// The metadata file joined by id.
    pub metadata: Option<PathBuf>,
    /// The shape the model saw one example in.
    pub input_shape: Option<Vec<usize>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(format: Option<u32>) -> String {
        let mut v = serde_json::json!({
            "tool": {"name": "vog", "version": "0.1.0"},
            "created_utc": "2026-01-01T00:00:00Z",
            "source": "backend",
            "backend": null,
            "backend_library": null,
            "config": {"data": {"path": "x.npy", "input_shape": [1, 2, 2]}, "shard": {"index": 1, "count": 3}},
            "data": {"path": "/abs/x.npy", "rows": 3, "example_shape": [4], "model_input_shape": [1, 2, 2],
                     "labels": null, "split": null, "metadata_missing": 0},
            "checkpoints": [],
            "scoring": {"labels": "predicted", "target": "logit", "channels": "mean", "vog_map_shape": [2, 2],
                        "windows": [{"name": "early", "start": 0, "end": 1}, {"name": "all", "start": 0, "end": 2}],
                        "num_classes": 2, "batch_size": 8},
            "classes": {},
            "flagged": 0, "maps": 0, "warnings": [],
            "timings": {"load_s": 0.0, "hash_s": 0.0, "score_s": 0.0, "backend_s": 0.0, "reload_s": 0.0}
        });
        if let Some(f) = format {
            v["format"] = f.into();
        }
        v.to_string()
    }

    #[test]
    fn reads_its_format_and_refuses_others() {
        let p = Path::new("run.json");
        let m = Manifest::parse(&manifest_json(Some(FORMAT)), p).unwrap();
        assert_eq!(m.window_names(), ["early", "all"]);
        assert_eq!(m.main_window(), Some("all"));
        assert_eq!(m.shard(), Some((1, 3)));
        let input = m.input();
        assert_eq!(input.path.as_deref(), Some(Path::new("/abs/x.npy")));
        assert_eq!(input.input_shape, Some(vec![1, 2, 2]));
        // Written and read back unchanged.
        let again = Manifest::parse(&m.to_json(), p).unwrap();
        assert_eq!(again, m);

        let old = Manifest::parse(&manifest_json(None), p).unwrap_err();
        assert!(matches!(old, Error::Version { found: None, .. }), "{old}");
        assert!(old.to_string().contains("without a version"), "{old}");
        let newer = Manifest::parse(&manifest_json(Some(FORMAT + 1)), p).unwrap_err();
        assert!(newer
            .to_string()
            .contains(&format!("results format {}", FORMAT + 1)));
        let other = Manifest::parse(r#"{"format": 99, "created_by": "x"}"#, p).unwrap_err();
        assert!(other.to_string().contains("not a vog manifest"), "{other}");
        let broken = Manifest::parse("{", p).unwrap_err();
        assert!(
            broken
                .to_string()
                .starts_with("run.json: not a vog manifest"),
            "{broken}"
        );
    }

    #[test]
    fn the_main_window_is_all_or_the_first() {
        let mut m = Manifest::parse(&manifest_json(Some(FORMAT)), Path::new("r")).unwrap();
        m.scoring.windows.retain(|w| w.name != "all");
        assert_eq!(m.main_window(), Some("early"));
        m.scoring.windows.clear();
        assert_eq!(m.main_window(), None);
    }
}
