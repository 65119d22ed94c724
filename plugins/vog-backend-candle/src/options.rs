//! Backend options: the `[backend.options]` table of a vog configuration, as TOML.

use serde::Deserialize;

use vog_core::{Error, Result};

/// One size given as `3` or `[3, 2]` (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    /// The same value for height and width.
    One(usize),
    /// Height and width.
    Two([usize; 2]),
}

impl Size2 {
    /// As `(height, width)`.
    pub fn pair(self) -> (usize, usize) {
        match self {
            Size2::One(v) => (v, v),
            Size2::Two([h, w]) => (h, w),
        }
    }
}

/// Element-wise activations.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// GELU, exact (erf) form, as `torch.nn.GELU()`.
    Gelu,
    /// No activation (a linear model).
    Identity,
}

/// One layer of a sequential model; its position in the list is its `nn.Sequential` index.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerSpec {
    /// `nn.Linear`: weight `[out, in]`, optional bias.
    Linear,
    /// `nn.Conv2d`: weight `[out, in / groups, kh, kw]`, optional bias.
    Conv2d {
        /// Stride (square).
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding on every side.
        #[serde(default)]
        padding: usize,
        /// Dilation (square).
        #[serde(default = "one")]
        dilation: usize,
        /// Channel groups.
        #[serde(default = "one")]
        groups: usize,
    },
    /// `nn.BatchNorm1d` in eval mode (running statistics).
    BatchNorm1d {
        /// Added to the variance.
        #[serde(default = "bn_eps")]
        eps: f64,
    },
    /// `nn.BatchNorm2d` in eval mode (running statistics).
    BatchNorm2d {
        /// Added to the variance.
        #[serde(default = "bn_eps")]
        eps: f64,
    },
    /// `nn.ReLU`.
    Relu,
    /// `nn.LeakyReLU`.
    LeakyRelu {
        /// Slope for negative inputs.
        #[serde(default = "leaky_slope")]
        negative_slope: f64,
    },
    /// `nn.Tanh`.
    Tanh,
    /// `nn.Sigmoid`.
    Sigmoid,
    /// `nn.GELU()` (erf form).
    Gelu,
    /// `nn.MaxPool2d`.
    MaxPool2d {
        /// Window size.
        kernel: Size2,
        /// Step; defaults to the kernel size, as in PyTorch.
        stride: Option<Size2>,
        /// Implicit -∞ padding.
        #[serde(default = "zero2")]
        padding: Size2,
    },
    /// `nn.AvgPool2d`.
    AvgPool2d {
        /// Window size.
        kernel: Size2,
        /// Step; defaults to the kernel size, as in PyTorch.
        stride: Option<Size2>,
        /// Implicit zero padding.
        #[serde(default = "zero2")]
        padding: Size2,
        /// Whether padded cells count in the divisor (PyTorch's default: true).
        #[serde(default = "yes")]
        count_include_pad: bool,
    },
    /// `nn.Flatten()`: everything after the batch axis into one axis.
    Flatten,
    /// `nn.Dropout` (identity at evaluation).
    Dropout {
        /// Ignored at evaluation; accepted so configs can mirror the model.
        #[serde(default)]
        p: f64,
    },
    /// `nn.Identity`.
    Identity,
}

fn one() -> usize {
    1
}
fn bn_eps() -> f64 {
    1e-5
}
fn leaky_slope() -> f64 {
    0.01
}
fn zero2() -> Size2 {
    Size2::One(0)
}
fn yes() -> bool {
    true
}

/// Architectures the candle backend builds from a `state_dict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Linear layers with one activation between them; sizes come from the tensors.
    Mlp,
    /// An `nn.Sequential` described layer by layer in `layers`.
    Sequential,
}

/// Which kernels run convolutions, batch norm and ReLU (`kernels` in the options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// vog's: convolutions as a matrix product per example (im2col / col2im around `gemm`),
    /// batch norm and ReLU over plain slices, examples in parallel (the default).
    #[default]
    Vog,
    /// candle's tensor operations (`conv2d`, `conv_transpose2d`, broadcasts): several times
    /// slower on convolutions, kept to reproduce scores of vog versions before 2026-11-30 bit for
    /// bit.
    Candle,
}

