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
use serde_json::{json, Map, Value};
use tantivy::{TantivyDocument, Term};

use rusqlite::OptionalExtension;

use crate::search::SearchRequest;
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
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Decide even when another reviewer holds the example under an unexpired claim (without
    /// it, that is refused with [`Error::Conflict`]).
    pub force: bool,
}

/// The longest reviewer name, in characters.
pub const MAX_REVIEWER_CHARS: usize = 64;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

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
    /// Items dropped because their example left the index (its run was re-indexed without it).
    pub dropped: i64,
}

/// A reviewer name: 1 to [`MAX_REVIEWER_CHARS`] characters, no control characters.
pub fn check_reviewer(reviewer: &str) -> Result<()> {
    let n = reviewer.chars().count();
    if reviewer.trim().is_empty()
        || n > MAX_REVIEWER_CHARS
        || reviewer.chars().any(char::is_control)
    {
        return Err(Error::Input(format!(
            "a reviewer name has 1 to {MAX_REVIEWER_CHARS} characters and no control characters"
        )));
    }
    Ok(())
}

/// Orders a queue can be built in.
pub const ORDERS: &[&str] = &["score-desc", "score-asc", "rank", "row"];

impl Store {
    /// Latest decision and notes of every key starting with `prefix` (a run: `"run/"`; `""`: all).
    pub fn review_state(&self, prefix: &str) -> Result<HashMap<String, ReviewState>> {
        self.fold_review_state(
            "SELECT key, reviewer, decision, label, note FROM decisions
             WHERE substr(key, 1, length(?1)) = ?1 ORDER BY seq",
            prefix,
        )
    }

    /// Latest decision and notes of every key decided after decision `seq`: what a sync must
    /// re-index, read without the rest of the table.
    fn review_state_since(&self, seq: i64) -> Result<HashMap<String, ReviewState>> {
        self.fold_review_state(
            "SELECT key, reviewer, decision, label, note FROM decisions
             WHERE key IN (SELECT key FROM decisions WHERE seq > ?1) ORDER BY seq",
            seq,
        )
    }

