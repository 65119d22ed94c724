//! The ONNX Runtime backend of **vog**: input gradients for any model exported to ONNX (PyTorch,
//! TensorFlow via tf2onnx, JAX via jax2onnx, scikit-learn via skl2onnx).
//!
//! ONNX Runtime's standard builds have no training API, so each checkpoint's graph is rewritten by
//! [`vog_onnx::gradient_model`] into one that also returns `∂ score_c / ∂ input` (reverse mode over
//! standard ONNX ops, only along the path from the input to the logits), and ONNX Runtime executes
//! forward and backward passes in one run. Rewritten graphs are cached by model hash, and
//! on CPU ONNX Runtime's optimized form of them as well (see `graphs`).
//!
//! The library is loaded at run time (`ort` with `load-dynamic`): `library` in the options, else
//! `ORT_DYLIB_PATH`, else the `onnxruntime==1.31.1` PyPI wheel's `libonnxruntime.so.1.31.1` where
//! one is installed (the active virtual environment, this program's Python prefix, the user's
//! site-packages).

#![deny(missing_docs)]

mod graphs;
mod ops;
mod options;
mod selftest;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{Tensor, TensorRef};
use vog_core::{
    batch_shape_string, BackendInfo, Classes, Error, Floats, GradOutput, GradRequest,
    GradientBackend, Model, ModelInfo, Result, Target,
};
use vog_onnx::proto::tensor_proto::DataType;
use vog_plugin::PluginBackend;

use graphs::{GraphMeta, Prepared, Source};
pub use options::{Device, OnnxOptions, Optimization};

const NAME: &str = "onnx";

fn backend_err(e: impl std::fmt::Display) -> Error {
    Error::backend(NAME, e)
}

/// The ONNX Runtime environment: one per process, from one library.
struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
    /// Whether the environment holds a CPU arena that sessions share (see [`shared_arena`]).
    shared_arena: bool,
    /// ONNX Runtime's build and this processor, for the cache of optimized graphs.
    fingerprint: Option<String>,
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
        let shared_arena = shared_arena(&env);
        let fingerprint = graphs::runtime_fingerprint(ort::info());
        Ok(Runtime {
            env,
            library,
            shared_arena,
            fingerprint,
        })
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

/// Registers one CPU arena allocator in the environment for all sessions (ONNX Runtime's own
/// arena settings). Each session would otherwise grow its own arena: a checkpoint's first runs
/// then fault in fresh pages, and the resident checkpoints of a run each keep their peak.
/// `false` (each session keeps its own arena) when ONNX Runtime refuses.
fn shared_arena(env: &ort::environment::Environment) -> bool {
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
    use ort::AsPointer;
    let info = match MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Arena,
        MemoryType::Default,
    ) {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("no shared CPU arena: {e}");
            return false;
        }
    };
    // SAFETY: both pointers are live ONNX Runtime objects (the environment outlives every
    // session; the memory info is only read); a null arena configuration means the defaults.
    let status = unsafe {
        (ort::api().CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), std::ptr::null())
    };
    if status.0.is_null() {
        return true;
    }
    // SAFETY: a non-null status came from the call above and is released once, here.
    let message = unsafe {
        let text = (ort::api().GetErrorMessage)(status.0);
        let text = std::ffi::CStr::from_ptr(text)
            .to_string_lossy()
            .into_owned();
        (ort::api().ReleaseStatus)(status.0);
        text
    };
    tracing::debug!("no shared CPU arena: {message}");
    false
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
        let fingerprint = runtime(&self.options)?.fingerprint.as_deref();
        let prepared = graphs::prepare(
            checkpoint,
            &bytes,
            &self.options,
            Target::Logit,
            fingerprint,
        )?;
        Ok(Box::new(OnnxModel {
            path: checkpoint.to_path_buf(),
            source: bytes,
            options: self.options.clone(),
            meta: prepared.meta.clone(),
            pending: Some(prepared),
            sessions: HashMap::new(),
        }))
    }
}

/// One checkpoint: its gradient graphs and the ONNX Runtime sessions running them.
pub struct OnnxModel {
    path: PathBuf,
    source: Vec<u8>,
    options: OnnxOptions,
    pending: Option<Prepared>,
    meta: GraphMeta,
    sessions: HashMap<&'static str, (Session, GraphMeta)>,
}

