//! The common MLP — linear layers and activations after an optional flatten — as plain matrix
//! products on blocks of rows, one block per thread, forward and backward in one go: no hand-off
//! between threads per layer, no tensor bookkeeping. Used by vog's kernels (the default) for every
//! model of that shape; anything else goes through the layer-by-layer path.

use std::f32::consts::FRAC_1_SQRT_2;

use candle_core::cpu::erf::erf_f32;
use rayon::prelude::*;
use vog_core::Target;

use crate::conv::{matmul, Mat};
use crate::layers::Layer;
use crate::seed::{argmax, target_seed};

enum Step {
    /// `y = x Wᵀ + b`, `W` row-major `[out, inp]`.
    Linear {
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        inp: usize,
        out: usize,
    },
    /// An element-wise activation.
    Act(Act),
}

#[derive(Clone, Copy)]
enum Act {
    Relu,
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
    Gelu,
}

impl Act {
    /// The activation of `x`, as candle's operation computes it.
    fn forward(self, x: f32) -> f32 {
        match self {
            Act::Relu => x.max(0.0),
            Act::LeakyRelu(slope) => {
                let pos = x.max(0.0);
                pos + (x - pos) * slope
            }
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Gelu => (erf_f32(x * FRAC_1_SQRT_2) + 1.0) * 0.5 * x,
        }
    }

    /// `g` times the derivative at input `x` (output `y`), in the order candle's reverse pass
    /// (`layers.rs`) computes it.
    fn backward(self, g: f32, x: f32, y: f32) -> f32 {
        match self {
            // A zero of the sign of g where x ≤ 0, as `g * (x > 0)`.
            Act::Relu => g * if y > 0.0 { 1.0 } else { 0.0 },
            Act::LeakyRelu(slope) => {
                let pos = if x > 0.0 { 1.0 } else { 0.0 };
                g * (pos * (1.0 - slope) + slope)
            }
            Act::Tanh => g * (1.0 - y * y),
            Act::Sigmoid => g * (y * (1.0 - y)),
            Act::Gelu => {
                let cdf = (erf_f32(x * FRAC_1_SQRT_2 + 0.0) + 1.0) * 0.5;
                let pdf = (x * x * -0.5).exp() * (1.0 / (2.0 * std::f64::consts::PI).sqrt()) as f32;
                g * (cdf + x * pdf)
            }
        }
    }
}

/// An MLP's layers as plain values.
pub(crate) struct Mlp {
    steps: Vec<Step>,
    inputs: usize,
    classes: usize,
}

/// What one block of rows produces.
struct Block<'a> {
    logits: &'a mut [f32],
    gradient: &'a mut [f32],
    classes: &'a mut [u32],
}

impl Mlp {
    /// The MLP in `layers`, when they are one: an optional flatten first, then linear layers,
    /// activations and identities (dropout), starting with a linear layer.
    pub(crate) fn from_layers(layers: &[Layer]) -> Option<Mlp> {
        let body = match layers.first()? {
            Layer::Flatten => &layers[1..],
            _ => layers,
        };
        let mut steps = Vec::new();
        for layer in body {
            match layer {
                Layer::Linear { weight, bias, .. } => {
                    let (out, inp) = weight.dims2().ok()?;
                    let values = |t: &candle_core::Tensor| t.flatten_all().ok()?.to_vec1().ok();
                    steps.push(Step::Linear {
                        weight: values(weight)?,
                        bias: match bias {
                            Some(b) => Some(values(b)?),
                            None => None,
                        },
                        inp,
                        out,
                    });
                }
                Layer::Relu => steps.push(Step::Act(Act::Relu)),
                Layer::LeakyRelu(slope) => steps.push(Step::Act(Act::LeakyRelu(*slope as f32))),
                Layer::Tanh => steps.push(Step::Act(Act::Tanh)),
                Layer::Sigmoid => steps.push(Step::Act(Act::Sigmoid)),
                Layer::Gelu => steps.push(Step::Act(Act::Gelu)),
                Layer::Identity => {}
                _ => return None,
            }
        }
        let inputs = match steps.first()? {
            Step::Linear { inp, .. } => *inp,
            Step::Act(_) => return None,
        };
        let classes = steps.iter().rev().find_map(|s| match s {
            Step::Linear { out, .. } => Some(*out),
            Step::Act(_) => None,
        })?;
        Some(Mlp {
            steps,
            inputs,
            classes,
        })
    }

