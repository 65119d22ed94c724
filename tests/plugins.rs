//! The plugin loader's failure paths and the CLI over plugins: every broken plugin gives a clear
//! error naming its file, panics never take the host down, and logs cross the boundary.

use std::path::Path;

use vog_core::{Classes, GradRequest, GradientBackend, Target, TensorView};
use vog_plugin_host::PluginError;

use crate::util::{golden, plugin_lib, run, text, vog, write_config};

fn load_err(name: &str) -> (PluginError, String) {
    let path = plugin_lib(name);
    let err = vog_plugin_host::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error should name the plugin file: {msg}"
    );
    (err, msg)
}

#[test]
fn wrong_abi_major_is_refused_before_anything_else() {
    let (err, msg) = load_err("abimajor");
    assert!(matches!(err, PluginError::AbiMismatch { .. }), "{msg}");
    let host = vog_plugin::abi_string(vog_plugin::ABI_VERSION);
    assert!(
        msg.contains("ABI 2.0") && msg.contains(&format!("ABI {host}")),
        "{msg}"
    );
}

#[test]
fn missing_function_table_is_reported() {
    let (err, msg) = load_err("novtable");
    assert!(
        matches!(
            err,
            PluginError::MissingSymbol {
                symbol: "vog_plugin_vtable",
                ..
            }
        ),
        "{msg}"
    );
}

