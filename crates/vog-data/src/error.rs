use std::path::{Path, PathBuf};

/// Errors raised while reading datasets, labels, ids and metadata.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error (shown in the message; not a `source()`, so `{:#}` prints it once).
        error: std::io::Error,
    },
    /// The file is not in the format it claims, or is damaged.
    #[error("{path}: {message}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file ends before the data its header promises.
    #[error(
        "{path}: truncated: header promises {expected} bytes of data, the file holds {actual}"
    )]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// Bytes of data the header promises.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// Files that must agree do not (row counts, ids, shapes).
    #[error("{0}")]
    Mismatch(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }

    pub(crate) fn format(path: &Path, message: impl std::fmt::Display) -> Self {
        Error::Format {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}
