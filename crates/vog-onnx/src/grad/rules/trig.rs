//! Rules for the trigonometric and hyperbolic functions and their inverses: `Sin`, `Cos`, `Tan`,
//! `Asin`, `Acos`, `Atan`, `Sinh`, `Cosh`, `Asinh`, `Acosh`, `Atanh`. Each multiplies the
//! incoming gradient by its derivative; the inverse functions divide by it.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;

/// `g·op(x)` for a derivative that is another standard op of `x` (`Sin` → `Cos`, …), negated
/// with `negate`.
fn by_op(b: &mut Builder<'_>, c: &Ctx<'_>, op: &str, negate: bool) -> Grads {
    let d = b.op(op, &[c.x(0)], vec![]);
    let gd = b.op("Mul", &[&c.g, &d], vec![]);
    one_input(if negate {
        b.op("Neg", &[&gd], vec![])
    } else {
        gd
    })
}

/// `g / sqrt(±(1 − x²))` or `g / sqrt(x² ± 1)`: the inverse functions' derivatives. `square_first`
/// puts `x²` first (`x² + k` for `Asinh`, `x² − 1` for `Acosh`), else `1 − x²`.
fn over_root(b: &mut Builder<'_>, c: &Ctx<'_>, square_first: Option<f32>, negate: bool) -> Grads {
    let x = c.x(0);
    let x2 = b.op("Mul", &[x, x], vec![]);
    let inner = match square_first {
        Some(k) => {
            let k = b.scalar_like(k, x);
            b.op("Add", &[&x2, &k], vec![])
        }
        None => {
            let one = b.scalar_like(1.0, x);
            b.op("Sub", &[&one, &x2], vec![])
        }
    };
    let root = b.op("Sqrt", &[&inner], vec![]);
    let q = b.op("Div", &[&c.g, &root], vec![]);
    one_input(if negate {
        b.op("Neg", &[&q], vec![])
    } else {
        q
    })
}

/// `Sin`: `g·cos x`.
pub(super) fn sin(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    by_op(b, c, "Cos", false)
}

/// `Cos`: `−g·sin x`.
pub(super) fn cos(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    by_op(b, c, "Sin", true)
}

/// `Sinh`: `g·cosh x`.
pub(super) fn sinh(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    by_op(b, c, "Cosh", false)
}

/// `Cosh`: `g·sinh x`.
pub(super) fn cosh(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    by_op(b, c, "Sinh", false)
}

/// `Tan`: `g·(1 + y²)`.
pub(super) fn tan(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let y = c.y();
    let y2 = b.op("Mul", &[y, y], vec![]);
    let one = b.scalar_like(1.0, y);
    let d = b.op("Add", &[&one, &y2], vec![]);
    one_input(b.op("Mul", &[&c.g, &d], vec![]))
}

/// `Atan`: `g / (1 + x²)`.
pub(super) fn atan(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let x2 = b.op("Mul", &[x, x], vec![]);
    let one = b.scalar_like(1.0, x);
    let d = b.op("Add", &[&one, &x2], vec![]);
    one_input(b.op("Div", &[&c.g, &d], vec![]))
}

/// `Atanh`: `g / (1 − x²)`.
pub(super) fn atanh(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let x = c.x(0);
    let x2 = b.op("Mul", &[x, x], vec![]);
    let one = b.scalar_like(1.0, x);
    let d = b.op("Sub", &[&one, &x2], vec![]);
    one_input(b.op("Div", &[&c.g, &d], vec![]))
}

/// `Asin`: `g / sqrt(1 − x²)`.
pub(super) fn asin(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    over_root(b, c, None, false)
}

/// `Acos`: `−g / sqrt(1 − x²)`.
pub(super) fn acos(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    over_root(b, c, None, true)
}

/// `Asinh`: `g / sqrt(x² + 1)`.
pub(super) fn asinh(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    over_root(b, c, Some(1.0), false)
}

/// `Acosh`: `g / sqrt(x² − 1)`.
pub(super) fn acosh(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    over_root(b, c, Some(-1.0), false)
}
