//! What a scoring run produces, in memory: per-example scores and kept maps, the manifest
//! written to `run.json`, and the progress callback. The engine fills these; the writers
//! (`output`), the selection (`select`) and the spill read them, so they live apart from the
//! scoring loop.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use vog_core::{BackendInfo, ClassSummary, Window};
use vog_data::Record;

use crate::config::{Config, LabelMode};

/// Receives progress of a long run (the CLI draws a bar; libraries stay silent).
pub trait Progress: Sync {
    /// Work begins: `total` examples.
    fn start(&self, _total: u64, _message: &str) {}
    /// `n` more examples are done.
    fn advance(&self, _n: u64) {}
    /// Work ended.
    fn finish(&self) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

/// Scores of one example.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleScore {
    /// Position in the dataset.
    pub row: usize,
    /// Example id (from the dataset, an ids file, a stored-gradient file name, or the row).
    pub id: String,
    /// The dataset's label, when there is one.
    pub true_label: Option<u32>,
    /// The class used for scoring and normalization.
    pub label_used: Option<u32>,
    /// The last checkpoint's prediction (not available for stored gradients).
    pub predicted: Option<u32>,
    /// Raw VoG per window.
    pub vog: Vec<f64>,
    /// Class-normalized VoG per window (`None` without a label to normalize within).
    pub vog_norm: Vec<Option<f64>>,
    /// Reducer scores, in the order of [`RunResult::extra_columns`]; NaN when undefined.
    pub extra: Vec<f64>,
    /// Metadata joined to the example.
    pub meta: Record,
    /// Flagged by the `[flag]` policy.
    pub flagged: bool,
    /// Whether its VoG map and last-checkpoint gradient were kept (see [`RunResult::maps`]).
    pub has_map: bool,
    /// Per checkpoint, in checkpoint order: the predicted class and the margin of the class used
    /// (its logit minus the largest other logit). Empty for stored gradients (no logits).
    pub trajectory: Vec<(u32, f64)>,
}

/// The per-element VoG map and the last checkpoint's input gradient of one flagged example.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleMap {
    /// Row of the example.
    pub row: usize,
    /// Standard deviation across the flag window's checkpoints, per element, channels reduced.
    pub vog_map: Vec<f32>,
    /// Shape of `vog_map`.
    pub vog_map_shape: Vec<usize>,
    /// The last checkpoint's input gradient of the example.
    pub gradient: Vec<f32>,
    /// Shape of `gradient`.
    pub gradient_shape: Vec<usize>,
}

/// One checkpoint as recorded in the manifest.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientSource {
    /// Computed by a backend from checkpoints.
    Backend,
    /// Read from stored `.npy` files.
    StoredGradients,
}

/// Summary of the data scored.
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_rows: Option<[usize; 2]>,
}

/// How scoring was done.
#[derive(Debug, Clone, Serialize)]
pub struct ScoringSummary {
    /// Label mode after resolving `auto`; `null` when stored gradients come without labels.
    pub labels: Option<LabelMode>,
    /// Logit or probability (`null` for stored gradients).
    pub target: Option<vog_core::Target>,
    /// The target of the second VoG (windows `WINDOW_TARGET`), when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_target: Option<vog_core::Target>,
    /// Checkpoint position (1-based) of `el2n`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub el2n_checkpoint: Option<usize>,
    /// Channel reduction.
    pub channels: vog_core::ChannelReduce,
    /// Shape of the per-element statistics (the VoG map).
    pub vog_map_shape: Vec<usize>,
    /// Windows scored.
    pub windows: Vec<Window>,
    /// Number of classes the model produces.
    pub num_classes: Option<usize>,
    /// Examples per pass.
    pub batch_size: usize,
    /// How checkpoints and examples were visited (absent for stored gradients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_order: Option<crate::plan::WorkSummary>,
}

/// Class statistics of one window, as used for normalization.
#[derive(Debug, Clone, Serialize)]
pub struct ClassEntry {
    /// Class index.
    pub class: u32,
    /// Count, mean and std of the raw VoG.
    #[serde(flatten)]
    pub summary: ClassSummary,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Default, Serialize)]
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

/// Everything `run.json` records about a run.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
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
    pub config: Config,
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
}

/// The result of a scoring run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Windows, in column order.
    pub windows: Vec<Window>,
    /// Names of the reducer columns.
    pub extra_columns: Vec<String>,
    /// One entry per example, in dataset order.
    pub examples: Vec<ExampleScore>,
    /// Maps of flagged examples (bounded by `flag.max_maps` and `flag.max_map_bytes`).
    pub maps: Vec<ExampleMap>,
    /// The manifest.
    pub manifest: Manifest,
}
