//! The results directory of a vog run, as typed values: the one place that says what
//! `vog score` writes and what every reader (merge, evaluate, the store, the server, the report)
//! reads.
//!
//! ```text
//! RESULTS/
//!   run.json         Manifest: how the run was made (format version first)
//!   scores.jsonl     one ScoreRow per line, in dataset order
//!   scores.csv       the same rows, flat (columns named as ScoreRow::columns names them)
//!   maps/ROW.vog.npy the per-element VoG map of a flagged example   (map_file, MapKind::Vog)
//!   maps/ROW.grad.npy its last checkpoint's input gradient            (map_file, MapKind::Grad)
//! ```
//!
//! A score column has one name everywhere: `vog_WINDOW`, `vog_WINDOW_norm`, or a panel name
//! (`margin_mean`, `el2n`, …). [`ScoreRow::columns`] lists a row's columns under those names,
//! [`ScoreRow::column`] reads one; the CSV header, the store's `scores.*` fields, the report and
//! `vog evaluate` use the same names.
//!
//! ```no_run
//! use vog_results::{MapKind, ResultsDir};
//!
//! let run = ResultsDir::open("results".as_ref())?;
//! println!("{} checkpoints", run.manifest().checkpoints.len());
//! for row in run.rows()? {
//!     let row = row?;
//!     if row.flagged && row.has_map {
//!         println!("{} {}", row.id, run.map_path(row.row, MapKind::Vog).display());
//!     }
//! }
//! # Ok::<(), vog_results::Error>(())
//! ```

#![deny(missing_docs)]

mod dir;
mod error;
mod manifest;
mod row;

pub use dir::{map_file, MapKind, ResultsDir, Rows, MAPS_DIR, RUN_JSON, SCORES_CSV, SCORES_JSONL};
pub use error::{Error, Result};
pub use manifest::{
    CheckpointRecord, ClassEntry, DataSummary, GradientSource, InputSettings, LabelMode, Manifest,
    MergedFrom, ScoringSummary, Timings, WorkOrder, WorkSummary, FORMAT,
};
pub use row::{ScoreRow, Trajectory};
