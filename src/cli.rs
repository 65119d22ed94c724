//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Find the examples a model finds hard: Variance of Gradients (VoG) across training checkpoints.
#[derive(Debug, Parser)]
#[command(name = "vog", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score every example of a dataset across training checkpoints (or stored gradients).
    Score(Box<ScoreArgs>),
    /// The paper's toy experiment, offline: two Gaussian clusters, an MLP trained with candle.
    Demo(DemoArgs),
    /// List the backends found (built in and plugins), or check one.
    Backends(BackendsArgs),
    /// Write the input-gradient graph vog builds for an ONNX model, for inspection.
    OnnxGrad(OnnxGradArgs),
}

#[derive(Debug, Args)]
pub struct OnnxGradArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// Where to write the extended model.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Graph input holding the examples (when the graph has several).
    #[arg(long)]
    pub input: Option<String>,
    /// Tensor holding the logits (default: the graph's only output).
    #[arg(long)]
    pub output: Option<String>,
    /// Differentiate with respect to this tensor instead of the input.
    #[arg(long)]
    pub wrt: Option<String>,
    /// Differentiate the logit or the softmax probability.
    #[arg(long, value_enum, default_value = "logit")]
    pub target: TargetArg,
}

#[derive(Debug, Args)]
pub struct BackendsArgs {
    /// Configuration file whose `[plugins] dirs` (and `[backend.options]`, for `check`) apply.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<BackendsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum BackendsCommand {
    /// Load a backend (name or plugin path), validate options, and run its self-test.
    Check {
        /// Backend name or plugin path.
        name: String,
        /// Backend options as TOML text (default: the configuration's `[backend.options]`).
        #[arg(long)]
        options: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LabelsArg {
    Auto,
    True,
    Predicted,
    PredictedEach,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TargetArg {
    Logit,
    Probability,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelsArg {
    Mean,
    None,
}

/// Flags override the configuration file; without a file they describe the whole run.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Configuration file (see config/*.toml).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Checkpoint files, directories or glob patterns (ordered by the numbers in their names).
    #[arg(long, num_args = 1..)]
    pub checkpoints: Vec<String>,
    /// Stored-gradient directories, one per checkpoint, instead of checkpoints.
    #[arg(long, num_args = 1..)]
    pub gradients: Vec<String>,
    /// Examples: .npy, .npz, IDX (optionally .gz) or CSV.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Labels file (.npy, .npz, IDX, CSV, .txt).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Reshape each example, e.g. 1,28,28.
    #[arg(long, value_delimiter = ',')]
    pub input_shape: Option<Vec<usize>>,
    /// Which label's score to differentiate.
    #[arg(long = "labels-mode", value_enum)]
    pub labels_mode: Option<LabelsArg>,
    /// Differentiate the pre-softmax logit (the paper) or the softmax probability.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// Channel reduction for [C, H, W] examples.
    #[arg(long, value_enum)]
    pub channels: Option<ChannelsArg>,
    /// Windows to score (all, early, middle, late, or names from scoring.ranges).
    #[arg(long, value_delimiter = ',')]
    pub windows: Option<Vec<String>>,
    /// Backend: built-in name (candle), plugin name (looked up as libvog_backend_NAME.so), or
    /// a path to a plugin library.
    #[arg(long)]
    pub backend: Option<String>,
    /// Examples per forward/backward pass.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Split name recorded with the results.
    #[arg(long)]
    pub split: Option<String>,
    /// Results directory.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Replace an existing results directory.
    #[arg(long)]
    pub overwrite: bool,
    /// How many of the hardest examples to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where checkpoints, data, results and the plot go.
    #[arg(short, long, default_value = "vog-demo")]
    pub out: PathBuf,
    /// Seed for data, initialisation and shuffling.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Training epochs (one checkpoint each).
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// Replace an existing demo directory.
    #[arg(long)]
    pub overwrite: bool,
}
