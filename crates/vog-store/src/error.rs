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
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (shown in the message; not a `source()`, so `{:#}` prints it once).
        error: std::io::Error,
    },
    /// A results directory could not be read.
    #[error(transparent)]
    Results(#[from] vog_results::Error),
    /// The search index failed.
    #[error("search index: {0}")]
    Index(tantivy::TantivyError),
    /// The review database failed.
    #[error("review database: {0}")]
    Db(rusqlite::Error),
}

/// Result alias of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
}

// The index and database errors are shown in the message and not exposed as `source()`, so that
// `{:#}` (anyhow's chain) prints them once.
impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Index(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Db(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_printed_once() {
        let io = Error::io("/x/run.json", std::io::Error::other("denied"));
        assert_eq!(io.to_string(), "/x/run.json: denied");
        assert!(std::error::Error::source(&io).is_none());
        let db = Error::from(rusqlite::Error::InvalidQuery);
        assert!(db.to_string().starts_with("review database: "));
        assert!(std::error::Error::source(&db).is_none());
    }
}
