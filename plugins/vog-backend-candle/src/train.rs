//! A small, deterministic MLP trainer (candle autograd, Adam), used by `vog demo` and the
//! experiments to produce real training checkpoints without any framework outside Rust.
//!
//! Checkpoints are written with PyTorch `nn.Sequential` names (`0.weight`, `0.bias`, `2.weight`,
//! …), so the MLP architecture of [`crate::CandleBackend`] loads them directly.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use vog_core::{Error, Result, SplitMix64};

use crate::Activation;

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Layer widths, input first, classes last: `[2, 16, 2]`.
    pub sizes: Vec<usize>,
    /// Activation between linear layers.
    pub activation: Activation,
    /// Passes over the training data.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
}

struct LoopSettings {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    seed: u64,
}

/// Minibatch AdamW on cross-entropy, shuffled each epoch with a fixed seed. `shape` is one
/// example's shape; `x` holds `n` of them row-major.
fn train_loop(
    s: &LoopSettings,
    vars: Vec<Var>,
    x: &[f32],
    y: &[u32],
    shape: &[usize],
    forward: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    mut after_epoch: impl FnMut(usize, f64) -> Result<()>,
) -> Result<()> {
    let d: usize = shape.iter().product();
    let n = y.len();
    if x.len() != n * d {
        return Err(Error::Shape(format!(
            "{} values for {n} rows of {d} features",
            x.len()
        )));
    }
    let device = Device::Cpu;
    let params = ParamsAdamW {
        lr: s.learning_rate,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars, params).map_err(err)?;
    let mut rng = SplitMix64::new(s.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..=s.epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for chunk in order.chunks(s.batch_size.max(1)) {
            let xb: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
                .collect();
            let yb: Vec<u32> = chunk.iter().map(|&i| y[i]).collect();
            let mut dims = vec![chunk.len()];
            dims.extend_from_slice(shape);
            let xb = Tensor::from_vec(xb, dims, &device).map_err(err)?;
            let yb = Tensor::from_vec(yb, chunk.len(), &device).map_err(err)?;
            let logits = forward(&xb).map_err(err)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &yb).map_err(err)?;
            opt.backward_step(&loss).map_err(err)?;
            total += f64::from(loss.to_scalar::<f32>().map_err(err)?) * chunk.len() as f64;
        }
        after_epoch(epoch, total / n as f64)?;
    }
    Ok(())
}

/// PyTorch's default initialisation for conv and linear layers: uniform ±1/√fan_in.
fn init(rng: &mut SplitMix64, shape: &[usize], fan_in: usize) -> Result<Var> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
        .collect();
    let t = Tensor::from_vec(v, shape, &Device::Cpu).map_err(err)?;
    Var::from_tensor(&t).map_err(err)
}

/// Settings of a [`CnnTrainer`] run.
#[derive(Debug, Clone)]
pub struct CnnConfig {
    /// Channels of the two convolutions.
    pub channels: (usize, usize),
    /// Width of the hidden linear layer.
    pub hidden: usize,
    /// Output classes.
    pub classes: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
}

/// A small CNN for `[1, 28, 28]` digits, trained with candle:
/// `Conv2d(1, c1, 3, padding=1), ReLU, MaxPool2d(2), Conv2d(c1, c2, 3, padding=1), ReLU,
/// MaxPool2d(2), Flatten, Linear(c2·7·7, hidden), ReLU, Linear(hidden, classes)`, saved with
/// those `nn.Sequential` indices (0, 3, 7, 9). candle 0.11's max-pool backward is wrong, so the
/// pools are written as a reshape and two `max` reductions, whose backward is right.
pub struct CnnTrainer {
    config: CnnConfig,
    /// (weight, bias) of layers 0, 3, 7, 9.
    layers: Vec<(usize, Var, Var)>,
}

