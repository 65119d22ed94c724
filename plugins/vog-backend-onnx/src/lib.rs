//! The ONNX Runtime backend of **vog**: input gradients for any model exported to ONNX (PyTorch,
//! TensorFlow via tf2onnx, JAX via jax2onnx, scikit-learn via skl2onnx).
//!
//! ONNX Runtime's standard builds have no training API, so each checkpoint's graph is rewritten by
//! [`vog_onnx::gradient_model`] into one that also returns `∂ score_c / ∂ input` (reverse mode over
//! standard ONNX ops, only along the path from the input to the logits), and ONNX Runtime executes
//! forward and backward passes in one run. Rewritten graphs are cached by model hash.
//!
//! The library is loaded at run time (`ort` with `load-dynamic`): `library` in the options, else
//! `ORT_DYLIB_PATH`, else the `onnxruntime==1.31.1` PyPI wheel's `libonnxruntime.so.1.31.1` where
//! one is installed (the active virtual environment, this program's Python prefix, the user's
//! site-packages).

#![deny(missing_docs)]

mod ops;
mod options;
mod selftest;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorRef};
use serde::{Deserialize, Serialize};
use vog_core::{
    batch_shape_string, BackendInfo, Classes, Error, Floats, GradOutput, GradRequest,
    GradientBackend, Model, ModelInfo, Result, Target,
};
use vog_onnx::proto::tensor_proto::DataType;
use vog_plugin::PluginBackend;

pub use options::{Device, OnnxOptions, Optimization};

const NAME: &str = "onnx";

fn backend_err(e: impl std::fmt::Display) -> Error {
    Error::backend(NAME, e)
}

/// The ONNX Runtime environment: one per process, from one library.
struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
}

fn runtime(options: &OnnxOptions) -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    let wanted = options.library.clone().or_else(|| {
        std::env::var_os("ORT_DYLIB_PATH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let rt = RUNTIME.get_or_init(|| {
        let library = wanted.clone().or_else(find_wheel_library).ok_or_else(|| {
            "no ONNX Runtime library: install it with `pip install onnxruntime==1.31.1` (in the \
             active virtual environment, or beside this program's Python), or set ORT_DYLIB_PATH \
             (or [backend.options] library) to <site-packages>/onnxruntime/capi/libonnxruntime.so.1.31.1"
                .to_string()
        })?;
        if !library.is_file() {
            return Err(format!(
                "ONNX Runtime library {} does not exist (install onnxruntime==1.31.1 from PyPI and point \
                 ORT_DYLIB_PATH or [backend.options] library at its capi/libonnxruntime.so.1.31.1)",
                library.display()
            ));
        }
        let env = ort::init_from(&library)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?
            .with_name("vog")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", library.display()))?;
        tracing::debug!(library = %library.display(), "ONNX Runtime loaded");
        Ok(Runtime { env, library })
    });
    let rt = rt
        .as_ref()
        .map_err(|e| Error::Config(format!("onnx backend: {e}")))?;
    if let Some(w) = &wanted {
        if w != &rt.library {
            return Err(Error::Config(format!(
                "onnx backend: ONNX Runtime is already loaded from {}; one process uses one library (asked for {})",
                rt.library.display(),
                w.display()
            )));
        }
    }
    Ok(rt)
}

