//! Run configuration: a versioned TOML file, every table closed to unknown keys, with defaults in
//! one place and a `validate()` that names the offending field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vog_core::{ChannelAxis, ChannelReduce, Target, BUILTIN_WINDOWS};

use crate::{Error, Result};

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// A whole `vog score` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; must be 1.
    pub version: u32,
    /// The examples and what comes with them.
    #[serde(default)]
    pub data: DataConfig,
    /// Training checkpoints, for scoring through a backend.
    #[serde(default)]
    pub checkpoints: CheckpointsConfig,
    /// Stored gradients, instead of checkpoints and a backend.
    #[serde(default)]
    pub gradients: GradientsConfig,
    /// Which backend computes gradients, and its options.
    #[serde(default)]
    pub backend: BackendConfig,
    /// How VoG is computed.
    #[serde(default)]
    pub scoring: ScoringConfig,
    /// Where and how results are written.
    #[serde(default)]
    pub output: OutputConfig,
    /// Where backend plugins are looked for.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Which examples are flagged for review.
    #[serde(default)]
    pub flag: FlagConfig,
    /// Score one slice of the examples (`vog score --shard I/N`); `vog merge` joins the slices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// One of `count` slices of a run: examples `[n·index/count, n·(index+1)/count)`, contiguous and
/// in order, so the slices of any `n` cover it exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// 0-based position of this slice.
    pub index: usize,
    /// Number of slices.
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` (0-based `I`).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "shard `{text}`: write I/N with 0 ≤ I < N, e.g. 3/8"
            ))
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let shard = Shard {
            index: i.trim().parse().map_err(|_| bad())?,
            count: n.trim().parse().map_err(|_| bad())?,
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(bad());
        }
        Ok(shard)
    }

    /// The rows `[start, end)` of this slice of `n` examples.
    pub fn rows(&self, n: usize) -> (usize, usize) {
        (
            n * self.index / self.count,
            n * (self.index + 1) / self.count,
        )
    }
}

/// `[flag]`: the flagging policy. Flagged examples are searchable in the store
/// (`flagged:true`) and keep their VoG map and last-checkpoint gradient (up to `max_maps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagConfig {
    /// Flag the top X percent of each class by class-normalized VoG of `window`.
    pub top_percent: Option<f64>,
    /// Or: flag every example whose class-normalized VoG of `window` reaches this.
    pub threshold: Option<f64>,
    /// The window whose score decides (default `all`).
    #[serde(default = "default_flag_window")]
    pub window: String,
    /// At most this many flagged examples (highest scores first) keep their maps.
    #[serde(default = "default_max_maps")]
    pub max_maps: usize,
    /// And at most this many bytes of maps are kept.
    #[serde(default = "default_max_map_bytes")]
    pub max_map_bytes: u64,
    /// Also keep the maps of the N highest- and N lowest-scoring examples of each class (by
    /// `window`), flagged or not: the heat maps of `vog report`'s example grids.
    #[serde(default)]
    pub extremes_per_class: usize,
}

impl Default for FlagConfig {
    fn default() -> Self {
        FlagConfig {
            top_percent: None,
            threshold: None,
            window: default_flag_window(),
            max_maps: default_max_maps(),
            max_map_bytes: default_max_map_bytes(),
            extremes_per_class: 0,
        }
    }
}

fn default_flag_window() -> String {
    "all".into()
}
fn default_max_maps() -> usize {
    1000
}
fn default_max_map_bytes() -> u64 {
    512 << 20
}

/// `[plugins]`: extra directories searched for backend plugins (`libvog_backend_NAME.so`), after
/// `VOG_PLUGIN_PATH` and before the directory of the `vog` executable and its `../lib/vog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directories, relative to the configuration file.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            data: DataConfig::default(),
            checkpoints: CheckpointsConfig::default(),
            gradients: GradientsConfig::default(),
            backend: BackendConfig::default(),
            scoring: ScoringConfig::default(),
            output: OutputConfig::default(),
            plugins: PluginsConfig::default(),
            flag: FlagConfig::default(),
            shard: None,
        }
    }
}

