//! Reports of **vog** runs: one self-contained HTML page per run ([`Report`]: per-class score
//! distributions, error rate by VoG decile, a data map, the highest- and lowest-scored examples
//! of each class with their heat maps, a summary), read from a results directory or an audit
//! store, and the SVG scatter plots of the experiments ([`svg`]).
//!
//! `vog report` writes the page to a file; `vog serve` renders it at `/report/RUN`.
//!
//! ```no_run
//! let report = vog_report::Report::open("results".as_ref(), None)?;
//! report.write(8, "report.html".as_ref())?;
//! # Ok::<(), vog_report::Error>(())
//! ```

#![deny(missing_docs)]

mod html;
pub mod input;
mod png;
mod report;
pub mod svg;

pub use html::escape;

/// Examples shown per class at each end of the ranking, unless asked otherwise.
pub const DEFAULT_PER_CLASS: usize = 6;
pub use report::Report;

use std::path::PathBuf;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The results directory could not be read.
    #[error(transparent)]
    Results(#[from] vog_results::Error),
    /// The audit store could not be read.
    #[error(transparent)]
    Store(#[from] vog_store::Error),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a `source()`, so `{:#}` prints it once).
        error: std::io::Error,
    },
    /// The input is not something a report can be made of.
    #[error("{0}")]
    Input(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}
