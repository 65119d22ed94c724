//! `jit_optimize = true` (TorchScript's optimizing graph executor, with its symbolic
//! differentiation) gives the same gradients as the default eager-autograd path. Its own test
//! binary, so that nothing else in the process runs TorchScript graphs meanwhile.

use std::path::PathBuf;

use vog_conformance::{labels, npy, worst};
use vog_core::{Classes, GradRequest, GradientBackend, Target, TensorView};

#[test]
fn optimizing_executor_gives_the_same_gradients() {
    let base = PathBuf::from(std::env::var_os("VOG_TORCH_MODELS").expect(
        "set VOG_TORCH_MODELS to a directory written by tests/data/torch/make_torchscript.py DIR (scripts/test.sh does)",
    ));
    let d = base.join("cnn");
    let (shape, x) = npy(&d.join("x.npy"));
    let labels = labels(&d.join("y.npy"));
    let (_, want) = npy(&d.join("grad_6_logit_true.npy"));
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
        let w = worst(&out.gradient, &want);
        assert!(
            w.within(1e-6),
            "run {run}: gradient {}",
            w.describe(shape[1..].iter().product())
        );
    }
}
