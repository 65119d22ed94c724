//! `vog._vog`, the extension module of the `vog` Python package: the Rust engine in-process.
//!
//! The Python package (`python/vog/`) is the public API; this module is its engine room:
//!
//! * `score` runs a scoring pass from a configuration (the JSON of a `vog.toml`) through a
//!   built-in backend (candle, ONNX Runtime), a plugin, or a Python object (`backend`), with the
//!   GIL released while Rust works, and writes a results directory;
//! * `columns`, `report`, `evaluate`, `index` and `map_path` read and use one;
//! * `cli` is the `vog` command line, for the script the wheel installs.
//!
//! Errors become `vog.VogError` with the message the command line prints. An exception raised
//! by a Python backend or progress callback is re-raised as the `__cause__` of that error (a
//! `KeyboardInterrupt` as itself), so its type and traceback survive the trip through the engine.

mod backend;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use vog_backend_onnx::OnnxBackend;
use vog_engine::{Config, Progress};
use vog_plugin_host::BuiltIn;

use backend::{describe, keep, Failure, PyBackend};

create_exception!(
    _vog,
    VogError,
    PyException,
    "An error of vog: bad input, a backend failure, or a run that cannot proceed. The message is \
     the one the `vog` command line prints."
);

/// Backends linked into the package besides candle (which the command line always has).
fn built_ins() -> Vec<BuiltIn> {
    vec![BuiltIn::of::<OnnxBackend>()]
}

/// `message: cause: cause…`, as the command line prints an error (a cause already in the text
/// is not repeated).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// The Python exception for an engine error: the kept Python exception when a callback raised
/// one (`KeyboardInterrupt` as itself, others as the cause of a `VogError`), else a `VogError`.
fn to_py(py: Python<'_>, err: &(dyn std::error::Error + 'static), failure: &Failure) -> PyErr {
    let kept = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match kept {
        Some(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => e,
        Some(e) => {
            let message = chain(err);
            let error = VogError::new_err(if message.contains(&describe(py, &e)) {
                message
            } else {
                format!("{message}: {}", describe(py, &e))
            });
            error.set_cause(py, Some(e));
            error
        }
        None => VogError::new_err(chain(err)),
    }
}

/// Progress reported to a Python object with `start(total, message)`, `advance(n)` and
/// `finish()`; [`Progress::interrupted`] looks at the interpreter's pending signals.
struct PyProgress {
    object: Option<Py<PyAny>>,
    failure: Failure,
}

impl PyProgress {
    fn call<A>(&self, method: &str, args: A)
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        if let Some(object) = &self.object {
            Python::attach(|py| {
                if let Err(e) = object.bind(py).call_method1(method, args) {
                    if e.is_instance_of::<PyKeyboardInterrupt>(py) {
                        // Ctrl-C while the callback ran: the run stops at the next batch.
                        keep(&self.failure, e);
                    } else {
                        // A broken progress display must not end the run; say so in the log.
                        tracing::warn!("progress callback `{method}` failed: {}", describe(py, &e));
                    }
                }
            });
        }
    }
}

impl Progress for PyProgress {
    fn start(&self, total: u64, message: &str) {
        self.call("start", (total, message.to_string()));
    }

    fn advance(&self, n: u64) {
        self.call("advance", (n,));
    }

    fn finish(&self) {
        self.call("finish", ());
    }

    fn interrupted(&self) -> bool {
        if self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return true;
        }
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                keep(&self.failure, e);
                true
            }
        })
    }
}

/// Scores with the configuration `config_json` (a `vog.toml` as JSON; relative paths resolve
/// against the working directory) through `backend` (a Python object; `None`: the configured
/// built-in or plugin backend, or stored gradients). Writes the results directory and returns
/// its path.
#[pyfunction]
#[pyo3(signature = (config_json, backend=None, progress=None))]
fn score(
    py: Python<'_>,
    config_json: &str,
    backend: Option<Bound<'_, PyAny>>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let mut config: Config = serde_json::from_str(config_json)
        .map_err(|e| VogError::new_err(format!("configuration: {e}")))?;
    let base = std::env::current_dir()
        .map_err(|e| VogError::new_err(format!("the working directory: {e}")))?;
    config.resolve_paths(&base);
    config
        .validate()
        .map_err(|e| VogError::new_err(chain(&e)))?;
    let failure: Failure = Arc::new(Mutex::new(None));
    let (backend, library): (Option<Box<dyn vog_core::GradientBackend>>, Option<PathBuf>) =
        match backend {
            Some(object) => (
                Some(Box::new(PyBackend::new(object, failure.clone())?)),
                None,
            ),
            None if config.gradients.dirs.is_empty() => {
                let registry =
                    vog::backends::registry_with(config.plugins.dirs.clone(), built_ins());
                let source = registry.resolve(&config.backend.name).map_err(|e| {
                    VogError::new_err(format!("backend `{}`: {}", config.backend.name, chain(&e)))
                })?;
                let created = source.create(&config.backend_options_toml()).map_err(|e| {
                    VogError::new_err(format!("backend `{}`: {}", config.backend.name, chain(&e)))
                })?;
                (Some(created), source.library())
            }
            None => (None, None),
        };
    let progress = PyProgress {
        object: progress.map(Bound::unbind),
        failure: failure.clone(),
    };
    let written =
        py.detach(|| vog_engine::score_to_dir(&config, backend.as_deref(), &progress, 0, library));
    match written {
        Ok(w) => Ok(w.dir.display().to_string()),
        Err(e) => Err(to_py(py, &e, &failure)),
    }
}

