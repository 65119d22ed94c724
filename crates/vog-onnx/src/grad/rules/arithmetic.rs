//! Rules for broadcasting arithmetic: `Add`, `Sub`, `Mul`, `Div`, the variadic `Sum` and `Mean`,
//! `Where` (by its two value inputs), `Max`/`Min` and `PRelu`. Any operand may have been broadcast, so every input's
//! gradient is summed back to its own shape with [`Builder::unb`].

use super::context::{Ctx, Grads};
use crate::grad::builder::Builder;

/// `t`, shaped like the node's output, summed back to the shape of input `i`: nothing to do when
/// input `i` is known to have the output's shape, or when every other input is a constant of size
/// 1 whose rank is at most input `i`'s (a scalar multiplier, an epsilon: the output then has input
/// `i`'s shape).
pub(super) fn reduce(b: &mut Builder<'_>, c: &Ctx<'_>, t: &str, i: usize) -> String {
    // Known to have the output's shape (a residual connection's two paths): nothing to sum, and
    // no `Shape` of the operand at run time.
    if b.shapes.same(c.x(i), c.y()) {
        return t.to_string();
    }
    let rank = b.ranks.get(c.x(i)).copied();
    let others_scalar = (0..c.n.input.len()).filter(|&j| j != i).all(|j| {
        b.consts
            .dims(c.x(j))
            .is_some_and(|d| d.iter().all(|&k| k == 1) && rank.is_some_and(|r| d.len() <= r))
    });
    if others_scalar {
        t.to_string()
    } else {
        b.unb_like(t, c.y(), c.x(i))
    }
}

/// `Add`, `Sub`, `Mul`, `Div`: both operands, each summed over its broadcast axes.
pub(super) fn binary(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, op) = (&c.g, c.n.op_type.as_str());
    let mut out = vec![None, None];
    if c.need(0) {
        let t = match op {
            "Mul" => b.op("Mul", &[g, c.x(1)], vec![]),
            "Div" => b.op("Div", &[g, c.x(1)], vec![]),
            _ => g.clone(),
        };
        out[0] = Some(reduce(b, c, &t, 0));
    }
    if c.need(1) {
        let t = match op {
            "Add" => g.clone(),
            "Sub" => b.op("Neg", &[g], vec![]),
            "Mul" => b.op("Mul", &[g, c.x(0)], vec![]),
            _ => {
                let gy_ = b.op("Mul", &[g, c.y()], vec![]);
                let q = b.op("Div", &[&gy_, c.x(1)], vec![]);
                b.op("Neg", &[&q], vec![])
            }
        };
        out[1] = Some(reduce(b, c, &t, 1));
    }
    Ok(out)
}

/// `Sum`, `Mean`: every input gets `g` (over the input count for `Mean`).
pub(super) fn variadic(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, n) = (&c.g, c.n);
    let t = if n.op_type == "Mean" {
        let k = b.scalar_like(1.0 / n.input.len() as f32, g);
        b.op("Mul", &[g, &k], vec![])
    } else {
        g.clone()
    };
    Ok((0..n.input.len())
        .map(|i| c.need(i).then(|| reduce(b, c, &t, i)))
        .collect())
}

/// `Where`: each value input gets `g` where it was chosen, 0 elsewhere.
pub(super) fn where_(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let g = &c.g;
    let gz = b.scalar_like(0.0, g);
    let mut out = vec![None, None, None];
    if c.need(1) {
        let w = b.op("Where", &[c.x(0), g, &gz], vec![]);
        out[1] = Some(reduce(b, c, &w, 1));
    }
    if c.need(2) {
        let w = b.op("Where", &[c.x(0), &gz, g], vec![]);
        out[2] = Some(reduce(b, c, &w, 2));
    }
    Ok(out)
}

/// `Max`, `Min` (variadic, broadcasting): each input gets `g` where it is the chosen value; where
/// several inputs tie for it, they share `g` equally (as `torch.maximum` and `jax.numpy.maximum`
/// do).
pub(super) fn max_or_min(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, n, y) = (&c.g, c.n, c.y());
    let inputs = n.input.len();
    if inputs == 1 {
        return Ok(vec![c.need(0).then(|| g.clone())]);
    }
    // [xᵢ = y] for every input, as the gradient's type (each broadcast to y's shape by Equal).
    let chosen: Vec<String> = (0..inputs)
        .map(|i| {
            let eq = b.op("Equal", &[c.x(i), y], vec![]);
            b.op("CastLike", &[&eq, g], vec![])
        })
        .collect();
    let ties = b.sum(chosen.clone());
    let share = b.op("Div", &[g, &ties], vec![]);
    Ok((0..inputs)
        .map(|i| {
            c.need(i).then(|| {
                let t = b.op("Mul", &[&share, &chosen[i]], vec![]);
                reduce(b, c, &t, i)
            })
        })
        .collect())
}

/// `PRelu`: `g` where `x > 0`, `slope·g` elsewhere; the slope's gradient `g·x` where `x ≤ 0`,
/// summed over its broadcast axes.
pub(super) fn prelu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, x, slope) = (&c.g, c.x(0), c.x(1));
    let zero = b.scalar_like(0.0, x);
    let pos = b.op("Greater", &[x, &zero], vec![]);
    let mut out = vec![None, None];
    if c.need(0) {
        let gs = b.op("Mul", &[g, slope], vec![]);
        out[0] = Some(b.op("Where", &[&pos, g, &gs], vec![]));
    }
    if c.need(1) {
        let gx = b.op("Mul", &[g, x], vec![]);
        let gz = b.scalar_like(0.0, g);
        let w = b.op("Where", &[&pos, &gz, &gx], vec![]);
        out[1] = Some(b.unb_like(&w, c.y(), slope));
    }
    Ok(out)
}
