//! Per-example values (ids, metadata records) kept on disk in row order, one JSON value per line
//! of an anonymous temporary file, and read back as the results are written — which is in row
//! order, so a run holds none of them per example (issue 20: flat memory with ids and metadata).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// One JSON value per example, read by row.
pub(crate) struct RowFile {
    rows: usize,
    reader: Mutex<Reader>,
}

struct Reader {
    file: BufReader<File>,
    /// The row the next line read belongs to.
    next: usize,
    /// The last line read.
    line: String,
}

fn io_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Pipeline(format!("the temporary file of example {what}: {e}"))
}

/// Writes a [`RowFile`], one value per call of [`RowWriter::push`].
pub(crate) struct RowWriter {
    what: &'static str,
    out: BufWriter<File>,
    rows: usize,
    at: u64,
}

impl RowWriter {
    /// Appends the next row's value; returns where its line starts (for [`RowFile::read_at`]).
    pub(crate) fn push(&mut self, value: &impl Serialize) -> Result<u64> {
        let mut text = serde_json::to_string(value).map_err(|e| io_error(self.what, e))?;
        text.push('\n');
        self.out
            .write_all(text.as_bytes())
            .map_err(|e| io_error(self.what, e))?;
        let start = self.at;
        self.at += text.len() as u64;
        self.rows += 1;
        Ok(start)
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }
}

impl RowFile {
    /// Creates the file and fills it through `fill`; `what` names the contents in errors ("ids").
    pub(crate) fn write(
        what: &'static str,
        fill: impl FnOnce(&mut RowWriter) -> Result<()>,
    ) -> Result<RowFile> {
        let file = tempfile::tempfile().map_err(|e| io_error(what, e))?;
        let mut w = RowWriter {
            what,
            out: BufWriter::new(file),
            rows: 0,
            at: 0,
        };
        fill(&mut w)?;
        let rows = w.rows;
        let mut file = w.out.into_inner().map_err(|e| io_error(what, e.error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_error(what, e))?;
        Ok(RowFile {
            rows,
            reader: Mutex::new(Reader {
                file: BufReader::new(file),
                next: 0,
                line: String::new(),
            }),
        })
    }

    /// Rows in the file.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The value of `row`. Reading rows in increasing order streams through the file once; an
    /// earlier row (an error message about a past batch) reads from the start again.
    pub(crate) fn get<T: DeserializeOwned>(&self, row: usize, what: &str) -> Result<T> {
        if row >= self.rows {
            return Err(io_error(what, format!("row {row} of {}", self.rows)));
        }
        let mut r = self
            .reader
            .lock()
            .map_err(|_| io_error(what, "a reader panicked"))?;
        let r = &mut *r;
        if row + 1 != r.next || r.line.is_empty() {
            if row < r.next {
                r.file
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| io_error(what, e))?;
                r.next = 0;
            }
            while r.next <= row {
                r.line.clear();
                r.file
                    .read_line(&mut r.line)
                    .map_err(|e| io_error(what, e))?;
                r.next += 1;
            }
        }
        serde_json::from_str(&r.line).map_err(|e| io_error(what, e))
    }

    /// The raw line starting at byte `at` (a value [`RowWriter::push`] returned), without
    /// disturbing row-ordered reading more than a seek.
    pub(crate) fn read_at(&self, at: u64, what: &str) -> Result<String> {
        let mut r = self
            .reader
            .lock()
            .map_err(|_| io_error(what, "a reader panicked"))?;
        r.file
            .seek(SeekFrom::Start(at))
            .map_err(|e| io_error(what, e))?;
        let mut line = String::new();
        r.file.read_line(&mut line).map_err(|e| io_error(what, e))?;
        // The row position is lost: the next `get` reads from the start.
        r.next = usize::MAX;
        r.line.clear();
        Ok(line.trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_in_and_out_of_order() {
        let mut starts = Vec::new();
        let f = RowFile::write("ids", |w| {
            for i in 0..5 {
                starts.push(w.push(&format!("id-{i}\nwith a newline"))?);
            }
            assert_eq!(w.rows(), 5);
            Ok(())
        })
        .unwrap();
        assert_eq!(f.rows(), 5);
        for row in [0, 1, 2, 2, 4, 1, 3] {
            let got: String = f.get(row, "ids").unwrap();
            assert_eq!(got, format!("id-{row}\nwith a newline"));
        }
        assert_eq!(
            f.read_at(starts[3], "ids").unwrap(),
            "\"id-3\\nwith a newline\""
        );
        let got: String = f.get(0, "ids").unwrap();
        assert_eq!(got, "id-0\nwith a newline");
        assert!(f.get::<String>(5, "ids").is_err());
    }
}
