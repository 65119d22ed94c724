//! The scoring loop: batches of examples streamed through every checkpoint.
//!
//! For each batch, every checkpoint contributes one gradient (folded into the running VoG
//! statistics, then dropped) and one set of logits (kept for the batch only, then handed to the
//! reducers in training order). Memory is bounded by the batch, whatever the dataset size.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use vog_core::{
    batch_shape_string, check_finite, panel_reducers, resolve_windows, BackendInfo,
    CheckpointOutcomes, ClassStats, Classes, GradRequest, GradientBackend, Model, RowOutcome,
    TensorView, VogAccumulator, Window,
};
use vog_data::{ArrayFile, CsvColumns, Format, Record};

use crate::affinity::{Helper, LoopCpu};
use crate::config::{Config, LabelMode};
use crate::discover::{self, Entry};
use crate::plan::{WorkOrder, WorkPlan, READ_AHEAD};
use crate::results::{
    CheckpointRecord, ClassEntry, DataSummary, ExampleMap, ExampleScore, GradientSource, Manifest,
    Progress, RunResult, ScoringSummary, Timings,
};
use crate::select::{Selection, Tally};
use crate::spill::{Progress as SpillProgress, SpillWriter};
use crate::{Error, Result};

/// Scores every example of `config` and returns the results in memory: through `backend` from
/// checkpoints, or from stored gradients when `config.gradients.dirs` is set (then `backend` may
/// be `None`). Holds every example's scores; [`score_to_dir`] streams them to a results directory
/// instead, with memory flat in the number of examples.
pub fn score(
    config: &Config,
    backend: Option<&dyn GradientBackend>,
    progress: &dyn Progress,
) -> Result<RunResult> {
    config.validate()?;
    if config.output.resume {
        return Err(Error::Config(
            "`output.resume` journals into the results' spill file: use `score_to_dir` \
             (`vog score --resume`)"
                .into(),
        ));
    }
    let mut sink = Collect::default();
    let pass = run_pass(config, backend, progress, &mut sink)?;
    let mut tally = Tally::default();
    sink.examples.iter().for_each(|e| tally.observe(e));
    let mut decided = decide(config, pass, &tally, || Ok(sink.examples.iter().map(Ok)))?;
    let mut maps = Vec::new();
    decided.maps(config, |m| {
        maps.push(m);
        Ok(())
    })?;
    let mut examples = sink.examples;
    examples.iter_mut().for_each(|e| decided.finish_row(e));
    Ok(RunResult {
        windows: decided.windows,
        extra_columns: decided.extra_columns,
        examples,
        maps,
        manifest: decided.manifest,
    })
}

/// What [`score_to_dir`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The results directory.
    pub dir: PathBuf,
    /// Its `run.json`.
    pub manifest: Manifest,
    /// Windows, in column order.
    pub windows: Vec<Window>,
    /// Examples scored.
    pub examples: usize,
    /// The highest-ranked examples by the first window (class-normalized VoG, raw without
    /// classes), highest first, as many as asked for.
    pub top: Vec<ExampleScore>,
}

/// Scores every example of `config` (like [`score`]) and writes the results directory
/// `config.output.dir` atomically, streaming: finished examples are spilled to
/// [`spill_path`](crate::spill::spill_path) beside it, so memory does not grow with the number of
/// examples; the results are written from the spill once the class statistics are known. With
/// `output.resume` the spill is also the journal an interrupted run continues from. Returns the
/// `top` highest-ranked examples besides the manifest; `backend_library` is recorded in it.
pub fn score_to_dir(
    config: &Config,
    backend: Option<&dyn GradientBackend>,
    progress: &dyn Progress,
    top: usize,
    backend_library: Option<PathBuf>,
) -> Result<Written> {
    config.validate()?;
    crate::output::check_output_dir(&config.output)?;
    let mut sink = Spill {
        path: crate::spill::spill_path(&config.output),
        resume: config.output.resume,
        writer: None,
        tally: Tally::default(),
    };
    let written = stream_to_dir(config, backend, progress, top, backend_library, &mut sink);
    drop(sink.writer.take());
    if written.is_ok() || !config.output.resume {
        // A finished run's spill is done with; a failed run without --resume leaves nothing.
        crate::spill::remove(&config.output)?;
    }
    written
}

fn stream_to_dir(
    config: &Config,
    backend: Option<&dyn GradientBackend>,
    progress: &dyn Progress,
    top: usize,
    backend_library: Option<PathBuf>,
    sink: &mut Spill,
) -> Result<Written> {
    let pass = run_pass(config, backend, progress, sink)?;
    let writer = sink
        .writer
        .as_mut()
        .expect("a finished pass started its sink");
    let mut decided = decide(config, pass, &sink.tally, || writer.reader())?;
    decided.manifest.backend_library = backend_library;
    let mut best: Vec<ExampleScore> = Vec::new();
    let by_rank = |a: &ExampleScore, b: &ExampleScore| {
        let rank = |e: &ExampleScore| crate::select::finished_score(e, 0);
        rank(b).total_cmp(&rank(a)).then(a.row.cmp(&b.row))
    };
    let keys: Vec<String> = sink.tally.meta_keys.iter().cloned().collect();
    let dir = crate::output::write_dir_atomically(&config.output, |tmp| {
        let mut rows = crate::output::RowWriter::create(
            tmp,
            &config.output.formats,
            &decided.windows,
            &decided.extra_columns,
            keys,
            decided.manifest.data.split.clone(),
        )?;
        progress.start(sink.tally.count as u64, "writing results");
        for e in writer.reader()? {
            let mut e = e?;
            decided.finish_row(&mut e);
            rows.write(&e)?;
            if top > 0 {
                best.push(e);
                if best.len() >= 2 * top.max(64) {
                    best.sort_by(by_rank);
                    best.truncate(top);
                }
            }
            progress.advance(1);
        }
        progress.finish();
        rows.finish()?;
        // Maps go to disk one at a time as they are computed.
        let mut maps = crate::output::MapWriter::new(tmp);
        decided.maps(config, |m| maps.write(&m))?;
        crate::output::write_manifest(tmp, &decided.manifest)
    })?;
    best.sort_by(by_rank);
    best.truncate(top);
    Ok(Written {
        dir,
        manifest: decided.manifest,
        windows: decided.windows,
        examples: sink.tally.count,
        top: best,
    })
}

fn run_pass<'a>(
    config: &Config,
    backend: Option<&'a dyn GradientBackend>,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> Result<Pass<'a>> {
    if config.gradients.dirs.is_empty() {
        let backend =
            backend.ok_or_else(|| Error::Config("no backend to compute gradients with".into()))?;
        pass_backend(config, backend, progress, sink)
    } else {
        pass_stored(config, progress, sink)
    }
}

/// Where the scoring pass puts finished examples.
pub(crate) trait Sink: Send {
    /// Called once the run is identified by `fingerprint`; returns where an earlier, interrupted
    /// run of the same job stopped, when this sink resumes one.
    fn start(&mut self, fingerprint: &str) -> Result<Option<SpillProgress>>;
    /// One finished example (in dataset order).
    fn push(&mut self, e: ExampleScore) -> Result<()>;
    /// A batch boundary; `force` at the end.
    fn commit(&mut self, progress: &SpillProgress, force: bool) -> Result<()>;
    /// Where the examples go, for messages.
    fn location(&self) -> String;
}

