//! The scoring pass through a backend: batches of examples streamed through every checkpoint.
//!
//! For each batch, every checkpoint contributes one gradient (folded into the running VoG
//! statistics, then dropped) and one set of logits (kept for the batch only, then handed to the
//! reducers in training order). Memory is bounded by the batch, whatever the dataset size.
//!
//! [`pass_backend`] sets the pass up (checkpoints, data, models, the resume point), then
//! [`Scoring::run`] drives three helper threads around the loop that calls the backend:
//!
//! ```text
//! vog-read    reads and transforms batches ahead ──► loop: Scoring::call per checkpoint and batch
//! vog-stats   folds gradients into VoG statistics ◄──┘      │ logits, in batch order
//! vog-finish  Scoring::finish: reducers, trajectories, the sink ◄──┘
//! ```

use std::path::PathBuf;
use std::time::Instant;

use vog_core::{
    panel_reducers, CheckpointOutcomes, Classes, GradOutput, GradRequest, GradientBackend, Model,
    Reducer, RowOutcome, Target, TensorView, Window,
};
use vog_data::{CsvColumns, ExampleSource, Format};

use crate::affinity::LoopCpu;
use crate::config::{Config, LabelMode};
use crate::discover::Entry;
use crate::inputs::{
    check_label_range, checkpoint_label, load_annotations, read_batch, resolve_label_mode,
    step_error, Annotations, InputTransform,
};
use crate::pipeline::{accumulate, spawn_helper, AccJob, BatchScores, BatchWork, Finished};
use crate::plan::{WorkOrder, WorkPlan, READ_AHEAD};
use crate::prepare::{
    checkpoints_and_windows, hash_checkpoints, start_sink, MapInputs, Models, Pass, Run, Source,
};
use crate::results::{
    DataSummary, ExampleScore, GradientSource, Progress, ScoringSummary, Timings,
};
use crate::sink::Sink;
use crate::spill::Progress as SpillProgress;
use crate::{Error, Result};

