//! Indexing scoring runs: one document per example per run, ranks and percentiles computed over
//! the run, review state carried over from the review database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tantivy::schema::Schema;
use tantivy::{TantivyDocument, Term};
use vog_results::{ResultsDir, ScoreRow};

use crate::names::check_run_name;
use crate::{Error, Result, Store};

/// How to index a results directory.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Run name (default: the results directory's name).
    pub run: Option<String>,
    /// Class names, indexed by class.
    pub class_names: Option<Vec<String>>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The run name.
    pub run: String,
    /// Examples indexed.
    pub examples: usize,
    /// Examples flagged by the run's policy.
    pub flagged: usize,
    /// Examples whose review state was carried over.
    pub reviewed: usize,
}

/// Reads class names: a text file with one name per line, or a JSON array.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{}: not a JSON array of names: {e}",
                path.display()
            ))
        });
    }
    Ok(text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// File name endings of the metadata values that `vog serve` shows as images.
pub const IMAGE_EXTENSIONS: &[&str] = &[".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"];

/// A metadata value that names an image file relative to the dataset (the only files `vog serve`
/// hands out), as it is requested: without a leading `./`. `None` for anything else (URLs,
/// absolute paths, other files).
pub fn asset_path(value: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let path = value.trim_start_matches("./");
    let image = IMAGE_EXTENSIONS.iter().any(|x| lower.ends_with(x));
    (image && !value.contains("://") && !path.is_empty() && !path.starts_with('/'))
        .then(|| path.to_string())
}

/// Ranks (1 = highest) and percentiles (100 = highest) of `values`.
fn rank(values: &[f64]) -> (Vec<u64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let n = values.len() as f64;
    let mut ranks = vec![0; values.len()];
    let mut pct = vec![0.0; values.len()];
    for (r, &i) in order.iter().enumerate() {
        ranks[i] = r as u64 + 1;
        pct[i] = 100.0 * (n - r as f64) / n;
    }
    (ranks, pct)
}

impl Store {
    /// Indexes a results directory written by `vog score` (`scores.jsonl` and `run.json`).
    /// Indexing the same run again replaces its documents: the operation is idempotent, and
    /// review decisions (kept in the review database) are carried over.
    pub fn index_results(&self, results: &Path, options: &ImportOptions) -> Result<ImportSummary> {
        let run = match &options.run {
            Some(r) => r.clone(),
            None => results
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "run".into()),
        };
        check_run_name(&run)?;
        let results = ResultsDir::open(results)?;
        let manifest = results.manifest();
        let dataset = manifest
            .data
            .path
            .as_deref()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "stored-gradients".into());
        let split = manifest.data.split.clone().unwrap_or_default();
        let window = manifest
            .main_window()
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: no windows",
                    results.file(vog_results::RUN_JSON).display()
                ))
            })?
            .to_string();
        // Two streaming passes over scores.jsonl: ranks first (a few numbers per example), then
        // documents straight into the index writer, so memory does not hold every row.
        let ranks = Ranks::of(&results, &window)?;
        let run_doc = RunDoc {
            run: &run,
            dataset: &dataset,
            split: &split,
            window: &window,
            class_names: options.class_names.as_deref(),
        };
        let (flagged, reviewed, assets) = self.write_documents(&results, &run_doc, &ranks)?;
        self.copy_run_files(&results, &run)?;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO runs (run, dataset, split, score_window, examples, indexed_utc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(run) DO UPDATE SET dataset = ?2, split = ?3, score_window = ?4, examples = ?5, indexed_utc = ?6",
            rusqlite::params![run, dataset, split, window, ranks.total as i64, vog_core::now_rfc3339()],
        )?;
        tx.execute("DELETE FROM assets WHERE run = ?1", [&run])?;
        {
            let mut ins = tx.prepare("INSERT INTO assets (run, path) VALUES (?1, ?2)")?;
            for path in &assets {
                ins.execute(rusqlite::params![run, path])?;
            }
        }
        tx.commit()?;
        Ok(ImportSummary {
            run,
            examples: ranks.total,
            flagged,
            reviewed,
        })
    }

    /// Replaces the run's documents with one per row of `results` (the review state applied)
    /// and commits; returns the flagged and reviewed counts and the asset paths the rows name.
    fn write_documents(
        &self,
        results: &ResultsDir,
        run: &RunDoc<'_>,
        ranks: &Ranks,
    ) -> Result<(usize, usize, BTreeSet<String>)> {
        // The writer first, then the review state: no sync can move `indexed_seq` past a
        // decision while the writer is held here, so a decision recorded after this read is
        // re-indexed by the next sync instead of being lost under the new documents.
        let mut writer = self.writer(Duration::from_secs(120))?.ok_or_else(|| {
            Error::Input("the search index is busy (another process holds its writer)".into())
        })?;
        let review = self.review_state(&format!("{}/", run.run))?;
        let schema: Schema = self.index.schema();
        let scores_path = results.file(vog_results::SCORES_JSONL);
        let (mut flagged, mut reviewed) = (0, 0);
        let mut assets: BTreeSet<String> = BTreeSet::new();
        writer.delete_term(Term::from_field_text(self.fields.run, run.run));
        for (i, r) in results.rows()?.enumerate() {
            let r = r?;
            assets.extend(r.meta.values().filter_map(|v| asset_path(v.as_str()?)));
            flagged += usize::from(r.flagged);
            let mut doc = run.document(&r, ranks, i);
            let d = doc.as_object_mut().expect("object");
            if let Some(state) = review.get(&format!("{}/{}", run.run, r.id)) {
                state.apply(d);
                reviewed += 1;
            }
            let text = doc.to_string();
            let parsed = TantivyDocument::parse_json(&schema, &text)
                .map_err(|e| Error::Input(format!("{} example {i}: {e}", scores_path.display())))?;
            writer.add_document(parsed)?;
        }
        writer.commit()?;
        drop(writer);
        self.refresh()?;
        Ok((flagged, reviewed, assets))
    }

    /// Copies the run's manifest and kept maps into the store (`runs/RUN/`).
    fn copy_run_files(&self, results: &ResultsDir, run: &str) -> Result<()> {
        let run_dir = self.run_dir(run);
        std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
        let manifest_path = results.file(vog_results::RUN_JSON);
        std::fs::copy(&manifest_path, run_dir.join(vog_results::RUN_JSON))
            .map_err(|e| Error::io(&manifest_path, e))?;
        let maps = results.file(vog_results::MAPS_DIR);
        if maps.is_dir() {
            let dst = run_dir.join(vog_results::MAPS_DIR);
            std::fs::create_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
            for entry in std::fs::read_dir(&maps).map_err(|e| Error::io(&maps, e))? {
                let p = entry.map_err(|e| Error::io(&maps, e))?.path();
                if let Some(f) = p.file_name() {
                    std::fs::copy(&p, dst.join(f)).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
        Ok(())
    }
}

/// The ranking score of a row: class-normalized VoG of `window`, raw VoG without a class.
fn ranking_score(r: &ScoreRow, window: &str) -> f64 {
    r.ranking_score(window).unwrap_or(f64::NAN)
}

/// Every row's rank and percentile over the run and within its class (first pass).
struct Ranks {
    total: usize,
    rank: Vec<u64>,
    percentile: Vec<f64>,
    class_rank: Vec<u64>,
    class_percentile: Vec<f64>,
}

impl Ranks {
    /// Reads a few numbers per row of `results`, refusing an id that appears twice.
    fn of(results: &ResultsDir, window: &str) -> Result<Ranks> {
        let mut scores: Vec<f64> = Vec::new();
        let mut classes: Vec<Option<u32>> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, r) in results.rows()?.enumerate() {
            let r = r?;
            scores.push(ranking_score(&r, window));
            classes.push(r.label_used);
            if let Some(prev) = seen.insert(r.id.clone(), i) {
                return Err(Error::Input(format!(
                    "{}: id `{}` appears for examples {} and {}; ids must be unique within a run",
                    results.file(vog_results::SCORES_JSONL).display(),
                    r.id,
                    prev,
                    i
                )));
            }
        }
        let total = scores.len();
        let (rank_all, pct_all) = rank(&scores);
        let mut by_class: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
        for (i, c) in classes.iter().enumerate() {
            by_class.entry(*c).or_default().push(i);
        }
        let mut class_rank = vec![0u64; total];
        let mut class_percentile = vec![0f64; total];
        for members in by_class.values() {
            let vals: Vec<f64> = members.iter().map(|&i| scores[i]).collect();
            let (r, p) = rank(&vals);
            for (k, &i) in members.iter().enumerate() {
                class_rank[i] = r[k];
                class_percentile[i] = p[k];
            }
        }
        Ok(Ranks {
            total,
            rank: rank_all,
            percentile: pct_all,
            class_rank,
            class_percentile,
        })
    }
}

/// What every document of a run shares.
struct RunDoc<'a> {
    run: &'a str,
    dataset: &'a str,
    split: &'a str,
    window: &'a str,
    class_names: Option<&'a [String]>,
}

