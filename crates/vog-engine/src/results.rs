//! What a scoring run produces, in memory: per-example scores and kept maps, the manifest
//! written to `run.json`, and the progress callback. The engine fills these; the writers
//! (`output`), the selection (`select`) and the spill read them, so they live apart from the
//! scoring loop.

use vog_core::Window;
use vog_data::Record;

use crate::config::Config;

/// Receives progress of a long run (the CLI draws a bar; libraries stay silent).
pub trait Progress: Sync {
    /// Work begins: `total` examples.
    fn start(&self, _total: u64, _message: &str) {}
    /// `n` more examples are done.
    fn advance(&self, _n: u64) {}
    /// Work ended.
    fn finish(&self) {}
    /// Whether the run should stop now. The engine asks between batches, on the thread that
    /// called it, and ends the run with [`Error::Interrupted`](crate::Error::Interrupted) when
    /// the answer is `true` (a Python host answers from its pending signals, so Ctrl-C stops a
    /// run whose backend is native code).
    fn interrupted(&self) -> bool {
        false
    }
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

/// The manifest the engine writes: `run.json` with the configuration as run, typed.
pub type Manifest = vog_results::Manifest<Config>;

pub use vog_results::{
    CheckpointRecord, ClassEntry, DataSummary, GradientSource, ScoringSummary, Timings,
};

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
