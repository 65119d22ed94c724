//! Rules for pooling: `MaxPool` (vog's [`MAX_POOL_GRAD`] kernel when allowed, else the pool's
//! argmax indices scattered back, by `MaxUnpool` when the windows are disjoint), `AveragePool`
//! (a transposed convolution with a ones kernel, divided by each window's count) and
//! `GlobalAveragePool`.

use super::context::{one_input, Ctx, Grads};
use super::geometry::{explicit_pads, ints_or, max_unpool_attrs, non_overlapping_pool};
use crate::grad::builder::Builder;
use crate::grad::names::{MAX_POOL_GRAD, VOG_DOMAIN};
use crate::graph::{attr_i, attr_ints, make_i, make_ints, make_t, tensor_f32};
use crate::proto::NodeProto;

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
    if non_overlapping_pool(n) {
        // Windows do not overlap, so every index is hit at most once: MaxUnpool places
        // each gradient at its maximum in one kernel (the general path scatter-adds).
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
    b.used_vog_domain = true;
    // A ReLU feeding only this pool: its backward (a mask on the same elements)
    // is done in the same pass, and the ReLU's rule passes the result through.
    let relu = b.lone_relu_outputs.contains(x);
    let out = b.fresh(MAX_POOL_GRAD);
    let name = format!("vog_grad/{MAX_POOL_GRAD}_{}", b.nodes.len());
    b.nodes.push(NodeProto {
        input: vec![x.to_string(), c.g.clone()],
        output: vec![out.clone()],
        name,
        op_type: MAX_POOL_GRAD.into(),
        domain: VOG_DOMAIN.into(),
        attribute: vec![
            make_ints("kernel_shape", kernel),
            make_ints("strides", strides),
            make_ints("pads", pads),
            make_ints("dilations", dil),
            make_i("relu", i64::from(relu)),
        ],
        ..Default::default()
    });
    if relu {
        b.relu_applied.insert(out.clone());
    }
    Ok(Some(out))
}

/// `AveragePool` without `ceil_mode` or dilations.
pub(super) fn average_pool(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    if attr_i(n, "ceil_mode").unwrap_or(0) != 0
        || attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1))
    {
        return Err(());
    }
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
    let g2 = if include_pad {
        let k = b.scalar_like(1.0 / count as f32, g);
        b.op("Mul", &[&g2, &k], vec![])
    } else {
        // Divisor per window: how many real (unpadded) inputs it covers.
        let sx = b.spatial(c.x(0));
        let one1 = b.i64s(&[1, 1]);
        let os = b.op("Concat", &[&one1, &sx], vec![make_i("axis", 0)]);
        let ones = b.op(
            "ConstantOfShape",
            &[&os],
            vec![make_t("value", tensor_f32("", vec![1], vec![1.0]))],
        );
        let ones = b.op("CastLike", &[&ones, g], vec![]);
        let counts = b.op("Conv", &[&ones, &ones_k], attrs());
        b.op("Div", &[&g2, &counts], vec![])
    };
    let d = b.op("ConvTranspose", &[&g2, &ones_k], t_attrs);
    // Back to [N, C, …]: fit to the input's size, then reshape.
    let d = b.fit_spatial_to(&d, c.x(0));
    one_input(b.reshape_like(&d, c.x(0)))
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