    fn fold_review_state(
        &self,
        sql: &str,
        param: impl rusqlite::ToSql,
    ) -> Result<HashMap<String, ReviewState>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(sql)?;
        let rows = stmt.query_map([param], |r| {
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
        check_reviewer(&d.reviewer)?;
        if let Some(note) = &d.note {
            if note.chars().count() > MAX_NOTE_CHARS {
                return Err(Error::Input(format!(
                    "the note has {} characters; the limit is {MAX_NOTE_CHARS}",
                    note.chars().count()
                )));
            }
        }
        let key = self.resolve_key(&d.example)?;
        let at = vog_core::now_rfc3339();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !d.force {
            let holder: Option<(String, String)> = tx
                .query_row(
                    "SELECT claimed_by, queue FROM queue_items
                     WHERE key = ?1 AND claimed_by IS NOT NULL AND claimed_by <> ?2
                       AND claimed_until >= ?3
                     LIMIT 1",
                    rusqlite::params![key, d.reviewer, now_ms()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((holder, queue)) = holder {
                return Err(Error::Conflict(format!(
                    "`{key}` is claimed by `{holder}` in queue `{queue}`; decide it anyway with force"
                )));
            }
        }
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
        Ok(self.histories(&[&key])?.remove(&key).unwrap_or_default())
    }

    /// The decisions about each of `keys`, oldest first, read in one query.
    pub(crate) fn histories(&self, keys: &[&str]) -> Result<HashMap<String, Vec<DecisionRecord>>> {
        let list = serde_json::to_string(keys).expect("strings serialize");
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT seq, key, reviewer, decision, label, note, at FROM decisions
             WHERE key IN (SELECT value FROM json_each(?1)) ORDER BY seq",
        )?;
        let rows = stmt.query_map([list], |r| {
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
        let mut out: HashMap<String, Vec<DecisionRecord>> = HashMap::new();
        for row in rows {
            let record = row?;
            out.entry(record.key.clone()).or_default().push(record);
        }
        Ok(out)
    }

    /// The last decision reflected in the index, and the last decision recorded.
    fn sync_position(&self) -> Result<(i64, i64)> {
        let db = self.db();
        let done: i64 = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'indexed_seq'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let last: i64 = db.query_row("SELECT COALESCE(MAX(seq), 0) FROM decisions", [], |r| {
            r.get(0)
        })?;
        Ok((done, last))
    }

    /// Brings the index up to date with the review database: re-indexes the examples decided
    /// since the last sync (reading only their decisions). Waits up to `patience` for the index
    /// writer; returns false when another process kept it (that process, or the next one, syncs).
    pub fn sync_index(&self, patience: Duration) -> Result<bool> {
        let (done, last) = self.sync_position()?;
        if done >= last {
            return Ok(true);
        }
        let Some(mut writer) = self.writer(patience)? else {
            return Ok(false);
        };
        // Another process may have synced while we waited for the writer.
        let (done, last) = self.sync_position()?;
        if done >= last {
            return Ok(true);
        }
        // Decisions committed after this read have a higher seq than `last` and are left to the
        // next sync.
        let state = self.review_state_since(done)?;
        self.refresh()?;
        let schema = self.index.schema();
        for (key, s) in &state {
            let Some(mut doc) = self.document(key)? else {
                continue; // run no longer indexed
            };
            if let Some(d) = doc.as_object_mut() {
                s.apply(d);
            }
            let parsed = TantivyDocument::parse_json(&schema, &doc.to_string())
                .map_err(|e| Error::Input(format!("re-indexing `{key}`: {e}")))?;
            writer.delete_term(Term::from_field_text(self.fields.key, key));
            writer.add_document(parsed)?;
        }
        writer.commit()?;
        // Recorded while the writer is held, so that syncs never move `indexed_seq` backwards.
        self.db().execute(
            "INSERT INTO meta (key, value) VALUES ('indexed_seq', ?1)
             ON CONFLICT(key) DO UPDATE SET value = ?1",
            [last.to_string()],
        )?;
        drop(writer);
        self.refresh()?;
        Ok(true)
    }

    /// Creates a review queue from a search, in the given order. Returns its size.
    pub fn create_queue(&self, name: &str, req: &SearchRequest, order: &str) -> Result<usize> {
        crate::names::check_run_name(name).map_err(|_| {
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
        check_reviewer(reviewer)?;
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.refresh()?;
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
        // Items whose example left the index (its run was re-indexed without it) are dropped
        // from the queue, with a count in its status, instead of being handed out.
        let mut picked: Vec<(String, i64)> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        while picked.len() < n {
            let candidates: Vec<(String, i64)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT key, pos FROM queue_items q
                     WHERE queue = ?1
                       AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.key = q.key)
                       AND (claimed_by IS NULL OR claimed_until < ?2 OR claimed_by = ?3)
                     ORDER BY pos LIMIT ?4 OFFSET ?5",
                )?;
                let want = (n - picked.len()) as i64;
                let rows = stmt.query_map(
                    rusqlite::params![queue, now, reviewer, want, picked.len() as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                rows.collect::<std::result::Result<Vec<_>, _>>()?
            };
            if candidates.is_empty() {
                break;
            }
            for (key, pos) in candidates {
                if self.document(&key)?.is_some() {
                    picked.push((key, pos));
                } else {
                    tx.execute(
                        "DELETE FROM queue_items WHERE queue = ?1 AND key = ?2",
                        rusqlite::params![queue, key],
                    )?;
                    dropped.push(key);
                }
            }
        }
        if !dropped.is_empty() {
            tx.execute(
                "UPDATE queues SET items = items - ?2, dropped = dropped + ?2 WHERE name = ?1",
                rusqlite::params![queue, dropped.len() as i64],
            )?;
            tracing::warn!(
                queue,
                dropped = dropped.len(),
                first = %dropped[0],
                "queue items dropped: their examples are no longer in the index"
            );
        }
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

    /// The first unreviewed item `reviewer` holds in `queue` under an unexpired claim, if any.
    /// Reads only: the lease is not renewed.
    pub fn held(&self, queue: &str, reviewer: &str) -> Result<Option<Claim>> {
        let db = self.db();
        Ok(db
            .query_row(
                "SELECT key, pos, claimed_until FROM queue_items q
                 WHERE queue = ?1 AND claimed_by = ?2 AND claimed_until >= ?3
                   AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.key = q.key)
                 ORDER BY pos LIMIT 1",
                rusqlite::params![queue, reviewer, now_ms()],
                |r| {
                    Ok(Claim {
                        key: r.get(0)?,
                        position: r.get(1)?,
                        until_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
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
            "SELECT q.name, q.query, q.items, q.dropped,
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
                dropped: r.get(3)?,
                reviewed: r.get(4)?,
                claimed: r.get(5)?,
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
        let doc = self.document(&key)?.unwrap_or(Value::Null);
        let history = self.histories(&[&key])?.remove(&key).unwrap_or_default();
        Ok((doc, history))
    }
}

impl ReviewState {
    /// Writes the review fields into a document being built.
    pub(crate) fn apply(&self, d: &mut Map<String, Value>) {
        d.insert("status".into(), json!("reviewed"));
        d.insert("decision".into(), json!(self.decision));
        d.insert("reviewer".into(), json!(self.reviewer));
        d.insert("notes".into(), json!(self.notes));
        if let Some(l) = self.label {
            d.insert("new_label".into(), json!(l));
        }
    }
}
