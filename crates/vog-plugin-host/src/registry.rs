//! The backends a program offers: those linked into it ([`BuiltIn`]) and plugins, found by name
//! in the search directories or loaded from a path, behind one [`Source`].
//!
//! ```no_run
//! use vog_plugin_host::{BuiltIn, Registry};
//! # fn linked() -> Vec<BuiltIn> { Vec::new() }
//!
//! let registry = Registry::new(linked()); // e.g. vec![BuiltIn::of::<CandleBackend>()]
//! let source = registry.resolve("onnx")?; // built in, or libvog_backend_onnx.so
//! let backend = source.create("")?;
//! println!("{} from {:?}", source.info().name, source.library());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vog_core::{BackendInfo, GradientBackend};
use vog_plugin::PluginBackend;

use crate::{Plugin, PluginError};

/// A backend linked into the program, seen through the same entry points a plugin exports.
#[derive(Clone, Copy)]
pub struct BuiltIn {
    describe: fn() -> BackendInfo,
    create: fn(&str) -> vog_core::Result<Box<dyn GradientBackend>>,
    self_test: fn() -> vog_core::Result<String>,
}

impl BuiltIn {
    /// The built-in of backend `B` (the type a plugin would export with `export_backend!`).
    pub fn of<B: PluginBackend>() -> BuiltIn {
        BuiltIn {
            describe: B::describe,
            create: |options| Ok(Box::new(B::create(options)?)),
            self_test: B::self_test,
        }
    }
}

impl std::fmt::Debug for BuiltIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BuiltIn")
            .field(&(self.describe)().name)
            .finish()
    }
}

/// Where a backend comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Linked into the program.
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

    /// What the backend says about itself.
    pub fn info(&self) -> BackendInfo {
        match self {
            Source::BuiltIn(b) => (b.describe)(),
            Source::Plugin(p) => p.info().clone(),
        }
    }

    /// The plugin ABI it speaks (`1.0`): the host's own for a built-in.
    pub fn abi(&self) -> String {
        match self {
            Source::BuiltIn(_) => vog_plugin::abi_string(vog_plugin::ABI_VERSION),
            Source::Plugin(p) => p.abi_string(),
        }
    }

    /// Creates the backend with its options (the TOML text of `[backend.options]`).
    pub fn create(&self, options: &str) -> vog_core::Result<Box<dyn GradientBackend>> {
        Ok(match self {
            Source::BuiltIn(b) => (b.create)(options)?,
            Source::Plugin(p) => Box::new(p.create(options)?),
        })
    }

    /// Runs the backend's self-test: a short report, or why it failed.
    pub fn self_test(&self) -> vog_core::Result<String> {
        match self {
            Source::BuiltIn(b) => (b.self_test)(),
            Source::Plugin(p) => p.self_test(),
        }
    }
}

/// The backends a program offers: its built-ins, then plugins in the search directories
/// ([`search_dirs`](crate::search_dirs) of the configured ones).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    built_ins: Vec<BuiltIn>,
    config_dirs: Vec<PathBuf>,
}

impl Registry {
    /// A registry of `built_ins` and the default plugin directories.
    pub fn new(built_ins: Vec<BuiltIn>) -> Registry {
        Registry {
            built_ins,
            config_dirs: Vec::new(),
        }
    }

    /// Also searches `dirs` (a configuration's `[plugins] dirs`) for plugins, first.
    pub fn with_dirs(mut self, dirs: Vec<PathBuf>) -> Registry {
        self.config_dirs = dirs;
        self
    }

    /// The built-in backends.
    pub fn built_ins(&self) -> impl Iterator<Item = Source> + '_ {
        self.built_ins.iter().map(|b| Source::BuiltIn(*b))
    }

    /// The names of the built-in backends.
    pub fn built_in_names(&self) -> Vec<String> {
        self.built_ins.iter().map(|b| (b.describe)().name).collect()
    }

    /// The directories searched for plugins, in order.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        crate::search_dirs(&self.config_dirs)
    }

    /// Every plugin in the search directories: those that load, and why the others do not.
    pub fn plugins(&self) -> (Vec<Arc<Plugin>>, Vec<PluginError>) {
        let (mut loaded, mut broken) = (Vec::new(), Vec::new());
        for path in crate::discover(&self.search_dirs()) {
            match crate::load(&path) {
                Ok(p) => loaded.push(p),
                Err(e) => broken.push(e),
            }
        }
        (loaded, broken)
    }

    /// Resolves `--backend`: a path loads that plugin; a built-in name uses the linked-in
    /// backend; any other name is looked up as `libvog_backend_NAME.so` in the search
    /// directories.
    pub fn resolve(&self, spec: &str) -> Result<Source, PluginError> {
        if crate::looks_like_path(spec) {
            return Ok(Source::Plugin(crate::load(Path::new(spec))?));
        }
        if let Some(b) = self.built_ins.iter().find(|b| (b.describe)().name == spec) {
            return Ok(Source::BuiltIn(*b));
        }
        let path = crate::find(spec, &self.search_dirs()).map_err(|e| match e {
            e @ PluginError::NotFound { .. } => PluginError::Unknown {
                not_found: Box::new(e),
                built_ins: self.built_in_names().join(", "),
            },
            other => other,
        })?;
        Ok(Source::Plugin(crate::load(&path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_lists_the_built_ins_and_the_ways_out() {
        let r = Registry::new(Vec::new()).with_dirs(vec![PathBuf::from("/nonexistent/vog")]);
        assert!(r.built_in_names().is_empty());
        let e = r.resolve("no-such-backend").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("no plugin for backend `no-such-backend`"),
            "{text}"
        );
        assert!(text.contains("/nonexistent/vog"), "{text}");
        assert!(text.contains("VOG_PLUGIN_PATH"), "{text}");
        let e = r.resolve("./missing/libvog_backend_x.so").unwrap_err();
        assert!(matches!(e, PluginError::Open { .. }), "{e}");
    }
}