/// `[data]`: examples, labels, ids and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Examples: `.npy`, `.npz`, IDX (optionally `.gz`) or CSV.
    pub path: Option<PathBuf>,
    /// Format of `path` when its name does not tell (`npy`, `npz`, `idx`, `csv`).
    pub format: Option<String>,
    /// Array name inside an `.npz` file.
    pub key: Option<String>,
    /// Labels file (`.npy`, `.npz`, IDX, CSV, or `.txt` with one label per line).
    pub labels: Option<PathBuf>,
    /// Array name of the labels inside an `.npz` file.
    pub labels_key: Option<String>,
    /// CSV: the column holding labels (in `path`, or in `labels` when that is a CSV file).
    pub label_column: Option<String>,
    /// CSV: the column holding example ids.
    pub id_column: Option<String>,
    /// CSV: feature columns in order (default: all columns but the id and label columns).
    pub features: Option<Vec<String>>,
    /// Example ids, one per line (`.txt`) or in an `id` column (`.csv`).
    pub ids: Option<PathBuf>,
    /// Per-example metadata, CSV or JSON lines.
    pub metadata: Option<PathBuf>,
    /// Field of `metadata` holding the example id to join on; without it, join by row.
    pub metadata_key: Option<String>,
    /// Reshape each example to this shape before it reaches the model (`[1, 28, 28]`).
    pub input_shape: Option<Vec<usize>>,
    /// Multiply inputs by this first (`0.00392156862745098` = 1/255 for 8-bit images).
    #[serde(default = "one_f64")]
    pub scale: f64,
    /// Then subtract this per channel (first axis of the example shape).
    pub mean: Option<Vec<f64>>,
    /// And divide by this per channel.
    pub std: Option<Vec<f64>>,
    /// Name of the split being scored (`train`, `test`), recorded with the results.
    pub split: Option<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: None,
            format: None,
            key: None,
            labels: None,
            labels_key: None,
            label_column: None,
            id_column: None,
            features: None,
            ids: None,
            metadata: None,
            metadata_key: None,
            input_shape: None,
            scale: 1.0,
            mean: None,
            std: None,
            split: None,
        }
    }
}

fn one_f64() -> f64 {
    1.0
}

/// How checkpoints are put in training order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointOrder {
    /// By the numbers in their paths (`epoch_2` before `epoch_10`).
    #[default]
    Name,
    /// As listed.
    Given,
}

/// `[checkpoints]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsConfig {
    /// Files, directories (every checkpoint file inside) or glob patterns.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Ordering of the checkpoints.
    #[serde(default)]
    pub order: CheckpointOrder,
}

/// `[gradients]`: previously stored input gradients, one directory per checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GradientsConfig {
    /// Directories or glob patterns; each directory holds one stacked `[N, …]` `.npy` or one
    /// `.npy` per example (sorted by name, numbers compared by value).
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Which `.npy` files of each directory are gradients, as a glob on file names
    /// (`grad_*.npy`). Absent: the reference implementation's `grad_NNNNN.npy` files when a
    /// directory has them, else every `.npy` but its side files (`ground_truth.npy`,
    /// `pred_label.npy`, `classified_flag.npy`; then `ground_truth.npy` gives the labels when
    /// `data.labels` is not set).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Ordering of the directories.
    #[serde(default)]
    pub order: CheckpointOrder,
}

/// `[backend]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Backend: a built-in name (`candle`), a plugin name found in the plugin directories
    /// (`onnx` → `libvog_backend_onnx.so`), or a path to a plugin library.
    #[serde(default = "default_backend")]
    pub name: String,
    /// Examples per forward/backward pass; absent (or `"auto"`) for automatic: about a mebibyte
    /// of input per batch (2¹⁸ values) for vector examples, between 8 and 512 examples; for
    /// examples with spatial axes 64, fewer for large images (at most 2¹⁸ values, at least 8); a
    /// power of two, and within `memory` (see
    /// [`crate::plan::auto_batch`]).
    #[serde(
        default,
        deserialize_with = "batch_size_or_auto",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_size: Option<usize>,
    /// Memory budget of the scoring pass, e.g. `"4GiB"`, `"512MiB"`: decides the work order
    /// (every checkpoint resident, or chunks of examples with one checkpoint loaded at a time) and
    /// bounds the automatic batch size. Absent: every checkpoint resident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Options passed to the backend as they are; the backend validates them.
    #[serde(default)]
    pub options: toml::Table,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            name: default_backend(),
            batch_size: None,
            memory: None,
            options: toml::Table::new(),
        }
    }
}

fn default_backend() -> String {
    "candle".into()
}
fn batch_size_or_auto<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(usize),
        Word(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(Some(n)),
        Size::Word(w) if w == "auto" => Ok(None),
        Size::Word(w) => Err(serde::de::Error::custom(format!(
            "batch_size must be a number of examples or \"auto\", got \"{w}\""
        ))),
    }
}

