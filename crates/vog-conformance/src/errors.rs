//! `check_errors`: every error path a backend must take, and how NaN inputs come out.

use std::path::Path;

use vog_core::{batch_shape_string, Classes, Error, GradOutput, GradRequest, Target, TensorView};

use crate::case::{file_name, Case, Data};
use crate::compare::worst;
use crate::subject::Subject;

const CHECK: &str = "check_errors";

/// The unknown option [`check_errors`] adds to the subject's options.
pub const UNKNOWN_OPTION: &str = "vog_conformance_unknown_option";

/// What became of a batch with a NaN in one row (see [`check_errors`]).
#[derive(Debug)]
pub enum NanInput {
    /// The backend refused the batch with an error.
    Refused(Error),
    /// The backend answered; [`GradOutput::validate`] finds the non-finite value, in the NaN's row.
    Flagged(Error),
    /// The backend answered with finite values only.
    Absorbed,
}

/// What [`check_errors`] saw, error by error.
#[derive(Debug)]
pub struct Errors {
    /// An input whose rows do not fit the model ([`Error::Shape`]).
    pub shape: Error,
    /// Class `num_classes` for the last row, valid classes elsewhere ([`Error::ClassOutOfRange`]).
    pub class_last_row: Error,
    /// Class `u32::MAX` for every row ([`Error::ClassOutOfRange`] naming row 0).
    pub class_first_row: Error,
    /// A checkpoint file that does not exist ([`Error::Checkpoint`] or [`Error::Io`]).
    pub missing: Error,
    /// The first half of a real checkpoint ([`Error::Checkpoint`]).
    pub damaged: Error,
    /// The subject's options with [`UNKNOWN_OPTION`] added ([`Error::Config`]).
    pub options: Error,
    /// A batch with a NaN in one row.
    pub nan: NanInput,
    /// The temporary directory the missing and damaged files were in, replaced by `<tmp>` in
    /// [`Errors::messages`].
    tmp: String,
}

impl Errors {
    /// Every message, in field order, with the temporary directory written `<tmp>`: what
    /// [`check_plugin_equivalence`](crate::check_plugin_equivalence) compares.
    pub fn messages(&self) -> Vec<String> {
        let nan = match &self.nan {
            NanInput::Refused(e) => format!("refused: {e}"),
            NanInput::Flagged(e) => format!("flagged: {e}"),
            NanInput::Absorbed => "absorbed".to_string(),
        };
        [
            &self.shape,
            &self.class_last_row,
            &self.class_first_row,
            &self.missing,
            &self.damaged,
            &self.options,
        ]
        .iter()
        .map(|e| e.to_string())
        .chain([nan])
        .map(|m| m.replace(&self.tmp, "<tmp>"))
        .collect()
    }
}

