//! The scoring pass from stored gradients: `.npy` files per checkpoint (one stacked file, or one
//! file per example), read batch by batch into the running VoG statistics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vog_core::{batch_shape_string, check_finite, VogAccumulator};
use vog_data::ArrayFile;

use crate::config::{Config, LabelMode};
use crate::discover::Entry;
use crate::inputs::{load_annotations, resolve_label_mode};
use crate::prepare::{
    checkpoints_and_windows, hash_checkpoints, start_sink, MapInputs, Pass, Run, Source, Stored,
};
use crate::results::{
    DataSummary, ExampleScore, GradientSource, Progress, ScoringSummary, Timings,
};
use crate::sink::Sink;
use crate::spill::Progress as SpillProgress;
use crate::{Error, Result};

/// Files the reference implementation (github.com/chirag126/VOG) writes beside its per-example
/// gradients `grad_NNNNN.npy`; never gradients themselves.
const REFERENCE_SIDE_FILES: [&str; 3] =
    ["ground_truth.npy", "pred_label.npy", "classified_flag.npy"];

/// The reference implementation's labels file, read when no labels are given.
pub(crate) const REFERENCE_LABELS: &str = "ground_truth.npy";

/// The gradient files of `dir`, in natural order: those matching `pattern` (a glob on file
/// names), or by default the reference layout's `grad_*.npy` when there are any, else every
/// `.npy` but the reference's side files.
pub(crate) fn npy_files(dir: &Path, pattern: Option<&str>) -> Result<Vec<PathBuf>> {
    let glob = pattern
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| Error::Config(format!("gradients.pattern `{p}`: {e}")))
        })
        .transpose()?;
    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = item.map_err(|e| Error::io(dir, e))?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "npy") {
            files.push(p);
        }
    }
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match &glob {
        Some(g) => files.retain(|p| g.matches(&name(p))),
        None => {
            let reference = |n: &str| n.starts_with("grad_");
            if files.iter().any(|p| reference(&name(p))) {
                files.retain(|p| reference(&name(p)));
            } else {
                files.retain(|p| !REFERENCE_SIDE_FILES.contains(&name(p).as_str()));
            }
        }
    }
    files.sort_by(|a, b| natural_file_cmp(a, b));
    Ok(files)
}

pub(crate) fn natural_file_cmp(a: &Path, b: &Path) -> std::cmp::Ordering {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    vog_core::natural_cmp(&name(a), &name(b))
}

