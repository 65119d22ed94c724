//! The fixtures of the vog repository this crate was built in: golden models under
//! `tests/data/golden` with PyTorch autograd's gradients and VoG (`make_golden.py`), and the
//! options that describe them to the candle backend. vog's own backends test against these; a
//! third-party backend brings its own references (see [`Case`] and [`VogCase`]).
//!
//! The golden models: `mlp` (20 inputs, 4 classes, 10 epochs), `cnn` (3×12×12 inputs, 5 classes,
//! 6 epochs), both as safetensors under `ckpt/`, with reference gradients and logits for their
//! first 8 examples at the first and last epoch; `linear` (a softmax regression stored as JSON
//! for the linear backend, 7 epochs, temperature 1.5), with reference VoG only.

use std::path::PathBuf;

use vog_core::Target;
use vog_engine::LabelMode;

use crate::case::{Case, Pick, Reference};
use crate::engine::VogCase;

/// The root of the vog repository.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path below `tests/data`.
pub fn data(rel: &str) -> PathBuf {
    root().join("tests/data").join(rel)
}

/// A golden model's directory: `tests/data/golden/<model>`.
pub fn golden(model: &str) -> PathBuf {
    data("golden").join(model)
}

/// Candle backend options of the golden `mlp`.
pub const MLP_OPTIONS: &str = "arch = \"mlp\"\nactivation = \"relu\"\n";

/// Candle backend options of the golden `cnn`.
pub const CNN_OPTIONS: &str = r#"arch = "sequential"
layers = [
  { type = "conv2d", padding = 1 },
  { type = "batchnorm2d" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "conv2d", padding = 1, groups = 2 },
  { type = "batchnorm2d" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 3, stride = 2, padding = 1 },
  { type = "avgpool2d", kernel = 3, stride = 1, padding = 1 },
  { type = "flatten" },
  { type = "linear" },
  { type = "relu" },
  { type = "dropout", p = 0.1 },
  { type = "linear" },
]
"#;

/// Linear backend options of the golden `linear`.
pub const LINEAR_OPTIONS: &str = "temperature = 1.5";

/// A golden model's facts: checkpoint extension, last epoch, and whether it has reference
/// gradients.
fn facts(model: &str) -> (&'static str, usize, bool) {
    match model {
        "mlp" => ("safetensors", 10, true),
        "cnn" => ("safetensors", 6, true),
        "linear" => ("json", 7, false),
        other => panic!("vog-conformance: no golden model `{other}` (mlp, cnn, linear)"),
    }
}

/// The backend options of a golden model (candle's for `mlp` and `cnn`, linear's for `linear`).
pub fn options(model: &str) -> &'static str {
    match model {
        "mlp" => MLP_OPTIONS,
        "cnn" => CNN_OPTIONS,
        "linear" => LINEAR_OPTIONS,
        other => panic!("vog-conformance: no golden model `{other}` (mlp, cnn, linear)"),
    }
}

/// The last epoch of a golden model (10, 6, 7).
pub fn last_epoch(model: &str) -> usize {
    facts(model).1
}

/// A golden model's own checkpoints at the first and last epoch, with their epochs.
pub fn checkpoints(model: &str) -> Vec<(usize, PathBuf)> {
    let (ext, last, _) = facts(model);
    [1, last]
        .into_iter()
        .map(|e| (e, golden(model).join(format!("ckpt/epoch_{e}.{ext}"))))
        .collect()
}

/// The three golden requests on a checkpoint holding the weights of `model` at `epoch`: the
/// logit and the probability of the labels, and the logit of each row's argmax, with
/// `grad_epoch_<epoch>_{logit,probability,argmax}.npy` and `logits_epoch_<epoch>.npy` as
/// references (no reference files for `linear`).
pub fn references(model: &str, epoch: usize, checkpoint: PathBuf) -> Vec<Reference> {
    let with_files = facts(model).2;
    let dir = golden(model);
    [
        ("logit", Pick::Labels, Target::Logit),
        ("probability", Pick::Labels, Target::Probability),
        ("argmax", Pick::Argmax, Target::Logit),
    ]
    .into_iter()
    .map(|(tag, pick, target)| {
        let r = Reference::new(checkpoint.clone(), pick, target);
        if with_files {
            r.gradient(dir.join(format!("grad_epoch_{epoch}_{tag}.npy")))
                .logits(dir.join(format!("logits_epoch_{epoch}.npy")))
        } else {
            r
        }
    })
    .collect()
}

/// The golden case of `model` on `checkpoints` (epoch, file) — the model's own by default, see
/// [`checkpoints`]: its first 8 examples, the three [`references`] per checkpoint.
pub fn case(model: &str, checkpoints: impl IntoIterator<Item = (usize, PathBuf)>) -> Case {
    let dir = golden(model);
    let mut case = Case::new(model, dir.join("x.npy"), dir.join("y.npy")).rows(8);
    for (epoch, file) in checkpoints {
        for r in references(model, epoch, file) {
            case = case.reference(r);
        }
    }
    case
}

/// VoG of a golden model through the engine, on its own checkpoints, with true and predicted
/// labels and the probability target, in batches of 5, against `expected.json` (10⁻⁵).
pub fn vog(model: &str) -> VogCase {
    let dir = golden(model);
    VogCase::new(model, dir.join("x.npy"), dir.join("y.npy"))
        .checkpoints([dir.join("ckpt")])
        .batch_size(5)
        .run(LabelMode::True, Target::Probability)
        .run(LabelMode::Predicted, Target::Probability)
        .reference(dir.join("expected.json"))
        .tolerance(1e-5)
}

/// The plugin libraries of this repository's in-tree backends and broken test plugins, built in
/// one cargo invocation (candle with its `plugin` feature). Every test of the repository that
/// loads one of them uses this build, so cargo compiles the set once, whichever test comes first.
pub fn workspace_plugins() -> crate::PluginBuild {
    crate::PluginBuild::new(root())
        .features("vog-backend-candle/plugin")
        .packages([
            "vog-backend-candle",
            "vog-backend-linear",
            "vog-test-plugin-faulty",
            "vog-test-plugin-abi-major",
            "vog-test-plugin-no-vtable",
            "vog-test-plugin-not-a-plugin",
            "vog-backend-onnx",
        ])
}
