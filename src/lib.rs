//! `vog`: find the examples a model finds hard, with Variance of Gradients — the command line.
//!
//! The `vog` binary is [`main_with`] over the process's arguments; the Python package runs the
//! same function in-process (`python -m vog`, the `vog` script its wheel installs), with the
//! backends it links in added to the registry.

pub mod backends;
mod cli;
mod progress;
mod score;
mod store_cmd;

use std::io::Write;
use std::process::ExitCode;

use std::ffi::OsString;

use clap::Parser;
pub use vog_plugin_host::BuiltIn;

/// Keeps freed buffers of up to 256 MiB in the heap instead of returning them to the kernel.
///
/// Backends allocate the same activation buffers (megabytes each) for every batch. glibc serves
/// blocks above its mmap threshold with fresh `mmap`s and returns them on free, so every batch
/// page-faults its activations back in: libtorch spent 30% of a CNN's time in the kernel that way
/// (0.6 s of system time in a 1.4 s run). Fixing the thresholds keeps those pages. The memory
/// held is bounded by the backends' working set, not by the dataset. Skipped when the user tunes
/// glibc's allocator through its environment variables.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_tuned = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if !user_tuned {
            // SAFETY: mallopt only changes allocator parameters; it is called before any other
            // thread exists, with documented parameter numbers and in-range values.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            }
        }
    }
}

/// Runs the command line on `args` (the first is the program name) and returns its exit status.
/// `built_ins` are backends linked into the calling program besides candle (the Python package
/// adds ONNX Runtime this way); the first call's list holds for the process.
///
/// Errors are printed to stderr as `error: …` with their causes, as the binary prints them; a
/// usage error or `--help` prints clap's text and returns its code instead of exiting.
pub fn main_with(args: impl IntoIterator<Item = OsString>, built_ins: Vec<BuiltIn>) -> u8 {
    backends::add_built_ins(built_ins);
    let args = match cli::Cli::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    match run(args) {
        Ok(code) => u8::from(code != ExitCode::SUCCESS),
        Err(err) => {
            // A closed pipe (`vog … | head`) is not an error worth reporting.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return 0;
            }
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            1
        }
    }
}

fn run(args: cli::Cli) -> anyhow::Result<ExitCode> {
    init_logging(args.verbose, args.quiet);
    match args.command {
        cli::Command::Score(a) => score::run(*a, args.quiet),
        cli::Command::Demo(a) => demo(a, args.quiet),
        cli::Command::Backends(a) => backends::run(a),
        cli::Command::OnnxGrad(a) => onnx_grad(a),
        cli::Command::Index(a) => store_cmd::run_index(a),
        cli::Command::Search(a) => store_cmd::run_search(a),
        cli::Command::Show(a) => store_cmd::run_show(a),
        cli::Command::Queue(a) => store_cmd::run_queue(a),
        cli::Command::Review(a) => store_cmd::run_review(a),
        cli::Command::Export(a) => store_cmd::run_export(a),
        cli::Command::Evaluate(a) => evaluate(a),
        cli::Command::Merge(a) => score::merge(a, args.quiet),
        cli::Command::Report(a) => report(a),
        cli::Command::Reproduce(a) => reproduce(a, args.quiet),
        cli::Command::Serve(a) => serve(a),
    }
}