pub(crate) fn pass_stored(
    config: &Config,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> Result<Pass<'static>> {
    let t0 = Instant::now();
    let mut warnings = Vec::new();
    let source = Source {
        field: "gradients.dirs",
        patterns: &config.gradients.dirs,
        entry: Entry::Dirs,
        order: config.gradients.order,
        extensions: &[],
    };
    let (dirs, windows) = checkpoints_and_windows(config, &source, &mut warnings)?;
    let k = dirs.len();
    let pattern = config.gradients.pattern.as_deref();

    let Opened {
        mut sources,
        rows: n,
        shape,
        stems,
    } = open_stored(&dirs, pattern, &mut warnings)?;
    let stem_ids = stems.filter(|_| config.data.ids.is_none());
    // The reference layout carries its labels: ground_truth.npy beside the gradients (when its
    // files are taken as they are, without a pattern choosing some).
    let reference_labels = (config.data.labels.is_none() && pattern.is_none())
        .then(|| dirs[0].join(REFERENCE_LABELS))
        .filter(|p| p.is_file());
    let ann = match reference_labels {
        Some(path) => {
            tracing::info!(labels = %path.display(), "labels from the reference layout");
            let mut with_labels = config.clone();
            with_labels.data.labels = Some(path);
            load_annotations(
                &with_labels,
                n,
                None,
                None,
                stem_ids.as_deref(),
                &mut warnings,
            )?
        }
        None => load_annotations(config, n, None, None, stem_ids.as_deref(), &mut warnings)?,
    };
    let mode = match config.scoring.labels {
        LabelMode::True | LabelMode::Auto if ann.labels.is_some() => Some(LabelMode::True),
        LabelMode::True => return Err(resolve_label_mode(config, false).expect_err("no labels")),
        _ => {
            warnings.push("no labels: raw VoG only (class normalization needs labels)".into());
            None
        }
    };
    let load_s = t0.elapsed().as_secs_f64();
    let (checkpoints, hash_s) = hash_checkpoints(&dirs, |d| npy_files(d, pattern))?;

    let t_score = Instant::now();
    let row_len: usize = shape.iter().product();
    let bs = config
        .backend
        .batch_size
        .unwrap_or_else(|| crate::plan::auto_batch(&shape));
    let channels = config.scoring.channel_reduce(&shape)?;
    let mut acc = VogAccumulator::new(&shape, &windows, k, channels)?;
    let mut buf = Vec::with_capacity(bs * row_len);
    let (loop_start, _) = start_sink(sink, config, &checkpoints, n, [0, n], bs)?;
    progress.start(n as u64, "scoring stored gradients");
    progress.advance(loop_start as u64);
    for start in (loop_start..n).step_by(bs) {
        if progress.interrupted() {
            return Err(Error::Interrupted);
        }
        let rows = bs.min(n - start);
        acc.reset(rows);
        for (ck, src) in sources.iter_mut().enumerate() {
            read_stored(src, start, rows, &shape, &mut buf)?;
            acc.add(ck, &buf)?;
        }
        let scores = acc.scores()?;
        for r in 0..rows {
            let row = start + r;
            let label = ann.labels.as_ref().map(|l| l[row]);
            sink.push(ExampleScore {
                row,
                id: ann.id(row)?,
                true_label: label,
                label_used: label,
                predicted: None,
                vog: scores[r * windows.len()..(r + 1) * windows.len()].to_vec(),
                vog_norm: Vec::new(),
                extra: Vec::new(),
                meta: ann.meta(row)?,
                flagged: false,
                has_map: false,
                trajectory: Vec::new(),
            })?;
        }
        sink.commit(
            &SpillProgress {
                next: start + rows,
                ..Default::default()
            },
            false,
        )?;
        progress.advance(rows as u64);
    }
    sink.commit(
        &SpillProgress {
            next: n,
            ..Default::default()
        },
        true,
    )?;
    progress.finish();
    let timings = Timings {
        load_s,
        hash_s,
        score_s: t_score.elapsed().as_secs_f64(),
        backend_s: 0.0,
        reload_s: 0.0,
    };
    let data = DataSummary {
        path: None,
        rows: n,
        example_shape: shape.clone(),
        model_input_shape: shape.clone(),
        labels: ann.labels_source.clone(),
        split: config.data.split.clone(),
        metadata_missing: ann.metadata_missing,
        shard_rows: None,
    };
    let scoring = ScoringSummary {
        labels: mode,
        target: None,
        second_target: None,
        el2n_checkpoint: None,
        channels,
        vog_map_shape: channels.reduced_shape(&shape),
        windows,
        columns: Vec::new(),
        num_classes: None,
        batch_size: bs,
        work_order: None,
    };
    Ok(Pass {
        run: Run {
            source: GradientSource::StoredGradients,
            backend: None,
            data,
            checkpoints,
            scoring,
            timings,
        },
        extra_columns: Vec::new(),
        warnings,
        inputs: MapInputs::Stored { sources, batch: bs },
        mode: LabelMode::True,
    })
}

/// The stored gradients of every checkpoint, opened and checked to agree: as many examples of
/// the same shape, stored the same way.
struct Opened {
    sources: Vec<Stored>,
    rows: usize,
    shape: Vec<usize>,
    /// The file names of one-file-per-example gradients: the examples' ids.
    stems: Option<Vec<String>>,
}

