//! Layer stacks built from a PyTorch `state_dict`, with a hand-written reverse pass that
//! differentiates with respect to the input only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use vog_core::{
    batch_shape_string, Classes, Error, GradOutput, GradRequest, Model, ModelInfo, Result, Target,
};

use crate::options::{Activation, Arch, CandleOptions, LayerSpec};
use crate::pool::Pool2d;

/// One layer with its tensors.
#[derive(Debug)]
enum Layer {
    Linear {
        name: String,
        weight: Tensor,
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    Conv2d {
        name: String,
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
        dilation: usize,
        groups: usize,
    },
    /// Eval-mode batch norm folded into `x * scale + shift` per channel (axis 1).
    BatchNorm {
        name: String,
        scale: Tensor,
        shift: Tensor,
        channels: usize,
    },
    Relu,
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
    Gelu,
    MaxPool(Pool2d),
    AvgPool(Pool2d),
    Flatten,
    Identity,
}

/// What the forward pass keeps for the reverse pass of one layer.
enum Saved {
    None,
    Input(Tensor),
    Output(Tensor),
    Shape(Vec<usize>),
    MaxArg { arg: Vec<u32>, in_shape: Vec<usize> },
}

/// A checkpoint loaded by the candle backend.
pub struct CandleModel {
    path: PathBuf,
    layers: Vec<Layer>,
    info: ModelInfo,
    device: Device,
}

fn cerr(path: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::checkpoint(path, e)
}

impl CandleModel {
    /// Loads tensors from a safetensors file and assembles the configured architecture.
    pub fn load(path: &Path, options: &CandleOptions, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::checkpoint(path, "file not found"));
        }
        let tensors = candle_core::safetensors::load(path, device).map_err(|e| {
            Error::checkpoint(path, format!("not a readable safetensors file: {e}"))
        })?;
        let mut store = Store {
            path,
            tensors,
            prefix: &options.prefix,
        };
        let layers = match options.arch {
            Arch::Mlp => build_mlp(&mut store, options)?,
            Arch::Sequential => {
                build_sequential(&mut store, options.layers.as_deref().unwrap_or(&[]))?
            }
        };
        let info = describe(&layers);
        tracing::debug!(path = %path.display(), layers = layers.len(), "candle model loaded");
        Ok(CandleModel {
            path: path.to_path_buf(),
            layers,
            info,
            device: device.clone(),
        })
    }

    fn forward(&self, x: Tensor, saved: &mut Vec<Saved>) -> Result<Tensor> {
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let (y, s) = forward_layer(layer, &x).map_err(|e| self.layer_error(i, layer, &x, e))?;
            saved.push(s);
            x = y;
        }
        Ok(x)
    }

    fn layer_error(&self, i: usize, layer: &Layer, x: &Tensor, e: Error) -> Error {
        let what = match layer {
            Layer::Linear { name, weight, .. } | Layer::Conv2d { name, weight, .. } => {
                format!(
                    "layer `{name}` ({}, weight {:?})",
                    layer_kind(layer),
                    weight.dims()
                )
            }
            Layer::BatchNorm { name, channels, .. } => {
                format!("layer `{name}` (batchnorm, {channels} channels)")
            }
            other => format!("layer {i} ({})", layer_kind(other)),
        };
        match e {
            Error::Shape(m) => Error::Shape(format!(
                "{what} cannot take input {}: {m}",
                batch_shape_string(&x.dims()[1..])
            )),
            other => other,
        }
    }

    fn backward(&self, mut g: Tensor, saved: Vec<Saved>) -> Result<Tensor> {
        for (i, (layer, s)) in self.layers.iter().zip(saved).enumerate().rev() {
            g = backward_layer(layer, s, &g)
                .map_err(|e| Error::backend("candle", format!("reverse pass of layer {i}: {e}")))?;
        }
        Ok(g)
    }
}