/// Keeps every example in memory ([`score`]).
#[derive(Default)]
struct Collect {
    examples: Vec<ExampleScore>,
}

impl Sink for Collect {
    fn start(&mut self, _: &str) -> Result<Option<SpillProgress>> {
        Ok(None)
    }
    fn push(&mut self, e: ExampleScore) -> Result<()> {
        self.examples.push(e);
        Ok(())
    }
    fn commit(&mut self, _: &SpillProgress, _: bool) -> Result<()> {
        Ok(())
    }
    fn location(&self) -> String {
        "memory".into()
    }
}

/// Spills examples to a file and keeps running totals only ([`score_to_dir`]).
struct Spill {
    path: PathBuf,
    resume: bool,
    writer: Option<SpillWriter>,
    tally: Tally,
}

impl Sink for Spill {
    fn start(&mut self, fingerprint: &str) -> Result<Option<SpillProgress>> {
        if self.resume {
            let tally = &mut self.tally;
            if let Some((w, p)) = SpillWriter::resume(&self.path, fingerprint, |e| {
                tally.observe(&e);
                Ok(())
            })? {
                tracing::info!(rows = tally.count, path = %self.path.display(), "resuming");
                self.writer = Some(w);
                return Ok(Some(p));
            }
            self.tally = Tally::default();
        }
        self.writer = Some(SpillWriter::create(&self.path, fingerprint, self.resume)?);
        Ok(None)
    }
    fn push(&mut self, e: ExampleScore) -> Result<()> {
        self.tally.observe(&e);
        self.writer.as_mut().expect("started").push(&e)
    }
    fn commit(&mut self, progress: &SpillProgress, force: bool) -> Result<()> {
        self.writer
            .as_mut()
            .expect("started")
            .commit(progress, force)
    }
    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// What the scoring pass leaves besides the examples.
struct Pass<'a> {
    run: Run,
    extra_columns: Vec<String>,
    warnings: Vec<String>,
    inputs: MapInputs<'a>,
    mode: LabelMode,
}

/// The checkpoints' models: all resident, or loaded one at a time (the chunked work order).
struct Models<'a> {
    backend: &'a dyn GradientBackend,
    paths: Vec<PathBuf>,
    resident: bool,
    slots: Vec<Option<Box<dyn Model>>>,
    /// Seconds spent loading a checkpoint that had been dropped.
    reload_s: f64,
}

impl<'a> Models<'a> {
    fn new(backend: &'a dyn GradientBackend, paths: &[PathBuf], resident: bool) -> Self {
        Models {
            backend,
            paths: paths.to_vec(),
            resident,
            slots: paths.iter().map(|_| None).collect(),
            reload_s: 0.0,
        }
    }

    /// The model of checkpoint `ck`, loading it (and, when not resident, dropping any other).
    fn get(&mut self, ck: usize) -> Result<&mut dyn Model> {
        if self.slots[ck].is_none() {
            if !self.resident {
                self.slots.iter_mut().for_each(|s| *s = None);
            }
            let t = Instant::now();
            let k = self.paths.len();
            let m = self
                .backend
                .load(&self.paths[ck])
                .map_err(|source| Error::Step {
                    context: checkpoint_label(ck, k, &self.paths[ck]),
                    source,
                })?;
            self.reload_s += t.elapsed().as_secs_f64();
            self.slots[ck] = Some(m);
        }
        Ok(self.slots[ck].as_deref_mut().expect("loaded"))
    }
}

/// One batch in flight: its input and logits until every checkpoint has answered (its running
/// statistics live in the statistics worker, under `slot`).
struct BatchWork {
    slot: u64,
    start: usize,
    rows: usize,
    input: Vec<f32>,
    started: bool,
    logits: Vec<Vec<f32>>,
    fixed: Option<Vec<u32>>,
}

/// Work for the statistics worker.
enum AccJob {
    /// A batch's first gradient is coming: its rows, gradient row shape, and whether a second
    /// target's gradients come too.
    Start {
        slot: u64,
        start: usize,
        rows: usize,
        shape: Vec<usize>,
        second: bool,
    },
    /// One checkpoint's gradients of a batch (and of the second target).
    Add {
        slot: u64,
        checkpoint: usize,
        gradient: Vec<f32>,
        second: Option<Vec<f32>>,
    },
    /// Every checkpoint has answered: send the batch's scores.
    Finish { slot: u64 },
}

/// A batch whose checkpoints have all answered, for the finishing thread.
struct Finished {
    start: usize,
    rows: usize,
    logits: Vec<Vec<f32>>,
    /// Progress as of this batch, for its commit.
    backend_s: f64,
    classes: usize,
    grad_shape: Vec<usize>,
}

/// VoG per row and window of one batch, and of the second target.
struct BatchScores {
    scores: Vec<f64>,
    second: Option<Vec<f64>>,
}

/// Describes a gradient that failed its check: (error, checkpoint, first row, rows).
type DescribeStep<'a> = &'a (dyn Fn(vog_core::Error, usize, usize, usize) -> Error + Sync);

/// One batch on the statistics worker: its accumulators and where its rows start.
struct LiveBatch {
    first: VogAccumulator,
    second: Option<VogAccumulator>,
    start: usize,
    rows: usize,
}

/// The statistics worker: checks that gradients are finite and folds them into per-batch
/// accumulators while the scoring loop calls the backend again, and answers each `Finish` (in
/// order) with the batch's scores.
fn accumulate(
    jobs: std::sync::mpsc::Receiver<AccJob>,
    results: std::sync::mpsc::Sender<Result<BatchScores>>,
    windows: &[Window],
    k: usize,
    channels: vog_core::ChannelReduce,
    describe: DescribeStep<'_>,
    helper: &mut Helper<'_>,
) {
    let mut live: HashMap<u64, LiveBatch> = HashMap::new();
    let mut spare: Vec<VogAccumulator> = Vec::new();
    let mut run = |job: AccJob| -> Result<Option<BatchScores>> {
        match job {
            AccJob::Start {
                slot,
                start,
                rows,
                shape,
                second,
            } => {
                let mut fresh = || -> Result<VogAccumulator> {
                    let mut a = match spare.pop() {
                        Some(a) if a.row_shape() == shape.as_slice() => a,
                        _ => VogAccumulator::new(&shape, windows, k, channels)?,
                    };
                    a.reset(rows);
                    Ok(a)
                };
                let first = fresh()?;
                let second = if second { Some(fresh()?) } else { None };
                live.insert(
                    slot,
                    LiveBatch {
                        first,
                        second,
                        start,
                        rows,
                    },
                );
                Ok(None)
            }
            AccJob::Add {
                slot,
                checkpoint,
                gradient,
                second,
            } => {
                let b = live.get_mut(&slot).expect("started");
                let row_len = gradient.len() / b.rows.max(1);
                let finite = |g: &[f32]| {
                    vog_core::check_finite("gradient", g, row_len.max(1))
                        .map_err(|e| describe(e, checkpoint, b.start, b.rows))
                };
                finite(&gradient)?;
                if let Some(g2) = &second {
                    finite(g2)?;
                }
                b.first.add_owned(checkpoint, gradient)?;
                if let (Some(a2), Some(g2)) = (b.second.as_mut(), second) {
                    a2.add_owned(checkpoint, g2)?;
                }
                Ok(None)
            }
            AccJob::Finish { slot } => {
                let LiveBatch {
                    first: mut a,
                    second: a2,
                    ..
                } = live.remove(&slot).expect("started");
                let scores = a.scores()?;
                spare.push(a);
                let second = match a2 {
                    Some(mut a2) => {
                        let s = a2.scores()?;
                        spare.push(a2);
                        Some(s)
                    }
                    None => None,
                };
                Ok(Some(BatchScores { scores, second }))
            }
        }
    };
    for job in jobs {
        helper.step();
        match run(job) {
            Ok(None) => {}
            Ok(Some(scores)) => {
                if results.send(Ok(scores)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = results.send(Err(e));
                return;
            }
        }
    }
}

/// Spawns a named scoped helper thread of the scoring loop (names show in `top -H`, profilers and
/// panic messages); `f` calls [`Helper::step`] between pieces of work to stay off the loop's CPU.
fn spawn_helper<'scope, 'env, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: &str,
    loop_cpu: &'scope LoopCpu,
    f: impl FnOnce(&mut Helper<'scope>) -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, move || f(&mut Helper::new(loop_cpu)))
        .map_err(|e| Error::Pipeline(format!("cannot start the {name} thread: {e}")))
}

/// Reads examples `start..start + rows`, applies the input transform and refuses non-finite
/// values (naming the file and the example).
fn read_batch(
    data: &mut dyn vog_data::ExampleSource,
    transform: &InputTransform,
    data_path: &Path,
    start: usize,
    rows: usize,
) -> Result<Vec<f32>> {
    let row_len: usize = transform.shape.iter().product();
    let mut input = Vec::with_capacity(rows * row_len);
    data.read_rows(start, rows, &mut input)?;
    transform.apply(&mut input);
    if let Some(bad) = input.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "{}: example {} holds a non-finite value (element {})",
            data_path.display(),
            start + bad / row_len.max(1),
            bad % row_len.max(1)
        )));
    }
    Ok(input)
}

