//! The error type shared by the core crate and the backends built on it.

use std::path::PathBuf;

/// Errors raised by the core crate and by gradient backends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error (shown in the message; not a `source()`, so `{:#}` prints it once).
        error: std::io::Error,
    },
    /// A checkpoint file exists but cannot be used (truncated, corrupt, missing tensors).
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Tensor shapes do not fit together (data versus model, gradient versus input).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A class index is outside the model's output range.
    #[error("class index {class} out of range for a model with {num_classes} classes (row {row})")]
    ClassOutOfRange {
        /// The offending class index.
        class: u32,
        /// Number of classes the model produces.
        num_classes: usize,
        /// Row within the batch.
        row: usize,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("non-finite value in {what} (row {row}, element {element})")]
    NonFinite {
        /// What held the value ("gradient", "logits").
        what: &'static str,
        /// Row within the batch.
        row: usize,
        /// Element within the row.
        element: usize,
    },
    /// Backend options or configuration values are invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The backend failed for a reason of its own.
    #[error("{backend} backend: {message}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What went wrong.
        message: String,
    },
    /// Invalid arguments to a statistics routine (no checkpoints, mismatched lengths).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias used throughout the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for a backend error.
    pub fn backend(backend: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.to_string(),
        }
    }

    /// Shorthand for a checkpoint error.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