/// Provokes every error a backend must report, on the case's first checkpoint and inputs, and
/// checks what comes back:
///
/// * rows of another shape ([`Case::wrong_row_shape`]): [`Error::Shape`], naming that shape
///   (`[N, 23]` or `[23]`);
/// * a class index equal to the number of classes in the last row, and `u32::MAX` in every row:
///   [`Error::ClassOutOfRange`] with the class, the model's class count and the first bad row;
/// * a checkpoint that does not exist: [`Error::Checkpoint`] or [`Error::Io`] naming the file;
/// * a checkpoint cut to half its length: [`Error::Checkpoint`] naming the file;
/// * an unknown key in the options: [`Error::Config`] naming the key;
/// * a NaN in one row: an error, or an answer whose [`GradOutput::validate`] reports the
///   non-finite value in that row, or finite values; in the last two cases the other rows are
///   those of the same batch without the NaN (rows never influence each other).
///
/// # Panics
///
/// On the first failure: the message starts with `check_errors`, the subject and the case, and
/// says which error path and what came back instead.
pub fn check_errors(subject: &Subject, case: &Case) -> Errors {
    let at = format!("{CHECK}: {}, case {}", subject.label(), case.name());
    let backend = subject.backend(CHECK);
    let checkpoint = case.first_checkpoint(CHECK);
    let data = case.data();
    let rows = data.shape[0];
    let mut model = backend
        .load(checkpoint)
        .unwrap_or_else(|e| panic!("{at}: loading {}: {e}", checkpoint.display()));
    let input = TensorView::new(&data.shape, &data.values).expect("the case's shape");
    let request = |classes, target| GradRequest {
        input,
        classes,
        target,
    };
    let clean_request = request(Classes::Given(&data.labels), Target::Logit);
    let clean = model
        .input_gradients(&clean_request)
        .unwrap_or_else(|e| panic!("{at}: a valid request failed: {e}"));
    clean
        .validate(&clean_request)
        .unwrap_or_else(|e| panic!("{at}: a valid request's answer does not validate: {e}"));
    let num_classes = clean.num_classes;

    // Rows of another shape.
    let wrong_row = case.wrong_row_shape_for(data.row_len());
    let wrong_shape: Vec<usize> = [2].into_iter().chain(wrong_row.iter().copied()).collect();
    let wrong = vec![0.5f32; wrong_shape.iter().product()];
    let e = model
        .input_gradients(&GradRequest {
            input: TensorView::new(&wrong_shape, &wrong).expect("a consistent shape"),
            classes: Classes::Argmax,
            target: Target::Logit,
        })
        .err()
        .unwrap_or_else(|| panic!("{at}: rows shaped {wrong_row:?} were accepted"));
    let (batch, plain) = (batch_shape_string(&wrong_row), format!("{wrong_row:?}"));
    assert!(
        matches!(e, Error::Shape(_)),
        "{at}: rows shaped {wrong_row:?}: expected a shape error, got: {e}"
    );
    assert!(
        e.to_string().contains(&batch) || e.to_string().contains(&plain),
        "{at}: rows shaped {wrong_row:?}: the shape error names neither {batch} nor {plain}: {e}"
    );
    let shape = e;

    // Classes out of range: at the boundary in the last row, and far out in every row.
    let mut classes = data.labels.clone();
    classes[rows - 1] = num_classes as u32;
    let class_last_row = class_error(
        &at,
        &mut *model,
        request(Classes::Given(&classes), Target::Logit),
    );
    expect_class(
        &at,
        &class_last_row,
        num_classes as u32,
        num_classes,
        rows - 1,
    );
    let far = vec![u32::MAX; rows];
    let class_first_row = class_error(
        &at,
        &mut *model,
        request(Classes::Given(&far), Target::Probability),
    );
    expect_class(&at, &class_first_row, u32::MAX, num_classes, 0);

    // Missing and damaged checkpoints.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{at}: a temporary directory: {e}"));
    let ext = checkpoint
        .extension()
        .map_or_else(String::new, |x| format!(".{}", x.to_string_lossy()));
    let missing_path = dir.path().join(format!("missing_checkpoint{ext}"));
    let missing = load_error(&at, &*backend, &missing_path, "a missing checkpoint");
    assert!(
        matches!(missing, Error::Checkpoint { .. } | Error::Io { .. }),
        "{at}: a missing checkpoint: expected a checkpoint or I/O error, got: {missing}"
    );
    let damaged_path = dir.path().join(format!("damaged_checkpoint{ext}"));
    let bytes = std::fs::read(checkpoint)
        .unwrap_or_else(|e| panic!("{at}: reading {}: {e}", checkpoint.display()));
    std::fs::write(&damaged_path, &bytes[..bytes.len() / 2])
        .unwrap_or_else(|e| panic!("{at}: writing {}: {e}", damaged_path.display()));
    let damaged = load_error(&at, &*backend, &damaged_path, "half a checkpoint");
    assert!(
        matches!(damaged, Error::Checkpoint { .. }),
        "{at}: half a checkpoint: expected a checkpoint error, got: {damaged}"
    );

    // An unknown option, ahead of the valid ones (so that it is a top-level key).
    let with_unknown = format!("{UNKNOWN_OPTION} = 1\n{}", subject.options());
    let options = match subject.try_create(&with_unknown) {
        Ok(_) => panic!("{at}: the unknown option `{UNKNOWN_OPTION}` was accepted"),
        Err(e) => e,
    };
    assert!(
        matches!(options, Error::Config(_)) && options.to_string().contains(UNKNOWN_OPTION),
        "{at}: an unknown option: expected a configuration error naming `{UNKNOWN_OPTION}`, \
         got: {options}"
    );

    let nan = nan_input(&at, &mut *model, &data, &clean, case.max_error());
    Errors {
        shape,
        class_last_row,
        class_first_row,
        missing,
        damaged,
        options,
        nan,
        tmp: dir.path().display().to_string(),
    }
}

