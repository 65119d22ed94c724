//! `vog merge`: joins the shards of a run (`vog score --shard I/N`) into one results directory.
//!
//! Class normalization needs every example of a class, which no shard has. Each shard's
//! `run.json` carries its per-class sufficient statistics (count, mean, population std per
//! window); merging them with Chan's formula gives the whole run's, and every row's normalized
//! scores are recomputed from its raw VoG while the shards' rows stream through. Memory holds the
//! statistics and one row, whatever the number of examples.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use vog_core::ClassStats;
use vog_results::{ClassEntry, Manifest, MergedFrom, ResultsDir, SCORES_CSV, SCORES_JSONL};

use crate::config::OutputConfig;
use crate::output::{defined, fmt_f64, write_dir_atomically};
use crate::{Error, Result};

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// Where the merged results are.
    pub dir: PathBuf,
    /// Shards merged.
    pub shards: usize,
    /// Examples in all.
    pub examples: usize,
}

struct ShardRun {
    results: ResultsDir,
    index: usize,
    count: usize,
    rows: [usize; 2],
}

impl ShardRun {
    fn dir(&self) -> &Path {
        self.results.path()
    }

    fn manifest(&self) -> &Manifest {
        self.results.manifest()
    }
}

fn shard_of(dir: &Path) -> Result<ShardRun> {
    let results = ResultsDir::open(dir)?;
    let m = results.manifest();
    let Some((index, count)) = m.shard() else {
        return Err(Error::Input(format!(
            "{}: not a shard (scored without --shard)",
            dir.display()
        )));
    };
    let rows = m.data.shard_rows.unwrap_or([0, 0]);
    Ok(ShardRun {
        results,
        index,
        count,
        rows,
    })
}

/// Checks that the shards are the slices of one run, each exactly once.
fn check(shards: &mut [ShardRun]) -> Result<()> {
    shards.sort_by_key(|s| s.index);
    let first = &shards[0];
    let n = first.count;
    for s in shards.iter() {
        if s.count != n {
            return Err(Error::Input(format!(
                "{} is shard {}/{} but {} is shard {}/{}: not the same split",
                s.dir().display(),
                s.index,
                s.count,
                first.dir().display(),
                first.index,
                first.count
            )));
        }
        // Same checkpoints (by content), data, windows, labels and target.
        let (a, b) = (first.manifest(), s.manifest());
        let differs = [
            (
                "checkpoints",
                a.checkpoints
                    .iter()
                    .map(|c| &c.sha256)
                    .ne(b.checkpoints.iter().map(|c| &c.sha256)),
            ),
            (
                "data",
                (&a.data.path, a.data.rows) != (&b.data.path, b.data.rows),
            ),
            ("windows", a.scoring.windows != b.scoring.windows),
            (
                "labels and target",
                (a.scoring.labels, a.scoring.target, a.scoring.second_target)
                    != (b.scoring.labels, b.scoring.target, b.scoring.second_target),
            ),
        ];
        if let Some((what, _)) = differs.iter().find(|d| d.1) {
            return Err(Error::Input(format!(
                "{} and {} differ in their {what}: shards of one run must share them",
                first.dir().display(),
                s.dir().display()
            )));
        }
    }
    let mut seen = vec![Vec::new(); n];
    for s in shards.iter() {
        seen[s.index].push(s.dir().display().to_string());
    }
    if let Some((i, dirs)) = seen.iter().enumerate().find(|(_, d)| d.len() > 1) {
        return Err(Error::Input(format!(
            "shard {i}/{n} given twice: {}",
            dirs.join(", ")
        )));
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_empty())
        .map(|(i, _)| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "missing shard(s) {} of {n}",
            missing.join(", ")
        )));
    }
    let mut next = 0;
    for s in shards.iter() {
        if s.rows[0] != next {
            return Err(Error::Input(format!(
                "{}: rows {}..{} do not follow row {next}",
                s.dir().display(),
                s.rows[0],
                s.rows[1]
            )));
        }
        next = s.rows[1];
    }
    Ok(())
}

/// Merged per-window class statistics from the shards' manifests.
fn merged_stats(shards: &[ShardRun]) -> BTreeMap<String, ClassStats> {
    let mut out: BTreeMap<String, ClassStats> = BTreeMap::new();
    for s in shards {
        for (window, entries) in &s.manifest().classes {
            let summaries = entries.iter().map(|e| (e.class, e.summary));
            out.entry(window.clone())
                .or_default()
                .merge(&ClassStats::from_summaries(summaries));
        }
    }
    out
}

