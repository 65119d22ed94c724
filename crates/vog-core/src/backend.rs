//! The interface every gradient backend implements.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Floats, Result, TensorView};

/// What the gradient is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The pre-softmax score of the chosen class (the paper's definition).
    #[default]
    Logit,
    /// The softmax probability of the chosen class (what the reference toy script does).
    Probability,
}

impl Target {
    /// The name used in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Logit => "logit",
            Target::Probability => "probability",
        }
    }
}

/// How the backend picks the class whose score is differentiated, per row.
#[derive(Debug, Clone, Copy)]
pub enum Classes<'a> {
    /// One class index per row, chosen by the caller (true labels, or labels fixed earlier).
    Given(&'a [u32]),
    /// The argmax of this checkpoint's own logits (first maximum on ties).
    Argmax,
}

/// Checks that every class index fits a model with `num_classes` outputs; the error names the
/// first row that does not.
pub fn check_classes(classes: &[u32], num_classes: usize) -> Result<()> {
    match classes
        .iter()
        .enumerate()
        .find(|(_, &c)| c as usize >= num_classes)
    {
        Some((row, &class)) => Err(Error::ClassOutOfRange {
            class,
            num_classes,
            row,
        }),
        None => Ok(()),
    }
}

/// One batch of work for [`Model::input_gradients`].
#[derive(Debug, Clone, Copy)]
pub struct GradRequest<'a> {
    /// Inputs, shaped `[B, …]` as the model expects them.
    pub input: TensorView<'a>,
    /// Which class to differentiate, per row.
    pub classes: Classes<'a>,
    /// Logit or softmax probability.
    pub target: Target,
}

/// What a backend returns for one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct GradOutput {
    /// Pre-softmax scores, `[B, num_classes]`, row-major.
    pub logits: Vec<f32>,
    /// Number of classes (columns of `logits`).
    pub num_classes: usize,
    /// Gradient of each row's target with respect to that row's input (or, see `gradient_shape`,
    /// with respect to an intermediate tensor), row-major.
    pub gradient: Floats,
    /// Shape of one row of the gradient when it differs from the input's (a backend that
    /// differentiates with respect to an intermediate tensor, such as a text model's embedding
    /// output); `None` means "shaped like the input".
    pub gradient_shape: Option<Vec<usize>>,
    /// The class differentiated for each row (the given class, or the argmax).
    pub classes: Vec<u32>,
}

impl GradOutput {
    /// Checks that the output is consistent with the request it answers: sizes, class indices, and
    /// finite values. Engines call this on every backend answer so that a faulty backend is reported
    /// at its source instead of corrupting statistics.
    pub fn validate(&self, request: &GradRequest<'_>) -> Result<()> {
        self.validate_structure(request)?;
        check_finite(
            "gradient",
            &self.gradient,
            self.gradient_row_len(request).max(1),
        )
    }

    /// [`validate`](Self::validate) without scanning the gradient's values: sizes, class indices
    /// and finite logits. For callers that check the gradient with [`check_finite`] where they
    /// read it anyway (vog's engine does so on its statistics thread).
    pub fn validate_structure(&self, request: &GradRequest<'_>) -> Result<()> {
        let rows = request.input.rows();
        if self.num_classes == 0 || self.logits.len() != rows * self.num_classes {
            return Err(Error::Shape(format!(
                "backend returned {} logits for {rows} rows and {} classes",
                self.logits.len(),
                self.num_classes
            )));
        }
        match &self.gradient_shape {
            None if self.gradient.len() != request.input.data().len() => {
                return Err(Error::Shape(format!(
                    "backend returned a gradient of {} values for an input of {} values (shape {:?})",
                    self.gradient.len(),
                    request.input.data().len(),
                    request.input.shape()
                )));
            }
            Some(shape) if self.gradient.len() != rows * shape.iter().product::<usize>() => {
                return Err(Error::Shape(format!(
                    "backend returned a gradient of {} values for {rows} rows of shape {shape:?}",
                    self.gradient.len()
                )));
            }
            _ => {}
        }
        if self.classes.len() != rows {
            return Err(Error::Shape(format!(
                "backend returned {} classes for {rows} rows",
                self.classes.len()
            )));
        }
        check_classes(&self.classes, self.num_classes)?;
        check_finite("logits", &self.logits, self.num_classes)
    }

    /// Values per example of the gradient answering `request`.
    pub fn gradient_row_len(&self, request: &GradRequest<'_>) -> usize {
        match &self.gradient_shape {
            Some(s) => s.iter().product::<usize>(),
            None => request.input.row_len(),
        }
    }
}

