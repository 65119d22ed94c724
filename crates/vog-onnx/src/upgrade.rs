//! Rewrites of the forward graph before it is differentiated: opset 11–12 models in their opset
//! 13 form, `If` nodes whose condition is a constant replaced by the branch they take, and pools
//! with `SAME` padding at a stride above 1 as an explicit `Pad` computed from the input's size.
//!
//! ## Opset 11–12
//! The reverse pass emits ops of opset 16, so a model is raised to it; for the few ops whose
//! meaning changed at opset 13 the forward nodes are rewritten first, to what they meant at the
//! model's own opset:
//!
//! - `Squeeze`, `Unsqueeze`, `ReduceSum`: the `axes` attribute becomes an input;
//! - `Split`: the `split` attribute becomes an input;
//! - `Softmax`, `LogSoftmax`, `Hardmax`: up to opset 12 they flatten the input to 2-D at `axis`
//!   (default 1) and normalise each row; over the last axis that is the opset 13 op, otherwise
//!   it becomes `Flatten` → the op over the last axis → `Reshape` back.
//!
//! Every other op of the standard domain the exporters emit means the same at 11, 12 and 16
//! (attributes and inputs added since then are optional with the old behaviour as default).
//! Subgraphs (`If`, `Loop`, `Scan` bodies) are rewritten too: they run under the raised opset.

use std::collections::HashMap;

use crate::emit::Emit;
use crate::graph::{attr_i, attr_ints, infer_ranks, make_i, tensor_i64, Constants};
use crate::proto::{GraphProto, NodeProto};

/// Rewrites `graph` (of opset 11 or 12) into its opset 13 form; see the module documentation.
pub fn to_opset13(graph: &mut GraphProto) {
    let mut fresh = 0usize;
    upgrade(graph, &mut fresh);
}

