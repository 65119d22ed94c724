//! What both scoring passes (through a backend, from stored gradients) set up and leave behind:
//! the checkpoints in order with their windows, the run's identity for the resume journal,
//! the checkpoints' hashes for the manifest, and the [`Pass`] the decisions are made from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vog_core::{resolve_windows, BackendInfo, GradientBackend, Model, Window};
use vog_data::ArrayFile;

use crate::config::{CheckpointOrder, Config, LabelMode};
use crate::discover::{self, Entry};
use crate::inputs::{checkpoint_label, InputTransform};
use crate::plan::WorkPlan;
use crate::results::{CheckpointRecord, DataSummary, GradientSource, ScoringSummary, Timings};
use crate::sink::Sink;
use crate::spill::Progress as SpillProgress;
use crate::{Error, Result};

/// What the scoring pass leaves besides the examples.
pub(crate) struct Pass<'a> {
    pub(crate) run: Run,
    pub(crate) extra_columns: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) inputs: MapInputs<'a>,
    pub(crate) mode: LabelMode,
}

/// The checkpoints' models: all resident, or loaded one at a time (the chunked work order).
pub(crate) struct Models<'a> {
    pub(crate) backend: &'a dyn GradientBackend,
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) resident: bool,
    pub(crate) slots: Vec<Option<Box<dyn Model>>>,
    /// Seconds spent loading a checkpoint that had been dropped.
    pub(crate) reload_s: f64,
}

impl<'a> Models<'a> {
    pub(crate) fn new(backend: &'a dyn GradientBackend, paths: &[PathBuf], resident: bool) -> Self {
        Models {
            backend,
            paths: paths.to_vec(),
            resident,
            slots: paths.iter().map(|_| None).collect(),
            reload_s: 0.0,
        }
    }

    /// The model of checkpoint `ck`, loading it (and, when not resident, dropping any other).
    pub(crate) fn get(&mut self, ck: usize) -> Result<&mut dyn Model> {
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

/// What the maps pass reads gradients from: the pass's models and data, or stored gradients.
#[allow(clippy::large_enum_variant)] // one per run
pub(crate) enum MapInputs<'a> {
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

/// Identifies a run for its resume journal: the configuration (results location aside), the
/// checkpoints' contents and the number of examples.
pub(crate) fn fingerprint(
    config: &Config,
    checkpoints: &[CheckpointRecord],
    n: usize,
) -> Result<String> {
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
pub(crate) struct Run {
    pub(crate) source: GradientSource,
    pub(crate) backend: Option<BackendInfo>,
    pub(crate) data: DataSummary,
    pub(crate) checkpoints: Vec<CheckpointRecord>,
    pub(crate) scoring: ScoringSummary,
    pub(crate) timings: Timings,
}

/// One checkpoint's stored gradients.
pub(crate) enum Stored {
    Stacked(ArrayFile),
    PerExample(Vec<PathBuf>),
}

pub(crate) fn hash_files(
    position: usize,
    path: &Path,
    files: &[impl AsRef<Path>],
) -> Result<CheckpointRecord> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let f = f.as_ref();
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

/// Where a run's checkpoints come from: checkpoint files for a backend, or directories of
/// stored gradients.
pub(crate) struct Source<'a> {
    /// The configuration field, for messages (`checkpoints.paths`, `gradients.dirs`).
    pub(crate) field: &'static str,
    /// Files, directories or glob patterns.
    pub(crate) patterns: &'a [String],
    /// Files or directories.
    pub(crate) entry: Entry,
    /// How they are ordered.
    pub(crate) order: CheckpointOrder,
    /// File extensions the backend reads (empty: any).
    pub(crate) extensions: &'a [String],
}

/// The checkpoints of a run in training order and the windows over them (their warnings added
/// to `warnings`).
pub(crate) fn checkpoints_and_windows(
    config: &Config,
    source: &Source<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<PathBuf>, Vec<Window>)> {
    let paths = discover::resolve(
        source.patterns,
        source.entry,
        source.order,
        source.extensions,
        source.field,
    )?;
    let (windows, w) =
        resolve_windows(paths.len(), &config.scoring.windows, &config.scoring.ranges)
            .map_err(|e| Error::Input(format!("{}: {e}", source.field)))?;
    warnings.extend(w);
    Ok((paths, windows))
}

/// Hashes every checkpoint for the manifest (`files` lists the files of one), with the seconds it
/// took.
pub(crate) fn hash_checkpoints(
    paths: &[PathBuf],
    files: impl Fn(&Path) -> Result<Vec<PathBuf>>,
) -> Result<(Vec<CheckpointRecord>, f64)> {
    let t = Instant::now();
    let records = paths
        .iter()
        .enumerate()
        .map(|(i, p)| hash_files(i, p, &files(p)?))
        .collect::<Result<Vec<_>>>()?;
    Ok((records, t.elapsed().as_secs_f64()))
}

/// Starts `sink` for this run and returns the row scoring starts at with what an earlier,
/// interrupted run of the same job recorded (`--resume`), or `first` and `None`. A journal whose
/// progress does not fit rows `first..end` in batches of `batch` is refused.
pub(crate) fn start_sink(
    sink: &mut dyn Sink,
    config: &Config,
    checkpoints: &[CheckpointRecord],
    n: usize,
    [first, end]: [usize; 2],
    batch: usize,
) -> Result<(usize, Option<SpillProgress>)> {
    let Some(r) = sink.start(&fingerprint(config, checkpoints, n)?)? else {
        return Ok((first, None));
    };
    let next = r.next;
    if next < first || next > end || (next != end && (next - first) % batch != 0) {
        return Err(Error::Input(format!(
            "{}: its progress (row {next}) does not fit this run's rows {first}..{end} in \
             batches of {batch}; delete it to start over",
            sink.location()
        )));
    }
    tracing::info!(next, "resuming from the journal");
    Ok((next, Some(r)))
}