/// Returns an error naming the first NaN or infinite value of `values`, seen as rows of `row_len`.
pub fn check_finite(what: &'static str, values: &[f32], row_len: usize) -> Result<()> {
    // A branch-free scan first (it vectorizes): an all-ones exponent is NaN or infinity.
    let bad = values.iter().fold(0u32, |acc, v| {
        acc | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
    });
    if bad == 0 {
        return Ok(());
    }
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            what,
            row: i / row_len,
            element: i % row_len,
        }),
    }
}

/// The worse of two errors for a self-test or conformance check, where NaN wins: an error that
/// could not be measured (a NaN or infinite gradient or logit) fails the check. `f64::max` would
/// drop the NaN and let a broken backend pass.
pub fn worst_error(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Whether a worst error is within `tolerance` (NaN never is).
pub fn within_tolerance(worst: f64, tolerance: f64) -> bool {
    !worst.is_nan() && worst <= tolerance
}

/// Identity of a backend, shown by `vog` in manifests and listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Short name (`candle`, `onnx`, `torch`).
    pub name: String,
    /// The backend's own version.
    pub version: String,
    /// File extensions of the checkpoints it loads, without dots (`safetensors`).
    pub extensions: Vec<String>,
    /// Devices it can compute on (`cpu`, `cuda:0`).
    #[serde(default)]
    pub devices: Vec<String>,
}

/// What a loaded checkpoint can say about itself before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Expected shape of one example, when the model fixes it (`[784]`, `[3, 32, 32]`).
    /// `None` when only running the model can tell.
    pub input_shape: Option<Vec<usize>>,
    /// Number of output classes, when known without running the model.
    pub num_classes: Option<usize>,
    /// Where a 3-D example keeps its colour channels, when the model's first layers say
    /// (`First` for a convolution reading the input as it comes, `Last` for one reading it
    /// through a channels-last-to-first transpose); `scoring.channel_axis = "auto"` follows it.
    #[serde(default)]
    pub channel_axis: Option<crate::ChannelAxis>,
}

/// A source of input gradients: loads checkpoints, each of which turns a batch into logits and the
/// gradient of one class score per row with respect to the input.
///
/// # Design
///
/// * **Two levels.** A backend instance holds what all checkpoints share (options, thread pools,
///   a runtime environment); [`GradientBackend::load`] returns one [`Model`] per checkpoint file.
///   The engine keeps several models alive at once and streams batches through them, so a backend
///   must not assume that only one model exists.
/// * **Input gradients only.** A backend differentiates the target with respect to the input and
///   nothing else: it must not request, compute or keep weight gradients. This is what makes VoG
///   affordable, and it is part of the contract, not an optimisation.
/// * **Class choice lives in the request.** The true-label and fixed-prediction modes pass
///   [`Classes::Given`]; the per-checkpoint prediction mode passes [`Classes::Argmax`], and the
///   backend reports the classes it used in [`GradOutput::classes`]. One forward and one backward
///   pass per batch in every mode.
/// * **Plain data at the boundary.** Requests and answers are row-major `f32` buffers with
///   shapes, never framework tensors, so that the same trait can be carried over a C ABI to
///   plugins written against other runtimes.
/// * **Object safe, fallible.** The engine holds `Box<dyn GradientBackend>` and every call returns
///   [`Result`]; a backend reports bad checkpoints and shape mismatches as errors that name the
///   file and the shapes involved, and never panics on input it was given.
///
/// # Example
///
/// ```
/// use std::path::Path;
/// use vog_core::{BackendInfo, Classes, GradOutput, GradRequest, GradientBackend, Model, Result};
///
/// /// A "model" whose logit for class c is c * sum(x): the gradient of class c is c everywhere.
/// struct Toy;
/// struct ToyModel;
///
/// impl GradientBackend for Toy {
///     fn info(&self) -> BackendInfo {
///         BackendInfo { name: "toy".into(), version: "0".into(), extensions: vec![], devices: vec![] }
///     }
///     fn load(&self, _checkpoint: &Path) -> Result<Box<dyn Model>> {
///         Ok(Box::new(ToyModel))
///     }
/// }
///
/// impl Model for ToyModel {
///     fn input_gradients(&mut self, req: &GradRequest<'_>) -> Result<GradOutput> {
///         let (rows, width) = (req.input.rows(), req.input.row_len());
///         let mut logits = Vec::new();
///         for r in 0..rows {
///             let s: f32 = req.input.data()[r * width..(r + 1) * width].iter().sum();
///             logits.extend([0.0, s, 2.0 * s]);
///         }
///         let classes = match req.classes {
///             Classes::Given(c) => c.to_vec(),
///             Classes::Argmax => vec![2; rows],
///         };
///         let gradient: Vec<f32> = classes.iter().flat_map(|&c| vec![c as f32; width]).collect();
///         Ok(GradOutput { logits, num_classes: 3, gradient: gradient.into(), gradient_shape: None, classes })
///     }
/// }
///
/// let backend: Box<dyn GradientBackend> = Box::new(Toy);
/// let mut model = backend.load(Path::new("unused"))?;
/// let x = [1.0f32, 2.0, 3.0, 4.0];
/// let input = vog_core::TensorView::new(&[2, 2], &x)?;
/// let req = GradRequest { input, classes: Classes::Given(&[1, 2]), target: vog_core::Target::Logit };
/// let out = model.input_gradients(&req)?;
/// out.validate(&req)?;
/// assert_eq!(*out.gradient, [1.0, 1.0, 2.0, 2.0]);
/// # Ok::<(), vog_core::Error>(())
/// ```
pub trait GradientBackend: Send + Sync {
    /// Name, version and the checkpoint formats this backend reads.
    fn info(&self) -> BackendInfo;

