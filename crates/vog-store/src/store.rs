//! Opening a store: the directory layout, the format version, the index and the review database.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy};

use crate::schema::{self, Fields};
use crate::{Error, Result};

/// The store format this build reads and writes.
pub const FORMAT: u32 = 2;

/// `store.json`: what a store directory says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Store format version.
    pub format: u32,
    /// The tool that created it.
    pub created_by: String,
}

/// An audit store: a tantivy index of scored examples and a SQLite database of review state.
pub struct Store {
    pub(crate) dir: PathBuf,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    db: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, dataset TEXT NOT NULL, split TEXT NOT NULL, score_window TEXT NOT NULL,
    examples INTEGER NOT NULL, indexed_utc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, reviewer TEXT NOT NULL,
    decision TEXT NOT NULL, label INTEGER, note TEXT, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_by_key ON decisions(key, seq);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, query TEXT NOT NULL, ord TEXT NOT NULL, created_utc TEXT NOT NULL,
    items INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue_items (
    queue TEXT NOT NULL, pos INTEGER NOT NULL, key TEXT NOT NULL, claimed_by TEXT,
    claimed_until INTEGER, PRIMARY KEY (queue, key));
CREATE INDEX IF NOT EXISTS queue_items_by_pos ON queue_items(queue, pos);
CREATE INDEX IF NOT EXISTS queue_items_by_key ON queue_items(key);
CREATE TABLE IF NOT EXISTS assets (run TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (run, path));
";

/// Columns added to tables of format 2 after it was first released: added when missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("queues", "dropped", "INTEGER NOT NULL DEFAULT 0")];

impl Store {
    /// Opens the store in `dir`, creating it when the directory does not exist or is empty.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        let empty = !dir.exists()
            || std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_none();
        if empty {
            std::fs::create_dir_all(dir.join("index")).map_err(|e| Error::io(dir, e))?;
            let info = StoreInfo {
                format: FORMAT,
                created_by: format!("vog {}", env!("CARGO_PKG_VERSION")),
            };
            let text = serde_json::to_string_pretty(&info).expect("serializable") + "\n";
            std::fs::write(dir.join("store.json"), text)
                .map_err(|e| Error::io(dir.join("store.json"), e))?;
            let (schema, _) = schema::build();
            Index::create_in_dir(dir.join("index"), schema)?;
        }
        Self::open(dir)
    }

    /// Opens an existing store; another format version is an error.
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |message: String| Error::Store {
            path: dir.to_path_buf(),
            message,
        };
        let info_path = dir.join("store.json");
        let text = std::fs::read_to_string(&info_path)
            .map_err(|_| bad("not a vog store (no store.json); create one with `vog score --store` or `vog index`".into()))?;
        let info: StoreInfo = serde_json::from_str(&text)
            .map_err(|e| bad(format!("store.json is not valid: {e}")))?;
        if info.format != FORMAT {
            return Err(bad(format!(
                "store format {} (created by {}); this vog reads format {FORMAT}: index the runs \
                 into a new store with `vog index RESULTS --store NEW` (decisions: `vog export` from \
                 the old vog, then `vog review --stdin`)",
                info.format, info.created_by
            )));
        }
        let index = Index::open_in_dir(dir.join("index"))
            .map_err(|e| bad(format!("cannot open the search index: {e}")))?;
        let (_, fields) = schema::build();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let db = rusqlite::Connection::open(dir.join("review.db"))?;
        db.busy_timeout(Duration::from_secs(60))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(SCHEMA_SQL)?;
        for (table, column, definition) in ADDED_COLUMNS {
            let present: i64 = db.query_row(
                "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )?;
            if present == 0 {
                let added = db.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ));
                // Another process opening the store may have added it meanwhile.
                if let Err(e) = added {
                    if !e.to_string().contains("duplicate column") {
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            db: Mutex::new(db),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the index writer (one per index across processes), waiting up to `patience` for
    /// another process to release it. `None` when it stays busy.
    pub(crate) fn writer(&self, patience: Duration) -> Result<Option<IndexWriter>> {
        let start = Instant::now();
        loop {
            match self.index.writer(50_000_000) {
                Ok(w) => return Ok(Some(w)),
                Err(tantivy::TantivyError::LockFailure(..)) if start.elapsed() < patience => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(tantivy::TantivyError::LockFailure(..)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reloads the reader so that searches see the latest commit.
    pub(crate) fn refresh(&self) -> Result<()> {
        self.reader.reload()?;
        Ok(())
    }

    /// Directory holding a run's files (manifest, VoG maps).
    pub fn run_dir(&self, run: &str) -> PathBuf {
        self.dir.join("runs").join(run)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
