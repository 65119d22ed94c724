//! Rules for reductions: `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceL1`,
//! `ReduceL2`, `ReduceSumSquare`, `ReduceLogSumExp` and `ReduceProd`, with axes from the attribute (older
//! opsets) or the second input, either `keepdims`, and `noop_with_empty_axes`. The gradient (and
//! the output, where the derivative needs it) is brought back over the reduced axes; `ReduceMax`
//! and `ReduceMin` share it equally among tied extremes.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_i, attr_ints, make_i, make_ints};

/// A reduction's axes (`None`: all, or none with `noop_with_empty_axes`), whether it keeps the
/// reduced dims, and whether it is the no-op `noop_with_empty_axes` makes of empty axes.
fn reduction(b: &mut Builder<'_>, c: &Ctx<'_>) -> (Option<String>, bool, bool) {
    let n = c.n;
    let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
    let noop = attr_i(n, "noop_with_empty_axes").unwrap_or(0) != 0;
    let axes_from_input = (n.op_type == "ReduceSum" && c.opset >= 13) || c.opset >= 18;
    let axes: Option<String> = if axes_from_input {
        (!c.x(1).is_empty()).then(|| c.x(1).to_string())
    } else {
        attr_ints(n, "axes")
            .filter(|a| !a.is_empty())
            .map(|a| b.i64s(&a))
    };
    let is_noop = axes.is_none() && noop;
    (axes, keep, is_noop)
}

/// `t` (shaped like the reduction's output) with the reduced dims put back as 1s, so that it
/// broadcasts against the input.
fn kept(b: &mut Builder<'_>, t: &str, axes: &Option<String>, keep: bool) -> String {
    match (axes, keep) {
        (Some(a), false) => b.op("Unsqueeze", &[t, a], vec![]),
        _ => t.to_string(),
    }
}

/// `ReduceSum`, `ReduceMean`.
pub(super) fn sum_or_mean(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    let (axes, keep, noop) = reduction(b, c);
    if noop {
        return one_input(g.clone());
    }
    let g2 = kept(b, g, &axes, keep);
    let sx = b.shape(c.x(0));
    let e = b.op("Expand", &[&g2, &sx], vec![]);
    if n.op_type == "ReduceMean" {
        let nx = b.size(c.x(0));
        let ny = b.size(c.y());
        let cnt = b.op("Div", &[&nx, &ny], vec![]);
        let cnt = b.op("CastLike", &[&cnt, g], vec![]);
        one_input(b.op("Div", &[&e, &cnt], vec![]))
    } else {
        one_input(e)
    }
}

/// `ReduceMax`, `ReduceMin`: `g` to the extreme of each reduced group, shared equally among ties.
pub(super) fn max_or_min(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, x) = (&c.g, c.x(0));
    let (axes, keep, noop) = reduction(b, c);
    if noop {
        return one_input(g.clone());
    }
    let y = kept(b, c.y(), &axes, keep);
    let g2 = kept(b, g, &axes, keep);
    let eq = b.op("Equal", &[x, &y], vec![]);
    let mask = b.op("CastLike", &[&eq, g], vec![]);
    let ties = match &axes {
        Some(a) => b.op("ReduceSum", &[&mask, a], vec![make_i("keepdims", 1)]),
        None => b.op("ReduceSum", &[&mask], vec![make_i("keepdims", 1)]),
    };
    let share = b.op("Div", &[&g2, &ties], vec![]);
    one_input(b.op("Mul", &[&mask, &share], vec![]))
}

/// `ReduceL1` (`g·sign x`), `ReduceL2` (`g·x/y`), `ReduceSumSquare` (`2g·x`) and
/// `ReduceLogSumExp` (`g·e^{x−y}`).
pub(super) fn norms(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, x) = (&c.g, c.x(0));
    let (axes, keep, noop) = reduction(b, c);
    let g2 = if noop {
        g.clone()
    } else {
        kept(b, g, &axes, keep)
    };
    let y = if noop {
        c.y().to_string()
    } else {
        kept(b, c.y(), &axes, keep)
    };
    let d = match c.n.op_type.as_str() {
        "ReduceL1" => b.op("Sign", &[x], vec![]),
        "ReduceL2" => b.op("Div", &[x, &y], vec![]),
        "ReduceSumSquare" => {
            let two = b.scalar_like(2.0, x);
            b.op("Mul", &[x, &two], vec![])
        }
        _ => {
            let diff = b.op("Sub", &[x, &y], vec![]);
            b.op("Exp", &[&diff], vec![])
        }
    };
    one_input(b.op("Mul", &[&g2, &d], vec![]))
}

/// `ReduceProd`: each element's derivative is the product of the other elements of its group,
/// computed without dividing by zero: with no zero in the group it is `p / x` (`p` the product
/// of the group's non-zero elements), with exactly one zero it is `p` at the zero and 0
/// elsewhere, with two or more zeros it is 0.
pub(super) fn prod(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g, x) = (c.n, &c.g, c.x(0));
    let (axes, keep, noop) = reduction(b, c);
    if noop {
        return one_input(g.clone());
    }
    let g2 = kept(b, g, &axes, keep);
    let zero = b.scalar_like(0.0, x);
    let one = b.scalar_like(1.0, x);
    let is_zero = b.op("Equal", &[x, &zero], vec![]);
    let safe = b.op("Where", &[&is_zero, &one, x], vec![]);
    let keepdims = make_i("keepdims", 1);
    // The product of the non-zero elements and the number of zeros, per group (dims kept).
    let (p, zeros) = {
        let mask = b.op("CastLike", &[&is_zero, x], vec![]);
        let count = match &axes {
            Some(a) => b.op("ReduceSum", &[&mask, a], vec![keepdims.clone()]),
            None => b.op("ReduceSum", &[&mask], vec![keepdims.clone()]),
        };
        let p = if c.opset >= 18 {
            match &axes {
                Some(a) => b.op("ReduceProd", &[&safe, a], vec![keepdims]),
                None => b.op("ReduceProd", &[&safe], vec![keepdims]),
            }
        } else {
            let mut attrs = vec![keepdims];
            if let Some(a) = attr_ints(n, "axes").filter(|a| !a.is_empty()) {
                attrs.push(make_ints("axes", a));
            }
            b.op("ReduceProd", &[&safe], attrs)
        };
        (p, count)
    };
    let none = b.op("Equal", &[&zeros, &zero], vec![]);
    let single = b.op("Equal", &[&zeros, &one], vec![]);
    let others = b.op("Div", &[&p, &safe], vec![]);
    let at_nonzero = b.op("Where", &[&none, &others, &zero], vec![]);
    let at_zero = b.op("Where", &[&single, &p, &zero], vec![]);
    let d = b.op("Where", &[&is_zero, &at_zero, &at_nonzero], vec![]);
    one_input(b.op("Mul", &[&g2, &d], vec![]))
}
