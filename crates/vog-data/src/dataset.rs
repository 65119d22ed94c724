//! Examples, labels, ids and metadata, whatever file format they come in.

use std::path::{Path, PathBuf};

use crate::{ArrayFile, Error, Result};

/// File formats vog reads examples from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// numpy `.npy`.
    Npy,
    /// numpy `.npz` (plain or compressed).
    Npz,
    /// IDX, the MNIST format (`*-ubyte`, `.idx`, optionally `.gz`).
    Idx,
    /// CSV with a header row.
    Csv,
    /// JSON lines (metadata only).
    Jsonl,
    /// Plain text, one value per line (labels and ids only).
    Text,
}

impl Format {
    /// Guesses the format from the file name.
    pub fn detect(path: &Path) -> Result<Format> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let format = if name.ends_with(".npy") {
            Format::Npy
        } else if name.ends_with(".npz") {
            Format::Npz
        } else if name.ends_with(".csv") {
            Format::Csv
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Format::Jsonl
        } else if name.ends_with(".txt") {
            Format::Text
        } else if name.ends_with(".idx") || name.ends_with("-ubyte") || name.contains("-idx") {
            Format::Idx
        } else {
            return Err(Error::format(
                path,
                "cannot tell the format from the file name; expected .npy, .npz, .csv, .jsonl, \
                 .txt or an IDX name (*.idx, *-ubyte, optionally .gz), or set `format`",
            ));
        };
        Ok(format)
    }

    /// Parses a format name as written in configuration files.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "npy" => Format::Npy,
            "npz" => Format::Npz,
            "idx" => Format::Idx,
            "csv" => Format::Csv,
            "jsonl" => Format::Jsonl,
            "txt" | "text" => Format::Text,
            _ => return None,
        })
    }
}

/// Rows of examples, read in batches along the first axis.
pub trait ExampleSource: Send + std::fmt::Debug {
    /// The file the examples come from.
    fn path(&self) -> &Path;
    /// Number of examples.
    fn len(&self) -> usize;
    /// True when there is no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one example as stored.
    fn row_shape(&self) -> &[usize];
    /// Appends examples `start..start + count` as `f32` to `out`.
    fn read_rows(&mut self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()>;
    /// Labels stored alongside the examples (a CSV label column), if any.
    fn labels(&self) -> Option<&[u32]> {
        None
    }
    /// Example ids stored alongside the examples (a CSV id column), if any.
    fn ids(&self) -> Option<&[String]> {
        None
    }
}

impl ExampleSource for ArrayFile {
    fn path(&self) -> &Path {
        ArrayFile::path(self)
    }
    fn len(&self) -> usize {
        self.rows()
    }
    fn row_shape(&self) -> &[usize] {
        ArrayFile::row_shape(self)
    }
    fn read_rows(&mut self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        self.read_f32(start, count, out)
    }
}

/// Which columns of a CSV file hold what.
#[derive(Debug, Clone, Default)]
pub struct CsvColumns {
    /// Column holding integer class labels.
    pub label: Option<String>,
    /// Column holding example ids.
    pub id: Option<String>,
    /// Feature columns, in order; `None` means every other column.
    pub features: Option<Vec<String>>,
}

/// A CSV table of numeric features, held in memory (CSV is meant for tabular data; use `.npy`
/// for large arrays).
#[derive(Debug, Clone)]
pub struct CsvTable {
    path: PathBuf,
    features: Vec<String>,
    shape: [usize; 1],
    values: Vec<f32>,
    labels: Option<Vec<u32>>,
    ids: Option<Vec<String>>,
}

impl CsvTable {
    /// Reads a CSV file with a header row.
    pub fn open(path: &Path, columns: &CsvColumns) -> Result<Self> {
        let mut reader = csv_reader(path)?;
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| Error::format(path, format!("cannot read the header row: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let find = |name: &str, role: &str| {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "no {role} column `{name}`; columns are: {}",
                        headers.join(", ")
                    ),
                )
            })
        };
        let label_at = columns
            .label
            .as_deref()
            .map(|n| find(n, "label"))
            .transpose()?;
        let id_at = columns.id.as_deref().map(|n| find(n, "id")).transpose()?;
        let feature_at: Vec<usize> = match &columns.features {
            Some(names) => names
                .iter()
                .map(|n| find(n, "feature"))
                .collect::<Result<_>>()?,
            None => (0..headers.len())
                .filter(|i| Some(*i) != label_at && Some(*i) != id_at)
                .collect(),
        };
        if feature_at.is_empty() {
            return Err(Error::format(path, "no feature column left"));
        }
        let mut values = Vec::new();
        let mut labels = label_at.map(|_| Vec::new());
        let mut ids = id_at.map(|_| Vec::new());
        for (row, record) in reader.records().enumerate() {
            let record =
                record.map_err(|e| Error::format(path, format!("row {}: {e}", row + 1)))?;
            for &c in &feature_at {
                let text = record.get(c).unwrap_or("").trim();
                let v: f32 = text.parse().map_err(|_| {
                    Error::format(
                        path,
                        format!(
                            "row {}, column `{}`: `{text}` is not a number",
                            row + 1,
                            headers[c]
                        ),
                    )
                })?;
                if !v.is_finite() {
                    return Err(Error::format(
                        path,
                        format!(
                            "row {}, column `{}`: value {text} is not finite",
                            row + 1,
                            headers[c]
                        ),
                    ));
                }
                values.push(v);
            }
            if let (Some(c), Some(l)) = (label_at, labels.as_mut()) {
                l.push(parse_label(record.get(c).unwrap_or(""), path, row)?);
            }
            if let (Some(c), Some(i)) = (id_at, ids.as_mut()) {
                i.push(record.get(c).unwrap_or("").trim().to_string());
            }
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            features: feature_at.iter().map(|&i| headers[i].clone()).collect(),
            shape: [feature_at.len()],
            values,
            labels,
            ids,
        })
    }

    /// Names of the feature columns, in order.
    pub fn feature_names(&self) -> &[String] {
        &self.features
    }
}