impl OnnxModel {
    fn session(&mut self, target: Target) -> Result<()> {
        let key = target.as_str();
        if self.sessions.contains_key(key) {
            return Ok(());
        }
        let rt = runtime(&self.options)?;
        let prepared = match (target, self.pending.take()) {
            (Target::Logit, Some(p)) => p,
            (_, pending) => {
                self.pending = pending;
                let fingerprint = rt.fingerprint.as_deref();
                graphs::prepare(&self.path, &self.source, &self.options, target, fingerprint)?
            }
        };
        let Prepared {
            source,
            meta,
            optimized,
        } = prepared;
        let session = match source {
            Source::Optimized(file) => match self
                .builder(rt, true)
                .and_then(|mut b| b.commit_from_file(&file).map_err(backend_err))
            {
                Ok(session) => session,
                Err(e) => {
                    tracing::warn!(
                        file = %file.display(),
                        "cached optimized gradient graph not loaded ({e}); rebuilding it"
                    );
                    let _ = std::fs::remove_file(&file);
                    let (graph, _) =
                        graphs::plain(&self.path, &self.source, &self.options, target)?;
                    self.optimize(rt, &graph, Some(&file))?
                }
            },
            Source::Plain(graph) => self.optimize(rt, &graph, optimized.as_deref())?,
        };
        self.sessions.insert(key, (session, meta));
        Ok(())
    }

    /// A session that optimizes `graph` as it starts, and saves the optimized graph to `save`
    /// on the way (best effort: through a temporary file, renamed when complete; a session that
    /// cannot save is made again without saving). Graphs over [`graphs::MAX_SAVED`] are not
    /// saved: their optimized form, folded weights included, could pass protobuf's 2 GiB.
    fn optimize(&self, rt: &Runtime, graph: &[u8], save: Option<&Path>) -> Result<Session> {
        if let Some(save) = save.filter(|_| graph.len() <= graphs::MAX_SAVED) {
            let tmp = graphs::temporary(save);
            let saving = save
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .map_err(backend_err)
                .and_then(|()| self.builder(rt, false))
                .and_then(|b| b.with_optimized_model_path(&tmp).map_err(backend_err))
                .and_then(|mut b| b.commit_from_memory(graph).map_err(backend_err));
            match saving {
                Ok(session) => {
                    if let Err(e) = std::fs::rename(&tmp, save) {
                        tracing::debug!(file = %save.display(), "optimized graph not cached: {e}");
                        let _ = std::fs::remove_file(&tmp);
                    }
                    return Ok(session);
                }
                Err(e) => {
                    tracing::debug!(file = %save.display(), "optimized graph not cached: {e}");
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        self.builder(rt, false)?
            .commit_from_memory(graph)
            .map_err(|e| {
                Error::checkpoint(
                    &self.path,
                    format!("ONNX Runtime cannot load the gradient graph: {e}"),
                )
            })
    }

    /// A session builder with the options; `optimized`: for a graph ONNX Runtime optimized
    /// already (no optimization at the start).
    fn builder(&self, rt: &Runtime, optimized: bool) -> Result<SessionBuilder> {
        let o = &self.options;
        let level = match o.optimization {
            _ if optimized => GraphOptimizationLevel::Disable,
            Optimization::Disable => GraphOptimizationLevel::Disable,
            Optimization::Basic => GraphOptimizationLevel::Level1,
            Optimization::Extended => GraphOptimizationLevel::Level2,
            Optimization::All => GraphOptimizationLevel::Level3,
        };
        let mut builder = Session::builder(&rt.env)
            .map_err(backend_err)?
            .with_optimization_level(level)
            .map_err(backend_err)?;
        if let Some(t) = o.threads.filter(|&t| t > 0) {
            builder = builder.with_intra_threads(t).map_err(backend_err)?;
        }
        if let Some(p) = &o.profile {
            builder = builder.with_profiling(p).map_err(backend_err)?;
        }
        if o.uses_vog_ops() {
            builder = builder
                .with_operators(ops::domain()?)
                .map_err(backend_err)?;
        }
        if rt.shared_arena {
            builder = builder.with_env_allocators().map_err(backend_err)?;
        }
        builder = builder
            .with_intra_op_spinning(o.spin)
            .map_err(backend_err)?
            .with_inter_op_spinning(o.spin)
            .map_err(backend_err)?;
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
        Ok(builder)
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
