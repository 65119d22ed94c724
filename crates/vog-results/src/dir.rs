//! A results directory on disk: where each file is, and reading it back.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::{Error, Manifest, Result, ScoreRow};

/// The manifest's file name.
pub const RUN_JSON: &str = "run.json";
/// The rows, one JSON object per line.
pub const SCORES_JSONL: &str = "scores.jsonl";
/// The rows, flat.
pub const SCORES_CSV: &str = "scores.csv";
/// The directory of a results directory (and of a store's run) that holds kept maps.
pub const MAPS_DIR: &str = "maps";

/// What a kept map file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// The per-element VoG map.
    Vog,
    /// The last checkpoint's input gradient.
    Grad,
}

/// The file name of a kept map: `ROW.vog.npy` or `ROW.grad.npy` (in [`MAPS_DIR`]).
pub fn map_file(row: u64, kind: MapKind) -> String {
    match kind {
        MapKind::Vog => format!("{row}.vog.npy"),
        MapKind::Grad => format!("{row}.grad.npy"),
    }
}

/// A results directory written by `vog score` or `vog merge` (or a store's copy of one, which
/// has `run.json` and `maps/` but no rows), opened by reading its manifest.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    dir: PathBuf,
    manifest: Manifest,
}

impl ResultsDir {
    /// Opens `dir`: reads `run.json`, refusing another results format.
    pub fn open(dir: &Path) -> Result<ResultsDir> {
        let path = dir.join(RUN_JSON);
        if !path.is_file() && dir.is_dir() {
            return Err(Error::format(
                dir,
                "not a results directory (no run.json; `vog score --out DIR` writes one)",
            ));
        }
        Ok(ResultsDir {
            dir: dir.to_path_buf(),
            manifest: Manifest::read(&path)?,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Its manifest, owned.
    pub fn into_manifest(self) -> Manifest {
        self.manifest
    }

    /// A file of the directory (`SCORES_CSV`, `RUN_JSON`, …).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the run wrote `name` (runs choose `scores.csv`, `scores.jsonl` or both).
    pub fn has(&self, name: &str) -> bool {
        self.file(name).is_file()
    }

    /// Where a kept map of `row` is (whether or not the run kept one).
    pub fn map_path(&self, row: u64, kind: MapKind) -> PathBuf {
        self.dir.join(MAPS_DIR).join(map_file(row, kind))
    }

    /// The rows of `scores.jsonl`, streamed one line at a time. Each row is checked against the
    /// manifest: a row without a score for one of the run's windows is an error, never a NaN.
    pub fn rows(&self) -> Result<Rows> {
        let path = self.file(SCORES_JSONL);
        let file = std::fs::File::open(&path).map_err(|e| {
            Error::format(
                &path,
                format!(
                    "{e} (this needs scores.jsonl: score with output.formats including \"jsonl\")"
                ),
            )
        })?;
        Ok(Rows {
            lines: std::io::BufReader::with_capacity(1 << 16, file).lines(),
            line: 0,
            windows: self
                .manifest
                .window_names()
                .into_iter()
                .map(String::from)
                .collect(),
            path,
        })
    }
}

/// The rows of a `scores.jsonl` file, in file order (see [`ResultsDir::rows`]).
pub struct Rows {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    line: usize,
    windows: Vec<String>,
    path: PathBuf,
}

impl Rows {
    fn parse(&self, text: &str) -> Result<ScoreRow> {
        let at = |m: String| Error::format(&self.path, format!("line {}: {m}", self.line));
        let row: ScoreRow = serde_json::from_str(text).map_err(|e| at(e.to_string()))?;
        for w in &self.windows {
            if !row.vog.contains_key(w) || !row.vog_norm.contains_key(w) {
                return Err(at(format!(
                    "example `{}` has no VoG for window `{w}`, which run.json lists",
                    row.id
                )));
            }
        }
        Ok(row)
    }
}

impl Iterator for Rows {
    type Item = Result<ScoreRow>;

    fn next(&mut self) -> Option<Result<ScoreRow>> {
        loop {
            let line = self.lines.next()?;
            self.line += 1;
            match line {
                Err(e) => return Some(Err(Error::io(&self.path, e))),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => return Some(self.parse(&text)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_files_are_named_by_row() {
        assert_eq!(map_file(12, MapKind::Vog), "12.vog.npy");
        assert_eq!(map_file(0, MapKind::Grad), "0.grad.npy");
    }

    #[test]
    fn a_directory_without_a_manifest_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let e = ResultsDir::open(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("not a results directory"), "{e}");
        let e = ResultsDir::open(&tmp.path().join("missing")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
