//! Exporting exactly a filtered set, with its decisions: CSV, JSON lines, a relabel list for
//! training code, and Label Studio tasks.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Map, Value};
use tantivy::{DocAddress, Searcher};

use crate::search::SearchRequest;
use crate::{Error, Result, Store};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One row per example: fields, scores and metadata as columns.
    Csv,
    /// One JSON document per line, with the decision history.
    Jsonl,
    /// `run,id,old_label,new_label` for every example whose latest decision is `mislabeled` with a
    /// label: what training code needs to fix its labels.
    Relabel,
    /// A JSON array of Label Studio tasks (data fields, and vog's label as a prediction).
    LabelStudio,
}

impl ExportFormat {
    /// Parses a format name (`csv`, `jsonl`, `relabel`, `label-studio`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "csv" => ExportFormat::Csv,
            "jsonl" => ExportFormat::Jsonl,
            "relabel" => ExportFormat::Relabel,
            "label-studio" => ExportFormat::LabelStudio,
            _ => return None,
        })
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A CSV cell. Text that a spreadsheet would run as a formula (first character `=`, `+`, `-`,
/// `@`, tab or carriage return) gets a leading `'`, OWASP's advice against CSV injection; text
/// that reads as a number (`-1.5`) and JSON numbers are left as they are.
fn csv_cell(v: &Value) -> String {
    let text = cell(v);
    if v.is_string() {
        csv_text(text)
    } else {
        text
    }
}

fn csv_text(text: String) -> String {
    let risky = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && text.trim().parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text
    }
}

/// The fixed columns of a CSV export, before the scores and the metadata.
const CSV_FIXED: &[&str] = &[
    "run",
    "split",
    "id",
    "row",
    "class",
    "class_name",
    "true_label",
    "predicted",
    "score",
    "vog",
    "rank",
    "percentile",
    "class_rank",
    "class_percentile",
    "flagged",
    "status",
    "decision",
    "new_label",
    "reviewer",
    "notes",
];

/// Rows are read from the index, and their histories from the review database, this many at a
/// time.
const PAGE: usize = 256;

/// A failure while writing an export (CSV, JSON or I/O), as one kind of error.
fn write_error(e: impl std::fmt::Display) -> Error {
    Error::Input(format!("writing the export: {e}"))
}

