//! The experiments behind vog's documented results, as a library the command line (and anyone
//! else) calls: the paper's toy experiment ([`demo`], `vog demo`) and the study that writes
//! docs/RESULTS.md ([`reproduce`], `vog reproduce`). Both train small candle models, score them
//! through the real engine and write every artefact they report on.
//!
//! They are application code: errors are [`anyhow::Error`]s that name the file or step.

#![deny(missing_docs)]

pub mod demo;
pub mod metrics;
pub mod reproduce;

pub use demo::{Correlation, DemoOptions, DemoSummary};
pub use reproduce::ReproduceOptions;
