use std::path::PathBuf;

/// Errors of the audit store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory is not a store, or a store of another format version.
    #[error("{path}: {message}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A query that does not parse; the message gives the position.
    #[error("bad query `{query}`: {message}")]
    Query {
        /// The query text.
        query: String,
        /// What is wrong and where.
        message: String,
    },
    /// Input that does not fit (results files, ids, decisions, queue names).
    #[error("{0}")]
    Input(String),
    /// The request conflicts with the review state: another reviewer holds the example.
    #[error("{0}")]
    Conflict(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The search index failed.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The review database failed.
    #[error("review database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Result alias of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
