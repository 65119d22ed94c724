//! The **vog** scoring engine.
//!
//! [`score`] runs a whole scoring job from a [`Config`]: it finds and orders the checkpoints,
//! opens the data, streams batches through every checkpoint with a
//! [`GradientBackend`](vog_core::GradientBackend) (or reads stored gradients), folds each gradient
//! into the running VoG statistics, feeds per-checkpoint logits to the reducers, and
//! class-normalizes at the end. [`write_results`] then writes the results directory atomically.
//!
//! ```no_run
//! # fn main() -> Result<(), vog_engine::Error> {
//! use vog_engine::{score, write_results, Config, Silent};
//!
//! // Stored gradients need no backend; checkpoints take `Some(&backend)`.
//! let config = Config::from_file("config/stored-gradients.toml".as_ref())?;
//! let result = score(&config, None, &Silent)?;
//! write_results(&result, &config.output)?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod affinity;
mod backend_pass;
pub mod config;
mod decide;
pub mod discover;
mod engine;
mod error;
pub mod evaluate;
mod inputs;
mod maps;
pub mod merge;
mod output;
mod pipeline;
pub mod plan;
mod prepare;
mod results;
mod rowfile;
mod select;
mod sink;
pub mod spill;
pub mod stats;
mod stored;

pub use config::{ByteSize, Config, LabelMode, SecondTarget, Shard};
pub use engine::{score, score_to_dir, Written};
pub use error::{Error, Result};
pub use output::{check_output_dir, write_results};
pub use plan::{WorkOrder, WorkPlan};
pub use results::{
    CheckpointRecord, ClassEntry, DataSummary, ExampleScore, GradientSource, Manifest, Progress,
    RunResult, ScoringSummary, Silent, Timings,
};
