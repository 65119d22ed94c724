//! The libtorch backend against PyTorch itself (Python, same TorchScript models), in-process and
//! as a plugin, and against the candle and ONNX Runtime backends on the same weights.
//!
//! Needs `VOG_TORCH_MODELS` (written by `tests/data/torch/make_torchscript.py DIR`), `LIBTORCH`
//! at build time and, for the ONNX comparison, `ORT_DYLIB_PATH`; `scripts/test.sh` sets them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use vog_core::{Classes, Error, GradOutput, GradRequest, GradientBackend, Target, TensorView};
use vog_engine::{score, Config, RunResult, Silent};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let mut a = vog_data::ArrayFile::open_npy(path).unwrap_or_else(|e| panic!("{e}"));
    let shape = a.shape().to_vec();
    let mut out = Vec::new();
    let rows = a.rows();
    a.read_f32(0, rows, &mut out).unwrap();
    (shape, out)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Plugin libraries built by cargo (once per test run) into `<target>/plugin-tests`.
fn plugin(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<HashMap<String, PathBuf>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().join("plugin-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .current_dir(root())
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "build",
                "--message-format=json-render-diagnostics",
                "-p",
                "vog-backend-torch",
                "-p",
                "vog-backend-onnx",
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building the plugins failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .filter_map(|p| vog_plugin_host::name_from_file(&p).map(|n| (n, p)))
            .collect()
    });
    built[name].clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    InProcess,
    Plugin,
}

fn torch(via: Via) -> Box<dyn GradientBackend> {
    // One thread, as the Python reference ran, so that reductions happen in the same order.
    let options = "threads = 1";
    match via {
        Via::InProcess => Box::new(vog_backend_torch::TorchBackend::from_options(options).unwrap()),
        Via::Plugin => Box::new(
            vog_plugin_host::load(&plugin("torch"))
                .unwrap()
                .create(options)
                .unwrap(),
        ),
    }
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).abs() / scale)
        .fold(0.0, f64::max)
}

fn config(data: &Path, ckpt_glob: &str, mode: &str, target: &str) -> Config {
    Config::from_toml(&format!(
        "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [\"{ckpt_glob}\"]\n\
         [backend]\nbatch_size = 5\n[scoring]\nlabels = \"{mode}\"\ntarget = \"{target}\"\n",
        data.join("x.npy").display(),
        data.join("y.npy").display()
    ))
    .unwrap()
}

#[test]
fn gradients_and_vog_match_pytorch() {
    let base = models();
    for (name, k) in [("mlp", 10), ("cnn", 6), ("resnet18", 3)] {
        let d = base.join(name);
        let (shape, x) = npy(&d.join("x.npy"));
        let (_, y) = npy(&d.join("y.npy"));
        let labels: Vec<u32> = y.iter().map(|&v| v as u32).collect();
        let reference = json(&d.join("vog.json"));
        let mut seen: Vec<Vec<GradOutput>> = Vec::new();
        for via in [Via::InProcess, Via::Plugin] {
            let b = torch(via);
            let mut outs = Vec::new();
            for epoch in [1, k] {
                let mut m = b.load(&d.join(format!("epoch_{epoch}.pt"))).unwrap();
                for (target_name, target) in [
                    ("logit", Target::Logit),
                    ("probability", Target::Probability),
                ] {
                    // "true" uses the labels; "predicted" the last checkpoint's prediction, which
                    // is each row's argmax at the last epoch.
                    let modes: &[&str] = if epoch == k {
                        &["true", "predicted"]
                    } else {
                        &["true"]
                    };
                    for &mode in modes {
                        let classes = if mode == "true" {
                            Classes::Given(&labels)
                        } else {
                            Classes::Argmax
                        };
                        let req = GradRequest {
                            input: TensorView::new(&shape, &x).unwrap(),
                            classes,
                            target,
                        };
                        let out = m.input_gradients(&req).unwrap();
                        out.validate(&req).unwrap();
                        let (_, want) =
                            npy(&d.join(format!("grad_{epoch}_{target_name}_{mode}.npy")));
                        let err = max_rel(&out.gradient, &want);
                        assert!(err < 1e-6, "{name} epoch {epoch} {target_name} {mode} {via:?}: gradient off by {err:e}");
                        outs.push(out);
                    }
                }
            }
            seen.push(outs);
            // VoG through the engine against PyTorch's.
            for mode in ["true", "predicted"] {
                for target in ["logit", "probability"] {
                    let c = config(&d, &format!("{}/*.pt", d.display()), mode, target);
                    let r = score(&c, Some(b.as_ref()), &Silent).unwrap();
                    for (wi, w) in r.windows.iter().enumerate() {
                        let want = reference[format!("{mode}/{target}")][&w.name]["raw"]
                            .as_array()
                            .unwrap();
                        for (e, v) in r.examples.iter().zip(want) {
                            let v = v.as_f64().unwrap();
                            assert!(
                                (e.vog[wi] - v).abs() <= 1e-6 * v.abs(),
                                "{name} {mode}/{target} {} row {}: {} vs {v}",
                                w.name,
                                e.row,
                                e.vog[wi]
                            );
                        }
                    }
                }
            }
        }
        assert!(
            seen[0] == seen[1],
            "{name}: in-process and plugin results differ"
        );
    }
}

