//! The resume journal of `vog score --resume`: finished batches' scores appended to a file beside
//! the results directory, committed in chunks, so a killed run continues after its last committed
//! chunk and ends with the same results as an uninterrupted one.
//!
//! Format: JSON lines. A header `{"journal": 1, "fingerprint": …}` (the configuration, checkpoint
//! hashes and example count: a journal never resumes a different run), then per finished example
//! `{"row": …}`, and after each chunk `{"commit": {"next": …, …}}`. Rows after the last commit,
//! and a torn last line, are dropped on resume (the file is truncated there): chunks end on batch
//! boundaries, so the resumed run sees the same batches and computes the same numbers.

use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::OutputConfig;
use crate::engine::ExampleScore;
use crate::{Error, Result};

const VERSION: u32 = 1;
/// Commit at most this often (a commit is an fsync).
const CHUNK: Duration = Duration::from_millis(500);

/// Where the journal of a results directory lives: `.NAME.resume.jsonl` beside it.
pub fn journal_path(out: &OutputConfig) -> PathBuf {
    let parent = out
        .dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vog-results".into());
    parent.join(format!(".{name}.resume.jsonl"))
}

/// Removes the journal once the results are written.
pub fn remove(out: &OutputConfig) -> Result<()> {
    let p = journal_path(out);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// One example as journaled (NaN, which JSON lacks, as `null`).
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    row: usize,
    id: String,
    true_label: Option<u32>,
    label_used: Option<u32>,
    predicted: Option<u32>,
    vog: Vec<Option<f64>>,
    extra: Vec<Option<f64>>,
    meta: vog_data::Record,
    trajectory: Vec<(u32, Option<f64>)>,
}

fn opt(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl From<&ExampleScore> for Row {
    fn from(e: &ExampleScore) -> Self {
        Row {
            row: e.row,
            id: e.id.clone(),
            true_label: e.true_label,
            label_used: e.label_used,
            predicted: e.predicted,
            vog: e.vog.iter().map(|&v| opt(v)).collect(),
            extra: e.extra.iter().map(|&v| opt(v)).collect(),
            meta: e.meta.clone(),
            trajectory: e.trajectory.iter().map(|&(p, m)| (p, opt(m))).collect(),
        }
    }
}

impl From<Row> for ExampleScore {
    fn from(r: Row) -> Self {
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        ExampleScore {
            row: r.row,
            id: r.id,
            true_label: r.true_label,
            label_used: r.label_used,
            predicted: r.predicted,
            vog: r.vog.into_iter().map(f).collect(),
            vog_norm: Vec::new(),
            extra: r.extra.into_iter().map(f).collect(),
            meta: r.meta,
            flagged: false,
            has_map: false,
            trajectory: r.trajectory.into_iter().map(|(p, m)| (p, f(m))).collect(),
        }
    }
}

/// What a chunk commit records besides the rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The next row to score.
    pub next: usize,
    /// Backend seconds so far.
    pub backend_s: f64,
    /// Classes the model produces (0 before the first batch).
    pub classes: usize,
    /// Shape of one gradient row (empty before the first batch).
    pub grad_shape: Vec<usize>,
}

/// What an earlier, interrupted run left.
pub(crate) struct Resumed {
    pub examples: Vec<ExampleScore>,
    pub progress: Progress,
}

/// An open journal, appended to as batches finish.
pub(crate) struct Journal {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    last_commit: Instant,
}

impl Journal {
    /// Opens (or starts) the journal of `out`; returns what an earlier run committed.
    pub fn open(out: &OutputConfig, fingerprint: &str) -> Result<(Journal, Option<Resumed>)> {
        let path = journal_path(out);
        let mut resumed = None;
        let mut keep = 0u64;
        if path.is_file() {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let mut reader = std::io::BufReader::new(file);
            let (mut offset, mut line) = (0u64, String::new());
            let (mut pending, mut committed) = (Vec::new(), Vec::new());
            let mut progress = Progress::default();
            let mut header_ok = false;
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| Error::io(&path, e))?;
                if n == 0 || !line.ends_with('\n') {
                    break; // end, or a torn last line
                }
                offset += n as u64;
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    break;
                };
                if !header_ok {
                    if v["journal"] != VERSION || v["fingerprint"] != fingerprint {
                        return Err(Error::Input(format!(
                            "{}: the journal of a different run (configuration, checkpoints or data \
                             changed); delete it to start over",
                            path.display()
                        )));
                    }
                    header_ok = true;
                    keep = offset;
                } else if let Some(row) = v.get("row") {
                    let row: Row = serde_json::from_value(row.clone())
                        .map_err(|e| Error::Input(format!("{}: bad row: {e}", path.display())))?;
                    pending.push(ExampleScore::from(row));
                } else if let Some(c) = v.get("commit") {
                    progress = serde_json::from_value(c.clone()).map_err(|e| {
                        Error::Input(format!("{}: bad commit: {e}", path.display()))
                    })?;
                    committed.append(&mut pending);
                    keep = offset;
                }
            }
            if header_ok {
                resumed = Some(Resumed {
                    examples: committed,
                    progress,
                });
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Drop uncommitted rows and any torn line.
        file.set_len(keep).map_err(|e| Error::io(&path, e))?;
        let mut file = std::io::BufWriter::new(file);
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| Error::io(&path, e))?;
        let mut j = Journal {
            path,
            file,
            last_commit: Instant::now(),
        };
        if resumed.is_none() {
            let header = serde_json::json!({"journal": VERSION, "fingerprint": fingerprint});
            j.line(&header)?;
            j.sync()?;
        }
        Ok((j, resumed))
    }

    fn line(&mut self, v: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.file, v)
            .map_err(|e| Error::Input(format!("{}: {e}", self.path.display())))?;
        self.file
            .write_all(b"\n")
            .map_err(|e| Error::io(&self.path, e))
    }

    fn sync(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Appends a finished batch's rows.
    pub fn rows(&mut self, rows: &[ExampleScore]) -> Result<()> {
        for e in rows {
            self.line(&serde_json::json!({ "row": Row::from(e) }))?;
        }
        Ok(())
    }

    /// Commits everything appended so far when a chunk's time is up (or when `force`d).
    pub fn commit(&mut self, progress: &Progress, force: bool) -> Result<()> {
        if !force && self.last_commit.elapsed() < CHUNK {
            return Ok(());
        }
        self.line(&serde_json::json!({ "commit": progress }))?;
        self.sync()?;
        self.last_commit = Instant::now();
        Ok(())
    }
}
