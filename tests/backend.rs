//! Backend conformance: raw logits and input gradients of the candle backend against PyTorch
//! autograd (float32) at the first and last checkpoint of each golden model.

use vog_backend_candle::CandleBackend;
use vog_core::{Classes, GradRequest, GradientBackend, Target, TensorView};

use crate::util::{golden, npy, options};

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).abs() / scale)
        .fold(0.0, f64::max)
}

fn check(model: &str, last: usize) {
    let dir = golden(model);
    let backend = CandleBackend::from_options(options(model)).unwrap();
    let (xs, x) = npy(&dir.join("x.npy"));
    let (_, y) = npy(&dir.join("y.npy"));
    let rows = 8;
    let row_len: usize = xs[1..].iter().product();
    let mut shape = xs.clone();
    shape[0] = rows;
    let x = &x[..rows * row_len];
    let labels: Vec<u32> = y[..rows].iter().map(|&v| v as u32).collect();
    for epoch in [1, last] {
        let mut m = backend
            .load(&dir.join(format!("ckpt/epoch_{epoch}.safetensors")))
            .unwrap();
        let input = TensorView::new(&shape, x).unwrap();
        let (_, logits) = npy(&dir.join(format!("logits_epoch_{epoch}.npy")));
        for (name, classes, target) in [
            ("logit", Classes::Given(&labels), Target::Logit),
            ("probability", Classes::Given(&labels), Target::Probability),
            ("argmax", Classes::Argmax, Target::Logit),
        ] {
            let req = GradRequest {
                input,
                classes,
                target,
            };
            let out = m.input_gradients(&req).unwrap();
            out.validate(&req).unwrap();
            let (gshape, want) = npy(&dir.join(format!("grad_epoch_{epoch}_{name}.npy")));
            assert_eq!(
                gshape, shape,
                "{model} epoch {epoch} {name}: gradient shape"
            );
            let err = max_rel(&out.gradient, &want);
            assert!(
                err < 1e-5,
                "{model} epoch {epoch} {name}: gradient off by {err:e} (relative to max)"
            );
            let lerr = max_rel(&out.logits, &logits);
            assert!(lerr < 1e-5, "{model} epoch {epoch}: logits off by {lerr:e}");
        }
    }
}

#[test]
fn candle_mlp_gradients_match_torch() {
    check("mlp", 10);
}

#[test]
fn candle_cnn_gradients_match_torch() {
    check("cnn", 6);
}

#[test]
fn candle_reports_shape_mismatch_with_file_and_shapes() {
    let dir = golden("mlp");
    let backend = CandleBackend::from_options(options("mlp")).unwrap();
    let path = dir.join("ckpt/epoch_1.safetensors");
    let mut m = backend.load(&path).unwrap();
    let x = vec![0.0f32; 2 * 7];
    let req = GradRequest {
        input: TensorView::new(&[2, 7], &x).unwrap(),
        classes: Classes::Argmax,
        target: Target::Logit,
    };
    let err = m.input_gradients(&req).unwrap_err().to_string();
    assert!(err.contains("[N, 7]") && err.contains("[32, 20]"), "{err}");
}
