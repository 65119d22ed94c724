//! The entry points of a scoring run: [`score`] (results in memory) and [`score_to_dir`]
//! (streamed to a results directory). Each runs one pass over the examples ([`backend_pass`] or
//! [`stored`]), decides class statistics, flags and the manifest ([`decide`]), computes the kept
//! maps ([`maps`]) and hands the rows out.
//!
//! [`backend_pass`]: crate::backend_pass
//! [`stored`]: crate::stored
//! [`decide`]: crate::decide
//! [`maps`]: crate::maps

use std::path::PathBuf;

use vog_core::{GradientBackend, Window};

use crate::config::Config;
use crate::decide::decide;
use crate::prepare::Pass;
use crate::results::{ExampleScore, Manifest, Progress, RunResult};
use crate::select::Tally;
use crate::sink::{Collect, Sink, Spill};
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
        let mut written = 0u64;
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
            written += 1;
            if written.is_multiple_of(4096) && progress.interrupted() {
                return Err(Error::Interrupted);
            }
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
        crate::backend_pass::pass_backend(config, backend, progress, sink)
    } else {
        crate::stored::pass_stored(config, progress, sink)
    }
}
