//! The candle backend of **vog**: input gradients computed in pure Rust, no native library.
//!
//! Checkpoints are safetensors files holding a PyTorch `state_dict` (what
//! `safetensors.torch.save_file(model.state_dict(), path)` writes). The architecture is declared
//! in the backend options, since a `state_dict` holds tensors, not code:
//!
//! * `arch = "mlp"`: linear layers with one activation between them; layer sizes come from the
//!   tensors (`0.weight`, `2.weight`, … of an `nn.Sequential`, or the modules named in `linear`);
//! * `arch = "sequential"`: an `nn.Sequential` of conv2d, batch norm (eval mode), activations,
//!   max/avg pooling, flatten, dropout and linear layers, listed in `layers`.
//!
//! The reverse pass is written by hand, layer by layer, and differentiates with respect to the
//! input only: no weight gradient is ever formed (candle's autograd would compute them for every
//! convolution), and pooling follows PyTorch exactly (candle 0.11's max-pool backward is wrong;
//! see [`pool`]).
//!
//! ```no_run
//! use vog_core::{Classes, GradRequest, GradientBackend, Target, TensorView};
//! use vog_backend_candle::CandleBackend;
//!
//! let backend = CandleBackend::from_options("arch = \"mlp\"\nactivation = \"relu\"")?;
//! let mut model = backend.load("ckpt/epoch_1.safetensors".as_ref())?;
//! let x = vec![0.0f32; 2 * 20];
//! let input = TensorView::new(&[2, 20], &x)?;
//! let out = model.input_gradients(&GradRequest { input, classes: Classes::Argmax, target: Target::Logit })?;
//! assert_eq!(out.gradient.len(), x.len());
//! # Ok::<(), vog_core::Error>(())
//! ```

#![deny(missing_docs)]

pub mod conv;
mod layers;
mod mlp;
mod model;
mod options;
pub mod pool;
mod seed;
mod selftest;
pub mod train;

use std::path::Path;

use candle_core::Device;
use vog_core::{BackendInfo, GradientBackend, Model, Recycler, Result};

pub use model::CandleModel;
pub use options::{Activation, Arch, CandleOptions, Kernels, LayerSpec, Size2};

/// The candle backend: builds [`CandleModel`]s from safetensors checkpoints.
#[derive(Debug, Clone)]
pub struct CandleBackend {
    options: CandleOptions,
    device: Device,
    /// Gradient buffers shared by the models this backend loads.
    recycler: Recycler,
}

impl CandleBackend {
    /// The backend's name, as given to `--backend`.
    pub const NAME: &'static str = "candle";

    /// Creates the backend from parsed options (CPU device).
    pub fn new(options: CandleOptions) -> Self {
        CandleBackend {
            options,
            device: Device::Cpu,
            recycler: Recycler::default(),
        }
    }

    /// Creates the backend from the TOML text of `[backend.options]`; unknown keys are errors.
    pub fn from_options(toml_text: &str) -> Result<Self> {
        Ok(Self::new(CandleOptions::from_toml(toml_text)?))
    }

    /// The options in use.
    pub fn options(&self) -> &CandleOptions {
        &self.options
    }
}

impl GradientBackend for CandleBackend {
    fn info(&self) -> BackendInfo {
        <Self as vog_plugin::PluginBackend>::describe()
    }

    fn load(&self, checkpoint: &Path) -> Result<Box<dyn Model>> {
        Ok(Box::new(
            CandleModel::load(checkpoint, &self.options, &self.device)?.sharing(&self.recycler),
        ))
    }
}

impl vog_plugin::PluginBackend for CandleBackend {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: Self::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["safetensors".into()],
            devices: vec!["cpu".into()],
        }
    }

    fn create(options: &str) -> Result<Self> {
        Self::from_options(options)
    }

    fn self_test() -> Result<String> {
        selftest::run()
    }
}

#[cfg(feature = "plugin")]
vog_plugin::export_backend!(CandleBackend);
