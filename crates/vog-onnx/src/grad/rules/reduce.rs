//! Rules for reductions: `ReduceSum` and `ReduceMean`, with axes from the attribute (older
//! opsets) or the second input, either `keepdims`, and `noop_with_empty_axes`. The gradient is
//! expanded back over the reduced axes (divided by the count for a mean). Further reductions
//! (`ReduceMax`, `ReduceL2`, …) belong here.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_i, attr_ints};

/// `ReduceSum`, `ReduceMean`.
pub(super) fn sum_or_mean(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g, opset) = (c.n, &c.g, c.opset);
    let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
    let noop = attr_i(n, "noop_with_empty_axes").unwrap_or(0) != 0;
    let axes_from_input = (n.op_type == "ReduceSum" && opset >= 13) || opset >= 18;
    let axes: Option<String> = if axes_from_input {
        (!c.x(1).is_empty()).then(|| c.x(1).to_string())
    } else {
        attr_ints(n, "axes")
            .filter(|a| !a.is_empty())
            .map(|a| b.i64s(&a))
    };
    if axes.is_none() && noop {
        return one_input(g.clone());
    }
    let g2 = match (&axes, keep) {
        (Some(a), false) => b.op("Unsqueeze", &[g, a], vec![]),
        _ => g.clone(),
    };
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