fn vog_close(a: &RunResult, b: &RunResult, what: &str) {
    assert_eq!(a.examples.len(), b.examples.len());
    for (ea, eb) in a.examples.iter().zip(&b.examples) {
        assert_eq!(ea.label_used, eb.label_used, "{what}: row {}", ea.row);
        for (w, (va, vb)) in a.windows.iter().zip(ea.vog.iter().zip(&eb.vog)) {
            assert!(
                (va - vb).abs() <= 1e-5 * va.abs(),
                "{what} {} row {}: {va} vs {vb}",
                w.name,
                ea.row
            );
        }
        for (na, nb) in ea.vog_norm.iter().zip(&eb.vog_norm) {
            let (na, nb) = (na.unwrap(), nb.unwrap());
            assert!(
                (na - nb).abs() <= 1e-5 * na.abs().max(1.0),
                "{what}: {na} vs {nb}"
            );
        }
    }
}

#[test]
fn vog_agrees_with_candle_and_onnx_on_the_same_weights() {
    let base = models();
    let t = torch(Via::Plugin);
    let ort =
        std::env::var_os("ORT_DYLIB_PATH").expect("set ORT_DYLIB_PATH (scripts/test.sh does)");
    let onnx = vog_plugin_host::load(&plugin("onnx"))
        .unwrap()
        .create(&format!(
            "library = \"{}\"\ncache = false",
            ort.to_string_lossy()
        ))
        .unwrap();
    let cnn_layers = r#"arch = "sequential"
layers = [
  { type = "conv2d", padding = 1 }, { type = "batchnorm2d" }, { type = "relu" }, { type = "maxpool2d", kernel = 2 },
  { type = "conv2d", padding = 1, groups = 2 }, { type = "batchnorm2d" }, { type = "relu" },
  { type = "maxpool2d", kernel = 3, stride = 2, padding = 1 }, { type = "avgpool2d", kernel = 3, stride = 1, padding = 1 },
  { type = "flatten" }, { type = "linear" }, { type = "relu" }, { type = "dropout" }, { type = "linear" },
]"#;
    for (name, candle_options) in [("mlp", "arch = \"mlp\""), ("cnn", cnn_layers)] {
        let golden = root().join("tests/data/golden").join(name);
        let candle = vog_backend_candle::CandleBackend::from_options(candle_options).unwrap();
        for mode in ["true", "predicted"] {
            for target in ["logit", "probability"] {
                let rt = score(
                    &config(
                        &golden,
                        &format!("{}/*.pt", base.join(name).display()),
                        mode,
                        target,
                    ),
                    Some(t.as_ref()),
                    &Silent,
                )
                .unwrap();
                let rc = score(
                    &config(
                        &golden,
                        &format!("{}/ckpt/*.safetensors", golden.display()),
                        mode,
                        target,
                    ),
                    Some(&candle),
                    &Silent,
                )
                .unwrap();
                let onnx_glob = format!("{}/tests/data/onnx/{name}/epoch_*.onnx", root().display());
                let ro = score(
                    &config(&golden, &onnx_glob, mode, target),
                    Some(&onnx),
                    &Silent,
                )
                .unwrap();
                vog_close(&rt, &rc, &format!("{name} {mode}/{target} torch vs candle"));
                vog_close(&rt, &ro, &format!("{name} {mode}/{target} torch vs onnx"));
            }
        }
    }
}

#[test]
fn not_torchscript_wrong_shape_and_missing_gpu_are_clear_errors() {
    let base = models();
    let b = torch(Via::Plugin);
    let err = b.load(&base.join("state_dict.pt")).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "{msg}");
    assert!(
        msg.contains("state_dict.pt")
            && msg.contains("not a TorchScript file")
            && msg.contains("torch.jit.trace"),
        "{msg}"
    );
    let mut m = b.load(&base.join("mlp/epoch_1.pt")).unwrap();
    let x = vec![0.5f32; 2 * 7];
    let err = m
        .input_gradients(&GradRequest {
            input: TensorView::new(&[2, 7], &x).unwrap(),
            classes: Classes::Argmax,
            target: Target::Logit,
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Shape(_)) && err.to_string().contains("[7]"),
        "{err}"
    );
    let x = vec![0.5f32; 2 * 20];
    let err = m
        .input_gradients(&GradRequest {
            input: TensorView::new(&[2, 20], &x).unwrap(),
            classes: Classes::Given(&[0, 9]),
            target: Target::Logit,
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ClassOutOfRange {
                class: 9,
                num_classes: 4,
                row: 1
            }
        ),
        "{err}"
    );
    if tch::Cuda::device_count() == 0 {
        let err = vog_plugin_host::load(&plugin("torch"))
            .unwrap()
            .create("device = \"cuda\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("sees no CUDA GPU"), "{err}");
        let err = vog_backend_torch::TorchBackend::from_options("dtype = \"bf16\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bf16/f16 is for GPUs"), "{err}");
    }
    let err = vog_backend_torch::TorchBackend::from_options("device = \"tpu\"")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`tpu`"), "{err}");
}
