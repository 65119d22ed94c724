//! The **vog** audit store: scored examples indexed for search (tantivy), and review state kept
//! durably (SQLite), in one directory.
//!
//! ```text
//! STORE/store.json          format version
//! STORE/index/              tantivy index, one document per example per run
//! STORE/review.db           decisions (with history), queues, claims
//! STORE/runs/RUN/run.json   the run's manifest
//! STORE/runs/RUN/maps/      VoG maps and last-checkpoint gradients of flagged examples
//! ```
//!
//! ```no_run
//! use vog_store::{SearchRequest, Store};
//! let store = Store::open_or_create("audit".as_ref())?;
//! store.index_results("results/mnist-test".as_ref(), &Default::default())?;
//! let hits = store.search(&SearchRequest {
//!     query: Some("meta.camera:b".into()),
//!     class: Some(3),
//!     min_score: Some(2.0),
//!     status: Some("unreviewed".into()),
//!     limit: 20,
//!     ..Default::default()
//! })?;
//! println!("{} matches", hits.total);
//! # Ok::<(), vog_store::Error>(())
//! ```

#![deny(missing_docs)]

mod error;
mod export;
mod import;
mod names;
mod review;
pub mod schema;
mod search;
mod store;

pub use error::{Error, Result};
pub use export::ExportFormat;
pub use import::{asset_path, read_class_names, ImportOptions, ImportSummary, IMAGE_EXTENSIONS};
pub use names::check_run_name;
pub use review::{
    check_reviewer, Claim, Decision, DecisionRecord, QueueStatus, ReviewState, DECISIONS,
    MAX_NOTE_CHARS, MAX_REVIEWER_CHARS, ORDERS,
};
pub use search::{
    check_query, Counts, SearchRequest, SearchResults, MAX_LIMIT, MAX_OFFSET, MAX_QUERY_BYTES,
    MAX_QUERY_DEPTH,
};
pub use store::{Store, StoreInfo, FORMAT};
