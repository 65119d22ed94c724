use std::path::PathBuf;

/// Errors of a scoring run. Every message names the file, field or checkpoint involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the field and the fix.
    #[error("{0}")]
    Config(String),
    /// Inputs do not fit together (data versus model, labels versus classes, ids versus rows).
    #[error("{0}")]
    Input(String),
    /// The run was stopped between batches because [`Progress::interrupted`] said so (Ctrl-C in
    /// a host that watches for it); nothing was written but a `--resume` journal.
    ///
    /// [`Progress::interrupted`]: crate::Progress::interrupted
    #[error("interrupted")]
    Interrupted,
    /// A thread of the scoring pipeline could not start or stopped without its own error (a bug
    /// or an exhausted resource, never bad input).
    #[error("{0}")]
    Pipeline(String),
    /// A dataset, label, id or metadata file could not be read.
    #[error(transparent)]
    Data(#[from] vog_data::Error),
    /// A backend or statistics error, with the checkpoint and rows it happened at.
    #[error("{context}")]
    Step {
        /// Where it happened ("checkpoint 3 of 10 (epoch_3.safetensors), rows 64..128").
        context: String,
        /// What happened.
        #[source]
        source: vog_core::Error,
    },
    /// A results directory could not be read (merge, evaluate).
    #[error(transparent)]
    Results(#[from] vog_results::Error),
    /// A core error without more context.
    #[error(transparent)]
    Core(#[from] vog_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error (shown in the message; not a `source()`, so `{:#}` prints it once).
        error: std::io::Error,
    },
}

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
}