/// The rows of a results directory as columns, in `scores.csv`'s order: a list of
/// `(name, values)` with `None` for missing values.
#[pyfunction]
fn columns<'py>(py: Python<'py>, dir: PathBuf) -> PyResult<Bound<'py, PyList>> {
    let run = vog_results::ResultsDir::open(&dir).map_err(|e| VogError::new_err(chain(&e)))?;
    let rows: Vec<vog_results::ScoreRow> = run
        .rows()
        .and_then(|r| r.collect())
        .map_err(|e| VogError::new_err(chain(&e)))?;
    let windows: Vec<String> = run
        .manifest()
        .scoring
        .windows
        .iter()
        .map(|w| w.name.clone())
        .collect();
    // The panel in scores.csv's order (older manifests lack it: the rows' own, alphabetical).
    let mut extra = run.manifest().scoring.columns.clone();
    if extra.is_empty() {
        extra = rows
            .first()
            .map(|r| r.scores.keys().cloned().collect())
            .unwrap_or_default();
    }
    let meta_keys: std::collections::BTreeSet<String> =
        rows.iter().flat_map(|r| r.meta.keys().cloned()).collect();
    let out = PyList::empty(py);
    let push = |name: String, values: Bound<'py, PyList>| out.append((name, values));
    push(
        "id".into(),
        PyList::new(py, rows.iter().map(|r| r.id.as_str()))?,
    )?;
    push("row".into(), PyList::new(py, rows.iter().map(|r| r.row))?)?;
    push(
        "split".into(),
        PyList::new(py, rows.iter().map(|r| r.split.clone()))?,
    )?;
    push(
        "true_label".into(),
        PyList::new(py, rows.iter().map(|r| r.true_label))?,
    )?;
    push(
        "label_used".into(),
        PyList::new(py, rows.iter().map(|r| r.label_used))?,
    )?;
    push(
        "predicted".into(),
        PyList::new(py, rows.iter().map(|r| r.predicted))?,
    )?;
    for w in &windows {
        push(
            format!("vog_{w}"),
            PyList::new(py, rows.iter().map(|r| r.vog.get(w).copied().flatten()))?,
        )?;
    }
    for w in &windows {
        push(
            format!("vog_{w}_norm"),
            PyList::new(
                py,
                rows.iter().map(|r| r.vog_norm.get(w).copied().flatten()),
            )?,
        )?;
    }
    for c in &extra {
        push(
            c.clone(),
            PyList::new(py, rows.iter().map(|r| r.scores.get(c).copied().flatten()))?,
        )?;
    }
    push(
        "flagged".into(),
        PyList::new(py, rows.iter().map(|r| r.flagged))?,
    )?;
    push(
        "has_map".into(),
        PyList::new(py, rows.iter().map(|r| r.has_map))?,
    )?;
    let json = py.import("json")?;
    for k in &meta_keys {
        let values = PyList::empty(py);
        for r in &rows {
            match r.meta.get(k) {
                None | Some(serde_json::Value::Null) => values.append(py.None())?,
                Some(serde_json::Value::String(s)) => values.append(s)?,
                Some(v) => values.append(json.call_method1("loads", (v.to_string(),))?)?,
            }
        }
        push(format!("meta.{k}"), values)?;
    }
    Ok(out)
}

/// The path of a kept map of example `row` (`kind`: `vog` or `grad`), whether or not it exists.
#[pyfunction]
fn map_path(dir: PathBuf, row: u64, kind: &str) -> PyResult<String> {
    let kind = match kind {
        "vog" => vog_results::MapKind::Vog,
        "grad" => vog_results::MapKind::Grad,
        other => {
            return Err(PyValueError::new_err(format!(
                "map kind `{other}` is not one of vog, grad"
            )))
        }
    };
    Ok(dir
        .join(vog_results::MAPS_DIR)
        .join(vog_results::map_file(row, kind))
        .display()
        .to_string())
}

