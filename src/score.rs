//! `vog score`.

use std::process::ExitCode;

use std::io::Write;

use anyhow::{Context, Result};
use vog_core::{ChannelAxis, ChannelReduce, Target};
use vog_engine::config::OutputFormat;
use vog_engine::{check_output_dir, score_to_dir, Config, LabelMode, Written};

use crate::cli::{ChannelAxisArg, ChannelsArg, LabelsArg, ScoreArgs, TargetArg};
use crate::progress::Bar;

/// Builds the run configuration: the file (if any), then the flags on top.
pub fn config_from_args(a: &ScoreArgs) -> Result<Config> {
    let mut c = match &a.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !a.checkpoints.is_empty() {
        c.checkpoints.paths = a.checkpoints.clone();
    }
    if !a.gradients.is_empty() {
        c.gradients.dirs = a.gradients.clone();
    }
    if let Some(p) = &a.data {
        c.data.path = Some(p.clone());
    }
    if let Some(p) = &a.labels {
        c.data.labels = Some(p.clone());
    }
    if let Some(s) = &a.input_shape {
        c.data.input_shape = Some(s.clone());
    }
    if let Some(l) = a.labels_mode {
        c.scoring.labels = match l {
            LabelsArg::Auto => LabelMode::Auto,
            LabelsArg::True => LabelMode::True,
            LabelsArg::Predicted => LabelMode::Predicted,
            LabelsArg::PredictedEach => LabelMode::PredictedEach,
        };
    }
    if let Some(t) = a.target {
        c.scoring.target = match t {
            TargetArg::Logit => Target::Logit,
            TargetArg::Probability => Target::Probability,
        };
    }
    if let Some(ch) = a.channels {
        c.scoring.channels = match ch {
            ChannelsArg::Mean => ChannelReduce::Mean,
            ChannelsArg::None => ChannelReduce::None,
        };
    }
    if let Some(axis) = a.channel_axis {
        c.scoring.channel_axis = match axis {
            ChannelAxisArg::Auto => ChannelAxis::Auto,
            ChannelAxisArg::First => ChannelAxis::First,
            ChannelAxisArg::Last => ChannelAxis::Last,
            ChannelAxisArg::None => ChannelAxis::None,
        };
    }
    if let Some(w) = &a.windows {
        c.scoring.windows = w.clone();
    }
    if let Some(b) = &a.backend {
        c.backend.name = b.clone();
    }
    match a.batch_size {
        Some(crate::cli::BatchSize::Auto) => c.backend.batch_size = None,
        Some(crate::cli::BatchSize::Fixed(b)) => c.backend.batch_size = Some(b),
        None => {}
    }
    if let Some(m) = a.memory {
        c.backend.memory = Some(m);
    }
    if let Some(s) = &a.split {
        c.data.split = Some(s.clone());
    }
    if let Some(o) = &a.out {
        c.output.dir = o.clone();
    }
    if a.overwrite {
        c.output.overwrite = true;
    }
    if a.resume {
        c.output.resume = true;
    }
    c.shard = match &a.shard {
        Some(s) => Some(vog_engine::Shard::parse(s)?),
        None => shard_from_env(|k| std::env::var(k).ok())?.or(c.shard),
    };
    if c.shard.is_some() && a.index.store.is_some() {
        anyhow::bail!(
            "--store with a shard: index the run after `vog merge` (it takes --store too)"
        );
    }
    c.validate()?;
    Ok(c)
}

/// The shard a scheduler assigned: a SLURM job array (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`
/// of `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of
/// `VOG_SHARD_COUNT`, which the Job sets to its `completions`).
pub fn shard_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<vog_engine::Shard>> {
    let num = |k: &str| -> Result<Option<usize>> {
        var(k)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("{k}={v} is not a whole number"))
            })
            .transpose()
    };
    let shard = |index: usize, count: usize, from: &str| -> Result<Option<vog_engine::Shard>> {
        vog_engine::Shard::parse(&format!("{index}/{count}"))
            .map(Some)
            .with_context(|| format!("the shard from {from}"))
    };
    if let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).with_context(|| {
            format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
        })?;
        return shard(index, count, "SLURM_ARRAY_TASK_ID");
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let count = num("VOG_SHARD_COUNT")?.context(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but VOG_SHARD_COUNT is not: \
             set it to the Job's completions, or pass --shard I/N",
        )?;
        return shard(index, count, "JOB_COMPLETION_INDEX");
    }
    Ok(None)
}

