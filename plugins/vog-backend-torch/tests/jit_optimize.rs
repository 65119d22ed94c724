//! `jit_optimize = true` (TorchScript's optimizing graph executor, with its symbolic
//! differentiation) gives the same gradients as the default eager-autograd path. Its own test
//! binary, so that nothing else in the process runs TorchScript graphs meanwhile.

use std::path::{Path, PathBuf};

use vog_core::{Classes, GradRequest, GradientBackend, Target, TensorView};

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let mut a = vog_data::ArrayFile::open_npy(path).unwrap_or_else(|e| panic!("{e}"));
    let shape = a.shape().to_vec();
    let mut out = Vec::new();
    let rows = a.rows();
    a.read_f32(0, rows, &mut out).unwrap();
    (shape, out)
}

#[test]
fn optimizing_executor_gives_the_same_gradients() {
    let base = PathBuf::from(std::env::var_os("VOG_TORCH_MODELS").expect(
        "set VOG_TORCH_MODELS to a directory written by tests/data/torch/make_torchscript.py DIR (scripts/test.sh does)",
    ));
    let d = base.join("cnn");
    let (shape, x) = npy(&d.join("x.npy"));
    let (_, y) = npy(&d.join("y.npy"));
    let labels: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    let (_, want) = npy(&d.join("grad_6_logit_true.npy"));
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let b =
        vog_backend_torch::TorchBackend::from_options("threads = 1\njit_optimize = true").unwrap();
    let mut m = b.load(&d.join("epoch_6.pt")).unwrap();
    // The profiling executor specializes the graph after its first runs: check several.
    for run in 0..4 {
        let req = GradRequest {
            input: TensorView::new(&shape, &x).unwrap(),
            classes: Classes::Given(&labels),
            target: Target::Logit,
        };
        let out = m.input_gradients(&req).unwrap();
        let err = out
            .gradient
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / scale)
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "run {run}: gradient off by {err:e}");
    }
}
