//! `check_vog_through_engine`: whole scoring runs of `vog_engine::score` over a backend.

use std::path::{Path, PathBuf};

use vog_core::Target;
use vog_engine::{score, Config, LabelMode, RunResult, Silent};

use crate::compare::{first_bit_difference, json};
use crate::subject::Subject;

const CHECK: &str = "check_vog_through_engine";

/// Scoring runs to check: data, checkpoints, the label modes and targets to score with, and
/// optionally reference VoG.
///
/// The reference is a JSON file holding, under `"<labels>/<target>"` (`"true/probability"`),
/// each window's raw VoG per example: `{"all": {"raw": [..]}, "early": {"raw": [..]}, ..}`, the
/// layout `tests/data/golden/make_golden.py` writes.
///
/// ```
/// use vog_conformance::VogCase;
/// use vog_core::Target;
/// use vog_engine::LabelMode;
///
/// let vog = VogCase::new("mlp", "golden/x.npy", "golden/y.npy")
///     .checkpoints(["models/mlp/*.pt"])
///     .run(LabelMode::True, Target::Logit)
///     .run(LabelMode::Predicted, Target::Probability)
///     .reference("golden/vog.json")
///     .tolerance(1e-6);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VogCase {
    name: String,
    data: PathBuf,
    labels: PathBuf,
    checkpoints: Vec<String>,
    batch_size: usize,
    runs: Vec<(LabelMode, Target)>,
    reference: Option<PathBuf>,
    tolerance: f64,
}

impl VogCase {
    /// Scoring runs named `name` (for messages) on the examples and labels of two files.
    pub fn new(
        name: impl Into<String>,
        data: impl Into<PathBuf>,
        labels: impl Into<PathBuf>,
    ) -> Self {
        VogCase {
            name: name.into(),
            data: data.into(),
            labels: labels.into(),
            checkpoints: Vec::new(),
            batch_size: 5,
            runs: Vec::new(),
            reference: None,
            tolerance: 1e-5,
        }
    }

    /// The checkpoints, as `[checkpoints] paths` takes them: files, directories or glob patterns.
    #[must_use]
    pub fn checkpoints<P: AsRef<Path>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.checkpoints.extend(
            paths
                .into_iter()
                .map(|p| p.as_ref().to_string_lossy().into_owned()),
        );
        self
    }

    /// Examples per batch (5 by default: batches end inside the data).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Adds a run with a label mode and a target.
    #[must_use]
    pub fn run(mut self, labels: LabelMode, target: Target) -> Self {
        self.runs.push((labels, target));
        self
    }

    /// The reference VoG (see the type's documentation).
    #[must_use]
    pub fn reference(mut self, json: impl Into<PathBuf>) -> Self {
        self.reference = Some(json.into());
        self
    }

    /// The largest accepted error against the reference, relative to each reference value
    /// (10⁻⁵ by default).
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The case's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine configuration of one run, with `options` as `[backend.options]`.
    ///
    /// # Panics
    ///
    /// When the configuration is invalid or `options` is not TOML.
    pub fn config(&self, labels: LabelMode, target: Target, options: &str) -> Config {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let paths: Vec<String> = self.checkpoints.iter().map(|p| quote(p)).collect();
        let text = format!(
            "version = 1\n[data]\npath = {}\nlabels = {}\n[checkpoints]\npaths = [{}]\n\
             [backend]\nbatch_size = {}\n[scoring]\nlabels = \"{}\"\ntarget = \"{}\"\n",
            quote(&self.data.to_string_lossy()),
            quote(&self.labels.to_string_lossy()),
            paths.join(", "),
            self.batch_size,
            labels.as_str(),
            target.as_str()
        );
        let mut config = Config::from_toml(&text)
            .unwrap_or_else(|e| panic!("{CHECK}: case {}: configuration: {e}", self.name));
        config.backend.options = toml::from_str(options)
            .unwrap_or_else(|e| panic!("{CHECK}: case {}: options `{options}`: {e}", self.name));
        config
    }
}

/// One scoring run's results: per example, the class used and raw and normalized VoG per window.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The label mode.
    pub labels: LabelMode,
    /// The target.
    pub target: Target,
    /// Window names, in column order.
    pub windows: Vec<String>,
    /// One entry per example, in data order.
    pub rows: Vec<ExampleVog>,
}

/// One example's scores (see [`Scores`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleVog {
    /// Position in the data.
    pub row: usize,
    /// The class scored.
    pub label_used: Option<u32>,
    /// Raw VoG per window.
    pub vog: Vec<f64>,
    /// Class-normalized VoG per window.
    pub vog_norm: Vec<Option<f64>>,
}

impl Scores {
    /// The scores of an engine result.
    pub fn from_result(labels: LabelMode, target: Target, result: &RunResult) -> Scores {
        Scores {
            labels,
            target,
            windows: result.windows.iter().map(|w| w.name.clone()).collect(),
            rows: result
                .examples
                .iter()
                .map(|e| ExampleVog {
                    row: e.row,
                    label_used: e.label_used,
                    vog: e.vog.clone(),
                    vog_norm: e.vog_norm.clone(),
                })
                .collect(),
        }
    }

    /// `true/probability`, for messages and reference keys.
    pub fn key(&self) -> String {
        format!("{}/{}", self.labels.as_str(), self.target.as_str())
    }