/// Writes the HTML report of a results directory or a store's run to `out`.
#[pyfunction]
#[pyo3(signature = (input, out, per_class=vog_report::DEFAULT_PER_CLASS, run=None))]
fn report(
    py: Python<'_>,
    input: PathBuf,
    out: PathBuf,
    per_class: usize,
    run: Option<String>,
) -> PyResult<()> {
    py.detach(|| {
        vog_report::Report::open(&input, run.as_deref()).and_then(|r| r.write(per_class, &out))
    })
    .map_err(|e| VogError::new_err(chain(&e)))
}

/// `vog evaluate` on a results directory: `bad_column` (a row field) or `bad_ids` (a file of ids),
/// with precision at each of `k`. Returns the evaluation as JSON.
#[pyfunction]
#[pyo3(signature = (dir, bad_column=None, bad_ids=None, k=Vec::new()))]
fn evaluate(
    py: Python<'_>,
    dir: PathBuf,
    bad_column: Option<String>,
    bad_ids: Option<PathBuf>,
    k: Vec<usize>,
) -> PyResult<String> {
    use vog_engine::evaluate::{evaluate_results, BadFlag};
    let flag = match (bad_column, bad_ids) {
        (Some(c), None) => BadFlag::Column(c),
        (None, Some(f)) => BadFlag::Ids(f),
        _ => {
            return Err(PyValueError::new_err(
                "give exactly one of bad_column, bad_ids",
            ))
        }
    };
    let e = py
        .detach(|| evaluate_results(&dir, &flag, &k))
        .map_err(|e| VogError::new_err(chain(&e)))?;
    serde_json::to_string(&e).map_err(|e| VogError::new_err(e.to_string()))
}

/// Indexes a results directory into the audit store at `store` (created when missing) as `run`
/// (default: the directory's name). Returns `(run, examples, flagged)`.
#[pyfunction]
#[pyo3(signature = (dir, store, run=None, class_names=None))]
fn index(
    py: Python<'_>,
    dir: PathBuf,
    store: PathBuf,
    run: Option<String>,
    class_names: Option<PathBuf>,
) -> PyResult<(String, usize, usize)> {
    py.detach(
        || -> Result<vog_store::ImportSummary, Box<dyn std::error::Error + Send + Sync>> {
            let store = vog_store::Store::open_or_create(&store)?;
            let class_names = class_names
                .as_deref()
                .map(vog_store::read_class_names)
                .transpose()?;
            Ok(store.index_results(&dir, &vog_store::ImportOptions { run, class_names })?)
        },
    )
    .map(|s| (s.run, s.examples, s.flagged))
    .map_err(|e| VogError::new_err(format!("indexing into the store: {}", chain(&*e))))
}

/// One backend for Python: `(name, version, extensions, devices, source)`.
type BackendRow = (String, String, Vec<String>, Vec<String>, String);

/// The backends available by name.
#[pyfunction]
#[pyo3(signature = (plugin_dirs=Vec::new()))]
fn backends(plugin_dirs: Vec<PathBuf>) -> Vec<BackendRow> {
    let registry = vog::backends::registry_with(plugin_dirs, built_ins());
    let mut out: Vec<_> = registry
        .built_ins()
        .map(|s| {
            let i = s.info();
            (
                i.name,
                i.version,
                i.extensions,
                i.devices,
                "built in".to_string(),
            )
        })
        .collect();
    let (plugins, _) = registry.plugins();
    for p in plugins {
        let i = p.info().clone();
        out.push((
            i.name,
            i.version,
            i.extensions,
            i.devices,
            p.path().display().to_string(),
        ));
    }
    out
}

/// Runs the `vog` command line on `argv` (program name first) and returns its exit status.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| vog::main_with(argv.into_iter().map(OsString::from), built_ins()))
}

/// Whether `path` is a results directory this version reads (`run.json` of format 1).
#[pyfunction]
fn is_results(path: PathBuf) -> bool {
    vog_results::ResultsDir::open(Path::new(&path)).is_ok()
}

#[pymodule]
fn _vog(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VogError", m.py().get_type::<VogError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(columns, m)?)?;
    m.add_function(wrap_pyfunction!(map_path, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(index, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    m.add_function(wrap_pyfunction!(is_results, m)?)?;
    Ok(())
}
