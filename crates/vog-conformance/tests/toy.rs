//! The suite against a toy backend (softmax regression, weights in JSON checkpoints): the correct
//! toy passes every check, and each planted bug (option `bug = "..."`) fails the check meant to
//! catch it, with a message that says where. So no check passes vacuously.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use vog_conformance::{
    assert_scores_agree, check_errors, check_gradients, check_plugin_equivalence,
    check_vog_through_engine, run_suite, Case, NanInput, Pick, Reference, Subject, VogCase,
};
use vog_core::{
    BackendInfo, Classes, Error, GradOutput, GradRequest, GradientBackend, Model, Result, Target,
};
use vog_engine::LabelMode;

const FEATURES: usize = 4;
const CLASSES: usize = 3;
const ROWS: usize = 7;
const EPOCHS: usize = 6;

/// The toy: logits `W x`; `bug` plants one defect.
struct Toy {
    bug: String,
}

struct ToyModel {
    weights: Vec<Vec<f64>>,
    bug: String,
}

fn toy(options: &str) -> Result<Box<dyn GradientBackend>> {
    let table: toml::Table = toml::from_str(options).map_err(|e| Error::Config(e.to_string()))?;
    let mut bug = String::new();
    for (k, v) in table {
        match (k.as_str(), v) {
            ("bug", toml::Value::String(b)) => bug = b,
            _ if bug == "lenient" => {}
            (other, _) => return Err(Error::Config(format!("unknown option `{other}`"))),
        }
    }
    Ok(Box::new(Toy { bug }))
}

impl GradientBackend for Toy {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: if self.bug == "name" { "yot" } else { "toy" }.into(),
            version: "0".into(),
            extensions: vec!["json".into()],
            devices: vec!["cpu".into()],
        }
    }

    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        let text = std::fs::read_to_string(checkpoint).map_err(|error| Error::Io {
            path: checkpoint.into(),
            error,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::checkpoint(checkpoint, e))?;
        let weights = v["weights"]
            .as_array()
            .ok_or_else(|| Error::checkpoint(checkpoint, "no weights"))?
            .iter()
            .map(|row| {
                row.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_f64())
                    .collect()
            })
            .collect();
        Ok(Box::new(ToyModel {
            weights,
            bug: self.bug.clone(),
        }))
    }
}

impl Model for ToyModel {
    fn input_gradients(&mut self, req: &GradRequest<'_>) -> Result<GradOutput> {
        let (rows, d) = (req.input.rows(), req.input.row_len());
        if d != FEATURES {
            let shown = if self.bug == "shape" {
                "?".to_string()
            } else {
                format!("{:?}", req.input.row_shape())
            };
            return Err(Error::Shape(format!(
                "the toy takes {FEATURES} features, got {shown}"
            )));
        }
        let x = req.input.data();
        let mean: f64 = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
        let mut grad: Vec<f32> = Vec::new();
        let mut out = GradOutput {
            logits: Vec::new(),
            num_classes: CLASSES,
            gradient: Default::default(),
            gradient_shape: (self.bug == "gradient_shape").then(|| vec![FEATURES]),
            classes: Vec::new(),
        };
        for r in 0..rows {
            let row = &x[r * d..(r + 1) * d];
            let mut logits: Vec<f64> = self.weights.iter().map(|w| dot(w, row)).collect();
            if self.bug == "leak" {
                logits.iter_mut().for_each(|l| *l += mean);
            }
            let c = match req.classes {
                Classes::Given(c) => {
                    let c = c[r] as usize;
                    if c >= CLASSES && self.bug == "no_class_check" {
                        CLASSES - 1
                    } else if c >= CLASSES {
                        return Err(Error::ClassOutOfRange {
                            class: c as u32,
                            num_classes: CLASSES,
                            row: r,
                        });
                    } else {
                        c
                    }
                }
                Classes::Argmax if self.bug == "argmin" => argmin(&logits),
                Classes::Argmax => argmax(&logits),
            };
            let g = gradient(&self.weights, &logits, c, req.target);
            let scale = if self.bug == "gradient" && r == 2 {
                1.001
            } else {
                1.0
            };
            grad.extend(g.iter().map(|&v| (v * scale) as f32));
            out.logits.extend(logits.iter().map(|&l| l as f32));
            out.classes.push(c as u32);
        }
        if self.bug == "ulp" {
            grad[0] = f32::from_bits(grad[0].to_bits() + 1);
        }
        out.gradient = grad.into();
        Ok(out)
    }
}

fn dot(w: &[f64], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(a, &b)| a * f64::from(b)).sum()
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

fn argmin(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] < v[b] { i } else { b })
}

