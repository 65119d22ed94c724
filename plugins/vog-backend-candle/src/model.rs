//! Layer stacks built from a PyTorch `state_dict`, with a hand-written reverse pass that
//! differentiates with respect to the input only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use vog_core::{
    batch_shape_string, Classes, Error, GradOutput, GradRequest, Model, ModelInfo, Recycler, Result,
};

use crate::conv::Conv2dGeom;
use crate::layers::{backward_layer, forward_layer, layer_kind, Layer, Saved};
use crate::mlp::Mlp;
use crate::options::{Activation, Arch, CandleOptions, Kernels, LayerSpec};
use crate::pool::Pool2d;
use crate::seed::{argmax, target_seed};

/// A checkpoint loaded by the candle backend.
pub struct CandleModel {
    path: PathBuf,
    layers: Vec<Layer>,
    info: ModelInfo,
    kernels: Kernels,
    /// The model as plain matrix products, when it is an MLP and vog's kernels run.
    mlp: Option<Mlp>,
    /// Where the MLP path's gradient buffers come from and go back to.
    recycler: Recycler,
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
        let mlp = (options.kernels == Kernels::Vog)
            .then(|| Mlp::from_layers(&layers))
            .flatten();
        tracing::debug!(path = %path.display(), layers = layers.len(), "candle model loaded");
        Ok(CandleModel {
            path: path.to_path_buf(),
            layers,
            info,
            device: device.clone(),
            kernels: options.kernels,
            mlp,
            recycler: Recycler::default(),
        })
    }

    /// The model drawing its gradient buffers from `recycler` (shared by the backend's models,
    /// so that loading checkpoints one after another reuses the same few buffers).
    pub(crate) fn sharing(mut self, recycler: &Recycler) -> Self {
        self.recycler = recycler.clone();
        self
    }

    fn forward(&self, x: Tensor, saved: &mut Vec<Saved>) -> Result<Tensor> {
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let (y, s) = forward_layer(layer, &x, self.kernels)
                .map_err(|e| self.layer_error(i, layer, &x, e))?;
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
            g = backward_layer(layer, s, &g, self.kernels)
                .map_err(|e| Error::backend("candle", format!("reverse pass of layer {i}: {e}")))?;
        }
        Ok(g)
    }
}

/// The classes the caller chose, checked against the rows and the model's classes; `None` for
/// each row's argmax.
fn given_classes(classes: Classes<'_>, rows: usize, num_classes: usize) -> Result<Option<&[u32]>> {
    match classes {
        Classes::Given(c) => {
            if c.len() != rows {
                return Err(Error::Shape(format!(
                    "{} classes given for {rows} rows",
                    c.len()
                )));
            }
            vog_core::check_classes(c, num_classes)?;
            Ok(Some(c))
        }
        Classes::Argmax => Ok(None),
    }
}

impl Model for CandleModel {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    /// The MLP path runs one block of rows per thread through matrix products, which get more
    /// efficient with taller blocks: about 2 MiB of input per call (512 rows of 784) instead of
    /// the engine's 1 MiB (MNIST MLP: 0.94–1.03× the best PyTorch loop at 256, 1.10× at 512;
    /// docs/PERFORMANCE.md). Gradients and VoG are the same at any batch size; the logits of a
    /// small last block (16 rows) round differently in `gemm` (3e-6 relative, measured).
    fn preferred_batch(&self, row_shape: &[usize]) -> Option<usize> {
        let mlp = self.mlp.as_ref()?;
        let len: usize = row_shape.iter().product();
        (len == mlp.inputs()).then(|| {
            let b = ((1usize << 19) / len.max(1)).clamp(16, 4096);
            1 << (usize::BITS - 1 - b.leading_zeros())
        })
    }

    fn input_gradients(&mut self, request: &GradRequest<'_>) -> Result<GradOutput> {
        let input = request.input;
        let rows = input.rows();
        if let Some(mlp) = &self.mlp {
            let flat =
                input.shape().len() == 2 || matches!(self.layers.first(), Some(Layer::Flatten));
            if flat && input.data().len() == rows * mlp.inputs() {
                let given = given_classes(request.classes, rows, mlp.classes())?;
                let (logits, gradient, classes) =
                    mlp.run(input.data(), rows, given, request.target, &self.recycler);
                return Ok(GradOutput {
                    logits,
                    num_classes: mlp.classes(),
                    gradient,
                    gradient_shape: None,
                    classes,
                });
            }
        }
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
        let classes: Vec<u32> = match given_classes(request.classes, rows, num_classes)? {
            Some(c) => c.to_vec(),
            None => logits.chunks_exact(num_classes).map(argmax).collect(),
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
            gradient: gradient.into(),
            gradient_shape: None,
            classes,
        })
    }
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
                if let Some(b) = &bias {
                    if b.dims() != [cout] {
                        return Err(store.bad(format!(
                            "`{name}.bias` has shape {:?}, expected [{cout}]",
                            b.dims()
                        )));
                    }
                }
                let values = |t: &Tensor| -> Result<Vec<f32>> {
                    t.flatten_all()
                        .and_then(|t| t.to_vec1())
                        .map_err(cerr(store.path))
                };
                let (weight_v, bias_v) = (values(&weight)?, bias.as_ref().map(values).transpose()?);
                let (_, cin_g, kh, kw) = weight.dims4().map_err(cerr(store.path))?;
                Layer::Conv2d {
                    name,
                    weight,
                    bias,
                    weight_v,
                    bias_v,
                    geom: Conv2dGeom {
                        cin: cin_g * groups,
                        cout,
                        kernel: (kh, kw),
                        stride,
                        padding,
                        dilation,
                        groups,
                    },
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
                let values =
                    |t: &Tensor| -> Result<Vec<f32>> { t.to_vec1().map_err(cerr(store.path)) };
                Layer::BatchNorm {
                    name,
                    scale_v: values(&scale)?,
                    shift_v: values(&shift)?,
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
