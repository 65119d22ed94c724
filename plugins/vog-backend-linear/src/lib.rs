//! A minimal, complete vog backend plugin: linear classifiers (softmax regression) whose
//! checkpoints are JSON files `{"weight": [[…], …], "bias": […]}` with `weight` shaped
//! `[classes, features]`. It is the worked example of `docs/plugins.md`: the whole backend,
//! options parsing and self-test included, with no `unsafe` and no `extern` code.
//!
//! The logit of class `c` is `(W_c · x + b_c) / temperature`, so its input gradient is
//! `W_c / temperature`, and the gradient of the softmax probability `p_c` is
//! `p_c (W_c − Σ_j p_j W_j) / temperature`.

#![deny(missing_docs)]

use std::path::Path;

use serde::Deserialize;
use vog_core::{
    BackendInfo, Classes, Error, GradOutput, GradRequest, GradientBackend, Model, ModelInfo,
    Result, Target, TensorView,
};
use vog_plugin::PluginBackend;

/// `[backend.options]` of the linear backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearOptions {
    /// Logits are divided by this (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

fn one() -> f64 {
    1.0
}

/// The backend: holds its options; every checkpoint becomes a [`LinearModel`].
#[derive(Debug, Clone)]
pub struct LinearBackend {
    options: LinearOptions,
}

impl LinearBackend {
    /// Parses options (TOML text), rejecting unknown keys and bad values.
    pub fn from_options(text: &str) -> Result<Self> {
        let options: LinearOptions = toml::from_str(text)
            .map_err(|e| Error::Config(format!("linear backend options: {}", e.message())))?;
        if !(options.temperature.is_finite() && options.temperature > 0.0) {
            return Err(Error::Config(format!(
                "linear backend options: temperature must be a positive number, got {}",
                options.temperature
            )));
        }
        Ok(LinearBackend { options })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    weight: Vec<Vec<f64>>,
    bias: Vec<f64>,
}

/// One linear model.
#[derive(Debug, Clone)]
pub struct LinearModel {
    weight: Vec<f64>,
    bias: Vec<f64>,
    classes: usize,
    features: usize,
    temperature: f64,
}

impl LinearModel {
    fn read(path: &Path, temperature: f64) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            error: e,
        })?;
        let ck: Checkpoint = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(path, format!("not a linear checkpoint: {e}")))?;
        let classes = ck.weight.len();
        let features = ck.weight.first().map_or(0, Vec::len);
        if classes == 0 || features == 0 || ck.weight.iter().any(|r| r.len() != features) {
            return Err(Error::checkpoint(
                path,
                "`weight` must be a non-empty [classes, features] matrix",
            ));
        }
        if ck.bias.len() != classes {
            return Err(Error::checkpoint(
                path,
                format!("`bias` has {} values for {classes} classes", ck.bias.len()),
            ));
        }
        tracing::debug!(path = %path.display(), classes, features, "linear checkpoint loaded");
        Ok(LinearModel {
            weight: ck.weight.concat(),
            bias: ck.bias,
            classes,
            features,
            temperature,
        })
    }

    fn logits(&self, x: &[f32]) -> Vec<f64> {
        (0..self.classes)
            .map(|c| {
                let w = &self.weight[c * self.features..(c + 1) * self.features];
                (w.iter().zip(x).map(|(w, &x)| w * f64::from(x)).sum::<f64>() + self.bias[c])
                    / self.temperature
            })
            .collect()
    }
}

impl GradientBackend for LinearBackend {
    fn info(&self) -> BackendInfo {
        Self::describe()
    }

    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        Ok(Box::new(LinearModel::read(
            checkpoint,
            self.options.temperature,
        )?))
    }
}