fn open_stored(
    dirs: &[PathBuf],
    pattern: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Opened> {
    let k = dirs.len();
    let mut sources = Vec::with_capacity(k);
    let mut geometry: Option<(usize, Vec<usize>, bool)> = None;
    let mut stems: Option<Vec<String>> = None;
    for dir in dirs {
        let files = npy_files(dir, pattern)?;
        let (src, rows, shape) = match files.len() {
            0 => {
                return Err(Error::Input(format!(
                    "gradients.dirs: {} holds no gradient file (.npy{})",
                    dir.display(),
                    pattern
                        .map(|p| format!(" matching `{p}`"))
                        .unwrap_or_default()
                )))
            }
            1 => {
                let a = ArrayFile::open_npy(&files[0])?;
                if a.shape().is_empty() {
                    return Err(Error::Input(format!(
                        "{}: a stacked gradient file must be shaped [N, …], got a scalar",
                        files[0].display()
                    )));
                }
                let (rows, shape) = (a.rows(), a.row_shape().to_vec());
                (Stored::Stacked(a), rows, shape)
            }
            _ => {
                let first = ArrayFile::open_npy(&files[0])?;
                let shape = first.shape().to_vec();
                let names: Vec<String> = files
                    .iter()
                    .map(|f| {
                        f.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                match &stems {
                    None => stems = Some(names),
                    Some(prev) if *prev != names => warnings.push(format!(
                        "{}: file names differ from the first gradient directory; examples are matched by sorted position",
                        dir.display()
                    )),
                    _ => {}
                }
                (Stored::PerExample(files.clone()), files.len(), shape)
            }
        };
        let per_example = matches!(src, Stored::PerExample(_));
        match &geometry {
            None => geometry = Some((rows, shape, per_example)),
            Some((r, s, p)) if *r != rows || *s != shape || *p != per_example => {
                return Err(Error::Input(format!(
                    "gradients.dirs: {} holds {rows} gradients of shape {} ({}), but {} holds {r} of shape {} ({})",
                    dir.display(),
                    batch_shape_string(&shape),
                    if per_example { "one file per example" } else { "stacked" },
                    dirs[0].display(),
                    batch_shape_string(s),
                    if *p { "one file per example" } else { "stacked" },
                )))
            }
            _ => {}
        }
        sources.push(src);
    }
    let (rows, shape, _) = geometry.expect("at least two directories");
    Ok(Opened {
        sources,
        rows,
        shape,
        stems,
    })
}

/// Reads one checkpoint's gradients of examples `start..start + rows` into `buf`, refusing NaN,
/// infinity and a per-example file of another shape.
fn read_stored(
    src: &mut Stored,
    start: usize,
    rows: usize,
    shape: &[usize],
    buf: &mut Vec<f32>,
) -> Result<()> {
    let row_len: usize = shape.iter().product();
    buf.clear();
    match src {
        Stored::Stacked(a) => {
            a.read_f32(start, rows, buf)?;
            if let Err(vog_core::Error::NonFinite { row, element, .. }) =
                check_finite("gradient", buf, row_len)
            {
                return Err(Error::Input(format!(
                    "{}: the stored gradient of example {} is NaN or infinite at element {element}",
                    a.path().display(),
                    start + row
                )));
            }
        }
        Stored::PerExample(files) => {
            for f in &files[start..start + rows] {
                let mut a = ArrayFile::open_npy(f)?;
                if a.shape() != shape {
                    return Err(Error::Input(format!(
                        "{}: gradient shaped {:?}, other examples are {:?}",
                        f.display(),
                        a.shape(),
                        shape
                    )));
                }
                let before = buf.len();
                a.read_f32(0, a.rows(), buf)?;
                if let Err(vog_core::Error::NonFinite { element, .. }) =
                    check_finite("gradient", &buf[before..], row_len)
                {
                    return Err(Error::Input(format!(
                        "{}: gradient is NaN or infinite at element {element}",
                        f.display()
                    )));
                }
            }
        }
    }
    Ok(())
}
