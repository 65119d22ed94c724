//! The recurrent ops (`LSTM`, `GRU`, `RNN`) unrolled over time into the ops they are made of, so
//! that the existing rules differentiate them step by step (backpropagation through time).
//!
//! A sequence must have a length known from the graph (the time axis of the op's input traced
//! back through layout ops to a declared input dimension or a constant): ONNX exports of PyTorch
//! and Keras models fix it unless the sequence axis was declared dynamic. Each step is the ONNX
//! operator's definition with its default activations (sigmoid and tanh): gates from
//! `x·Wᵀ + h·Rᵀ + Wb + Rb` in the operator's gate order (LSTM `iofc`, GRU `zrh`, with or without
//! `linear_before_reset`), both directions, `layout` 0 or 1, initial states, and `sequence_lens`
//! (past its length a row keeps its state and outputs zeros; the reverse direction starts at the
//! row's last step, through `ReverseSequence`). An op with other activations, `clip`,
//! `input_forget` or peepholes is left as it is, and reported as unsupported if it lies on the
//! differentiated path.

use std::collections::HashMap;

use crate::emit::Emit;
use crate::graph::{attr_f, attr_i, attr_ints, attr_s, make_i, make_ints, value_type};
use crate::proto::{GraphProto, NodeProto};

/// Replaces every recurrent node that can be unrolled (see the module documentation).
pub fn unroll_recurrent(graph: &mut GraphProto) {
    let mut fresh = 0usize;
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    let old = std::mem::take(&mut graph.node);
    for n in &old {
        let kind = match n.op_type.as_str() {
            "LSTM" | "GRU" | "RNN" if n.domain.is_empty() || n.domain == "ai.onnx" => &n.op_type,
            _ => {
                nodes.push(n.clone());
                continue;
            }
        };
        let steps = time_steps(graph, &old, n);
        fresh += 1;
        let mut e = Emit::new(format!("vog_unroll_{fresh}"));
        match steps.and_then(|t| unroll(&mut e, n, kind, t)) {
            Some(()) => {
                nodes.extend(e.nodes);
                inits.extend(e.inits);
            }
            None => nodes.push(n.clone()),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
}

/// The input's time steps, when known without running the model.
fn time_steps(graph: &GraphProto, nodes: &[NodeProto], n: &NodeProto) -> Option<i64> {
    let layout = attr_i(n, "layout").unwrap_or(0);
    let axis = if layout == 0 { 0 } else { 1 };
    static_dim(graph, nodes, n.input.first()?, axis, 0)
}

/// Dimension `axis` of tensor `t`, traced back through layout ops to a declared input dimension
/// or a constant.
fn static_dim(
    graph: &GraphProto,
    nodes: &[NodeProto],
    t: &str,
    axis: usize,
    depth: usize,
) -> Option<i64> {
    if depth > 64 {
        return None;
    }
    if let Some(v) = graph.input.iter().find(|v| v.name == t) {
        let (_, dims) = value_type(v)?;
        return dims?.get(axis).copied().flatten().filter(|&d| d > 0);
    }
    if let Some(init) = graph.initializer.iter().find(|i| i.name == t) {
        return init.dims.get(axis).copied();
    }
    let producer = nodes.iter().find(|m| m.output.iter().any(|o| o == t))?;
    let x = producer.input.first()?;
    match producer.op_type.as_str() {
        "Transpose" => {
            let perm = attr_ints(producer, "perm")?;
            let from = usize::try_from(*perm.get(axis)?).ok()?;
            static_dim(graph, nodes, x, from, depth + 1)
        }
        "Identity" | "Cast" | "Dropout" | "Relu" | "Tanh" | "Sigmoid" | "LeakyRelu" | "Elu"
        | "Gelu" | "Neg" | "Abs" | "Mul" | "Add" | "Sub" | "Div" | "BatchNormalization"
        | "LayerNormalization" | "Softmax" => static_dim(graph, nodes, x, axis, depth + 1),
        // A stacked layer's input: the previous layer's `Y` ([T, D, B, H]) squeezed or reshaped
        // to [T, B, D·H] keeps the time axis first.
        "Squeeze" | "Reshape" if axis == 0 => static_dim(graph, nodes, x, 0, depth + 1),
        "LSTM" | "GRU" | "RNN" if producer.output.first().is_some_and(|o| o == t) => {
            let layout = attr_i(producer, "layout").unwrap_or(0);
            let time = if layout == 0 { 0 } else { 1 };
            (axis == time).then(|| static_dim(graph, nodes, x, time, depth + 1))?
        }
        _ => None,
    }
}

/// Writes the unrolled `n` into `e`; `None` when `n` uses something this does not cover.
fn unroll(e: &mut Emit, n: &NodeProto, kind: &str, steps: i64) -> Option<()> {
    let defaults: &[&str] = match kind {
        "LSTM" => &["sigmoid", "tanh", "tanh"],
        "GRU" => &["sigmoid", "tanh"],
        _ => &["tanh"],
    };
    if let Some(a) = n.attribute.iter().find(|a| a.name == "activations") {
        let given: Vec<String> = a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_lowercase())
            .collect();
        if given.chunks(defaults.len()).any(|c| c != defaults) {
            return None;
        }
    }
    if attr_f(n, "clip").is_some() || attr_i(n, "input_forget").unwrap_or(0) != 0 {
        return None;
    }
    let input = |i: usize| n.input.get(i).filter(|s| !s.is_empty()).cloned();
    if kind == "LSTM" && input(7).is_some() {
        return None; // peepholes
    }
    let direction = attr_s(n, "direction").unwrap_or_else(|| "forward".into());
    if !matches!(direction.as_str(), "forward" | "reverse" | "bidirectional") {
        return None;
    }
    let seq_lens = input(4);
    // int32 by the operator's definition; compared with int64 step numbers.
    let seq_lens = seq_lens.map(|l| {
        e.op(
            "Cast",
            &[&l],
            vec![make_i(
                "to",
                crate::proto::tensor_proto::DataType::Int64 as i64,
            )],
        )
    });
    let hidden = attr_i(n, "hidden_size")?;
    let gates = match kind {
        "LSTM" => 4,
        "GRU" => 3,
        _ => 1,
    };
    let layout = attr_i(n, "layout").unwrap_or(0);
    let linear_before_reset = attr_i(n, "linear_before_reset").unwrap_or(0) != 0;
    // Layout 1 ([B, T, I]) is brought to layout 0 ([T, B, I]) and back at the end.
    let x0 = input(0)?;
    let x = if layout == 0 {
        x0
    } else {
        e.op("Transpose", &[&x0], vec![make_ints("perm", vec![1, 0, 2])])
    };
    let init_state = |e: &mut Emit, i: usize, d: i64| {
        let t = input(i)?;
        let t = if layout == 0 {
            t
        } else {
            e.op("Transpose", &[&t], vec![make_ints("perm", vec![1, 0, 2])])
        };
        Some(e.take(&t, d))
    };
    // Zeros [B, H] shaped from the input.
    let zeros = {
        let shape = e.op("Shape", &[&x], vec![]);
        let (one, two) = (e.ints(&[1]), e.ints(&[2]));
        let batch = e.op("Slice", &[&shape, &one, &two], vec![]);
        let h = e.ints(&[hidden]);
        let bh = e.op("Concat", &[&batch, &h], vec![make_i("axis", 0)]);
        let z = e.op("ConstantOfShape", &[&bh], vec![]);
        e.op("CastLike", &[&z, &x], vec![])
    };
    let directions: Vec<(i64, bool)> = match direction.as_str() {
        "forward" => vec![(0, false)],
        "reverse" => vec![(0, true)],
        _ => vec![(0, false), (1, true)],
    };
    let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
    for (d, backwards) in directions {
        let w = e.take(n.input.get(1)?, d);
        let r = e.take(n.input.get(2)?, d);
        let bias = input(3).map(|b| e.take(&b, d));
        // Wb + Rb, or each half alone where GRU keeps them apart.
        let (wb, rb) = match &bias {
            Some(b) => (
                Some(e.cols(b, 0, gates * hidden)),
                Some(e.cols(b, gates * hidden, 2 * gates * hidden)),
            ),
            None => (None, None),
        };
        let mut h = init_state(e, 5, d).unwrap_or_else(|| zeros.clone());
        let mut c = if kind == "LSTM" {
            init_state(e, 6, d).unwrap_or_else(|| zeros.clone())
        } else {
            String::new()
        };
        let mut outs: HashMap<i64, String> = HashMap::new();
        // With sequence lengths the reverse direction reads each row's first `len` steps
        // backwards: the prefix is reversed (`ReverseSequence`), run forwards, and the outputs
        // reversed back.
        let reversed_x = match (&seq_lens, backwards) {
            (Some(lens), true) => Some(e.op(
                "ReverseSequence",
                &[&x, lens],
                vec![make_i("batch_axis", 1), make_i("time_axis", 0)],
            )),
            _ => None,
        };
        let xs = reversed_x.clone().unwrap_or_else(|| x.clone());
        let order: Vec<i64> = if backwards && reversed_x.is_none() {
            (0..steps).rev().collect()
        } else {
            (0..steps).collect()
        };
        for t in order {
            let xt = e.take(&xs, t);
            let mut xw = e.times_t(&xt, &w);
            if let Some(wb) = &wb {
                xw = e.op("Add", &[&xw, wb], vec![]);
            }
            let mut hr = e.times_t(&h, &r);
            if let Some(rb) = &rb {
                hr = e.op("Add", &[&hr, rb], vec![]);
            }
            let (h_new, c_new) = match kind {
                "LSTM" => {
                    let g = e.op("Add", &[&xw, &hr], vec![]);
                    let part = |e: &mut Emit, k: i64| e.cols(&g, k * hidden, (k + 1) * hidden);
                    let (i, o, f, cc) = (part(e, 0), part(e, 1), part(e, 2), part(e, 3));
                    let i = e.op("Sigmoid", &[&i], vec![]);
                    let o = e.op("Sigmoid", &[&o], vec![]);
                    let f = e.op("Sigmoid", &[&f], vec![]);
                    let cc = e.op("Tanh", &[&cc], vec![]);
                    let fc = e.op("Mul", &[&f, &c], vec![]);
                    let ic = e.op("Mul", &[&i, &cc], vec![]);
                    let c_new = e.op("Add", &[&fc, &ic], vec![]);
                    let tc = e.op("Tanh", &[&c_new], vec![]);
                    (e.op("Mul", &[&o, &tc], vec![]), c_new)
                }
                "GRU" => {
                    let xp = |e: &mut Emit, k: i64| e.cols(&xw, k * hidden, (k + 1) * hidden);
                    let hp = |e: &mut Emit, k: i64| e.cols(&hr, k * hidden, (k + 1) * hidden);
                    let (xz, xr, xh) = (xp(e, 0), xp(e, 1), xp(e, 2));
                    let (hz, hrr) = (hp(e, 0), hp(e, 1));
                    let z = e.op("Add", &[&xz, &hz], vec![]);
                    let z = e.op("Sigmoid", &[&z], vec![]);
                    let rr = e.op("Add", &[&xr, &hrr], vec![]);
                    let rr = e.op("Sigmoid", &[&rr], vec![]);
                    let inner = if linear_before_reset {
                        let hh = hp(e, 2); // h·Rhᵀ + Rbh
                        e.op("Mul", &[&rr, &hh], vec![])
                    } else {
                        let rh = e.op("Mul", &[&rr, &h], vec![]);
                        let r_h = e.cols_rows(&r, 2 * hidden, 3 * hidden);
                        let mut v = e.times_t(&rh, &r_h);
                        if let Some(rb) = &rb {
                            let rbh = e.cols(rb, 2 * hidden, 3 * hidden);
                            v = e.op("Add", &[&v, &rbh], vec![]);
                        }
                        v
                    };
                    let cand = e.op("Add", &[&xh, &inner], vec![]);
                    let cand = e.op("Tanh", &[&cand], vec![]);
                    // h' = (1 − z)·h̃ + z·h = h̃ + z·(h − h̃)
                    let diff = e.op("Sub", &[&h, &cand], vec![]);
                    let zd = e.op("Mul", &[&z, &diff], vec![]);
                    (e.op("Add", &[&cand, &zd], vec![]), String::new())
                }
                _ => {
                    let a = e.op("Add", &[&xw, &hr], vec![]);
                    (e.op("Tanh", &[&a], vec![]), String::new())
                }
            };
            let (h_next, c_next, y) = match &seq_lens {
                // Rows past their length keep their state and output zeros.
                Some(lens) => {
                    let tt = e.scalar(t);
                    let live = e.op("Less", &[&tt, lens], vec![]);
                    let live = e.unsqueeze(&live, 1);
                    let h2 = e.op("Where", &[&live, &h_new, &h], vec![]);
                    let c2 = if kind == "LSTM" {
                        e.op("Where", &[&live, &c_new, &c], vec![])
                    } else {
                        String::new()
                    };
                    let y = e.op("Where", &[&live, &h_new, &zeros], vec![]);
                    (h2, c2, y)
                }
                None => (h_new.clone(), c_new, h_new),
            };
            h = h_next;
            c = c_next;
            outs.insert(t, y);
        }
        let per_step: Vec<String> = (0..steps)
            .map(|t| {
                let y = outs[&t].clone();
                e.unsqueeze(&y, 0)
            })
            .collect();
        let refs: Vec<&str> = per_step.iter().map(String::as_str).collect();
        let mut yd = e.op("Concat", &refs, vec![make_i("axis", 0)]); // [T, B, H]
        if let (Some(lens), Some(_)) = (&seq_lens, &reversed_x) {
            yd = e.op(
                "ReverseSequence",
                &[&yd, lens],
                vec![make_i("batch_axis", 1), make_i("time_axis", 0)],
            );
        }
        ys.push(e.unsqueeze(&yd, 1)); // [T, 1, B, H]
        hs.push(e.unsqueeze(&h, 0)); // [1, B, H]
        if kind == "LSTM" {
            cs.push(e.unsqueeze(&c, 0));
        }
    }
    let join = |e: &mut Emit, parts: &[String], axis: i64| {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        e.op("Concat", &refs, vec![make_i("axis", axis)])
    };
    let y = join(e, &ys, 1); // [T, D, B, H]
    let yh = join(e, &hs, 0); // [D, B, H]
    let (y, yh) = if layout == 0 {
        (y, yh)
    } else {
        (
            e.op(
                "Transpose",
                &[&y],
                vec![make_ints("perm", vec![2, 0, 1, 3])],
            ),
            e.op("Transpose", &[&yh], vec![make_ints("perm", vec![1, 0, 2])]),
        )
    };
    let mut finals = vec![y, yh];
    if kind == "LSTM" {
        let yc = join(e, &cs, 0);
        finals.push(if layout == 0 {
            yc
        } else {
            e.op("Transpose", &[&yc], vec![make_ints("perm", vec![1, 0, 2])])
        });
    }
    for (out, value) in n.output.iter().zip(&finals) {
        if !out.is_empty() {
            e.op_to("Identity", &[value], out, vec![]);
        }
    }
    Some(())
}
