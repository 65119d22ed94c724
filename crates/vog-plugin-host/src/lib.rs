//! Loads **vog** backend plugins at run time and presents each as a
//! [`GradientBackend`](vog_core::GradientBackend), so the engine cannot tell an in-process backend
//! from a plugin.
//!
//! ```no_run
//! use vog_core::GradientBackend;
//!
//! let dirs = vog_plugin_host::search_dirs(&[]);
//! let path = vog_plugin_host::find("onnx", &dirs)?;
//! let plugin = vog_plugin_host::load(&path)?;
//! let backend = plugin.create("")?;
//! println!("{} {}", backend.info().name, plugin.abi_string());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Loading checks, in order: the file opens as a shared library; it exports
//! `vog_plugin_abi_version`; that version's major equals this host's; it exports
//! `vog_plugin_vtable`; the table is as large as this host needs and agrees on the version.
//! Each failure is a [`PluginError`] naming the file. Loaded libraries are never unloaded, and a
//! library loaded twice (by any path to the same file) is the same [`Plugin`].

#![deny(missing_docs)]

mod discover;
mod plugin;
mod registry;

pub use discover::{
    discover, find, library_file_name, looks_like_path, name_from_file, search_dirs,
    PLUGIN_PATH_ENV,
};
pub use plugin::{load, ExternBackend, Plugin};
pub use registry::{BuiltIn, Registry, Source};

use std::path::PathBuf;

/// Why a plugin could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin file for a backend name in any search directory.
    #[error("no plugin for backend `{name}`: looked for {file} in {searched}")]
    NotFound {
        /// The backend name asked for.
        name: String,
        /// The file name looked for.
        file: String,
        /// The directories searched, in order.
        searched: String,
    },
    /// A backend name that is neither built in nor a plugin in any search directory.
    #[error(
        "{not_found}; built-in backends: {built_ins}. Put the plugin in one of those directories, \
         set VOG_PLUGIN_PATH or [plugins] dirs, or pass --backend PATH"
    )]
    Unknown {
        /// The failed search.
        not_found: Box<PluginError>,
        /// The built-in backends' names.
        built_ins: String,
    },
    /// The file is missing or is not a loadable shared library.
    #[error("plugin {path}: cannot load the library: {message}")]
    Open {
        /// The plugin file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The library lacks a required symbol.
    #[error("plugin {path}: missing symbol `{symbol}`; {hint}")]
    MissingSymbol {
        /// The plugin file.
        path: PathBuf,
        /// The symbol.
        symbol: &'static str,
        /// What that means.
        hint: &'static str,
    },
    /// The plugin was built for another ABI major version.
    #[error("plugin {path}: built for plugin ABI {plugin}, but this vog speaks ABI {host}; rebuild the plugin against vog-plugin {host_major}.x")]
    AbiMismatch {
        /// The plugin file.
        path: PathBuf,
        /// The plugin's ABI version.
        plugin: String,
        /// The host's ABI version.
        host: String,
        /// The host's ABI major.
        host_major: u32,
    },
    /// The function table is unusable.
    #[error("plugin {path}: invalid function table: {message}")]
    BadTable {
        /// The plugin file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A call into the plugin failed during loading (`init`, `info`).
    #[error("plugin {path}: `{function}` failed")]
    Call {
        /// The plugin file.
        path: PathBuf,
        /// The function.
        function: &'static str,
        /// The error it reported.
        #[source]
        source: vog_core::Error,
    },
}
