//! The model-zoo sweep: popular architectures from timm, torchvision, Hugging Face transformers,
//! Keras 3 and JAX/flax, exported to ONNX as their users export them, scored through the ONNX
//! Runtime plugin, and compared with each framework's own autodiff in float64: every example's VoG
//! within 10⁻⁴ of its value (and, to say where a failure comes from, every checkpoint's gradients
//! within 10⁻⁴ of the reference's largest magnitude).
//!
//! Needs `ORT_DYLIB_PATH` and `VOG_ONNX_ZOO`, a directory written by
//! `tests/data/zoo/make_zoo.py DIR` (`scripts/test.sh` writes it once per change of the script or
//! its requirements and sets both). `VOG_ZOO_ONLY=name,name` narrows the sweep while debugging.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use vog_conformance::{
    check_gradients, check_vog_through_engine, repo, Case, Pick, PluginBuild, Reference, Subject,
    VogCase,
};
use vog_core::Target;
use vog_engine::LabelMode;

/// Every model's VoG within 10⁻⁴ of its framework's, relative to each example's value.
const TOLERANCE: f64 = 1e-4;

#[derive(serde::Deserialize)]
struct Model {
    name: String,
    framework: String,
    #[serde(default)]
    wrt: Option<String>,
    checkpoints: usize,
}

fn zoo() -> PathBuf {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty()),
        "set ORT_DYLIB_PATH to ONNX Runtime 1.31.1 (scripts/test.sh installs it and sets it)"
    );
    let dir = PathBuf::from(std::env::var_os("VOG_ONNX_ZOO").expect(
        "set VOG_ONNX_ZOO to a directory written by tests/data/zoo/make_zoo.py DIR (scripts/test.sh does)",
    ));
    assert!(
        dir.join("done").is_file(),
        "{} is incomplete; rerun tests/data/zoo/make_zoo.py",
        dir.display()
    );
    dir
}

#[test]
fn every_zoo_model_matches_its_frameworks_autodiff() {
    let dir = zoo();
    let models: Vec<Model> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("models.json")).unwrap()).unwrap();
    let only: Option<Vec<String>> = std::env::var("VOG_ZOO_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let plugin = Subject::plugin(
        &PluginBuild::new(repo::root())
            .package("vog-backend-onnx")
            .library("onnx"),
        "cache = false",
    );
    let mut failed = Vec::new();
    let mut checked = 0;
    for m in &models {
        if only.as_ref().is_some_and(|o| !o.contains(&m.name)) {
            continue;
        }
        let d = dir.join(&m.name);
        let options = match &m.wrt {
            Some(wrt) => format!("cache = false\nwrt = {}", toml_string(wrt)),
            None => "cache = false".to_string(),
        };
        // VoG through the engine, as `vog score` computes it; each checkpoint's gradients on a
        // failure (they name the element).
        let mut gradients =
            Case::new(&m.name, d.join("x.npy"), d.join("y.npy")).tolerance(TOLERANCE);
        for k in 1..=m.checkpoints {
            gradients = gradients.reference(
                Reference::new(
                    d.join(format!("ckpt_{k}.onnx")),
                    Pick::Labels,
                    Target::Logit,
                )
                .gradient(d.join(format!("grad_{k}.npy"))),
            );
        }
        let vog = VogCase::new(&m.name, d.join("x.npy"), d.join("y.npy"))
            .checkpoints([d.join("ckpt_*.onnx")])
            .batch_size(3)
            .run(LabelMode::True, Target::Logit)
            .reference(d.join("vog.json"))
            .tolerance(TOLERANCE);
        let subject = plugin.with_options(options);
        let started = std::time::Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_vog_through_engine(&subject, &vog);
        }));
        if outcome.is_err() {
            // Panics (and prints) at the first checkpoint whose gradients are off, if any.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                check_gradients(&subject, &gradients);
            }));
        }
        eprintln!(
            "{} ({}): {} in {:.1} s",
            m.name,
            m.framework,
            if outcome.is_ok() { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(m.name.clone());
        }
        checked += 1;
    }
    assert!(checked > 0, "no model of {} was checked", dir.display());
    assert!(
        failed.is_empty(),
        "{} of {checked} zoo models failed (messages above): {}",
        failed.len(),
        failed.join(", ")
    );
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