/// Merges shard results into `out` (scores.jsonl and scores.csv when every shard has them, and
/// run.json), recomputing class-normalized VoG from the merged statistics.
pub fn merge_shards(dirs: &[PathBuf], out: &OutputConfig) -> Result<MergeSummary> {
    if dirs.is_empty() {
        return Err(Error::Input("no shard directories given".into()));
    }
    let mut shards = dirs
        .iter()
        .map(|d| shard_of(d))
        .collect::<Result<Vec<_>>>()?;
    check(&mut shards)?;
    let stats = merged_stats(&shards);
    let windows: Vec<String> = shards[0]
        .manifest()
        .window_names()
        .into_iter()
        .map(String::from)
        .collect();
    let normalize = |window: &str, class: Option<u64>, raw: Option<f64>| -> Option<f64> {
        let (c, v) = (class?, raw?);
        Some(stats.get(window)?.normalize(c as u32, v))
    };
    let has = |file: &str| shards.iter().all(|s| s.results.has(file));
    if !has(SCORES_JSONL) && !has(SCORES_CSV) {
        return Err(Error::Input(
            "the shards have neither scores.jsonl nor scores.csv in common".into(),
        ));
    }
    let mut examples = 0usize;
    let dir = write_dir_atomically(out, |tmp| {
        if has(SCORES_JSONL) {
            let path = tmp.join(SCORES_JSONL);
            let mut w =
                BufWriter::new(std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?);
            for s in &shards {
                for r in s.results.rows()? {
                    let mut r = r?;
                    let class = r.label_used.map(u64::from);
                    for wn in &windows {
                        let v = normalize(wn, class, r.vog.get(wn).copied().flatten());
                        r.vog_norm.insert(wn.clone(), v.and_then(defined));
                    }
                    serde_json::to_writer(&mut w, &r)
                        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
                    w.write_all(b"\n").map_err(|e| Error::io(&path, e))?;
                    examples += 1;
                }
            }
            w.flush().map_err(|e| Error::io(&path, e))?;
        }
        if has(SCORES_CSV) {
            examples = merge_csv(&shards, &windows, &normalize, &tmp.join(SCORES_CSV))?;
        }
        merged_manifest(&shards, &stats, dirs)
            .write(tmp)
            .map_err(Error::from)
    })?;
    Ok(MergeSummary {
        dir,
        shards: shards.len(),
        examples,
    })
}

type Normalize<'a> = dyn Fn(&str, Option<u64>, Option<f64>) -> Option<f64> + 'a;

/// Concatenates the shards' CSV files under the union of their columns (metadata keys may differ
/// between shards), recomputing the `vog_WINDOW_norm` columns.
fn merge_csv(
    shards: &[ShardRun],
    windows: &[String],
    normalize: &Normalize<'_>,
    path: &Path,
) -> Result<usize> {
    let csv_err = |p: &Path, e: csv::Error| Error::Input(format!("{}: {e}", p.display()));
    let mut columns: Vec<String> = Vec::new();
    for s in shards {
        let src = s.results.file(SCORES_CSV);
        let mut r = csv::Reader::from_path(&src).map_err(|e| csv_err(&src, e))?;
        for h in r.headers().map_err(|e| csv_err(&src, e))? {
            if !columns.iter().any(|c| c == h) {
                columns.push(h.to_string());
            }
        }
    }
    let mut w = csv::Writer::from_path(path).map_err(|e| csv_err(path, e))?;
    w.write_record(&columns).map_err(|e| csv_err(path, e))?;
    let mut rows = 0;
    for s in shards {
        let src = s.results.file(SCORES_CSV);
        let mut r = csv::Reader::from_path(&src).map_err(|e| csv_err(&src, e))?;
        let header: Vec<String> = r
            .headers()
            .map_err(|e| csv_err(&src, e))?
            .iter()
            .map(String::from)
            .collect();
        let at = |name: &str| header.iter().position(|h| h == name);
        for record in r.records() {
            let record = record.map_err(|e| csv_err(&src, e))?;
            let cell = |name: &str| at(name).and_then(|i| record.get(i)).unwrap_or("");
            let class = cell("label_used").parse::<u64>().ok();
            let mut out: Vec<String> = columns.iter().map(|c| cell(c).to_string()).collect();
            for wn in windows {
                if let Some(i) = columns.iter().position(|c| *c == format!("vog_{wn}_norm")) {
                    let raw = cell(&format!("vog_{wn}")).parse::<f64>().ok();
                    out[i] = normalize(wn, class, raw).map_or(String::new(), fmt_f64);
                }
            }
            w.write_record(&out).map_err(|e| csv_err(path, e))?;
            rows += 1;
        }
    }
    w.flush().map_err(|e| Error::io(path, e))?;
    Ok(rows)
}

/// The first shard's manifest, made the whole run's: no shard, merged class statistics, summed
/// timings, every shard's warnings, and where it came from.
fn merged_manifest(
    shards: &[ShardRun],
    stats: &BTreeMap<String, ClassStats>,
    dirs: &[PathBuf],
) -> Manifest {
    let mut m = shards[0].manifest().clone();
    if let Some(c) = m.config.as_object_mut() {
        c.remove("shard");
    }
    m.data.shard_rows = None;
    m.classes = stats
        .iter()
        .map(|(w, s)| {
            let entries = s
                .summaries()
                .into_iter()
                .map(|(class, summary)| ClassEntry { class, summary })
                .collect();
            (w.clone(), entries)
        })
        .collect();
    m.timings = shards
        .iter()
        .fold(Default::default(), |t: vog_results::Timings, s| {
            t.add(&s.manifest().timings)
        });
    let mut warnings: Vec<String> = Vec::new();
    for w in shards.iter().flat_map(|s| &s.manifest().warnings) {
        // Shard-local degenerate-class notes no longer hold for the whole run.
        if !w.contains("normalized VoG is set to 0") && !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    for (window, s) in stats {
        for (class, x) in s.degenerate_classes() {
            warnings.push(format!(
                "window `{window}`: class {class} has {} example(s) and std {:.3e}; its normalized VoG is set to 0",
                x.count, x.std
            ));
        }
    }
    m.warnings = warnings;
    m.created_utc = vog_core::now_rfc3339();
    m.merged_from = Some(MergedFrom {
        shards: shards.len(),
        dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
    });
    m
}