/// The ONNX Runtime library of an `onnxruntime` wheel installed where this program runs: in the
/// active virtual environment or conda environment (`VIRTUAL_ENV`, `CONDA_PREFIX`), the Python
/// prefix this executable lives in (a venv's `bin/vog`, or `python` itself when vog runs
/// in-process), or the user's site-packages. The newest `libonnxruntime.so.*` of the first
/// `onnxruntime/capi` directory found.
fn find_wheel_library() -> Option<PathBuf> {
    let mut prefixes: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .collect();
    if let Ok(exe) = std::env::current_exe() {
        // PREFIX/bin/program → PREFIX (the venv's own, and the one it was made from).
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            prefixes.push(prefix.to_path_buf());
        }
        if let Some(prefix) = exe
            .canonicalize()
            .ok()
            .and_then(|e| e.parent().and_then(Path::parent).map(Path::to_path_buf))
        {
            prefixes.push(prefix);
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        prefixes.push(PathBuf::from(home).join(".local"));
    }
    prefixes.iter().find_map(|prefix| {
        let lib = prefix.join("lib");
        let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        pythons.iter().rev().find_map(|py| {
            let capi = py.join("site-packages/onnxruntime/capi");
            let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
                .ok()?
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("libonnxruntime.so.")
                })
                .map(|e| e.path())
                .collect();
            libs.sort();
            let found = libs.pop()?;
            tracing::debug!(library = %found.display(), "found the onnxruntime wheel's library");
            Some(found)
        })
    })
}

/// The ONNX Runtime backend.
#[derive(Debug, Clone)]
pub struct OnnxBackend {
    options: OnnxOptions,
}

impl OnnxBackend {
    /// Creates the backend from the TOML text of `[backend.options]`. The ONNX Runtime library is
    /// loaded here, so a missing library is reported before any checkpoint is read.
    pub fn from_options(text: &str) -> Result<Self> {
        let options = OnnxOptions::from_toml(text)?;
        runtime(&options)?;
        Ok(OnnxBackend { options })
    }
}

/// What the cache keeps beside a rewritten graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GraphMeta {
    input: String,
    input_elem_type: i32,
    input_dims: Option<Vec<Option<i64>>>,
    output: String,
    wrt: String,
    classes_input: String,
    classes_output: String,
    gradient_output: String,
    #[serde(default)]
    channel_axis: Option<vog_core::ChannelAxis>,
}

impl GraphMeta {
    fn of(g: &vog_onnx::GradModel) -> Self {
        GraphMeta {
            input: g.input.clone(),
            input_elem_type: g.input_elem_type,
            input_dims: g.input_dims.clone(),
            output: g.output.clone(),
            wrt: g.wrt.clone(),
            classes_input: g.classes_input.clone(),
            classes_output: g.classes_output.clone(),
            gradient_output: g.gradient_output.clone(),
            channel_axis: g.channel_axis,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds (or reads from the cache) the gradient graph of `bytes` for `target`.
fn gradient_graph(
    path: &Path,
    bytes: &[u8],
    options: &OnnxOptions,
    target: Target,
) -> Result<(Vec<u8>, GraphMeta)> {
    use sha2::{Digest, Sha256};
    let mut model = vog_onnx::decode_model(bytes).map_err(|e| Error::checkpoint(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let external = vog_onnx::graph::inline_external_data(&mut model, base)
        .map_err(|e| Error::checkpoint(path, e))?;
    let mut h = Sha256::new();
    h.update(bytes);
    for f in &external {
        let data = std::fs::read(f).map_err(|e| Error::Io {
            path: f.clone(),
            error: e,
        })?;
        h.update(&data);
    }
    let spec = format!(
        "vog-onnx {} r{}|{:?}|{:?}|{:?}|{}|vog_ops={}",
        env!("CARGO_PKG_VERSION"),
        vog_onnx::GRAPH_REVISION,
        options.input,
        options.output,
        options.wrt,
        target.as_str(),
        options.uses_vog_ops()
    );
    h.update(spec.as_bytes());
    let key = hex(&h.finalize());
    let cache = options.cache_dir();
    if let Some(dir) = &cache {
        let (m, j) = (
            dir.join(format!("{key}.grad.onnx")),
            dir.join(format!("{key}.json")),
        );
        if let (Ok(model), Ok(meta)) = (std::fs::read(&m), std::fs::read(&j)) {
            if let Ok(meta) = serde_json::from_slice::<GraphMeta>(&meta) {
                tracing::debug!(checkpoint = %path.display(), cache = %m.display(), "gradient graph from cache");
                return Ok((model, meta));
            }
        }
    }
    let spec = vog_onnx::GradSpec {
        input: options.input.clone(),
        output: options.output.clone(),
        wrt: options.wrt.clone(),
        target,
        vog_ops: options.uses_vog_ops(),
    };
    let g = vog_onnx::gradient_model(&model, &spec).map_err(|e| Error::checkpoint(path, e))?;
    let encoded = vog_onnx::encode_model(&g.model);
    let meta = GraphMeta::of(&g);
    tracing::debug!(checkpoint = %path.display(), nodes = g.backward_nodes, "gradient graph built");
    if let Some(dir) = &cache {
        // Best effort: a cache that cannot be written only costs time.
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &encoded)?;
            std::fs::rename(&tmp, dir.join(format!("{key}.grad.onnx")))?;
            let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, dir.join(format!("{key}.json")))
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), "cannot cache the gradient graph: {e}");
        }
    }
    Ok((encoded, meta))
}

