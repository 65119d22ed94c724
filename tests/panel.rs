//! The difficulty panel against numpy: fixed logits (tests/data/panel, written by make_panel.py)
//! replayed through the engine by a backend that answers with them, then every panel column and
//! the per-checkpoint trajectory compared with numpy's values. Also the second VoG target.

use std::path::Path;

use serde_json::Value;
use vog_core::{
    BackendInfo, Classes, GradOutput, GradRequest, GradientBackend, Model, Result, Target,
};
use vog_engine::{score, Config, Silent};

use crate::util::{json, npy, root};

/// Answers with the fixture's logits: the checkpoint file holds its position, each example's
/// single input value is its row. The gradient depends on the target and the checkpoint so that
/// both VoGs are defined (its values do not matter here).
struct Replay {
    logits: Vec<f32>,
    shape: Vec<usize>,
}

struct ReplayModel<'a> {
    at: usize,
    replay: &'a Replay,
}

impl GradientBackend for &'static Replay {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "replay".into(),
            version: "0".into(),
            extensions: vec!["ckpt".into()],
            devices: vec!["cpu".into()],
        }
    }
    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        let at: usize = std::fs::read_to_string(checkpoint)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Ok(Box::new(ReplayModel { at, replay: self }))
    }
}

impl Model for ReplayModel<'static> {
    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let (n, c) = (self.replay.shape[1], self.replay.shape[2]);
        let rows: Vec<usize> = request.input.data().iter().map(|&v| v as usize).collect();
        let mut logits = Vec::with_capacity(rows.len() * c);
        for &r in &rows {
            let o = (self.at * n + r) * c;
            logits.extend_from_slice(&self.replay.logits[o..o + c]);
        }
        let classes: Vec<u32> = match request.classes {
            Classes::Given(cl) => cl.to_vec(),
            Classes::Argmax => logits
                .chunks_exact(c)
                .map(|l| vog_core::RowOutcome::from_logits(l, 0, None).predicted)
                .collect(),
        };
        let scale = match request.target {
            Target::Logit => 1.0,
            Target::Probability => 0.25,
        };
        let gradient = rows
            .iter()
            .map(|&r| scale * ((r + 1) * (self.at + 1) * (self.at % 3 + 1)) as f32)
            .collect::<Vec<f32>>()
            .into();
        Ok(GradOutput {
            logits,
            num_classes: c,
            gradient,
            gradient_shape: None,
            classes,
        })
    }
}

fn replay() -> &'static Replay {
    static R: std::sync::OnceLock<Replay> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let (shape, logits) = npy(&root().join("tests/data/panel/logits.npy"));
        Replay { logits, shape }
    })
}

fn setup(dir: &Path, extra_scoring: &str) -> Config {
    let r = replay();
    let (k, n) = (r.shape[0], r.shape[1]);
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    vog_data::write_npy_f32(&dir.join("x.npy"), &[n, 1], &x).unwrap();
    for i in 0..k {
        std::fs::write(dir.join(format!("epoch_{}.ckpt", i + 1)), i.to_string()).unwrap();
    }
    let labels = root().join("tests/data/panel/labels.npy");
    Config::from_toml(&format!(
        "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [\"{}\"]\n\
         [backend]\nbatch_size = 16\n[scoring]\n{extra_scoring}\n",
        dir.join("x.npy").display(),
        labels.display(),
        dir.display()
    ))
    .unwrap()
}

#[test]
fn panel_scores_match_numpy_from_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let want = json(&root().join("tests/data/panel/expected.json"));
    let el2n_at = want["el2n_checkpoint"].as_u64().unwrap();
    let config = setup(dir.path(), &format!("el2n_checkpoint = {el2n_at}"));
    let r = score(&config, Some(&replay()), &Silent).unwrap();
    assert_eq!(
        r.extra_columns,
        [
            "margin_mean",
            "loss_last",
            "correct_ratio",
            "confidence",
            "variability",
            "forgetting",
            "el2n",
            "msp_last",
            "margin_last",
            "entropy_last",
            "pred_changes"
        ]
    );
    for (col, name) in r.extra_columns.iter().enumerate() {
        let expected = want[name].as_array().unwrap();
        for (e, w) in r.examples.iter().zip(expected) {
            let w = w.as_f64().unwrap();
            assert!(
                (e.extra[col] - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{name} row {}: vog {} numpy {w}",
                e.row,
                e.extra[col]
            );
        }
    }
    let forgetting: f64 = r.examples.iter().map(|e| e.extra[5]).sum();
    assert!(forgetting > 10.0, "the fixture should exercise forgetting");
    let changes: f64 = r.examples.iter().map(|e| e.extra[10]).sum();
    assert!(
        changes > 10.0,
        "the fixture should exercise prediction changes"
    );
    for e in &r.examples {
        let predicted: Vec<u64> = want["predicted"][e.row]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let margin = &want["margin"][e.row];
        assert_eq!(
            e.trajectory
                .iter()
                .map(|t| u64::from(t.0))
                .collect::<Vec<_>>(),
            predicted
        );
        for (t, m) in e.trajectory.iter().zip(margin.as_array().unwrap()) {
            assert!((t.1 - m.as_f64().unwrap()).abs() < 1e-9);
        }
    }
}

