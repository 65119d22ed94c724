//! Review state: durable decisions with history, review queues with expiring claims, and the sync
//! that reflects decisions in the search index.
//!
//! The review database (SQLite, WAL, `synchronous = FULL`) is the source of truth: a decision is
//! acknowledged only after its transaction commits. Claims use `BEGIN IMMEDIATE`, which serializes
//! writers across processes, so two reviewers never hold the same item. The search index is
//! updated afterwards by whichever process takes the index writer next (see [`Store::sync_index`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tantivy::{TantivyDocument, Term};

use crate::search::{flatten, SearchRequest};
use crate::store::now_ms;
use crate::{Error, Result, Store};

/// The decisions a reviewer can make.
pub const DECISIONS: &[&str] = &[
    "ok",
    "mislabeled",
    "ambiguous",
    "corrupt",
    "out-of-distribution",
];

/// A decision to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The example: `run/id`, or an id that is unique across runs.
    pub example: String,
    /// Who decided.
    pub reviewer: String,
    /// One of [`DECISIONS`].
    pub decision: String,
    /// The correct label, for `mislabeled`.
    pub label: Option<u64>,
    /// A free-text note.
    pub note: Option<String>,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Sequence number (order of acknowledgement).
    pub seq: i64,
    /// The example's key (`run/id`).
    pub key: String,
    /// Who decided.
    pub reviewer: String,
    /// What.
    pub decision: String,
    /// Label given.
    pub label: Option<u64>,
    /// Note.
    pub note: Option<String>,
    /// When (UTC).
    pub at: String,
}

/// The review state of one example: its latest decision and all its notes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewState {
    /// Latest decision.
    pub decision: String,
    /// Its reviewer.
    pub reviewer: String,
    /// Its label.
    pub label: Option<u64>,
    /// Every note, oldest first, one per line.
    pub notes: String,
}

/// An item handed to a reviewer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    /// The example's key.
    pub key: String,
    /// Its position in the queue.
    pub position: i64,
    /// Lease end, milliseconds since the Unix epoch.
    pub until_ms: i64,
}

/// Progress of a queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    /// Queue name.
    pub name: String,
    /// The query it was built from.
    pub query: String,
    /// Items in all.
    pub total: i64,
    /// Items with a decision.
    pub reviewed: i64,
    /// Items under an unexpired claim and not yet reviewed.
    pub claimed: i64,
}

/// Orders a queue can be built in.
pub const ORDERS: &[&str] = &["score-desc", "score-asc", "rank", "row"];

