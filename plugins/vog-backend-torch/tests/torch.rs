//! The libtorch backend against PyTorch itself (Python, same TorchScript models), in-process and
//! as a plugin, and against the candle and ONNX Runtime backends on the same weights; the checks
//! are `vog-conformance`'s.
//!
//! Needs `VOG_TORCH_MODELS` (written by `tests/data/torch/make_torchscript.py DIR`), `LIBTORCH`
//! at build time and, for the ONNX comparison, `ORT_DYLIB_PATH`; `scripts/test.sh` sets them.

use std::path::{Path, PathBuf};

use vog_backend_candle::CandleBackend;
use vog_backend_torch::TorchBackend;
use vog_conformance::{
    assert_scores_agree, check_errors, check_plugin_equivalence, check_vog_through_engine, repo,
    Case, Pick, PluginBuild, Reference, Subject, VogCase,
};
use vog_core::{Error, Target};
use vog_engine::LabelMode;

fn models() -> PathBuf {
    let dir = PathBuf::from(std::env::var_os("VOG_TORCH_MODELS").expect(
        "set VOG_TORCH_MODELS to a directory written by tests/data/torch/make_torchscript.py DIR (scripts/test.sh does)",
    ));
    assert!(
        dir.join("done").is_file(),
        "{} is incomplete; rerun make_torchscript.py",
        dir.display()
    );
    dir
}

/// Plugin libraries built by cargo (once per test run) into `<target>/plugin-tests`.
fn plugin(name: &str) -> PathBuf {
    PluginBuild::new(repo::root())
        .packages(["vog-backend-torch", "vog-backend-onnx"])
        .library(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    InProcess,
    Plugin,
}

fn torch(via: Via) -> Subject {
    // One thread, as the Python reference ran, so that reductions happen in the same order.
    let options = "threads = 1";
    match via {
        Via::InProcess => Subject::in_process::<TorchBackend>(options),
        Via::Plugin => Subject::plugin(&plugin("torch"), options),
    }
}

/// Every example of model `name` at the first and the last (`k`) epoch, both targets, against
/// PyTorch's `grad_<epoch>_<target>_<mode>.npy`: "true" uses the labels; "predicted" the last
/// checkpoint's prediction, which is each row's argmax at the last epoch.
fn case(d: &Path, name: &str, k: usize) -> Case {
    let mut case = Case::new(name, d.join("x.npy"), d.join("y.npy")).tolerance(1e-6);
    for epoch in [1, k] {
        for target in [Target::Logit, Target::Probability] {
            let modes: &[(&str, Pick)] = if epoch == k {
                &[("true", Pick::Labels), ("predicted", Pick::Argmax)]
            } else {
                &[("true", Pick::Labels)]
            };
            for &(mode, pick) in modes {
                case = case.reference(
                    Reference::new(d.join(format!("epoch_{epoch}.pt")), pick, target)
                        .gradient(d.join(format!("grad_{epoch}_{}_{mode}.npy", target.as_str()))),
                );
            }
        }
    }
    case
}

/// VoG of the examples in `data` over `checkpoints` (a glob), with true and predicted labels and
/// both targets, in batches of 5.
fn vog(name: &str, data: &Path, checkpoints: PathBuf) -> VogCase {
    let mut v = VogCase::new(name, data.join("x.npy"), data.join("y.npy"))
        .checkpoints([checkpoints])
        .batch_size(5);
    for mode in [LabelMode::True, LabelMode::Predicted] {
        for target in [Target::Logit, Target::Probability] {
            v = v.run(mode, target);
        }
    }
    v
}

/// Gradients and VoG through the engine against PyTorch's, every error path, in-process and as a
/// plugin with bit-identical results.
#[test]
fn gradients_and_vog_match_pytorch() {
    let base = models();
    for (name, k) in [("mlp", 10), ("cnn", 6), ("resnet18", 3)] {
        let d = base.join(name);
        let vog = vog(name, &d, d.join("*.pt"))
            .reference(d.join("vog.json"))
            .tolerance(1e-6);
        let [seen, _] = check_plugin_equivalence(
            &torch(Via::InProcess),
            &torch(Via::Plugin),
            &case(&d, name, k),
            Some(&vog),
        );
        assert_eq!(seen.gradients.len(), 6, "{name}");
        assert_eq!(seen.vog.len(), 4, "{name}");
    }
}

#[test]
fn vog_agrees_with_candle_and_onnx_on_the_same_weights() {
    let base = models();
    let t = torch(Via::Plugin);
    let ort =
        std::env::var_os("ORT_DYLIB_PATH").expect("set ORT_DYLIB_PATH (scripts/test.sh does)");
    let onnx = Subject::plugin(
        &plugin("onnx"),
        format!("library = \"{}\"\ncache = false", ort.to_string_lossy()),
    );
    for name in ["mlp", "cnn"] {
        let golden = repo::golden(name);
        let candle = Subject::in_process::<CandleBackend>(repo::options(name));
        let rt = check_vog_through_engine(&t, &vog(name, &golden, base.join(name).join("*.pt")));
        let rc = check_vog_through_engine(
            &candle,
            &vog(name, &golden, golden.join("ckpt/*.safetensors")),
        );
        let onnx_glob = repo::data(&format!("onnx/{name}/epoch_*.onnx"));
        let ro = check_vog_through_engine(&onnx, &vog(name, &golden, onnx_glob));
        assert_eq!((rt.len(), rc.len(), ro.len()), (4, 4, 4));
        for ((rt, rc), ro) in rt.iter().zip(&rc).zip(&ro) {
            assert_scores_agree(&format!("{name} torch vs candle"), rt, rc, 1e-5);
            assert_scores_agree(&format!("{name} torch vs onnx"), rt, ro, 1e-5);
        }
    }
}

#[test]
fn not_torchscript_wrong_shape_and_missing_gpu_are_clear_errors() {
    let base = models();
    let plugin = torch(Via::Plugin);
    let b = plugin.backend("state_dict");
    let err = b.load(&base.join("state_dict.pt")).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "{msg}");
    assert!(
        msg.contains("state_dict.pt")
            && msg.contains("not a TorchScript file")
            && msg.contains("torch.jit.trace"),
        "{msg}"
    );
    // Every error path of the conformance suite (shapes, classes, missing and damaged
    // checkpoints, options, NaN), and this backend's wording of the shape error.
    let d = base.join("mlp");
    let errors = check_errors(&plugin, &case(&d, "mlp", 10).wrong_row_shape(vec![7]));
    assert!(errors.shape.to_string().contains("[7]"), "{}", errors.shape);
    if tch::Cuda::device_count() == 0 {
        let err = plugin
            .try_create("device = \"cuda\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("sees no CUDA GPU"), "{err}");
        let err = TorchBackend::from_options("dtype = \"bf16\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bf16/f16 is for GPUs"), "{err}");
    }
    let err = TorchBackend::from_options("device = \"tpu\"")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`tpu`"), "{err}");
}
