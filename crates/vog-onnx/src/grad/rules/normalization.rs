//! Rules for ops that normalize along axes: `Softmax` and `LogSoftmax` (from their output),
//! `BatchNormalization` in inference mode (a per-channel scale) and `LayerNormalization` (by its
//! input, recomputing the statistics), `InstanceNormalization` (the same over the spatial axes)
//! and `LpNormalization` (from its output and the norm). Further normalizations belong here.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_f, attr_i, make_i, make_t, tensor_i64};

/// `Softmax`: `y·(g − Σ g·y)`; `LogSoftmax`: `g − exp(y)·Σ g`, both along `axis`.
pub(super) fn softmax(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    if c.opset < 13 {
        return Err(());
    }
    let (g, y) = (&c.g, c.y());
    let axis = attr_i(c.n, "axis").unwrap_or(-1);
    let axes = b.i64s(&[axis]);
    let d = if c.n.op_type == "Softmax" {
        let gy_ = b.op("Mul", &[g, y], vec![]);
        let s = b.op("ReduceSum", &[&gy_, &axes], vec![make_i("keepdims", 1)]);
        let diff = b.op("Sub", &[g, &s], vec![]);
        b.op("Mul", &[y, &diff], vec![])
    } else {
        let s = b.op("ReduceSum", &[g, &axes], vec![make_i("keepdims", 1)]);
        let e = b.op("Exp", &[y], vec![]);
        let es = b.op("Mul", &[&e, &s], vec![]);
        b.op("Sub", &[g, &es], vec![])
    };
    one_input(d)
}

/// `BatchNormalization` in inference mode: `g·scale/√(var + ε)`, per channel.
pub(super) fn batch_norm(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    if attr_i(c.n, "training_mode").unwrap_or(0) != 0 {
        return Err(());
    }
    let g = &c.g;
    let eps = attr_f(c.n, "epsilon").unwrap_or(1e-5);
    let e = b.scalar_like(eps, c.x(4));
    let ve = b.op("Add", &[c.x(4), &e], vec![]);
    let sd = b.op("Sqrt", &[&ve], vec![]);
    let scale = b.op("Div", &[c.x(1), &sd], vec![]);
    let scale = b.op("CastLike", &[&scale, g], vec![]);
    let scale = per_channel(b, &scale, c.x(0));
    one_input(b.op("Mul", &[g, &scale], vec![]))
}

/// A per-channel vector `[C]` reshaped to `[1, C, 1, …]` to broadcast over `x` (`[N, C, …]`).
fn per_channel(b: &mut Builder<'_>, v: &str, x: &str) -> String {
    let sx = b.shape(x);
    let rank = b.shape(&sx);
    let two = b.i64s(&[2]);
    let rest = b.op("Sub", &[&rank, &two], vec![]);
    let ones = b.op(
        "ConstantOfShape",
        &[&rest],
        vec![make_t("value", tensor_i64("", vec![1], vec![1]))],
    );
    let lead = b.i64s(&[1, -1]);
    let shape = b.op("Concat", &[&lead, &ones], vec![make_i("axis", 0)]);
    b.op("Reshape", &[v, &shape], vec![])
}

/// `LayerNormalization`, by its input, over the axes from `axis` on.
pub(super) fn layer_norm(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let axis = attr_i(c.n, "axis").unwrap_or(-1);
    let eps = attr_f(c.n, "epsilon").unwrap_or(1e-5);
    let xs = c.x(0);
    let axes = if axis < 0 {
        b.i64s(&(axis..0).collect::<Vec<_>>())
    } else {
        let sx = b.shape(xs);
        let rank = b.size(&sx);
        let start = b.i64_scalar(axis);
        let step = b.i64_scalar(1);
        b.op("Range", &[&start, &rank, &step], vec![])
    };
    one_input(normalized_backward(b, xs, &c.g, c.x(1), &axes, eps))
}

/// `InstanceNormalization` (`[N, C, …]`, what `GroupNorm` exports to): normalized over the
/// spatial axes per example and channel, then scaled and shifted per channel.
pub(super) fn instance_norm(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let eps = attr_f(c.n, "epsilon").unwrap_or(1e-5);
    let xs = c.x(0);
    let sx = b.shape(xs);
    let rank = b.size(&sx);
    let start = b.i64_scalar(2);
    let step = b.i64_scalar(1);
    let axes = b.op("Range", &[&start, &rank, &step], vec![]);
    let scale = per_channel(b, c.x(1), xs);
    one_input(normalized_backward(b, xs, &c.g, &scale, &axes, eps))
}

