//! `Resize` (opset 11 and later): every mode (`nearest`, `linear`, `cubic`) and coordinate
//! transformation is linear in the input and separable over the spatial axes, `y = R_H · x · R_Wᵀ`
//! per image, so the input gradient is `R_Hᵀ · g · R_W`. Each `Rᵀ` is obtained by resizing the
//! rows of an identity matrix along that one axis with the node's own attributes and scale (or
//! size): the rule never re-implements a coordinate mode, so it follows ONNX Runtime's for all of
//! them. Memory is `in × out` per axis.

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_i, attr_ints, attr_s, make_i};

/// `Resize` of a 4-D `[N, C, H, W]` input along `H` and `W`.
pub(super) fn resize(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let n = c.n;
    let mode = attr_s(n, "coordinate_transformation_mode");
    if attr_i(n, "antialias").unwrap_or(0) != 0
        || attr_ints(n, "axes").is_some()
        || mode.as_deref() == Some("tf_crop_and_resize")
        || attr_s(n, "keep_aspect_ratio_policy").is_some_and(|p| p != "stretch")
    {
        return Err(());
    }
    let x = c.x(0);
    if b.ranks.get(x).is_some_and(|&r| r != 4) {
        return Err(());
    }
    let (scales, sizes) = (c.x(2), c.x(3));
    let by_sizes = !sizes.is_empty();
    if !by_sizes {
        // Batch and channels are never resized.
        if let Some(s) = b.consts.floats(scales) {
            if s.len() != 4 || s[0] != 1.0 || s[1] != 1.0 {
                return Err(());
            }
        }
    }
    let mh = transposed_axis_matrix(b, c, 2, by_sizes);
    let mw = transposed_axis_matrix(b, c, 3, by_sizes);
    // gₓ = R_Hᵀ · g · R_W, per image: [H, OH] · [N, C, OH, OW] · [OW, W].
    let left = b.op("MatMul", &[&mh, &c.g], vec![]);
    let rw = b.op("Transpose", &[&mw], vec![]);
    one_input(b.op("MatMul", &[&left, &rw], vec![]))
}

/// `Rᵀ` of spatial axis `axis` (2 or 3), shaped `[in, out]`: row `i` is the resized one-hot `eᵢ`.
fn transposed_axis_matrix(b: &mut Builder<'_>, c: &Ctx<'_>, axis: i64, by_sizes: bool) -> String {
    let x = c.x(0);
    let sx = b.shape(x);
    let at = b.i64s(&[axis]);
    let len = b.op("Gather", &[&sx, &at], vec![make_i("axis", 0)]);
    // An identity [L, L] in the gradient's type, then [L, 1, L, 1] (axis 2) or [L, 1, 1, L].
    let square = b.op("Concat", &[&len, &len], vec![make_i("axis", 0)]);
    let zeros = b.op("ConstantOfShape", &[&square], vec![]);
    let eye = b.op("EyeLike", &[&zeros], vec![]);
    let eye = b.op("CastLike", &[&eye, &c.g], vec![]);
    let ones = |b: &mut Builder<'_>, k: usize| b.i64s(&vec![1; k]);
    let (before, after) = if axis == 2 { (1, 1) } else { (2, 0) };
    let pre = ones(b, before);
    let post = ones(b, after);
    let shape = b.op(
        "Concat",
        &[&len, &pre, &len, &post],
        vec![make_i("axis", 0)],
    );
    let rows = b.op("Reshape", &[&eye, &shape], vec![]);
    // The node's own scale or size for this axis; 1 (or the one-hot count and 1) elsewhere.
    let (scales, sizes) = if by_sizes {
        let all = c.x(3);
        let out = b.op("Gather", &[all, &at], vec![make_i("axis", 0)]);
        let size = b.op(
            "Concat",
            &[&len, &pre, &out, &post],
            vec![make_i("axis", 0)],
        );
        (String::new(), size)
    } else {
        let all = c.x(2);
        let s = b.op("Gather", &[all, &at], vec![make_i("axis", 0)]);
        let one_f =
            |b: &mut Builder<'_>, k: usize| b.floats_like(vec![k as i64], vec![1.0; k], all);
        let lead = one_f(b, 1 + before);
        let tail = one_f(b, after);
        let scale = if after == 0 {
            b.op("Concat", &[&lead, &s], vec![make_i("axis", 0)])
        } else {
            b.op("Concat", &[&lead, &s, &tail], vec![make_i("axis", 0)])
        };
        (scale, String::new())
    };
    let roi = c.x(1).to_string();
    let resized = b.op(
        "Resize",
        &[&rows, &roi, &scales, &sizes],
        c.n.attribute.clone(),
    );
    let rest = b.i64s(&[-1]);
    let flat = b.op("Concat", &[&len, &rest], vec![make_i("axis", 0)]);
    b.op("Reshape", &[&resized, &flat], vec![])
}
