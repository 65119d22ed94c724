//! `scores.jsonl`: one [`ScoreRow`] per example, in dataset order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Scores of one example, as one line of `scores.jsonl`. Undefined scores (NaN) are `None`
/// (`null` in the file, an empty cell in the CSV).
///
/// The fields are declared in the order the file has always written them (alphabetical), so a
/// line written from this type is byte for byte what earlier versions wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    /// Per checkpoint: the predicted class and the margin of the class used. Absent for stored
    /// gradients (no logits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Trajectory>,
    /// Flagged by the `[flag]` policy.
    pub flagged: bool,
    /// Whether its VoG map and last-checkpoint gradient were kept (`maps/ROW.*.npy`).
    pub has_map: bool,
    /// Example id (from the dataset, an ids file, a stored-gradient file name, or the row).
    pub id: String,
    /// The class used for scoring and normalization.
    pub label_used: Option<u32>,
    /// Metadata joined to the example.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The last checkpoint's prediction (absent for stored gradients).
    pub predicted: Option<u32>,
    /// Position in the dataset.
    pub row: u64,
    /// Panel scores by column name (`margin_mean`, `el2n`, …).
    pub scores: BTreeMap<String, Option<f64>>,
    /// Split name, when the data has one.
    pub split: Option<String>,
    /// The dataset's label, when there is one.
    pub true_label: Option<u32>,
    /// Raw VoG per window name.
    pub vog: BTreeMap<String, Option<f64>>,
    /// Class-normalized VoG per window name (`None` without a label to normalize within).
    pub vog_norm: BTreeMap<String, Option<f64>>,
}

/// An example's path through training: one entry per checkpoint, in checkpoint order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The margin of the class used (its logit minus the largest other logit).
    pub margin: Vec<Option<f64>>,
    /// The predicted class.
    pub predicted: Vec<u32>,
}

impl ScoreRow {
    /// Every score column of the row under its one name: `vog_WINDOW` and `vog_WINDOW_norm` for
    /// each window (in the row's order), then the panel columns. Undefined scores are `None`.
    pub fn columns(&self) -> impl Iterator<Item = (String, Option<f64>)> + '_ {
        let raw = self.vog.iter().map(|(w, v)| (format!("vog_{w}"), *v));
        let norm = self
            .vog_norm
            .iter()
            .map(|(w, v)| (format!("vog_{w}_norm"), *v));
        let panel = self.scores.iter().map(|(c, v)| (c.clone(), *v));
        raw.chain(norm).chain(panel)
    }

    /// One score column by its name (see [`ScoreRow::columns`]); `None` when the row has no
    /// such column or the score is undefined.
    pub fn column(&self, name: &str) -> Option<f64> {
        if let Some(w) = name.strip_prefix("vog_") {
            if let Some(w) = w.strip_suffix("_norm") {
                if let Some(v) = self.vog_norm.get(w) {
                    return *v;
                }
            }
            if let Some(v) = self.vog.get(w) {
                return *v;
            }
        }
        self.scores.get(name).copied().flatten()
    }

    /// The score results are ranked by in `window`: class-normalized VoG, or raw VoG when the
    /// example has no class to normalize within. `None` when both are undefined.
    pub fn ranking_score(&self, window: &str) -> Option<f64> {
        self.vog_norm
            .get(window)
            .copied()
            .flatten()
            .or_else(|| self.vog.get(window).copied().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_and_writes_back_unchanged() {
        let line = r#"{"checkpoints":{"margin":[0.5,null],"predicted":[1,2]},"flagged":true,"has_map":false,"id":"a","label_used":2,"meta":{"camera":"b"},"predicted":2,"row":7,"scores":{"el2n":null,"margin_mean":-0.25},"split":null,"true_label":null,"vog":{"all":1.5,"early":2.0},"vog_norm":{"all":null,"early":0.1}}"#;
        let r: ScoreRow = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        assert_eq!(r.column("vog_all"), Some(1.5));
        assert_eq!(r.column("vog_early_norm"), Some(0.1));
        assert_eq!(r.column("vog_all_norm"), None);
        assert_eq!(r.column("margin_mean"), Some(-0.25));
        assert_eq!(r.column("el2n"), None);
        assert_eq!(r.column("nope"), None);
        assert_eq!(r.ranking_score("all"), Some(1.5));
        assert_eq!(r.ranking_score("early"), Some(0.1));
        let names: Vec<String> = r.columns().map(|c| c.0).collect();
        assert_eq!(
            names,
            [
                "vog_all",
                "vog_early",
                "vog_all_norm",
                "vog_early_norm",
                "el2n",
                "margin_mean"
            ]
        );
    }

    #[test]
    fn a_window_named_like_a_suffix_is_still_found() {
        // A configured window may itself end in `_norm`.
        let mut r: ScoreRow = serde_json::from_str(
            r#"{"flagged":false,"has_map":false,"id":"a","label_used":null,"meta":{},"predicted":null,"row":0,"scores":{},"split":null,"true_label":null,"vog":{"x_norm":3.0},"vog_norm":{"x_norm":null}}"#,
        )
        .unwrap();
        assert_eq!(r.column("vog_x_norm"), Some(3.0));
        r.vog_norm.insert("x".into(), Some(4.0));
        assert_eq!(r.column("vog_x_norm"), Some(4.0));
    }
}