/// What the maps pass reads gradients from: the pass's models and data, or stored gradients.
#[allow(clippy::large_enum_variant)] // one per run
enum MapInputs<'a> {
    Backend {
        plan: WorkPlan,
        models: Models<'a>,
        data: Box<dyn vog_data::ExampleSource>,
        transform: InputTransform,
        paths: Vec<PathBuf>,
    },
    Stored {
        sources: Vec<Stored>,
        batch: usize,
    },
}

/// Everything decided once the pass is over.
struct Decided<'a> {
    windows: Vec<Window>,
    extra_columns: Vec<String>,
    stats: Vec<ClassStats>,
    selection: Selection,
    manifest: Manifest,
    inputs: MapInputs<'a>,
    mode: LabelMode,
    flag_window: usize,
}

impl Decided<'_> {
    /// Computes the kept maps, handing each to `each` as it is finished.
    fn maps(&mut self, config: &Config, each: impl FnMut(ExampleMap) -> Result<()>) -> Result<()> {
        if self.selection.map_rows.is_empty() {
            return Ok(());
        }
        compute_maps(
            &mut self.inputs,
            &self.windows,
            self.manifest.checkpoints.len(),
            &self.selection,
            self.flag_window,
            self.mode,
            config,
            each,
        )
    }

    /// Fills in an example's normalized scores, flag and map mark.
    fn finish_row(&self, e: &mut ExampleScore) {
        e.vog_norm = match e.label_used {
            Some(c) => self
                .stats
                .iter()
                .zip(&e.vog)
                .map(|(s, &v)| Some(s.normalize(c, v)))
                .collect(),
            None => vec![None; self.windows.len()],
        };
        self.selection.mark(e);
    }
}