impl GradientBackend for OnnxBackend {
    fn info(&self) -> BackendInfo {
        Self::describe()
    }

    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        if !checkpoint.is_file() {
            return Err(Error::checkpoint(checkpoint, "file not found"));
        }
        let bytes = std::fs::read(checkpoint).map_err(|e| Error::Io {
            path: checkpoint.to_path_buf(),
            error: e,
        })?;
        // Build the logit graph now, so that a corrupt model or an unsupported op is reported at
        // load time; the probability graph is built on first use.
        let (graph, meta) = gradient_graph(checkpoint, &bytes, &self.options, Target::Logit)?;
        Ok(Box::new(OnnxModel {
            path: checkpoint.to_path_buf(),
            source: bytes,
            options: self.options.clone(),
            pending: Some((graph, meta.clone())),
            meta,
            sessions: HashMap::new(),
        }))
    }
}

/// One checkpoint: its gradient graphs and the ONNX Runtime sessions running them.
pub struct OnnxModel {
    path: PathBuf,
    source: Vec<u8>,
    options: OnnxOptions,
    pending: Option<(Vec<u8>, GraphMeta)>,
    meta: GraphMeta,
    sessions: HashMap<&'static str, (Session, GraphMeta)>,
}

impl OnnxModel {
    fn session(&mut self, target: Target) -> Result<()> {
        let key = target.as_str();
        if self.sessions.contains_key(key) {
            return Ok(());
        }
        let (graph, meta) = match (target, self.pending.take()) {
            (Target::Logit, Some(p)) => p,
            (_, pending) => {
                self.pending = pending;
                gradient_graph(&self.path, &self.source, &self.options, target)?
            }
        };
        let rt = runtime(&self.options)?;
        let o = &self.options;
        let builder = Session::builder(&rt.env).map_err(backend_err)?;
        let level = match o.optimization {
            Optimization::Disable => GraphOptimizationLevel::Disable,
            Optimization::Basic => GraphOptimizationLevel::Level1,
            Optimization::Extended => GraphOptimizationLevel::Level2,
            Optimization::All => GraphOptimizationLevel::Level3,
        };
        let mut builder = builder
            .with_optimization_level(level)
            .map_err(|e| backend_err(e.to_string()))?;
        if let Some(t) = o.threads.filter(|&t| t > 0) {
            builder = builder
                .with_intra_threads(t)
                .map_err(|e| backend_err(e.to_string()))?;
        }
        if let Some(p) = &o.profile {
            builder = builder
                .with_profiling(p)
                .map_err(|e| backend_err(e.to_string()))?;
        }
        if o.uses_vog_ops() {
            builder = builder
                .with_operators(ops::domain()?)
                .map_err(|e| backend_err(e.to_string()))?;
        }
        builder = builder
            .with_intra_op_spinning(o.spin)
            .map_err(|e| backend_err(e.to_string()))?
            .with_inter_op_spinning(o.spin)
            .map_err(|e| backend_err(e.to_string()))?;
        if let Device::Cuda(id) = o.device()? {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().with_device_id(id).build().error_on_failure()])
                .map_err(|e| {
                    Error::Config(format!(
                        "onnx backend: device cuda:{id} is not available with {} ({e}); use device = \"cpu\", \
                         or install onnxruntime-gpu on a machine with a GPU",
                        rt.library.display()
                    ))
                })?;
        }
        let session = builder.commit_from_memory(&graph).map_err(|e| {
            Error::checkpoint(
                &self.path,
                format!("ONNX Runtime cannot load the gradient graph: {e}"),
            )
        })?;
        self.sessions.insert(key, (session, meta));
        Ok(())
    }
}