/// d logit_c / dx = W_c; d p_c / dx = p_c (W_c − Σ_k p_k W_k).
fn gradient(w: &[Vec<f64>], logits: &[f64], c: usize, target: Target) -> Vec<f64> {
    match target {
        Target::Logit => w[c].clone(),
        Target::Probability => {
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let s: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|v| v / s).collect();
            (0..w[c].len())
                .map(|j| p[c] * (w[c][j] - (0..w.len()).map(|k| p[k] * w[k][j]).sum::<f64>()))
                .collect()
        }
    }
}

fn weights(epoch: usize) -> Vec<Vec<f64>> {
    (0..CLASSES)
        .map(|c| {
            (0..FEATURES)
                .map(|j| ((epoch * 13 + c * 7 + j) as f64).sin())
                .collect()
        })
        .collect()
}

fn inputs() -> Vec<f32> {
    (0..ROWS * FEATURES)
        .map(|i| ((i * 5) as f32).cos())
        .collect()
}

fn labels() -> Vec<u32> {
    (0..ROWS as u32).map(|r| r % CLASSES as u32).collect()
}

/// Checkpoints, data and references in a temporary directory.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        for epoch in 1..=EPOCHS {
            let text = serde_json::json!({ "weights": weights(epoch) }).to_string();
            std::fs::write(p(&format!("epoch_{epoch}.json")), text).unwrap();
        }
        let x = inputs();
        vog_data::write_npy_f32(&p("x.npy"), &[ROWS, FEATURES], &x).unwrap();
        let y: Vec<f32> = labels().iter().map(|&l| l as f32).collect();
        vog_data::write_npy_f32(&p("y.npy"), &[ROWS], &y).unwrap();
        // References, in f64 from the formulas above, at the last epoch.
        let w = weights(EPOCHS);
        let logits: Vec<Vec<f64>> = x
            .chunks(FEATURES)
            .map(|r| w.iter().map(|c| dot(c, r)).collect())
            .collect();
        let flat =
            |v: Vec<Vec<f64>>| -> Vec<f32> { v.into_iter().flatten().map(|v| v as f32).collect() };
        vog_data::write_npy_f32(&p("logits.npy"), &[ROWS, CLASSES], &flat(logits.clone())).unwrap();
        for (tag, target) in [
            ("logit", Target::Logit),
            ("probability", Target::Probability),
        ] {
            for (mode, argmax_) in [("labels", false), ("argmax", true)] {
                let g: Vec<Vec<f64>> = (0..ROWS)
                    .map(|r| {
                        let c = if argmax_ {
                            argmax(&logits[r])
                        } else {
                            labels()[r] as usize
                        };
                        gradient(&w, &logits[r], c, target)
                    })
                    .collect();
                vog_data::write_npy_f32(
                    &p(&format!("grad_{tag}_{mode}.npy")),
                    &[ROWS, FEATURES],
                    &flat(g),
                )
                .unwrap();
            }
        }
        // VoG with the labels and the logit target: the gradient is the label's weight row.
        let names: Vec<String> = vog_core::BUILTIN_WINDOWS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (windows, _) = vog_core::resolve_windows(EPOCHS, &names, &Default::default()).unwrap();
        let all: Vec<Vec<Vec<f64>>> = (1..=EPOCHS).map(weights).collect();
        let mut reference = serde_json::Map::new();
        for w in &windows {
            let raw: Vec<f64> = labels()
                .iter()
                .map(|&l| {
                    let k = (w.end - w.start) as f64;
                    (0..FEATURES)
                        .map(|j| {
                            let vals: Vec<f64> =
                                (w.start..w.end).map(|e| all[e][l as usize][j]).collect();
                            let mean = vals.iter().sum::<f64>() / k;
                            (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / k).sqrt()
                        })
                        .sum::<f64>()
                        / FEATURES as f64
                })
                .collect();
            reference.insert(w.name.clone(), serde_json::json!({ "raw": raw }));
        }
        let reference = serde_json::json!({ "true/logit": reference });
        std::fs::write(p("vog.json"), reference.to_string()).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn case(&self) -> Case {
        let mut case = Case::new("toy", self.path("x.npy"), self.path("y.npy"));
        let last = self.path(&format!("epoch_{EPOCHS}.json"));
        for (tag, target) in [
            ("logit", Target::Logit),
            ("probability", Target::Probability),
        ] {
            for pick in [Pick::Labels, Pick::Argmax] {
                let mode = pick.as_str();
                case = case.reference(
                    Reference::new(&last, pick, target)
                        .gradient(self.path(&format!("grad_{tag}_{mode}.npy")))
                        .logits(self.path("logits.npy")),
                );
            }
        }
        case.tolerance(1e-6)
    }

    fn vog(&self) -> VogCase {
        VogCase::new("toy", self.path("x.npy"), self.path("y.npy"))
            .checkpoints([self.path("epoch_*.json")])
            .run(LabelMode::True, Target::Logit)
            .reference(self.path("vog.json"))
            .tolerance(1e-6)
    }
}