impl Model for LinearModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            input_shape: Some(vec![self.features]),
            num_classes: Some(self.classes),
            channel_axis: None,
        }
    }

    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let input: TensorView<'_> = request.input;
        let d = input.row_len();
        if d != self.features {
            return Err(Error::Shape(format!(
                "the model takes {} features, examples have {d} (shape {:?})",
                self.features,
                input.row_shape()
            )));
        }
        let rows = input.rows();
        let mut gradient = Vec::with_capacity(rows * d);
        let mut out = GradOutput {
            logits: Vec::with_capacity(rows * self.classes),
            num_classes: self.classes,
            gradient: Default::default(),
            gradient_shape: None,
            classes: Vec::with_capacity(rows),
        };
        for (r, x) in input.data().chunks_exact(d.max(1)).enumerate() {
            let z = self.logits(x);
            let c = match request.classes {
                Classes::Given(given) => {
                    let c = *given
                        .get(r)
                        .ok_or_else(|| Error::Shape(format!("no class for row {r}")))?;
                    if c as usize >= self.classes {
                        return Err(Error::ClassOutOfRange {
                            class: c,
                            num_classes: self.classes,
                            row: r,
                        });
                    }
                    c as usize
                }
                Classes::Argmax => {
                    (0..self.classes).fold(0, |b, j| if z[j] > z[b] { j } else { b })
                }
            };
            let w = |k: usize| &self.weight[k * d..(k + 1) * d];
            let t = self.temperature;
            match request.target {
                Target::Logit => gradient.extend(w(c).iter().map(|v| (v / t) as f32)),
                Target::Probability => {
                    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
                    let s: f64 = e.iter().sum();
                    let p: Vec<f64> = e.iter().map(|v| v / s).collect();
                    gradient.extend((0..d).map(|i| {
                        let mean: f64 = (0..self.classes).map(|j| p[j] * w(j)[i]).sum();
                        (p[c] * (w(c)[i] - mean) / t) as f32
                    }));
                }
            }
            out.logits.extend(z.iter().map(|&v| v as f32));
            out.classes.push(c as u32);
        }
        out.gradient = gradient.into();
        Ok(out)
    }
}

impl PluginBackend for LinearBackend {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: "linear".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["json".into()],
            devices: vec!["cpu".into()],
        }
    }

    fn create(options: &str) -> Result<Self> {
        Self::from_options(options)
    }

    fn self_test() -> Result<String> {
        // A 3-class model on 4 features, checked against central differences of its own logits.
        let path =
            std::env::temp_dir().join(format!("vog-linear-selftest-{}.json", std::process::id()));
        let ck = r#"{"weight": [[0.5, -1.0, 0.25, 2.0], [1.5, 0.0, -0.5, 0.1], [-1.0, 1.0, 1.0, -0.3]], "bias": [0.1, -0.2, 0.3]}"#;
        std::fs::write(&path, ck).map_err(|e| Error::Io {
            path: path.clone(),
            error: e,
        })?;
        let result = (|| {
            let backend = LinearBackend::from_options("temperature = 2.0")?;
            let mut model = backend.load(&path)?;
            let x = [0.3f32, -0.7, 1.1, 0.2];
            let mut worst = 0.0f64;
            for target in [Target::Logit, Target::Probability] {
                let req = GradRequest {
                    input: TensorView::new(&[1, 4], &x)?,
                    classes: Classes::Given(&[1]),
                    target,
                };
                let g = model.input_gradients(&req)?.gradient;
                for i in 0..4 {
                    let mut score = |delta: f32| -> Result<f64> {
                        let mut xp = x;
                        xp[i] += delta;
                        let probe = GradRequest {
                            input: TensorView::new(&[1, 4], &xp)?,
                            ..req
                        };
                        let z = model.input_gradients(&probe)?.logits;
                        Ok(match target {
                            Target::Logit => f64::from(z[1]),
                            Target::Probability => {
                                let s: f64 = z.iter().map(|&v| f64::from(v).exp()).sum();
                                f64::from(z[1]).exp() / s
                            }
                        })
                    };
                    let fd = (score(1e-2)? - score(-1e-2)?) / 2e-2;
                    worst = vog_core::worst_error(worst, (fd - f64::from(g[i])).abs());
                }
            }
            if !vog_core::within_tolerance(worst, 1e-3) {
                return Err(Error::backend(
                    "linear",
                    format!("self-test: gradient off by {worst:.2e}"),
                ));
            }
            Ok(format!("3-class linear model on 4 features: logit and probability gradients match central differences (max error {worst:.1e})"))
        })();
        let _ = std::fs::remove_file(&path);
        result
    }
}

vog_plugin::export_backend!(LinearBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_passes() {
        assert!(LinearBackend::self_test().unwrap().contains("match"));
    }

    #[test]
    fn options_are_validated() {
        assert!(LinearBackend::from_options("temperature = 0.0").is_err());
        let err = LinearBackend::from_options("temprature = 1.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `temprature`"), "{err}");
    }
}
