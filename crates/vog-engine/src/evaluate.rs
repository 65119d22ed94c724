//! Which score finds the bad examples? AUROC, average precision and precision@k of every score
//! and window of a run against a known-bad flag (`vog evaluate`).
//!
//! Definitions follow scikit-learn, so numbers can be checked against it:
//! - AUROC: `roc_auc_score`, the Mann–Whitney statistic with tied scores counted as half;
//! - AUPRC: `average_precision_score`, `Σ (Rₙ − Rₙ₋₁) Pₙ` over distinct score thresholds (ties
//!   enter together), without interpolation;
//! - precision@k: the fraction of bad examples among the k highest scores, ties broken by row
//!   order (`numpy.argsort(-s, kind="stable")`).
//!
//! Each score is oriented so that higher means "more likely bad" before it is evaluated:
//! VoG, losses, EL2N, variability, forgetting and the label-free `msp_last`, `margin_last`,
//! `entropy_last`, `pred_changes` as they are; `margin_mean`, confidence and correctness negated. Examples whose score is undefined (NaN) are left out of that score.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use vog_results::{ResultsDir, ScoreRow};

use crate::{Error, Result};

pub use vog_core::rank::{auroc, average_precision, precision_at_k, LOWER_IS_HARDER};

/// How one score does.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreEvaluation {
    /// Column name (`vog_all_norm`, `el2n`, …).
    pub score: String,
    /// `higher` or `lower` (negated before evaluation) means harder.
    pub harder_when: &'static str,
    /// Examples with a defined score.
    pub n: usize,
    /// Bad examples among them.
    pub bad: usize,
    /// Area under the ROC curve (0.5: no better than chance).
    pub auroc: Option<f64>,
    /// Average precision (chance level: the bad fraction).
    pub auprc: Option<f64>,
    /// Precision at each requested k.
    pub precision_at: Vec<PrecisionAt>,
}

/// Precision among the k highest scores.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PrecisionAt {
    /// How many top examples.
    pub k: usize,
    /// Fraction of them that are bad (`None` when k exceeds the examples).
    pub precision: Option<f64>,
}

/// The evaluation of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Where the bad flag came from.
    pub bad_source: String,
    /// Examples in the run.
    pub examples: usize,
    /// Bad examples in the run.
    pub bad: usize,
    /// Per score, best AUROC first.
    pub scores: Vec<ScoreEvaluation>,
}

/// Which examples are bad.
#[derive(Debug, Clone)]
pub enum BadFlag {
    /// A field of each row: `meta.is_noisy`, `flagged`, or a bare name looked up in `meta`.
    Column(String),
    /// Example ids, one per line.
    Ids(std::path::PathBuf),
}

fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|x| x != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "y" | "t" => Some(true),
            "0" | "false" | "no" | "n" | "f" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The flag `path` names in a row: `meta.KEY`, a top-level field (`flagged`, `has_map`), or a
/// bare name looked up in `meta`. `Null` when the row has none.
fn lookup(row: &ScoreRow, path: &str) -> Value {
    match path {
        "flagged" => Value::Bool(row.flagged),
        "has_map" => Value::Bool(row.has_map),
        _ => {
            let key = path.strip_prefix("meta.").unwrap_or(path);
            row.meta.get(key).cloned().unwrap_or(Value::Null)
        }
    }
}

