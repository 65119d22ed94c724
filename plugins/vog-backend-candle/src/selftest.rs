//! `vog backends check candle`: tiny models written to a temporary directory, loaded back through
//! the backend, and their input gradients checked against central finite differences.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use vog_core::{Classes, Error, GradRequest, GradientBackend, Result, Target, TensorView};

use crate::CandleBackend;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    vog_core::Lcg::new(seed).uniform_f32(n, -1.0, 1.0)
}

fn save(path: &Path, tensors: Vec<(&str, Vec<usize>, Vec<f32>)>) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, shape, data)| {
            Tensor::from_vec(data, shape, &Device::Cpu)
                .map(|t| (name.to_string(), t))
                .map_err(|e| Error::backend("candle", e))
        })
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&map, path).map_err(|e| Error::checkpoint(path, e))
}

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Largest difference between the backend's gradient and central differences of its own logits.
fn check(backend: &CandleBackend, path: &Path, row_shape: &[usize], seed: u64) -> Result<f64> {
    let mut model = backend.load(path)?;
    let d: usize = row_shape.iter().product();
    let rows = 2;
    let x = values(rows * d, seed);
    let mut shape = vec![rows];
    shape.extend(row_shape);
    let classes = [0u32, 2];
    let h = 1e-2f32;
    // All perturbed inputs in one batch: row r, element i, sign ±.
    let mut probe = Vec::with_capacity(rows * d * 2 * d);
    for r in 0..rows {
        for i in 0..d {
            for sign in [1.0f32, -1.0] {
                let mut row = x[r * d..(r + 1) * d].to_vec();
                row[i] += sign * h;
                probe.extend(row);
            }
        }
    }
    let mut probe_shape = vec![rows * d * 2];
    probe_shape.extend(row_shape);
    let probed = model.input_gradients(&GradRequest {
        input: TensorView::new(&probe_shape, &probe)?,
        classes: Classes::Argmax,
        target: Target::Logit,
    })?;
    let c = probed.num_classes;
    let score = |logits: &[f32], class: usize, target: Target| -> f64 {
        match target {
            Target::Logit => f64::from(logits[class]),
            Target::Probability => {
                let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let z: f64 = logits.iter().map(|&v| (f64::from(v) - m).exp()).sum();
                (f64::from(logits[class]) - m).exp() / z
            }
        }
    };
    let mut worst = 0.0f64;
    for target in [Target::Logit, Target::Probability] {
        let out = model.input_gradients(&GradRequest {
            input: TensorView::new(&shape, &x)?,
            classes: Classes::Given(&classes),
            target,
        })?;
        let scale = out
            .gradient
            .iter()
            .fold(1e-3f64, |m, &g| m.max(f64::from(g).abs()));
        for (r, &class) in classes.iter().enumerate() {
            for i in 0..d {
                let at = |k: usize| {
                    &probed.logits[((r * d + i) * 2 + k) * c..((r * d + i) * 2 + k + 1) * c]
                };
                let fd = (score(at(0), class as usize, target)
                    - score(at(1), class as usize, target))
                    / (2.0 * f64::from(h));
                let err = (fd - f64::from(out.gradient[r * d + i])).abs() / scale;
                worst = vog_core::worst_error(worst, err);
            }
        }
        let again = model.input_gradients(&GradRequest {
            input: TensorView::new(&shape, &x)?,
            classes: Classes::Argmax,
            target,
        })?;
        for (r, row) in out.logits.chunks_exact(c).enumerate() {
            let argmax = (0..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            if again.classes[r] as usize != argmax {
                return Err(Error::backend(
                    "candle",
                    format!("self-test: argmax class {} ≠ {argmax}", again.classes[r]),
                ));
            }
        }
    }
    if !vog_core::within_tolerance(worst, 2e-3) {
        return Err(Error::backend(
            "candle",
            format!(
                "self-test: {} gradient differs from finite differences by {worst:.2e} (relative)",
                path.display()
            ),
        ));
    }
    Ok(worst)
}

/// Runs the self-test and describes what it checked.
pub fn run() -> Result<String> {
    let dir = std::env::temp_dir().join(format!(
        "vog-candle-selftest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        error: e,
    })?;
    let scratch = Scratch(dir);

    let mlp = scratch.0.join("mlp.safetensors");
    save(
        &mlp,
        vec![
            ("0.weight", vec![7, 5], values(35, 1)),
            ("0.bias", vec![7], values(7, 2)),
            ("2.weight", vec![3, 7], values(21, 3)),
            ("2.bias", vec![3], values(3, 4)),
        ],
    )?;
    let backend = CandleBackend::from_options("arch = \"mlp\"\nactivation = \"tanh\"")?;
    let mlp_err = check(&backend, &mlp, &[5], 11)?;

    let cnn = scratch.0.join("cnn.safetensors");
    let var: Vec<f32> = values(3, 9).iter().map(|v| 0.5 + v.abs()).collect();
    save(
        &cnn,
        vec![
            ("0.weight", vec![3, 2, 3, 3], values(54, 5)),
            ("0.bias", vec![3], values(3, 6)),
            ("1.weight", vec![3], values(3, 7)),
            ("1.bias", vec![3], values(3, 8)),
            ("1.running_mean", vec![3], values(3, 10)),
            ("1.running_var", vec![3], var),
            ("5.weight", vec![3, 12], values(36, 12)),
            ("5.bias", vec![3], values(3, 13)),
        ],
    )?;
    let backend = CandleBackend::from_options(
        r#"arch = "sequential"
layers = [{ type = "conv2d", padding = 1 }, { type = "batchnorm2d" }, { type = "tanh" },
          { type = "avgpool2d", kernel = 2 }, { type = "flatten" }, { type = "linear" }]"#,
    )?;
    let cnn_err = check(&backend, &cnn, &[2, 4, 4], 21)?;
    Ok(format!(
        "mlp 5→7→3 (tanh): logit and probability input gradients match central differences \
         (max relative error {mlp_err:.1e}); cnn conv→batchnorm→tanh→avgpool→linear on [2, 4, 4]: \
         match (max relative error {cnn_err:.1e}); argmax classes agree with the logits"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_test_passes() {
        let report = super::run().unwrap();
        assert!(report.contains("mlp") && report.contains("cnn"), "{report}");
    }
}
