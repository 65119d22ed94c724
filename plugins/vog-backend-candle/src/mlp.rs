//! The common MLP — linear layers and activations after an optional flatten — as plain matrix
//! products on blocks of rows, one block per thread, forward and backward in one go: no hand-off
//! between threads per layer, no tensor bookkeeping. Used by vog's kernels (the default) for every
//! model of that shape; anything else goes through the layer-by-layer path.

use std::cell::RefCell;
use std::f32::consts::FRAC_1_SQRT_2;

use candle_core::cpu::erf::erf_f32;
use rayon::prelude::*;
use vog_core::{Floats, Recycler, Target};

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
    /// row's argmax. The gradient comes from (and goes back to) `recycler`.
    pub(crate) fn run(
        &self,
        x: &[f32],
        rows: usize,
        given: Option<&[u32]>,
        target: Target,
        recycler: &Recycler,
    ) -> (Vec<f32>, Floats, Vec<u32>) {
        let mut logits = vec![0.0f32; rows * self.classes];
        // Every value is overwritten (the first layer's product writes all of it).
        let mut gradient = recycler.take(rows * self.inputs);
        let mut classes = vec![0u32; rows];
        let per = block_rows(rows, rayon::current_num_threads());
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
                SCRATCH.with(|scratch| {
                    self.block(
                        x,
                        m,
                        given,
                        target,
                        &mut scratch.borrow_mut(),
                        Block {
                            logits,
                            gradient,
                            classes,
                        },
                    )
                });
            });
        (logits, recycler.lend(gradient), classes)
    }

    /// Values per row of step `i`'s output.
    fn width(&self, i: usize) -> usize {
        self.steps[..=i]
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Linear { out, .. } => Some(*out),
                Step::Act(_) => None,
            })
            .expect("a linear layer first")
    }

    fn block(
        &self,
        x: &[f32],
        m: usize,
        given: Option<&[u32]>,
        target: Target,
        scratch: &mut Scratch,
        out: Block<'_>,
    ) {
        let Scratch { outputs, back } = scratch;
        if outputs.len() < self.steps.len() {
            outputs.resize_with(self.steps.len(), Vec::new);
        }
        // Forward: every step's output, in this thread's buffers.
        for (i, step) in self.steps.iter().enumerate() {
            let (done, rest) = outputs.split_at_mut(i);
            let src = match i {
                0 => x,
                _ => &done[i - 1][..m * self.width(i - 1)],
            };
            match step {
                Step::Linear {
                    weight,
                    bias,
                    inp,
                    out,
                } => {
                    let y = sized(&mut rest[0], m * out);
                    matmul(y, Mat::N(src), Mat::T(weight), (m, *out, *inp));
                    if let Some(b) = bias {
                        for row in y.chunks_exact_mut(*out) {
                            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                        }
                    }
                }
                Step::Act(act) => {
                    let y = sized(&mut rest[0], src.len());
                    y.iter_mut()
                        .zip(src)
                        .for_each(|(y, &x)| *y = act.forward(x));
                }
            }
        }
        let last = self.steps.len() - 1;
        let logits = &outputs[last][..m * self.classes];
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
        // Backward, input only: two buffers in turn, the first layer's product straight into
        // the caller's gradient.
        let seed = target_seed(logits, self.classes, out.classes, target);
        let [mut cur, mut next] = back.each_mut();
        sized(cur, seed.len()).copy_from_slice(&seed);
        for (i, step) in self.steps.iter().enumerate().rev() {
            match step {
                Step::Linear {
                    weight,
                    inp,
                    out: n,
                    ..
                } => {
                    let g = &cur[..m * n];
                    if i == 0 {
                        matmul(out.gradient, Mat::N(g), Mat::N(weight), (m, *inp, *n));
                        return;
                    }
                    let dx = sized(next, m * inp);
                    matmul(dx, Mat::N(g), Mat::N(weight), (m, *inp, *n));
                    std::mem::swap(&mut cur, &mut next);
                }
                Step::Act(act) => {
                    // Its input is the step before's output (a linear layer comes first).
                    let len = m * self.width(i);
                    let (x, y) = (&outputs[i - 1][..len], &outputs[i][..len]);
                    for ((g, &x), &y) in cur[..len].iter_mut().zip(x).zip(y) {
                        *g = act.backward(*g, x, y);
                    }
                }
            }
        }
        unreachable!("an MLP starts with a linear layer");
    }
}

thread_local! {
    /// Each thread's step outputs and backward buffers, kept between blocks: no allocation (and
    /// no page faults) per batch. Bounded by the largest block the thread ran.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    outputs: Vec<Vec<f32>>,
    back: [Vec<f32>; 2],
}

/// The first `len` values of `buf`, grown when shorter (old values are kept: callers overwrite).
fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Rows per block: the rows spread over the threads, at least 16 per block. (Smaller blocks
/// gained nothing measurable here, and this split keeps every value bit-identical to the
/// version before the buffers were reused.)
fn block_rows(rows: usize, threads: usize) -> usize {
    rows.div_ceil(threads.max(1)).max(16)
}