/// Options of the candle backend.
///
/// ```toml
/// [backend.options]
/// arch = "sequential"
/// layers = [
///   { type = "conv2d", padding = 1 }, { type = "batchnorm2d" }, { type = "relu" },
///   { type = "maxpool2d", kernel = 2 }, { type = "flatten" }, { type = "linear" },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandleOptions {
    /// Which architecture to build.
    pub arch: Arch,
    /// Prefix of every tensor name (`"model."`, `"features."`).
    #[serde(default)]
    pub prefix: String,
    /// MLP: activation between linear layers.
    pub activation: Option<Activation>,
    /// MLP: module names of the linear layers in order (`["fc1", "fc2"]`). By default every
    /// `<prefix><index>.weight` of rank 2, in index order.
    pub linear: Option<Vec<String>>,
    /// Sequential: the layers, in order.
    pub layers: Option<Vec<LayerSpec>>,
    /// Which kernels run the layers: `"vog"` (default) or `"candle"`.
    #[serde(default)]
    pub kernels: Kernels,
}

impl CandleOptions {
    /// Parses options from the TOML text of `[backend.options]`, rejecting unknown keys.
    pub fn from_toml(text: &str) -> Result<Self> {
        let options: CandleOptions = toml::from_str(text)
            .map_err(|e| Error::Config(format!("candle backend options: {}", e.message())))?;
        options.validate()?;
        Ok(options)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("candle backend options: {m}")));
        match self.arch {
            Arch::Mlp if self.layers.is_some() => bad(
                "`layers` is for arch = \"sequential\"; an MLP infers its layers from the tensors",
            ),
            Arch::Sequential if self.activation.is_some() || self.linear.is_some() => bad(
                "`activation` and `linear` are for arch = \"mlp\"; list activations in `layers`",
            ),
            Arch::Sequential if self.layers.as_ref().is_none_or(|l| l.is_empty()) => {
                bad("arch = \"sequential\" needs a non-empty `layers` list")
            }
            _ => {
                for (i, layer) in self.layers.iter().flatten().enumerate() {
                    match layer {
                        LayerSpec::Conv2d {
                            stride,
                            dilation,
                            groups,
                            ..
                        } if *stride == 0 || *dilation == 0 || *groups == 0 => {
                            return bad(&format!(
                                "layer {i}: stride, dilation and groups must be ≥ 1"
                            ));
                        }
                        LayerSpec::MaxPool2d { kernel, stride, .. }
                        | LayerSpec::AvgPool2d { kernel, stride, .. } => {
                            let (kh, kw) = kernel.pair();
                            let (sh, sw) = stride.unwrap_or(*kernel).pair();
                            if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
                                return bad(&format!(
                                    "layer {i}: pool kernel and stride must be ≥ 1"
                                ));
                            }
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sequential_layers() {
        let o = CandleOptions::from_toml(
            r#"
            arch = "sequential"
            layers = [
              { type = "conv2d", padding = 1, groups = 2 },
              { type = "batchnorm2d" },
              { type = "maxpool2d", kernel = 3, stride = 2, padding = 1 },
              { type = "avgpool2d", kernel = [2, 1] },
              { type = "leakyrelu", negative_slope = 0.2 },
              { type = "dropout", p = 0.5 },
              { type = "flatten" },
              { type = "linear" },
            ]"#,
        )
        .unwrap();
        let layers = o.layers.unwrap();
        assert_eq!(
            layers[0],
            LayerSpec::Conv2d {
                stride: 1,
                padding: 1,
                dilation: 1,
                groups: 2
            }
        );
        assert_eq!(layers[1], LayerSpec::BatchNorm2d { eps: 1e-5 });
        assert!(matches!(
            layers[3],
            LayerSpec::AvgPool2d {
                kernel: Size2::Two([2, 1]),
                ..
            }
        ));
    }

    #[test]
    fn unknown_keys_and_inconsistent_options_are_rejected() {
        let err = CandleOptions::from_toml("arch = \"mlp\"\nactivaton = \"relu\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `activaton`"),
            "{err}"
        );
        let err = CandleOptions::from_toml(
            "arch = \"sequential\"\nlayers = [{ type = \"conv2d\", strid = 2 }]",
        )
        .unwrap_err();
        assert!(err.to_string().contains("strid"), "{err}");
        assert!(CandleOptions::from_toml("arch = \"sequential\"").is_err());
        assert!(CandleOptions::from_toml("arch = \"mlp\"\nlayers = []").is_err());
        assert!(CandleOptions::from_toml("arch = \"resnet\"").is_err());
    }
}
