//! The ONNX backend's caches: rewritten gradient graphs by model hash (external data checked by
//! digest), and ONNX Runtime's optimized graphs. A hit gives the same gradients bit for bit as a
//! fresh build; a broken entry is rebuilt; changed external data is never served stale.
//!
//! Needs `ORT_DYLIB_PATH` (ONNX Runtime 1.31.1 from PyPI); `scripts/test.sh` sets it.

use std::path::{Path, PathBuf};

use vog_backend_onnx::OnnxBackend;
use vog_conformance::repo;
use vog_core::{Classes, GradRequest, GradientBackend, Target, TensorView};

fn data(rel: &str) -> PathBuf {
    repo::data(rel)
}

fn backend(options: &str) -> OnnxBackend {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty()),
        "set ORT_DYLIB_PATH to ONNX Runtime 1.31.1 (scripts/test.sh installs it and sets it)"
    );
    OnnxBackend::from_options(options).expect("options")
}

fn cached(dir: &Path) -> String {
    format!("cache_dir = \"{}\"\nthreads = 1", dir.display())
}

/// The file names in `dir` ending with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// The logit gradients of three fixed examples through a freshly loaded `model`.
fn gradients(b: &OnnxBackend, model: &Path) -> Vec<f32> {
    let mut m = b.load(model).expect("model");
    let row = m.info().input_shape.expect("static input shape");
    let mut shape = vec![3];
    shape.extend(&row);
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    m.input_gradients(&GradRequest {
        input: TensorView::new(&shape, &x).expect("input"),
        classes: Classes::Argmax,
        target: Target::Logit,
    })
    .expect("gradients")
    .gradient
    .to_vec()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn gradient_graphs_are_cached_by_model_hash() {
    let cache = tempfile::tempdir().unwrap();
    let b = backend(&cached(cache.path()));
    b.load(&data("onnx/mlp/epoch_1.onnx")).unwrap();
    let first = files(cache.path(), "");
    assert_eq!(first.len(), 2, "{first:?}");
    let stamp = std::fs::metadata(cache.path().join(&first[0]))
        .unwrap()
        .modified()
        .unwrap();
    b.load(&data("onnx/mlp/epoch_1.onnx")).unwrap();
    assert_eq!(files(cache.path(), ""), first);
    assert_eq!(
        std::fs::metadata(cache.path().join(&first[0]))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    b.load(&data("onnx/mlp/epoch_2.onnx")).unwrap();
    assert_eq!(files(cache.path(), "").len(), 4);
}

/// The first session of a convolutional model saves ONNX Runtime's optimized graph (blocked
/// layouts, fused convolutions); later sessions load it without the rewritten graph and give the
/// same bits; a corrupt optimized graph is replaced, not fatal.
#[cfg(target_os = "linux")]
#[test]
fn optimized_graphs_are_cached_and_give_the_same_gradients() {
    let model = data("onnx/cnn/epoch_1.onnx");
    let fresh = gradients(&backend("cache = false\nthreads = 1"), &model);
    let cache = tempfile::tempdir().unwrap();
    let saving = gradients(&backend(&cached(cache.path())), &model);
    assert!(same_bits(&saving, &fresh));
    let optimized = files(cache.path(), ".opt.onnx");
    assert_eq!(optimized.len(), 1, "{:?}", files(cache.path(), ""));
    let opt = cache.path().join(&optimized[0]);
    // Without the rewritten graph a hit on the optimized one must be what runs (a miss would
    // rebuild and cache the rewritten graph again).
    for g in files(cache.path(), ".grad.onnx") {
        std::fs::remove_file(cache.path().join(g)).unwrap();
    }
    let hit = gradients(&backend(&cached(cache.path())), &model);
    assert!(same_bits(&hit, &fresh));
    assert!(files(cache.path(), ".grad.onnx").is_empty());
    // A torn or corrupt optimized graph: rebuilt from the model, the same gradients, replaced.
    std::fs::write(&opt, b"not an onnx model").unwrap();
    let rebuilt = gradients(&backend(&cached(cache.path())), &model);
    assert!(same_bits(&rebuilt, &fresh));
    assert!(std::fs::metadata(&opt).unwrap().len() > 1000);
    assert!(files(cache.path(), ".tmp").is_empty());
    // No optimized graphs for sessions that do not optimize.
    let off = tempfile::tempdir().unwrap();
    let options = format!("{}\noptimization = \"disable\"", cached(off.path()));
    let unoptimized = gradients(&backend(&options), &model);
    assert!(files(off.path(), ".opt.onnx").is_empty());
    assert_eq!(unoptimized.len(), fresh.len());
}

/// A model whose weights live in an external data file: changing the file (the model's bytes
/// unchanged) must rebuild the graph, not serve the cached one.
#[test]
fn changed_external_data_is_not_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("dynamo_epoch_10.onnx");
    let weights = dir.path().join("dynamo_epoch_10.onnx.data");
    std::fs::copy(data("onnx/mlp/dynamo_epoch_10.onnx"), &model).unwrap();
    std::fs::copy(data("onnx/mlp/dynamo_epoch_10.onnx.data"), &weights).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let before = gradients(&backend(&cached(cache.path())), &model);
    assert!(same_bits(
        &before,
        &gradients(&backend("cache = false\nthreads = 1"), &model)
    ));
    // Every weight doubled: the same file size, other gradients.
    let doubled: Vec<u8> = std::fs::read(&weights)
        .unwrap()
        .chunks_exact(4)
        .flat_map(|b| (2.0 * f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
        .collect();
    std::fs::write(&weights, doubled).unwrap();
    let after = gradients(&backend(&cached(cache.path())), &model);
    assert!(!same_bits(&after, &before));
    assert!(same_bits(
        &after,
        &gradients(&backend("cache = false\nthreads = 1"), &model)
    ));
}