/// `vog demo`.
fn demo(a: cli::DemoArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let options = vog_experiments::DemoOptions {
        out: a.out,
        seed: a.seed,
        epochs: a.epochs,
        overwrite: a.overwrite,
    };
    if quiet {
        vog_experiments::demo::run(&options, &mut std::io::sink())?;
    } else {
        vog_experiments::demo::run(&options, &mut std::io::stdout().lock())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vog reproduce`.
fn reproduce(a: cli::ReproduceArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let options = vog_experiments::ReproduceOptions {
        mnist: a.mnist,
        digits: a.digits,
        work: a.work,
        out: a.out,
        train: a.train,
        mlp_epochs: a.mlp_epochs,
        cnn_epochs: a.cnn_epochs,
        digits_epochs: a.digits_epochs,
        seeds: a.seeds,
    };
    let say = |msg: String| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    vog_experiments::reproduce::run(&options, &progress::Bar::new(quiet), &say)?;
    println!("results: {}", options.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `vog report`.
fn report(a: cli::ReportArgs) -> anyhow::Result<ExitCode> {
    vog_report::Report::open(&a.input, a.run.as_deref())?.write(a.per_class, &a.out)?;
    println!("report: {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `vog serve`.
fn serve(a: cli::ServeArgs) -> anyhow::Result<ExitCode> {
    use std::time::Duration;
    let access = match (a.token, &a.tokens) {
        (_, Some(file)) => vog_serve::Access::Team(vog_serve::read_tokens(file)?),
        (Some(t), None) => vog_serve::Access::Shared(t),
        (None, None) => vog_serve::Access::Open,
    };
    vog_serve::run(&vog_serve::ServeConfig {
        store: a.store.store,
        addr: a.addr,
        access,
        allow_hosts: a.allow_hosts,
        assets: a.assets,
        limits: vog_serve::Limits {
            header_timeout: Duration::from_secs(a.header_timeout),
            request_timeout: Duration::from_secs(a.request_timeout),
            max_connections: a.max_connections as usize,
        },
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `vog evaluate`.
fn evaluate(a: cli::EvaluateArgs) -> anyhow::Result<ExitCode> {
    use vog_engine::evaluate::{evaluate_results, BadFlag};
    let flag = match (a.bad_column, a.bad_ids) {
        (Some(c), _) => BadFlag::Column(c),
        (None, Some(f)) => BadFlag::Ids(f),
        (None, None) => unreachable!("clap requires one"),
    };
    let e = evaluate_results(&a.results, &flag, &a.k)?;
    let json = serde_json::to_string_pretty(&e)? + "\n";
    if let Some(out) = &a.out {
        std::fs::write(out, &json)
            .map_err(|err| anyhow::anyhow!("writing {}: {err}", out.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    match a.format {
        cli::EvalFormat::Json => stdout.write_all(json.as_bytes())?,
        cli::EvalFormat::Table => {
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            writeln!(
                stdout,
                "{} examples, {} bad ({}); chance: AUROC 0.500, AUPRC {:.3}",
                e.examples,
                e.bad,
                e.bad_source,
                e.bad as f64 / e.examples as f64
            )?;
            let ks: Vec<String> = e
                .scores
                .first()
                .map(|s| {
                    s.precision_at
                        .iter()
                        .map(|p| format!("P@{}", p.k))
                        .collect()
                })
                .unwrap_or_default();
            writeln!(
                stdout,
                "{:<28} {:>7} {:>6} {:>6} {:>7} {:>7} {}",
                "score",
                "harder",
                "n",
                "bad",
                "AUROC",
                "AUPRC",
                ks.iter().map(|k| format!("{k:>7}")).collect::<String>()
            )?;
            for s in &e.scores {
                writeln!(
                    stdout,
                    "{:<28} {:>7} {:>6} {:>6} {:>7} {:>7} {}",
                    s.score,
                    s.harder_when,
                    s.n,
                    s.bad,
                    fmt(s.auroc),
                    fmt(s.auprc),
                    s.precision_at
                        .iter()
                        .map(|p| format!("{:>7}", fmt(p.precision)))
                        .collect::<String>()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vog onnx-grad`.
fn onnx_grad(a: cli::OnnxGradArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let mut model =
        vog_onnx::decode_model(&bytes).with_context(|| format!("{}", a.model.display()))?;
    let base = a.model.parent().unwrap_or(std::path::Path::new("."));
    vog_onnx::graph::inline_external_data(&mut model, base)
        .with_context(|| format!("{}", a.model.display()))?;
    let spec = vog_onnx::GradSpec {
        input: a.input,
        output: a.output,
        wrt: a.wrt,
        target: match a.target {
            cli::TargetArg::Logit => vog_core::Target::Logit,
            cli::TargetArg::Probability => vog_core::Target::Probability,
        },
        // A graph written for other runtimes uses standard ONNX ops only.
        vog_ops: false,
    };
    let g = vog_onnx::gradient_model(&model, &spec)
        .with_context(|| format!("{}", a.model.display()))?;
    std::fs::write(&a.out, vog_onnx::encode_model(&g.model))
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{}: d {} / d {} in `{}` ({} reverse-pass nodes); inputs `{}`, `{}`; outputs `{}`, `{}`, `{}`",
        a.out.display(),
        g.output,
        g.wrt,
        g.gradient_output,
        g.backward_nodes,
        g.input,
        g.classes_input,
        g.output,
        g.classes_output,
        g.gradient_output
    );
    Ok(ExitCode::SUCCESS)
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
