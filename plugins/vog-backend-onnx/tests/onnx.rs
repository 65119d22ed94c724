//! The ONNX Runtime backend against the exporting frameworks' own gradients, in-process and as a
//! plugin, and against the candle backend on the same checkpoints.
//!
//! Needs `ORT_DYLIB_PATH` (ONNX Runtime 1.31.1 from PyPI) and, for the ResNet-18 test,
//! `VOG_ONNX_LARGE` (a directory written by `tests/data/onnx/make_onnx.py --large DIR`);
//! `scripts/test.sh` sets both.

use std::path::{Path, PathBuf};

use vog_core::{Classes, Error, GradOutput, GradRequest, GradientBackend, Target, TensorView};
use vog_engine::{score, Config, Silent};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(rel: &str) -> PathBuf {
    root().join("tests/data").join(rel)
}

fn require_runtime() {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty()),
        "set ORT_DYLIB_PATH to ONNX Runtime 1.31.1 (scripts/test.sh installs it and sets it)"
    );
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let mut a = vog_data::ArrayFile::open_npy(path).unwrap_or_else(|e| panic!("{e}"));
    let shape = a.shape().to_vec();
    let mut out = Vec::new();
    let rows = a.rows();
    a.read_f32(0, rows, &mut out).unwrap();
    (shape, out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    InProcess,
    Plugin,
}

/// The plugin library, built by cargo (once per test run) into `<target>/plugin-tests`, beside the
/// test build, so that it is always current (cargo does not rebuild this package's cdylib for
/// its own tests).
fn plugin_path() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
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
                    "vog-backend-onnx",
                ])
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("cargo runs");
            assert!(out.status.success(), "building the onnx plugin failed");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact")
                .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .find(|p| vog_plugin_host::name_from_file(p).as_deref() == Some("onnx"))
                .expect("cargo reported the plugin library")
        })
        .clone()
}

fn backend(via: Via, options: &str) -> vog_core::Result<Box<dyn GradientBackend>> {
    require_runtime();
    let options = format!("{options}\ncache = false\n");
    Ok(match via {
        Via::InProcess => Box::new(vog_backend_onnx::OnnxBackend::from_options(&options)?),
        Via::Plugin => Box::new(
            vog_plugin_host::load(&plugin_path())
                .unwrap()
                .create(&options)?,
        ),
    })
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).abs() / scale)
        .fold(0.0, f64::max)
}

fn run(
    b: &dyn GradientBackend,
    ckpt: &Path,
    x: &[f32],
    shape: &[usize],
    classes: Classes<'_>,
    target: Target,
) -> GradOutput {
    let mut m = b
        .load(ckpt)
        .unwrap_or_else(|e| panic!("{}: {e}", ckpt.display()));
    let req = GradRequest {
        input: TensorView::new(shape, x).unwrap(),
        classes,
        target,
    };
    let out = m
        .input_gradients(&req)
        .unwrap_or_else(|e| panic!("{}: {e}", ckpt.display()));
    out.validate(&req).unwrap();
    out
}