impl ExampleSource for CsvTable {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> usize {
        self.values.len() / self.shape[0]
    }
    fn row_shape(&self) -> &[usize] {
        &self.shape
    }
    fn read_rows(&mut self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        let w = self.shape[0];
        let rows = self
            .values
            .get(start * w..(start + count) * w)
            .ok_or_else(|| {
                Error::Mismatch(format!(
                    "{}: rows {start}..{} requested, the table has {}",
                    self.path.display(),
                    start + count,
                    self.len()
                ))
            })?;
        out.extend_from_slice(rows);
        Ok(())
    }
    fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }
    fn ids(&self) -> Option<&[String]> {
        self.ids.as_deref()
    }
}

pub(crate) fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(f))
}

fn parse_label(text: &str, path: &Path, row: usize) -> Result<u32> {
    let text = text.trim();
    let v: f64 = text.parse().map_err(|_| {
        Error::format(
            path,
            format!(
                "row {}: label `{text}` is not an integer class index",
                row + 1
            ),
        )
    })?;
    label_from_f64(v, path, row)
}

fn label_from_f64(v: f64, path: &Path, row: usize) -> Result<u32> {
    if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
        return Err(Error::format(
            path,
            format!("label {v} at row {row} is not a non-negative integer class index"),
        ));
    }
    Ok(v as u32)
}

/// Opens the examples of a dataset file.
pub fn open_examples(
    path: &Path,
    format: Option<Format>,
    key: Option<&str>,
    csv: &CsvColumns,
) -> Result<Box<dyn ExampleSource>> {
    let format = match format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    Ok(match format {
        Format::Npy => Box::new(ArrayFile::open_npy(path)?),
        Format::Npz => Box::new(ArrayFile::open_npz(path, key)?),
        Format::Idx => Box::new(ArrayFile::open_idx(path)?),
        Format::Csv => Box::new(CsvTable::open(path, csv)?),
        Format::Jsonl | Format::Text => {
            return Err(Error::format(
                path,
                "examples must be .npy, .npz, IDX or CSV",
            ))
        }
    })
}