impl Model for CandleModel {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let input = request.input;
        let rows = input.rows();
        let x = Tensor::from_slice(input.data(), input.shape(), &self.device)
            .map_err(cerr(&self.path))?;
        let mut saved = Vec::with_capacity(self.layers.len());
        let logits = self.forward(x, &mut saved)?;
        let (b, num_classes) = logits.dims2().map_err(|_| {
            Error::Shape(format!(
                "the model's output has shape {:?}; expected logits [N, classes] (add a flatten?)",
                logits.dims()
            ))
        })?;
        debug_assert_eq!(b, rows);
        let logits: Vec<f32> = logits
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(cerr(&self.path))?;
        let classes: Vec<u32> = match request.classes {
            Classes::Given(c) => {
                if c.len() != rows {
                    return Err(Error::Shape(format!(
                        "{} classes given for {rows} rows",
                        c.len()
                    )));
                }
                vog_core::check_classes(c, num_classes)?;
                c.to_vec()
            }
            Classes::Argmax => logits.chunks_exact(num_classes).map(argmax).collect(),
        };
        let seed = target_seed(&logits, num_classes, &classes, request.target);
        let seed =
            Tensor::from_vec(seed, (rows, num_classes), &self.device).map_err(cerr(&self.path))?;
        let grad = self.backward(seed, saved)?;
        let gradient: Vec<f32> = grad
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(cerr(&self.path))?;
        Ok(GradOutput {
            logits,
            num_classes,
            gradient,
            gradient_shape: None,
            classes,
        })
    }
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// ∂target/∂logits per row: one-hot for the logit target; `p_c (δ_jc − p_j)` for the softmax
/// probability of class c.
pub(crate) fn target_seed(
    logits: &[f32],
    num_classes: usize,
    classes: &[u32],
    target: Target,
) -> Vec<f32> {
    let mut seed = vec![0.0f32; logits.len()];
    for ((row, out), &c) in logits
        .chunks_exact(num_classes)
        .zip(seed.chunks_exact_mut(num_classes))
        .zip(classes)
    {
        let c = c as usize;
        match target {
            Target::Logit => out[c] = 1.0,
            Target::Probability => {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                let pc = exps[c] / sum;
                for (j, (o, e)) in out.iter_mut().zip(&exps).enumerate() {
                    let pj = e / sum;
                    *o = (pc * (f64::from(u8::from(j == c)) - pj)) as f32;
                }
            }
        }
    }
    seed
}

fn layer_kind(layer: &Layer) -> &'static str {
    match layer {
        Layer::Linear { .. } => "linear",
        Layer::Conv2d { .. } => "conv2d",
        Layer::BatchNorm { .. } => "batchnorm",
        Layer::Relu => "relu",
        Layer::LeakyRelu(_) => "leakyrelu",
        Layer::Tanh => "tanh",
        Layer::Sigmoid => "sigmoid",
        Layer::Gelu => "gelu",
        Layer::MaxPool(_) => "maxpool2d",
        Layer::AvgPool(_) => "avgpool2d",
        Layer::Flatten => "flatten",
        Layer::Identity => "identity",
    }
}

fn shape_err(e: candle_core::Error) -> Error {
    Error::Shape(e.to_string())
}

fn backend_err(e: candle_core::Error) -> Error {
    Error::backend("candle", e)
}

