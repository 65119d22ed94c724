//! One conformance suite for every backend, run in-process and through the plugin loader:
//! gradients against golden files (PyTorch autograd), VoG through the engine, shapes, labels and
//! errors; the two ways must give identical results.

use std::path::PathBuf;

use vog_backend_candle::CandleBackend;
use vog_backend_linear::LinearBackend;
use vog_core::{
    Classes, Error, GradOutput, GradRequest, GradientBackend, Result, Target, TensorView,
};
use vog_engine::{score, Config, Silent};

use crate::util::{assert_close, floats, golden, json, npy, plugin_lib};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    InProcess,
    Plugin,
}

const VIAS: [Via; 2] = [Via::InProcess, Via::Plugin];

/// A backend under test: how to build it, and a golden model it can load.
struct Subject {
    name: &'static str,
    options: &'static str,
    golden: &'static str,
    ext: &'static str,
    last: usize,
}

const SUBJECTS: [Subject; 3] = [
    Subject {
        name: "candle",
        options: crate::util::MLP_OPTIONS,
        golden: "mlp",
        ext: "safetensors",
        last: 10,
    },
    Subject {
        name: "candle",
        options: crate::util::CNN_OPTIONS,
        golden: "cnn",
        ext: "safetensors",
        last: 6,
    },
    Subject {
        name: "linear",
        options: "temperature = 1.5",
        golden: "linear",
        ext: "json",
        last: 7,
    },
];

fn backend(name: &str, via: Via, options: &str) -> Result<Box<dyn GradientBackend>> {
    Ok(match (name, via) {
        ("candle", Via::InProcess) => Box::new(CandleBackend::from_options(options)?),
        ("linear", Via::InProcess) => Box::new(LinearBackend::from_options(options)?),
        (n, Via::Plugin) => {
            let plugin = vog_plugin_host::load(&plugin_lib(n)).unwrap();
            Box::new(plugin.create(options)?)
        }
        (n, _) => panic!("no backend {n}"),
    })
}

fn checkpoint(s: &Subject, epoch: usize) -> PathBuf {
    golden(s.golden).join(format!("ckpt/epoch_{epoch}.{}", s.ext))
}

/// Everything one backend says about its golden model, for comparison across `Via`s.
#[derive(Debug, PartialEq)]
struct Observed {
    outputs: Vec<GradOutput>,
    vog: Vec<Vec<f64>>,
    errors: Vec<String>,
}

