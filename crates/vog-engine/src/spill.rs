//! The spill file of a scoring run: every finished example's raw scores, appended as batches
//! finish, so that the engine holds no per-example state while scoring (memory stays flat in the
//! number of examples) and writes the results in a second, streaming pass once the class
//! statistics are known.
//!
//! The same file is the resume journal of `vog score --resume`: commit records mark batch
//! boundaries (made durable with an fsync when resuming is on); a killed run continues after its
//! last commit and, because it sees the same batches in the same order, ends with the same results
//! as an uninterrupted one.
//!
//! Format (little-endian): the magic `VOGSPIL` + format byte, the fingerprint (`u32` length +
//! UTF-8: configuration, checkpoint hashes and example count, so a journal never resumes another
//! run), then records `tag: u8, len: u32, payload`. Tag `R`: one example (see `encode_row`);
//! tag `C`: a commit (JSON of the progress: next row, backend seconds, classes, gradient shape).
//! A torn record at the end is ignored and cut.

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::OutputConfig;
use crate::results::ExampleScore;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"VOGSPIL\x02";
const ROW: u8 = b'R';
const COMMIT: u8 = b'C';
/// Commit at most this often (with resuming on, a commit is an fsync).
const CHUNK: Duration = Duration::from_millis(500);

/// Where the spill file of a results directory lives: `.NAME.spill` beside it (same file system,
/// so it survives the process and is removed once the results are in place).
pub fn spill_path(out: &OutputConfig) -> PathBuf {
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
    parent.join(format!(".{name}.spill"))
}

/// Removes the spill file of `out`, if any.
pub fn remove(out: &OutputConfig) -> Result<()> {
    let p = spill_path(out);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// What a commit records besides the rows before it.
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

/// An open spill file, appended to as batches finish.
pub(crate) struct SpillWriter {
    path: PathBuf,
    file: BufWriter<std::fs::File>,
    durable: bool,
    last_commit: Instant,
    buf: Vec<u8>,
}

impl SpillWriter {
    /// Starts a new spill file at `path` (replacing any), durable (fsync on commit) or not.
    pub fn create(path: &Path, fingerprint: &str, durable: bool) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = SpillWriter {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(1 << 16, file),
            durable,
            last_commit: Instant::now(),
            buf: Vec::new(),
        };
        let mut header = MAGIC.to_vec();
        put_str(&mut header, fingerprint);
        w.file.write_all(&header).map_err(|e| Error::io(path, e))?;
        w.sync()?;
        Ok(w)
    }

    /// Reopens the spill file an interrupted run left at `path`: checks its fingerprint, cuts what
    /// follows the last commit, hands every committed row to `on_row` (in order) and returns the
    /// writer, positioned to append, with the last commit's progress. `None` when there is no file
    /// or nothing was committed yet.
    pub fn resume(
        path: &Path,
        fingerprint: &str,
        mut on_row: impl FnMut(ExampleScore) -> Result<()>,
    ) -> Result<Option<(Self, Progress)>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut r = RecordReader::new(path, file)?;
        if r.fingerprint != fingerprint {
            return Err(Error::Input(format!(
                "{}: the journal of a different run (configuration, checkpoints or data changed); \
                 delete it to start over",
                path.display()
            )));
        }
        // First pass: where the last commit ends, without decoding rows.
        let mut keep = None;
        while let Some((tag, payload)) = r.next_record()? {
            if tag == COMMIT {
                let p: Progress = serde_json::from_slice(payload).map_err(|e| {
                    Error::Input(format!("{}: bad commit record: {e}", path.display()))
                })?;
                keep = Some((r.offset, p));
            }
        }
        let Some((keep, progress)) = keep else {
            return Ok(None);
        };
        // Second pass: the committed rows.
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut r = RecordReader::new(path, file)?;
        while r.offset < keep {
            let Some((tag, payload)) = r.next_record()? else {
                break;
            };
            if tag == ROW {
                on_row(decode_row(payload).map_err(|m| {
                    Error::Input(format!("{}: bad row record: {m}", path.display()))
                })?)?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(keep).map_err(|e| Error::io(path, e))?;
        let mut file = BufWriter::with_capacity(1 << 16, file);
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, e))?;
        Ok(Some((
            SpillWriter {
                path: path.to_path_buf(),
                file,
                durable: true,
                last_commit: Instant::now(),
                buf: Vec::new(),
            },
            progress,
        )))
    }

    fn record(&mut self, tag: u8) -> Result<()> {
        let len = u32::try_from(self.buf.len()).map_err(|_| {
            Error::Input(format!(
                "{}: a record of {} bytes is too large",
                self.path.display(),
                self.buf.len()
            ))
        })?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.file
            .write_all(&head)
            .and_then(|()| self.file.write_all(&self.buf))
            .map_err(|e| Error::io(&self.path, e))
    }

    fn sync(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        if self.durable {
            self.file
                .get_ref()
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Appends one finished example.
    pub fn push(&mut self, e: &ExampleScore) -> Result<()> {
        self.buf.clear();
        let mut buf = std::mem::take(&mut self.buf);
        encode_row(e, &mut buf);
        self.buf = buf;
        self.record(ROW)
    }

    /// Commits everything appended so far when a chunk's time is up (or when `force`d): rows
    /// before a commit survive a kill when the file is durable.
    pub fn commit(&mut self, progress: &Progress, force: bool) -> Result<()> {
        if !force && self.last_commit.elapsed() < CHUNK {
            return Ok(());
        }
        self.buf = serde_json::to_vec(progress)
            .map_err(|e| Error::Input(format!("{}: {e}", self.path.display())))?;
        self.record(COMMIT)?;
        self.sync()?;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Flushes and returns a reader over the rows written.
    pub fn reader(&mut self) -> Result<SpillReader> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        SpillReader::open(&self.path)
    }
}

/// Reads the records of a spill file.
struct RecordReader {
    path: PathBuf,
    file: BufReader<std::fs::File>,
    fingerprint: String,
    offset: u64,
    payload: Vec<u8>,
}

impl RecordReader {
    fn new(path: &Path, file: std::fs::File) -> Result<Self> {
        let mut file = BufReader::with_capacity(1 << 16, file);
        let bad = |m: &str| Error::Input(format!("{}: not a vog spill file ({m})", path.display()));
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic).map_err(|_| bad("too short"))?;
        if &magic != MAGIC {
            return Err(bad("wrong magic or format version"));
        }
        let mut len = [0u8; 4];
        file.read_exact(&mut len).map_err(|_| bad("too short"))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > 4096 {
            return Err(bad("bad fingerprint"));
        }
        let mut fp = vec![0u8; len];
        file.read_exact(&mut fp).map_err(|_| bad("too short"))?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            file,
            fingerprint: String::from_utf8(fp).map_err(|_| bad("bad fingerprint"))?,
            offset: 12 + len as u64,
            payload: Vec::new(),
        })
    }

    /// The next whole record; `None` at the end or at a torn record.
    fn next_record(&mut self) -> Result<Option<(u8, &[u8])>> {
        let mut head = [0u8; 5];
        match read_full(&mut self.file, &mut head).map_err(|e| Error::io(&self.path, e))? {
            true => {}
            false => return Ok(None),
        }
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        self.payload.resize(len, 0);
        if !read_full(&mut self.file, &mut self.payload).map_err(|e| Error::io(&self.path, e))? {
            return Ok(None);
        }
        if head[0] != ROW && head[0] != COMMIT {
            return Ok(None);
        }
        self.offset += 5 + len as u64;
        Ok(Some((head[0], &self.payload)))
    }
}

