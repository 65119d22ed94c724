//! `vog backends check onnx`: a small MLP written as an ONNX graph (MatMul, Add, Tanh, Gemm),
//! run through the whole backend, gradients checked against central finite differences.

use vog_core::{Classes, Error, GradRequest, GradientBackend, Result, Target, TensorView};
use vog_onnx::graph::{make_i, make_model, make_node, tensor_f32};
use vog_onnx::proto::{tensor_proto::DataType, GraphProto, ModelProto, ValueInfoProto};

use crate::OnnxBackend;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    vog_core::Lcg::new(seed).uniform_f32(n, -1.0, 1.0)
}

fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    vog_onnx::graph::value_info(name, DataType::Float as i32, Some(dims.to_vec()))
}

/// The test model: logits = Gemm(tanh(x·W1 + b1), W2ᵀ) + b2, x [N, 4], logits [N, 3].
pub(crate) fn tiny_mlp() -> ModelProto {
    let graph = GraphProto {
        name: "vog-selftest".into(),
        node: vec![
            make_node("MatMul", &["x", "w1"], "h0", vec![]),
            make_node("Add", &["h0", "b1"], "h1", vec![]),
            make_node("Tanh", &["h1"], "h2", vec![]),
            make_node(
                "Gemm",
                &["h2", "w2", "b2"],
                "logits",
                vec![make_i("transB", 1)],
            ),
        ],
        initializer: vec![
            tensor_f32("w1", vec![4, 5], values(20, 1)),
            tensor_f32("b1", vec![5], values(5, 2)),
            tensor_f32("w2", vec![3, 5], values(15, 3)),
            tensor_f32("b2", vec![3], values(3, 4)),
        ],
        input: vec![value("x", &[None, Some(4)])],
        output: vec![value("logits", &[None, Some(3)])],
        ..Default::default()
    };
    make_model(graph, 17)
}

/// Runs the self-test: ONNX Runtime must load, and gradients must match finite differences.
pub fn run() -> Result<String> {
    let path = std::env::temp_dir().join(format!("vog-onnx-selftest-{}.onnx", std::process::id()));
    std::fs::write(&path, vog_onnx::encode_model(&tiny_mlp())).map_err(|e| Error::Io {
        path: path.clone(),
        error: e,
    })?;
    let result = check(&path);
    let _ = std::fs::remove_file(&path);
    result
}

fn check(path: &std::path::Path) -> Result<String> {
    let backend = OnnxBackend::from_options("cache = false")?;
    let mut model = backend.load(path)?;
    let x = values(8, 9);
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    for target in [Target::Logit, Target::Probability] {
        let req = GradRequest {
            input: TensorView::new(&[2, 4], &x)?,
            classes: Classes::Given(&[0, 2]),
            target,
        };
        let out = model.input_gradients(&req)?;
        let scale = out
            .gradient
            .iter()
            .fold(1e-3f64, |m, &g| m.max(f64::from(g).abs()));
        for r in 0..2 {
            for i in 0..4 {
                let mut score = |delta: f32| -> Result<f64> {
                    let mut xp = x.clone();
                    xp[r * 4 + i] += delta;
                    let probe = GradRequest {
                        input: TensorView::new(&[2, 4], &xp)?,
                        ..req
                    };
                    let z = model.input_gradients(&probe)?.logits;
                    let row = &z[r * 3..(r + 1) * 3];
                    let c = [0usize, 2][r];
                    Ok(match target {
                        Target::Logit => f64::from(row[c]),
                        Target::Probability => {
                            let s: f64 = row.iter().map(|&v| f64::from(v).exp()).sum();
                            f64::from(row[c]).exp() / s
                        }
                    })
                };
                let fd = (score(h)? - score(-h)?) / (2.0 * f64::from(h));
                worst = vog_core::worst_error(
                    worst,
                    (fd - f64::from(out.gradient[r * 4 + i])).abs() / scale,
                );
            }
        }
    }
    if !vog_core::within_tolerance(worst, 2e-3) {
        return Err(Error::backend(
            "onnx",
            format!("self-test: gradients differ from finite differences by {worst:.2e}"),
        ));
    }
    Ok(format!(
        "ONNX Runtime loaded; a MatMul/Add/Tanh/Gemm graph's logit and probability input gradients match \
         central differences (max relative error {worst:.1e})"
    ))
}
