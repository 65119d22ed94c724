//! The threads of the backend pass: the statistics worker that folds gradients into running VoG
//! statistics while the loop calls the backend again, the batch bookkeeping between them, and
//! how helper threads are started.

use std::collections::HashMap;

use vog_core::{VogAccumulator, Window};

use crate::affinity::{Helper, LoopCpu};
use crate::{Error, Result};

/// One batch in flight: its input and logits until every checkpoint has answered (its running
/// statistics live in the statistics worker, under `slot`).
pub(crate) struct BatchWork {
    pub(crate) slot: u64,
    pub(crate) start: usize,
    pub(crate) rows: usize,
    pub(crate) input: Vec<f32>,
    pub(crate) started: bool,
    pub(crate) logits: Vec<Vec<f32>>,
    pub(crate) fixed: Option<Vec<u32>>,
}

/// Work for the statistics worker.
pub(crate) enum AccJob {
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
        gradient: vog_core::Floats,
        second: Option<vog_core::Floats>,
    },
    /// Every checkpoint has answered: send the batch's scores.
    Finish { slot: u64 },
}

/// A batch whose checkpoints have all answered, for the finishing thread.
pub(crate) struct Finished {
    pub(crate) start: usize,
    pub(crate) rows: usize,
    pub(crate) logits: Vec<Vec<f32>>,
    /// Progress as of this batch, for its commit.
    pub(crate) backend_s: f64,
    pub(crate) classes: usize,
    pub(crate) grad_shape: Vec<usize>,
}

/// VoG per row and window of one batch, and of the second target.
pub(crate) struct BatchScores {
    pub(crate) scores: Vec<f64>,
    pub(crate) second: Option<Vec<f64>>,
}

/// Describes a gradient that failed its check: (error, checkpoint, first row, rows).
pub(crate) type DescribeStep<'a> =
    &'a (dyn Fn(vog_core::Error, usize, usize, usize) -> Error + Sync);

/// One batch on the statistics worker: its accumulators and where its rows start.
pub(crate) struct LiveBatch {
    pub(crate) first: VogAccumulator,
    pub(crate) second: Option<VogAccumulator>,
    pub(crate) start: usize,
    pub(crate) rows: usize,
}

/// The statistics worker: checks that gradients are finite and folds them into per-batch
/// accumulators while the scoring loop calls the backend again, and answers each `Finish` (in
/// order) with the batch's scores.
pub(crate) fn accumulate(
    jobs: std::sync::mpsc::Receiver<AccJob>,
    results: std::sync::mpsc::Sender<Result<BatchScores>>,
    windows: &[Window],
    k: usize,
    channels: (vog_core::ChannelReduce, vog_core::ChannelAxis),
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
                        _ => {
                            let reduce = channels.1.resolve(channels.0, &shape)?;
                            VogAccumulator::new(&shape, windows, k, reduce)?
                        }
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
pub(crate) fn spawn_helper<'scope, 'env, T: Send + 'scope>(
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
