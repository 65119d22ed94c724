//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A golden-file directory: `tests/data/golden/<name>`.
pub fn golden(name: &str) -> PathBuf {
    root().join("tests/data/golden").join(name)
}

/// Reads a JSON file.
pub fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of numbers as `f64`s.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Reads a whole `.npy` file as `f32` with its shape.
pub fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let mut a = vog_data::ArrayFile::open_npy(path).unwrap();
    let shape = a.shape().to_vec();
    let mut out = Vec::new();
    let rows = a.rows();
    a.read_f32(0, rows, &mut out).unwrap();
    (shape, out)
}

/// Asserts `got ≈ want` elementwise: |got − want| ≤ rel · max(|want|, floor).
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(floor);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tolerance {tol:e})"
        );
    }
}

/// The `vog` binary under test.
pub fn vog() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vog"));
    c.env_remove("RUST_LOG");
    // Tests choose their shard themselves, even when CI runs inside a scheduler's job array.
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "VOG_SHARD_COUNT",
    ] {
        c.env_remove(k);
    }
    c
}

/// Runs `vog` with arguments and returns its output.
pub fn run(args: &[&str], dir: &Path) -> Output {
    vog()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("vog runs")
}

/// stdout and stderr as one string, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes a configuration file and returns its path.
pub fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Backend options of the golden models, as written in their configs.
pub const MLP_OPTIONS: &str = vog_conformance::repo::MLP_OPTIONS;
pub const CNN_OPTIONS: &str = vog_conformance::repo::CNN_OPTIONS;

/// Options for a golden model by name.
pub fn options(model: &str) -> &'static str {
    match model {
        "mlp" => MLP_OPTIONS,
        "cnn" => CNN_OPTIONS,
        other => panic!("no golden model {other}"),
    }
}

/// A scoring config for a golden model (absolute paths), with extra TOML appended.
pub fn golden_config(model: &str, extra_scoring: &str) -> String {
    let g = golden(model);
    format!(
        "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [\"{}\"]\n\
         [backend]\nbatch_size = 7\n[backend.options]\n{}\n[scoring]\n{extra_scoring}\n",
        g.join("x.npy").display(),
        g.join("y.npy").display(),
        g.join("ckpt").display(),
        options(model)
    )
}

/// Builds the plugin libraries the tests load (once per test run) and returns the path of the
/// plugin for backend `name` (`candle`, `linear`, `onnx`, `faulty`, `abimajor`, `novtable`,
/// `notaplugin`). They are built by cargo into their own target directory beside the test's, so
/// the plugin build of candle (with its `plugin` feature) never invalidates the test build
/// (`vog_conformance::PluginBuild`).
pub fn plugin_lib(name: &str) -> PathBuf {
    vog_conformance::repo::workspace_plugins().library(name)
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// The `run.json` of a hand-made results directory: a complete manifest of the current results
/// format (no backend, no checkpoints, window `all`), with `overrides` merged in.
pub fn manifest(overrides: Value) -> String {
    let mut m = serde_json::json!({
        "format": vog_results::FORMAT,
        "tool": {"name": "vog", "version": "0.1.0"},
        "created_utc": "2026-01-01T00:00:00Z",
        "source": "backend",
        "backend": null,
        "backend_library": null,
        "config": {},
        "data": {"path": null, "rows": 0, "example_shape": [], "model_input_shape": [],
                 "labels": null, "split": null, "metadata_missing": 0},
        "checkpoints": [],
        "scoring": {"labels": "true", "target": "logit", "channels": "mean", "vog_map_shape": [],
                    "windows": [{"name": "all", "start": 0, "end": 3}], "num_classes": null,
                    "batch_size": 1},
        "classes": {},
        "flagged": 0,
        "maps": 0,
        "warnings": [],
        "timings": {"load_s": 0.0, "hash_s": 0.0, "score_s": 0.0, "backend_s": 0.0, "reload_s": 0.0}
    });
    merge(&mut m, overrides);
    m.to_string()
}

/// A line of a hand-made `scores.jsonl`: `partial`'s fields, every other field of a row at its
/// "nothing known" value (no labels, no panel scores, not flagged, no metadata).
pub fn score_line(partial: Value) -> String {
    let mut row = serde_json::json!({
        "flagged": false, "has_map": false, "id": "", "label_used": null, "meta": {},
        "predicted": null, "row": 0, "scores": {}, "split": null, "true_label": null,
        "vog": {}, "vog_norm": {},
    });
    merge(&mut row, partial);
    row.to_string()
}
