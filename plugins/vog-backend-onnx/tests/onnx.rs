//! The ONNX Runtime backend against the exporting frameworks' own gradients, in-process and as a
//! plugin, and against the candle backend on the same checkpoints; the checks are
//! `vog-conformance`'s.
//!
//! Needs `ORT_DYLIB_PATH` (ONNX Runtime 1.31.1 from PyPI) and, for the ResNet-18 test,
//! `VOG_ONNX_LARGE` (a directory written by `tests/data/onnx/make_onnx.py --large DIR`);
//! `scripts/test.sh` sets both.

use std::path::{Path, PathBuf};

use vog_backend_candle::CandleBackend;
use vog_backend_onnx::OnnxBackend;
use vog_conformance::{
    assert_scores_agree, check_errors, check_gradients, check_plugin_equivalence,
    check_vog_through_engine, repo, Case, Pick, PluginBuild, Reference, Subject, VogCase,
};
use vog_core::{Classes, Error, GradRequest, GradientBackend, Target, TensorView};
use vog_engine::LabelMode;

fn data(rel: &str) -> PathBuf {
    repo::data(rel)
}

fn require_runtime() {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty()),
        "set ORT_DYLIB_PATH to ONNX Runtime 1.31.1 (scripts/test.sh installs it and sets it)"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    InProcess,
    Plugin,
}

/// The backend with `options` (and no gradient-graph cache), in-process or as the plugin library
/// built by cargo (once per test run) into `<target>/plugin-tests`, beside the test build, so
/// that it is always current (cargo does not rebuild this package's cdylib for its own tests).
fn onnx(via: Via, options: &str) -> Subject {
    require_runtime();
    let options = format!("{options}\ncache = false\n");
    match via {
        Via::InProcess => Subject::in_process::<OnnxBackend>(options),
        Via::Plugin => Subject::plugin(
            &PluginBuild::new(repo::root())
                .package("vog-backend-onnx")
                .library("onnx"),
            options,
        ),
    }
}

/// Requests on `files` of `dir`: each target with the labels and with the argmax, against
/// `grad_<target>_<given|argmax>.npy` and `logits.npy` of `dir`.
fn requests(mut case: Case, dir: &Path, files: &[&str], targets: &[(&str, Target)]) -> Case {
    for file in files {
        for &(tag, target) in targets {
            for (mode, pick) in [("given", Pick::Labels), ("argmax", Pick::Argmax)] {
                case = case.reference(
                    Reference::new(dir.join(file), pick, target)
                        .gradient(dir.join(format!("grad_{tag}_{mode}.npy")))
                        .logits(dir.join("logits.npy")),
                );
            }
        }
    }
    case
}

const BOTH_TARGETS: [(&str, Target); 2] = [
    ("logit", Target::Logit),
    ("probability", Target::Probability),
];

/// Gradients and logits of the skeleton's MLP and CNN (both exporters) against torch autograd.
#[test]
fn golden_mlp_and_cnn_match_torch_for_both_exporters() {
    for (name, last) in [("mlp", 10), ("cnn", 6)] {
        let case = repo::case(
            name,
            ["epoch", "dynamo_epoch"]
                .map(|f| (last, data(&format!("onnx/{name}/{f}_{last}.onnx")))),
        );
        // In process and through the plugin ABI (every check, bit-identical); with vog's own
        // kernels (the default) and with standard ONNX ops only.
        let [seen, _] = check_plugin_equivalence(
            &onnx(Via::InProcess, ""),
            &onnx(Via::Plugin, ""),
            &case,
            None,
        );
        assert_eq!(seen.gradients.len(), 6);
        let standard = check_gradients(&onnx(Via::InProcess, "vog_ops = false"), &case);
        let what = format!("{name}: vog's kernels versus standard ONNX ops");
        if name == "cnn" {
            // The first convolution's input gradient (one channel) is vog's ConvInputGrad, which
            // sums in another order than ConvTranspose: the same to float rounding. (Both are
            // also checked against torch autograd above.) The max pools' kernel is exact.
            seen.gradients.assert_agree(&standard, &what, 1e-5);
        } else {
            seen.gradients.assert_identical(&standard, &what);
        }
    }
}

/// A float gradient leaves ONNX Runtime without a copy: lent from the run's output value, and
/// still readable after later runs and after the model is gone.
#[test]
fn float_gradients_are_lent_from_the_runs_output() {
    require_runtime();
    let backend = OnnxBackend::from_options("cache = false").expect("options");
    let mut model = backend
        .load(&data("onnx/mlp/epoch_10.onnx"))
        .expect("model");
    let (shape, x) = vog_conformance::npy(&repo::golden("mlp").join("x.npy"));
    let run = |model: &mut Box<dyn vog_core::Model>| {
        model
            .input_gradients(&GradRequest {
                input: TensorView::new(&shape, &x).expect("input"),
                classes: Classes::Argmax,
                target: Target::Logit,
            })
            .expect("gradients")
    };
    let first = run(&mut model);
    assert!(first.gradient.is_lent());
    let copy = first.gradient.to_vec();
    let second = run(&mut model);
    drop(model);
    assert!(second.gradient.is_lent());
    assert!(first.gradient[..] == copy[..] && second.gradient[..] == copy[..]);
}

