//! `check_gradients`: a backend's logits and input gradients against reference answers.

use std::path::Path;

use vog_core::{Classes, GradOutput, GradRequest, Model, TensorView};

use crate::case::{file_name, Case, Data, Pick, Reference};
use crate::compare::{first_bit_difference, npy, worst};
use crate::subject::Subject;

const CHECK: &str = "check_gradients";

/// What [`check_gradients`] saw: each request's label and the backend's answer, in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// `(request label, answer)` per request of the case.
    pub outputs: Vec<(String, GradOutput)>,
}

impl Gradients {
    /// Number of answers.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Asserts that `other` holds the same answers bit for bit (logits, gradients, their shapes
    /// and the classes used).
    ///
    /// # Panics
    ///
    /// At the first difference, naming `what`, the request and the element.
    pub fn assert_identical(&self, other: &Gradients, what: &str) {
        self.compare(other, what, None);
    }

    /// Asserts that `other` holds the same answers, bit for bit except the gradients, which may
    /// differ by `tolerance` relative to the largest magnitude of `self`'s (two kernels summing
    /// in different orders).
    ///
    /// # Panics
    ///
    /// At the first difference, naming `what`, the request and the element.
    pub fn assert_agree(&self, other: &Gradients, what: &str, tolerance: f64) {
        self.compare(other, what, Some(tolerance));
    }

    fn compare(&self, other: &Gradients, what: &str, tolerance: Option<f64>) {
        assert_eq!(
            self.outputs.len(),
            other.outputs.len(),
            "{what}: {} answers versus {}",
            self.outputs.len(),
            other.outputs.len()
        );
        for ((label, a), (_, b)) in self.outputs.iter().zip(&other.outputs) {
            let diff = first_bit_difference(&a.logits, &b.logits, f32::to_bits)
                .map(|d| format!("logits differ at {d}"))
                .or_else(|| match tolerance {
                    None => first_bit_difference(&a.gradient, &b.gradient, f32::to_bits)
                        .map(|d| format!("gradients differ at {d}")),
                    Some(t) => {
                        let w = worst(&b.gradient, &a.gradient);
                        (!w.within(t)).then(|| {
                            let row = a.gradient.len() / a.classes.len().max(1);
                            format!("gradients differ by more than {t:e}: {}", w.describe(row))
                        })
                    }
                })
                .or_else(|| {
                    (a.num_classes != b.num_classes)
                        .then(|| format!("{} classes versus {}", a.num_classes, b.num_classes))
                })
                .or_else(|| {
                    (a.gradient_shape != b.gradient_shape).then(|| {
                        format!(
                            "gradient shapes {:?} versus {:?}",
                            a.gradient_shape, b.gradient_shape
                        )
                    })
                })
                .or_else(|| {
                    (a.classes != b.classes)
                        .then(|| format!("classes {:?} versus {:?}", a.classes, b.classes))
                });
            if let Some(diff) = diff {
                panic!("{what}: {label}: {diff}");
            }
        }
    }
}

/// Runs every request of `case` through the backend and checks each answer:
///
/// * it passes [`GradOutput::validate`] (sizes, class indices, finite values);
/// * the classes used are the labels given, or each row's first maximal logit for
///   [`Pick::Argmax`];
/// * `gradient_shape` is `None` when the gradient is shaped like the input (and only then);
/// * the gradient and the logits match their reference files within the case's tolerance,
///   relative to the reference's largest magnitude, and have the reference's shape.
///
/// Returns the answers, for [`Gradients::assert_identical`].
///
/// # Panics
///
/// On the first failure: the message starts with `check_gradients`, the subject and the case, and
/// names the request (checkpoint, target, classes), the row and element, and the numbers.
pub fn check_gradients(subject: &Subject, case: &Case) -> Gradients {
    let backend = subject.backend(CHECK);
    let data = case.data();
    let input = TensorView::new(&data.shape, &data.values)
        .unwrap_or_else(|e| panic!("{CHECK}: case {}: {e}", case.name()));
    assert!(
        !case.references().is_empty(),
        "{CHECK}: case {} has no requests: nothing would be checked",
        case.name()
    );
    let mut outputs = Vec::new();
    let mut loaded: Option<(&Path, Box<dyn Model>)> = None;
    for r in case.references() {
        let at = format!(
            "{CHECK}: {}, case {}, {}",
            subject.label(),
            case.name(),
            r.label()
        );
        if loaded.as_ref().is_none_or(|(p, _)| *p != r.checkpoint) {
            let m = backend
                .load(&r.checkpoint)
                .unwrap_or_else(|e| panic!("{at}: loading {}: {e}", r.checkpoint.display()));
            loaded = Some((&r.checkpoint, m));
        }
        let Some((_, model)) = loaded.as_mut() else {
            unreachable!("a model was just loaded")
        };
        let request = GradRequest {
            input,
            classes: match r.pick {
                Pick::Labels => Classes::Given(&data.labels),
                Pick::Argmax => Classes::Argmax,
            },
            target: r.target,
        };
        let out = model
            .input_gradients(&request)
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        check_answer(&at, r, &data, &request, &out, case.max_error());
        outputs.push((r.label(), out));
    }
    Gradients { outputs }
}

/// The checks of one answer (see [`check_gradients`]).
fn check_answer(
    at: &str,
    r: &Reference,
    data: &Data,
    request: &GradRequest<'_>,
    out: &GradOutput,
    tolerance: f64,
) {
    out.validate(request)
        .unwrap_or_else(|e| panic!("{at}: the answer does not validate: {e}"));
    let rows = data.shape[0];
    let c = out.num_classes;
    for row in 0..rows {
        let want = match r.pick {
            Pick::Labels => data.labels[row],
            Pick::Argmax => first_max(&out.logits[row * c..(row + 1) * c]),
        };
        assert_eq!(
            out.classes[row],
            want,
            "{at}: row {row} used class {} instead of {want} ({})",
            out.classes[row],
            match r.pick {
                Pick::Labels => "the label given",
                Pick::Argmax => "the first maximum of its own logits",
            }
        );
    }
    let input_row = &data.shape[1..];
    if out.gradient_shape.as_deref() == Some(input_row) {
        panic!(
            "{at}: gradient_shape is Some({input_row:?}), the input's row shape: it must be None \
             when the gradient is shaped like the input"
        );
    }
    let gradient_row = out.gradient_shape.as_deref().unwrap_or(input_row);
    if let Some(path) = &r.gradient {
        let (shape, want) = npy(path);
        assert!(
            shape.first() == Some(&rows) && shape[1..] == *gradient_row,
            "{at}: the reference {} has shape {shape:?}, the answer's gradient is [{rows}] + \
             {gradient_row:?}",
            file_name(path)
        );
        let w = worst(&out.gradient, &want);
        assert!(
            w.within(tolerance),
            "{at}: gradient {}; tolerance {tolerance:e} (reference {})",
            w.describe(gradient_row.iter().product()),
            file_name(path)
        );
    }
    if let Some(path) = &r.logits {
        let (shape, want) = npy(path);
        assert_eq!(
            shape,
            [rows, c],
            "{at}: the reference {} has shape {shape:?}, the answer has {rows} rows of {c} logits",
            file_name(path)
        );
        let w = worst(&out.logits, &want);
        assert!(
            w.within(tolerance),
            "{at}: logits {}; tolerance {tolerance:e} (reference {})",
            w.describe(c),
            file_name(path)
        );
    }
}

/// The index of the first largest value.
pub(crate) fn first_max(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_max_takes_the_first_of_ties() {
        assert_eq!(super::first_max(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(super::first_max(&[5.0]), 0);
    }
}