fn upgrade(graph: &mut GraphProto, fresh: &mut usize) {
    let ranks: HashMap<String, usize> = infer_ranks(graph, &Constants::new(graph));
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    for mut n in std::mem::take(&mut graph.node) {
        for a in &mut n.attribute {
            if let Some(g) = a.g.as_mut() {
                upgrade(g, fresh);
            }
            for g in &mut a.graphs {
                upgrade(g, fresh);
            }
        }
        let mut name = |what: &str| {
            *fresh += 1;
            format!("vog_opset13_{what}_{fresh}")
        };
        if !n.domain.is_empty() && n.domain != "ai.onnx" {
            nodes.push(n);
            continue;
        }
        match n.op_type.as_str() {
            "Squeeze" | "Unsqueeze" | "ReduceSum" | "Split" => {
                // The attribute becomes the second input.
                let key = if n.op_type == "Split" {
                    "split"
                } else {
                    "axes"
                };
                if let Some(values) = attr_ints(&n, key) {
                    n.attribute.retain(|a| a.name != key);
                    let t = name(key);
                    inits.push(tensor_i64(&t, vec![values.len() as i64], values));
                    n.input.truncate(1);
                    n.input.push(t);
                }
                nodes.push(n);
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let axis = attr_i(&n, "axis").unwrap_or(1);
                let rank = n.input.first().and_then(|x| ranks.get(x)).copied();
                let last = axis == -1 || rank.is_some_and(|r| axis == r as i64 - 1);
                if last {
                    n.attribute.retain(|a| a.name != "axis");
                    n.attribute.push(make_i("axis", -1));
                    nodes.push(n);
                    continue;
                }
                // [d0 … d(axis-1), d(axis) …] → [∏ d(<axis), ∏ d(≥axis)], normalised per row,
                // and back to the input's shape.
                let x = n.input[0].clone();
                let y = n.output[0].clone();
                let (flat, inner, shape) = (name("flat"), name("rows"), name("shape"));
                nodes.push(NodeProto {
                    op_type: "Flatten".into(),
                    name: format!("{}_flatten", n.name),
                    input: vec![x.clone()],
                    output: vec![flat.clone()],
                    attribute: vec![make_i("axis", axis)],
                    ..Default::default()
                });
                nodes.push(NodeProto {
                    op_type: n.op_type.clone(),
                    name: n.name.clone(),
                    input: vec![flat],
                    output: vec![inner.clone()],
                    attribute: vec![make_i("axis", -1)],
                    ..Default::default()
                });
                nodes.push(NodeProto {
                    op_type: "Shape".into(),
                    name: format!("{}_shape", n.name),
                    input: vec![x],
                    output: vec![shape.clone()],
                    ..Default::default()
                });
                nodes.push(NodeProto {
                    op_type: "Reshape".into(),
                    name: format!("{}_reshape", n.name),
                    input: vec![inner, shape],
                    output: vec![y],
                    ..Default::default()
                });
            }
            _ => nodes.push(n),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
}

/// Replaces every `If` whose condition is a constant (exporters leave them behind for shape
/// checks and for traced Python branches) by the nodes of the branch it takes, its initializers,
/// and an `Identity` from each branch output to the `If`'s output; repeated until none is left
/// (a taken branch may hold more). `If`s on a condition computed at run time stay, and are
/// reported as unsupported when they lie on the differentiated path.
pub fn inline_constant_ifs(graph: &mut GraphProto) {
    loop {
        let consts = Constants::new(graph);
        let found = graph.node.iter().position(|n| {
            n.op_type == "If"
                && (n.domain.is_empty() || n.domain == "ai.onnx")
                && n.input
                    .first()
                    .is_some_and(|c| constant_condition(&consts, c).is_some())
        });
        let Some(i) = found else { return };
        let n = graph.node[i].clone();
        let take = constant_condition(&consts, &n.input[0]).unwrap_or(false);
        let branch_name = if take { "then_branch" } else { "else_branch" };
        let Some(branch) = n
            .attribute
            .iter()
            .find(|a| a.name == branch_name)
            .and_then(|a| a.g.clone())
        else {
            return;
        };
        let mut inlined = branch.node;
        for (out, b_out) in n.output.iter().zip(&branch.output) {
            inlined.push(NodeProto {
                op_type: "Identity".into(),
                name: format!("{}_{}", n.name, out),
                input: vec![b_out.name.clone()],
                output: vec![out.clone()],
                ..Default::default()
            });
        }
        graph.initializer.extend(branch.initializer);
        graph.node.splice(i..=i, inlined);
    }
}

/// The value of a constant scalar condition (bool or integer).
fn constant_condition(consts: &Constants<'_>, name: &str) -> Option<bool> {
    let v = consts.ints(name)?;
    (v.len() == 1).then(|| v[0] != 0)
}

/// Rewrites `MaxPool` and `AveragePool` with `auto_pad = SAME_UPPER | SAME_LOWER` at a stride
/// above 1, whose padding depends on the input's size, into an explicit `Pad` computed in the
/// graph from that size followed by the same pool without padding: `-∞` padding for the max (a
/// padded value is never a window's maximum, as with SAME), zeros for the average, divided, unless
/// `count_include_pad`, by the same average over a padded tensor of ones (the window's count of
/// real elements). Per axis: total `max((⌈i/s⌉ − 1)·s + (k − 1)·d + 1 − i, 0)`, half of it (rounded
/// down for `SAME_UPPER`, up for `SAME_LOWER`) before the input. The existing rules then
/// differentiate `Pad`, the pool and the division.
pub fn lower_same_pools(graph: &mut GraphProto) {
    let mut fresh = 0usize;
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    for n in std::mem::take(&mut graph.node) {
        let pool = matches!(n.op_type.as_str(), "MaxPool" | "AveragePool")
            && (n.domain.is_empty() || n.domain == "ai.onnx");
        let mode = crate::graph::attr_s(&n, "auto_pad").unwrap_or_default();
        let kernel = attr_ints(&n, "kernel_shape").unwrap_or_default();
        let r = kernel.len();
        let strides = attr_ints(&n, "strides").unwrap_or_else(|| vec![1; r]);
        let dil = attr_ints(&n, "dilations").unwrap_or_else(|| vec![1; r]);
        let strided = strides.iter().any(|&s| s > 1);
        // The max pool's optional Indices output would index the padded tensor: left alone.
        let indices = n.output.get(1).is_some_and(|o| !o.is_empty());
        if !pool
            || !matches!(mode.as_str(), "SAME_UPPER" | "SAME_LOWER")
            || !strided
            || indices
            || r == 0
        {
            nodes.push(n);
            continue;
        }
        fresh += 1;
        let mut e = Emit::new(format!("vog_same_pool_{fresh}"));
        let x = n.input[0].clone();
        let s = e.ints(&strides);
        let span: Vec<i64> = kernel
            .iter()
            .zip(&dil)
            .map(|(k, d)| (k - 1) * d + 1)
            .collect();
        let span = e.ints(&span);
        let s_minus_1: Vec<i64> = strides.iter().map(|s| s - 1).collect();
        let s_minus_1 = e.ints(&s_minus_1);
        let (zero, zeros2, one, two) = (e.ints(&[0]), e.ints(&[0, 0]), e.ints(&[1]), e.ints(&[2]));
        let (start, end) = (e.ints(&[2]), e.ints(&[i64::MAX]));
        let shape = e.op("Shape", &[&x], vec![]);
        let i = e.op("Slice", &[&shape, &start, &end], vec![]);
        // ⌈i/s⌉ = (i + s − 1) / s for positive integers.
        let ip = e.op("Add", &[&i, &s_minus_1], vec![]);
        let o = e.op("Div", &[&ip, &s], vec![]);
        let om1 = e.op("Sub", &[&o, &one], vec![]);
        let covered = e.op("Mul", &[&om1, &s], vec![]);
        let need = e.op("Add", &[&covered, &span], vec![]);
        let over = e.op("Sub", &[&need, &i], vec![]);
        let total = e.op("Max", &[&over, &zero], vec![]);
        let half = if mode == "SAME_UPPER" {
            total.clone()
        } else {
            e.op("Add", &[&total, &one], vec![])
        };
        let begin = e.op("Div", &[&half, &two], vec![]);
        let end_pad = e.op("Sub", &[&total, &begin], vec![]);
        let pads = e.op(
            "Concat",
            &[&zeros2, &begin, &zeros2, &end_pad],
            vec![make_i("axis", 0)],
        );
        let valid: Vec<_> = n
            .attribute
            .iter()
            .filter(|a| !matches!(a.name.as_str(), "auto_pad" | "pads" | "count_include_pad"))
            .cloned()
            .collect();
        let y = n.output[0].clone();
        let like_x = |e: &mut Emit, v: f32| {
            let c = e.name("value");
            e.inits.push(crate::graph::tensor_f32(&c, vec![], vec![v]));
            e.op("CastLike", &[&c, &x], vec![])
        };
        if n.op_type == "MaxPool" {
            let lowest = like_x(&mut e, f32::NEG_INFINITY);
            let padded = e.op("Pad", &[&x, &pads, &lowest], vec![]);
            e.op_to("MaxPool", &[&padded], &y, valid);
        } else {
            let padded = e.op("Pad", &[&x, &pads], vec![]);
            if crate::graph::attr_i(&n, "count_include_pad").unwrap_or(0) != 0 {
                e.op_to("AveragePool", &[&padded], &y, valid);
            } else {
                let sum = e.op("AveragePool", &[&padded], valid.clone());
                let one_like = like_x(&mut e, 1.0);
                let ones = e.op("Expand", &[&one_like, &shape], vec![]);
                let ones_padded = e.op("Pad", &[&ones, &pads], vec![]);
                let count = e.op("AveragePool", &[&ones_padded], valid);
                e.op_to("Div", &[&sum, &count], &y, vec![]);
            }
        }
        nodes.extend(e.nodes);
        inits.extend(e.inits);
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
}
