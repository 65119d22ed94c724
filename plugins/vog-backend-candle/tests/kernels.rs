//! vog's kernels (the default) against candle's tensor operations (`kernels = "candle"`, which
//! reproduces earlier versions bit for bit) on the golden CNN — grouped and padded convolutions,
//! batch norm, ReLU, overlapping and padded pools — and an example's gradient independent of the
//! batch it comes in.

use vog_backend_candle::CandleBackend;
use vog_conformance::{max_rel, npy, repo};
use vog_core::{Classes, GradOutput, GradRequest, GradientBackend, Target, TensorView};

fn gradients(options: &str, shape: &[usize], x: &[f32], classes: &[u32]) -> Vec<GradOutput> {
    gradients_of("cnn", options, shape, x, classes)
}

fn gradients_of(
    model: &str,
    options: &str,
    shape: &[usize],
    x: &[f32],
    classes: &[u32],
) -> Vec<GradOutput> {
    let backend = CandleBackend::from_options(options).expect("options");
    repo::checkpoints(model)
        .into_iter()
        .map(|(_, path)| {
            let mut model = backend.load(&path).expect("checkpoint");
            let input = TensorView::new(shape, x).expect("input");
            model
                .input_gradients(&GradRequest {
                    input,
                    classes: Classes::Given(classes),
                    target: Target::Logit,
                })
                .expect("gradients")
        })
        .collect()
}

#[test]
fn vog_kernels_agree_with_candles_and_do_not_depend_on_the_batch() {
    let (shape, x) = npy(&repo::golden("cnn").join("x.npy"));
    let rows = shape[0];
    let classes: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
    let vog = gradients(repo::options("cnn"), &shape, &x, &classes);
    let candle_options = format!("{}kernels = \"candle\"\n", repo::options("cnn"));
    let candle = gradients(&candle_options, &shape, &x, &classes);
    for (ours, theirs) in vog.iter().zip(&candle) {
        assert!(
            max_rel(&ours.logits, &theirs.logits) < 1e-5,
            "logits differ by {:.1e}",
            max_rel(&ours.logits, &theirs.logits)
        );
        let rel = max_rel(&ours.gradient, &theirs.gradient);
        assert!(rel < 1e-5, "gradients differ by {rel:.1e} of the largest");
    }

    // One example alone, and a batch of three around it: the same bits as in the full batch.
    let per: usize = shape[1..].iter().product();
    for (start, len) in [(5usize, 1usize), (4, 3), (rows - 2, 2)] {
        let mut sub_shape = shape.clone();
        sub_shape[0] = len;
        let sub = gradients(
            repo::options("cnn"),
            &sub_shape,
            &x[start * per..(start + len) * per],
            &classes[start..start + len],
        );
        for (part, whole) in sub.iter().zip(&vog) {
            assert_eq!(
                *part.gradient,
                whole.gradient[start * per..(start + len) * per],
                "rows {start}..{} alone",
                start + len
            );
        }
    }
}

/// The MLP runs as plain matrix products on row blocks under vog's kernels: the same numbers as
/// candle's layer-by-layer operations, for the logit and the probability target.
#[test]
fn the_mlp_path_agrees_with_candles_operations() {
    // The golden rows six times over, each copy scaled differently, so that the rows split into
    // blocks (16 or more each) that all differ.
    let (mut shape, x) = npy(&repo::golden("mlp").join("x.npy"));
    let x: Vec<f32> = (0..6)
        .flat_map(|copy| x.iter().map(move |v| v * (1.0 + 0.13 * copy as f32)))
        .collect();
    shape[0] *= 6;
    let rows = shape[0];
    assert!(rows >= 40, "{rows} rows");
    let classes: Vec<u32> = (0..rows as u32).map(|i| (i / 3) % 2).collect();
    // The golden MLP's weights under each activation the MLP path knows (leaky ReLU through
    // the sequential architecture, whose list positions are the tensors' indices).
    let leaky = "arch = \"sequential\"\nlayers = [{ type = \"linear\" }, \
                 { type = \"leakyrelu\", negative_slope = 0.1 }, { type = \"linear\" }, \
                 { type = \"leakyrelu\" }, { type = \"linear\" }]\n";
    for act in ["relu", "tanh", "sigmoid", "gelu", "leakyrelu"] {
        let options = if act == "leakyrelu" {
            leaky.to_string()
        } else {
            format!("arch = \"mlp\"\nactivation = \"{act}\"\n")
        };
        let candle_options = format!("{options}kernels = \"candle\"\n");
        for target in [Target::Logit, Target::Probability] {
            let run = |options: &str| {
                let backend = CandleBackend::from_options(options).expect("options");
                repo::checkpoints("mlp")
                    .into_iter()
                    .map(|(_, path)| {
                        let mut model = backend.load(&path).expect("checkpoint");
                        let input = TensorView::new(&shape, &x).expect("input");
                        model
                            .input_gradients(&GradRequest {
                                input,
                                classes: Classes::Given(&classes),
                                target,
                            })
                            .expect("gradients")
                    })
                    .collect::<Vec<_>>()
            };
            for (ours, theirs) in run(&options).iter().zip(run(&candle_options)) {
                assert_eq!(ours.classes, theirs.classes);
                let rel = max_rel(&ours.logits, &theirs.logits);
                assert!(rel < 1e-6, "{act} {target:?}: logits differ by {rel:.1e}");
                let rel = max_rel(&ours.gradient, &theirs.gradient);
                assert!(
                    rel < 1e-6,
                    "{act} {target:?}: gradients differ by {rel:.1e}"
                );
            }
        }
    }
    // Classes chosen by the model: each row's argmax, as candle's path chooses.
    let ours = gradients_of("mlp", repo::options("mlp"), &shape, &x, &classes);
    assert_eq!(ours.len(), 2);
    let backend = CandleBackend::from_options(repo::options("mlp")).unwrap();
    let (_, path) = &repo::checkpoints("mlp")[0];
    let mut model = backend.load(path).unwrap();
    let input = TensorView::new(&shape, &x).unwrap();
    let argmax = model
        .input_gradients(&GradRequest {
            input,
            classes: Classes::Argmax,
            target: Target::Logit,
        })
        .unwrap();
    for (row, &c) in argmax
        .logits
        .chunks_exact(argmax.num_classes)
        .zip(&argmax.classes)
    {
        let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(row[c as usize], best);
    }
}

