//! What a backend is checked on: inputs, labels, checkpoints and the reference answers for them.

use std::path::{Path, PathBuf};

use vog_core::Target;

use crate::compare::{labels, npy};

/// The tolerance of a [`Case`] unless set: 10⁻⁵ of the reference's largest magnitude.
pub const DEFAULT_TOLERANCE: f64 = 1e-5;

/// Which class a request differentiates, per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The case's labels ([`Classes::Given`](vog_core::Classes::Given)).
    Labels,
    /// Each row's own argmax ([`Classes::Argmax`](vog_core::Classes::Argmax)).
    Argmax,
}

impl Pick {
    /// `labels` or `argmax`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Pick::Labels => "labels",
            Pick::Argmax => "argmax",
        }
    }
}

/// One request of a [`Case`]: a checkpoint, the class choice and the target, and the reference
/// answers the backend's must match (from an independent source such as PyTorch autograd).
///
/// A reference file that is named but missing fails the check; a request without reference
/// files is still run, validated, and compared across [`Subject`](crate::Subject)s by
/// [`check_plugin_equivalence`](crate::check_plugin_equivalence).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Which class is differentiated.
    pub pick: Pick,
    /// Logit or probability.
    pub target: Target,
    /// `.npy` of the expected input gradients, `[rows, …]` (shaped like the input, or like the
    /// tensor a backend differentiates with respect to; see
    /// [`GradOutput::gradient_shape`](vog_core::GradOutput::gradient_shape)).
    pub gradient: Option<PathBuf>,
    /// `.npy` of the expected logits, `[rows, classes]`.
    pub logits: Option<PathBuf>,
}

impl Reference {
    /// A request on `checkpoint`, without reference files yet.
    pub fn new(checkpoint: impl Into<PathBuf>, pick: Pick, target: Target) -> Reference {
        Reference {
            checkpoint: checkpoint.into(),
            pick,
            target,
            gradient: None,
            logits: None,
        }
    }

    /// Sets the expected gradients.
    #[must_use]
    pub fn gradient(mut self, npy: impl Into<PathBuf>) -> Reference {
        self.gradient = Some(npy.into());
        self
    }

    /// Sets the expected logits.
    #[must_use]
    pub fn logits(mut self, npy: impl Into<PathBuf>) -> Reference {
        self.logits = Some(npy.into());
        self
    }

    /// `epoch_3.onnx, probability of labels`, for messages.
    pub fn label(&self) -> String {
        format!(
            "{}, {} of {}",
            file_name(&self.checkpoint),
            self.target.as_str(),
            self.pick.as_str()
        )
    }
}

/// The last component of a path, for messages.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

/// A model to check a backend on: inputs and labels (`.npy`), the requests with their references,
/// and the tolerance.
///
/// ```
/// use vog_conformance::{Case, Pick, Reference};
/// use vog_core::Target;
///
/// let case = Case::new("mlp", "golden/x.npy", "golden/y.npy")
///     .rows(8)
///     .reference(
///         Reference::new("ckpt/epoch_10.pt", Pick::Labels, Target::Logit)
///             .gradient("golden/grad_10_logit.npy")
///             .logits("golden/logits_10.npy"),
///     )
///     .tolerance(1e-6);
/// assert_eq!(case.references().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    name: String,
    input: PathBuf,
    labels: PathBuf,
    rows: Option<usize>,
    references: Vec<Reference>,
    tolerance: f64,
    wrong_row_shape: Option<Vec<usize>>,
}

/// A case's inputs and labels, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// Shape of the inputs, rows first.
    pub shape: Vec<usize>,
    /// The inputs, row-major.
    pub values: Vec<f32>,
    /// One class per row.
    pub labels: Vec<u32>,
}

impl Data {
    /// Values per row.
    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

impl Case {
    /// A case named `name` (for messages) on the inputs and labels of two `.npy` files.
    pub fn new(
        name: impl Into<String>,
        input: impl Into<PathBuf>,
        labels: impl Into<PathBuf>,
    ) -> Case {
        Case {
            name: name.into(),
            input: input.into(),
            labels: labels.into(),
            rows: None,
            references: Vec::new(),
            tolerance: DEFAULT_TOLERANCE,
            wrong_row_shape: None,
        }
    }

    /// Uses only the first `rows` rows of the inputs and labels (all of them by default).
    #[must_use]
    pub fn rows(mut self, rows: usize) -> Case {
        self.rows = Some(rows);
        self
    }

    /// Adds a request. Requests run in order; consecutive requests on the same checkpoint share
    /// one loaded model.
    #[must_use]
    pub fn reference(mut self, reference: Reference) -> Case {
        self.references.push(reference);
        self
    }

    /// The largest accepted error, relative to the reference's largest magnitude (gradients and
    /// logits); [`DEFAULT_TOLERANCE`] by default.
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Case {
        self.tolerance = tolerance;
        self
    }

    /// The shape of one row of the ill-fitting input [`check_errors`](crate::check_errors) sends
    /// (by default the row flattened, with three values more).
    #[must_use]
    pub fn wrong_row_shape(mut self, shape: Vec<usize>) -> Case {
        self.wrong_row_shape = Some(shape);
        self
    }

    /// The case's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The requests, in order.
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// The tolerance set by [`Case::tolerance`].
    pub fn max_error(&self) -> f64 {
        self.tolerance
    }

    /// The row shape of the ill-fitting input for rows of `row_len` values (see
    /// [`Case::wrong_row_shape`]).
    pub fn wrong_row_shape_for(&self, row_len: usize) -> Vec<usize> {
        self.wrong_row_shape
            .clone()
            .unwrap_or_else(|| vec![row_len + 3])
    }

    /// The first checkpoint of the requests; `check` names the caller in the panic message.
    pub(crate) fn first_checkpoint(&self, check: &str) -> &Path {
        &self
            .references
            .first()
            .unwrap_or_else(|| panic!("{check}: case {} has no requests", self.name))
            .checkpoint
    }

    /// Reads the inputs and labels (the first [`rows`](Case::rows) of them).
    ///
    /// # Panics
    ///
    /// When a file is missing or unreadable, when there are fewer rows than asked for, or when
    /// inputs and labels disagree in length.
    pub fn data(&self) -> Data {
        let (mut shape, mut values) = npy(&self.input);
        let mut labels = labels(&self.labels);
        assert!(
            shape.first().is_some_and(|&rows| rows > 0),
            "vog-conformance: case {}: {} holds no rows",
            self.name,
            self.input.display()
        );
        if let Some(rows) = self.rows {
            assert!(
                rows <= shape[0] && rows <= labels.len(),
                "vog-conformance: case {}: {rows} rows asked for, {} has {} and {} has {}",
                self.name,
                self.input.display(),
                shape[0],
                self.labels.display(),
                labels.len()
            );
            let row_len: usize = shape[1..].iter().product();
            shape[0] = rows;
            values.truncate(rows * row_len);
            labels.truncate(rows);
        }
        assert_eq!(
            labels.len(),
            shape[0],
            "vog-conformance: case {}: {} rows of inputs, {} labels",
            self.name,
            shape[0],
            labels.len()
        );
        Data {
            shape,
            values,
            labels,
        }
    }
}