/// `vog merge`.
pub fn merge(a: crate::cli::MergeArgs, quiet: bool) -> Result<ExitCode> {
    let out = vog_engine::config::OutputConfig {
        dir: a.out.clone(),
        overwrite: a.overwrite,
        ..Default::default()
    };
    let m = vog_engine::merge::merge_shards(&a.shards, &out)?;
    if !quiet {
        println!(
            "merged {} shards, {} examples: {}",
            m.shards,
            m.examples,
            m.dir.display()
        );
    }
    index_into(&a.index, &m.dir, quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// `--store`: indexes a results directory just written, and says so.
fn index_into(a: &crate::cli::IndexInto, dir: &std::path::Path, quiet: bool) -> Result<()> {
    if let Some(store) = &a.store {
        let s = crate::store_cmd::index(dir, store, a.run.clone(), a.class_names.as_deref())
            .with_context(|| format!("indexing into {}", store.display()))?;
        if !quiet {
            println!(
                "indexed run `{}` ({} examples) into {}",
                s.run,
                s.examples,
                store.display()
            );
        }
    }
    Ok(())
}

pub fn run(a: ScoreArgs, quiet: bool) -> Result<ExitCode> {
    let mut config = config_from_args(&a)?;
    let spill = vog_engine::spill::spill_path(&config.output);
    if config.output.resume && spill.is_file() && config.output.dir.is_dir() {
        // Killed between writing the results (an atomic rename) and removing the spill file.
        vog_engine::spill::remove(&config.output)?;
        if !quiet {
            println!(
                "results: {} (already complete)",
                config.output.dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    check_output_dir(&config.output)?;
    if a.index.store.is_some() && !config.output.formats.contains(&OutputFormat::Jsonl) {
        config.output.formats.push(OutputFormat::Jsonl); // the store indexes scores.jsonl
    }
    let (backend, library) = if config.gradients.dirs.is_empty() {
        let (b, library) = crate::backends::create(&config)
            .with_context(|| format!("backend `{}`", config.backend.name))?;
        (Some(b), library)
    } else {
        (None, None)
    };
    let bar = Bar::new(quiet);
    let top = if quiet { 0 } else { a.top };
    let written = score_to_dir(&config, backend.as_deref(), &bar, top, library)?;
    index_into(&a.index, &written.dir, quiet)?;
    if !quiet {
        print_summary(&mut std::io::stdout().lock(), &written, a.top, &config)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(
    out: &mut impl Write,
    r: &Written,
    top: usize,
    config: &Config,
) -> std::io::Result<()> {
    let m = &r.manifest;
    let dir = &r.dir;
    writeln!(
        out,
        "scored {} examples over {} checkpoints in {:.1} s (labels: {}, target: {}) → {}",
        r.examples,
        m.checkpoints.len(),
        m.timings.load_s + m.timings.hash_s + m.timings.score_s,
        m.scoring.labels.map_or("none", |l| l.as_str()),
        m.scoring.target.map_or("stored gradients", |t| t.as_str()),
        dir.display()
    )?;
    for w in &m.warnings {
        writeln!(out, "warning: {w}")?;
    }
    if top == 0 || r.top.is_empty() {
        return Ok(());
    }
    // Ranked by the normalized score of the first window when there are labels, else the raw one.
    let normalized = r
        .top
        .iter()
        .any(|e| e.vog_norm.first().is_some_and(|v| v.is_some()));
    let w = &r.windows[0].name;
    writeln!(
        out,
        "\n{} hardest by {} VoG ({w} window):",
        r.top.len(),
        if normalized {
            "class-normalized"
        } else {
            "raw"
        }
    )?;
    writeln!(
        out,
        "{:>6}  {:<16} {:>5} {:>5} {:>10} {:>10}",
        "row", "id", "label", "pred", "vog", "vog_norm"
    )?;
    for e in &r.top {
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        writeln!(
            out,
            "{:>6}  {:<16} {:>5} {:>5} {:>10.4e} {:>10}",
            e.row,
            e.id,
            opt(e.label_used),
            opt(e.predicted),
            e.vog[0],
            e.vog_norm[0].map_or("-".into(), |v| format!("{v:.3}"))
        )?;
    }
    let files: Vec<&str> = config
        .output
        .formats
        .iter()
        .map(|f| match f {
            OutputFormat::Csv => "scores.csv",
            OutputFormat::Jsonl => "scores.jsonl",
        })
        .collect();
    writeln!(
        out,
        "\nfull results: {} and run.json in {}",
        files.join(", "),
        dir.display()
    )?;

    Ok(())
}
