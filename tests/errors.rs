//! Bad input: a clear error naming the file and the problem, a non-zero exit, no partial results.

use std::path::{Path, PathBuf};

use crate::util::{golden, run, text, write_config, MLP_OPTIONS};

/// Copies the golden MLP checkpoints into `dir/ckpt` and returns that directory.
fn copy_checkpoints(dir: &Path, model: &str) -> PathBuf {
    let dst = dir.join("ckpt");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(golden(model).join("ckpt")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

fn mlp_config(dir: &Path, data: &Path, labels: &Path, checkpoints: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        "vog.toml",
        &format!(
            "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [{checkpoints}]\n\
             [backend.options]\n{MLP_OPTIONS}\n{extra}",
            data.display(),
            labels.display()
        ),
    )
}

/// Runs `vog score -c CONFIG -o out` and checks failure, the message, and that nothing was written.
fn fails_with(dir: &Path, config: &Path, needles: &[&str]) -> String {
    let out = run(&["score", "-c", config.to_str().unwrap(), "-o", "out"], dir);
    let msg = text(&out);
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{msg}"
    );
    assert_eq!(out.status.code(), Some(1), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "error should mention `{n}`:\n{msg}");
    }
    assert!(
        !dir.join("out").exists(),
        "partial results were left behind"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary results were left behind");
    msg
}

fn quoted(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

#[test]
fn missing_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let missing = dir.path().join("epoch_99.safetensors");
    let ck = format!(
        "{}, {}",
        quoted(&g.join("ckpt/epoch_1.safetensors")),
        quoted(&missing)
    );
    let cfg = mlp_config(dir.path(), &g.join("x.npy"), &g.join("y.npy"), &ck, "");
    fails_with(
        dir.path(),
        &cfg,
        &["epoch_99.safetensors", "does not exist"],
    );
}

#[test]
fn truncated_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let ck = copy_checkpoints(dir.path(), "mlp");
    let victim = ck.join("epoch_3.safetensors");
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let cfg = mlp_config(
        dir.path(),
        &g.join("x.npy"),
        &g.join("y.npy"),
        &quoted(&ck),
        "",
    );
    fails_with(
        dir.path(),
        &cfg,
        &[
            "checkpoint 3 of 10",
            "epoch_3.safetensors",
            "not a readable safetensors file",
        ],
    );
}

#[test]
fn data_that_does_not_fit_the_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let cnn = golden("cnn");
    // CNN images (3×12×12) into the MLP, which takes 20 features (labels in range).
    let y = dir.path().join("y.npy");
    vog_data::write_npy_i64(&y, &[24], &[1; 24]).unwrap();
    let cfg = mlp_config(
        dir.path(),
        &cnn.join("x.npy"),
        &y,
        &quoted(&g.join("ckpt")),
        "",
    );
    fails_with(
        dir.path(),
        &cfg,
        &["cnn/x.npy", "do not fit the model", "[N, 432]", "[32, 20]"],
    );
}

#[test]
fn label_out_of_range_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let mut labels = vec![0i64; 40];
    labels[17] = 9;
    let y = dir.path().join("bad_labels.npy");
    vog_data::write_npy_i64(&y, &[40], &labels).unwrap();
    let cfg = mlp_config(
        dir.path(),
        &g.join("x.npy"),
        &y,
        &quoted(&g.join("ckpt")),
        "",
    );
    fails_with(
        dir.path(),
        &cfg,
        &[
            "bad_labels.npy",
            "label 9 of example 17",
            "out of range",
            "4 classes",
        ],
    );
}

#[test]
fn label_count_mismatch_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let y = dir.path().join("short.npy");
    vog_data::write_npy_i64(&y, &[39], &[0; 39]).unwrap();
    let cfg = mlp_config(
        dir.path(),
        &g.join("x.npy"),
        &y,
        &quoted(&g.join("ckpt")),
        "",
    );
    fails_with(dir.path(), &cfg, &["short.npy", "39 labels", "40 examples"]);
}

