//! Rules for the activations of mobile and modern networks: `HardSigmoid`, `HardSwish`
//! (MobileNetV3, LCNet, EfficientViT), `ThresholdedRelu`, `Selu`, `Celu`, `Mish` and `Softsign`.
//! Piecewise ones follow PyTorch's choice at their kinks (the derivative of the piece on the
//! closed side); smooth ones are written from `x`, or from `y` where that is cheaper.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::attr_f;

/// `g·d`.
fn times(b: &mut Builder<'_>, c: &Ctx<'_>, d: &str) -> Grads {
    one_input(b.op("Mul", &[&c.g, d], vec![]))
}

/// `HardSigmoid`: `y = max(0, min(1, αx + β))`, `dy/dx = α` where `0 < αx + β < 1`, else 0.
pub(super) fn hard_sigmoid(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let alpha = attr_f(c.n, "alpha").unwrap_or(0.2);
    let beta = attr_f(c.n, "beta").unwrap_or(0.5);
    let a = b.scalar_like(alpha, x);
    let bt = b.scalar_like(beta, x);
    let ax = b.op("Mul", &[x, &a], vec![]);
    let t = b.op("Add", &[&ax, &bt], vec![]);
    let zero = b.scalar_like(0.0, x);
    let one = b.scalar_like(1.0, x);
    let above = b.op("Greater", &[&t, &zero], vec![]);
    let below = b.op("Less", &[&t, &one], vec![]);
    let inside = b.op("And", &[&above, &below], vec![]);
    let mask = b.op("CastLike", &[&inside, x], vec![]);
    let d = b.op("Mul", &[&mask, &a], vec![]);
    times(b, c, &d)
}

/// `HardSwish`: `y = x·max(0, min(1, x/6 + 1/2))`; `dy/dx` is 0 below −3, `x/3 + 1/2` up to 3
/// and 1 above (PyTorch's `hardswish_backward`).
pub(super) fn hard_swish(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let third = b.scalar_like(1.0 / 3.0, x);
    let half = b.scalar_like(0.5, x);
    let xt = b.op("Mul", &[x, &third], vec![]);
    let mid = b.op("Add", &[&xt, &half], vec![]);
    let zero = b.scalar_like(0.0, x);
    let one = b.scalar_like(1.0, x);
    let lo = b.scalar_like(-3.0, x);
    let hi = b.scalar_like(3.0, x);
    let upper = b.op("LessOrEqual", &[x, &hi], vec![]);
    let inner = b.op("Where", &[&upper, &mid, &one], vec![]);
    let lower = b.op("Less", &[x, &lo], vec![]);
    let d = b.op("Where", &[&lower, &zero, &inner], vec![]);
    times(b, c, &d)
}

/// `ThresholdedRelu`: `y = x` where `x > α` (default 1), else 0; `dy/dx = [x > α]`.
pub(super) fn thresholded_relu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let alpha = attr_f(c.n, "alpha").unwrap_or(1.0);
    let a = b.scalar_like(alpha, x);
    let above = b.op("Greater", &[x, &a], vec![]);
    let mask = b.op("CastLike", &[&above, &c.g], vec![]);
    times(b, c, &mask)
}

/// `Selu`: `y = γx` for `x > 0`, `γα(eˣ − 1)` else; `dy/dx = γ`, else `y + γα`.
pub(super) fn selu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (x, y) = (c.x(0), c.y());
    let alpha = attr_f(c.n, "alpha").unwrap_or(1.673_263_2);
    let gamma = attr_f(c.n, "gamma").unwrap_or(1.050_701);
    let zero = b.scalar_like(0.0, x);
    let pos = b.op("Greater", &[x, &zero], vec![]);
    let g = b.scalar_like(gamma, y);
    let ga = b.scalar_like(gamma * alpha, y);
    let neg = b.op("Add", &[y, &ga], vec![]);
    let d = b.op("Where", &[&pos, &g, &neg], vec![]);
    times(b, c, &d)
}

/// `Celu`: `y = max(0, x) + min(0, α(e^{x/α} − 1))`; `dy/dx = 1` for `x > 0`, else `e^{x/α}`.
pub(super) fn celu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let alpha = attr_f(c.n, "alpha").unwrap_or(1.0);
    let a = b.scalar_like(alpha, x);
    let xa = b.op("Div", &[x, &a], vec![]);
    let e = b.op("Exp", &[&xa], vec![]);
    let zero = b.scalar_like(0.0, x);
    let one = b.scalar_like(1.0, x);
    let pos = b.op("Greater", &[x, &zero], vec![]);
    let d = b.op("Where", &[&pos, &one, &e], vec![]);
    times(b, c, &d)
}

/// `Mish`: `y = x·tanh(softplus(x))`; `dy/dx = t + x·σ(x)·(1 − t²)` with `t = tanh(softplus(x))`.
pub(super) fn mish(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let sp = b.op("Softplus", &[x], vec![]);
    let t = b.op("Tanh", &[&sp], vec![]);
    let s = b.op("Sigmoid", &[x], vec![]);
    let t2 = b.op("Mul", &[&t, &t], vec![]);
    let one = b.scalar_like(1.0, x);
    let sech2 = b.op("Sub", &[&one, &t2], vec![]);
    let xs = b.op("Mul", &[x, &s], vec![]);
    let r = b.op("Mul", &[&xs, &sech2], vec![]);
    let d = b.op("Add", &[&t, &r], vec![]);
    times(b, c, &d)
}

/// `Softsign`: `y = x / (1 + |x|)`; `dy/dx = 1 / (1 + |x|)²`.
pub(super) fn softsign(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let ax = b.op("Abs", &[x], vec![]);
    let one = b.scalar_like(1.0, x);
    let den = b.op("Add", &[&one, &ax], vec![]);
    let den2 = b.op("Mul", &[&den, &den], vec![]);
    one_input(b.op("Div", &[&c.g, &den2], vec![]))
}
