//! Rules for convolutions, by their data input only (weights are never differentiated): `Conv`,
//! whose input gradient is a convolution with the flipped kernel when the geometry allows and a
//! `ConvTranspose` otherwise (`SAME` padding at any stride included), and `ConvTranspose`, whose
//! input gradient is a `Conv`.

use super::context::{one_input, Ctx, Grads};
use super::geometry::{conv_geometry, explicit_pads, ints_or, overhang};
use crate::grad::builder::Builder;
use crate::graph::{attr, attr_i, attr_s, make_i, make_ints};

/// `Conv`, by its input `X`.
pub(super) fn conv(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    let (kernel, strides, dil) = conv_geometry(b, n).ok_or(())?;
    let group = attr_i(n, "group").unwrap_or(1);
    if !c.need(0) {
        return Err(()); // weight gradients are never needed
    }
    let Some(pads) = explicit_pads(n, &kernel, &strides, &dil) else {
        return same_at_any_stride(b, c, &kernel, &strides, &dil, group);
    };
    let r = kernel.len();
    // A gradient of few channels (the input image's: 1 or 3) is left to ConvTranspose:
    // ONNX Runtime runs convolutions in a blocked layout of 8 or 16 channels, so a
    // convolution producing 1–7 channels would compute mostly padding.
    let few_channels = b
        .consts
        .dims(c.x(1))
        .is_some_and(|d| d.len() > 1 && d[1] * group < 8);
    let direct = group == 1
        && !few_channels
        && strides.iter().all(|&v| v == 1)
        && dil.iter().all(|&v| v == 1)
        && (0..2 * r).all(|i| pads[i] >= 0 && pads[i] < kernel[i % r]);
    if direct {
        // With stride 1 the input gradient is itself a convolution: of g with the kernel
        // transposed ([C_in, C_out, k…]) and flipped, padded by k − 1 − p. Runtimes run
        // convolutions much faster than transposed ones; the kernel transform depends on
        // initializers only, so it is folded once when the session starts.
        let mut perm = vec![1i64, 0];
        perm.extend(2..2 + r as i64);
        let wt = b.op("Transpose", &[c.x(1)], vec![make_ints("perm", perm)]);
        let starts = b.i64s(&vec![-1; r]);
        let ends = b.i64s(&vec![i64::MIN; r]);
        let axes = b.i64s(&(2..2 + r as i64).collect::<Vec<_>>());
        let steps = b.i64s(&vec![-1; r]);
        let wf = b.op("Slice", &[&wt, &starts, &ends, &axes, &steps], vec![]);
        let back: Vec<i64> = (0..2 * r).map(|i| kernel[i % r] - 1 - pads[i]).collect();
        return one_input(b.op(
            "Conv",
            &[g, &wf],
            vec![make_ints("pads", back), make_ints("kernel_shape", kernel)],
        ));
    }
    let t = b.op(
        "ConvTranspose",
        &[g, c.x(1)],
        vec![
            make_i("group", group),
            make_ints("strides", strides),
            make_ints("dilations", dil),
            make_ints("pads", Builder::begin_pads(&pads)),
        ],
    );
    Ok(vec![Some(b.fit_spatial_to(&t, c.x(0)))])
}

/// `Conv` with `auto_pad = SAME_UPPER | SAME_LOWER` at a stride above 1, by its input `X`. The
/// padding then depends on the input's size: in total `max((⌈i/s⌉ − 1)·s + (k − 1)·d + 1 − i, 0)`
/// per axis, half of it (rounded down for `SAME_UPPER`, up for `SAME_LOWER`) before the input.
/// So the transposed convolution runs unpadded, over the padded input's coordinates, and the
/// gradient is cut out of it from the begin padding, computed in the graph.
fn same_at_any_stride(
    b: &mut Builder<'_>,
    c: &Ctx<'_>,
    kernel: &[i64],
    strides: &[i64],
    dil: &[i64],
    group: i64,
) -> Grads {
    let lower = match attr_s(c.n, "auto_pad").as_deref() {
        Some("SAME_UPPER") => false,
        Some("SAME_LOWER") => true,
        _ => return Err(()),
    };
    let r = kernel.len();
    let t = b.op(
        "ConvTranspose",
        &[&c.g, c.x(1)],
        vec![
            make_i("group", group),
            make_ints("strides", strides.to_vec()),
            make_ints("dilations", dil.to_vec()),
            make_ints("pads", vec![0; 2 * r]),
        ],
    );
    // The output is ⌈i/s⌉ long: its windows overhang the input by the total SAME padding.
    let i = b.spatial(c.x(0));
    let total = overhang(b, c.y(), [kernel, strides, dil], &i);
    let two = b.i64s(&vec![2; r]);
    let half = b.op("Div", &[&total, &two], vec![]);
    let begin = if lower {
        b.op("Sub", &[&total, &half], vec![])
    } else {
        half
    };
    let ends = b.i64s(&vec![i64::MAX; r]);
    let axes = b.i64s(&(2..2 + r as i64).collect::<Vec<_>>());
    let cut = b.op("Slice", &[&t, &begin, &ends, &axes], vec![]);
    Ok(vec![Some(b.fit_spatial_to(&cut, c.x(0)))])
}

/// `ConvTranspose` with explicit pads and no `output_shape`, by its input `X`.
pub(super) fn conv_transpose(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let n = c.n;
    if attr(n, "output_shape").is_some()
        || !matches!(
            attr_s(n, "auto_pad").as_deref(),
            None | Some("NOTSET") | Some("")
        )
    {
        return Err(());
    }
    let (kernel, strides, dil) = conv_geometry(b, n).ok_or(())?;
    let r = kernel.len();
    let pads = ints_or(n, "pads", vec![0; 2 * r]);
    let group = attr_i(n, "group").unwrap_or(1);
    if !c.need(0) {
        return Err(());
    }
    one_input(b.op(
        "Conv",
        &[&c.g, c.x(1)],
        vec![
            make_i("group", group),
            make_ints("strides", strides),
            make_ints("dilations", dil),
            make_ints("pads", pads),
        ],
    ))
}