/// Gradients of the skeleton's MLP and CNN (both exporters) against torch autograd.
#[test]
fn golden_mlp_and_cnn_match_torch_for_both_exporters() {
    for (name, last) in [("mlp", 10), ("cnn", 6)] {
        let (xs, x) = npy(&data(&format!("golden/{name}/x.npy")));
        let (_, y) = npy(&data(&format!("golden/{name}/y.npy")));
        let rows = 8;
        let mut shape = xs.clone();
        shape[0] = rows;
        let x = &x[..rows * xs[1..].iter().product::<usize>()];
        let labels: Vec<u32> = y[..rows].iter().map(|&v| v as u32).collect();
        // In process and through the plugin ABI; with vog's own kernels (the default) and with
        // standard ONNX ops only.
        let passes = [
            (Via::InProcess, ""),
            (Via::Plugin, ""),
            (Via::InProcess, "vog_ops = false"),
        ];
        let mut seen = vec![Vec::new(); passes.len()];
        for (pass, (via, options)) in passes.into_iter().enumerate() {
            let b = backend(via, options).unwrap();
            for file in [
                format!("epoch_{last}.onnx"),
                format!("dynamo_epoch_{last}.onnx"),
            ] {
                let ckpt = data(&format!("onnx/{name}/{file}"));
                for (tag, classes, target) in [
                    ("logit", Classes::Given(&labels), Target::Logit),
                    ("probability", Classes::Given(&labels), Target::Probability),
                    ("argmax", Classes::Argmax, Target::Logit),
                ] {
                    let out = run(b.as_ref(), &ckpt, x, &shape, classes, target);
                    let (_, want) =
                        npy(&data(&format!("golden/{name}/grad_epoch_{last}_{tag}.npy")));
                    let err = max_rel(&out.gradient, &want);
                    assert!(
                        err < 1e-5,
                        "{name} {file} {tag} {via:?} `{options}`: gradient off by {err:e}"
                    );
                    assert!(out.gradient_shape.is_none());
                    seen[pass].push(out);
                }
            }
        }
        assert_eq!(
            seen[0], seen[1],
            "{name}: in-process and plugin results differ"
        );
        assert_eq!(
            seen[0], seen[2],
            "{name}: vog's kernels and standard ONNX ops give different results"
        );
    }
}