fn observe(s: &Subject, via: Via) -> Observed {
    let b = backend(s.name, via, s.options).unwrap();
    assert_eq!(b.info().name, s.name);
    let (xs, x) = npy(&golden(s.golden).join("x.npy"));
    let (_, y) = npy(&golden(s.golden).join("y.npy"));
    let rows = 8;
    let row_len: usize = xs[1..].iter().product();
    let mut shape = xs.clone();
    shape[0] = rows;
    let x = &x[..rows * row_len];
    let labels: Vec<u32> = y[..rows].iter().map(|&v| v as u32).collect();
    let input = TensorView::new(&shape, x).unwrap();

    let mut outputs = Vec::new();
    for epoch in [1, s.last] {
        let mut m = b.load(&checkpoint(s, epoch)).unwrap();
        for (classes, target) in [
            (Classes::Given(&labels), Target::Logit),
            (Classes::Given(&labels), Target::Probability),
            (Classes::Argmax, Target::Logit),
        ] {
            let req = GradRequest {
                input,
                classes,
                target,
            };
            let out = m.input_gradients(&req).unwrap();
            out.validate(&req).unwrap();
            outputs.push(out);
        }
    }

    // VoG through the engine, true and predicted labels.
    let mut vog = Vec::new();
    for mode in ["true", "predicted"] {
        let g = golden(s.golden);
        let cfg = format!(
            "version = 1\n[data]\npath = \"{}\"\nlabels = \"{}\"\n[checkpoints]\npaths = [\"{}\"]\n\
             [backend]\nbatch_size = 5\n[scoring]\nlabels = \"{mode}\"\ntarget = \"probability\"\n",
            g.join("x.npy").display(),
            g.join("y.npy").display(),
            g.join("ckpt").display()
        );
        let mut config = Config::from_toml(&cfg).unwrap();
        config.backend.options = toml::from_str(s.options).unwrap();
        let result = score(&config, Some(b.as_ref()), &Silent).unwrap();
        let expected = json(&g.join("expected.json"));
        for (wi, w) in result.windows.iter().enumerate() {
            let raw: Vec<f64> = result.examples.iter().map(|e| e.vog[wi]).collect();
            let want = floats(&expected[format!("{mode}/probability")][&w.name]["raw"]);
            assert_close(
                &format!("{} {via:?} {mode} {}", s.golden, w.name),
                &raw,
                &want,
                1e-5,
                0.0,
            );
            vog.push(raw);
        }
    }

    // Errors: shapes, labels, missing and damaged checkpoints, bad options.
    let mut errors = Vec::new();
    let mut m = b.load(&checkpoint(s, 1)).unwrap();
    let wrong = vec![0.5f32; 2 * (row_len + 3)];
    let wrong_shape = [2, row_len + 3];
    let req = GradRequest {
        input: TensorView::new(&wrong_shape, &wrong).unwrap(),
        classes: Classes::Argmax,
        target: Target::Logit,
    };
    let e = m.input_gradients(&req).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{}: {e}", s.name);
    errors.push(e.to_string());
    let big = vec![99u32; rows];
    let e = m
        .input_gradients(&GradRequest {
            input,
            classes: Classes::Given(&big),
            target: Target::Logit,
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ClassOutOfRange {
                class: 99,
                row: 0,
                ..
            }
        ),
        "{}: {e}",
        s.name
    );
    errors.push(e.to_string());
    let missing = golden(s.golden).join(format!("ckpt/epoch_99.{}", s.ext));
    let e = b.load(&missing).err().unwrap();
    assert!(
        matches!(e, Error::Checkpoint { .. } | Error::Io { .. }),
        "{}: {e}",
        s.name
    );
    assert!(e.to_string().contains("epoch_99"), "{e}");
    errors.push(e.to_string());
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join(format!("damaged.{}", s.ext));
    let bytes = std::fs::read(checkpoint(s, 1)).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let e = b.load(&damaged).err().unwrap();
    assert!(matches!(e, Error::Checkpoint { .. }), "{}: {e}", s.name);
    errors.push(
        e.to_string()
            .replace(&dir.path().display().to_string(), "<tmp>"),
    );
    let e = backend(s.name, via, "no_such_option = 1").err().unwrap();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("no_such_option"),
        "{e}"
    );
    errors.push(e.to_string());
    Observed {
        outputs,
        vog,
        errors,
    }
}

#[test]
fn backends_agree_in_process_and_as_plugins() {
    for s in &SUBJECTS {
        let [inproc, plugin] = VIAS.map(|via| observe(s, via));
        assert_eq!(inproc.outputs.len(), 6);
        assert!(
            inproc == plugin,
            "{} ({}): in-process and plugin results differ",
            s.name,
            s.golden
        );
    }
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn candle_gradients_match_torch_in_process_and_as_plugin() {
    for s in SUBJECTS.iter().filter(|s| s.name == "candle") {
        for via in VIAS {
            let o = observe(s, via);
            let dir = golden(s.golden);
            for (i, epoch) in [1, s.last].iter().enumerate() {
                let (_, logits) = npy(&dir.join(format!("logits_epoch_{epoch}.npy")));
                for (j, name) in ["logit", "probability", "argmax"].iter().enumerate() {
                    let out = &o.outputs[i * 3 + j];
                    let (_, want) = npy(&dir.join(format!("grad_epoch_{epoch}_{name}.npy")));
                    let err = max_rel(&out.gradient, &want);
                    assert!(
                        err < 1e-5,
                        "{} {via:?} epoch {epoch} {name}: gradient off by {err:e}",
                        s.golden
                    );
                    assert!(
                        max_rel(&out.logits, &logits) < 1e-5,
                        "{} {via:?} epoch {epoch}: logits",
                        s.golden
                    );
                }
            }
        }
    }
}

#[test]
fn candle_reports_shape_mismatch_with_shapes() {
    let b = backend("candle", Via::Plugin, crate::util::MLP_OPTIONS).unwrap();
    let mut m = b
        .load(&golden("mlp").join("ckpt/epoch_1.safetensors"))
        .unwrap();
    let x = vec![0.0f32; 2 * 7];
    let req = GradRequest {
        input: TensorView::new(&[2, 7], &x).unwrap(),
        classes: Classes::Argmax,
        target: Target::Logit,
    };
    let err = m.input_gradients(&req).unwrap_err().to_string();
    assert!(err.contains("[N, 7]") && err.contains("[32, 20]"), "{err}");
}
