//! Rules for broadcasting arithmetic: `Add`, `Sub`, `Mul`, `Div`, the variadic `Sum` and `Mean`,
//! and `Where` (by its two value inputs). Any operand may have been broadcast, so every input's
//! gradient is summed back to its own shape with [`Builder::unb`].

use super::context::{Ctx, Grads};
use crate::grad::builder::Builder;

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
        out[0] = Some(b.unb(&t, c.x(0)));
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
        out[1] = Some(b.unb(&t, c.x(1)));
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
        .map(|i| c.need(i).then(|| b.unb(&t, c.x(i))))
        .collect())
}

/// `Where`: each value input gets `g` where it was chosen, 0 elsewhere.
pub(super) fn where_(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let g = &c.g;
    let gz = b.scalar_like(0.0, g);
    let mut out = vec![None, None, None];
    if c.need(1) {
        let w = b.op("Where", &[c.x(0), g, &gz], vec![]);
        out[1] = Some(b.unb(&w, c.x(1)));
    }
    if c.need(2) {
        let w = b.op("Where", &[c.x(0), &gz, g], vec![]);
        out[2] = Some(b.unb(&w, c.x(2)));
    }
    Ok(out)
}