impl Model for OnnxModel {
    fn info(&self) -> ModelInfo {
        let input_shape = self.meta.input_dims.as_ref().and_then(|d| {
            d.get(1..).and_then(|rest| {
                rest.iter()
                    .map(|v| v.filter(|&v| v > 0).map(|v| v as usize))
                    .collect()
            })
        });
        ModelInfo {
            input_shape: input_shape.filter(|_| self.meta.wrt == self.meta.input),
            num_classes: None,
            channel_axis: self.meta.channel_axis,
        }
    }

    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let input = request.input;
        let rows = input.rows();
        // Declared static dims must match (the batch axis is free).
        if let Some(dims) = &self.meta.input_dims {
            let row = input.row_shape();
            let fits = dims.len() == row.len() + 1
                && dims[1..]
                    .iter()
                    .zip(row)
                    .all(|(d, &r)| d.is_none_or(|d| d <= 0 || d as usize == r));
            if !fits {
                let declared: Vec<String> = dims
                    .iter()
                    .map(|d| d.filter(|&v| v > 0).map_or("?".into(), |v| v.to_string()))
                    .collect();
                return Err(Error::Shape(format!(
                    "model input `{}` is declared [{}], examples are {}",
                    self.meta.input,
                    declared.join(", "),
                    batch_shape_string(row)
                )));
            }
        }
        self.session(request.target)?;
        let (session, meta) = self
            .sessions
            .get_mut(request.target.as_str())
            .expect("created above");
        let shape: Vec<i64> = input.shape().iter().map(|&d| d as i64).collect();
        let classes: Vec<i64> = match request.classes {
            Classes::Given(c) => {
                if c.len() != rows {
                    return Err(Error::Shape(format!(
                        "{} classes given for {rows} rows",
                        c.len()
                    )));
                }
                c.iter().map(|&v| i64::from(v)).collect()
            }
            Classes::Argmax => vec![-1; rows],
        };
        let classes_t =
            Tensor::from_array((vec![rows as i64], classes.clone())).map_err(backend_err)?;
        let run = |session: &mut Session, x: ort::session::SessionInputValue<'_>| {
            session
                .run(ort::inputs![meta.input.as_str() => x, meta.classes_input.as_str() => classes_t.view()])
                .map_err(|e| Error::Shape(format!("ONNX Runtime: {e}")))
                .and_then(|mut out| extract(&mut out, meta, rows))
        };
        let mut out = match meta.input_elem_type {
            t if t == DataType::Float as i32 => {
                let x = TensorRef::from_array_view((shape.clone(), input.data())).map_err(backend_err)?;
                run(session, x.into())?
            }
            t if t == DataType::Double as i32 => {
                let data: Vec<f64> = input.data().iter().map(|&v| f64::from(v)).collect();
                let x = Tensor::from_array((shape.clone(), data)).map_err(backend_err)?;
                run(session, x.into())?
            }
            t if t == DataType::Int64 as i32 || t == DataType::Int32 as i32 => {
                if let Some(bad) = input.data().iter().position(|v| v.fract() != 0.0) {
                    return Err(Error::Shape(format!(
                        "model input `{}` takes integers (token ids), but example {} holds {}",
                        meta.input,
                        bad / input.row_len().max(1),
                        input.data()[bad]
                    )));
                }
                if t == DataType::Int64 as i32 {
                    let data: Vec<i64> = input.data().iter().map(|&v| v as i64).collect();
                    run(session, Tensor::from_array((shape.clone(), data)).map_err(backend_err)?.into())?
                } else {
                    let data: Vec<i32> = input.data().iter().map(|&v| v as i32).collect();
                    run(session, Tensor::from_array((shape.clone(), data)).map_err(backend_err)?.into())?
                }
            }
            t => {
                return Err(Error::Shape(format!(
                    "model input `{}` has element type {}, which vog cannot feed (float, double, int32, int64)",
                    meta.input,
                    vog_onnx::graph::type_name(t)
                )))
            }
        };
        if let Classes::Given(c) = request.classes {
            if let Some((row, &class)) = c
                .iter()
                .enumerate()
                .find(|(_, &c)| c as usize >= out.num_classes)
            {
                return Err(Error::ClassOutOfRange {
                    class,
                    num_classes: out.num_classes,
                    row,
                });
            }
        }
        if meta.wrt == meta.input && out.gradient_shape.as_deref() == Some(input.row_shape()) {
            out.gradient_shape = None;
        }
        Ok(out)
    }
}