impl Store {
    /// The addresses of the examples matching `req`, in its sort order, skipping `req.offset`,
    /// at most `req.limit` of them (0: every match), on one fresh snapshot of the index.
    fn matches(&self, req: &SearchRequest) -> Result<(Searcher, Vec<DocAddress>)> {
        let prepared = self.prepare(req)?;
        let searcher = self.fresh_searcher()?;
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit
        };
        let (_, addresses, _) = prepared.run(&searcher, limit, req.offset)?;
        Ok((searcher, addresses))
    }

    /// Calls `each` with every example matching `req` (in its sort order, skipping
    /// `req.offset`, at most `req.limit` of them; a limit of 0 means every match), one document
    /// at a time, from one snapshot of the index; returns how many. Unlike [`Store::search`],
    /// the number of matches is not capped.
    pub fn for_each_match(
        &self,
        req: &SearchRequest,
        mut each: impl FnMut(Value) -> Result<()>,
    ) -> Result<usize> {
        let (searcher, addresses) = self.matches(req)?;
        for &a in &addresses {
            each(self.stored(&searcher, a)?)?;
        }
        Ok(addresses.len())
    }

    /// Writes the examples matching `req` (in its sort order, skipping `req.offset`, at most
    /// `req.limit` of them; a limit of 0 means every match) to `out`; returns how many.
    ///
    /// Streams: one page of documents is in memory at a time, with its histories read in one
    /// query; a CSV export reads the matched documents twice (once for the score and metadata
    /// columns of its header). The whole export reads one snapshot of the index.
    pub fn export(
        &self,
        req: &SearchRequest,
        format: ExportFormat,
        out: &mut dyn Write,
    ) -> Result<usize> {
        let (searcher, addresses) = self.matches(req)?;
        let pages = || {
            addresses.chunks(PAGE).map(|page| {
                page.iter()
                    .map(|&a| self.stored(&searcher, a))
                    .collect::<Result<Vec<Value>>>()
            })
        };
        let mut n = 0;
        match format {
            ExportFormat::Jsonl => {
                for page in pages() {
                    let mut page = page?;
                    let keys: Vec<&str> = page.iter().filter_map(|h| h["key"].as_str()).collect();
                    let mut histories = self.histories(&keys)?;
                    for doc in &mut page {
                        let key = doc["key"].as_str().unwrap_or_default().to_string();
                        let history = histories.remove(&key).unwrap_or_default();
                        if let Some(d) = doc.as_object_mut() {
                            d.insert(
                                "history".into(),
                                serde_json::to_value(history).unwrap_or(Value::Null),
                            );
                        }
                        serde_json::to_writer(&mut *out, &doc).map_err(write_error)?;
                        out.write_all(b"\n").map_err(write_error)?;
                        n += 1;
                    }
                }
            }
            ExportFormat::Csv => {
                let mut score_keys = BTreeSet::new();
                let mut meta_keys = BTreeSet::new();
                for page in pages() {
                    for h in page? {
                        for (keys, field) in [(&mut score_keys, "scores"), (&mut meta_keys, "meta")]
                        {
                            keys.extend(
                                h[field]
                                    .as_object()
                                    .into_iter()
                                    .flat_map(|m| m.keys().cloned()),
                            );
                        }
                    }
                }
                let mut w = csv::Writer::from_writer(&mut *out);
                let header = CSV_FIXED
                    .iter()
                    .map(|s| s.to_string())
                    .chain(score_keys.iter().cloned())
                    .chain(meta_keys.iter().map(|k| format!("meta.{k}")))
                    .map(csv_text);
                w.write_record(header).map_err(write_error)?;
                for page in pages() {
                    for h in page? {
                        let row = CSV_FIXED
                            .iter()
                            .map(|f| csv_cell(&h[*f]))
                            .chain(score_keys.iter().map(|k| csv_cell(&h["scores"][k])))
                            .chain(meta_keys.iter().map(|k| csv_cell(&h["meta"][k])));
                        w.write_record(row).map_err(write_error)?;
                        n += 1;
                    }
                }
                w.flush().map_err(write_error)?;
            }
            ExportFormat::Relabel => {
                let mut w = csv::Writer::from_writer(&mut *out);
                w.write_record(["run", "id", "row", "old_label", "new_label"])
                    .map_err(write_error)?;
                for page in pages() {
                    for h in page?
                        .iter()
                        .filter(|h| h["decision"] == "mislabeled" && h["new_label"].is_u64())
                    {
                        let row = ["run", "id", "row", "true_label", "new_label"]
                            .map(|f| csv_cell(&h[f]));
                        w.write_record(&row).map_err(write_error)?;
                        n += 1;
                    }
                }
                w.flush().map_err(write_error)?;
            }
            ExportFormat::LabelStudio => {
                out.write_all(b"[").map_err(write_error)?;
                for page in pages() {
                    for h in page? {
                        out.write_all(if n == 0 { b"\n" } else { b",\n" })
                            .map_err(write_error)?;
                        serde_json::to_writer_pretty(&mut *out, &label_studio_task(&h))
                            .map_err(write_error)?;
                        n += 1;
                    }
                }
                out.write_all(b"\n]\n").map_err(write_error)?;
            }
        }
        Ok(n)
    }
}

/// A Label Studio task: data fields, and vog's label as a prediction.
fn label_studio_task(h: &Value) -> Value {
    let mut data = Map::new();
    for f in [
        "key",
        "run",
        "split",
        "id",
        "class",
        "class_name",
        "predicted",
        "score",
        "status",
        "decision",
    ] {
        if !h[f].is_null() {
            data.insert(f.into(), h[f].clone());
        }
    }
    if let Some(m) = h["meta"].as_object() {
        for (k, v) in m {
            data.insert(format!("meta_{k}"), v.clone());
        }
    }
    let label = h["class_name"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| cell(&h["class"]));
    json!({
        "data": data,
        "predictions": [{
            "model_version": "vog",
            "score": h["score"],
            "result": [{"from_name": "label", "to_name": "item", "type": "choices",
                        "value": {"choices": [label]}}]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped_and_numbers_kept() {
        for (v, want) in [
            (
                json!("=HYPERLINK(\"http://x\")"),
                "'=HYPERLINK(\"http://x\")",
            ),
            (json!("+cmd|' /C calc'!A0"), "'+cmd|' /C calc'!A0"),
            (json!("-2+3"), "'-2+3"),
            (json!("@SUM(A1)"), "'@SUM(A1)"),
            (json!("\tx"), "'\tx"),
            (json!("\r=1"), "'\r=1"),
            (json!("-1.5"), "-1.5"),
            (json!("plain"), "plain"),
            (json!(-2.5), "-2.5"),
            (json!(null), ""),
        ] {
            assert_eq!(csv_cell(&v), want, "{v}");
        }
    }
}