/// A transformer (LayerNorm, attention MatMuls, Softmax, Gelu), a stack of recurrent layers
/// (a bidirectional LSTM, a GRU, an RNN: unrolled over time), a network touching many other ops
/// (`tests/data/onnx/opzoo/ops.txt`) and a text model scored with respect to its embedding output,
/// against torch autograd; scikit-learn against numpy.
#[test]
fn transformer_opzoo_text_and_sklearn_models_match_their_references() {
    let cases: [(&str, &str, &[&str]); 5] = [
        ("transformer", "", &["epoch_3.onnx", "dynamo_epoch_3.onnx"]),
        ("recurrent", "", &["epoch_2.onnx"]),
        ("opzoo", "", &["epoch_2.onnx", "dynamo_epoch_2.onnx"]),
        ("text", "WRT", &["epoch_3.onnx"]),
        ("sklearn", "output = \"add_result1\"", &["epoch_3.onnx"]),
    ];
    for (name, options, files) in cases {
        let dir = data(&format!("onnx/{name}"));
        let options = if options == "WRT" {
            format!(
                "wrt = \"{}\"",
                std::fs::read_to_string(dir.join("wrt.txt")).unwrap().trim()
            )
        } else {
            options.to_string()
        };
        let targets = if name == "sklearn" {
            &BOTH_TARGETS[..1]
        } else {
            &BOTH_TARGETS[..]
        };
        // The text model's gradient is shaped like its embedding output: `check_gradients`
        // requires `gradient_shape` to be the reference's row shape.
        let case = requests(
            Case::new(name, dir.join("x.npy"), dir.join("y.npy")),
            &dir,
            files,
            targets,
        );
        check_plugin_equivalence(
            &onnx(Via::InProcess, &options),
            &onnx(Via::Plugin, &options),
            &case,
            None,
        );
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
    let case = requests(
        Case::new("resnet18", dir.join("x.npy"), dir.join("y.npy")),
        &dir,
        &["epoch_2.onnx", "dynamo_epoch_2.onnx"],
        &BOTH_TARGETS,
    );
    assert_eq!(check_gradients(&onnx(Via::Plugin, ""), &case).len(), 8);
}

/// VoG through this backend equals VoG through candle on the same checkpoints, in every label
/// mode and target, for the MLP and the CNN.
#[test]
fn vog_agrees_with_the_candle_backend() {
    let onnx = onnx(Via::Plugin, "");
    for name in ["mlp", "cnn"] {
        let candle = Subject::in_process::<CandleBackend>(repo::options(name));
        let golden = repo::golden(name);
        let runs = |checkpoints: PathBuf| {
            let mut v = VogCase::new(name, golden.join("x.npy"), golden.join("y.npy"))
                .checkpoints([checkpoints])
                .batch_size(7);
            for mode in [
                LabelMode::True,
                LabelMode::Predicted,
                LabelMode::PredictedEach,
            ] {
                for target in [Target::Logit, Target::Probability] {
                    v = v.run(mode, target);
                }
            }
            v
        };
        let a = check_vog_through_engine(&candle, &runs(golden.join("ckpt/*.safetensors")));
        // Only the legacy exports: the dynamo file of the last epoch would count twice.
        let b = check_vog_through_engine(&onnx, &runs(data(&format!("onnx/{name}/epoch_*.onnx"))));
        assert_eq!(a.len(), 6);
        for (a, b) in a.iter().zip(&b) {
            assert_scores_agree(&format!("{name} candle versus onnx"), a, b, 1e-5);
        }
    }
}

#[test]
fn unsupported_ops_are_all_named() {
    let b = onnx(Via::Plugin, "").backend("unsupported ops");
    let err = b.load(&data("onnx/unsupported.onnx")).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "{msg}");
    assert!(
        msg.contains("unsupported.onnx")
            && msg.contains("cannot differentiate 2 node(s)")
            && msg.contains("Shrink (node `the_shrink`)")
            && msg.contains("Hardmax (node `the_hardmax`)")
            && msg.contains("re-export")
            && msg.contains("[backend.options] wrt")
            && msg.contains("vog.torch.Backend"),
        "{msg}"
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    // Every error path of the conformance suite (shapes, classes, missing and damaged
    // checkpoints, options, NaN), and this backend's wording.
    let plugin = onnx(Via::Plugin, "");
    let case = repo::case("mlp", [(1, data("onnx/mlp/epoch_1.onnx"))]).wrong_row_shape(vec![7]);
    let errors = check_errors(&plugin, &case);
    let shape = errors.shape.to_string();
    assert!(
        shape.contains("declared [?, 20]") && shape.contains("[N, 7]"),
        "{shape}"
    );
    let damaged = errors.damaged.to_string();
    assert!(damaged.contains("not a valid ONNX model"), "{damaged}");
    let missing = errors.missing.to_string();
    assert!(missing.contains("file not found"), "{missing}");
    // A dynamo export whose external data file is gone.
    let b = plugin.backend("external data");
    let dir = tempfile::tempdir().unwrap();
    let ext = dir.path().join("dynamo.onnx");
    std::fs::copy(data("onnx/mlp/dynamo_epoch_10.onnx"), &ext).unwrap();
    let err = b.load(&ext).err().unwrap();
    assert!(
        err.to_string().contains("dynamo_epoch_10.onnx.data"),
        "{err}"
    );
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
            let b = onnx(Via::InProcess, options).backend("max pool");
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
            assert_eq!(*out.gradient, want, "{name}, options `{options}`, {elem:?}");
        }
    }
}