/// Class statistics, flags, maps and the manifest of a finished pass; `rows` reads its examples
/// again (only when the flag policy needs them).
fn decide<'a, I, E>(
    config: &Config,
    pass: Pass<'a>,
    tally: &Tally,
    rows: impl FnOnce() -> Result<I>,
) -> Result<Decided<'a>>
where
    I: Iterator<Item = Result<E>>,
    E: std::borrow::Borrow<ExampleScore>,
{
    let Pass {
        run,
        extra_columns,
        mut warnings,
        inputs,
        mode,
    } = pass;
    let windows = run.scoring.windows.clone();
    let mut stats = tally.stats.clone();
    stats.resize(windows.len(), ClassStats::default());
    let mut classes = BTreeMap::new();
    for (w, s) in windows.iter().zip(&stats) {
        for (class, summary) in s.degenerate_classes() {
            warnings.push(format!(
                "window `{}`: class {class} has {} example(s) and std {:.3e}; its normalized VoG is set to 0",
                w.name, summary.count, summary.std
            ));
        }
        classes.insert(
            w.name.clone(),
            s.summaries()
                .into_iter()
                .map(|(class, summary)| ClassEntry { class, summary })
                .collect::<Vec<_>>(),
        );
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let flag_window = windows.iter().position(|x| x.name == config.flag.window);
    let selection = if crate::select::needed(&config.flag) {
        let per_map = 4
            * (run.scoring.vog_map_shape.iter().product::<usize>()
                + run.data.model_input_shape.iter().product::<usize>()) as u64;
        crate::select::select(
            &config.flag,
            flag_window,
            &stats,
            &tally.by_class,
            per_map,
            rows()?,
        )?
    } else {
        Selection::none()
    };
    let manifest = Manifest {
        tool: tool_info(),
        created_utc: vog_core::now_rfc3339(),
        source: run.source,
        backend: run.backend,
        backend_library: None,
        config: config.clone(),
        data: run.data,
        checkpoints: run.checkpoints,
        scoring: run.scoring,
        classes,
        flagged: selection.flagged,
        maps: selection.map_rows.len(),
        warnings,
        timings: run.timings,
    };
    Ok(Decided {
        windows,
        extra_columns,
        stats,
        selection,
        manifest,
        inputs,
        mode,
        flag_window: flag_window.unwrap_or(0),
    })
}

/// Second, bounded pass over the examples that keep maps: the per-element VoG map of the flag
/// window and the last checkpoint's gradient (the main pass keeps neither, to stay flat in memory).
/// Checkpoints are the outer loop, so each is loaded once even in the chunked work order.
#[allow(clippy::too_many_arguments)]
fn compute_maps(
    inputs: &mut MapInputs<'_>,
    windows: &[Window],
    k: usize,
    selection: &Selection,
    flag_window: usize,
    mode: LabelMode,
    config: &Config,
    mut each: impl FnMut(ExampleMap) -> Result<()>,
) -> Result<()> {
    let (bs, per_group) = match inputs {
        MapInputs::Backend { plan, .. } => (plan.batch, plan.chunk_batches),
        MapInputs::Stored { batch, .. } => (*batch, 1),
    };
    // Groups as large as the pass's chunks: memory stays within the plan, and each checkpoint
    // is loaded once per group when they are not all resident.
    for group in selection.map_rows.chunks(bs * per_group) {
        maps_of_group(
            inputs,
            windows,
            k,
            selection,
            group,
            bs,
            flag_window,
            mode,
            config,
            &mut each,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn maps_of_group(
    inputs: &mut MapInputs<'_>,
    windows: &[Window],
    k: usize,
    selection: &Selection,
    rows: &[usize],
    bs: usize,
    flag_window: usize,
    mode: LabelMode,
    config: &Config,
    each: &mut impl FnMut(ExampleMap) -> Result<()>,
) -> Result<()> {
    let chunks: Vec<&[usize]> = rows.chunks(bs).collect();
    let mut accs: Vec<Option<(VogAccumulator, Vec<usize>)>> = chunks.iter().map(|_| None).collect();
    let mut lasts: Vec<Vec<f32>> = vec![Vec::new(); chunks.len()];
    for ck in 0..k {
        for (ci, chunk) in chunks.iter().enumerate() {
            let (gradient, grad_shape) = match inputs {
                MapInputs::Backend {
                    models,
                    data,
                    transform,
                    paths,
                    ..
                } => {
                    let mut input = Vec::new();
                    for &r in *chunk {
                        data.read_rows(r, 1, &mut input)?;
                    }
                    transform.apply(&mut input);
                    let mut shape = vec![chunk.len()];
                    shape.extend(&transform.shape);
                    let view = TensorView::new(&shape, &input)?;
                    let used: Vec<u32> = chunk
                        .iter()
                        .map(|r| selection.map_labels[r].unwrap_or(0))
                        .collect();
                    let classes = if mode == LabelMode::PredictedEach {
                        Classes::Argmax
                    } else {
                        Classes::Given(&used)
                    };
                    let request = GradRequest {
                        input: view,
                        classes,
                        target: config.scoring.target,
                    };
                    let out = models
                        .get(ck)?
                        .input_gradients(&request)
                        .and_then(|o| o.validate(&request).map(|_| o))
                        .map_err(|source| Error::Step {
                            context: format!(
                                "{} (maps of flagged examples)",
                                checkpoint_label(ck, k, &paths[ck])
                            ),
                            source,
                        })?;
                    let gs = out
                        .gradient_shape
                        .clone()
                        .unwrap_or_else(|| transform.shape.clone());
                    (out.gradient, gs)
                }
                MapInputs::Stored { sources, .. } => {
                    let mut buf = Vec::new();
                    let mut shape = Vec::new();
                    for &r in *chunk {
                        match &mut sources[ck] {
                            Stored::Stacked(a) => {
                                shape = a.row_shape().to_vec();
                                a.read_f32(r, 1, &mut buf)?;
                            }
                            Stored::PerExample(files) => {
                                let mut a = ArrayFile::open_npy(&files[r])?;
                                shape = a.shape().to_vec();
                                a.read_f32(0, a.rows(), &mut buf)?;
                            }
                        }
                    }
                    (buf, shape)
                }
            };
            let (a, _) = match accs[ci].as_mut() {
                Some(x) => x,
                None => {
                    let mut a =
                        VogAccumulator::new(&grad_shape, windows, k, config.scoring.channels)?;
                    a.reset(chunk.len());
                    accs[ci].insert((a, grad_shape.clone()))
                }
            };
            a.add(ck, &gradient)?;
            if ck + 1 == k {
                lasts[ci] = gradient;
            }
        }
    }
    for ((chunk, acc), last) in chunks.iter().zip(accs).zip(lasts) {
        let (mut a, grad_shape) = acc.expect("at least two checkpoints");
        let row_len: usize = grad_shape.iter().product();
        let map_shape = config.scoring.channels.reduced_shape(&grad_shape);
        for (i, &r) in chunk.iter().enumerate() {
            each(ExampleMap {
                row: r,
                vog_map: a
                    .vog_map(i, flag_window)?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                vog_map_shape: map_shape.clone(),
                gradient: last[i * row_len..(i + 1) * row_len].to_vec(),
                gradient_shape: grad_shape.clone(),
            })?;
        }
    }
    Ok(())
}

/// Labels, ids and metadata of the examples, loaded and checked against each other. Ids that are
/// row numbers and absent metadata take no memory per example.
struct Annotations {
    labels: Option<Vec<u32>>,
    labels_source: Option<String>,
    ids: Option<Vec<String>>,
    meta: Option<Vec<Record>>,
    metadata_missing: usize,
}

impl Annotations {
    fn id(&self, row: usize) -> String {
        match &self.ids {
            Some(ids) => ids[row].clone(),
            None => row.to_string(),
        }
    }

    fn meta(&self, row: usize) -> Record {
        self.meta
            .as_ref()
            .map(|m| m[row].clone())
            .unwrap_or_default()
    }
}

fn load_annotations(
    config: &Config,
    rows: usize,
    data_path: Option<&Path>,
    embedded_labels: Option<&[u32]>,
    embedded_ids: Option<Vec<String>>,
    warnings: &mut Vec<String>,
) -> Result<Annotations> {
    let d = &config.data;
    let rows_of = || {
        data_path.map_or_else(
            || "the stored gradients".to_string(),
            |p| p.display().to_string(),
        )
    };
    let (labels, labels_source) = match (&d.labels, embedded_labels) {
        (Some(_), Some(_)) => return Err(Error::Config(
            "`data.labels`: the examples file already has a label column; give one or the other"
                .into(),
        )),
        (Some(path), None) => {
            let l =
                vog_data::read_labels(path, d.labels_key.as_deref(), d.label_column.as_deref())?;
            if l.len() != rows {
                return Err(Error::Input(format!(
                    "labels file {} has {} labels but {} has {rows} examples",
                    path.display(),
                    l.len(),
                    rows_of()
                )));
            }
            (Some(l), Some(path.display().to_string()))
        }
        (None, Some(l)) => (
            Some(l.to_vec()),
            Some(format!(
                "{} column `{}`",
                rows_of(),
                d.label_column.as_deref().unwrap_or("")
            )),
        ),
        (None, None) => (None, None),
    };
    let ids = match (&d.ids, embedded_ids) {
        (Some(path), _) => {
            let ids = vog_data::read_ids(path)?;
            if ids.len() != rows {
                return Err(Error::Input(format!(
                    "ids file {} has {} ids but {} has {rows} examples",
                    path.display(),
                    ids.len(),
                    rows_of()
                )));
            }
            Some(ids)
        }
        (None, Some(ids)) => Some(ids),
        (None, None) => None,
    };
    let (meta, metadata_missing) = match &d.metadata {
        Some(path) => {
            let records = vog_data::read_metadata(path)?;
            let row_ids: Vec<String>;
            let keys = match &ids {
                Some(ids) => ids.as_slice(),
                None => {
                    row_ids = (0..rows).map(|r| r.to_string()).collect();
                    &row_ids
                }
            };
            let (m, missing) =
                vog_data::join_metadata(path, records, d.metadata_key.as_deref(), keys)?;
            if missing > 0 {
                warnings.push(format!(
                    "{missing} of {rows} examples have no metadata in {}",
                    path.display()
                ));
            }
            (Some(m), missing)
        }
        None => (None, 0),
    };
    Ok(Annotations {
        labels,
        labels_source,
        ids,
        meta,
        metadata_missing,
    })
}

fn resolve_label_mode(config: &Config, has_labels: bool) -> Result<LabelMode> {
    match (config.scoring.labels, has_labels) {
        (LabelMode::Auto, true) => Ok(LabelMode::True),
        (LabelMode::Auto, false) => Ok(LabelMode::Predicted),
        (LabelMode::True, false) => Err(Error::Config(
            "`scoring.labels = \"true\"` needs labels: set data.labels (or data.label_column for CSV), \
             or use \"predicted\" for label-free scoring"
                .into(),
        )),
        (mode, _) => Ok(mode),
    }
}

/// Reshape and normalization applied to examples before they reach the model.
struct InputTransform {
    shape: Vec<usize>,
    scale: f32,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
}

impl InputTransform {
    fn new(config: &Config, data_path: &Path, stored: &[usize]) -> Result<Self> {
        let d = &config.data;
        let stored_len: usize = stored.iter().product();
        let shape = match &d.input_shape {
            Some(s) => {
                if s.iter().product::<usize>() != stored_len {
                    return Err(Error::Input(format!(
                        "`data.input_shape = {s:?}` holds {} values, but each example of {} has {stored_len} \
                         (shape {})",
                        s.iter().product::<usize>(),
                        data_path.display(),
                        batch_shape_string(stored)
                    )));
                }
                s.clone()
            }
            None => stored.to_vec(),
        };
        let channels = shape.first().copied().unwrap_or(1);
        for (field, v) in [("data.mean", &d.mean), ("data.std", &d.std)] {
            if let Some(v) = v {
                if v.len() != 1 && v.len() != channels {
                    return Err(Error::Config(format!(
                        "`{field}` has {} values; examples shaped {} need 1 or {channels} (one per channel)",
                        v.len(),
                        batch_shape_string(&shape)
                    )));
                }
            }
        }
        let to32 = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|&x| x as f32).collect());
        Ok(InputTransform {
            shape,
            scale: d.scale as f32,
            mean: to32(&d.mean),
            std: to32(&d.std),
        })
    }

    fn apply(&self, x: &mut [f32]) {
        if self.scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= self.scale);
        }
        if self.mean.is_none() && self.std.is_none() {
            return;
        }
        let row_len: usize = self.shape.iter().product();
        let channels = self.shape.first().copied().unwrap_or(1);
        let per_channel = row_len / channels.max(1);
        let pick = |v: &Option<Vec<f32>>, c: usize, default: f32| match v {
            Some(v) if v.len() == 1 => v[0],
            Some(v) => v[c],
            None => default,
        };
        for row in x.chunks_exact_mut(row_len) {
            for (c, chunk) in row.chunks_exact_mut(per_channel).enumerate() {
                let (m, s) = (pick(&self.mean, c, 0.0), pick(&self.std, c, 1.0));
                chunk.iter_mut().for_each(|v| *v = (*v - m) / s);
            }
        }
    }
}