impl CnnTrainer {
    /// The `sequential` layer list that loads this network in [`crate::CandleBackend`].
    pub const LAYERS_TOML: &'static str = r#"[
  { type = "conv2d", padding = 1 }, { type = "relu" }, { type = "maxpool2d", kernel = 2 },
  { type = "conv2d", padding = 1 }, { type = "relu" }, { type = "maxpool2d", kernel = 2 },
  { type = "flatten" }, { type = "linear" }, { type = "relu" }, { type = "linear" },
]"#;

    /// A network initialised from `config.seed`.
    pub fn new(config: CnnConfig) -> Result<Self> {
        let CnnConfig {
            channels: (c1, c2),
            hidden,
            classes,
            ..
        } = config;
        let mut rng = SplitMix64::new(config.seed);
        let mut layers = Vec::new();
        for (idx, w_shape, fan_in) in [
            (0, vec![c1, 1, 3, 3], 9),
            (3, vec![c2, c1, 3, 3], c1 * 9),
            (7, vec![hidden, c2 * 49], c2 * 49),
            (9, vec![classes, hidden], hidden),
        ] {
            let w = init(&mut rng, &w_shape, fan_in)?;
            let b = init(&mut rng, &[w_shape[0]], fan_in)?;
            layers.push((idx, w, b));
        }
        Ok(CnnTrainer { config, layers })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let conv = |h: &Tensor, i: usize| -> candle_core::Result<Tensor> {
            let (_, w, b) = &self.layers[i];
            let out = h.conv2d(w.as_tensor(), 1, 1, 1, 1)?;
            out.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1))?)
        };
        let pool = |h: &Tensor| -> candle_core::Result<Tensor> {
            let (n, c, hh, ww) = h.dims4()?;
            h.reshape((n, c, hh / 2, 2, ww / 2, 2))?.max(5)?.max(3)
        };
        let linear = |h: &Tensor, i: usize| -> candle_core::Result<Tensor> {
            let (_, w, b) = &self.layers[i];
            h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())
        };
        let h = pool(&conv(x, 0)?.relu()?)?;
        let h = pool(&conv(&h, 1)?.relu()?)?;
        let h = h.flatten_from(1)?;
        let h = linear(&h, 2)?.relu()?;
        linear(&h, 3)
    }

    /// Trains on `x` (`n` rows of 784 values) and labels `y`, calling `after_epoch(epoch,
    /// trainer, mean_loss)` after each epoch.
    pub fn fit(
        &mut self,
        x: &[f32],
        y: &[u32],
        mut after_epoch: impl FnMut(usize, &CnnTrainer, f64) -> Result<()>,
    ) -> Result<()> {
        let vars: Vec<Var> = self
            .layers
            .iter()
            .flat_map(|(_, w, b)| [w.clone(), b.clone()])
            .collect();
        let settings = LoopSettings {
            epochs: self.config.epochs,
            batch_size: self.config.batch_size,
            learning_rate: self.config.learning_rate,
            seed: self.config.seed,
        };
        train_loop(
            &settings,
            vars,
            x,
            y,
            &[1, 28, 28],
            |xb| self.forward(xb),
            |epoch, loss| after_epoch(epoch, self, loss),
        )
    }

    /// Logits for `x` (`n` rows of 784 values), `[n, classes]` row-major.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for chunk in x.chunks(784 * 512) {
            let t = Tensor::from_slice(chunk, (chunk.len() / 784, 1, 28, 28), &Device::Cpu)
                .map_err(err)?;
            out.extend(
                self.forward(&t)
                    .and_then(|l| l.flatten_all()?.to_vec1::<f32>())
                    .map_err(err)?,
            );
        }
        Ok(out)
    }

    /// Writes the weights as a safetensors `state_dict` with `nn.Sequential` names.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (idx, w, b) in &self.layers {
            tensors.insert(format!("{idx}.weight"), w.as_tensor().clone());
            tensors.insert(format!("{idx}.bias"), b.as_tensor().clone());
        }
        candle_core::safetensors::save(&tensors, path).map_err(|e| Error::checkpoint(path, e))
    }
}

/// An MLP being trained.
pub struct MlpTrainer {
    config: TrainConfig,
    weights: Vec<(Var, Var)>,
    device: Device,
}

fn err(e: candle_core::Error) -> Error {
    Error::backend("candle", e)
}

impl MlpTrainer {
    /// Initialises weights like PyTorch's `nn.Linear` (uniform ±1/√fan_in).
    pub fn new(config: TrainConfig) -> Result<Self> {
        if config.sizes.len() < 2 {
            return Err(Error::Invalid(
                "an MLP needs at least input and output sizes".into(),
            ));
        }
        let device = Device::Cpu;
        let mut rng = SplitMix64::new(config.seed);
        let mut weights = Vec::new();
        for pair in config.sizes.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let w = Tensor::from_vec(draw(fan_in * fan_out), (fan_out, fan_in), &device)
                .map_err(err)?;
            let b = Tensor::from_vec(draw(fan_out), fan_out, &device).map_err(err)?;
            weights.push((
                Var::from_tensor(&w).map_err(err)?,
                Var::from_tensor(&b).map_err(err)?,
            ));
        }
        Ok(MlpTrainer {
            config,
            weights,
            device,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in self.weights.iter().enumerate() {
            if i > 0 {
                h = match self.config.activation {
                    Activation::Relu => h.relu()?,
                    Activation::Tanh => h.tanh()?,
                    Activation::Sigmoid => candle_nn::ops::sigmoid(&h)?,
                    Activation::Gelu => h.gelu_erf()?,
                    Activation::Identity => h,
                };
            }
            h = h
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
        }
        Ok(h)
    }

    /// Trains for `config.epochs` epochs on `x` (`[n, sizes[0]]`, row-major) and labels `y`,
    /// calling `after_epoch(epoch, trainer, mean_loss)` after each (epochs count from 1).
    pub fn fit(
        &mut self,
        x: &[f32],
        y: &[u32],
        mut after_epoch: impl FnMut(usize, &MlpTrainer, f64) -> Result<()>,
    ) -> Result<()> {
        let d = self.config.sizes[0];
        let vars: Vec<Var> = self
            .weights
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect();
        let settings = LoopSettings {
            epochs: self.config.epochs,
            batch_size: self.config.batch_size,
            learning_rate: self.config.learning_rate,
            seed: self.config.seed,
        };
        train_loop(
            &settings,
            vars,
            x,
            y,
            &[d],
            |xb| self.forward(xb),
            |epoch, loss| after_epoch(epoch, self, loss),
        )
    }

    /// Logits for `x`, `[n, classes]` row-major.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>> {
        let d = self.config.sizes[0];
        let t = Tensor::from_slice(x, (x.len() / d, d), &self.device).map_err(err)?;
        self.forward(&t)
            .and_then(|l| l.flatten_all()?.to_vec1())
            .map_err(err)
    }

    /// Writes the current weights as a safetensors `state_dict` with `nn.Sequential` names.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (w, b)) in self.weights.iter().enumerate() {
            // Linear layers sit at even indices, activations in between: 0, 2, 4, …
            let idx = 2 * i;
            tensors.insert(
                format!("{idx}.weight"),
                w.as_tensor().to_dtype(DType::F32).map_err(err)?,
            );
            tensors.insert(
                format!("{idx}.bias"),
                b.as_tensor().to_dtype(DType::F32).map_err(err)?,
            );
        }
        candle_core::safetensors::save(&tensors, path).map_err(|e| Error::checkpoint(path, e))
    }
}
