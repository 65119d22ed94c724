//! Building plugin libraries from a test, so that the library a test loads is always current.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A `cargo build` of plugin libraries, run once per test process and per set of arguments,
/// into `<target>/plugin-tests` beside the test's own build (the test binary lives in
/// `<target>/<profile>/deps`). A separate target directory means that the plugin build (with
/// its own features, such as candle's `plugin`) never invalidates the test build, and cargo
/// rebuilds the library whenever its sources change: `cargo test` alone does not rebuild a
/// package's `cdylib` for its own tests.
///
/// ```no_run
/// use vog_conformance::{PluginBuild, Subject};
///
/// let library = PluginBuild::new(env!("CARGO_MANIFEST_DIR"))
///     .package("vog-backend-linear")
///     .library("linear"); // .../plugin-tests/debug/libvog_backend_linear.so
/// let subject = Subject::plugin(&library, "temperature = 1.5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginBuild {
    workspace: PathBuf,
    args: Vec<String>,
}

impl PluginBuild {
    /// A build run in `dir` (any directory of the workspace; `env!("CARGO_MANIFEST_DIR")`).
    pub fn new(dir: impl Into<PathBuf>) -> PluginBuild {
        PluginBuild {
            workspace: dir.into(),
            args: Vec::new(),
        }
    }

    /// Builds package `name` (`-p name`).
    #[must_use]
    pub fn package(mut self, name: &str) -> PluginBuild {
        self.args.extend(["-p".to_string(), name.to_string()]);
        self
    }

    /// Builds several packages (`-p name` each).
    #[must_use]
    pub fn packages<'a>(self, names: impl IntoIterator<Item = &'a str>) -> PluginBuild {
        names.into_iter().fold(self, PluginBuild::package)
    }

    /// Enables features (`--features`, e.g. `vog-backend-candle/plugin`).
    #[must_use]
    pub fn features(mut self, features: &str) -> PluginBuild {
        self.args
            .extend(["--features".to_string(), features.to_string()]);
        self
    }

    /// Every plugin library the build produced, by backend name (`candle` for
    /// `libvog_backend_candle.so`). Builds on the first call with these arguments in this
    /// process.
    ///
    /// # Panics
    ///
    /// When cargo cannot run or the build fails (its diagnostics go to the test's stderr).
    pub fn libraries(&self) -> HashMap<String, PathBuf> {
        static BUILT: OnceLock<Mutex<HashMap<PluginBuild, HashMap<String, PathBuf>>>> =
            OnceLock::new();
        let mut built = BUILT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        built
            .entry(self.clone())
            .or_insert_with(|| self.build())
            .clone()
    }

    /// The library of backend `name`.
    ///
    /// # Panics
    ///
    /// As [`PluginBuild::libraries`], and when the build produced no library for `name`.
    pub fn library(&self, name: &str) -> PathBuf {
        let libs = self.libraries();
        libs.get(name).cloned().unwrap_or_else(|| {
            let mut names: Vec<&String> = libs.keys().collect();
            names.sort();
            panic!(
                "vog-conformance: `cargo build {}` produced no plugin `{name}`; it produced {names:?}",
                self.args.join(" ")
            )
        })
    }

    fn build(&self) -> HashMap<String, PathBuf> {
        let target = plugin_target_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .current_dir(&self.workspace)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--message-format=json-render-diagnostics"])
            .args(&self.args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("vog-conformance: running {cargo}: {e}"));
        assert!(
            out.status.success(),
            "vog-conformance: `cargo build {}` into {} failed (see its output above)",
            self.args.join(" "),
            target.display()
        );
        artifacts(&String::from_utf8_lossy(&out.stdout))
    }
}

/// `<target>/plugin-tests`, from the running test binary's path `<target>/<profile>/deps/<test>`.
fn plugin_target_dir() -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("vog-conformance: the test binary's path: {e}"));
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("plugin-tests"))
        .unwrap_or_else(|| {
            panic!(
                "vog-conformance: {} is not in <target>/<profile>/deps",
                exe.display()
            )
        })
}

/// The plugin libraries among cargo's `compiler-artifact` messages.
fn artifacts(messages: &str) -> HashMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .filter_map(|p| vog_plugin_host::name_from_file(&p).map(|n| (n, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn artifacts_are_plugin_libraries_by_name() {
        let so = vog_plugin_host::library_file_name("toy");
        let msgs = format!(
            "{{\"reason\":\"compiler-artifact\",\"filenames\":[\"/t/debug/{so}\",\"/t/debug/libvog_backend_toy.rlib\"]}}\n\
             not json\n{{\"reason\":\"build-finished\",\"success\":true}}\n"
        );
        let libs = super::artifacts(&msgs);
        assert_eq!(libs.len(), 1, "{libs:?}");
        assert_eq!(libs["toy"], std::path::Path::new("/t/debug").join(so));
    }
}
