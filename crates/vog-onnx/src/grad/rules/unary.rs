//! Rules for elementwise ops with one differentiable input: activations (`Relu`, `LeakyRelu`,
//! `Elu`, `Sigmoid`, `Tanh`, `Softplus`, `Gelu`), `Erf`, `Exp`, `Log`, `Neg`, `Abs`, `Sqrt`,
//! `Reciprocal`, `Pow` (by its base), `Clip`, and the pass-throughs `Identity`, `Dropout` and
//! `Cast`. Each multiplies the incoming gradient by the op's derivative, written from `x` or from
//! the output `y`, whichever is cheaper.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::grad::names::RELU_GRAD;
use crate::graph::{attr_f, attr_s};

/// `Identity`, `Dropout` (inference): the gradient passes through.
pub(super) fn identity(_b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(c.g.clone())
}

/// `Cast` to a float type: the gradient is cast back to the input's type.
pub(super) fn cast(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.op("CastLike", &[&c.g, c.x(0)], vec![]))
}

/// `Relu`: `g · [x > 0]`, or `g` itself when a max pool's rule already applied this ReLU.
pub(super) fn relu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let g = &c.g;
    if b.relu_applied.contains(g) {
        return one_input(g.clone());
    }
    // g · [x > 0] as a multiply by the cast mask: ONNX Runtime's Where (with a broadcast
    // scalar) is several times slower than Cast + Mul on CPU. The mask is read off the output
    // (y > 0 exactly where x > 0, NaN included: false for both), so that the input has no
    // consumer but the Relu and ONNX Runtime can fuse it into the node before (Conv + Relu,
    // Conv + Add + Relu).
    let y = c.y();
    if b.vog_ops {
        // One pass instead of three (vog's kernel, the same values).
        return one_input(b.vog_op(RELU_GRAD, &[g, y], vec![]));
    }
    let zero = b.scalar_like(0.0, y);
    let pos = b.op("Greater", &[y, &zero], vec![]);
    let mask = b.op("CastLike", &[&pos, g], vec![]);
    one_input(b.op("Mul", &[g, &mask], vec![]))
}

/// `LeakyRelu`: `g` where `x > 0`, `α·g` elsewhere.
pub(super) fn leaky_relu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, x) = (&c.g, c.x(0));
    let alpha = attr_f(c.n, "alpha").unwrap_or(0.01);
    let zero = b.scalar_like(0.0, x);
    let pos = b.op("Greater", &[x, &zero], vec![]);
    let a = b.scalar_like(alpha, g);
    let ga = b.op("Mul", &[g, &a], vec![]);
    one_input(b.op("Where", &[&pos, g, &ga], vec![]))
}

/// `Elu`: `g` where `x > 0`, `g·(y + α)` elsewhere.
pub(super) fn elu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, x, y) = (&c.g, c.x(0), c.y());
    let alpha = attr_f(c.n, "alpha").unwrap_or(1.0);
    let zero = b.scalar_like(0.0, x);
    let pos = b.op("Greater", &[x, &zero], vec![]);
    let a = b.scalar_like(alpha, y);
    let ya = b.op("Add", &[y, &a], vec![]);
    let gn = b.op("Mul", &[g, &ya], vec![]);
    one_input(b.op("Where", &[&pos, g, &gn], vec![]))
}

/// `Sigmoid`: `g·y(1 − y)`.
pub(super) fn sigmoid(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let y = c.y();
    let one = b.scalar_like(1.0, y);
    let om = b.op("Sub", &[&one, y], vec![]);
    let d = b.op("Mul", &[y, &om], vec![]);
    one_input(b.op("Mul", &[&c.g, &d], vec![]))
}

/// `Tanh`: `g·(1 − y²)`.
pub(super) fn tanh(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let y = c.y();
    let one = b.scalar_like(1.0, y);
    let y2 = b.op("Mul", &[y, y], vec![]);
    let d = b.op("Sub", &[&one, &y2], vec![]);
    one_input(b.op("Mul", &[&c.g, &d], vec![]))
}

/// `Softplus`: `g·σ(x)`.
pub(super) fn softplus(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let s = b.op("Sigmoid", &[c.x(0)], vec![]);
    one_input(b.op("Mul", &[&c.g, &s], vec![]))
}

/// `Erf`: `g·(2/√π)·exp(−x²)`.
pub(super) fn erf(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let k = b.scalar_like(std::f32::consts::FRAC_2_SQRT_PI, x);
    let x2 = b.op("Mul", &[x, x], vec![]);
    let nx2 = b.op("Neg", &[&x2], vec![]);
    let e = b.op("Exp", &[&nx2], vec![]);
    let d = b.op("Mul", &[&k, &e], vec![]);
    one_input(b.op("Mul", &[&c.g, &d], vec![]))
}

/// `Gelu`, exact (`approximate = "none"`) or with the tanh approximation.
pub(super) fn gelu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let xs = c.x(0);
    let d = match attr_s(c.n, "approximate").as_deref().unwrap_or("none") {
        "tanh" => gelu_tanh_slope(b, xs),
        "none" => gelu_erf_slope(b, xs),
        _ => return Err(()),
    };
    one_input(b.op("Mul", &[&c.g, &d], vec![]))
}