/// Copies the three outputs of a run.
fn extract(
    out: &mut ort::session::SessionOutputs<'_>,
    meta: &GraphMeta,
    rows: usize,
) -> Result<GradOutput> {
    let get = |name: &str| {
        out.get(name)
            .ok_or_else(|| backend_err(format!("the run produced no `{name}`")))
    };
    let floats = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let v = get(name)?;
        if let Ok((shape, data)) = v.try_extract_tensor::<f32>() {
            return Ok((shape.iter().map(|&d| d as usize).collect(), data.to_vec()));
        }
        let (shape, data) = v.try_extract_tensor::<f64>().map_err(backend_err)?;
        Ok((
            shape.iter().map(|&d| d as usize).collect(),
            data.iter().map(|&x| x as f32).collect(),
        ))
    };
    let (lshape, logits) = floats(&meta.output)?;
    if lshape.len() != 2 || lshape[0] != rows {
        return Err(Error::Shape(format!(
            "the scored tensor `{}` has shape {lshape:?}; vog needs logits [N, classes] (name another tensor with `output`)",
            meta.output
        )));
    }
    let classes: Vec<u32> = get(&meta.classes_output)?
        .try_extract_tensor::<i64>()
        .map_err(backend_err)?
        .1
        .iter()
        .map(|&c| c as u32)
        .collect();
    let (gshape, gradient) = match out.remove(&meta.gradient_output) {
        // A float gradient is lent as ONNX Runtime wrote it: the output value lives until the
        // receiver drops the `Floats` (no copy here).
        Some(value) if value.try_extract_tensor::<f32>().is_ok() => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(backend_err)?;
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let (ptr, len) = (data.as_ptr(), data.len());
            // SAFETY: `data` is the tensor's buffer, owned by `value`, which moves into the
            // release closure: it stays valid and unchanged (nothing else holds the value) until
            // the closure drops it, and an ONNX Runtime value may be dropped on any thread.
            let lent = unsafe { Floats::lent(ptr, len, move || drop(value)) };
            (shape, lent)
        }
        Some(value) => {
            let (shape, data) = value.try_extract_tensor::<f64>().map_err(backend_err)?;
            let data: Vec<f32> = data.iter().map(|&x| x as f32).collect();
            (shape.iter().map(|&d| d as usize).collect(), data.into())
        }
        None => {
            return Err(backend_err(format!(
                "the run produced no `{}`",
                meta.gradient_output
            )))
        }
    };
    Ok(GradOutput {
        logits,
        num_classes: lshape[1],
        gradient,
        gradient_shape: Some(gshape.get(1..).unwrap_or(&[]).to_vec()),
        classes,
    })
}

impl PluginBackend for OnnxBackend {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["onnx".into()],
            devices: vec!["cpu".into(), "cuda".into()],
        }
    }

    fn create(options: &str) -> Result<Self> {
        Self::from_options(options)
    }

    fn self_test() -> Result<String> {
        selftest::run()
    }
}

#[cfg(feature = "plugin")]
vog_plugin::export_backend!(OnnxBackend);
