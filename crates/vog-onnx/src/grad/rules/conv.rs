//! Rules for convolutions, by their data input only (weights are never differentiated): `Conv`,
//! whose input gradient is a convolution with the flipped kernel when the geometry allows and a
//! `ConvTranspose` otherwise, and `ConvTranspose`, whose input gradient is a `Conv`.

use super::context::{one_input, Ctx, Grads};
use super::geometry::{conv_geometry, explicit_pads, ints_or};
use crate::grad::builder::Builder;
use crate::graph::{attr, attr_i, attr_s, make_i, make_ints};

/// `Conv`, by its input `X`.
pub(super) fn conv(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let (n, g) = (c.n, &c.g);
    let (kernel, strides, dil) = conv_geometry(b, n).ok_or(())?;
    let pads = explicit_pads(n, &kernel, &strides, &dil).ok_or(())?;
    let group = attr_i(n, "group").unwrap_or(1);
    if !c.need(0) {
        return Err(()); // weight gradients are never needed
    }
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