fn subject(bug: &str) -> Subject {
    let options = if bug.is_empty() {
        String::new()
    } else {
        format!("bug = \"{bug}\"")
    };
    Subject::new("toy", "in-process", options, toy)
}

#[test]
fn a_correct_backend_passes_every_check() {
    let f = Fixture::new();
    let seen = run_suite(&subject(""), &f.case(), Some(&f.vog()));
    assert_eq!(seen.gradients.len(), 4);
    assert_eq!(seen.vog.len(), 1);
    // The NaN's row has NaN logits; validation names that row.
    assert!(
        matches!(
            seen.errors.nan,
            NanInput::Flagged(Error::NonFinite { row: 1, .. })
        ),
        "{:?}",
        seen.errors.nan
    );
    let messages = seen.errors.messages();
    assert!(
        messages[3].contains("<tmp>/missing_checkpoint.json"),
        "{messages:?}"
    );
    assert!(
        messages[5].contains("vog_conformance_unknown_option"),
        "{messages:?}"
    );
    // Two identical subjects are equivalent; the scores of a run agree with themselves.
    let [a, _] = check_plugin_equivalence(&subject(""), &subject(""), &f.case(), Some(&f.vog()));
    assert_scores_agree("toy", &a.vog[0], &seen.vog[0], 0.0);
}

#[test]
fn a_wrong_gradient_is_reported_with_where_and_the_numbers() {
    let f = Fixture::new();
    let case = f.case();
    let err =
        std::panic::catch_unwind(|| check_gradients(&subject("gradient"), &case)).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.starts_with(
            "check_gradients: toy (in-process), case toy, epoch_6.json, logit of labels: gradient \
             off by "
        ) && msg.contains("at row 2, element ")
            && msg.contains("got ")
            && msg.contains("tolerance 1e-6"),
        "{msg}"
    );
}

#[test]
#[should_panic(expected = "argmax: row 0 used class")]
fn a_wrong_argmax_is_reported() {
    let f = Fixture::new();
    check_gradients(&subject("argmin"), &f.case());
}

#[test]
#[should_panic(expected = "it must be None when the gradient is shaped like the input")]
fn a_needless_gradient_shape_is_reported() {
    let f = Fixture::new();
    check_gradients(&subject("gradient_shape"), &f.case());
}

#[test]
#[should_panic(expected = "the backend reports the name `yot`")]
fn a_wrong_name_is_reported() {
    let f = Fixture::new();
    check_gradients(&subject("name"), &f.case());
}

#[test]
#[should_panic(expected = "reading")]
fn a_missing_reference_fails() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("logits.npy")).unwrap();
    check_gradients(&subject(""), &f.case());
}

#[test]
#[should_panic(expected = "has no requests: nothing would be checked")]
fn a_case_without_requests_fails() {
    let f = Fixture::new();
    check_gradients(
        &subject(""),
        &Case::new("empty", f.path("x.npy"), f.path("y.npy")),
    );
}

#[test]
#[should_panic(expected = "the shape error names neither [N, 7] nor [7]")]
fn a_shape_error_must_name_the_shape() {
    check_errors(&subject("shape"), &Fixture::new().case());
}

#[test]
#[should_panic(expected = "classes [0, 1, 2, 0, 1, 2, 3] (target logit) were accepted")]
fn classes_out_of_range_must_be_refused() {
    check_errors(&subject("no_class_check"), &Fixture::new().case());
}

#[test]
#[should_panic(expected = "the unknown option `vog_conformance_unknown_option` was accepted")]
fn unknown_options_must_be_refused() {
    check_errors(&subject("lenient"), &Fixture::new().case());
}

#[test]
#[should_panic(
    expected = "a NaN in row 1: the answer does not validate, and not for the NaN's row"
)]
fn a_nan_must_stay_in_its_row() {
    check_errors(&subject("leak"), &Fixture::new().case());
}

#[test]
#[should_panic(
    expected = "check_vog_through_engine: toy (in-process), case toy, true/logit, window all, row"
)]
fn vog_off_the_reference_is_reported() {
    let f = Fixture::new();
    // Another checkpoint's weights for epoch 3: VoG changes.
    std::fs::copy(f.path("epoch_5.json"), f.path("epoch_3.json")).unwrap();
    check_vog_through_engine(&subject(""), &f.vog());
}

#[test]
#[should_panic(
    expected = "check_plugin_equivalence: toy (in-process) versus toy (in-process), case toy: \
                           epoch_6.json, logit of labels: gradients differ at element 0"
)]
fn one_ulp_breaks_equivalence() {
    let f = Fixture::new();
    let ulp = Subject::new("toy", "in-process", "bug = \"ulp\"", toy);
    check_plugin_equivalence(&subject(""), &ulp, &f.case(), None);
}