/// The error a request with bad classes must give.
fn class_error(at: &str, model: &mut dyn vog_core::Model, request: GradRequest<'_>) -> Error {
    model.input_gradients(&request).err().unwrap_or_else(|| {
        panic!(
            "{at}: classes {:?} (target {}) were accepted",
            match request.classes {
                Classes::Given(c) => c,
                Classes::Argmax => &[],
            },
            request.target.as_str()
        )
    })
}

/// Asserts `e` is the class error expected.
fn expect_class(at: &str, e: &Error, class: u32, num_classes: usize, row: usize) {
    let ok = matches!(
        e,
        Error::ClassOutOfRange { class: c, num_classes: n, row: r }
            if *c == class && *n == num_classes && *r == row
    );
    assert!(
        ok,
        "{at}: class {class} in row {row} of a model with {num_classes} classes: expected \
         ClassOutOfRange {{ class: {class}, num_classes: {num_classes}, row: {row} }}, got: {e:?}"
    );
}

/// The error loading `path` must give; it must name the file.
fn load_error(at: &str, backend: &dyn vog_core::GradientBackend, path: &Path, what: &str) -> Error {
    let e = match backend.load(path) {
        Ok(_) => panic!("{at}: {what} ({}) loaded", path.display()),
        Err(e) => e,
    };
    assert!(
        e.to_string().contains(&file_name(path)),
        "{at}: {what}: the error does not name the file {}: {e}",
        file_name(path)
    );
    e
}

/// Sends the case's rows with a NaN in one of them (see [`check_errors`]).
fn nan_input(
    at: &str,
    model: &mut dyn vog_core::Model,
    data: &Data,
    clean: &GradOutput,
    tolerance: f64,
) -> NanInput {
    let rows = data.shape[0];
    let nan_row = rows.min(2) - 1;
    let row_len = data.row_len();
    let mut values = data.values.clone();
    values[nan_row * row_len] = f32::NAN;
    let request = GradRequest {
        input: TensorView::new(&data.shape, &values).expect("the case's shape"),
        classes: Classes::Given(&data.labels),
        target: Target::Logit,
    };
    let at = format!("{at}, a NaN in row {nan_row}");
    let out = match model.input_gradients(&request) {
        Err(e) => return NanInput::Refused(e),
        Ok(out) => out,
    };
    let outcome = match out.validate(&request) {
        Ok(()) => NanInput::Absorbed,
        Err(e @ Error::NonFinite { row, .. }) if row == nan_row => NanInput::Flagged(e),
        Err(e) => panic!("{at}: the answer does not validate, and not for the NaN's row: {e}"),
    };
    // The other rows are untouched by the NaN.
    let c = clean.num_classes;
    let g = clean.gradient.len() / rows;
    let others = |v: &[f32], width: usize| -> Vec<f32> {
        (0..rows)
            .filter(|&r| r != nan_row)
            .flat_map(|r| v[r * width..(r + 1) * width].iter().copied())
            .collect()
    };
    let (got, want) = (others(&out.logits, c), others(&clean.logits, c));
    let w = worst(&got, &want);
    assert!(
        w.within(tolerance),
        "{at}: the other rows' logits changed (rows renumbered without row {nan_row}): {}; \
         tolerance {tolerance:e}",
        w.describe(c)
    );
    let (got, want) = (others(&out.gradient, g), others(&clean.gradient, g));
    let w = worst(&got, &want);
    assert!(
        w.within(tolerance),
        "{at}: the other rows' gradients changed (rows renumbered without row {nan_row}): {}; \
         tolerance {tolerance:e}",
        w.describe(g)
    );
    outcome
}