    /// Classes (outputs of the last linear layer).
    pub(crate) fn classes(&self) -> usize {
        self.classes
    }

    /// Features per row the first layer takes.
    pub(crate) fn inputs(&self) -> usize {
        self.inputs
    }

    /// Logits, input gradients of the target and the classes differentiated, for `rows` rows of
    /// `x`; `given` are the classes when the caller chose them (already checked), else each
    /// row's argmax.
    pub(crate) fn run(
        &self,
        x: &[f32],
        rows: usize,
        given: Option<&[u32]>,
        target: Target,
    ) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let mut logits = vec![0.0f32; rows * self.classes];
        let mut gradient = vec![0.0f32; rows * self.inputs];
        let mut classes = vec![0u32; rows];
        // One block per thread, at least 16 rows each.
        let per = rows.div_ceil(rayon::current_num_threads()).max(16);
        logits
            .par_chunks_mut(per * self.classes)
            .zip(gradient.par_chunks_mut(per * self.inputs))
            .zip(classes.par_chunks_mut(per))
            .enumerate()
            .for_each(|(i, ((logits, gradient), classes))| {
                let m = classes.len();
                let start = i * per;
                let x = &x[start * self.inputs..(start + m) * self.inputs];
                let given = given.map(|g| &g[start..start + m]);
                self.block(
                    x,
                    m,
                    given,
                    target,
                    Block {
                        logits,
                        gradient,
                        classes,
                    },
                );
            });
        (logits, gradient, classes)
    }

    fn block(&self, x: &[f32], m: usize, given: Option<&[u32]>, target: Target, out: Block<'_>) {
        // Forward: every step's output.
        let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            match step {
                Step::Linear {
                    weight,
                    bias,
                    inp,
                    out,
                } => {
                    let src = outputs.last().map_or(x, |v| v.as_slice());
                    let mut y = vec![0.0f32; m * out];
                    matmul(&mut y, Mat::N(src), Mat::T(weight), (m, *out, *inp));
                    if let Some(b) = bias {
                        for row in y.chunks_exact_mut(*out) {
                            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                        }
                    }
                    outputs.push(y);
                }
                Step::Act(act) => {
                    let mut y = outputs.last().expect("a linear layer first").clone();
                    y.iter_mut().for_each(|v| *v = act.forward(*v));
                    outputs.push(y);
                }
            }
        }
        let logits = outputs.last().expect("at least one step");
        out.logits.copy_from_slice(logits);
        match given {
            Some(g) => out.classes.copy_from_slice(g),
            None => {
                for (c, row) in out
                    .classes
                    .iter_mut()
                    .zip(logits.chunks_exact(self.classes))
                {
                    *c = argmax(row);
                }
            }
        }
        // Backward, input only.
        let mut g = target_seed(logits, self.classes, out.classes, target);
        for (i, step) in self.steps.iter().enumerate().rev() {
            match step {
                Step::Linear {
                    weight, inp, out, ..
                } => {
                    let dst_len = m * inp;
                    let mut dx = vec![0.0f32; dst_len];
                    matmul(&mut dx, Mat::N(&g), Mat::N(weight), (m, *inp, *out));
                    g = dx;
                }
                Step::Act(act) => {
                    // Its input is the step before's output (a linear layer comes first).
                    let (x, y) = (&outputs[i - 1], &outputs[i]);
                    for ((g, &x), &y) in g.iter_mut().zip(x).zip(y) {
                        *g = act.backward(*g, x, y);
                    }
                }
            }
        }
        out.gradient.copy_from_slice(&g);
    }
}
