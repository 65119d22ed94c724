//! Exporting exactly a filtered set, with its decisions: CSV, JSON lines, a relabel list for
//! training code, and Label Studio tasks.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Map, Value};

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

impl Store {
    /// Writes every example matching `req` (in its sort order) to `out`; returns how many.
    pub fn export(
        &self,
        req: &SearchRequest,
        format: ExportFormat,
        out: &mut dyn Write,
    ) -> Result<usize> {
        let total = self
            .search(&SearchRequest {
                limit: 1,
                ..req.clone()
            })?
            .total;
        let hits = self
            .search(&SearchRequest {
                limit: total.max(1),
                offset: 0,
                ..req.clone()
            })?
            .hits;
        let werr = |e: std::io::Error| Error::Input(format!("writing the export: {e}"));
        match format {
            ExportFormat::Jsonl => {
                for h in &hits {
                    let mut doc = h.clone();
                    let key = h["key"].as_str().unwrap_or_default();
                    let history = self.history(key)?;
                    if let Some(d) = doc.as_object_mut() {
                        d.insert(
                            "history".into(),
                            serde_json::to_value(history).unwrap_or(Value::Null),
                        );
                    }
                    serde_json::to_writer(&mut *out, &doc)
                        .map_err(|e| Error::Input(e.to_string()))?;
                    out.write_all(b"\n").map_err(werr)?;
                }
                Ok(hits.len())
            }
            ExportFormat::Csv => {
                let fixed = [
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
                let mut score_keys = BTreeSet::new();
                let mut meta_keys = BTreeSet::new();
                for h in &hits {
                    score_keys.extend(
                        h["scores"]
                            .as_object()
                            .into_iter()
                            .flat_map(|m| m.keys().cloned()),
                    );
                    meta_keys.extend(
                        h["meta"]
                            .as_object()
                            .into_iter()
                            .flat_map(|m| m.keys().cloned()),
                    );
                }
                let mut w = csv::Writer::from_writer(&mut *out);
                let mut header: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
                header.extend(score_keys.iter().cloned());
                header.extend(meta_keys.iter().map(|k| format!("meta.{k}")));
                w.write_record(&header)
                    .map_err(|e| Error::Input(e.to_string()))?;
                for h in &hits {
                    let mut row: Vec<String> = fixed.iter().map(|f| cell(&h[*f])).collect();
                    row.extend(score_keys.iter().map(|k| cell(&h["scores"][k])));
                    row.extend(meta_keys.iter().map(|k| cell(&h["meta"][k])));
                    w.write_record(&row)
                        .map_err(|e| Error::Input(e.to_string()))?;
                }
                w.flush().map_err(werr)?;
                Ok(hits.len())
            }
            ExportFormat::Relabel => {
                let mut w = csv::Writer::from_writer(&mut *out);
                w.write_record(["run", "id", "row", "old_label", "new_label"])
                    .map_err(|e| Error::Input(e.to_string()))?;
                let mut n = 0;
                for h in hits
                    .iter()
                    .filter(|h| h["decision"] == "mislabeled" && h["new_label"].is_u64())
                {
                    let row = [
                        cell(&h["run"]),
                        cell(&h["id"]),
                        cell(&h["row"]),
                        cell(&h["true_label"]),
                        cell(&h["new_label"]),
                    ];
                    w.write_record(&row)
                        .map_err(|e| Error::Input(e.to_string()))?;
                    n += 1;
                }
                w.flush().map_err(werr)?;
                Ok(n)
            }
            ExportFormat::LabelStudio => {
                let tasks: Vec<Value> = hits
                    .iter()
                    .map(|h| {
                        let mut data = Map::new();
                        for f in ["key", "run", "split", "id", "class", "class_name", "predicted", "score", "status", "decision"] {
                            if !h[f].is_null() {
                                data.insert(f.into(), h[f].clone());
                            }
                        }
                        if let Some(m) = h["meta"].as_object() {
                            for (k, v) in m {
                                data.insert(format!("meta_{k}"), v.clone());
                            }
                        }
                        let label = h["class_name"].as_str().map(String::from).unwrap_or_else(|| cell(&h["class"]));
                        json!({
                            "data": data,
                            "predictions": [{
                                "model_version": "vog",
                                "score": h["score"],
                                "result": [{"from_name": "label", "to_name": "item", "type": "choices",
                                            "value": {"choices": [label]}}]
                            }]
                        })
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &tasks)
                    .map_err(|e| Error::Input(e.to_string()))?;
                out.write_all(b"\n").map_err(werr)?;
                Ok(tasks.len())
            }
        }
    }
}
