//! Rules for pooling: `MaxPool` (vog's [`MAX_POOL_GRAD`] kernel when allowed, else the pool's
//! argmax indices scattered back, by `MaxUnpool` when the windows are disjoint), `AveragePool`
//! (a transposed convolution with a ones kernel, divided by each window's count) and
//! `GlobalAveragePool`.

use super::context::{one_input, Ctx, Grads};
use super::geometry::{explicit_pads, ints_or, max_unpool_attrs, non_overlapping_pool, overhang};
use crate::grad::builder::Builder;
use crate::grad::names::MAX_POOL_GRAD;
use crate::graph::{attr_i, attr_ints, make_i, make_ints, make_t, tensor_f32};

/// `MaxPool` in row-major storage order.
pub(super) fn max_pool(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    if attr_i(n, "storage_order").unwrap_or(0) != 0 {
        return Err(());
    }
    if b.vog_ops {
        if let Some(out) = max_pool_grad_kernel(b, c)? {
            return one_input(out);
        }
    }
    let indices = match n.output.get(1).filter(|o| !o.is_empty()) {
        Some(o) => o.clone(),
        None => {
            let name = b.fresh("maxpool_indices");
            b.extra_outputs.insert(c.idx, name.clone());
            name
        }
    };
    if non_overlapping_pool(n) && attr_i(n, "ceil_mode").unwrap_or(0) == 0 {
        // Windows do not overlap, so every index is hit at most once: MaxUnpool places
        // each gradient at its maximum in one kernel (the general path scatter-adds). Not with
        // `ceil_mode`: MaxUnpool's output would cover the partial last windows, past the input.
        let sx = b.shape(c.x(0));
        return one_input(b.op("MaxUnpool", &[g, &indices, &sx], max_unpool_attrs(n)));
    }
    one_input(b.scatter_adjoint(g, c.x(0), |_, _| indices))
}

/// A max pool's input gradient as one [`MAX_POOL_GRAD`] node, when its pads can be made
/// explicit (`None` otherwise: the standard-op path takes over).
fn max_pool_grad_kernel(
    b: &mut Builder<'_>,
    c: &Ctx<'_>,
) -> std::result::Result<Option<String>, ()> {
    let (n, x) = (c.n, c.x(0));
    let kernel = attr_ints(n, "kernel_shape").ok_or(())?;
    let r = kernel.len();
    let strides = ints_or(n, "strides", vec![1; r]);
    let dil = ints_or(n, "dilations", vec![1; r]);
    let Some(pads) = explicit_pads(n, &kernel, &strides, &dil) else {
        return Ok(None);
    };
    // vog's kernel handles 1 to 3 spatial axes (what convolution layers pool over); more (jax2onnx
    // pools a channels-last tensor over 4 axes with windows of 1) take the standard ops.
    if !(1..=3).contains(&r) {
        return Ok(None);
    }
    // A ReLU feeding only this pool: its backward (a mask on the same elements)
    // is done in the same pass, and the ReLU's rule passes the result through.
    let relu = b.lone_relu_outputs.contains(x);
    let out = b.vog_op(
        MAX_POOL_GRAD,
        &[x, &c.g],
        vec![
            make_ints("kernel_shape", kernel),
            make_ints("strides", strides),
            make_ints("pads", pads),
            make_ints("dilations", dil),
            make_i("relu", i64::from(relu)),
        ],
    );
    if relu {
        b.relu_applied.insert(out.clone());
    }
    Ok(Some(out))
}