impl RunDoc<'_> {
    /// The index document of row `i`, unreviewed.
    fn document(&self, r: &ScoreRow, ranks: &Ranks, i: usize) -> Value {
        let raw = r
            .vog
            .get(self.window)
            .copied()
            .flatten()
            .unwrap_or(f64::NAN);
        let all_scores: Map<String, Value> = r
            .columns()
            .filter_map(|(name, v)| Some((name, json!(v?))))
            .collect();
        let mut doc = json!({
            "key": format!("{}/{}", self.run, r.id), "run": self.run, "dataset": self.dataset,
            "split": self.split, "id": r.id, "row": r.row,
            "score": ranking_score(r, self.window), "vog": raw,
            "rank": ranks.rank[i], "percentile": ranks.percentile[i],
            "class_rank": ranks.class_rank[i], "class_percentile": ranks.class_percentile[i],
            "flagged": r.flagged, "has_map": r.has_map,
            "scores": all_scores, "meta": r.meta,
            "status": "unreviewed", "decision": "", "reviewer": "", "notes": "",
        });
        let d = doc.as_object_mut().expect("object");
        if let Some(c) = &r.checkpoints {
            d.insert("checkpoints".into(), json!(c));
        }
        let name = |c: u32| self.class_names.and_then(|n| n.get(c as usize)).cloned();
        for (field, value, name_field) in [
            ("class", r.label_used, "class_name"),
            ("true_label", r.true_label, "true_name"),
            ("predicted", r.predicted, "predicted_name"),
        ] {
            if let Some(c) = value {
                d.insert(field.into(), json!(c));
                if let Some(n) = name(c) {
                    d.insert(name_field.into(), json!(n));
                }
            }
        }
        doc
    }
}

impl Store {
    /// Whether an indexed example of `run` names `path` in its metadata (as [`asset_path`] gives
    /// it): the files `vog serve` may hand out. Runs indexed before vog recorded these name none.
    pub fn names_asset(&self, run: &str, path: &str) -> Result<bool> {
        let n: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM assets WHERE run = ?1 AND path = ?2",
            [run, path],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_percentiles() {
        let (r, p) = rank(&[0.5, 2.0, -1.0, 2.0]);
        assert_eq!(r, vec![3, 1, 4, 2]);
        assert_eq!(p, vec![50.0, 100.0, 25.0, 75.0]);
    }
}
