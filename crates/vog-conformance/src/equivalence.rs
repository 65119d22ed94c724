//! The whole suite on one subject, and `check_plugin_equivalence` between two.

use crate::case::Case;
use crate::engine::{check_vog_through_engine, Scores, VogCase};
use crate::errors::{check_errors, Errors};
use crate::gradients::{check_gradients, Gradients};
use crate::subject::Subject;

/// Everything [`run_suite`] saw of one subject.
#[derive(Debug)]
pub struct Observed {
    /// The answers of [`check_gradients`].
    pub gradients: Gradients,
    /// The runs of [`check_vog_through_engine`] (none without a [`VogCase`]).
    pub vog: Vec<Scores>,
    /// The errors of [`check_errors`].
    pub errors: Errors,
}

impl Observed {
    /// Asserts that `other` saw the same: answers and scores bit for bit, and the same error
    /// messages.
    ///
    /// # Panics
    ///
    /// At the first difference, naming `what` and where it is.
    pub fn assert_identical(&self, other: &Observed, what: &str) {
        self.gradients.assert_identical(&other.gradients, what);
        assert_eq!(self.vog.len(), other.vog.len(), "{what}: scoring runs");
        for (a, b) in self.vog.iter().zip(&other.vog) {
            a.assert_identical(b, what);
        }
        for (a, b) in self.errors.messages().iter().zip(other.errors.messages()) {
            assert_eq!(*a, b, "{what}: error messages differ");
        }
    }
}

/// Runs every check on one subject: [`check_gradients`] and [`check_errors`] on `case`, and
/// [`check_vog_through_engine`] on `vog` when given.
///
/// # Panics
///
/// As those checks do.
pub fn run_suite(subject: &Subject, case: &Case, vog: Option<&VogCase>) -> Observed {
    Observed {
        gradients: check_gradients(subject, case),
        vog: vog
            .map(|v| check_vog_through_engine(subject, v))
            .unwrap_or_default(),
        errors: check_errors(subject, case),
    }
}

/// Runs the whole suite ([`run_suite`]) on a backend in-process and on the same backend loaded
/// as a plugin, and asserts that both saw the same, bit for bit: the plugin boundary must change
/// nothing. Returns what each saw, in-process first.
///
/// # Panics
///
/// When a check fails for either subject, or at the first difference between them.
pub fn check_plugin_equivalence(
    in_process: &Subject,
    plugin: &Subject,
    case: &Case,
    vog: Option<&VogCase>,
) -> [Observed; 2] {
    let a = run_suite(in_process, case, vog);
    let b = run_suite(plugin, case, vog);
    a.assert_identical(
        &b,
        &format!(
            "check_plugin_equivalence: {} versus {}, case {}",
            in_process.label(),
            plugin.label(),
            case.name()
        ),
    );
    [a, b]
}