/// Evaluates every score of a results directory (`scores.jsonl`) against `flag`.
pub fn evaluate_results(results: &Path, flag: &BadFlag, ks: &[usize]) -> Result<Evaluation> {
    let run = ResultsDir::open(results)?;
    let path = run.file(vog_results::SCORES_JSONL);
    let rows = run
        .rows()?
        .collect::<vog_results::Result<Vec<ScoreRow>>>()?;
    if rows.is_empty() {
        return Err(Error::Input(format!("{}: no examples", path.display())));
    }
    let (bad, source) = match flag {
        BadFlag::Column(col) => {
            let mut bad = Vec::with_capacity(rows.len());
            for (i, r) in rows.iter().enumerate() {
                let v = lookup(r, col);
                bad.push(truthy(&v).ok_or_else(|| {
                    Error::Input(format!(
                        "{}: example {} (id `{}`): `{col}` is {}, not a true/false flag",
                        path.display(),
                        i,
                        r.id,
                        if v.is_null() {
                            "missing".to_string()
                        } else {
                            v.to_string()
                        }
                    ))
                })?);
            }
            (bad, format!("column `{col}`"))
        }
        BadFlag::Ids(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            let ids: std::collections::HashSet<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let bad: Vec<bool> = rows.iter().map(|r| ids.contains(r.id.as_str())).collect();
            let found = bad.iter().filter(|&&b| b).count();
            if found < ids.len() {
                return Err(Error::Input(format!(
                    "{}: {} of its {} ids are not in {}",
                    file.display(),
                    ids.len() - found,
                    ids.len(),
                    path.display()
                )));
            }
            (bad, format!("ids in {}", file.display()))
        }
    };
    let n_bad = bad.iter().filter(|&&b| b).count();
    if n_bad == 0 || n_bad == rows.len() {
        return Err(Error::Input(format!(
            "{source}: {n_bad} of {} examples are bad; evaluation needs both bad and good ones",
            rows.len()
        )));
    }
    // Every score column: VoG windows (raw and normalized), then the panel.
    let names: Vec<String> = rows[0].columns().map(|(name, _)| name).collect();
    let mut out = Vec::new();
    for name in &names {
        let lower = LOWER_IS_HARDER.contains(&name.as_str());
        let mut s = Vec::new();
        let mut b = Vec::new();
        for (r, &is_bad) in rows.iter().zip(&bad) {
            if let Some(v) = r.column(name).filter(|v| v.is_finite()) {
                // `+ 0.0` turns a negated zero into zero, so ties stay ties in the ordering.
                s.push(if lower { -v + 0.0 } else { v });
                b.push(is_bad);
            }
        }
        if s.is_empty() {
            continue;
        }
        let n_bad_here = b.iter().filter(|&&x| x).count();
        let ks_here: Vec<usize> = if ks.is_empty() {
            vec![n_bad_here]
        } else {
            ks.to_vec()
        };
        out.push(ScoreEvaluation {
            score: name.clone(),
            harder_when: if lower { "lower" } else { "higher" },
            n: s.len(),
            bad: n_bad_here,
            auroc: auroc(&s, &b),
            auprc: average_precision(&s, &b),
            precision_at: ks_here
                .iter()
                .map(|&k| PrecisionAt {
                    k,
                    precision: precision_at_k(&s, &b, k),
                })
                .collect(),
        });
    }
    out.sort_by(|a, b| {
        b.auroc
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.auroc.unwrap_or(f64::NEG_INFINITY))
            .then_with(|| a.score.cmp(&b.score))
    });
    Ok(Evaluation {
        bad_source: source,
        examples: rows.len(),
        bad: n_bad,
        scores: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_metrics() {
        let s = [0.9, 0.8, 0.8, 0.1];
        let b = [true, false, true, false];
        // Pairs (pos, neg): (0.9,0.8) 1, (0.9,0.1) 1, (0.8,0.8) ½, (0.8,0.1) 1 → 3.5 / 4.
        assert_eq!(auroc(&s, &b), Some(0.875));
        // Thresholds 0.9: R ½ P 1; 0.8: R 1 P ⅔ → ½·1 + ½·⅔.
        assert!((average_precision(&s, &b).unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(precision_at_k(&s, &b, 2), Some(0.5));
        assert_eq!(precision_at_k(&s, &b, 5), None);
        assert_eq!(auroc(&s, &[true; 4]), None);
        assert_eq!(average_precision(&s, &[false; 4]), None);
    }
}