/// `GroupNormalization`, by its input: `x` as `[N, G, C/G·…]`, each group normalized like a
/// layer, then the affine per group (opset 18: `scale` has `G` values) or per channel (opset 21:
/// `C` values).
pub(super) fn group_norm(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let groups = attr_i(c.n, "num_groups").ok_or(())?;
    if c.need(1) || c.need(2) {
        return Err(()); // a scale or bias computed from the input (FiLM-like): not differentiated
    }
    let eps = attr_f(c.n, "epsilon").unwrap_or(1e-5);
    let xs = c.x(0);
    let grouped = b.i64s(&[0, groups, -1]);
    let xg = b.op("Reshape", &[xs, &grouped], vec![]);
    let (g, scale) = if c.opset >= 21 {
        let per = per_channel(b, c.x(1), xs);
        let h = b.op("Mul", &[&c.g, &per], vec![]);
        let one = b.scalar_like(1.0, xs);
        (b.op("Reshape", &[&h, &grouped], vec![]), one)
    } else {
        let per_group = b.i64s(&[1, groups, 1]);
        (
            b.op("Reshape", &[&c.g, &grouped], vec![]),
            b.op("Reshape", &[c.x(1), &per_group], vec![]),
        )
    };
    let axes = b.i64s(&[2]);
    let dx = normalized_backward(b, &xg, &g, &scale, &axes, eps);
    one_input(b.reshape_like(&dx, xs))
}

/// The input gradient of `scale·(x − mean) / √(var + ε)` over `axes` (population statistics),
/// given `g`, the gradient of its output: with `x̂` the normalized input, `r = 1/σ` and
/// `h = g·scale`, `r·(h − mean(h) − x̂·mean(h·x̂))`.
fn normalized_backward(
    b: &mut Builder<'_>,
    xs: &str,
    g: &str,
    scale: &str,
    axes: &str,
    eps: f32,
) -> String {
    let red =
        |b: &mut Builder<'_>, t: &str| b.op("ReduceSum", &[t, axes], vec![make_i("keepdims", 1)]);
    let sum_x = red(b, xs);
    let nx = b.size(xs);
    let nr = b.size(&sum_x);
    let cnt = b.op("Div", &[&nx, &nr], vec![]);
    let cnt = b.op("CastLike", &[&cnt, xs], vec![]);
    let mean = |b: &mut Builder<'_>, t: &str| {
        let s = red(b, t);
        b.op("Div", &[&s, &cnt], vec![])
    };
    let mu = b.op("Div", &[&sum_x, &cnt], vec![]);
    let d = b.op("Sub", &[xs, &mu], vec![]);
    let d2 = b.op("Mul", &[&d, &d], vec![]);
    let var = mean(b, &d2);
    let e = b.scalar_like(eps, xs);
    let ve = b.op("Add", &[&var, &e], vec![]);
    let sd = b.op("Sqrt", &[&ve], vec![]);
    let r = b.op("Reciprocal", &[&sd], vec![]);
    let xh = b.op("Mul", &[&d, &r], vec![]);
    let h = b.op("Mul", &[g, scale], vec![]);
    let mh = mean(b, &h);
    let hx = b.op("Mul", &[&h, &xh], vec![]);
    let mhx = mean(b, &hx);
    let t1 = b.op("Sub", &[&h, &mh], vec![]);
    let t2 = b.op("Mul", &[&xh, &mhx], vec![]);
    let t3 = b.op("Sub", &[&t1, &t2], vec![]);
    b.op("Mul", &[&r, &t3], vec![])
}

/// `LpNormalization`: `y = x / ‖x‖_p` along `axis` (p = 1 or 2). With `s = Σ g·y` over the axis,
/// the input gradient is `(g − y·s) / ‖x‖₂` for p = 2 and `(g − sign(x)·s) / ‖x‖₁` for p = 1.
pub(super) fn lp_normalization(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let axis = attr_i(c.n, "axis").unwrap_or(-1);
    let p = attr_i(c.n, "p").unwrap_or(2);
    let axes = b.i64s(&[axis]);
    let x = c.x(0);
    let sum =
        |b: &mut Builder<'_>, t: &str| b.op("ReduceSum", &[t, &axes], vec![make_i("keepdims", 1)]);
    let (norm, direction) = match p {
        2 => {
            let squares = b.op("Mul", &[x, x], vec![]);
            let total = sum(b, &squares);
            (b.op("Sqrt", &[&total], vec![]), c.y().to_string())
        }
        1 => {
            let magnitudes = b.op("Abs", &[x], vec![]);
            (sum(b, &magnitudes), b.op("Sign", &[x], vec![]))
        }
        _ => return Err(()),
    };
    let gy = b.op("Mul", &[&c.g, c.y()], vec![]);
    let s = sum(b, &gy);
    let along = b.op("Mul", &[&direction, &s], vec![]);
    let centred = b.op("Sub", &[&c.g, &along], vec![]);
    one_input(b.op("Div", &[&centred, &norm], vec![]))
}
