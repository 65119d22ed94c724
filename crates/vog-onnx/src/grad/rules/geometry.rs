//! The window geometry of convolution and pooling nodes, read from their attributes: kernel
//! size, strides, dilations and explicit pads (resolving `auto_pad` where the input size does not
//! matter), whether a max pool's windows are disjoint, the `MaxUnpool` attributes that undo one,
//! and (in the graph, where sizes are known only at run time) how far windows overhang their
//! input. Shared by the `conv` and `pool` rules.

use crate::grad::builder::Builder;
use crate::graph::{attr_ints, attr_s, make_ints};
use crate::proto::{AttributeProto, NodeProto};

/// Attribute `name` of `n` as integers, or `default` when absent or empty.
pub(super) fn ints_or(n: &NodeProto, name: &str, default: Vec<i64>) -> Vec<i64> {
    attr_ints(n, name)
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

/// Kernel size (from `kernel_shape` or the constant weight), strides and dilations of a
/// convolution-like node.
pub(super) fn conv_geometry(
    b: &Builder<'_>,
    n: &NodeProto,
) -> Option<(Vec<i64>, Vec<i64>, Vec<i64>)> {
    let weight = n.input.get(1).map(String::as_str).unwrap_or("");
    let kernel = match (attr_ints(n, "kernel_shape"), b.consts.dims(weight)) {
        (Some(k), _) if !k.is_empty() => k,
        (_, Some(d)) if d.len() > 2 => d[2..].to_vec(),
        _ => return None,
    };
    let r = kernel.len();
    let strides = ints_or(n, "strides", vec![1; r]);
    let dil = ints_or(n, "dilations", vec![1; r]);
    Some((kernel, strides, dil))
}

/// Explicit pads of a conv or pool node (begin…, end…), resolving `auto_pad` where possible.
pub(super) fn explicit_pads(
    n: &NodeProto,
    kernel: &[i64],
    strides: &[i64],
    dilations: &[i64],
) -> Option<Vec<i64>> {
    let rank = kernel.len();
    match attr_s(n, "auto_pad").as_deref().unwrap_or("NOTSET") {
        "NOTSET" | "" => Some(ints_or(n, "pads", vec![0; 2 * rank])),
        "VALID" => Some(vec![0; 2 * rank]),
        // With stride 1 the total padding does not depend on the input size.
        mode @ ("SAME_UPPER" | "SAME_LOWER") if strides.iter().all(|&s| s == 1) => {
            let totals: Vec<i64> = kernel
                .iter()
                .zip(dilations)
                .map(|(k, d)| (k - 1) * d)
                .collect();
            let (mut begin, mut end) = (Vec::new(), Vec::new());
            for t in totals {
                let small = t / 2;
                if mode == "SAME_UPPER" {
                    begin.push(small);
                    end.push(t - small);
                } else {
                    begin.push(t - small);
                    end.push(small);
                }
            }
            begin.extend(end);
            Some(begin)
        }
        _ => None,
    }
}

/// Whether a max pool's windows are disjoint: strides at least the (dilated) kernel.
pub(super) fn non_overlapping_pool(n: &NodeProto) -> bool {
    let Some(kernel) = attr_ints(n, "kernel_shape") else {
        return false;
    };
    let r = kernel.len();
    let strides = ints_or(n, "strides", vec![1; r]);
    let dil = ints_or(n, "dilations", vec![1; r]);
    kernel
        .iter()
        .zip(&strides)
        .zip(&dil)
        .all(|((&k, &s), &d)| s > (k - 1) * d)
}

/// MaxUnpool's attributes from the pool's: kernel, strides and pads.
pub(super) fn max_unpool_attrs(n: &NodeProto) -> Vec<AttributeProto> {
    let kernel = attr_ints(n, "kernel_shape").unwrap_or_default();
    let r = kernel.len();
    let strides = ints_or(n, "strides", vec![1; r]);
    let pads = explicit_pads(n, &kernel, &strides, &ints_or(n, "dilations", vec![1; r]))
        .unwrap_or_else(|| vec![0; 2 * r]);
    vec![
        make_ints("kernel_shape", kernel),
        make_ints("strides", strides),
        make_ints("pads", pads),
    ]
}

/// Per spatial axis, how far the windows of a node with output `y` reach past `have` input
/// positions, or 0: `max((o − 1)·s + (k − 1)·d + 1 − have, 0)` with `o` the output's size.
/// Emitted in the graph: it depends on sizes known only at run time.
pub(super) fn overhang(
    b: &mut Builder<'_>,
    y: &str,
    [kernel, strides, dilations]: [&[i64]; 3],
    have: &str,
) -> String {
    let r = kernel.len();
    let sy = b.spatial(y);
    let one = b.i64s(&vec![1; r]);
    let s = b.i64s(strides);
    let reach: Vec<i64> = kernel
        .iter()
        .zip(dilations)
        .map(|(k, d)| (k - 1) * d + 1)
        .collect();
    let reach = b.i64s(&reach);
    let o1 = b.op("Sub", &[&sy, &one], vec![]);
    let span = b.op("Mul", &[&o1, &s], vec![]);
    let needed = b.op("Add", &[&span, &reach], vec![]);
    let short = b.op("Sub", &[&needed, have], vec![]);
    let zero = b.i64s(&vec![0; r]);
    b.op("Max", &[&short, &zero], vec![])
}