/// Fills `buf` entirely; `false` when the file ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The rows of a spill file, in the order written (commits skipped).
pub(crate) struct SpillReader {
    records: RecordReader,
}

impl SpillReader {
    /// Opens the spill file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(SpillReader {
            records: RecordReader::new(path, file)?,
        })
    }
}

impl Iterator for SpillReader {
    type Item = Result<ExampleScore>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.records.next_record() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some((COMMIT, _))) => continue,
                Ok(Some((_, payload))) => {
                    let row = decode_row(payload);
                    return Some(row.map_err(|m| {
                        Error::Input(format!(
                            "{}: bad row record: {m}",
                            self.records.path.display()
                        ))
                    }));
                }
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, v: Option<u32>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_f64s(out: &mut Vec<u8>, v: &[f64]) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Encodes the raw part of an example (normalized scores, flags and maps are decided later):
/// row `u64`, id, true label, label used, prediction (`u8` presence + `u32`), VoG per window and
/// reducer scores (`u32` count + `f64`s, NaN kept bit for bit), metadata (JSON, empty for none),
/// trajectory (`u32` count + (`u32`, `f64`) pairs).
pub(crate) fn encode_row(e: &ExampleScore, out: &mut Vec<u8>) {
    out.extend_from_slice(&(e.row as u64).to_le_bytes());
    put_str(out, &e.id);
    put_opt(out, e.true_label);
    put_opt(out, e.label_used);
    put_opt(out, e.predicted);
    put_f64s(out, &e.vog);
    put_f64s(out, &e.extra);
    if e.meta.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
    } else {
        let json = serde_json::to_string(&e.meta).expect("metadata is JSON");
        put_str(out, &json);
    }
    out.extend_from_slice(&(e.trajectory.len() as u32).to_le_bytes());
    for &(p, m) in &e.trajectory {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn f64(&mut self) -> std::result::Result<f64, String> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn str(&mut self) -> std::result::Result<&'a str, String> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| "bad UTF-8".into())
    }
    fn opt(&mut self) -> std::result::Result<Option<u32>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            b => Err(format!("bad presence byte {b}")),
        }
    }
    fn f64s(&mut self) -> std::result::Result<Vec<f64>, String> {
        let n = self.u32()? as usize;
        if n * 8 > self.0.len() {
            return Err("truncated".into());
        }
        (0..n).map(|_| self.f64()).collect()
    }
}