pub(crate) fn pass_backend<'a>(
    config: &Config,
    backend: &'a dyn GradientBackend,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> Result<Pass<'a>> {
    let t0 = Instant::now();
    let mut warnings = Vec::new();
    let info = backend.info();
    let source = Source {
        field: "checkpoints.paths",
        patterns: &config.checkpoints.paths,
        entry: Entry::Files,
        order: config.checkpoints.order,
        extensions: &info.extensions,
    };
    let (paths, windows) = checkpoints_and_windows(config, &source, &mut warnings)?;
    let k = paths.len();
    tracing::info!(checkpoints = k, backend = %info.name, "scoring through a backend");
    for (i, p) in paths.iter().enumerate() {
        tracing::debug!(position = i, path = %p.display(), "checkpoint");
    }
    let mut input = Input::open(config, &mut warnings)?;
    let n = input.data.len();
    let mode = resolve_label_mode(config, input.ann.labels.is_some())?;
    let second = config
        .scoring
        .second_target
        .resolve(config.scoring.target, mode);
    let all_windows = with_second_target(&windows, second)?;
    let (plan, mut models) = load_models(config, backend, &paths, &input, &all_windows)?;
    // `auto` channels follow the model where its first layers tell (ONNX: a convolution on the
    // input as it comes, or behind an NHWC-to-NCHW transpose), else the examples' shape.
    let channel_axis = config
        .scoring
        .channel_axis
        .with_model(models.get(0)?.info().channel_axis);
    let bs = plan.batch;
    let load_s = t0.elapsed().as_secs_f64();
    models.reload_s = 0.0;

    let (checkpoints, hash_s) = hash_checkpoints(&paths, |p| Ok(vec![p.to_path_buf()]))?;

    let t_score = Instant::now();
    let mut reducers = panel_reducers(config.scoring.el2n_checkpoint.saturating_sub(1));
    let extra_columns: Vec<String> = reducers.iter().flat_map(|r| r.columns()).collect();
    let (first, end) = config.shard.map_or((0, n), |s| s.rows(n));
    // With --resume, batches an earlier run committed are read back instead of recomputed.
    let (loop_start, resumed) = start_sink(sink, config, &checkpoints, n, [first, end], bs)?;
    let mut state = match resumed {
        Some(r) => LoopState {
            grad_shape: None,
            batch_classes: r.classes,
            backend_s: r.backend_s,
            resumed_shape: r.grad_shape,
        },
        None => LoopState::default(),
    };
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
    let scoring = Scoring {
        config,
        paths: &paths,
        k,
        mode,
        second,
        backend: &info.name,
        windows: &windows,
        ann: &input.ann,
        transform: &input.transform,
        data_path: &input.path,
        channel_axis,
    };
    scoring.run(
        &mut *input.data,
        &plan,
        &mut models,
        &batches,
        &mut reducers,
        sink,
        progress,
        &mut state,
    )?;
    let grad_shape = state.grad_shape.unwrap_or(state.resumed_shape);
    sink.commit(
        &SpillProgress {
            next: end,
            backend_s: state.backend_s,
            classes: state.batch_classes,
            grad_shape: grad_shape.clone(),
        },
        true,
    )?;
    progress.finish();
    let timings = Timings {
        load_s,
        hash_s,
        score_s: t_score.elapsed().as_secs_f64(),
        backend_s: state.backend_s,
        reload_s: models.reload_s,
    };
    let Input {
        data,
        path: data_path,
        stored_shape,
        transform,
        ann,
    } = input;
    let summary = DataSummary {
        path: Some(std::path::absolute(&data_path).unwrap_or(data_path)),
        rows: n,
        example_shape: stored_shape,
        model_input_shape: transform.shape.clone(),
        labels: ann.labels_source.clone(),
        split: config.data.split.clone(),
        metadata_missing: ann.metadata_missing,
        shard_rows: config.shard.map(|_| [first, end]),
    };
    let reduced_from = if grad_shape.is_empty() {
        &transform.shape
    } else {
        &grad_shape
    };
    let channels = channel_axis.resolve(config.scoring.channels, reduced_from)?;
    let scoring = ScoringSummary {
        labels: Some(mode),
        target: Some(config.scoring.target),
        second_target: second,
        el2n_checkpoint: Some(config.scoring.el2n_checkpoint.min(k)),
        channels,
        vog_map_shape: channels.reduced_shape(reduced_from),
        windows: all_windows,
        columns: extra_columns.clone(),
        num_classes: Some(state.batch_classes),
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

/// The windows scored: the configured ones, then, with a second target, the same windows of the
/// second target's VoG, named `WINDOW_TARGET`.
fn with_second_target(windows: &[Window], second: Option<Target>) -> Result<Vec<Window>> {
    let mut all = windows.to_vec();
    if let Some(t) = second {
        for w in windows {
            let name = format!("{}_{}", w.name, crate::config::target_name(t));
            if windows.iter().any(|x| x.name == name) {
                return Err(Error::Config(format!(
                    "`scoring.ranges`: window `{name}` clashes with the second target's window of `{}`",
                    w.name
                )));
            }
            all.push(Window { name, ..w.clone() });
        }
    }
    Ok(all)
}

/// The examples of a backend pass: the data file opened, how rows become model inputs, and the
/// labels, ids and metadata joined to them.
struct Input {
    data: Box<dyn ExampleSource>,
    path: PathBuf,
    stored_shape: Vec<usize>,
    transform: InputTransform,
    ann: Annotations,
}

impl Input {
    fn open(config: &Config, warnings: &mut Vec<String>) -> Result<Input> {
        let d = &config.data;
        let path = d
            .path
            .clone()
            .ok_or_else(|| Error::Config("`data.path`: no examples given".into()))?;
        let format = d.format.as_deref().and_then(Format::from_name);
        let csv = CsvColumns {
            label: d.label_column.clone(),
            id: d.id_column.clone(),
            features: d.features.clone(),
        };
        let data = vog_data::open_examples(&path, format, d.key.as_deref(), &csv)?;
        let n = data.len();
        if n == 0 {
            return Err(Error::Input(format!("{}: no examples", path.display())));
        }
        let stored_shape = data.row_shape().to_vec();
        let transform = InputTransform::new(config, &path, &stored_shape)?;
        let ann = load_annotations(config, n, Some(&path), data.labels(), data.ids(), warnings)?;
        Ok(Input {
            data,
            path,
            stored_shape,
            transform,
            ann,
        })
    }
}

/// Plans the pass (batch size, work order) and loads the checkpoints' models, checking that
/// they agree on the number of classes and that the labels fit it.
fn load_models<'a>(
    config: &Config,
    backend: &'a dyn GradientBackend,
    paths: &[PathBuf],
    input: &Input,
    windows: &[Window],
) -> Result<(WorkPlan, Models<'a>)> {
    let k = paths.len();
    // The first checkpoint tells the number of classes the plan's estimate needs.
    let first_model = backend.load(&paths[0]).map_err(|source| Error::Step {
        context: checkpoint_label(0, k, &paths[0]),
        source,
    })?;
    let plan = WorkPlan::new(
        config,
        paths,
        &input.transform.shape,
        windows,
        k,
        (
            first_model.info().num_classes,
            first_model.preferred_batch(&input.transform.shape),
        ),
    )?;
    tracing::info!(
        batch = plan.batch,
        order = plan.order.as_str(),
        chunk_rows = plan.chunk_batches * plan.batch,
        "work order"
    );
    let mut models = Models::new(backend, paths, plan.order == WorkOrder::Resident);
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
    if let (Some(c), Some(labels)) = (num_classes, &input.ann.labels) {
        check_label_range(
            labels,
            c,
            input.ann.labels_source.as_deref().unwrap_or(""),
            &paths[0],
        )?;
    }
    Ok((plan, models))
}

/// What the loop learns as backends answer (and what a resumed run's journal recorded).
#[derive(Default)]
struct LoopState {
    /// Known at the first answer: a backend may differentiate with respect to an intermediate
    /// tensor whose shape differs from the input's.
    grad_shape: Option<Vec<usize>>,
    /// Classes the model produces (0 until the first answer).
    batch_classes: usize,
    /// Seconds inside backend calls.
    backend_s: f64,
    /// The gradient shape a resumed run's journal recorded.
    resumed_shape: Vec<usize>,
}

/// What every step of the loop reads: the run's settings and inputs.
struct Scoring<'a> {
    config: &'a Config,
    paths: &'a [PathBuf],
    k: usize,
    mode: LabelMode,
    second: Option<Target>,
    backend: &'a str,
    /// The first target's windows (the statistics worker adds the second target's itself).
    windows: &'a [Window],
    ann: &'a Annotations,
    transform: &'a InputTransform,
    data_path: &'a std::path::Path,
    /// `scoring.channel_axis`, an `auto` one settled by the model where it tells.
    channel_axis: vog_core::ChannelAxis,
}