#[test]
fn nan_in_stored_gradients_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = golden("stored").join("stacked");
    for k in 1..=6 {
        let d = dir.path().join(format!("g/epoch_{k}"));
        std::fs::create_dir_all(&d).unwrap();
        let (shape, mut data) = crate::util::npy(&src.join(format!("epoch_{k}/grads.npy")));
        if k == 4 {
            data[48 * 5 + 7] = f32::NAN; // example 5, element 7
        }
        vog_data::write_npy_f32(&d.join("grads.npy"), &shape, &data).unwrap();
    }
    let cfg = write_config(
        dir.path(),
        "vog.toml",
        &format!(
            "version = 1\n[gradients]\ndirs = [\"{}/g/epoch_*\"]\n",
            dir.path().display()
        ),
    );
    fails_with(dir.path(), &cfg, &["epoch_4/grads.npy", "example 5", "NaN"]);
}

#[test]
fn nan_from_a_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let ck = copy_checkpoints(dir.path(), "mlp");
    // Poison one weight of `0.weight` in epoch 2 (safetensors: u64 header length, JSON header, data).
    let victim = ck.join("epoch_2.safetensors");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header["0.weight"]["data_offsets"][0].as_u64().unwrap() as usize + 8 + n;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&victim, bytes).unwrap();
    let cfg = mlp_config(
        dir.path(),
        &g.join("x.npy"),
        &g.join("y.npy"),
        &quoted(&ck),
        "",
    );
    fails_with(
        dir.path(),
        &cfg,
        &[
            "checkpoint 2 of 10",
            "epoch_2.safetensors",
            "NaN or infinite",
        ],
    );
}

#[test]
fn nan_in_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let (shape, mut x) = crate::util::npy(&g.join("x.npy"));
    x[20 * 3 + 1] = f32::INFINITY;
    let xp = dir.path().join("x_bad.npy");
    vog_data::write_npy_f32(&xp, &shape, &x).unwrap();
    let cfg = mlp_config(
        dir.path(),
        &xp,
        &g.join("y.npy"),
        &quoted(&g.join("ckpt")),
        "",
    );
    fails_with(dir.path(), &cfg, &["x_bad.npy", "example 3", "non-finite"]);
}

#[test]
fn one_checkpoint_is_not_enough() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let ck = quoted(&g.join("ckpt/epoch_1.safetensors"));
    let cfg = mlp_config(dir.path(), &g.join("x.npy"), &g.join("y.npy"), &ck, "");
    fails_with(dir.path(), &cfg, &["at least 2 checkpoints", "got 1"]);
}

#[test]
fn unknown_config_key_is_named_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let cfg = mlp_config(
        dir.path(),
        &g.join("x.npy"),
        &g.join("y.npy"),
        &quoted(&g.join("ckpt")),
        "[scoring]\ntargets = \"logit\"\n",
    );
    fails_with(
        dir.path(),
        &cfg,
        &["vog.toml", "unknown field `targets`", "line 12"],
    );
}

#[test]
fn unknown_backend_option_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let cfg = write_config(
        dir.path(),
        "vog.toml",
        &format!(
            "version = 1\n[data]\npath = \"{}\"\n[checkpoints]\npaths = [\"{}\"]\n[backend.options]\narch = \"mlp\"\nactivaton = \"relu\"\n",
            g.join("x.npy").display(),
            g.join("ckpt").display()
        ),
    );
    fails_with(
        dir.path(),
        &cfg,
        &["candle backend options", "unknown field `activaton`"],
    );
}

#[test]
fn missing_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("mlp");
    let cfg = mlp_config(
        dir.path(),
        &dir.path().join("nope.npy"),
        &g.join("y.npy"),
        &quoted(&g.join("ckpt")),
        "",
    );
    fails_with(dir.path(), &cfg, &["nope.npy", "No such file"]);
}

#[test]
fn an_io_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["score", "-c", "missing.toml"],
        vec!["index", "no-such-results", "-s", "store"],
    ] {
        let out = crate::util::run(&args, dir.path());
        assert!(!out.status.success());
        let text = crate::util::text(&out);
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{args:?}: {text}"
        );
    }
}
