//! A Python object as a [`GradientBackend`]: the user's framework computes input gradients (on
//! the user's device), vog does the rest.
//!
//! The protocol (`vog.Backend` in the Python package documents it):
//!
//! * `backend.load(path: str) -> model`, and optionally `backend.name`, `backend.version`,
//!   `backend.extensions` (checkpoint file extensions without dots), `backend.devices`;
//! * `model.input_gradients(x, classes, target) -> (logits, gradient[, classes])`, where `x` is a
//!   float32 array `[B, …]`, `classes` an int64 array `[B]` or `None` (use each row's argmax),
//!   `target` is `"logit"` or `"probability"`; optionally `model.input_shape` and
//!   `model.num_classes`.
//!
//! Arrays cross as float32 buffers: the batch is copied once into a Python `bytearray` that the
//! array handed to Python views (writable, so frameworks can wrap it without a copy); answers are
//! read through NumPy's array interface and copied once into the buffers the engine owns. The GIL
//! is held only while Python runs: the engine's own threads work while the model computes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyDict, PyList, PyTuple};
use vog_core::{
    BackendInfo, Classes, GradOutput, GradRequest, GradientBackend, Model, ModelInfo, Target,
};

/// The first Python exception a run's callbacks raised, re-raised by the entry point once the
/// engine has stopped (its type and traceback survive the trip through the engine).
pub type Failure = Arc<Mutex<Option<PyErr>>>;

/// Keeps `err` as the run's failure (the first one wins) and returns the engine error that
/// carries its message.
pub fn fail(failure: &Failure, backend: &str, py: Python<'_>, err: PyErr) -> vog_core::Error {
    let message = describe(py, &err);
    keep(failure, err);
    vog_core::Error::Backend {
        backend: backend.to_string(),
        message,
    }
}

/// Keeps `err` as the run's failure unless one is kept already (the first one wins).
pub fn keep(failure: &Failure, err: PyErr) {
    let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(err);
    }
}

/// `TypeName: message`, as Python prints an exception's last line.
pub fn describe(py: Python<'_>, err: &PyErr) -> String {
    let name = err
        .get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let value = err.value(py).str().map(|s| s.to_string());
    match value {
        Ok(v) if !v.is_empty() => format!("{name}: {v}"),
        _ => name,
    }
}

static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// A float32 NumPy array of `shape` holding a copy of `data`, backed by a `bytearray`.
pub fn to_numpy<'py>(
    py: Python<'py>,
    data: &[f32],
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: any initialised f32 slice is also a valid byte slice of four times its length
    // (u8 has no alignment or validity requirements), borrowed for as long as `data`.
    let bytes = unsafe {
        std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
    };
    let buffer = PyByteArray::new(py, bytes);
    let np = numpy(py)?;
    np.call_method1("frombuffer", (buffer, np.getattr("float32")?))?
        .call_method1("reshape", (PyTuple::new(py, shape)?,))
}

/// An int64 NumPy array of `values`.
fn to_numpy_i64<'py>(py: Python<'py>, values: &[u32]) -> PyResult<Bound<'py, PyAny>> {
    let np = numpy(py)?;
    let list = PyList::new(py, values)?;
    np.call_method1("asarray", (list, np.getattr("int64")?))
}

/// Reads any array-like (NumPy, or anything `numpy.asarray` takes) as float32, returning its
/// shape and a copy of its values in C order.
pub fn read_f32(value: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<usize>, Vec<f32>)> {
    let py = value.py();
    let np = numpy(py)?;
    let array = np
        .call_method1("ascontiguousarray", (value, np.getattr("float32")?))
        .map_err(|e| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{what} is not an array of numbers ({})",
                describe(py, &e)
            ))
        })?;
    let interface = array.getattr("__array_interface__")?;
    let interface = interface.cast::<PyDict>()?;
    let get = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        interface.get_item(key)?.ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{what}: no `{key}` in the array interface"
            ))
        })
    };
    let typestr: String = get("typestr")?.extract()?;
    let native = if cfg!(target_endian = "little") {
        "<f4"
    } else {
        ">f4"
    };
    if typestr != native || !get("strides")?.is_none() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{what}: expected a contiguous float32 array, got {typestr}"
        )));
    }
    let shape: Vec<usize> = get("shape")?.extract()?;
    let (address, _read_only): (usize, bool) = get("data")?.extract()?;
    let len: usize = shape.iter().product();
    let mut values = vec![0f32; len];
    if len > 0 {
        // SAFETY: `array` is a C-contiguous native-endian float32 NumPy array (checked above:
        // typestr and strides None) of `len` elements starting at `address`; it stays alive (and
        // this thread holds the GIL, so nothing frees or resizes it) until the copy is done.
        unsafe {
            std::ptr::copy_nonoverlapping(address as *const f32, values.as_mut_ptr(), len);
        }
    }
    Ok((shape, values))
}

fn optional_attr<'py, T: for<'a> FromPyObject<'a, 'py>>(
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Option<T>> {
    match obj.getattr_opt(name)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract::<T>().map_err(Into::<PyErr>::into)?)),
        _ => Ok(None),
    }
}

/// A Python backend object seen as a [`GradientBackend`].
pub struct PyBackend {
    object: Py<PyAny>,
    info: BackendInfo,
    failure: Failure,
}

