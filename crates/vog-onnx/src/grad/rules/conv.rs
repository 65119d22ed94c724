//! Rules for convolutions, by their data input only (weights are never differentiated): `Conv`,
//! whose input gradient is a convolution with the flipped kernel when the geometry allows and a
//! `ConvTranspose` otherwise (`SAME` padding at any stride included) — or vog's
//! [`CONV_INPUT_GRAD`] kernel for gradients of few channels at stride 1 when allowed — and
//! `ConvTranspose`, whose input gradient is a `Conv`.

use super::context::{one_input, Ctx, Grads};
use super::geometry::{conv_geometry, explicit_pads, ints_or, overhang};
use crate::grad::builder::Builder;
use crate::grad::names::CONV_INPUT_GRAD;
use crate::graph::{attr_i, attr_ints, attr_s, make_i, make_ints};

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
    if b.vog_ops && few_channels && group == 1 && r == 2 {
        let unit = |v: &[i64]| v.iter().all(|&x| x == 1);
        let fits = (0..4).all(|i| pads[i] >= 0 && pads[i] < kernel[i % 2]);
        if unit(&strides) && unit(&dil) && fits {
            return one_input(conv_input_grad_kernel(b, c, pads));
        }
    }
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

/// A few-channel input gradient at stride 1 as one [`CONV_INPUT_GRAD`] node: `dY`, the weights
/// and the input's shape in, the gradient at the input's exact size out (no crop or pad).
fn conv_input_grad_kernel(b: &mut Builder<'_>, c: &Ctx<'_>, pads: Vec<i64>) -> String {
    let shape = b.shape(c.x(0));
    b.vog_op(
        CONV_INPUT_GRAD,
        &[&c.g, c.x(1), &shape],
        vec![make_ints("pads", pads)],
    )
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
    let (kernel, strides, dil) = conv_geometry(b, n).ok_or(())?;
    let r = kernel.len();
    let group = attr_i(n, "group").unwrap_or(1);
    if !c.need(0) {
        return Err(());
    }
    let auto_pad = attr_s(n, "auto_pad").unwrap_or_default();
    let output_shape = attr_ints(n, "output_shape");
    if output_shape.is_some() || matches!(auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER") {
        // The output is the full transposed convolution cropped by `begin` and `end` per axis
        // (negative: extended with zeros), so `g` is padded back to the full output by the
        // same amounts and convolved without padding.
        let pads = transposed_crop(b, c, &kernel, &strides, &dil, output_shape, &auto_pad)?;
        let full = b.op("Pad", &[&c.g, &pads], vec![]);
        return one_input(b.op(
            "Conv",
            &[&full, c.x(1)],
            vec![
                make_i("group", group),
                make_ints("strides", strides),
                make_ints("dilations", dil),
                make_ints("pads", vec![0; 2 * r]),
            ],
        ));
    }
    let pads = ints_or(n, "pads", vec![0; 2 * r]);
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

/// The crop of a `ConvTranspose` with `output_shape` or `SAME` padding, as `Pad` amounts for the
/// gradient (two zeros for the batch and channel axes, then the begin and end per spatial axis):
/// `total = s·(i − 1) + output_padding + (k − 1)·d + 1 − output`, with `output = i·s` under
/// `SAME`; `SAME_UPPER` puts the smaller half first, the others the larger (the operator's
/// definition). Computed in the graph from the input's size when `output_shape` is given.
fn transposed_crop(
    b: &mut Builder<'_>,
    c: &Ctx<'_>,
    kernel: &[i64],
    strides: &[i64],
    dil: &[i64],
    output_shape: Option<Vec<i64>>,
    auto_pad: &str,
) -> std::result::Result<String, ()> {
    let r = kernel.len();
    let out_pad = ints_or(c.n, "output_padding", vec![0; r]);
    let span: Vec<i64> = (0..r).map(|a| (kernel[a] - 1) * dil[a] + 1).collect();
    let upper = auto_pad == "SAME_UPPER";
    let Some(shape) = output_shape else {
        // SAME: total = output_padding + span − s, whatever the input's size.
        let total: Vec<i64> = (0..r).map(|a| out_pad[a] + span[a] - strides[a]).collect();
        let begin: Vec<i64> = total.iter().map(|&t| half_first(t, upper)).collect();
        let mut pads = vec![0, 0];
        pads.extend(&begin);
        pads.extend([0, 0]);
        pads.extend(total.iter().zip(&begin).map(|(t, b0)| t - b0));
        return Ok(b.i64s(&pads));
    };
    let shape = match shape.len() {
        l if l == r => shape,
        l if l == r + 2 => shape[2..].to_vec(),
        _ => return Err(()),
    };
    // total = s·i + (output_padding + span − s − output), per axis, from the input's size.
    let sx = b.shape(c.x(0));
    let start = b.i64s(&[2]);
    let end = b.i64s(&[i64::MAX]);
    let i = b.op("Slice", &[&sx, &start, &end], vec![]);
    let s = b.i64s(strides);
    let si = b.op("Mul", &[&i, &s], vec![]);
    let fixed: Vec<i64> = (0..r)
        .map(|a| out_pad[a] + span[a] - strides[a] - shape[a])
        .collect();
    let fixed = b.i64s(&fixed);
    let total = b.op("Add", &[&si, &fixed], vec![]);
    // The smaller half ⌊t/2⌋ first under SAME_UPPER, else the larger t − ⌊t/2⌋ (floor division,
    // also for a negative total).
    let two = b.i64s(&[2]);
    let small = floor_div(b, &total, &two);
    let (begin, end) = if upper {
        let e = b.op("Sub", &[&total, &small], vec![]);
        (small, e)
    } else {
        let bg = b.op("Sub", &[&total, &small], vec![]);
        (bg, small)
    };
    let zeros = b.i64s(&[0, 0]);
    Ok(b.op(
        "Concat",
        &[&zeros, &begin, &zeros, &end],
        vec![make_i("axis", 0)],
    ))
}

/// `⌊t/2⌋` first (SAME_UPPER), else `t − ⌊t/2⌋`.
fn half_first(t: i64, upper: bool) -> i64 {
    let small = t.div_euclid(2);
    if upper {
        small
    } else {
        t - small
    }
}

/// Floor division of int64 tensors by a positive divisor (ONNX `Div` truncates toward zero).
fn floor_div(b: &mut Builder<'_>, t: &str, d: &str) -> String {
    // ⌊t/d⌋ = (t − (t mod d)) / d with a non-negative `Mod` (fmod = 0 follows the divisor's sign).
    let m = b.op("Mod", &[t, d], vec![make_i("fmod", 0)]);
    let exact = b.op("Sub", &[t, &m], vec![]);
    b.op("Div", &[&exact, d], vec![])
}
