//! Rules for linear algebra: `Gemm` (every combination of `transA`/`transB`, and its bias `C`)
//! and `MatMul` (operands of rank 2 or more, batched and broadcast). Each operand's gradient is
//! a product of the incoming gradient with the other operand, transposed as the forward product
//! requires.

use super::context::{Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_f, attr_i, make_f, make_i, make_ints};

/// `Gemm`: `A`, `B` and `C`, for every combination of `transA` and `transB`.
pub(super) fn gemm(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    let alpha = attr_f(n, "alpha").unwrap_or(1.0);
    let beta = attr_f(n, "beta").unwrap_or(1.0);
    let (ta, tb) = (
        attr_i(n, "transA").unwrap_or(0),
        attr_i(n, "transB").unwrap_or(0),
    );
    let gemm = |b: &mut Builder<'_>, p: &str, q: &str, t1: i64, t2: i64| {
        b.op(
            "Gemm",
            &[p, q],
            vec![
                make_f("alpha", alpha),
                make_i("transA", t1),
                make_i("transB", t2),
            ],
        )
    };
    let mut out = vec![None, None, None];
    if c.need(0) {
        out[0] = Some(match (ta, tb) {
            (0, 0) => gemm(b, g, c.x(1), 0, 1),
            (0, _) => gemm(b, g, c.x(1), 0, 0),
            (_, 0) => gemm(b, c.x(1), g, 0, 1),
            _ => gemm(b, c.x(1), g, 1, 1),
        });
    }
    if c.need(1) {
        out[1] = Some(match (ta, tb) {
            (0, 0) => gemm(b, c.x(0), g, 1, 0),
            (0, _) => gemm(b, g, c.x(0), 1, 0),
            (_, 0) => gemm(b, c.x(0), g, 0, 0),
            _ => gemm(b, g, c.x(0), 1, 1),
        });
    }
    if c.need(2) {
        let bt = b.scalar_like(beta, g);
        let gb = b.op("Mul", &[g, &bt], vec![]);
        out[2] = Some(b.unb_like(&gb, c.y(), c.x(2)));
    }
    Ok(out)
}

/// `MatMul`: both operands, summed over the batch axes they were broadcast along. A vector
/// operand is taken as `MatMul` takes it — `[K]` on the left as `[1, K]`, on the right as
/// `[K, 1]` — with `g` given back the axis the product dropped, and its gradient reshaped to the
/// vector at the end.
pub(super) fn matmul(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    // The gradient of each operand transposes the last two axes of the other one, so it needs
    // both ranks.
    let rank = |b: &Builder<'_>, t: &str| b.ranks.get(t).copied().filter(|&r| r >= 1);
    let (ra, rb) = (rank(b, c.x(0)).ok_or(())?, rank(b, c.x(1)).ok_or(())?);
    let unsqueeze = |b: &mut Builder<'_>, t: &str, axis: i64| {
        let axes = b.i64s(&[axis]);
        b.op("Unsqueeze", &[t, &axes], vec![])
    };
    let a = match ra {
        1 => unsqueeze(b, c.x(0), 0),
        _ => c.x(0).to_string(),
    };
    let bm = match rb {
        1 => unsqueeze(b, c.x(1), 1),
        _ => c.x(1).to_string(),
    };
    let mut g = c.g.clone();
    if rb == 1 {
        g = unsqueeze(b, &g, -1);
    }
    if ra == 1 {
        g = unsqueeze(b, &g, -2);
    }
    let swap = |r: usize| {
        let mut p: Vec<i64> = (0..r as i64).collect();
        p.swap(r - 1, r - 2);
        vec![make_ints("perm", p)]
    };
    let mut out = vec![None, None];
    if c.need(0) {
        let bt = b.op("Transpose", &[&bm], swap(rb.max(2)));
        let t = b.op("MatMul", &[&g, &bt], vec![]);
        // Only batch axes broadcast, and only when both operands have them.
        let ga = match (ra, rb) {
            (_, 1 | 2) => t,
            (2.., _) => b.unb_like(&t, c.y(), &a),
            _ => b.unb(&t, &a),
        };
        out[0] = Some(if ra == 1 {
            b.reshape_like(&ga, c.x(0))
        } else {
            ga
        });
    }
    if c.need(1) {
        let at = b.op("Transpose", &[&a], swap(ra.max(2)));
        let t = b.op("MatMul", &[&at, &g], vec![]);
        let gb = match (ra, rb) {
            (1 | 2, _) => t,
            (_, 2..) => b.unb_like(&t, c.y(), &bm),
            _ => b.unb(&t, &bm),
        };
        out[1] = Some(if rb == 1 {
            b.reshape_like(&gb, c.x(1))
        } else {
            gb
        });
    }
    Ok(out)
}
