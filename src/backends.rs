//! `vog backends`: the backends this binary offers (built in, or plugins by name or path), and
//! creating the one a configuration asks for. The registry itself is
//! [`vog_plugin_host::Registry`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use vog_backend_candle::CandleBackend;
use vog_core::{BackendInfo, GradientBackend};
use vog_plugin_host::{BuiltIn, Registry, Source};

use crate::cli::{BackendsArgs, BackendsCommand};

/// Backends the calling program links in besides candle ([`crate::main_with`]'s argument).
static EXTRA_BUILT_INS: std::sync::OnceLock<Vec<BuiltIn>> = std::sync::OnceLock::new();

/// Adds `built_ins` to every registry of this process; only the first call's list is kept.
pub(crate) fn add_built_ins(built_ins: Vec<BuiltIn>) {
    let _ = EXTRA_BUILT_INS.set(built_ins);
}

/// The backends of this program: candle built in (and whatever the program added), plugins in the
/// default directories and `dirs`.
pub fn registry(dirs: Vec<PathBuf>) -> Registry {
    registry_with(dirs, EXTRA_BUILT_INS.get().cloned().unwrap_or_default())
}

/// The registry of a program that links `built_ins` besides candle.
pub fn registry_with(dirs: Vec<PathBuf>, built_ins: Vec<BuiltIn>) -> Registry {
    let mut all = vec![BuiltIn::of::<CandleBackend>()];
    all.extend(built_ins);
    Registry::new(all).with_dirs(dirs)
}

fn config_dirs(config: Option<&Path>) -> Result<Vec<PathBuf>> {
    Ok(match config {
        Some(p) => vog_engine::Config::from_file(p)?.plugins.dirs,
        None => Vec::new(),
    })
}

/// `vog backends` and `vog backends check NAME`.
pub fn run(args: BackendsArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match args.command {
        None => list(&mut out, &config_dirs(args.config.as_deref())?),
        Some(BackendsCommand::Check { name, options }) => {
            check(&mut out, &name, options.as_deref(), args.config.as_deref())
        }
    }
}

fn list(out: &mut impl Write, config_dirs: &[PathBuf]) -> Result<ExitCode> {
    let row = |out: &mut dyn Write, i: &BackendInfo, abi: &str, source: &str| {
        writeln!(
            out,
            "{:<10} {:<9} {:<5} {:<18} {:<10} {}",
            i.name,
            i.version,
            abi,
            i.extensions.join(","),
            i.devices.join(","),
            source
        )
    };
    writeln!(
        out,
        "{:<10} {:<9} {:<5} {:<18} {:<10} source",
        "name", "version", "abi", "loads", "devices"
    )?;
    let registry = registry(config_dirs.to_vec());
    for s in registry.built_ins() {
        row(out, &s.info(), &s.abi(), "built in")?;
    }
    let dirs = registry.search_dirs();
    let (plugins, broken) = registry.plugins();
    for p in plugins {
        row(
            out,
            p.info(),
            &p.abi_string(),
            &p.path().display().to_string(),
        )?;
    }
    for e in &broken {
        writeln!(out, "unusable: {e}")?;
    }
    writeln!(
        out,
        "\nplugin directories searched: {}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

fn check(
    out: &mut impl Write,
    name: &str,
    options: Option<&str>,
    config: Option<&Path>,
) -> Result<ExitCode> {
    let cfg = config.map(vog_engine::Config::from_file).transpose()?;
    let dirs = cfg
        .as_ref()
        .map(|c| c.plugins.dirs.clone())
        .unwrap_or_default();
    let source: Source = registry(dirs).resolve(name)?;
    let info = source.info();
    let place = source
        .library()
        .map_or("built in".to_string(), |p| p.display().to_string());
    writeln!(
        out,
        "{} {} (plugin ABI {}, {place})",
        info.name,
        info.version,
        source.abi()
    )?;
    writeln!(
        out,
        "loads: {}; devices: {}",
        info.extensions.join(", "),
        info.devices.join(", ")
    )?;
    let options = match (options, &cfg) {
        (Some(o), _) => Some(o.to_string()),
        (None, Some(c)) if !c.backend.options.is_empty() => Some(c.backend_options_toml()),
        _ => None,
    };
    if let Some(o) = &options {
        source.create(o).context("options rejected")?;
        writeln!(out, "options: accepted")?;
    }
    let report = source
        .self_test()
        .with_context(|| format!("self-test of `{}` failed", info.name))?;
    writeln!(out, "self-test: ok: {report}")?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the backend a configuration asks for, and says where it came from.
pub fn create(config: &vog_engine::Config) -> Result<(Box<dyn GradientBackend>, Option<PathBuf>)> {
    let source = registry(config.plugins.dirs.clone()).resolve(&config.backend.name)?;
    let backend = source.create(&config.backend_options_toml())?;
    Ok((backend, source.library()))
}