fn checkpoint_label(i: usize, k: usize, path: &Path) -> String {
    format!("checkpoint {} of {k} ({})", i + 1, path.display())
}

fn pass_backend<'a>(
    config: &Config,
    backend: &'a dyn GradientBackend,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> Result<Pass<'a>> {
    let t0 = Instant::now();
    let mut warnings = Vec::new();
    let info = backend.info();
    let paths = discover::resolve(
        &config.checkpoints.paths,
        Entry::Files,
        config.checkpoints.order,
        &info.extensions,
        "checkpoints.paths",
    )?;
    let k = paths.len();
    let (windows, w) = resolve_windows(k, &config.scoring.windows, &config.scoring.ranges)
        .map_err(|e| Error::Input(format!("checkpoints.paths: {e}")))?;
    warnings.extend(w);
    let second = config.scoring.second_target;
    // The second target's windows follow the first's, named `WINDOW_TARGET`.
    let mut all_windows = windows.clone();
    if let Some(t) = second {
        for w in &windows {
            let name = format!("{}_{}", w.name, crate::config::target_name(t));
            if windows.iter().any(|x| x.name == name) {
                return Err(Error::Config(format!(
                    "`scoring.ranges`: window `{name}` clashes with the second target's window of `{}`",
                    w.name
                )));
            }
            all_windows.push(Window { name, ..w.clone() });
        }
    }
    tracing::info!(checkpoints = k, backend = %info.name, "scoring through a backend");
    for (i, p) in paths.iter().enumerate() {
        tracing::debug!(position = i, path = %p.display(), "checkpoint");
    }

    let d = &config.data;
    let data_path = d
        .path
        .clone()
        .ok_or_else(|| Error::Config("`data.path`: no examples given".into()))?;
    let format = d.format.as_deref().and_then(Format::from_name);
    let csv = CsvColumns {
        label: d.label_column.clone(),
        id: d.id_column.clone(),
        features: d.features.clone(),
    };
    let mut data = vog_data::open_examples(&data_path, format, d.key.as_deref(), &csv)?;
    let n = data.len();
    if n == 0 {
        return Err(Error::Input(format!(
            "{}: no examples",
            data_path.display()
        )));
    }
    let stored_shape = data.row_shape().to_vec();
    let transform = InputTransform::new(config, &data_path, &stored_shape)?;
    let ann = load_annotations(
        config,
        n,
        Some(&data_path),
        data.labels(),
        data.ids().map(|i| i.to_vec()),
        &mut warnings,
    )?;
    let mode = resolve_label_mode(config, ann.labels.is_some())?;

    // The first checkpoint tells the number of classes the plan's estimate needs.
    let first_model = backend.load(&paths[0]).map_err(|source| Error::Step {
        context: checkpoint_label(0, k, &paths[0]),
        source,
    })?;
    let plan = WorkPlan::new(
        config,
        &paths,
        &transform.shape,
        &all_windows,
        k,
        first_model.info().num_classes,
    )?;
    let bs = plan.batch;
    tracing::info!(
        batch = bs,
        order = plan.order.as_str(),
        chunk_rows = plan.chunk_batches * bs,
        "work order"
    );
    let mut models = Models::new(backend, &paths, plan.order == WorkOrder::Resident);
    models.slots[0] = Some(first_model);
    let mut num_classes = None;
    for (i, path) in paths.iter().enumerate() {
        if let Some(c) = models.get(i)?.info().num_classes {
            match num_classes {
                Some(prev) if prev != c => {
                    return Err(Error::Input(format!(
                        "{} has {c} classes but earlier checkpoints have {prev}",
                        checkpoint_label(i, k, path)
                    )))
                }
                _ => num_classes = Some(c),
            }
        }
    }
    if let (Some(c), Some(labels)) = (num_classes, &ann.labels) {
        check_label_range(
            labels,
            c,
            ann.labels_source.as_deref().unwrap_or(""),
            &paths[0],
        )?;
    }
    let load_s = t0.elapsed().as_secs_f64();
    models.reload_s = 0.0;

    let t_hash = Instant::now();
    let checkpoints = paths
        .iter()
        .enumerate()
        .map(|(i, p)| hash_files(i, p, std::slice::from_ref(p)))
        .collect::<Result<Vec<_>>>()?;
    let hash_s = t_hash.elapsed().as_secs_f64();

    let t_score = Instant::now();
    let mut reducers = panel_reducers(config.scoring.el2n_checkpoint.saturating_sub(1));
    let extra_columns: Vec<String> = reducers.iter().flat_map(|r| r.columns()).collect();
    // Known at the first answer: a backend may differentiate with respect to an intermediate
    // tensor whose shape differs from the input's.
    let mut grad_shape: Option<Vec<usize>> = None;
    let mut batch_classes = 0usize;
    let mut backend_s = 0.0;
    let order: Vec<usize> = match mode {
        // The last checkpoint's prediction fixes the class for all the others.
        LabelMode::Predicted => std::iter::once(k - 1).chain(0..k - 1).collect(),
        _ => (0..k).collect(),
    };
    let (first, end) = config.shard.map_or((0, n), |s| s.rows(n));
    // With --resume, batches an earlier run committed are read back instead of recomputed.
    let resumed = sink.start(&fingerprint(config, &checkpoints, n)?)?;
    let mut loop_start = first;
    let mut resumed_shape: Vec<usize> = Vec::new();
    if let Some(r) = resumed {
        let next = r.next;
        if next < first || next > end || (next != end && (next - first) % bs != 0) {
            return Err(Error::Input(format!(
                "{}: its progress (row {next}) does not fit this run's rows {first}..{end} in \
                 batches of {bs}; delete it to start over",
                sink.location()
            )));
        }
        tracing::info!(next, "resuming from the journal");
        loop_start = next;
        backend_s = r.backend_s;
        batch_classes = r.classes;
        resumed_shape = r.grad_shape;
    }
    if first == end {
        let s = config.shard.expect("only a shard can be empty");
        return Err(Error::Input(format!(
            "shard {}/{} of {} examples is empty; use at most {n} shards",
            s.index, s.count, n
        )));
    }
    progress.start((end - first) as u64, "scoring");
    progress.advance((loop_start - first) as u64);
    let batches: Vec<(usize, usize)> = (loop_start..end)
        .step_by(bs)
        .map(|s| (s, bs.min(end - s)))
        .collect();
    let source = &mut data;
    let transform_ref = &transform;
    let data_path_ref = &data_path;
    let loop_cpu = &LoopCpu::new();
    std::thread::scope(|scope| -> Result<()> {
        // Reading and decoding run ahead of the backend, a bounded number of batches.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<f32>>>(READ_AHEAD);
        let to_read = batches.clone();
        spawn_helper(scope, "vog-read", loop_cpu, move |helper| {
            for (start, rows) in to_read {
                helper.step();
                let batch = read_batch(&mut **source, transform_ref, data_path_ref, start, rows);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        })?;
        // Folding gradients into the running statistics overlaps the next backend call.
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<AccJob>(2 * k);
        let (res_tx, results) = std::sync::mpsc::channel::<Result<BatchScores>>();
        let (acc_windows, channels) = (&windows, config.scoring.channels);
        // Gradients are checked for NaN and infinity there too, described as the loop would.
        let describe = |e, ck: usize, start, rows| {
            step_error(e, ck, k, &paths[ck], start, rows, data_path_ref, &ann)
        };
        spawn_helper(scope, "vog-stats", loop_cpu, move |helper| {
            accumulate(job_rx, res_tx, acc_windows, k, channels, &describe, helper)
        })?;
        // Finishing rows (reducers, the spill) runs on a third thread, in batch order.
        let (fin_tx, fin_rx) =
            std::sync::mpsc::sync_channel::<Finished>(plan.chunk_batches + READ_AHEAD);
        let reducers = &mut reducers;
        let sink = &mut *sink;
        let (ann_ref, windows_ref) = (&ann, &windows);
        let finisher = spawn_helper(scope, "vog-finish", loop_cpu, move |helper| -> Result<()> {
            for b in fin_rx {
                helper.step();
                let (start, rows) = (b.start, b.rows);
                let BatchScores {
                    scores,
                    second: scores2,
                } = results
                    .recv()
                    .map_err(|_| Error::Pipeline("the statistics worker stopped".into()))??;
                let true_labels = ann_ref.labels.as_ref().map(|l| &l[start..start + rows]);
                let c = b.classes;
                let predicted: Vec<u32> = b.logits[k - 1]
                    .chunks_exact(c)
                    .map(|r| RowOutcome::from_logits(r, 0, None).predicted)
                    .collect();
                let label_used: Vec<u32> = match mode {
                    LabelMode::True => true_labels.expect("true mode has labels").to_vec(),
                    _ => predicted.clone(),
                };
                let mut extra = Vec::new();
                reducers.iter_mut().for_each(|r| r.begin_batch(rows));
                let mut trajectories: Vec<Vec<(u32, f64)>> = vec![Vec::with_capacity(k); rows];
                for (ck, logits) in b.logits.iter().enumerate() {
                    let outcomes: Vec<RowOutcome> = logits
                        .chunks_exact(c)
                        .enumerate()
                        .map(|(r, l)| {
                            RowOutcome::from_logits(l, label_used[r], true_labels.map(|t| t[r]))
                        })
                        .collect();
                    for (t, o) in trajectories.iter_mut().zip(&outcomes) {
                        t.push((o.predicted, o.margin));
                    }
                    let o = CheckpointOutcomes {
                        checkpoint: ck,
                        num_checkpoints: k,
                        logits,
                        num_classes: c,
                        rows: &outcomes,
                    };
                    reducers.iter_mut().for_each(|r| r.observe(&o));
                }
                let per_reducer: Vec<Vec<f64>> = reducers
                    .iter_mut()
                    .map(|r| {
                        let mut v = Vec::new();
                        r.finish_batch(&mut v);
                        v
                    })
                    .collect();
                let widths: Vec<usize> = reducers.iter().map(|r| r.columns().len()).collect();
                let w = windows_ref.len();
                for (r, trajectory) in trajectories.into_iter().enumerate() {
                    extra.clear();
                    for (vals, &width) in per_reducer.iter().zip(&widths) {
                        extra.extend_from_slice(&vals[r * width..(r + 1) * width]);
                    }
                    let row = start + r;
                    let mut vog = scores[r * w..(r + 1) * w].to_vec();
                    if let Some(s2) = &scores2 {
                        vog.extend_from_slice(&s2[r * w..(r + 1) * w]);
                    }
                    sink.push(ExampleScore {
                        row,
                        id: ann_ref.id(row),
                        true_label: true_labels.map(|t| t[r]),
                        label_used: Some(label_used[r]),
                        predicted: Some(predicted[r]),
                        vog,
                        vog_norm: Vec::new(),
                        extra: extra.clone(),
                        meta: ann_ref.meta(row),
                        flagged: false,
                        has_map: false,
                        trajectory,
                    })?;
                }
                sink.commit(
                    &SpillProgress {
                        next: start + rows,
                        backend_s: b.backend_s,
                        classes: b.classes,
                        grad_shape: b.grad_shape.clone(),
                    },
                    false,
                )?;
                progress.advance(rows as u64);
            }
            // The loop stopped sending batches. If that is because the statistics worker failed
            // (a NaN gradient, say) before finishing a batch this thread was waiting for, its
            // error is still in the channel: report it rather than "the worker stopped". The
            // worker ends once the loop has dropped its side, so this does not block.
            for r in results {
                r?;
            }
            Ok(())
        })?;
        // A peer thread that stopped reports why itself (its error is preferred below).
        let peer_stopped = std::cell::Cell::new(false);
        let stopped = |what: &str| {
            peer_stopped.set(true);
            Error::Pipeline(format!("the {what} stopped"))
        };
        let scored = (|| -> Result<()> {
            let (jobs, fin_tx) = (jobs, fin_tx);
            let send = |job: AccJob| -> Result<()> {
                jobs.send(job).map_err(|_| stopped("statistics worker"))
            };
            let mut next_slot = 0u64;
            for chunk in batches.chunks(plan.chunk_batches) {
                let mut work = Vec::new();
                for &(start, rows) in chunk {
                    let input = rx
                        .recv()
                        .map_err(|_| Error::Pipeline("the data reader stopped".into()))??;
                    work.push(BatchWork {
                        slot: next_slot,
                        start,
                        rows,
                        input,
                        started: false,
                        logits: vec![Vec::new(); k],
                        fixed: None,
                    });
                    next_slot += 1;
                }
                for &ck in &order {
                    let model = models.get(ck)?;
                    for b in work.iter_mut() {
                        let (start, rows) = (b.start, b.rows);
                        let mut shape = vec![rows];
                        shape.extend(&transform_ref.shape);
                        let view = TensorView::new(&shape, &b.input)?;
                        let true_labels = ann.labels.as_ref().map(|l| &l[start..start + rows]);
                        let classes = match mode {
                            LabelMode::True => {
                                Classes::Given(true_labels.expect("true mode has labels"))
                            }
                            LabelMode::Predicted if ck != k - 1 => {
                                Classes::Given(b.fixed.as_deref().expect("set first"))
                            }
                            _ => Classes::Argmax,
                        };
                        let request = GradRequest {
                            input: view,
                            classes,
                            target: config.scoring.target,
                        };
                        loop_cpu.note();
                        let t_call = Instant::now();
                        let step = model.input_gradients(&request);
                        backend_s += t_call.elapsed().as_secs_f64();
                        let out = step.map_err(|e| {
                            step_error(e, ck, k, &paths[ck], start, rows, data_path_ref, &ann)
                        })?;
                        // The gradient's values are checked on the statistics thread.
                        out.validate_structure(&request).map_err(|e| match e {
                            // NaN weights or an overflow: a property of the checkpoint and the data.
                            e @ vog_core::Error::NonFinite { .. } => {
                                step_error(e, ck, k, &paths[ck], start, rows, data_path_ref, &ann)
                            }
                            // Anything else means the backend broke its contract.
                            e => Error::Step {
                                context: format!(
                                    "{}: backend `{}` returned inconsistent output",
                                    checkpoint_label(ck, k, &paths[ck]),
                                    info.name
                                ),
                                source: e,
                            },
                        })?;
                        if batch_classes == 0 {
                            batch_classes = out.num_classes;
                            if let Some(labels) = &ann.labels {
                                check_label_range(
                                    labels,
                                    out.num_classes,
                                    ann.labels_source.as_deref().unwrap_or(""),
                                    &paths[ck],
                                )?;
                            }
                        } else if out.num_classes != batch_classes {
                            return Err(Error::Input(format!(
                                "{} produces {} classes but other checkpoints produce {batch_classes}",
                                checkpoint_label(ck, k, &paths[ck]),
                                out.num_classes
                            )));
                        }
                        if mode == LabelMode::Predicted && ck == k - 1 {
                            b.fixed = Some(out.classes.clone());
                        }
                        let this_shape = out
                            .gradient_shape
                            .clone()
                            .unwrap_or_else(|| transform_ref.shape.clone());
                        let expected = grad_shape.get_or_insert_with(|| this_shape.clone());
                        if *expected != this_shape {
                            return Err(Error::Input(format!(
                                "{}: gradient rows shaped {this_shape:?}, other checkpoints gave {expected:?}",
                                checkpoint_label(ck, k, &paths[ck])
                            )));
                        }
                        if !b.started {
                            send(AccJob::Start {
                                slot: b.slot,
                                start,
                                rows,
                                shape: this_shape,
                                second: second.is_some(),
                            })?;
                            b.started = true;
                        }
                        let mut second_gradient = None;
                        if let Some(t2) = second {
                            // Same classes as the first target, so both scores describe the same
                            // label.
                            let request2 = GradRequest {
                                input: view,
                                classes: Classes::Given(&out.classes),
                                target: t2,
                            };
                            let t_call = Instant::now();
                            let step2 = model.input_gradients(&request2);
                            backend_s += t_call.elapsed().as_secs_f64();
                            let out2 = step2
                                .and_then(|o| o.validate_structure(&request2).map(|()| o))
                                .map_err(|e| {
                                    step_error(
                                        e,
                                        ck,
                                        k,
                                        &paths[ck],
                                        start,
                                        rows,
                                        data_path_ref,
                                        &ann,
                                    )
                                })?;
                            second_gradient = Some(out2.gradient);
                        }
                        send(AccJob::Add {
                            slot: b.slot,
                            checkpoint: ck,
                            gradient: out.gradient,
                            second: second_gradient,
                        })?;
                        b.logits[ck] = out.logits;
                    }
                }
                for b in work {
                    send(AccJob::Finish { slot: b.slot })?;
                    fin_tx
                        .send(Finished {
                            start: b.start,
                            rows: b.rows,
                            logits: b.logits,
                            backend_s,
                            classes: batch_classes,
                            grad_shape: grad_shape.clone().unwrap_or_default(),
                        })
                        .map_err(|_| stopped("finishing thread"))?;
                }
            }
            Ok(())
        })();
        let finished = finisher
            .join()
            .expect("the finishing thread does not panic");
        match (scored, finished) {
            (Err(e), Err(f)) => Err(if peer_stopped.get() { f } else { e }),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    })?;
    let grad_shape = grad_shape.unwrap_or(resumed_shape);
    sink.commit(
        &SpillProgress {
            next: end,
            backend_s,
            classes: batch_classes,
            grad_shape: grad_shape.clone(),
        },
        true,
    )?;
    progress.finish();
    let timings = Timings {
        load_s,
        hash_s,
        score_s: t_score.elapsed().as_secs_f64(),
        backend_s,
        reload_s: models.reload_s,
    };
    let summary = DataSummary {
        path: Some(std::path::absolute(&data_path).unwrap_or(data_path)),
        rows: n,
        example_shape: stored_shape,
        model_input_shape: transform.shape.clone(),
        labels: ann.labels_source.clone(),
        split: d.split.clone(),
        metadata_missing: ann.metadata_missing,
        shard_rows: config.shard.map(|_| [first, end]),
    };
    let scoring = ScoringSummary {
        labels: Some(mode),
        target: Some(config.scoring.target),
        second_target: second,
        el2n_checkpoint: Some(config.scoring.el2n_checkpoint.min(k)),
        channels: config.scoring.channels,
        vog_map_shape: config
            .scoring
            .channels
            .reduced_shape(if grad_shape.is_empty() {
                &transform.shape
            } else {
                &grad_shape
            }),
        windows: all_windows,
        num_classes: Some(batch_classes),
        batch_size: bs,
        work_order: Some(plan.summary()),
    };
    Ok(Pass {
        run: Run {
            source: GradientSource::Backend,
            backend: Some(info),
            data: summary,
            checkpoints,
            scoring,
            timings,
        },
        extra_columns,
        warnings,
        inputs: MapInputs::Backend {
            plan,
            models,
            data,
            transform,
            paths,
        },
        mode,
    })
}

/// Identifies a run for its resume journal: the configuration (results location aside), the
/// checkpoints' contents and the number of examples.
fn fingerprint(config: &Config, checkpoints: &[CheckpointRecord], n: usize) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut c = config.clone();
    c.output = Default::default();
    let text = serde_json::to_string(&c)
        .map_err(|e| Error::Input(format!("cannot encode the configuration: {e}")))?;
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    for ck in checkpoints {
        h.update(ck.sha256.as_bytes());
    }
    h.update((n as u64).to_le_bytes());
    Ok(format!("{:x}", h.finalize()))
}

/// What a finished scoring loop knows, besides the scores.
struct Run {
    source: GradientSource,
    backend: Option<BackendInfo>,
    data: DataSummary,
    checkpoints: Vec<CheckpointRecord>,
    scoring: ScoringSummary,
    timings: Timings,
}

fn check_label_range(
    labels: &[u32],
    num_classes: usize,
    source: &str,
    checkpoint: &Path,
) -> Result<()> {
    match labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        None => Ok(()),
        Some((row, &l)) => Err(Error::Input(format!(
            "labels ({source}): label {l} of example {row} is out of range: the model ({}) has \
             {num_classes} classes (0..{})",
            checkpoint.display(),
            num_classes - 1
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn step_error(
    e: vog_core::Error,
    ck: usize,
    k: usize,
    path: &Path,
    start: usize,
    rows: usize,
    data_path: &Path,
    ann: &Annotations,
) -> Error {
    let context = checkpoint_label(ck, k, path);
    match e {
        vog_core::Error::NonFinite { what, row, element } => Error::Input(format!(
            "{context}: the {what} of example {} (id {}) is NaN or infinite at element {element}",
            start + row,
            ann.id(start + row)
        )),
        vog_core::Error::ClassOutOfRange { class, num_classes, row } => Error::Input(format!(
            "labels ({}): label {class} of example {} is out of range: {context} has {num_classes} classes",
            ann.labels_source.as_deref().unwrap_or("?"),
            start + row
        )),
        vog_core::Error::Shape(m) => Error::Input(format!(
            "{context}: examples of {} do not fit the model: {m}",
            data_path.display()
        )),
        source => Error::Step { context: format!("{context}, examples {start}..{}", start + rows), source },
    }
}

/// One checkpoint's stored gradients.
enum Stored {
    Stacked(ArrayFile),
    PerExample(Vec<PathBuf>),
}

fn npy_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = item.map_err(|e| Error::io(dir, e))?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "npy") {
            files.push(p);
        }
    }
    files.sort_by(|a, b| natural_file_cmp(a, b));
    Ok(files)
}

fn natural_file_cmp(a: &Path, b: &Path) -> std::cmp::Ordering {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    vog_core::natural_cmp(&name(a), &name(b))
}

fn pass_stored(
    config: &Config,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> Result<Pass<'static>> {
    let t0 = Instant::now();
    let mut warnings = Vec::new();
    let dirs = discover::resolve(
        &config.gradients.dirs,
        Entry::Dirs,
        config.gradients.order,
        &[],
        "gradients.dirs",
    )?;
    let k = dirs.len();
    let (windows, w) = resolve_windows(k, &config.scoring.windows, &config.scoring.ranges)
        .map_err(|e| Error::Input(format!("gradients.dirs: {e}")))?;
    warnings.extend(w);

    let mut sources = Vec::with_capacity(k);
    let mut geometry: Option<(usize, Vec<usize>, bool)> = None;
    let mut stems: Option<Vec<String>> = None;
    for dir in &dirs {
        let files = npy_files(dir)?;
        let (src, rows, shape) = match files.len() {
            0 => {
                return Err(Error::Input(format!(
                    "gradients.dirs: {} holds no .npy file",
                    dir.display()
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
    let (n, shape, _) = geometry.expect("at least two directories");
    let stem_ids = stems.filter(|_| config.data.ids.is_none());
    let ann = load_annotations(config, n, None, None, stem_ids, &mut warnings)?;
    let mode = match config.scoring.labels {
        LabelMode::True | LabelMode::Auto if ann.labels.is_some() => Some(LabelMode::True),
        LabelMode::True => return Err(resolve_label_mode(config, false).expect_err("no labels")),
        _ => {
            warnings.push("no labels: raw VoG only (class normalization needs labels)".into());
            None
        }
    };
    let load_s = t0.elapsed().as_secs_f64();
    let t_hash = Instant::now();
    let checkpoints = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| hash_files(i, d, &npy_files(d)?))
        .collect::<Result<Vec<_>>>()?;
    let hash_s = t_hash.elapsed().as_secs_f64();

    let t_score = Instant::now();
    let row_len: usize = shape.iter().product();
    let bs = config
        .backend
        .batch_size
        .unwrap_or_else(|| crate::plan::auto_batch(&shape));
    let mut acc = VogAccumulator::new(&shape, &windows, k, config.scoring.channels)?;
    let mut buf = Vec::with_capacity(bs * row_len);
    let mut loop_start = 0;
    if let Some(r) = sink.start(&fingerprint(config, &checkpoints, n)?)? {
        if r.next > n || (r.next != n && r.next % bs != 0) {
            return Err(Error::Input(format!(
                "{}: its progress (row {}) does not fit this run's {n} rows in batches of {bs}; \
                 delete it to start over",
                sink.location(),
                r.next
            )));
        }
        loop_start = r.next;
    }
    progress.start(n as u64, "scoring stored gradients");
    progress.advance(loop_start as u64);
    for start in (loop_start..n).step_by(bs) {
        let rows = bs.min(n - start);
        acc.reset(rows);
        for (ck, src) in sources.iter_mut().enumerate() {
            buf.clear();
            match src {
                Stored::Stacked(a) => {
                    a.read_f32(start, rows, &mut buf)?;
                    if let Err(vog_core::Error::NonFinite { row, element, .. }) =
                        check_finite("gradient", &buf, row_len)
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
                        if a.shape() != shape.as_slice() {
                            return Err(Error::Input(format!(
                                "{}: gradient shaped {:?}, other examples are {:?}",
                                f.display(),
                                a.shape(),
                                shape
                            )));
                        }
                        let before = buf.len();
                        a.read_f32(0, a.rows(), &mut buf)?;
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
            acc.add(ck, &buf)?;
        }
        let scores = acc.scores()?;
        for r in 0..rows {
            let row = start + r;
            let label = ann.labels.as_ref().map(|l| l[row]);
            sink.push(ExampleScore {
                row,
                id: ann.id(row),
                true_label: label,
                label_used: label,
                predicted: None,
                vog: scores[r * windows.len()..(r + 1) * windows.len()].to_vec(),
                vog_norm: Vec::new(),
                extra: Vec::new(),
                meta: ann.meta(row),
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
        channels: config.scoring.channels,
        vog_map_shape: config.scoring.channels.reduced_shape(&shape),
        windows,
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

fn hash_files(position: usize, path: &Path, files: &[PathBuf]) -> Result<CheckpointRecord> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file = std::fs::File::open(f).map_err(|e| Error::io(f, e))?;
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(f, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(CheckpointRecord {
        position,
        path: path.to_path_buf(),
        bytes,
        sha256,
    })
}

fn tool_info() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("name".to_string(), "vog".to_string()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ])
}

#[cfg(test)]
mod transform_tests {
    use super::*;

    #[test]
    fn reshape_scale_and_channel_normalization() {
        let mut config = Config::default();
        config.data.input_shape = Some(vec![2, 1, 2]);
        config.data.scale = 0.5;
        config.data.mean = Some(vec![1.0, 2.0]);
        config.data.std = Some(vec![2.0, 4.0]);
        let t = InputTransform::new(&config, Path::new("x.npy"), &[4]).unwrap();
        let mut x = vec![2.0, 4.0, 8.0, 12.0];
        t.apply(&mut x);
        assert_eq!(x, vec![0.0, 0.5, 0.5, 1.0]);
        config.data.input_shape = Some(vec![3, 1, 2]);
        let err = InputTransform::new(&config, Path::new("x.npy"), &[4])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("input_shape") && err.contains("x.npy"),
            "{err}"
        );
        config.data.input_shape = Some(vec![2, 1, 2]);
        config.data.mean = Some(vec![1.0, 2.0, 3.0]);
        let err = InputTransform::new(&config, Path::new("x.npy"), &[4])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("data.mean"), "{err}");
    }
}
