use std::path::PathBuf;

/// Errors reading a results directory. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a `source()`, so `{:#}` prints it once).
        error: std::io::Error,
    },
    /// A file is not what vog writes.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where (line, field).
        message: String,
    },
    /// `run.json` was written in another results format.
    #[error(
        "{path}: results format {found}, this vog reads format {expected}; score the run again \
         with this version of vog (or read it with the version that wrote it)",
        found = found.map_or_else(|| "without a version (written before vog recorded one)".to_string(), |v| v.to_string())
    )]
    Version {
        /// The `run.json`.
        path: PathBuf,
        /// Its `format`, if it has one.
        found: Option<u64>,
        /// The format this crate reads and writes.
        expected: u32,
    },
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

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Format {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