/// Reads integer class labels: a 1-d (or `[N, 1]`) array in `.npy`/`.npz`/IDX, a CSV column, or a
/// text file with one label per line.
pub fn read_labels(path: &Path, key: Option<&str>, column: Option<&str>) -> Result<Vec<u32>> {
    let format = Format::detect(path)?;
    let mut array = match format {
        Format::Npy => ArrayFile::open_npy(path)?,
        Format::Npz => ArrayFile::open_npz(path, key)?,
        Format::Idx => ArrayFile::open_idx(path)?,
        Format::Csv => {
            let column = column
                .ok_or_else(|| Error::format(path, "labels from a CSV file need `label_column`"))?;
            let cols = CsvColumns {
                label: Some(column.into()),
                id: None,
                features: None,
            };
            let mut reader = csv_reader(path)?;
            let headers = reader
                .headers()
                .map_err(|e| Error::format(path, e))?
                .clone();
            let at = headers
                .iter()
                .position(|h| h.trim() == column)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!("no label column `{}`", cols.label.as_deref().unwrap_or("")),
                    )
                })?;
            return reader
                .records()
                .enumerate()
                .map(|(row, r)| {
                    let r = r.map_err(|e| Error::format(path, format!("row {}: {e}", row + 1)))?;
                    parse_label(r.get(at).unwrap_or(""), path, row)
                })
                .collect();
        }
        Format::Text => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(row, l)| parse_label(l, path, row))
                .collect();
        }
        Format::Jsonl => return Err(Error::format(path, "labels cannot be read from JSON lines")),
    };
    let shape = array.shape().to_vec();
    if !(shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) {
        return Err(Error::format(
            path,
            format!("labels must be 1-d, got shape {shape:?}"),
        ));
    }
    array
        .read_all_f64()?
        .into_iter()
        .enumerate()
        .map(|(row, v)| label_from_f64(v, path, row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_features_labels_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "id,a,label,b\nx1,1.5,2,3\nx2,-1,0,4e-1\n").unwrap();
        let cols = CsvColumns {
            label: Some("label".into()),
            id: Some("id".into()),
            features: None,
        };
        let mut t = CsvTable::open(&p, &cols).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.row_shape(), &[2]);
        assert_eq!(t.feature_names(), ["a", "b"]);
        let mut out = Vec::new();
        t.read_rows(1, 1, &mut out).unwrap();
        assert_eq!(out, vec![-1.0, 0.4]);
        assert_eq!(t.labels(), Some(&[2, 0][..]));
        assert_eq!(t.ids().unwrap(), ["x1", "x2"]);
    }

    #[test]
    fn csv_errors_name_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "a,label\n1,0\nNaN,1\n").unwrap();
        let cols = CsvColumns {
            label: Some("label".into()),
            ..Default::default()
        };
        let err = CsvTable::open(&p, &cols).unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("`a`") && err.contains("t.csv"),
            "{err}"
        );
        std::fs::write(&p, "a,label\n1,0.5\n").unwrap();
        let err = CsvTable::open(&p, &cols).unwrap_err().to_string();
        assert!(err.contains("not a non-negative integer"), "{err}");
        let cols = CsvColumns {
            label: Some("y".into()),
            ..Default::default()
        };
        let err = CsvTable::open(&p, &cols).unwrap_err().to_string();
        assert!(err.contains("no label column `y`"), "{err}");
    }

    #[test]
    fn labels_from_npy_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("y.npy");
        crate::write_npy_i64(&p, &[3], &[2, 0, 1]).unwrap();
        assert_eq!(read_labels(&p, None, None).unwrap(), vec![2, 0, 1]);
        crate::write_npy_i64(&p, &[2], &[2, -1]).unwrap();
        assert!(read_labels(&p, None, None)
            .unwrap_err()
            .to_string()
            .contains("-1"));
        let t = dir.path().join("y.txt");
        std::fs::write(&t, "3\n4\n\n").unwrap();
        assert_eq!(read_labels(&t, None, None).unwrap(), vec![3, 4]);
    }
}

#[cfg(test)]
mod numpy_fixtures {
    //! Files written by numpy itself (`tests/data/golden/make_golden.py`, `formats`).
    use super::*;
    use serde_json::Value;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/formats")
            .join(name)
    }

    fn expected() -> (Vec<f32>, Vec<u32>) {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap())
                .unwrap();
        let x = v["x"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let y = v["y"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_u64().unwrap() as u32)
            .collect();
        (x, y)
    }

    fn read_all(src: &mut dyn ExampleSource) -> Vec<f32> {
        let mut out = Vec::new();
        // Two reads, the second going backwards, to exercise stream restarts.
        src.read_rows(1, 1, &mut out).unwrap();
        let mut first = Vec::new();
        src.read_rows(0, 1, &mut first).unwrap();
        first.extend(out);
        first
    }

    #[test]
    fn npz_plain_and_compressed() {
        let (x, y) = expected();
        for name in ["plain.npz", "compressed.npz"] {
            let mut src =
                open_examples(&fixture(name), None, Some("x"), &CsvColumns::default()).unwrap();
            assert_eq!(src.row_shape(), &[3, 4], "{name}");
            assert_eq!(read_all(src.as_mut()), x, "{name}");
            assert_eq!(
                read_labels(&fixture(name), Some("y"), None).unwrap(),
                y,
                "{name}"
            );
            let err =
                open_examples(&fixture(name), None, None, &CsvColumns::default()).unwrap_err();
            assert!(err.to_string().contains("several arrays (x, y)"), "{err}");
            let err =
                open_examples(&fixture(name), None, Some("z"), &CsvColumns::default()).unwrap_err();
            assert!(err.to_string().contains("no array `z`"), "{err}");
        }
    }

    #[test]
    fn npy_dtypes_and_byte_orders() {
        let (x, y) = expected();
        for name in ["x_f64_be.npy", "x_f16.npy"] {
            let mut src =
                open_examples(&fixture(name), None, None, &CsvColumns::default()).unwrap();
            assert_eq!(read_all(src.as_mut()), x, "{name}");
        }
        let mut src =
            open_examples(&fixture("x_u8.npy"), None, None, &CsvColumns::default()).unwrap();
        let scaled: Vec<f32> = x.iter().map(|v| v * 8.0).collect();
        assert_eq!(read_all(src.as_mut()), scaled);
        assert_eq!(read_labels(&fixture("y_i32.npy"), None, None).unwrap(), y);
        let err = open_examples(
            &fixture("x_fortran.npy"),
            None,
            None,
            &CsvColumns::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Fortran order"), "{err}");
    }
}