#[test]
fn a_library_that_is_not_a_plugin_is_reported() {
    let (err, msg) = load_err("notaplugin");
    assert!(
        matches!(
            err,
            PluginError::MissingSymbol {
                symbol: "vog_plugin_abi_version",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("not a vog plugin"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_library_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir
        .path()
        .join(vog_plugin_host::library_file_name("garbage"));
    std::fs::write(&p, b"this is not an ELF file").unwrap();
    let err = vog_plugin_host::load(&p).unwrap_err();
    assert!(matches!(err, PluginError::Open { .. }), "{err}");
    assert!(err.to_string().contains("libvog_backend_garbage"), "{err}");
    let err = vog_plugin_host::load(&dir.path().join("nope.so")).unwrap_err();
    assert!(
        matches!(err, PluginError::Open { .. }) && err.to_string().contains("nope.so"),
        "{err}"
    );
}

fn faulty(mode: &str) -> vog_core::Result<vog_plugin_host::ExternBackend> {
    vog_plugin_host::load(&plugin_lib("faulty"))
        .unwrap()
        .create(&format!("mode = \"{mode}\""))
}

fn gradients(b: &dyn GradientBackend) -> vog_core::Result<vog_core::GradOutput> {
    let mut m = b.load(Path::new("any.ckpt"))?;
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    m.input_gradients(&GradRequest {
        input: TensorView::new(&[2, 3], &x).unwrap(),
        classes: Classes::Given(&[1, 2]),
        target: Target::Logit,
    })
}

#[test]
fn panics_and_errors_inside_plugins_become_errors_naming_the_plugin() {
    let file = plugin_lib("faulty").display().to_string();
    for (mode, needle) in [
        (
            "panic-on-create",
            "panicked in `create`: faulty plugin panics in create",
        ),
        (
            "panic-on-load",
            "panicked in `load`: faulty plugin panics while loading any.ckpt",
        ),
        (
            "panic-in-gradients",
            "panicked in `input_gradients`: faulty plugin panics inside input_gradients",
        ),
        ("error-on-load", "refusing to load any.ckpt"),
        ("error-in-gradients", "gradients are not available today"),
    ] {
        let err = faulty(mode)
            .and_then(|b| gradients(&b))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle) && err.contains(&file), "{mode}: {err}");
    }
    // The host is still fine, and so is the plugin.
    let out = gradients(&faulty("ok").unwrap()).unwrap();
    assert_eq!(*out.gradient, [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let err = faulty("shout").err().unwrap().to_string();
    assert!(err.contains("unknown variant `shout`"), "{err}");
}

/// ABI 1.2: the host reads the gradient where the plugin left it and gives the output back when
/// the gradient is dropped, which may be after the model, the backend and the thread are gone.
#[test]
fn a_1_2_plugin_lends_its_gradient_past_the_call_and_the_thread() {
    let backend = faulty("ok").unwrap();
    let out = gradients(&backend).unwrap();
    assert!(
        out.gradient.is_lent(),
        "a 1.2 plugin's gradient is read in place"
    );
    let out2 = gradients(&backend).unwrap();
    drop(backend);
    let read = std::thread::spawn(move || out.gradient.to_vec())
        .join()
        .unwrap();
    assert_eq!(read, [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(*out2.gradient, read[..]);
}

#[test]
fn a_plugin_loaded_twice_is_one_library() {
    let a = vog_plugin_host::load(&plugin_lib("linear")).unwrap();
    let b = vog_plugin_host::load(&plugin_lib("linear")).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(a.abi_version(), vog_plugin::ABI_VERSION);
    assert_eq!(a.info().extensions, vec!["json"]);
}

fn faulty_config(dir: &Path, mode: &str) -> std::path::PathBuf {
    let g = golden("mlp");
    write_config(
        dir,
        "faulty.toml",
        &format!(
            "version = 1\n[data]\npath = \"{}\"\n[checkpoints]\npaths = [\"{}\"]\n[backend]\nname = \"{}\"\n\
             [backend.options]\nmode = \"{mode}\"\n",
            g.join("x.npy").display(),
            g.join("ckpt/*.safetensors").display(),
            plugin_lib("faulty").display()
        ),
    )
}

#[test]
fn cli_survives_a_panicking_plugin_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = faulty_config(dir.path(), "panic-in-gradients");
    let out = run(
        &["score", "-c", cfg.to_str().unwrap(), "-o", "res"],
        dir.path(),
    );
    let msg = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a panic must be an error exit, not an abort:\n{msg}"
    );
    assert!(
        msg.contains("panicked in `input_gradients`") && msg.contains("libvog_backend_faulty"),
        "{msg}"
    );
    assert!(!dir.path().join("res").exists());
}

#[test]
fn cli_validates_what_a_plugin_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = faulty_config(dir.path(), "short-gradient");
    let out = run(
        &["score", "-c", cfg.to_str().unwrap(), "-o", "res"],
        dir.path(),
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("backend `faulty` returned inconsistent output")
            && msg.contains("a gradient of 799 values for an input of 800 values"),
        "{msg}"
    );
}

#[test]
fn cli_finds_plugins_by_name_lists_and_checks_them_and_forwards_their_logs() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = plugin_lib("linear").parent().unwrap().to_path_buf();
    let g = golden("linear");
    let cfg = write_config(
        dir.path(),
        "linear.toml",
        &format!(
            "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [\"{}\"]\n\
             [backend]\nname = \"linear\"\n[backend.options]\ntemperature = 1.5\n[plugins]\ndirs = [\"{}\"]\n",
            g.join("x.npy").display(),
            g.join("y.npy").display(),
            g.join("ckpt").display(),
            plugin_dir.display()
        ),
    );
    let out = vog()
        .args(["score", "-c", cfg.to_str().unwrap(), "-o", "res"])
        .env("RUST_LOG", "debug")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("linear checkpoint loaded"),
        "plugin logs should reach the host's RUST_LOG:\n{msg}"
    );
    let manifest = crate::util::json(&dir.path().join("res/run.json"));
    assert_eq!(manifest["backend"]["name"], "linear");
    assert!(manifest["backend_library"]
        .as_str()
        .unwrap()
        .ends_with(&vog_plugin_host::library_file_name("linear")));

    let listing = vog()
        .args(["backends"])
        .env("VOG_PLUGIN_PATH", &plugin_dir)
        .output()
        .unwrap();
    let listing = text(&listing);
    assert!(
        listing.contains("candle") && listing.contains("built in"),
        "{listing}"
    );
    let linear_line = listing
        .lines()
        .find(|l| l.starts_with("linear"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        linear_line.contains(&vog_plugin::abi_string(vog_plugin::ABI_VERSION))
            && linear_line.contains("json")
            && linear_line.contains("cpu"),
        "{linear_line}"
    );
    assert!(
        listing.contains("unusable") && listing.contains("libvog_backend_abimajor"),
        "{listing}"
    );

    let check = vog()
        .args(["backends", "check", "linear"])
        .env("VOG_PLUGIN_PATH", &plugin_dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("self-test: ok"), "{}", text(&check));
    let check = vog()
        .args(["backends", "check", "candle", "--options", "arch = \"mlp\""])
        .output()
        .unwrap();
    assert!(
        check.status.success() && text(&check).contains("self-test: ok"),
        "{}",
        text(&check)
    );
    let check = vog()
        .args(["backends", "check", plugin_lib("faulty").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check).contains("self-test fails on purpose"),
        "{}",
        text(&check)
    );

    let missing = vog()
        .args(["backends", "check", "nosuchbackend"])
        .env("VOG_PLUGIN_PATH", dir.path())
        .output()
        .unwrap();
    let m = text(&missing);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        m.contains("libvog_backend_nosuchbackend") && m.contains("built-in backends: candle"),
        "{m}"
    );
}

#[test]
fn candle_plugin_scores_like_the_built_in_candle() {
    let dir = tempfile::tempdir().unwrap();
    let body = crate::util::golden_config("cnn", "labels = \"predicted\"\n");
    let cfg = write_config(dir.path(), "cnn.toml", &body);
    let c = cfg.to_str().unwrap();
    let lib = plugin_lib("candle");
    let a = run(&["score", "-q", "-c", c, "-o", "builtin"], dir.path());
    let b = run(
        &[
            "score",
            "-q",
            "-c",
            c,
            "-o",
            "plugin",
            "--backend",
            lib.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        text(&a),
        text(&b)
    );
    let read = |d: &str| std::fs::read_to_string(dir.path().join(d).join("scores.csv")).unwrap();
    assert_eq!(read("builtin"), read("plugin"));
}