/// A small image model on `[N, 3, 5, 3]` inputs, read channels-last (an NHWC-to-NCHW transpose
/// in front of the convolution, as Keras and jax2onnx export) or channels-first (the
/// convolution on the input as it comes), with weights from `seed`.
fn image_model(channels_last: bool, seed: u64) -> Vec<u8> {
    use vog_onnx::graph::{make_i, make_ints, tensor_f32, value_info};
    use vog_onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
    let mut s = vog_core::SplitMix64::new(seed);
    let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| s.uniform() as f32 - 0.5).collect() };
    let node = |op: &str, inputs: &[&str], output: &str, attrs| NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    };
    // Channels last: [N, 3 (H), 5 (W), 3 (C)] → [N, C, H, W]; first: [N, 3 (C), 5 (H), 3 (W)].
    let mut nodes = Vec::new();
    let conv_in = if channels_last {
        nodes.push(node(
            "Transpose",
            &["x"],
            "xt",
            vec![make_ints("perm", vec![0, 3, 1, 2])],
        ));
        "xt"
    } else {
        "x"
    };
    nodes.extend([
        node(
            "Conv",
            &[conv_in, "w", "b"],
            "c",
            vec![make_ints("pads", vec![1; 4])],
        ),
        node("Tanh", &["c"], "t", vec![]),
        node("Flatten", &["t"], "f", vec![make_i("axis", 1)]),
        node("Gemm", &["f", "w2"], "logits", vec![make_i("transB", 1)]),
    ]);
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "image".into(),
            node: nodes,
            initializer: vec![
                tensor_f32("w", vec![2, 3, 3, 3], values(54)),
                tensor_f32("b", vec![2], values(2)),
                tensor_f32("w2", vec![4, 30], values(120)),
            ],
            input: vec![value_info(
                "x",
                1,
                Some(vec![None, Some(3), Some(5), Some(3)]),
            )],
            output: vec![value_info("logits", 1, None)],
            ..Default::default()
        }),
        ..Default::default()
    };
    vog_onnx::encode_model(&model)
}

/// `scoring.channel_axis = "auto"` on examples shaped `[3, 5, 3]` (the shape alone does not say
/// where the colours are) follows the model: its convolution reads the input behind an
/// NHWC-to-NCHW transpose (channels last) or as it comes (channels first); through the plugin's
/// ABI 1.1 entry, and recorded in run.json's `scoring.channels`.
#[test]
fn auto_channels_follow_the_models_input_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = vog_core::SplitMix64::new(7);
    let x: Vec<f32> = (0..6 * 45)
        .map(|_| s.uniform() as f32 * 2.0 - 1.0)
        .collect();
    vog_data::write_npy_f32(&dir.path().join("x.npy"), &[6, 3, 5, 3], &x).unwrap();
    vog_data::write_npy_i64(&dir.path().join("y.npy"), &[6], &[0, 1, 2, 3, 0, 1]).unwrap();
    let plugin = onnx(Via::Plugin, "");
    for (last, want) in [
        (true, vog_core::ChannelReduce::MeanLast),
        (false, vog_core::ChannelReduce::Mean),
    ] {
        let sub = dir.path().join(if last { "last" } else { "first" });
        std::fs::create_dir_all(&sub).unwrap();
        for seed in 1..=3 {
            std::fs::write(
                sub.join(format!("ckpt_{seed}.onnx")),
                image_model(last, seed),
            )
            .unwrap();
        }
        let case = VogCase::new("layout", dir.path().join("x.npy"), dir.path().join("y.npy"))
            .checkpoints([sub.join("ckpt_*.onnx")]);
        let config = case.config(LabelMode::True, Target::Logit, plugin.options());
        let backend = plugin.backend("layout");
        let result = vog_engine::score(&config, Some(backend.as_ref()), &vog_engine::Silent)
            .unwrap_or_else(|e| panic!("channels last = {last}: {e}"));
        assert_eq!(
            result.manifest.scoring.channels, want,
            "channels last = {last}"
        );
        assert_eq!(
            result.manifest.scoring.vog_map_shape,
            if last { vec![3, 5] } else { vec![5, 3] }
        );
    }
    // Without the model's word the same examples are refused, naming the setting.
    let err = vog_core::ChannelAxis::Auto
        .resolve(vog_core::ChannelReduce::Mean, &[3, 5, 3])
        .unwrap_err();
    assert!(err.to_string().contains("channel_axis"), "{err}");
}