/// `AveragePool` without dilations: each window's gradient spread evenly over the inputs it
/// averaged (its divisor counts the explicit padding with `count_include_pad`, never the extra
/// windows `ceil_mode` adds past the end).
pub(super) fn average_pool(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    if attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
        return Err(());
    }
    let ceil = attr_i(n, "ceil_mode").unwrap_or(0) != 0;
    let kernel = attr_ints(n, "kernel_shape").ok_or(())?;
    let r = kernel.len();
    let strides = ints_or(n, "strides", vec![1; r]);
    let pads = explicit_pads(n, &kernel, &strides, &vec![1; r]).ok_or(())?;
    let include_pad = attr_i(n, "count_include_pad").unwrap_or(0) != 0;
    // g [N, C, o…] → [N·C, 1, o…]
    let sg = b.spatial(g);
    let lead = b.i64s(&[-1, 1]);
    let shape = b.op("Concat", &[&lead, &sg], vec![make_i("axis", 0)]);
    let g2 = b.op("Reshape", &[g, &shape], vec![]);
    let mut kdims = vec![1, 1];
    kdims.extend(&kernel);
    let count: usize = kernel.iter().product::<i64>() as usize;
    let ones_k = b.floats_like(kdims, vec![1.0; count], g);
    let attrs = || {
        vec![
            make_ints("strides", strides.clone()),
            make_ints("pads", pads.clone()),
        ]
    };
    let t_attrs = vec![
        make_ints("strides", strides.clone()),
        make_ints("pads", Builder::begin_pads(&pads)),
    ];
    let g2 = if ceil {
        let counts = ceil_divisors(b, c, &kernel, &strides, &pads, include_pad, &ones_k);
        b.op("Div", &[&g2, &counts], vec![])
    } else if include_pad {
        let k = b.scalar_like(1.0 / count as f32, g);
        b.op("Mul", &[&g2, &k], vec![])
    } else {
        // Divisor per window: how many real (unpadded) inputs it covers.
        let sx = b.spatial(c.x(0));
        let ones = ones_plane(b, &sx, g);
        let counts = b.op("Conv", &[&ones, &ones_k], attrs());
        b.op("Div", &[&g2, &counts], vec![])
    };
    let d = b.op("ConvTranspose", &[&g2, &ones_k], t_attrs);
    // Back to [N, C, …]: fit to the input's size, then reshape.
    let d = b.fit_spatial_to(&d, c.x(0));
    one_input(b.reshape_like(&d, c.x(0)))
}

/// Ones shaped `[1, 1, s…]` for spatial dims `s`, in the type of `like`: one plane of an example,
/// whose windowed sums count the inputs a pool's windows cover.
fn ones_plane(b: &mut Builder<'_>, spatial: &str, like: &str) -> String {
    let one1 = b.i64s(&[1, 1]);
    let os = b.op("Concat", &[&one1, spatial], vec![make_i("axis", 0)]);
    let ones = b.op(
        "ConstantOfShape",
        &[&os],
        vec![make_t("value", tensor_f32("", vec![1], vec![1.0]))],
    );
    b.op("CastLike", &[&ones, like], vec![])
}

/// The divisor of every window of a `ceil_mode` average pool, shaped `[1, 1, o…]`: how many
/// inputs it averaged, counting explicit padding with `include_pad` but never the extra end
/// padding that the last, partial windows reach into (ONNX Runtime's and PyTorch's rule). The
/// extra padding depends on the input's size, so it is computed in the graph: ones shaped like an
/// example, padded (explicit pads with 1 or 0, the extra with 0), summed per window.
fn ceil_divisors(
    b: &mut Builder<'_>,
    c: &Ctx<'_>,
    kernel: &[i64],
    strides: &[i64],
    pads: &[i64],
    include_pad: bool,
    ones_k: &str,
) -> String {
    let r = kernel.len();
    let g = &c.g;
    let sx = b.spatial(c.x(0));
    // The extra end padding: how far the windows overhang the explicitly padded input.
    let both: Vec<i64> = (0..r).map(|a| pads[a] + pads[a + r]).collect();
    let both = b.i64s(&both);
    let have = b.op("Add", &[&sx, &both], vec![]);
    let extra = overhang(b, c.y(), [kernel, strides, &vec![1; r]], &have);
    let ones = ones_plane(b, &sx, g);
    let mut explicit = vec![0, 0];
    explicit.extend(&pads[..r]);
    explicit.extend([0, 0]);
    explicit.extend(&pads[r..]);
    let explicit = b.i64s(&explicit);
    let fill = b.scalar_like(if include_pad { 1.0 } else { 0.0 }, g);
    let padded = b.op("Pad", &[&ones, &explicit, &fill], vec![]);
    let lead = b.i64s(&vec![0; r + 2]);
    let zero2 = b.i64s(&[0, 0]);
    let tail = b.op("Concat", &[&zero2, &extra], vec![make_i("axis", 0)]);
    let extra_pads = b.op("Concat", &[&lead, &tail], vec![make_i("axis", 0)]);
    let padded = b.op("Pad", &[&padded, &extra_pads], vec![]);
    b.op(
        "Conv",
        &[&padded, ones_k],
        vec![make_ints("strides", strides.to_vec())],
    )
}

/// `GlobalAveragePool`: `g` over the window size, expanded to the input's shape.
pub(super) fn global_average_pool(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (g, x) = (&c.g, c.x(0));
    let nx = b.size(x);
    let ny = b.size(c.y());
    let cnt = b.op("Div", &[&nx, &ny], vec![]);
    let cnt = b.op("CastLike", &[&cnt, g], vec![]);
    let q = b.op("Div", &[g, &cnt], vec![]);
    let sx = b.shape(x);
    one_input(b.op("Expand", &[&q, &sx], vec![]))
}
