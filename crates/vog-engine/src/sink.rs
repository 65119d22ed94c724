//! Where the scoring pass puts finished examples: in memory ([`Collect`], for
//! [`score`](crate::score)) or spilled to a journal file with running totals ([`Spill`], for
//! [`score_to_dir`](crate::score_to_dir), which `--resume` continues from).

use std::path::PathBuf;

use crate::results::ExampleScore;
use crate::select::Tally;
use crate::spill::{Progress as SpillProgress, SpillWriter};
use crate::Result;

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
pub(crate) struct Collect {
    pub(crate) examples: Vec<ExampleScore>,
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
pub(crate) struct Spill {
    pub(crate) path: PathBuf,
    pub(crate) resume: bool,
    pub(crate) writer: Option<SpillWriter>,
    pub(crate) tally: Tally,
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