/// A number of bytes, written with a binary or decimal unit (`4GiB`, `512MiB`, `2G`, `1500000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size such as 4GiB or 512MiB"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "ki" | "kib" => 1 << 10,
            "mi" | "mib" => 1 << 20,
            "gi" | "gib" => 1 << 30,
            "ti" | "tib" => 1 << 40,
            other => {
                return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
            }
        };
        let bytes = value * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 {
            return Err(format!("`{text}` is not a positive size"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        b.to_string()
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        for (unit, scale) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if b >= scale && b.is_multiple_of(scale) {
                return write!(f, "{}{unit}", b / scale);
            }
        }
        if b >= 1 << 20 {
            return write!(f, "{:.1}MiB", b as f64 / (1u64 << 20) as f64);
        }
        write!(f, "{b}B")
    }
}

pub use vog_results::LabelMode;

/// `[scoring]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    /// Which label's score is differentiated.
    #[serde(default)]
    pub labels: LabelMode,
    /// Pre-softmax logit (the paper) or softmax probability.
    #[serde(default)]
    pub target: Target,
    /// Channel reduction for colour examples: `mean` (the paper) or `none`.
    #[serde(default)]
    pub channels: ChannelReduce,
    /// Where a 3-D example's channels are: `auto` (from its shape), `first` (`[C, H, W]`),
    /// `last` (`[H, W, C]`) or `none`.
    #[serde(default)]
    pub channel_axis: ChannelAxis,
    /// Windows to score: `all`, `early`, `middle`, `late` and names from `ranges`.
    #[serde(default = "default_windows")]
    pub windows: Vec<String>,
    /// Extra windows: name → `[start, end)` checkpoint positions (0-based, in training order).
    #[serde(default)]
    pub ranges: BTreeMap<String, [usize; 2]>,
    /// A second VoG from the same pass with the other target (one more backward per checkpoint):
    /// its windows are named `WINDOW_TARGET` (`all_probability`). Needs a backend. By default
    /// (`auto`) the probability target is added when scoring without labels.
    #[serde(default)]
    pub second_target: SecondTarget,
    /// Checkpoint (1-based position in training order) at which `el2n` is taken; the last one when
    /// the run has fewer.
    #[serde(default = "default_el2n_checkpoint")]
    pub el2n_checkpoint: usize,
}

fn default_el2n_checkpoint() -> usize {
    1
}

/// `scoring.second_target`: a second VoG target from the same pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondTarget {
    /// The probability target when the run scores predicted classes (no labels, or `labels =
    /// "predicted"`/`"predicted-each"`) with the logit target; none otherwise. Finding a model's
    /// test errors without labels, probability-target VoG does far better than the paper's logit
    /// VoG in every setting of docs/RESULTS.md, so label-free runs get both.
    #[default]
    Auto,
    /// No second target.
    None,
    /// The pre-softmax logit.
    Logit,
    /// The softmax probability.
    Probability,
}

impl ScoringConfig {
    /// The channel reduction for examples (gradients) of `row_shape`: `channels` and
    /// `channel_axis` together, an `auto` axis settled by the shape (or an error that asks).
    pub fn channel_reduce(&self, row_shape: &[usize]) -> vog_core::Result<ChannelReduce> {
        self.channel_axis.resolve(self.channels, row_shape)
    }
}

impl SecondTarget {
    /// The second target a run with `target` in label mode `mode` computes (`None`: none).
    pub fn resolve(self, target: Target, mode: LabelMode) -> Option<Target> {
        match self {
            SecondTarget::Auto => {
                (target == Target::Logit && mode != LabelMode::True).then_some(Target::Probability)
            }
            SecondTarget::None => None,
            SecondTarget::Logit => Some(Target::Logit),
            SecondTarget::Probability => Some(Target::Probability),
        }
    }

    /// The target asked for explicitly (`None` for `auto` and `none`).
    pub fn explicit(self) -> Option<Target> {
        match self {
            SecondTarget::Logit => Some(Target::Logit),
            SecondTarget::Probability => Some(Target::Probability),
            SecondTarget::Auto | SecondTarget::None => None,
        }
    }
}

/// The name a target has in configuration and column names.
pub fn target_name(t: Target) -> &'static str {
    match t {
        Target::Logit => "logit",
        Target::Probability => "probability",
    }
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            labels: LabelMode::default(),
            target: Target::default(),
            channels: ChannelReduce::default(),
            channel_axis: ChannelAxis::default(),
            windows: default_windows(),
            ranges: BTreeMap::new(),
            second_target: SecondTarget::Auto,
            el2n_checkpoint: default_el2n_checkpoint(),
        }
    }
}