/// The MLP path keeps each thread's layer buffers between calls and lends its gradients from a
/// pool: calls of different sizes, with earlier outputs still held or already dropped, give
/// exactly what a fresh backend gives.
#[test]
fn the_mlp_paths_reused_buffers_do_not_leak_between_calls() {
    let (mut shape, x) = npy(&repo::golden("mlp").join("x.npy"));
    let x: Vec<f32> = (0..6)
        .flat_map(|copy| x.iter().map(move |v| v * (1.0 - 0.11 * copy as f32)))
        .collect();
    shape[0] *= 6;
    let per_row = x.len() / shape[0];
    let small_rows = 5;
    let small: Vec<f32> = x[x.len() - small_rows * per_row..]
        .iter()
        .map(|v| -v)
        .collect();
    let mut small_shape = shape.clone();
    small_shape[0] = small_rows;
    let (_, path) = &repo::checkpoints("mlp")[0];
    let options = "arch = \"mlp\"\nactivation = \"gelu\"\n";
    let call = |model: &mut Box<dyn vog_core::Model>, shape: &[usize], x: &[f32]| {
        model
            .input_gradients(&GradRequest {
                input: TensorView::new(shape, x).expect("input"),
                classes: Classes::Argmax,
                target: Target::Probability,
            })
            .expect("gradients")
    };
    let fresh = |shape: &[usize], x: &[f32]| {
        let backend = CandleBackend::from_options(options).expect("options");
        call(&mut backend.load(path).expect("checkpoint"), shape, x)
    };
    let (want_big, want_small) = (fresh(&shape, &x), fresh(&small_shape, &small));
    let backend = CandleBackend::from_options(options).expect("options");
    let mut model = backend.load(path).expect("checkpoint");
    let first = call(&mut model, &shape, &x);
    let held = call(&mut model, &small_shape, &small);
    drop(first);
    let again = call(&mut model, &shape, &x);
    let after = call(
        &mut backend.load(path).expect("checkpoint"),
        &small_shape,
        &small,
    );
    for (what, got, want) in [
        ("the large batch again", &again, &want_big),
        ("a small batch in between", &held, &want_small),
        ("a second model's call", &after, &want_small),
    ] {
        assert!(got.gradient.is_lent(), "{what}");
        assert_eq!(got.classes, want.classes, "{what}");
        assert!(got.logits == want.logits, "{what}: logits differ");
        assert!(
            got.gradient[..] == want.gradient[..],
            "{what}: gradients differ"
        );
    }
}

#[test]
fn unknown_kernels_are_refused() {
    let err = CandleBackend::from_options(&format!("{}kernels = \"fast\"\n", repo::options("cnn")))
        .expect_err("unknown kernels");
    assert!(err.to_string().contains("`vog` or `candle`"), "{err}");
}

#[test]
fn the_mlp_path_asks_for_taller_batches_and_the_layer_path_does_not() {
    let (_, path) = &repo::checkpoints("mlp")[0];
    let mlp = "arch = \"mlp\"\nactivation = \"gelu\"\n";
    let load = |options: &str| {
        let backend = CandleBackend::from_options(options).expect("options");
        backend.load(path).expect("checkpoint")
    };
    let model = load(mlp);
    let inputs = model.info().input_shape.expect("an MLP knows its input");
    let len: usize = inputs.iter().product();
    let want = ((1usize << 19) / len).clamp(16, 4096);
    let want = 1 << (usize::BITS - 1 - want.leading_zeros());
    assert_eq!(model.preferred_batch(&inputs), Some(want));
    // Rows of another size do not run on the MLP path; nor does anything under candle's own
    // operations.
    assert_eq!(model.preferred_batch(&[len + 1]), None);
    let candle = load(&format!("{mlp}kernels = \"candle\"\n"));
    assert_eq!(candle.preferred_batch(&inputs), None);
}
