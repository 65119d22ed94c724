//! Choosing a backend: built in by name, or a plugin by name or path; `vog backends`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use vog_backend_candle::CandleBackend;
use vog_core::{BackendInfo, GradientBackend};
use vog_plugin::PluginBackend;
use vog_plugin_host::{Plugin, PluginError};

use crate::cli::{BackendsArgs, BackendsCommand};

/// A backend linked into this binary, seen through the same entry points a plugin exports.
#[derive(Clone, Copy)]
pub struct BuiltIn {
    describe: fn() -> BackendInfo,
    create: fn(&str) -> vog_core::Result<Box<dyn GradientBackend>>,
    self_test: fn() -> vog_core::Result<String>,
}

fn built_in<B: PluginBackend>() -> BuiltIn {
    BuiltIn {
        describe: B::describe,
        create: |options| Ok(Box::new(B::create(options)?)),
        self_test: B::self_test,
    }
}

/// The backends built into this binary.
fn built_ins() -> Vec<BuiltIn> {
    vec![built_in::<CandleBackend>()]
}

/// Where a backend comes from.
pub enum Source {
    /// Linked into this binary.
    BuiltIn(BuiltIn),
    /// A plugin library.
    Plugin(Arc<Plugin>),
}

impl Source {
    /// The plugin file, for plugins.
    pub fn library(&self) -> Option<PathBuf> {
        match self {
            Source::BuiltIn(_) => None,
            Source::Plugin(p) => Some(p.path().to_path_buf()),
        }
    }

    fn info(&self) -> BackendInfo {
        match self {
            Source::BuiltIn(b) => (b.describe)(),
            Source::Plugin(p) => p.info().clone(),
        }
    }

    fn abi(&self) -> String {
        match self {
            Source::BuiltIn(_) => vog_plugin::abi_string(vog_plugin::ABI_VERSION),
            Source::Plugin(p) => p.abi_string(),
        }
    }

    /// Creates the backend with its options (the TOML text of `[backend.options]`).
    pub fn create(&self, options: &str) -> Result<Box<dyn GradientBackend>> {
        Ok(match self {
            Source::BuiltIn(b) => (b.create)(options)?,
            Source::Plugin(p) => Box::new(p.create(options)?),
        })
    }

    fn self_test(&self) -> vog_core::Result<String> {
        match self {
            Source::BuiltIn(b) => (b.self_test)(),
            Source::Plugin(p) => p.self_test(),
        }
    }
}

/// Resolves `--backend`: a path loads that plugin; a built-in name uses the linked-in backend;
/// any other name is looked up as `libvog_backend_NAME.so` in the plugin directories.
pub fn resolve(spec: &str, config_dirs: &[PathBuf]) -> Result<Source> {
    if vog_plugin_host::looks_like_path(spec) {
        return Ok(Source::Plugin(vog_plugin_host::load(Path::new(spec))?));
    }
    if let Some(b) = built_ins()
        .into_iter()
        .find(|b| (b.describe)().name == spec)
    {
        return Ok(Source::BuiltIn(b));
    }
    let dirs = vog_plugin_host::search_dirs(config_dirs);
    let path = vog_plugin_host::find(spec, &dirs).map_err(|e| match e {
        PluginError::NotFound { .. } => anyhow::anyhow!(
            "{e}; built-in backends: {}. Put the plugin in one of those directories, set \
             VOG_PLUGIN_PATH or [plugins] dirs, or pass --backend PATH",
            built_in_names().join(", ")
        ),
        other => other.into(),
    })?;
    Ok(Source::Plugin(vog_plugin_host::load(&path)?))
}

fn built_in_names() -> Vec<String> {
    built_ins().iter().map(|b| (b.describe)().name).collect()
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
    for b in built_ins() {
        let s = Source::BuiltIn(b);
        row(out, &s.info(), &s.abi(), "built in")?;
    }
    let dirs = vog_plugin_host::search_dirs(config_dirs);
    let mut broken = Vec::new();
    for path in vog_plugin_host::discover(&dirs) {
        match vog_plugin_host::load(&path) {
            Ok(p) => row(
                out,
                p.info(),
                &p.abi_string(),
                &p.path().display().to_string(),
            )?,
            Err(e) => broken.push(e),
        }
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
    let source = resolve(name, &dirs)?;
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
    let source = resolve(&config.backend.name, &config.plugins.dirs)?;
    let backend = source.create(&config.backend_options_toml())?;
    Ok((backend, source.library()))
}