/// The derivative of the tanh-approximated GELU at `xs`.
fn gelu_tanh_slope(b: &mut Builder<'_>, xs: &str) -> String {
    // t = tanh(k (x + 0.044715 x³)); d = 0.5 (1 + t) + 0.5 x (1 − t²) k (1 + 0.134145 x²)
    let k = b.scalar_like((2.0f32 / std::f32::consts::PI).sqrt(), xs);
    let c = b.scalar_like(0.044715, xs);
    let c3 = b.scalar_like(0.134145, xs);
    let half = b.scalar_like(0.5, xs);
    let one = b.scalar_like(1.0, xs);
    let x2 = b.op("Mul", &[xs, xs], vec![]);
    let x3 = b.op("Mul", &[&x2, xs], vec![]);
    let cx3 = b.op("Mul", &[&c, &x3], vec![]);
    let inner = b.op("Add", &[xs, &cx3], vec![]);
    let kin = b.op("Mul", &[&k, &inner], vec![]);
    let t = b.op("Tanh", &[&kin], vec![]);
    let opt = b.op("Add", &[&one, &t], vec![]);
    let a = b.op("Mul", &[&half, &opt], vec![]);
    let t2 = b.op("Mul", &[&t, &t], vec![]);
    let omt2 = b.op("Sub", &[&one, &t2], vec![]);
    let c3x2 = b.op("Mul", &[&c3, &x2], vec![]);
    let poly = b.op("Add", &[&one, &c3x2], vec![]);
    let hx = b.op("Mul", &[&half, xs], vec![]);
    let p1 = b.op("Mul", &[&hx, &omt2], vec![]);
    let p2 = b.op("Mul", &[&p1, &k], vec![]);
    let bterm = b.op("Mul", &[&p2, &poly], vec![]);
    b.op("Add", &[&a, &bterm], vec![])
}

/// The derivative of the exact GELU at `xs`.
fn gelu_erf_slope(b: &mut Builder<'_>, xs: &str) -> String {
    // Φ(x) + x φ(x)
    let r2 = b.scalar_like(std::f32::consts::FRAC_1_SQRT_2, xs);
    let half = b.scalar_like(0.5, xs);
    let one = b.scalar_like(1.0, xs);
    let inv = b.scalar_like(1.0 / (2.0 * std::f32::consts::PI).sqrt(), xs);
    let xr = b.op("Mul", &[xs, &r2], vec![]);
    let e = b.op("Erf", &[&xr], vec![]);
    let ope = b.op("Add", &[&one, &e], vec![]);
    let cdf = b.op("Mul", &[&half, &ope], vec![]);
    let x2 = b.op("Mul", &[xs, xs], vec![]);
    let mh = b.scalar_like(-0.5, xs);
    let ex = b.op("Mul", &[&x2, &mh], vec![]);
    let ee = b.op("Exp", &[&ex], vec![]);
    let pdf = b.op("Mul", &[&ee, &inv], vec![]);
    let xp = b.op("Mul", &[xs, &pdf], vec![]);
    b.op("Add", &[&cdf, &xp], vec![])
}

/// `Exp`: `g·y`.
pub(super) fn exp(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.op("Mul", &[&c.g, c.y()], vec![]))
}

/// `Log`: `g / x`.
pub(super) fn log(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.op("Div", &[&c.g, c.x(0)], vec![]))
}

/// `Neg`: `−g`.
pub(super) fn neg(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.op("Neg", &[&c.g], vec![]))
}

/// `Abs`: `g·sign(x)`.
pub(super) fn abs(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let s = b.op("Sign", &[c.x(0)], vec![]);
    one_input(b.op("Mul", &[&c.g, &s], vec![]))
}

/// `Sqrt`: `g·0.5 / y`.
pub(super) fn sqrt(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let y = c.y();
    let half = b.scalar_like(0.5, y);
    let gh = b.op("Mul", &[&c.g, &half], vec![]);
    one_input(b.op("Div", &[&gh, y], vec![]))
}

/// `Reciprocal`: `−g·y²`.
pub(super) fn reciprocal(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let y = c.y();
    let y2 = b.op("Mul", &[y, y], vec![]);
    let gy2 = b.op("Mul", &[&c.g, &y2], vec![]);
    one_input(b.op("Neg", &[&gy2], vec![]))
}

/// `Pow`, by its base: `g·p·x^(p−1)`, summed over the axes the exponent broadcast `x` along.
pub(super) fn pow(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let p = b.op("CastLike", &[c.x(1), x], vec![]);
    let one = b.scalar_like(1.0, x);
    let pm1 = b.op("Sub", &[&p, &one], vec![]);
    let xp = b.op("Pow", &[x, &pm1], vec![]);
    let d = b.op("Mul", &[&p, &xp], vec![]);
    let gd = b.op("Mul", &[&c.g, &d], vec![]);
    one_input(super::arithmetic::reduce(b, c, &gd, 0))
}

/// `Clip`: `g` where `min ≤ x ≤ max` (each bound when given), 0 elsewhere.
pub(super) fn clip(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let g = &c.g;
    let mut mask: Option<String> = None;
    for (i, op) in [(1, "GreaterOrEqual"), (2, "LessOrEqual")] {
        if !c.x(i).is_empty() {
            let m = b.op(op, &[c.x(0), c.x(i)], vec![]);
            mask = Some(match mask {
                Some(prev) => b.op("And", &[&prev, &m], vec![]),
                None => m,
            });
        }
    }
    match mask {
        None => one_input(g.clone()),
        Some(m) => {
            let gz = b.scalar_like(0.0, g);
            one_input(b.op("Where", &[&m, g, &gz], vec![]))
        }
    }
}