fn forward_layer(layer: &Layer, x: &Tensor) -> Result<(Tensor, Saved)> {
    Ok(match layer {
        Layer::Linear {
            weight,
            weight_t,
            bias,
            ..
        } => {
            let (out_f, in_f) = weight.dims2().map_err(backend_err)?;
            let dims = x.dims().to_vec();
            if dims.last() != Some(&in_f) {
                return Err(Error::Shape(format!(
                    "expects {in_f} features in the last axis"
                )));
            }
            let lead: usize = dims[..dims.len() - 1].iter().product();
            let y = x
                .reshape((lead, in_f))
                .and_then(|x| x.matmul(weight_t))
                .map_err(shape_err)?;
            let y = match bias {
                Some(b) => y.broadcast_add(b).map_err(shape_err)?,
                None => y,
            };
            let mut out_dims = dims[..dims.len() - 1].to_vec();
            out_dims.push(out_f);
            (y.reshape(out_dims).map_err(shape_err)?, Saved::Shape(dims))
        }
        Layer::Conv2d {
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            ..
        } => {
            let (_, cin_g, _, _) = weight.dims4().map_err(backend_err)?;
            match x.dims() {
                &[_, c, _, _] if c == cin_g * groups => {}
                d => {
                    return Err(Error::Shape(format!(
                        "expects [N, {}, H, W], got {d:?}",
                        cin_g * groups
                    )))
                }
            }
            let y = x
                .conv2d(weight, *padding, *stride, *dilation, *groups)
                .map_err(shape_err)?;
            let y = match bias {
                Some(b) => y
                    .broadcast_add(&b.reshape((1, (), 1, 1)).map_err(backend_err)?)
                    .map_err(shape_err)?,
                None => y,
            };
            (y, Saved::Shape(x.dims().to_vec()))
        }
        Layer::BatchNorm {
            scale,
            shift,
            channels,
            ..
        } => {
            let dims = x.dims();
            if dims.len() < 2 || dims[1] != *channels {
                return Err(Error::Shape(format!(
                    "expects {channels} channels on axis 1"
                )));
            }
            let mut bshape = vec![1usize; dims.len()];
            bshape[1] = *channels;
            let y = x
                .broadcast_mul(&scale.reshape(bshape.as_slice()).map_err(backend_err)?)
                .and_then(|y| y.broadcast_add(&shift.reshape(bshape.as_slice())?))
                .map_err(shape_err)?;
            (y, Saved::None)
        }
        Layer::Relu => (x.relu().map_err(backend_err)?, Saved::Input(x.clone())),
        Layer::LeakyRelu(slope) => {
            let pos = x.relu().map_err(backend_err)?;
            let neg = (x - &pos).and_then(|n| n * *slope).map_err(backend_err)?;
            ((pos + neg).map_err(backend_err)?, Saved::Input(x.clone()))
        }
        Layer::Tanh => {
            let y = x.tanh().map_err(backend_err)?;
            (y.clone(), Saved::Output(y))
        }
        Layer::Sigmoid => {
            let y = candle_nn::ops::sigmoid(x).map_err(backend_err)?;
            (y.clone(), Saved::Output(y))
        }
        Layer::Gelu => (x.gelu_erf().map_err(backend_err)?, Saved::Input(x.clone())),
        Layer::MaxPool(p) | Layer::AvgPool(p) => {
            let (b, c, h, w) = x
                .dims4()
                .map_err(|_| Error::Shape("expects [N, C, H, W]".into()))?;
            let (oh, ow) = p.output_size(h, w).ok_or_else(|| {
                Error::Shape(format!(
                    "window {:?} does not fit a {h}×{w} input",
                    p.kernel
                ))
            })?;
            let data: Vec<f32> = x
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(backend_err)?;
            let dev = x.device();
            if let Layer::MaxPool(_) = layer {
                let (y, arg) = p.max_forward(&data, b * c, h, w);
                let y = Tensor::from_vec(y, (b, c, oh, ow), dev).map_err(backend_err)?;
                (
                    y,
                    Saved::MaxArg {
                        arg,
                        in_shape: vec![b, c, h, w],
                    },
                )
            } else {
                let y = p.avg_forward(&data, b * c, h, w);
                let y = Tensor::from_vec(y, (b, c, oh, ow), dev).map_err(backend_err)?;
                (y, Saved::Shape(vec![b, c, h, w]))
            }
        }
        Layer::Flatten => (
            x.flatten_from(1).map_err(backend_err)?,
            Saved::Shape(x.dims().to_vec()),
        ),
        Layer::Identity => (x.clone(), Saved::None),
    })
}