impl Store {
    /// Latest decision and notes of every key starting with `prefix` (a run: `"run/"`; `""`: all).
    pub fn review_state(&self, prefix: &str) -> Result<HashMap<String, ReviewState>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT key, reviewer, decision, label, note FROM decisions WHERE substr(key, 1, ?2) = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(rusqlite::params![prefix, prefix.len() as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out: HashMap<String, ReviewState> = HashMap::new();
        for row in rows {
            let (key, reviewer, decision, label, note) = row?;
            let e = out.entry(key).or_insert_with(|| ReviewState {
                decision: String::new(),
                reviewer: String::new(),
                label: None,
                notes: String::new(),
            });
            e.decision = decision;
            e.reviewer = reviewer;
            e.label = label.map(|l| l as u64);
            if let Some(n) = note.filter(|n| !n.is_empty()) {
                if !e.notes.is_empty() {
                    e.notes.push('\n');
                }
                e.notes.push_str(&n);
            }
        }
        Ok(out)
    }

    /// Resolves `run/id` or a bare id to the document key.
    pub fn resolve_key(&self, example: &str) -> Result<String> {
        self.refresh()?;
        if self.document(example)?.is_some() {
            return Ok(example.to_string());
        }
        let req = SearchRequest {
            query: Some(format!("id:\"{}\"", example.replace('"', "\\\""))),
            limit: 3,
            ..Default::default()
        };
        let found = self.search(&req)?;
        match found.total {
            0 => Err(Error::Input(format!("no example `{example}` in the store"))),
            1 => Ok(found.hits[0]["key"]
                .as_str()
                .unwrap_or_default()
                .to_string()),
            n => Err(Error::Input(format!(
                "id `{example}` is in {n} runs; give it as run/id ({})",
                found
                    .hits
                    .iter()
                    .filter_map(|h| h["key"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Records a decision durably, releases the example's claims, and reflects it in the index
    /// (now, or at the next sync when another process holds the index writer). Returns the
    /// decision's sequence number once it is committed.
    pub fn record_decision(&self, d: &Decision) -> Result<DecisionRecord> {
        let record = self.record_decision_only(d)?;
        self.sync_index(Duration::from_millis(500))?;
        Ok(record)
    }

    /// Records a decision durably without touching the index (bulk review calls
    /// [`Store::sync_index`] once at the end).
    pub fn record_decision_only(&self, d: &Decision) -> Result<DecisionRecord> {
        if !DECISIONS.contains(&d.decision.as_str()) {
            return Err(Error::Input(format!(
                "decision `{}`: use one of {}",
                d.decision,
                DECISIONS.join(", ")
            )));
        }
        if d.reviewer.trim().is_empty() {
            return Err(Error::Input("a decision needs a reviewer".into()));
        }
        let key = self.resolve_key(&d.example)?;
        let at = vog_core::now_rfc3339();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO decisions (key, reviewer, decision, label, note, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![key, d.reviewer, d.decision, d.label.map(|l| l as i64), d.note, at],
        )?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "UPDATE queue_items SET claimed_by = NULL, claimed_until = NULL WHERE key = ?1",
            [&key],
        )?;
        tx.commit()?;
        Ok(DecisionRecord {
            seq,
            key,
            reviewer: d.reviewer.clone(),
            decision: d.decision.clone(),
            label: d.label,
            note: d.note.clone(),
            at,
        })
    }

    /// Every decision about an example, oldest first.
    pub fn history(&self, example: &str) -> Result<Vec<DecisionRecord>> {
        let key = self.resolve_key(example)?;
        let db = self.db();
        let mut stmt = db.prepare("SELECT seq, key, reviewer, decision, label, note, at FROM decisions WHERE key = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([&key], |r| {
            Ok(DecisionRecord {
                seq: r.get(0)?,
                key: r.get(1)?,
                reviewer: r.get(2)?,
                decision: r.get(3)?,
                label: r.get::<_, Option<i64>>(4)?.map(|l| l as u64),
                note: r.get(5)?,
                at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Brings the index up to date with the review database. Waits up to `patience` for the index
    /// writer; returns false when another process kept it (that process, or the next one, syncs).
    pub fn sync_index(&self, patience: Duration) -> Result<bool> {
        let behind = |db: &rusqlite::Connection| -> Result<(i64, i64)> {
            let done: i64 = db
                .query_row(
                    "SELECT value FROM meta WHERE key = 'indexed_seq'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let last: i64 =
                db.query_row("SELECT COALESCE(MAX(seq), 0) FROM decisions", [], |r| {
                    r.get(0)
                })?;
            Ok((done, last))
        };
        let (done, last) = behind(&self.db())?;
        if done >= last {
            return Ok(true);
        }
        let Some(mut writer) = self.writer(patience)? else {
            return Ok(false);
        };
        // Another process may have synced while we waited for the writer.
        let (done, last) = behind(&self.db())?;
        if done >= last {
            return Ok(true);
        }
        let keys: Vec<String> = {
            let db = self.db();
            let mut stmt = db.prepare("SELECT DISTINCT key FROM decisions WHERE seq > ?1")?;
            let rows = stmt.query_map([done], |r| r.get::<_, String>(0))?;
            rows.collect::<std::result::Result<Vec<_>, _>>()?
        };
        self.refresh()?;
        let state = self.review_state("")?;
        let schema = self.index.schema();
        for key in &keys {
            let Some(doc) = self.document(key)? else {
                continue;
            }; // run no longer indexed
            let mut doc = flatten(doc);
            if let (Some(s), Some(d)) = (state.get(key), doc.as_object_mut()) {
                s.apply(d);
            }
            let parsed = TantivyDocument::parse_json(&schema, &doc.to_string())
                .map_err(|e| Error::Input(format!("re-indexing `{key}`: {e}")))?;
            writer.delete_term(Term::from_field_text(self.fields.key, key));
            writer.add_document(parsed)?;
        }
        writer.commit()?;
        drop(writer);
        self.db().execute(
            "INSERT INTO meta (key, value) VALUES ('indexed_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
            [last.to_string()],
        )?;
        self.refresh()?;
        Ok(true)
    }

    /// Creates a review queue from a search, in the given order. Returns its size.
    pub fn create_queue(&self, name: &str, req: &SearchRequest, order: &str) -> Result<usize> {
        crate::import::check_run_name(name).map_err(|_| {
            Error::Input(format!(
                "queue name `{name}`: use letters, digits, `.`, `_` and `-` only"
            ))
        })?;
        let (sort, ascending) = match order {
            "score-desc" => ("score", false),
            "score-asc" => ("score", true),
            "rank" => ("rank", true),
            "row" => ("row", true),
            other => {
                return Err(Error::Input(format!(
                    "order `{other}`: use one of {}",
                    ORDERS.join(", ")
                )))
            }
        };
        let keys = self.matching_keys(&SearchRequest {
            sort: Some(sort.into()),
            ascending,
            ..req.clone()
        })?;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool =
            tx.query_row("SELECT COUNT(*) FROM queues WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })? > 0;
        if exists {
            return Err(Error::Input(format!("queue `{name}` exists already")));
        }
        tx.execute(
            "INSERT INTO queues (name, query, ord, created_utc, items) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                name,
                req.query_string(),
                order,
                vog_core::now_rfc3339(),
                keys.len() as i64
            ],
        )?;
        {
            let mut ins =
                tx.prepare("INSERT INTO queue_items (queue, pos, key) VALUES (?1, ?2, ?3)")?;
            for (i, k) in keys.iter().enumerate() {
                ins.execute(rusqlite::params![name, i as i64, k])?;
            }
        }
        tx.commit()?;
        Ok(keys.len())
    }

    /// Claims up to `n` unreviewed items of a queue for `reviewer`, under a lease of `lease`. Items
    /// the reviewer already holds are returned again (their lease renewed). No item is ever held
    /// by two reviewers at once.
    pub fn claim(
        &self,
        queue: &str,
        reviewer: &str,
        n: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        if reviewer.trim().is_empty() {
            return Err(Error::Input("claiming needs a reviewer".into()));
        }
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: i64 = tx.query_row(
            "SELECT COUNT(*) FROM queues WHERE name = ?1",
            [queue],
            |r| r.get(0),
        )?;
        if exists == 0 {
            return Err(Error::Input(format!("no queue `{queue}`")));
        }
        let picked: Vec<(String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT key, pos FROM queue_items q
                 WHERE queue = ?1
                   AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.key = q.key)
                   AND (claimed_by IS NULL OR claimed_until < ?2 OR claimed_by = ?3)
                 ORDER BY pos LIMIT ?4",
            )?;
            let rows = stmt.query_map(rusqlite::params![queue, now, reviewer, n as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<std::result::Result<Vec<_>, _>>()?
        };
        {
            let mut upd = tx.prepare("UPDATE queue_items SET claimed_by = ?1, claimed_until = ?2 WHERE queue = ?3 AND key = ?4")?;
            for (k, _) in &picked {
                upd.execute(rusqlite::params![reviewer, until, queue, k])?;
            }
        }
        tx.commit()?;
        Ok(picked
            .into_iter()
            .map(|(key, position)| Claim {
                key,
                position,
                until_ms: until,
            })
            .collect())
    }

    /// Puts an item the reviewer holds back at the end of the queue, unclaimed: a skipped item
    /// comes back after the rest. Returns false when the reviewer did not hold it.
    pub fn skip(&self, queue: &str, reviewer: &str, key: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE queue_items SET claimed_by = NULL, claimed_until = NULL,
                pos = (SELECT MAX(pos) + 1 FROM queue_items WHERE queue = ?1)
             WHERE queue = ?1 AND key = ?2 AND claimed_by = ?3",
            rusqlite::params![queue, key, reviewer],
        )?;
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Progress of every queue (or one).
    pub fn queues(&self, name: Option<&str>) -> Result<Vec<QueueStatus>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT q.name, q.query, q.items,
                (SELECT COUNT(*) FROM queue_items i WHERE i.queue = q.name AND EXISTS (SELECT 1 FROM decisions d WHERE d.key = i.key)),
                (SELECT COUNT(*) FROM queue_items i WHERE i.queue = q.name AND i.claimed_until >= ?1
                    AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.key = i.key))
             FROM queues q WHERE (?2 IS NULL OR q.name = ?2) ORDER BY q.name",
        )?;
        let rows = stmt.query_map(rusqlite::params![now_ms(), name], |r| {
            Ok(QueueStatus {
                name: r.get(0)?,
                query: r.get(1)?,
                total: r.get(2)?,
                reviewed: r.get(3)?,
                claimed: r.get(4)?,
            })
        })?;
        let out = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        if let (Some(n), true) = (name, out.is_empty()) {
            return Err(Error::Input(format!("no queue `{n}`")));
        }
        Ok(out)
    }

    /// The stored document of an example, with its history.
    pub fn example(&self, example: &str) -> Result<(Value, Vec<DecisionRecord>)> {
        let key = self.resolve_key(example)?;
        let doc = self.document(&key)?.map(flatten).unwrap_or(Value::Null);
        Ok((doc, self.history(&key)?))
    }
}