/// Decodes what [`encode_row`] wrote.
pub(crate) fn decode_row(bytes: &[u8]) -> std::result::Result<ExampleScore, String> {
    let mut c = Cursor(bytes);
    let row = c.u64()? as usize;
    let id = c.str()?.to_string();
    let true_label = c.opt()?;
    let label_used = c.opt()?;
    let predicted = c.opt()?;
    let vog = c.f64s()?;
    let extra = c.f64s()?;
    let meta = match c.str()? {
        "" => vog_data::Record::new(),
        json => serde_json::from_str(json).map_err(|e| format!("bad metadata: {e}"))?,
    };
    let n = c.u32()? as usize;
    if n * 12 > c.0.len() {
        return Err("truncated".into());
    }
    let trajectory = (0..n)
        .map(|_| Ok((c.u32()?, c.f64()?)))
        .collect::<std::result::Result<Vec<_>, String>>()?;
    if !c.0.is_empty() {
        return Err(format!("{} trailing bytes", c.0.len()));
    }
    Ok(ExampleScore {
        row,
        id,
        true_label,
        label_used,
        predicted,
        vog,
        vog_norm: Vec::new(),
        extra,
        meta,
        flagged: false,
        has_map: false,
        trajectory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(row: usize) -> ExampleScore {
        let mut meta = vog_data::Record::new();
        if row.is_multiple_of(2) {
            meta.insert("camera".into(), serde_json::json!("b"));
        }
        ExampleScore {
            row,
            id: format!("ex-{row}"),
            true_label: (!row.is_multiple_of(3)).then_some(row as u32 % 4),
            label_used: Some(1),
            predicted: None,
            vog: vec![0.25 * row as f64, f64::NAN],
            vog_norm: Vec::new(),
            extra: vec![-1.5, f64::INFINITY],
            meta,
            flagged: false,
            has_map: false,
            trajectory: vec![(3, 0.5), (2, f64::NAN)],
        }
    }

    fn same(a: &ExampleScore, b: &ExampleScore) -> bool {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        a.row == b.row
            && a.id == b.id
            && a.true_label == b.true_label
            && a.label_used == b.label_used
            && a.predicted == b.predicted
            && bits(&a.vog) == bits(&b.vog)
            && bits(&a.extra) == bits(&b.extra)
            && a.meta == b.meta
            && a.trajectory.len() == b.trajectory.len()
            && a.trajectory
                .iter()
                .zip(&b.trajectory)
                .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    #[test]
    fn rows_round_trip_bit_for_bit() {
        for row in 0..6 {
            let e = example(row);
            let mut buf = Vec::new();
            encode_row(&e, &mut buf);
            assert!(same(&decode_row(&buf).unwrap(), &e));
            assert!(decode_row(&buf[..buf.len() - 1]).is_err());
        }
    }

    #[test]
    fn resume_keeps_committed_rows_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.spill");
        let mut w = SpillWriter::create(&path, "fp", true).unwrap();
        for r in 0..3 {
            w.push(&example(r)).unwrap();
        }
        let p = Progress {
            next: 3,
            ..Default::default()
        };
        w.commit(&p, true).unwrap();
        w.push(&example(3)).unwrap(); // uncommitted
        w.file.flush().unwrap();
        drop(w);
        // A torn record at the end.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[ROW, 200, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();

        assert!(matches!(
            SpillWriter::resume(&path, "other", |_| Ok(())),
            Err(Error::Input(m)) if m.contains("different run")
        ));
        let mut rows = Vec::new();
        let (mut w, p) = SpillWriter::resume(&path, "fp", |e| {
            rows.push(e);
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(p.next, 3);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().zip(0..).all(|(e, r)| same(e, &example(r))));
        w.push(&example(7)).unwrap();
        let all: Vec<ExampleScore> = w.reader().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(
            all.iter().map(|e| e.row).collect::<Vec<_>>(),
            vec![0, 1, 2, 7]
        );
    }

    #[test]
    fn not_a_spill_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, "{\"journal\":1}\n").unwrap();
        let err = SpillReader::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("junk") && err.contains("not a vog spill file"),
            "{err}"
        );
    }
}