fn backward_layer(layer: &Layer, saved: Saved, g: &Tensor) -> candle_core::Result<Tensor> {
    Ok(match (layer, saved) {
        (Layer::Linear { weight, .. }, Saved::Shape(in_dims)) => {
            let (out_f, _) = weight.dims2()?;
            let lead = g.elem_count() / out_f;
            g.reshape((lead, out_f))?.matmul(weight)?.reshape(in_dims)?
        }
        (
            Layer::Conv2d {
                weight,
                stride,
                padding,
                dilation,
                groups,
                ..
            },
            Saved::Shape(in_dims),
        ) => conv2d_input_grad(g, weight, &in_dims, *stride, *padding, *dilation, *groups)?,
        (
            Layer::BatchNorm {
                scale, channels, ..
            },
            _,
        ) => {
            let mut bshape = vec![1usize; g.rank()];
            bshape[1] = *channels;
            g.broadcast_mul(&scale.reshape(bshape)?)?
        }
        (Layer::Relu, Saved::Input(x)) => (g * x.gt(0.0)?.to_dtype(g.dtype())?)?,
        (Layer::LeakyRelu(slope), Saved::Input(x)) => {
            let pos = x.gt(0.0)?.to_dtype(g.dtype())?;
            // 1 where x > 0, slope elsewhere.
            let factor = ((&pos * (1.0 - slope))? + *slope)?;
            (g * factor)?
        }
        (Layer::Tanh, Saved::Output(y)) => (g * (1.0 - y.sqr()?)?)?,
        (Layer::Sigmoid, Saved::Output(y)) => (g * (&y * (1.0 - &y)?)?)?,
        (Layer::Gelu, Saved::Input(x)) => {
            // d/dx x·Φ(x) = Φ(x) + x·φ(x)
            let cdf = ((x.affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?.erf()? + 1.0)? * 0.5)?;
            let pdf = (x.sqr()? * -0.5)?
                .exp()?
                .affine(1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
            (g * (cdf + (x * pdf)?)?)?
        }
        (Layer::MaxPool(p), Saved::MaxArg { arg, in_shape }) => {
            let (b, c, h, w) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
            let gv: Vec<f32> = g.flatten_all()?.to_vec1()?;
            Tensor::from_vec(p.max_backward(&gv, &arg, b * c, h, w), in_shape, g.device())?
        }
        (Layer::AvgPool(p), Saved::Shape(in_shape)) => {
            let (b, c, h, w) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
            let gv: Vec<f32> = g.flatten_all()?.to_vec1()?;
            Tensor::from_vec(p.avg_backward(&gv, b * c, h, w), in_shape, g.device())?
        }
        (Layer::Flatten, Saved::Shape(in_dims)) => g.reshape(in_dims)?,
        (Layer::Identity, _) => g.clone(),
        _ => candle_core::bail!("internal error: saved state does not match the layer"),
    })
}

/// Input gradient of a 2-d convolution: a transposed convolution of the output gradient with the
/// same kernel, per channel group, padded back to the input size where the forward pass dropped
/// trailing rows or columns.
fn conv2d_input_grad(
    g: &Tensor,
    weight: &Tensor,
    in_dims: &[usize],
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> candle_core::Result<Tensor> {
    let (h, w) = (in_dims[2], in_dims[3]);
    let (cout, _, _, _) = weight.dims4()?;
    let per_group = cout / groups;
    let parts = (0..groups)
        .map(|grp| {
            let gg = g.narrow(1, grp * per_group, per_group)?.contiguous()?;
            let wg = weight.narrow(0, grp * per_group, per_group)?.contiguous()?;
            gg.conv_transpose2d(&wg, padding, 0, stride, dilation)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let dx = if groups == 1 {
        parts.into_iter().next().expect("one group")
    } else {
        Tensor::cat(&parts, 1)?
    };
    let (_, _, gh, gw) = dx.dims4()?;
    let dx = if gh < h {
        dx.pad_with_zeros(2, 0, h - gh)?
    } else {
        dx
    };
    let dx = if gw < w {
        dx.pad_with_zeros(3, 0, w - gw)?
    } else {
        dx
    };
    Ok(dx)
}

/// Tensor lookup with the checkpoint's path in every error.
struct Store<'a> {
    path: &'a Path,
    tensors: HashMap<String, Tensor>,
    prefix: &'a str,
}

impl Store<'_> {
    fn take(&mut self, module: &str, param: &str) -> Result<Tensor> {
        self.take_opt(module, param)?.ok_or_else(|| {
            let mut names: Vec<&String> = self.tensors.keys().collect();
            names.sort();
            let names: Vec<&str> = names.iter().take(12).map(|s| s.as_str()).collect();
            Error::checkpoint(
                self.path,
                format!(
                    "missing tensor `{}{module}.{param}` (the file holds: {}{})",
                    self.prefix,
                    names.join(", "),
                    if self.tensors.len() > 12 { ", …" } else { "" }
                ),
            )
        })
    }

    fn take_opt(&mut self, module: &str, param: &str) -> Result<Option<Tensor>> {
        let key = format!("{}{module}.{param}", self.prefix);
        match self.tensors.remove(&key) {
            None => Ok(None),
            Some(t) => t
                .to_dtype(DType::F32)
                .map(Some)
                .map_err(|e| Error::checkpoint(self.path, format!("tensor `{key}`: {e}"))),
        }
    }

    fn bad(&self, message: String) -> Error {
        Error::checkpoint(self.path, message)
    }
}

fn linear(store: &mut Store<'_>, name: &str) -> Result<Layer> {
    let weight = store.take(name, "weight")?;
    let (out_f, in_f) = weight.dims2().map_err(|_| {
        store.bad(format!(
            "`{name}.weight` has shape {:?}; a linear weight is [out, in]",
            weight.dims()
        ))
    })?;
    let bias = store.take_opt(name, "bias")?;
    if let Some(b) = &bias {
        if b.dims() != [out_f] {
            return Err(store.bad(format!(
                "`{name}.bias` has shape {:?}, expected [{out_f}]",
                b.dims()
            )));
        }
    }
    let weight_t = weight
        .t()
        .and_then(|t| t.contiguous())
        .map_err(cerr(store.path))?;
    let _ = in_f;
    Ok(Layer::Linear {
        name: name.to_string(),
        weight,
        weight_t,
        bias,
    })
}

fn build_mlp(store: &mut Store<'_>, options: &CandleOptions) -> Result<Vec<Layer>> {
    let names: Vec<String> = match &options.linear {
        Some(names) => names.clone(),
        None => {
            let mut idx: Vec<(usize, String)> = store
                .tensors
                .iter()
                .filter_map(|(k, t)| {
                    let rest = k.strip_prefix(store.prefix)?.strip_suffix(".weight")?;
                    let i: usize = rest.parse().ok()?;
                    (t.rank() == 2).then(|| (i, rest.to_string()))
                })
                .collect();
            idx.sort();
            if idx.is_empty() {
                return Err(store.bad(format!(
                    "no linear layers found: expected tensors named `{}<index>.weight` of rank 2 \
                     (an nn.Sequential); set `linear = [...]` for named modules such as fc1, fc2",
                    store.prefix
                )));
            }
            idx.into_iter().map(|(_, n)| n).collect()
        }
    };
    let act = options.activation.unwrap_or_default();
    let mut layers = vec![Layer::Flatten];
    let mut prev_out: Option<(String, usize)> = None;
    for (i, name) in names.iter().enumerate() {
        let layer = linear(store, name)?;
        if let Layer::Linear { weight, .. } = &layer {
            let (out_f, in_f) = weight.dims2().map_err(cerr(store.path))?;
            if let Some((prev, p_out)) = &prev_out {
                if *p_out != in_f {
                    return Err(store.bad(format!(
                        "`{prev}.weight` produces {p_out} features but `{name}.weight` takes {in_f}"
                    )));
                }
            }
            prev_out = Some((name.clone(), out_f));
        }
        if i > 0 {
            layers.push(activation_layer(act));
        }
        layers.push(layer);
    }
    Ok(layers)
}

fn activation_layer(a: Activation) -> Layer {
    match a {
        Activation::Relu => Layer::Relu,
        Activation::Tanh => Layer::Tanh,
        Activation::Sigmoid => Layer::Sigmoid,
        Activation::Gelu => Layer::Gelu,
        Activation::Identity => Layer::Identity,
    }
}

fn build_sequential(store: &mut Store<'_>, specs: &[LayerSpec]) -> Result<Vec<Layer>> {
    let mut layers = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let name = i.to_string();
        let layer = match *spec {
            LayerSpec::Linear => linear(store, &name)?,
            LayerSpec::Conv2d {
                stride,
                padding,
                dilation,
                groups,
            } => {
                let weight = store.take(&name, "weight")?;
                let (cout, _, _, _) = weight.dims4().map_err(|_| {
                    store.bad(format!("`{name}.weight` has shape {:?}; a conv2d weight is [out, in/groups, kh, kw]", weight.dims()))
                })?;
                if cout % groups != 0 {
                    return Err(store.bad(format!(
                        "`{name}.weight`: {cout} output channels do not split into {groups} groups"
                    )));
                }
                let bias = store.take_opt(&name, "bias")?;
                Layer::Conv2d {
                    name,
                    weight,
                    bias,
                    stride,
                    padding,
                    dilation,
                    groups,
                }
            }
            LayerSpec::BatchNorm1d { eps } | LayerSpec::BatchNorm2d { eps } => {
                let mean = store.take(&name, "running_mean")?;
                let var = store.take(&name, "running_var")?;
                let channels = mean.dim(0).map_err(cerr(store.path))?;
                let gamma = match store.take_opt(&name, "weight")? {
                    Some(w) => w,
                    None => Tensor::ones(channels, DType::F32, mean.device())
                        .map_err(cerr(store.path))?,
                };
                let beta = match store.take_opt(&name, "bias")? {
                    Some(b) => b,
                    None => Tensor::zeros(channels, DType::F32, mean.device())
                        .map_err(cerr(store.path))?,
                };
                let _ = store
                    .tensors
                    .remove(&format!("{}{name}.num_batches_tracked", store.prefix));
                let fold = || -> candle_core::Result<(Tensor, Tensor)> {
                    let scale = (gamma / (var + eps)?.sqrt()?)?;
                    let shift = (beta - (&mean * &scale)?)?;
                    Ok((scale, shift))
                };
                let (scale, shift) =
                    fold().map_err(|e| store.bad(format!("batch norm `{name}`: {e}")))?;
                Layer::BatchNorm {
                    name,
                    scale,
                    shift,
                    channels,
                }
            }
            LayerSpec::Relu => Layer::Relu,
            LayerSpec::LeakyRelu { negative_slope } => Layer::LeakyRelu(negative_slope),
            LayerSpec::Tanh => Layer::Tanh,
            LayerSpec::Sigmoid => Layer::Sigmoid,
            LayerSpec::Gelu => Layer::Gelu,
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            } => Layer::MaxPool(Pool2d {
                kernel: kernel.pair(),
                stride: stride.unwrap_or(kernel).pair(),
                padding: padding.pair(),
                count_include_pad: true,
            }),
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => Layer::AvgPool(Pool2d {
                kernel: kernel.pair(),
                stride: stride.unwrap_or(kernel).pair(),
                padding: padding.pair(),
                count_include_pad,
            }),
            LayerSpec::Flatten => Layer::Flatten,
            LayerSpec::Dropout { .. } | LayerSpec::Identity => Layer::Identity,
        };
        layers.push(layer);
    }
    Ok(layers)
}

/// Input shape (as far as the first parametrised layer tells) and class count.
fn describe(layers: &[Layer]) -> ModelInfo {
    let input_shape = layers.iter().find_map(|l| match l {
        Layer::Linear { weight, .. } => weight.dims2().ok().map(|(_, i)| vec![i]),
        // A convolution fixes the channel count only, not the whole shape.
        Layer::Conv2d { .. } => Some(vec![]),
        _ => None,
    });
    let input_shape = input_shape.filter(|s| !s.is_empty());
    let num_classes = layers.iter().rev().find_map(|l| match l {
        Layer::Linear { weight, .. } => weight.dims2().ok().map(|(o, _)| o),
        _ => None,
    });
    ModelInfo {
        input_shape,
        num_classes,
        channel_axis: None,
    }
}