/// Without labels: the label-based columns are taken against the last checkpoint's prediction
/// (numpy's "unlabelled" values), correctness-based ones are undefined, the label-free ones are
/// the same as with labels.
#[test]
fn without_labels_the_panel_uses_the_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let want = json(&root().join("tests/data/panel/expected.json"));
    let el2n_at = want["el2n_checkpoint"].as_u64().unwrap();
    let mut config = setup(dir.path(), &format!("el2n_checkpoint = {el2n_at}"));
    config.data.labels = None;
    let r = score(&config, Some(&replay()), &Silent).unwrap();
    let unlabelled = &want["unlabelled"];
    let mut checked = 0;
    for (col, name) in r.extra_columns.iter().enumerate() {
        for e in &r.examples {
            let got = e.extra[col];
            let w = match name.as_str() {
                "correct_ratio" | "forgetting" => {
                    assert!(got.is_nan(), "{name} row {}: {got} without labels", e.row);
                    continue;
                }
                n if unlabelled.get(n).is_some() => unlabelled[n][e.row].as_f64().unwrap(),
                n => want[n][e.row].as_f64().unwrap(),
            };
            assert!(
                (got - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{name} row {}: vog {got} numpy {w}",
                e.row
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9 * r.examples.len());
    // Label-free, the probability target comes along by default; `none` turns it off.
    assert_eq!(r.windows.len(), 8);
    assert_eq!(
        r.manifest.scoring.second_target,
        Some(vog_core::Target::Probability)
    );
    config.scoring.second_target = vog_engine::SecondTarget::None;
    let plain = score(&config, Some(&replay()), &Silent).unwrap();
    assert_eq!(plain.windows.len(), 4);
    assert_eq!(plain.manifest.scoring.second_target, None);
    for (a, b) in r.examples.iter().zip(&plain.examples) {
        assert_eq!(a.vog[..4], b.vog[..]);
    }
}

#[test]
fn a_second_target_adds_its_windows_from_the_same_pass() {
    let dir = tempfile::tempdir().unwrap();
    let one = score(&setup(dir.path(), ""), Some(&replay()), &Silent).unwrap();
    let two = score(
        &setup(dir.path(), "second_target = \"probability\""),
        Some(&replay()),
        &Silent,
    )
    .unwrap();
    let names: Vec<&str> = two.windows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "all",
            "early",
            "middle",
            "late",
            "all_probability",
            "early_probability",
            "middle_probability",
            "late_probability"
        ]
    );
    for (a, b) in one.examples.iter().zip(&two.examples) {
        // The first target's scores do not change; the second's are a quarter of them (the
        // replayed probability gradient is the logit one scaled by 1/4).
        assert_eq!(a.vog[..], b.vog[..4]);
        for (x, y) in a.vog.iter().zip(&b.vog[4..]) {
            assert!((y - x / 4.0).abs() <= 1e-12 * x.abs().max(1e-30), "{x} {y}");
        }
        // Class normalization is scale-free: both targets normalize to the same values here.
        for (x, y) in a.vog_norm.iter().zip(&b.vog_norm[4..]) {
            assert!((x.unwrap() - y.unwrap()).abs() < 1e-9);
        }
    }
    let bad: Value = serde_json::to_value(
        Config::from_toml(
            "version = 1\n[gradients]\ndirs = [\"g\"]\n[scoring]\nsecond_target = \"probability\"\n",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string(),
    )
    .unwrap();
    assert!(bad.as_str().unwrap().contains("second_target"), "{bad}");
}