    /// Loads one checkpoint. Errors name the file and what is wrong with it.
    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>>;
}

/// One loaded checkpoint.
pub trait Model: Send {
    /// Input shape and class count, where the checkpoint fixes them.
    fn info(&self) -> ModelInfo {
        ModelInfo::default()
    }

    /// Runs one forward and one backward pass over a batch: logits for every row and the gradient
    /// of each row's target (see [`Target`]) with respect to that row's input.
    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput>;

    /// Examples per call this model runs best at for rows shaped `row_shape`, where it knows
    /// better than the engine's automatic size (`None`, the default, takes that). A memory
    /// budget can still lower it; a configured `batch_size` always wins.
    fn preferred_batch(&self, row_shape: &[usize]) -> Option<usize> {
        let _ = row_shape;
        None
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_nan_error_is_the_worst_and_never_within_tolerance() {
        assert_eq!(worst_error(0.1, 0.3), 0.3);
        assert!(worst_error(0.1, f64::NAN).is_nan());
        assert!(worst_error(f64::NAN, 0.1).is_nan());
        let errors = [1e-4, f64::NAN, 2e-4];
        let worst = errors.iter().fold(0.0, |w, &e| worst_error(w, e));
        assert!(!within_tolerance(worst, 1e-3), "NaN passed");
        assert!(!within_tolerance(f64::INFINITY, 1e-3));
        assert!(within_tolerance(2e-4, 1e-3));
        // What `f64::max` would have said.
        assert!(errors.iter().fold(0.0f64, |w, &e| w.max(e)) <= 1e-3);
    }

    use super::*;

    fn request<'a>(input: TensorView<'a>) -> GradRequest<'a> {
        GradRequest {
            input,
            classes: Classes::Argmax,
            target: Target::Logit,
        }
    }

    #[test]
    fn validate_rejects_wrong_sizes_classes_and_nan() {
        let x = [0.0f32; 4];
        let input = TensorView::new(&[2, 2], &x).unwrap();
        let good = GradOutput {
            logits: vec![0.0; 6],
            num_classes: 3,
            gradient: vec![0.0; 4].into(),
            gradient_shape: None,
            classes: vec![0, 2],
        };
        good.validate(&request(input)).unwrap();

        let mut bad = good.clone();
        bad.gradient = vec![0.0; 3].into();
        assert!(matches!(
            bad.validate(&request(input)),
            Err(Error::Shape(_))
        ));

        let mut bad = good.clone();
        bad.classes[1] = 3;
        assert!(matches!(
            bad.validate(&request(input)),
            Err(Error::ClassOutOfRange {
                class: 3,
                num_classes: 3,
                row: 1
            })
        ));

        let mut other = good.clone();
        other.gradient_shape = Some(vec![3]);
        assert!(matches!(
            other.validate(&request(input)),
            Err(Error::Shape(_))
        ));
        other.gradient = vec![0.0; 6].into();
        other.validate(&request(input)).unwrap();

        let mut bad = good.clone();
        bad.gradient = vec![0.0, 0.0, 0.0, f32::NAN].into();
        assert!(matches!(
            bad.validate(&request(input)),
            Err(Error::NonFinite {
                what: "gradient",
                row: 1,
                element: 1
            })
        ));
    }
}