impl PyBackend {
    /// Wraps `object`, reading its optional `name`, `version`, `extensions` and `devices`.
    pub fn new(object: Bound<'_, PyAny>, failure: Failure) -> PyResult<PyBackend> {
        if !object.hasattr("load")? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "backend {} has no `load(path)` method (see vog.Backend)",
                object.repr()?
            )));
        }
        let name = match optional_attr::<String>(&object, "name")? {
            Some(n) => n,
            None => object.get_type().qualname()?.to_string(),
        };
        let info = BackendInfo {
            name,
            version: optional_attr(&object, "version")?.unwrap_or_default(),
            extensions: optional_attr(&object, "extensions")?.unwrap_or_default(),
            devices: optional_attr(&object, "devices")?.unwrap_or_default(),
        };
        Ok(PyBackend {
            object: object.unbind(),
            info,
            failure,
        })
    }
}

impl GradientBackend for PyBackend {
    fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    fn load(&self, checkpoint: &Path) -> vog_core::Result<Box<dyn Model>> {
        Python::attach(|py| {
            let fail = |e| fail(&self.failure, &self.info.name, py, e);
            let model = self
                .object
                .bind(py)
                .call_method1("load", (checkpoint,))
                .map_err(fail)?;
            let info = ModelInfo {
                input_shape: optional_attr(&model, "input_shape").map_err(fail)?,
                num_classes: optional_attr(&model, "num_classes").map_err(fail)?,
                channel_axis: None,
            };
            if !model.hasattr("input_gradients").map_err(fail)? {
                return Err(vog_core::Error::Checkpoint {
                    path: checkpoint.to_path_buf(),
                    message: format!(
                        "{}.load returned {}, which has no `input_gradients` method",
                        self.info.name,
                        model
                            .get_type()
                            .qualname()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ),
                });
            }
            Ok(Box::new(PyModel {
                object: model.unbind(),
                info,
                name: self.info.name.clone(),
                failure: self.failure.clone(),
            }) as Box<dyn Model>)
        })
    }
}

struct PyModel {
    object: Py<PyAny>,
    info: ModelInfo,
    name: String,
    failure: Failure,
}

impl Model for PyModel {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn input_gradients(&mut self, request: &GradRequest<'_>) -> vog_core::Result<GradOutput> {
        let rows = request.input.rows();
        Python::attach(|py| {
            let fail = |e| fail(&self.failure, &self.name, py, e);
            // Ctrl-C while the engine waited for the GIL is seen here, before more work starts.
            py.check_signals().map_err(fail)?;
            let x = to_numpy(py, request.input.data(), request.input.shape()).map_err(fail)?;
            let classes = match request.classes {
                Classes::Given(c) => to_numpy_i64(py, c).map_err(fail)?,
                Classes::Argmax => py.None().into_bound(py),
            };
            let target = match request.target {
                Target::Logit => "logit",
                Target::Probability => "probability",
            };
            let answer = self
                .object
                .bind(py)
                .call_method1("input_gradients", (x, classes, target))
                .map_err(fail)?;
            let parts: Vec<Bound<'_, PyAny>> = answer
                .extract()
                .map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(
                        "input_gradients must return (logits, gradient) or (logits, gradient, classes)",
                    )
                })
                .map_err(fail)?;
            if !(2..=3).contains(&parts.len()) {
                return Err(fail(pyo3::exceptions::PyTypeError::new_err(format!(
                    "input_gradients returned {} values; expected (logits, gradient) or \
                     (logits, gradient, classes)",
                    parts.len()
                ))));
            }
            let (logit_shape, logits) = read_f32(&parts[0], "logits").map_err(fail)?;
            let (grad_shape, gradient) = read_f32(&parts[1], "gradient").map_err(fail)?;
            if logit_shape.len() != 2 || logit_shape[0] != rows {
                return Err(vog_core::Error::Shape(format!(
                    "{} backend returned logits shaped {logit_shape:?} for a batch of {rows}",
                    self.name
                )));
            }
            if grad_shape.first() != Some(&rows) {
                return Err(vog_core::Error::Shape(format!(
                    "{} backend returned a gradient shaped {grad_shape:?} for a batch of {rows}",
                    self.name
                )));
            }
            let num_classes = logit_shape[1];
            let row_shape = &grad_shape[1..];
            let gradient_shape =
                (row_shape != &request.input.shape()[1..]).then(|| row_shape.to_vec());
            let returned = match parts.get(2) {
                Some(c) if !c.is_none() => Some(
                    c.call_method0("tolist")
                        .and_then(|l| l.extract::<Vec<i64>>())
                        .or_else(|_| c.extract::<Vec<i64>>())
                        .map_err(fail)?,
                ),
                _ => None,
            };
            let classes: Vec<u32> = match (returned, request.classes) {
                (Some(c), _) => c
                    .iter()
                    .map(|&v| u32::try_from(v))
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        vog_core::Error::Shape(format!(
                            "{} backend returned a negative or huge class index",
                            self.name
                        ))
                    })?,
                (None, Classes::Given(c)) => c.to_vec(),
                (None, Classes::Argmax) => first_argmax(&logits, num_classes.max(1)),
            };
            Ok(GradOutput {
                logits,
                num_classes,
                gradient: gradient.into(),
                gradient_shape,
                classes,
            })
        })
    }
}

/// The first maximum of each row of `logits` (NaN never wins).
fn first_argmax(logits: &[f32], width: usize) -> Vec<u32> {
    logits
        .chunks(width)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}