/// A transformer (LayerNorm, attention MatMuls, Softmax, Gelu), a network touching many other ops
/// (`tests/data/onnx/opzoo/ops.txt`) and a text model scored with respect to its embedding output,
/// against torch autograd; scikit-learn against numpy.
#[test]
fn transformer_text_and_sklearn_models_match_their_references() {
    let cases: [(&str, &str, Vec<&str>, &str); 3] = [
        (
            "transformer",
            "",
            vec!["epoch_3.onnx", "dynamo_epoch_3.onnx"],
            "x.npy",
        ),
        ("text", "WRT", vec!["epoch_3.onnx"], "x.npy"),
        (
            "sklearn",
            "output = \"add_result1\"",
            vec!["epoch_3.onnx"],
            "x.npy",
        ),
    ];
    for (name, options, files, xfile) in cases {
        let dir = data(&format!("onnx/{name}"));
        let options = if options == "WRT" {
            format!(
                "wrt = \"{}\"",
                std::fs::read_to_string(dir.join("wrt.txt")).unwrap().trim()
            )
        } else {
            options.to_string()
        };
        let (shape, x) = npy(&dir.join(xfile));
        let (_, y) = npy(&dir.join("y.npy"));
        let labels: Vec<u32> = y.iter().map(|&v| v as u32).collect();
        let targets: &[(&str, Target)] = if name == "sklearn" {
            &[("logit", Target::Logit)]
        } else {
            &[
                ("logit", Target::Logit),
                ("probability", Target::Probability),
            ]
        };
        for via in [Via::InProcess, Via::Plugin] {
            let b = backend(via, &options).unwrap();
            for file in &files {
                for &(tag, target) in targets {
                    for (mode, classes) in [
                        ("given", Classes::Given(&labels)),
                        ("argmax", Classes::Argmax),
                    ] {
                        let out = run(b.as_ref(), &dir.join(file), &x, &shape, classes, target);
                        let (gshape, want) = npy(&dir.join(format!("grad_{tag}_{mode}.npy")));
                        let err = max_rel(&out.gradient, &want);
                        assert!(
                            err < 1e-5,
                            "{name} {file} {tag} {mode} {via:?}: gradient off by {err:e}"
                        );
                        if name == "text" {
                            assert_eq!(
                                out.gradient_shape.as_deref(),
                                Some(&gshape[1..]),
                                "text: gradient shaped like the embedding"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A full-width CIFAR ResNet-18, written at test time by the export script.
#[test]
fn resnet18_matches_torch() {
    let dir = PathBuf::from(std::env::var_os("VOG_ONNX_LARGE").expect(
        "set VOG_ONNX_LARGE to a directory written by tests/data/onnx/make_onnx.py --large DIR (scripts/test.sh does)",
    ));
    assert!(
        dir.join("done").is_file(),
        "{} is incomplete; rerun make_onnx.py --large",
        dir.display()
    );
    let (shape, x) = npy(&dir.join("x.npy"));
    let (_, y) = npy(&dir.join("y.npy"));
    let labels: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    let b = backend(Via::Plugin, "").unwrap();
    for file in ["epoch_2.onnx", "dynamo_epoch_2.onnx"] {
        for (tag, target) in [
            ("logit", Target::Logit),
            ("probability", Target::Probability),
        ] {
            for (mode, classes) in [
                ("given", Classes::Given(&labels)),
                ("argmax", Classes::Argmax),
            ] {
                let out = run(b.as_ref(), &dir.join(file), &x, &shape, classes, target);
                let (_, want) = npy(&dir.join(format!("grad_{tag}_{mode}.npy")));
                let err = max_rel(&out.gradient, &want);
                assert!(
                    err < 1e-5,
                    "resnet18 {file} {tag} {mode}: gradient off by {err:e}"
                );
            }
        }
    }
}

fn engine_config(data_dir: &Path, ckpt: &Path, ext: &str, mode: &str, target: &str) -> Config {
    Config::from_toml(&format!(
        "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [\"{}/*.{ext}\"]\n\
         [backend]\nbatch_size = 7\n[scoring]\nlabels = \"{mode}\"\ntarget = \"{target}\"\n",
        data_dir.join("x.npy").display(),
        data_dir.join("y.npy").display(),
        ckpt.display()
    ))
    .unwrap()
}

/// VoG through this backend equals VoG through candle on the same checkpoints, in every label
/// mode and target, for the MLP and the CNN.
#[test]
fn vog_agrees_with_the_candle_backend() {
    let cnn_layers = r#"arch = "sequential"
layers = [
  { type = "conv2d", padding = 1 }, { type = "batchnorm2d" }, { type = "relu" }, { type = "maxpool2d", kernel = 2 },
  { type = "conv2d", padding = 1, groups = 2 }, { type = "batchnorm2d" }, { type = "relu" },
  { type = "maxpool2d", kernel = 3, stride = 2, padding = 1 }, { type = "avgpool2d", kernel = 3, stride = 1, padding = 1 },
  { type = "flatten" }, { type = "linear" }, { type = "relu" }, { type = "dropout" }, { type = "linear" },
]"#;
    let onnx = backend(Via::Plugin, "").unwrap();
    for (name, candle_options) in [("mlp", "arch = \"mlp\""), ("cnn", cnn_layers)] {
        let candle = vog_backend_candle::CandleBackend::from_options(candle_options).unwrap();
        let golden = data(&format!("golden/{name}"));
        for mode in ["true", "predicted", "predicted-each"] {
            for target in ["logit", "probability"] {
                let a = score(
                    &engine_config(&golden, &golden.join("ckpt"), "safetensors", mode, target),
                    Some(&candle),
                    &Silent,
                )
                .unwrap();
                // Only the legacy exports: the dynamo file of the last epoch would count twice.
                let onnx_dir = tempfile::tempdir().unwrap();
                for e in std::fs::read_dir(data(&format!("onnx/{name}"))).unwrap() {
                    let p = e.unwrap().path();
                    let f = p.file_name().unwrap().to_string_lossy().into_owned();
                    if f.starts_with("epoch_") {
                        std::fs::copy(&p, onnx_dir.path().join(&f)).unwrap();
                    }
                }
                let b = score(
                    &engine_config(&golden, onnx_dir.path(), "onnx", mode, target),
                    Some(onnx.as_ref()),
                    &Silent,
                )
                .unwrap();
                assert_eq!(a.examples.len(), b.examples.len());
                for (ea, eb) in a.examples.iter().zip(&b.examples) {
                    assert_eq!(
                        ea.label_used, eb.label_used,
                        "{name} {mode} {target}: row {}",
                        ea.row
                    );
                    for (w, (va, vb)) in a.windows.iter().zip(ea.vog.iter().zip(&eb.vog)) {
                        assert!(
                            (va - vb).abs() <= 1e-5 * va.abs(),
                            "{name} {mode} {target} {} row {}: {va} vs {vb}",
                            w.name,
                            ea.row
                        );
                    }
                    for (na, nb) in ea.vog_norm.iter().zip(&eb.vog_norm) {
                        let (na, nb) = (na.unwrap(), nb.unwrap());
                        assert!(
                            (na - nb).abs() <= 1e-5 * na.abs().max(1.0),
                            "{name} {mode} {target}: {na} vs {nb}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn unsupported_ops_are_all_named() {
    let b = backend(Via::Plugin, "").unwrap();
    let err = b.load(&data("onnx/unsupported.onnx")).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "{msg}");
    assert!(
        msg.contains("unsupported.onnx")
            && msg.contains("cannot differentiate 2 node(s)")
            && msg.contains("HardSwish (node `the_hardswish`)")
            && msg.contains("Selu (node `the_selu`)"),
        "{msg}"
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let b = backend(Via::Plugin, "").unwrap();
    // Data that does not fit the model.
    let x = vec![0.5f32; 2 * 7];
    let mut m = b.load(&data("onnx/mlp/epoch_1.onnx")).unwrap();
    let err = m
        .input_gradients(&GradRequest {
            input: TensorView::new(&[2, 7], &x).unwrap(),
            classes: Classes::Argmax,
            target: Target::Logit,
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Shape(_))
            && err.to_string().contains("declared [?, 20]")
            && err.to_string().contains("[N, 7]"),
        "{err}"
    );
    // A class out of range.
    let x = vec![0.5f32; 2 * 20];
    let err = m
        .input_gradients(&GradRequest {
            input: TensorView::new(&[2, 20], &x).unwrap(),
            classes: Classes::Given(&[1, 9]),
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
    // A corrupt file and a missing one.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(data("onnx/cnn/epoch_1.onnx")).unwrap();
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let err = b.load(&corrupt).err().unwrap();
    assert!(
        matches!(err, Error::Checkpoint { .. })
            && err.to_string().contains("corrupt.onnx")
            && err.to_string().contains("not a valid ONNX model"),
        "{err}"
    );
    let err = b.load(&dir.path().join("missing.onnx")).err().unwrap();
    assert!(
        err.to_string().contains("missing.onnx") && err.to_string().contains("file not found"),
        "{err}"
    );
    // A dynamo export whose external data file is gone.
    let ext = dir.path().join("dynamo.onnx");
    std::fs::copy(data("onnx/mlp/dynamo_epoch_10.onnx"), &ext).unwrap();
    let err = b.load(&ext).err().unwrap();
    assert!(
        err.to_string().contains("dynamo_epoch_10.onnx.data"),
        "{err}"
    );
}

#[test]
fn gradient_graphs_are_cached_by_model_hash() {
    require_runtime();
    let cache = tempfile::tempdir().unwrap();
    let options = format!("cache_dir = \"{}\"", cache.path().display());
    let b = vog_backend_onnx::OnnxBackend::from_options(&options).unwrap();
    b.load(&data("onnx/mlp/epoch_1.onnx")).unwrap();
    let files = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let first = files(cache.path());
    assert_eq!(first.len(), 2, "{first:?}");
    let stamp = std::fs::metadata(cache.path().join(&first[0]))
        .unwrap()
        .modified()
        .unwrap();
    b.load(&data("onnx/mlp/epoch_1.onnx")).unwrap();
    assert_eq!(files(cache.path()), first);
    assert_eq!(
        std::fs::metadata(cache.path().join(&first[0]))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    b.load(&data("onnx/mlp/epoch_2.onnx")).unwrap();
    assert_eq!(files(cache.path()).len(), 4);
}

/// A max pool's gradient goes to the first maximum of each window (row-major), as PyTorch's does,
/// also when the maximum is tied, with and without (zero) padding, in ceil mode, with overlapping
/// windows and through a ReLU in front of the pool; through vog's own `MaxPoolGrad` kernel (the
/// default) and through standard ONNX ops only (`vog_ops = false`); in float and double models.
#[test]
fn max_pool_gradients_go_to_the_first_tied_maximum() {
    use vog_onnx::graph::{make_i, make_ints};
    use vog_onnx::proto::{
        tensor_proto::DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    };
    let value = |name: &str, dims: &[Option<i64>], elem: DataType| {
        vog_onnx::graph::value_info(name, elem as i32, Some(dims.to_vec()))
    };
    let dir = tempfile::tempdir().unwrap();
    // Window 0: 1, 1 / 1, 0 → first at (0, 0). Window 1: 0, 2 / 2, 2 → first at (0, 3).
    let tied = [1.0f32, 1.0, 0.0, 2.0, 1.0, 0.0, 2.0, 2.0];
    // Through a ReLU: window 0 is all negative (zeros after the ReLU: no gradient passes).
    let negative = [-1.0f32, -2.0, 0.0, 2.0, -3.0, -4.0, 2.0, 2.0];
    let pool = |extra: Vec<_>| {
        let mut a = vec![
            make_ints("kernel_shape", vec![2, 2]),
            make_ints("strides", vec![2, 2]),
        ];
        a.extend(extra);
        a
    };
    // (name, pool attributes, ReLU first, input row, gradient index for class 0 and 1)
    let cases = [
        ("plain", pool(vec![]), false, tied, [Some(0), Some(3)]),
        (
            "ceil mode",
            pool(vec![
                make_ints("pads", vec![0, 0, 0, 0]),
                make_i("ceil_mode", 1),
            ]),
            false,
            tied,
            [Some(0), Some(3)],
        ),
        // 2×3 windows, stride 1: columns 0–2 (max 2 at (1, 2)) and 1–3 (first 2 at (0, 3)).
        (
            "overlapping",
            vec![
                make_ints("kernel_shape", vec![2, 3]),
                make_ints("strides", vec![1, 1]),
            ],
            false,
            tied,
            [Some(6), Some(3)],
        ),
        ("relu", pool(vec![]), true, negative, [None, Some(3)]),
    ];
    for (options, elem) in [
        ("", DataType::Float),
        ("vog_ops = false", DataType::Float),
        ("", DataType::Double),
    ] {
        for (name, pool_attrs, relu, row, want_at) in &cases {
            let mut node = vec![];
            let pooled_from = if *relu {
                node.push(NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["x".into()],
                    output: vec!["r".into()],
                    ..Default::default()
                });
                "r"
            } else {
                "x"
            };
            node.push(NodeProto {
                op_type: "MaxPool".into(),
                input: vec![pooled_from.into()],
                output: vec!["p".into()],
                attribute: pool_attrs.clone(),
                ..Default::default()
            });
            node.push(NodeProto {
                op_type: "Flatten".into(),
                input: vec!["p".into()],
                output: vec!["logits".into()],
                attribute: vec![make_i("axis", 1)],
                ..Default::default()
            });
            // x [N, 1, 2, 4] → (Relu) → MaxPool → [N, 1, 1, 2] → Flatten → logits [N, 2]
            let model = ModelProto {
                ir_version: 8,
                opset_import: vec![OperatorSetIdProto {
                    domain: String::new(),
                    version: 17,
                }],
                graph: Some(GraphProto {
                    name: "pool".into(),
                    node,
                    input: vec![value("x", &[None, Some(1), Some(2), Some(4)], elem)],
                    output: vec![value("logits", &[None, Some(2)], elem)],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let path = dir.path().join(format!("{}.onnx", name.replace(' ', "_")));
            std::fs::write(&path, vog_onnx::encode_model(&model)).unwrap();
            let b = backend(Via::InProcess, options).unwrap();
            let mut m = b.load(&path).unwrap();
            let input: Vec<f32> = row.iter().chain(row).copied().collect();
            let shape = [2, 1, 2, 4];
            let request = GradRequest {
                input: TensorView::new(&shape, &input).unwrap(),
                classes: Classes::Given(&[0, 1]),
                target: Target::Logit,
            };
            let out = m.input_gradients(&request).unwrap();
            let mut want = vec![0.0f32; 16];
            for (r, at) in want_at.iter().enumerate() {
                if let Some(i) = at {
                    want[8 * r + i] = 1.0;
                }
            }
            assert_eq!(out.gradient, want, "{name}, options `{options}`, {elem:?}");
        }
    }
}