impl Scoring<'_> {
    /// An error of checkpoint `ck` on rows `start..start + rows`, described with the example.
    fn step_error(&self, e: vog_core::Error, ck: usize, start: usize, rows: usize) -> Error {
        step_error(
            e,
            ck,
            self.k,
            &self.paths[ck],
            start,
            rows,
            self.data_path,
            self.ann,
        )
    }

    /// Scores `batches` with the reader, statistics and finishing threads around the loop that
    /// calls the backend. The first thread to fail stops the others; its error is returned.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        data: &mut dyn ExampleSource,
        plan: &WorkPlan,
        models: &mut Models<'_>,
        batches: &[(usize, usize)],
        reducers: &mut [Box<dyn Reducer>],
        sink: &mut dyn Sink,
        progress: &dyn Progress,
        state: &mut LoopState,
    ) -> Result<()> {
        let k = self.k;
        let loop_cpu = &LoopCpu::new();
        std::thread::scope(|scope| -> Result<()> {
            // Reading and decoding run ahead of the backend, a bounded number of batches.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<f32>>>(READ_AHEAD);
            let to_read = batches.to_vec();
            let (transform, data_path) = (self.transform, self.data_path);
            spawn_helper(scope, "vog-read", loop_cpu, move |helper| {
                for (start, rows) in to_read {
                    helper.step();
                    let batch = read_batch(data, transform, data_path, start, rows);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })?;
            // Folding gradients into the running statistics overlaps the next backend call.
            let (jobs, job_rx) = std::sync::mpsc::sync_channel::<AccJob>(2 * k);
            let (res_tx, results) = std::sync::mpsc::channel::<Result<BatchScores>>();
            let channels = (self.config.scoring.channels, self.channel_axis);
            // Gradients are checked for NaN and infinity there too, described as the loop would.
            let describe = |e, ck: usize, start, rows| self.step_error(e, ck, start, rows);
            spawn_helper(scope, "vog-stats", loop_cpu, move |helper| {
                accumulate(job_rx, res_tx, self.windows, k, channels, &describe, helper)
            })?;
            // Finishing rows (reducers, the spill) runs on a third thread, in batch order.
            let (fin_tx, fin_rx) =
                std::sync::mpsc::sync_channel::<Finished>(plan.chunk_batches + READ_AHEAD);
            let finisher =
                spawn_helper(scope, "vog-finish", loop_cpu, move |helper| -> Result<()> {
                    for b in fin_rx {
                        helper.step();
                        let scores = results.recv().map_err(|_| {
                            Error::Pipeline("the statistics worker stopped".into())
                        })??;
                        let rows = b.rows;
                        self.finish(b, scores, reducers, sink)?;
                        progress.advance(rows as u64);
                    }
                    // The loop stopped sending batches. If that is because the statistics worker
                    // failed (a NaN gradient, say) before finishing a batch this thread was
                    // waiting for, its error is still in the channel: report it rather than "the
                    // worker stopped". The worker ends once the loop has dropped its side, so
                    // this does not block.
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
                let order = self.checkpoint_order();
                let mut next_slot = 0u64;
                for chunk in batches.chunks(plan.chunk_batches) {
                    if progress.interrupted() {
                        return Err(Error::Interrupted);
                    }
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
                            self.call(model, ck, b, state, &send, loop_cpu)?;
                        }
                    }
                    for b in work {
                        send(AccJob::Finish { slot: b.slot })?;
                        fin_tx
                            .send(Finished {
                                start: b.start,
                                rows: b.rows,
                                logits: b.logits,
                                backend_s: state.backend_s,
                                classes: state.batch_classes,
                                grad_shape: state.grad_shape.clone().unwrap_or_default(),
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
        })
    }

    /// The order checkpoints answer a batch in: training order, or, in `predicted` mode, the
    /// last first, because its prediction fixes the class for all the others.
    fn checkpoint_order(&self) -> Vec<usize> {
        let k = self.k;
        match self.mode {
            LabelMode::Predicted => std::iter::once(k - 1).chain(0..k - 1).collect(),
            _ => (0..k).collect(),
        }
    }

    /// One backend call: checkpoint `ck` on batch `b` (and again for the second target). The
    /// answer is checked, its gradients go to the statistics worker, its logits stay with `b`.
    fn call(
        &self,
        model: &mut dyn Model,
        ck: usize,
        b: &mut BatchWork,
        state: &mut LoopState,
        send: &dyn Fn(AccJob) -> Result<()>,
        loop_cpu: &LoopCpu,
    ) -> Result<()> {
        let (start, rows, k) = (b.start, b.rows, self.k);
        let mut shape = vec![rows];
        shape.extend(&self.transform.shape);
        let view = TensorView::new(&shape, &b.input)?;
        let true_labels = self.ann.labels.as_ref().map(|l| &l[start..start + rows]);
        let classes = match self.mode {
            LabelMode::True => Classes::Given(true_labels.expect("true mode has labels")),
            LabelMode::Predicted if ck != k - 1 => {
                Classes::Given(b.fixed.as_deref().expect("set first"))
            }
            _ => Classes::Argmax,
        };
        let request = GradRequest {
            input: view,
            classes,
            target: self.config.scoring.target,
        };
        loop_cpu.note();
        let t_call = Instant::now();
        let step = model.input_gradients(&request);
        state.backend_s += t_call.elapsed().as_secs_f64();
        let out = step.map_err(|e| self.step_error(e, ck, start, rows))?;
        self.check_answer(&out, &request, ck, start, rows, state)?;
        if self.mode == LabelMode::Predicted && ck == k - 1 {
            b.fixed = Some(out.classes.clone());
        }
        let this_shape = out
            .gradient_shape
            .clone()
            .unwrap_or_else(|| self.transform.shape.clone());
        let expected = state.grad_shape.get_or_insert_with(|| this_shape.clone());
        if *expected != this_shape {
            return Err(Error::Input(format!(
                "{}: gradient rows shaped {this_shape:?}, other checkpoints gave {expected:?}",
                checkpoint_label(ck, k, &self.paths[ck])
            )));
        }
        if !b.started {
            send(AccJob::Start {
                slot: b.slot,
                start,
                rows,
                shape: this_shape,
                second: self.second.is_some(),
            })?;
            b.started = true;
        }
        let mut second_gradient = None;
        if let Some(t2) = self.second {
            // Same classes as the first target, so both scores describe the same label.
            let request2 = GradRequest {
                input: view,
                classes: Classes::Given(&out.classes),
                target: t2,
            };
            let t_call = Instant::now();
            let step2 = model.input_gradients(&request2);
            state.backend_s += t_call.elapsed().as_secs_f64();
            let out2 = step2
                .and_then(|o| o.validate_structure(&request2).map(|()| o))
                .map_err(|e| self.step_error(e, ck, start, rows))?;
            second_gradient = Some(out2.gradient);
        }
        send(AccJob::Add {
            slot: b.slot,
            checkpoint: ck,
            gradient: out.gradient,
            second: second_gradient,
        })?;
        b.logits[ck] = out.logits;
        Ok(())
    }

    /// Checks a backend's answer: its structure (the gradient's values are checked on the
    /// statistics thread), and that every checkpoint produces the same number of classes, which
    /// the labels must fit.
    fn check_answer(
        &self,
        out: &GradOutput,
        request: &GradRequest<'_>,
        ck: usize,
        start: usize,
        rows: usize,
        state: &mut LoopState,
    ) -> Result<()> {
        let label = || checkpoint_label(ck, self.k, &self.paths[ck]);
        out.validate_structure(request).map_err(|e| match e {
            // NaN weights or an overflow: a property of the checkpoint and the data.
            e @ vog_core::Error::NonFinite { .. } => self.step_error(e, ck, start, rows),
            // Anything else means the backend broke its contract.
            e => Error::Step {
                context: format!(
                    "{}: backend `{}` returned inconsistent output",
                    label(),
                    self.backend
                ),
                source: e,
            },
        })?;
        if state.batch_classes == 0 {
            state.batch_classes = out.num_classes;
            if let Some(labels) = &self.ann.labels {
                check_label_range(
                    labels,
                    out.num_classes,
                    self.ann.labels_source.as_deref().unwrap_or(""),
                    &self.paths[ck],
                )?;
            }
        } else if out.num_classes != state.batch_classes {
            return Err(Error::Input(format!(
                "{} produces {} classes but other checkpoints produce {}",
                label(),
                out.num_classes,
                state.batch_classes
            )));
        }
        Ok(())
    }

    /// Finishes a batch whose checkpoints have all answered: predictions, the panel's reducers
    /// over the checkpoints' logits, each example's trajectory; the examples go to the sink,
    /// which commits the batch.
    fn finish(
        &self,
        b: Finished,
        scores: BatchScores,
        reducers: &mut [Box<dyn Reducer>],
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let (start, rows, k, c) = (b.start, b.rows, self.k, b.classes);
        let BatchScores {
            scores,
            second: scores2,
        } = scores;
        let true_labels = self.ann.labels.as_ref().map(|l| &l[start..start + rows]);
        let predicted: Vec<u32> = b.logits[k - 1]
            .chunks_exact(c)
            .map(|r| RowOutcome::from_logits(r, 0, None).predicted)
            .collect();
        let label_used: Vec<u32> = match self.mode {
            LabelMode::True => true_labels.expect("true mode has labels").to_vec(),
            _ => predicted.clone(),
        };
        reducers.iter_mut().for_each(|r| r.begin_batch(rows));
        let mut trajectories: Vec<Vec<(u32, f64)>> = vec![Vec::with_capacity(k); rows];
        for (ck, logits) in b.logits.iter().enumerate() {
            let outcomes: Vec<RowOutcome> = logits
                .chunks_exact(c)
                .enumerate()
                .map(|(r, l)| RowOutcome::from_logits(l, label_used[r], true_labels.map(|t| t[r])))
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
        let w = self.windows.len();
        let mut extra = Vec::new();
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
                id: self.ann.id(row)?,
                true_label: true_labels.map(|t| t[r]),
                label_used: Some(label_used[r]),
                predicted: Some(predicted[r]),
                vog,
                vog_norm: Vec::new(),
                extra: extra.clone(),
                meta: self.ann.meta(row)?,
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
                grad_shape: b.grad_shape,
            },
            false,
        )
    }
}
