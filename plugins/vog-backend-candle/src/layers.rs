//! The layers of a candle model: forward pass and input-only reverse pass, one layer at a time.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;
use vog_core::{Error, Result};

use crate::conv::Conv2dGeom;
use crate::options::Kernels;
use crate::pool::Pool2d;

/// One layer with its tensors.
#[derive(Debug)]
pub(crate) enum Layer {
    Linear {
        name: String,
        weight: Tensor,
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    Conv2d {
        name: String,
        /// `[cout, cin / groups, kh, kw]`.
        weight: Tensor,
        bias: Option<Tensor>,
        /// `weight` and `bias` as plain values, for the GEMM kernels.
        weight_v: Vec<f32>,
        bias_v: Option<Vec<f32>>,
        geom: Conv2dGeom,
    },
    /// Eval-mode batch norm folded into `x * scale + shift` per channel (axis 1).
    BatchNorm {
        name: String,
        scale: Tensor,
        shift: Tensor,
        /// `scale` and `shift` as plain values, for vog's kernels.
        scale_v: Vec<f32>,
        shift_v: Vec<f32>,
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
pub(crate) enum Saved {
    None,
    Input(Tensor),
    Output(Tensor),
    Shape(Vec<usize>),
    MaxArg { arg: Vec<u32>, in_shape: Vec<usize> },
}

pub(crate) fn layer_kind(layer: &Layer) -> &'static str {
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

pub(crate) fn forward_layer(
    layer: &Layer,
    x: &Tensor,
    kernels: Kernels,
) -> Result<(Tensor, Saved)> {
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
            weight_v,
            bias_v,
            geom,
            ..
        } => {
            let (b, h, w) = match *x.dims() {
                [b, c, h, w] if c == geom.cin => (b, h, w),
                ref d => {
                    return Err(Error::Shape(format!(
                        "expects [N, {}, H, W], got {d:?}",
                        geom.cin
                    )))
                }
            };
            let (oh, ow) = geom.output_size(h, w).ok_or_else(|| {
                Error::Shape(format!(
                    "kernel {:?} (dilation {}, padding {}) does not fit a {h}×{w} input",
                    geom.kernel, geom.dilation, geom.padding
                ))
            })?;
            let y = match kernels {
                Kernels::Vog => {
                    let y = with_values(x, |xs| {
                        geom.forward(xs, b, (h, w), weight_v, bias_v.as_deref())
                    })
                    .map_err(backend_err)?;
                    Tensor::from_vec(y, (b, geom.cout, oh, ow), x.device()).map_err(backend_err)?
                }
                Kernels::Candle => {
                    let y = x
                        .conv2d(
                            weight,
                            geom.padding,
                            geom.stride,
                            geom.dilation,
                            geom.groups,
                        )
                        .map_err(shape_err)?;
                    match bias {
                        Some(b) => y
                            .broadcast_add(&b.reshape((1, (), 1, 1)).map_err(backend_err)?)
                            .map_err(shape_err)?,
                        None => y,
                    }
                }
            };
            (y, Saved::Shape(x.dims().to_vec()))
        }
        Layer::BatchNorm {
            scale,
            shift,
            scale_v,
            shift_v,
            channels,
            ..
        } => {
            let dims = x.dims();
            if dims.len() < 2 || dims[1] != *channels {
                return Err(Error::Shape(format!(
                    "expects {channels} channels on axis 1"
                )));
            }
            if kernels == Kernels::Vog {
                // Two roundings, as candle's broadcast multiply then add.
                let y = per_channel(x, None, *channels, |x, _, c| x * scale_v[c] + shift_v[c])
                    .map_err(backend_err)?;
                return Ok((y, Saved::None));
            }
            let mut bshape = vec![1usize; dims.len()];
            bshape[1] = *channels;
            let y = x
                .broadcast_mul(&scale.reshape(bshape.as_slice()).map_err(backend_err)?)
                .and_then(|y| y.broadcast_add(&shift.reshape(bshape.as_slice())?))
                .map_err(shape_err)?;
            (y, Saved::None)
        }
        Layer::Relu if kernels == Kernels::Vog => (
            per_channel(x, None, 1, |x, _, _| x.max(0.0)).map_err(backend_err)?,
            Saved::Input(x.clone()),
        ),
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
            let dev = x.device();
            if let Layer::MaxPool(_) = layer {
                let (y, arg) = with_values(x, |data| p.max_forward_par(data, b, c, h, w))
                    .map_err(backend_err)?;
                let y = Tensor::from_vec(y, (b, c, oh, ow), dev).map_err(backend_err)?;
                (
                    y,
                    Saved::MaxArg {
                        arg,
                        in_shape: vec![b, c, h, w],
                    },
                )
            } else {
                let y = with_values(x, |data| p.avg_forward_par(data, b, c, h, w))
                    .map_err(backend_err)?;
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

pub(crate) fn backward_layer(
    layer: &Layer,
    saved: Saved,
    g: &Tensor,
    kernels: Kernels,
) -> candle_core::Result<Tensor> {
    Ok(match (layer, saved) {
        (Layer::Linear { weight, .. }, Saved::Shape(in_dims)) => {
            let (out_f, _) = weight.dims2()?;
            let lead = g.elem_count() / out_f;
            g.reshape((lead, out_f))?.matmul(weight)?.reshape(in_dims)?
        }
        (
            Layer::Conv2d {
                weight,
                weight_v,
                geom,
                ..
            },
            Saved::Shape(in_dims),
        ) => match kernels {
            Kernels::Vog => {
                let (b, h, w) = (in_dims[0], in_dims[2], in_dims[3]);
                let dx = with_values(g, |gs| geom.input_grad(gs, b, (h, w), weight_v))?;
                Tensor::from_vec(dx, in_dims, g.device())?
            }
            Kernels::Candle => conv2d_input_grad(
                g,
                weight,
                &in_dims,
                geom.stride,
                geom.padding,
                geom.dilation,
                geom.groups,
            )?,
        },
        (
            Layer::BatchNorm {
                scale_v, channels, ..
            },
            _,
        ) if kernels == Kernels::Vog => per_channel(g, None, *channels, |g, _, c| g * scale_v[c])?,
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
        (Layer::Relu, Saved::Input(x)) if kernels == Kernels::Vog => {
            // As candle's `g * (x > 0)`: a zero of the sign of g where x ≤ 0.
            per_channel(g, Some(&x), 1, |g, x, _| {
                g * if x > 0.0 { 1.0 } else { 0.0 }
            })?
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
            let dx = with_values(g, |gv| p.max_backward_par(gv, &arg, b, c, h, w))?;
            Tensor::from_vec(dx, in_shape, g.device())?
        }
        (Layer::AvgPool(p), Saved::Shape(in_shape)) => {
            let (b, c, h, w) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
            let dx = with_values(g, |gv| p.avg_backward_par(gv, b, c, h, w))?;
            Tensor::from_vec(dx, in_shape, g.device())?
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

/// Runs `f` on the tensor's values in row-major order, borrowing candle's buffer when the tensor
/// is a contiguous f32 tensor on the CPU (always, in this backend) and copying otherwise.
fn with_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    {
        let (storage, layout) = x.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            if let Ok(values) = cpu.as_slice::<f32>() {
                return Ok(f(&values[start..end]));
            }
        }
    }
    let values: Vec<f32> = x
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()?;
    Ok(f(&values))
}

/// `f(value, other, channel)` over every element of `x` (and the same element of `other`, or 0),
/// where `channel` is the index on axis 1 modulo `channels`; parallel over blocks of examples.
/// The result has `x`'s shape.
fn per_channel(
    x: &Tensor,
    other: Option<&Tensor>,
    channels: usize,
    f: impl Fn(f32, f32, usize) -> f32 + Sync,
) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let plane = dims.iter().skip(2).product::<usize>().max(1);
    let per_example = dims.iter().skip(1).product::<usize>().max(1);
    // Blocks of whole examples, about 16k values each.
    let block = per_example * (16_384 / per_example).max(1);
    let run = |xs: &[f32], os: Option<&[f32]>| -> Vec<f32> {
        // Written once, without zeroing it first (a whole pass over memory saved).
        let mut out: Vec<f32> = Vec::with_capacity(xs.len());
        out.spare_capacity_mut()[..xs.len()]
            .par_chunks_mut(block)
            .enumerate()
            .for_each(|(bi, out)| {
                let start = bi * block;
                // `block` is whole examples, so planes start at multiples of `plane`.
                for (pi, out) in out.chunks_mut(plane).enumerate() {
                    let at = start + pi * plane;
                    let c = (at / plane) % channels.max(1);
                    let xs = &xs[at..at + out.len()];
                    match os {
                        None => {
                            for (o, &x) in out.iter_mut().zip(xs) {
                                o.write(f(x, 0.0, c));
                            }
                        }
                        Some(os) => {
                            let os = &os[at..at + out.len()];
                            for ((o, &x), &y) in out.iter_mut().zip(xs).zip(os) {
                                o.write(f(x, y, c));
                            }
                        }
                    }
                }
            });
        // SAFETY: the chunks above cover the first `xs.len()` slots and every one of them was
        // written (`out`, `xs` and `os` have the same length per plane).
        unsafe { out.set_len(xs.len()) };
        out
    };
    let out = match other {
        None => with_values(x, |xs| run(xs, None))?,
        Some(o) => with_values(x, |xs| with_values(o, |os| run(xs, Some(os))))??,
    };
    Tensor::from_vec(out, dims, x.device())
}
