//! Rules for indexed reads and writes: `GatherND` (by its data, any `batch_dims`), `ScatterND`
//! and `ScatterElements` (by their data and their updates, without reduction or adding). A
//! gather's adjoint scatter-adds; a scatter's data gets the gradient except where it was
//! overwritten, its updates read the gradient where they were written. Indices carry no gradient
//! (`stops`). Scatters that multiply or take the maximum or minimum are refused.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_i, attr_s, make_i};

/// `GatherND`: `g` scatter-added back to the positions read (repeated reads add up).
pub(super) fn gather_nd(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let batch_dims = attr_i(c.n, "batch_dims").unwrap_or(0);
    let indices = c.x(1).to_string();
    one_input(b.scatter_adjoint(&c.g, c.x(0), |b, iota| {
        b.op(
            "GatherND",
            &[iota, &indices],
            vec![make_i("batch_dims", batch_dims)],
        )
    }))
}

/// `ScatterND` and `ScatterElements` with `reduction` none or add.
pub(super) fn scatter(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let reduction = attr_s(c.n, "reduction").unwrap_or_else(|| "none".into());
    let elements = c.n.op_type == "ScatterElements";
    let axis = || vec![make_i("axis", attr_i(c.n, "axis").unwrap_or(0))];
    let (g, indices) = (&c.g, c.x(1));
    let mut out = vec![None, None, None];
    if c.need(0) {
        out[0] = Some(match reduction.as_str() {
            "add" => g.clone(),
            // Overwritten positions lose their gradient: write zeros there.
            "none" => {
                let z = b.zeros_like(c.x(2));
                let attrs = if elements { axis() } else { vec![] };
                b.op(&c.n.op_type, &[g, indices, &z], attrs)
            }
            _ => return Err(()),
        });
    }
    if c.need(2) {
        if !matches!(reduction.as_str(), "add" | "none") {
            return Err(());
        }
        out[2] = Some(if elements {
            b.op("GatherElements", &[g, indices], axis())
        } else {
            b.op("GatherND", &[g, indices], vec![])
        });
    }
    Ok(out)
}