    /// Asserts that `other` holds the same scores bit for bit.
    ///
    /// # Panics
    ///
    /// At the first difference, naming `what`, the run, the window and the row.
    pub fn assert_identical(&self, other: &Scores, what: &str) {
        let what = format!("{what}: {}", self.key());
        assert_eq!(self.windows, other.windows, "{what}: windows");
        assert_eq!(self.rows.len(), other.rows.len(), "{what}: examples");
        for (a, b) in self.rows.iter().zip(&other.rows) {
            let row = a.row;
            assert_eq!(
                (a.row, a.label_used),
                (b.row, b.label_used),
                "{what}: row {row}: row and class used"
            );
            if let Some(d) = first_bit_difference(&a.vog, &b.vog, f64::to_bits) {
                panic!("{what}: row {row}: raw VoG differs at window {d}");
            }
            let norm = |v: &[Option<f64>]| -> Vec<f64> {
                v.iter().map(|x| x.unwrap_or(f64::NEG_INFINITY)).collect()
            };
            if let Some(d) =
                first_bit_difference(&norm(&a.vog_norm), &norm(&b.vog_norm), f64::to_bits)
            {
                panic!("{what}: row {row}: normalized VoG differs at window {d} (-inf: none)");
            }
        }
    }
}

/// Scores `case`'s runs through `vog_engine::score` with the subject's backend, and checks them
/// against the case's reference VoG when it has one: every window of every example within the
/// tolerance, relative to the reference value.
///
/// # Panics
///
/// When a run fails, or on the first value off the reference: the message starts with
/// `check_vog_through_engine`, the subject and the case, and names the run, window, row and the
/// numbers. Also when the case has no runs (nothing would be checked).
pub fn check_vog_through_engine(subject: &Subject, case: &VogCase) -> Vec<Scores> {
    let at = format!("{CHECK}: {}, case {}", subject.label(), case.name);
    assert!(
        !case.runs.is_empty(),
        "{at}: no runs: nothing would be checked"
    );
    let backend = subject.backend(CHECK);
    let reference = case.reference.as_deref().map(json);
    let mut all = Vec::new();
    for &(labels, target) in &case.runs {
        let config = case.config(labels, target, subject.options());
        let result = score(&config, Some(backend.as_ref()), &Silent).unwrap_or_else(|e| {
            panic!(
                "{at}: scoring with labels {} and target {}: {}",
                labels.as_str(),
                target.as_str(),
                with_sources(&e)
            )
        });
        let scores = Scores::from_result(labels, target, &result);
        assert!(
            !scores.rows.is_empty(),
            "{at}, {}: no examples scored",
            scores.key()
        );
        if let Some(reference) = &reference {
            check_reference(&at, &scores, reference, case);
        }
        all.push(scores);
    }
    all
}

/// An error and its sources, `: `-separated (the engine's errors name where, their sources what).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// Compares one run with the reference file.
fn check_reference(at: &str, scores: &Scores, reference: &serde_json::Value, case: &VogCase) {
    let key = scores.key();
    let file = case
        .reference
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    for (wi, window) in scores.windows.iter().enumerate() {
        // A second target's windows (`all_probability`, added by default to label-free runs)
        // are checked against that target's reference.
        let (key, window) = match window.strip_suffix("_probability") {
            Some(base) => (
                format!("{}/probability", key.split('/').next().unwrap_or_default()),
                base,
            ),
            None => (key.clone(), window.as_str()),
        };
        let want: Vec<f64> = reference[&key][window]["raw"]
            .as_array()
            .unwrap_or_else(|| {
                panic!("{at}, {key}: {file} has no `{key}` → `{window}` → `raw` array")
            })
            .iter()
            .map(|v| {
                v.as_f64()
                    .unwrap_or_else(|| panic!("{at}, {key}: {file}: `{v}` is not a number"))
            })
            .collect();
        assert_eq!(
            want.len(),
            scores.rows.len(),
            "{at}, {key}, window {window}: {file} has {} values, {} examples were scored",
            want.len(),
            scores.rows.len()
        );
        for (r, w) in scores.rows.iter().zip(&want) {
            let got = r.vog[wi];
            let tol = case.tolerance * w.abs();
            assert!(
                (got - w).abs() <= tol,
                "{at}, {key}, window {window}, row {}: VoG {got}, reference {w} (off by {:e}; \
                 tolerance {tol:e})",
                r.row,
                (got - w).abs()
            );
        }
    }
}

/// Asserts that two runs of the same data (typically two backends on the same weights) agree:
/// the same class per example, raw VoG within `tolerance` of `a`'s value, and normalized VoG
/// present in both and within `tolerance` of `max(|a|, 1)`.
///
/// # Panics
///
/// On the first disagreement, naming `what`, the run, the window, the row and the numbers.
pub fn assert_scores_agree(what: &str, a: &Scores, b: &Scores, tolerance: f64) {
    let what = format!("{what}: {}", a.key());
    assert_eq!(a.windows, b.windows, "{what}: windows");
    assert_eq!(a.rows.len(), b.rows.len(), "{what}: examples");
    for (ea, eb) in a.rows.iter().zip(&b.rows) {
        assert_eq!(
            ea.label_used, eb.label_used,
            "{what}: row {}: class used",
            ea.row
        );
        for (w, (va, vb)) in a.windows.iter().zip(ea.vog.iter().zip(&eb.vog)) {
            assert!(
                (va - vb).abs() <= tolerance * va.abs(),
                "{what}, window {w}, row {}: raw VoG {va} versus {vb}",
                ea.row
            );
        }
        for (w, (na, nb)) in a.windows.iter().zip(ea.vog_norm.iter().zip(&eb.vog_norm)) {
            let (Some(na), Some(nb)) = (na, nb) else {
                panic!(
                    "{what}, window {w}, row {}: normalized VoG {na:?} versus {nb:?}",
                    ea.row
                );
            };
            assert!(
                (na - nb).abs() <= tolerance * na.abs().max(1.0),
                "{what}, window {w}, row {}: normalized VoG {na} versus {nb}",
                ea.row
            );
        }
    }
}
