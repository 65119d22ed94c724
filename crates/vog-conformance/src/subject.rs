//! The backend under test: how to create it, with which options, and what it should call itself.

use std::path::Path;
use std::sync::Arc;

use vog_core::{GradientBackend, Result};

/// Creates a backend from the TOML text of `[backend.options]`.
type Create = dyn Fn(&str) -> Result<Box<dyn GradientBackend>> + Send + Sync;

/// A backend under test: a constructor taking backend options, the options to test it with, and
/// the name it must report in [`BackendInfo::name`](vog_core::BackendInfo::name).
///
/// The constructor is called afresh by each check, and with other options by
/// [`check_errors`](crate::check_errors) (an unknown option must be refused).
///
/// ```
/// use vog_conformance::Subject;
/// # fn make(options: &str) -> vog_core::Result<Box<dyn vog_core::GradientBackend>> {
/// #     Err(vog_core::Error::Config(format!("no backend in this example ({options})")))
/// # }
///
/// // Any constructor taking the options. For a type implementing `vog_plugin::PluginBackend`:
/// // `Subject::in_process::<MyBackend>(options)`; for its plugin build:
/// // `Subject::plugin(&library, options)`.
/// let s = Subject::new("mine", "in-process", "threads = 1", make);
/// assert_eq!(s.label(), "mine (in-process)");
/// assert_eq!(s.with_options("").options(), "");
/// ```
#[derive(Clone)]
pub struct Subject {
    name: String,
    via: String,
    options: String,
    create: Arc<Create>,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("name", &self.name)
            .field("via", &self.via)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Subject {
    /// A backend created by `create`. `name` is what it must report as its name; `via` says how
    /// it is reached (`in-process`, `plugin`), for messages; `options` is the TOML text it is
    /// tested with.
    pub fn new(
        name: impl Into<String>,
        via: impl Into<String>,
        options: impl Into<String>,
        create: impl Fn(&str) -> Result<Box<dyn GradientBackend>> + Send + Sync + 'static,
    ) -> Subject {
        Subject {
            name: name.into(),
            via: via.into(),
            options: options.into(),
            create: Arc::new(create),
        }
    }

    /// A backend linked into the test, created as a plugin would create it:
    /// [`PluginBackend::create`](vog_plugin::PluginBackend::create), named by
    /// [`PluginBackend::describe`](vog_plugin::PluginBackend::describe).
    pub fn in_process<B: vog_plugin::PluginBackend>(options: impl Into<String>) -> Subject {
        Subject::new(B::describe().name, "in-process", options, |options| {
            Ok(Box::new(B::create(options)?))
        })
    }

    /// The backend of the plugin library at `library`, loaded through `vog_plugin_host` exactly
    /// as `vog` loads it. It must report the name its file carries (`libvog_backend_NAME.so`).
    ///
    /// # Panics
    ///
    /// When the file is not named like a plugin or does not load as one.
    pub fn plugin(library: &Path, options: impl Into<String>) -> Subject {
        let name = vog_plugin_host::name_from_file(library).unwrap_or_else(|| {
            panic!(
                "vog-conformance: {} is not named like a plugin (libvog_backend_NAME.so)",
                library.display()
            )
        });
        let plugin = vog_plugin_host::load(library)
            .unwrap_or_else(|e| panic!("vog-conformance: loading the plugin: {e}"));
        let file = library
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        Subject::new(name, format!("plugin {file}"), options, move |options| {
            Ok(Box::new(plugin.create(options)?))
        })
    }

    /// The same constructor with other options.
    pub fn with_options(&self, options: impl Into<String>) -> Subject {
        Subject {
            options: options.into(),
            ..self.clone()
        }
    }

    /// The name the backend must report.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the backend is reached (`in-process`, `plugin libvog_backend_NAME.so`).
    pub fn via(&self) -> &str {
        &self.via
    }

    /// The options it is tested with.
    pub fn options(&self) -> &str {
        &self.options
    }

    /// `name (via)`, as failure messages show the subject.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.via)
    }

    /// Creates the backend with other options; errors are returned, not checked.
    pub fn try_create(&self, options: &str) -> Result<Box<dyn GradientBackend>> {
        (self.create)(options)
    }

    /// Creates the backend with its options; `context` (a check's name, a test's) starts the
    /// panic message.
    ///
    /// # Panics
    ///
    /// When creation fails or the backend reports another name than [`Subject::name`].
    pub fn backend(&self, context: &str) -> Box<dyn GradientBackend> {
        let b = self.try_create(&self.options).unwrap_or_else(|e| {
            panic!(
                "{context}: {}: creating the backend with options `{}`: {e}",
                self.label(),
                self.options
            )
        });
        let info = b.info();
        assert_eq!(
            info.name,
            self.name,
            "{context}: {}: the backend reports the name `{}`",
            self.label(),
            info.name
        );
        b
    }
}
