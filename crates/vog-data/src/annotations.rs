//! Example ids and metadata, read as streams: a caller that hands each one on (to a file, to a
//! results writer) holds none of them per example.

use std::io::BufRead;
use std::path::Path;

use serde_json::{Map, Value};

use crate::dataset::csv_reader;
use crate::{Error, Format, Result};

/// Per-example metadata: one JSON object per example.
pub type Record = Map<String, Value>;

/// Calls `f` with each example id, in order: a text file with one id per line (surrounding
/// blanks trimmed, empty lines skipped), or the `id` (or first) column of a CSV. Returns how many
/// there were; stops at `f`'s first error (of any type a read error converts into).
pub fn visit_ids<E: From<Error>>(
    path: &Path,
    mut f: impl FnMut(String) -> std::result::Result<(), E>,
) -> std::result::Result<usize, E> {
    let mut count = 0;
    match Format::detect(path)? {
        Format::Text => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(|e| Error::io(path, e))?;
                let id = line.trim();
                if !id.is_empty() {
                    f(id.to_string())?;
                    count += 1;
                }
            }
        }
        Format::Csv => {
            let mut reader = csv_reader(path)?;
            let headers = reader
                .headers()
                .map_err(|e| Error::format(path, e))?
                .clone();
            let at = headers.iter().position(|h| h.trim() == "id").unwrap_or(0);
            let mut record = csv::StringRecord::new();
            while reader
                .read_record(&mut record)
                .map_err(|e| Error::format(path, e))?
            {
                f(record.get(at).unwrap_or("").trim().to_string())?;
                count += 1;
            }
        }
        _ => {
            return Err(
                Error::format(path, "ids must be a .txt (one per line) or .csv file").into(),
            )
        }
    }
    Ok(count)
}

/// Reads all example ids (see [`visit_ids`]).
pub fn read_ids(path: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    visit_ids(path, |id| {
        ids.push(id);
        Ok::<_, Error>(())
    })?;
    Ok(ids)
}

/// Calls `f` with each metadata record, in order: CSV rows (numbers become JSON numbers, empty
/// cells are left out) or JSON lines (one object per non-blank line). Returns how many there were;
/// stops at the first malformed record, naming its row or line, or at `f`'s first error.
pub fn visit_metadata<E: From<Error>>(
    path: &Path,
    mut f: impl FnMut(Record) -> std::result::Result<(), E>,
) -> std::result::Result<usize, E> {
    let mut count = 0;
    match Format::detect(path)? {
        Format::Csv => {
            let mut reader = csv_reader(path)?;
            let headers: Vec<String> = reader
                .headers()
                .map_err(|e| Error::format(path, e))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let mut record = csv::StringRecord::new();
            loop {
                let more = reader
                    .read_record(&mut record)
                    .map_err(|e| Error::format(path, format!("row {}: {e}", count + 1)))?;
                if !more {
                    break;
                }
                let mut m = Map::new();
                for (h, v) in headers.iter().zip(record.iter()) {
                    let v = v.trim();
                    if !v.is_empty() {
                        m.insert(h.clone(), csv_value(v));
                    }
                }
                f(m)?;
                count += 1;
            }
        }
        Format::Jsonl => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(m)) => f(m)?,
                    Ok(_) => {
                        return Err(Error::format(
                            path,
                            format!("line {}: not a JSON object", i + 1),
                        )
                        .into())
                    }
                    Err(e) => {
                        return Err(Error::format(path, format!("line {}: {e}", i + 1)).into())
                    }
                }
                count += 1;
            }
        }
        _ => return Err(Error::format(path, "metadata must be .csv or .jsonl").into()),
    }
    Ok(count)
}

/// Reads all metadata records (see [`visit_metadata`]).
pub fn read_metadata(path: &Path) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    visit_metadata(path, |r| {
        records.push(r);
        Ok::<_, Error>(())
    })?;
    Ok(records)
}

/// The id a metadata record joins on: the value of `key`, a string or a number (as written by
/// JSON); `record` is its 0-based position, for the error.
pub fn metadata_key(path: &Path, r: &Record, key: &str, record: usize) -> Result<String> {
    match r.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ Value::Number(_)) => Ok(v.to_string()),
        _ => Err(Error::format(
            path,
            format!("record {}: no `{key}` field to join on", record + 1),
        )),
    }
}

/// A CSV cell as a JSON value: integers (exactly representable) as integers, other finite numbers
/// as numbers, everything else as a string.
fn csv_value(v: &str) -> Value {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() => serde_json::Number::from_f64(n)
            .map(|n| {
                if n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9e15)
                {
                    Value::from(n.as_f64().unwrap_or_default() as i64)
                } else {
                    Value::Number(n)
                }
            })
            .unwrap_or_else(|| Value::String(v.into())),
        _ => Value::String(v.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_metadata_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("ids.txt");
        std::fs::write(&txt, " a \n\nb\nc\n").unwrap();
        assert_eq!(read_ids(&txt).unwrap(), ["a", "b", "c"]);
        let csv = dir.path().join("ids.csv");
        std::fs::write(&csv, "x,id\n1,p\n2,q\n").unwrap();
        assert_eq!(read_ids(&csv).unwrap(), ["p", "q"]);

        let meta = dir.path().join("m.csv");
        std::fs::write(&meta, "id,n,f,s\np,3,0.5,x\nq,,1e20,\n").unwrap();
        let m = read_metadata(&meta).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["n"], Value::from(3));
        assert_eq!(m[0]["f"], Value::from(0.5));
        assert_eq!(m[0]["s"], Value::from("x"));
        assert!(!m[1].contains_key("n") && !m[1].contains_key("s"));
        assert_eq!(metadata_key(&meta, &m[1], "id", 1).unwrap(), "q");
        let err = metadata_key(&meta, &m[1], "name", 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("record 2: no `name` field"), "{err}");

        let jsonl = dir.path().join("m.jsonl");
        std::fs::write(&jsonl, "{\"id\": 7}\n\n[1]\n").unwrap();
        let mut seen = 0;
        let err = visit_metadata(&jsonl, |r| {
            assert_eq!(metadata_key(&jsonl, &r, "id", 0).unwrap(), "7");
            seen += 1;
            Ok::<_, Error>(())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(seen, 1);
        assert!(err.contains("line 3: not a JSON object"), "{err}");
    }
}