fn default_windows() -> Vec<String> {
    BUILTIN_WINDOWS.iter().map(|s| s.to_string()).collect()
}

/// Output file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `scores.csv`.
    Csv,
    /// `scores.jsonl`.
    Jsonl,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Results directory, relative to the working directory; written whole at the end of a
    /// successful run, never partially.
    #[serde(default = "default_out")]
    pub dir: PathBuf,
    /// Which score files to write.
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
    /// Replace an existing results directory.
    #[serde(default)]
    pub overwrite: bool,
    /// Keep a journal beside the results (`.NAME.resume.jsonl`) and continue from it after an
    /// interruption (`vog score --resume`).
    #[serde(default)]
    pub resume: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: default_out(),
            formats: default_formats(),
            overwrite: false,
            resume: false,
        }
    }
}

fn default_out() -> PathBuf {
    PathBuf::from("vog-results")
}
fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Csv, OutputFormat::Jsonl]
}

impl Config {
    /// Parses a configuration, naming the file and the offending key on error. Relative input
    /// paths in the file are taken relative to the file's directory (the output directory stays
    /// relative to the working directory).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config = Config::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        // Absolute, so that the manifest's paths still work from another directory (the audit
        // store reads a run's data from them).
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = parent.unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses configuration text (paths stay as written).
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    format!(
                        " (line {})",
                        text[..s.start.min(text.len())].matches('\n').count() + 1
                    )
                })
                .unwrap_or_default();
            Error::Config(format!("invalid configuration{at}: {}", e.message()))
        })?;
        if config.version != CONFIG_VERSION {
            return Err(Error::Config(format!(
                "`version = {}` is not supported; this vog reads version {CONFIG_VERSION}",
                config.version
            )));
        }
        Ok(config)
    }

    /// Makes relative paths relative to `base` (the configuration file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let d = &mut self.data;
        for p in [&mut d.path, &mut d.labels, &mut d.ids, &mut d.metadata]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        for s in self
            .checkpoints
            .paths
            .iter_mut()
            .chain(self.gradients.dirs.iter_mut())
        {
            if Path::new(s.as_str()).is_relative() {
                *s = base.join(s.as_str()).to_string_lossy().into_owned();
            }
        }
    }

    /// Checks values that parse but make no sense, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::Config(format!("`{field}`: {msg}")));
        let from_gradients = !self.gradients.dirs.is_empty();
        if from_gradients && !self.checkpoints.paths.is_empty() {
            return bad(
                "gradients.dirs",
                "give either checkpoints (scored through a backend) or stored gradients, not both"
                    .into(),
            );
        }
        if !from_gradients {
            if self.checkpoints.paths.is_empty() {
                return bad(
                    "checkpoints.paths",
                    "no checkpoints given (or use gradients.dirs)".into(),
                );
            }
            if self.data.path.is_none() {
                return bad("data.path", "no examples given".into());
            }
        }
        if let Some(shard) = self.shard {
            if shard.count == 0 || shard.index >= shard.count {
                return bad(
                    "shard",
                    format!("{}/{} is not a slice", shard.index, shard.count),
                );
            }
            if from_gradients {
                return bad(
                    "shard",
                    "sharding scores through a backend; stored gradients are not sharded".into(),
                );
            }
            if self.flag.top_percent.is_some()
                || self.flag.threshold.is_some()
                || self.flag.extremes_per_class > 0
            {
                return bad(
                    "flag",
                    "flagging needs the whole run's class statistics: score the shards without \
                     [flag], then `vog merge`"
                        .into(),
                );
            }
        }
        if self.scoring.el2n_checkpoint == 0 {
            return bad(
                "scoring.el2n_checkpoint",
                "positions start at 1 (the first checkpoint)".into(),
            );
        }
        if let Some(t) = self.scoring.second_target.explicit() {
            if from_gradients {
                return bad(
                    "scoring.second_target",
                    "needs a backend: stored gradients come with one target".into(),
                );
            }
            if t == self.scoring.target {
                return bad(
                    "scoring.second_target",
                    format!("`{}` is already the target", target_name(t)),
                );
            }
        }
        if self.backend.batch_size == Some(0) {
            return bad("backend.batch_size", "must be at least 1".into());
        }
        if !self.data.scale.is_finite() || self.data.scale == 0.0 {
            return bad(
                "data.scale",
                format!("{} is not a usable scale", self.data.scale),
            );
        }
        if let Some(std) = &self.data.std {
            if std.iter().any(|s| !s.is_finite() || *s == 0.0) {
                return bad("data.std", "every value must be finite and non-zero".into());
            }
            if let Some(mean) = &self.data.mean {
                if mean.len() != std.len() {
                    return bad(
                        "data.std",
                        format!("{} values but data.mean has {}", std.len(), mean.len()),
                    );
                }
            }
        }
        if let Some(shape) = &self.data.input_shape {
            if shape.is_empty() || shape.contains(&0) {
                return bad(
                    "data.input_shape",
                    format!("{shape:?} is not a valid shape"),
                );
            }
        }
        if let Some(f) = &self.data.format {
            if vog_data::Format::from_name(f).is_none() {
                return bad(
                    "data.format",
                    format!("unknown format `{f}`; use npy, npz, idx or csv"),
                );
            }
        }
        if self.scoring.windows.is_empty() {
            return bad("scoring.windows", "name at least one window".into());
        }
        match (self.flag.top_percent, self.flag.threshold) {
            (Some(_), Some(_)) => {
                return bad(
                    "flag",
                    "give either top_percent or threshold, not both".into(),
                );
            }
            (Some(p), None) if !(p > 0.0 && p <= 100.0) => {
                return bad("flag.top_percent", format!("{p} is not in (0, 100]"));
            }
            (None, Some(t)) if !t.is_finite() => {
                return bad("flag.threshold", format!("{t} is not a number"));
            }
            _ => {}
        }
        if (self.flag.top_percent.is_some() || self.flag.threshold.is_some())
            && !self.scoring.windows.contains(&self.flag.window)
        {
            return bad(
                "flag.window",
                format!(
                    "`{}` is not among scoring.windows {:?}",
                    self.flag.window, self.scoring.windows
                ),
            );
        }
        if self.output.formats.is_empty() {
            return bad("output.formats", "name at least one of csv, jsonl".into());
        }
        if from_gradients
            && matches!(
                self.scoring.labels,
                LabelMode::Predicted | LabelMode::PredictedEach
            )
        {
            return bad(
                "scoring.labels",
                "stored gradients come without logits, so there are no predicted labels; use \
                 `true` with data.labels, or `auto`"
                    .into(),
            );
        }
        Ok(())
    }

    /// The backend options as TOML text, as handed to the backend.
    pub fn backend_options_toml(&self) -> String {
        toml::to_string(&self.backend.options).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(
            "version = 1\n[data]\npath = \"x.npy\"\n[checkpoints]\npaths = [\"ck/*.safetensors\"]\n\
             [backend.options]\narch = \"mlp\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.backend.name, "candle");
        assert_eq!(c.scoring.windows, ["all", "early", "middle", "late"]);
        assert_eq!(c.backend_options_toml().trim(), "arch = \"mlp\"");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = Config::from_toml("version = 1\n[scoring]\ntarget = \"logit\"\nwindow = []\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown field `window`") && msg.contains("line 4"),
            "{msg}"
        );
        let err = Config::from_toml("version = 2\n").unwrap_err();
        assert!(err.to_string().contains("version = 2"), "{err}");
        let err = Config::from_toml("version = 1\n[scoring]\nlabels = \"truth\"\n").unwrap_err();
        assert!(err.to_string().contains("truth"), "{err}");
    }

    #[test]
    fn shards_cover_every_row_once() {
        assert_eq!(Shard::parse("3/8").unwrap(), Shard { index: 3, count: 8 });
        for bad in ["8/8", "1", "a/2", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        for n in [0usize, 1, 7, 10, 1001] {
            let mut next = 0;
            for index in 0..4 {
                let (a, b) = Shard { index, count: 4 }.rows(n);
                assert_eq!(a, next);
                next = b;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn validate_names_fields() {
        let mut c = Config::default();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("checkpoints.paths"));
        c.checkpoints.paths = vec!["a".into()];
        c.data.path = Some("x.npy".into());
        c.backend.batch_size = Some(0);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("backend.batch_size"));
        c.backend.batch_size = Some(8);
        c.gradients.dirs = vec!["g".into()];
        assert!(c.validate().unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut c = Config::from_toml(
            "version = 1\n[data]\npath = \"x.npy\"\n[checkpoints]\npaths = [\"ck/*\", \"/abs/c\"]\n",
        )
        .unwrap();
        c.resolve_paths(Path::new("/etc/vog"));
        assert_eq!(c.data.path.unwrap(), PathBuf::from("/etc/vog/x.npy"));
        assert_eq!(c.checkpoints.paths, ["/etc/vog/ck/*", "/abs/c"]);
        assert_eq!(c.output.dir, PathBuf::from("vog-results"));
    }
}
