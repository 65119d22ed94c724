//! Rules for the ops and forms the model-zoo sweep (`tests/zoo.rs`) needed: opset 11–12 forms,
//! broadcasting between two computed operands, Einsum, GroupNormalization, gathers and scatters,
//! `If` with a constant condition, and pools with `SAME` padding at a stride.

use crate::case::{check_all, doubles, f32_of, node, uniform, Case, ROWS};
use crate::int64s;
use crate::reference::{conv_transpose2d, same_pool2d, Recurrent};
use vog_onnx::graph::{make_f, make_i, make_ints, make_s};
use vog_onnx::proto::tensor_proto::DataType;
use vog_onnx::proto::TensorProto;

#[test]
fn opset_11_and_12_forms_agree_with_finite_differences() {
    // The forms whose meaning changed at opset 13 (vog rewrites them before raising the opset):
    // axes and split as attributes, and the softmax family flattening to 2-D at `axis`.
    let x = uniform(43, 24, -2.0, 2.0);
    let mut cases = vec![
        Case::op(
            "Squeeze axes attribute (11)",
            "Squeeze",
            &[2, 3, 1, 4],
            x.clone(),
        )
        .attr(make_ints("axes", vec![2]))
        .mixed(12)
        .opset(11),
        Case::op(
            "Unsqueeze axes attribute (11)",
            "Unsqueeze",
            &[2, 3, 4],
            x.clone(),
        )
        .attr(make_ints("axes", vec![1, 3]))
        .mixed(12)
        .opset(11),
        Case::op(
            "ReduceSum axes attribute (12)",
            "ReduceSum",
            &[2, 3, 4],
            x.clone(),
        )
        .attr(make_ints("axes", vec![2]))
        .attr(make_i("keepdims", 0))
        .mixed(3)
        .opset(12),
        // Over axis 1 of [rows, 3, 4]: one softmax over all 12 values of a row (not over 3).
        Case::op("Softmax axis 1 of 3 (11)", "Softmax", &[2, 3, 4], x.clone())
            .attr(make_i("axis", 1))
            .mixed(12)
            .opset(11),
        Case::op(
            "LogSoftmax default axis of 3 (12)",
            "LogSoftmax",
            &[2, 3, 4],
            x.clone(),
        )
        .mixed(12)
        .opset(12),
        Case::op("Softmax last axis (11)", "Softmax", &[2, 3, 4], x.clone())
            .attr(make_i("axis", 2))
            .mixed(12)
            .opset(11),
        Case::op(
            "LogSoftmax axis -1 (12)",
            "LogSoftmax",
            &[2, 3, 4],
            x.clone(),
        )
        .attr(make_i("axis", -1))
        .mixed(12)
        .opset(12),
    ];
    // Split with sizes as an attribute, both parts reaching the output unequally.
    let mut split = Case::op("Split sizes attribute (11)", "Split", &[2, 3, 4], x)
        .attr(make_ints("split", vec![1, 3]))
        .attr(make_i("axis", 2))
        .mixed(12)
        .opset(11);
    split.nodes[0].output = vec!["a".into(), "b".into()];
    split.nodes.push(node("Mul", &["b", "b"], &["bb"]));
    split.nodes.push(node("Concat", &["bb", "a"], &["y"]));
    split.nodes[2].attribute.push(make_i("axis", 2));
    cases.push(split);
    check_all(cases);
}

#[test]
fn broadcasting_between_two_computed_operands_agrees_with_finite_differences() {
    // Both operands on the gradient's path, one broadcast: along a kept axis of size 1, along
    // missing leading axes, and from a scalar; and a batched MatMul whose batch axis broadcasts.
    let x = uniform(44, 24, -2.0, 2.0);
    let mut arith = Case::op("broadcast arithmetic", "ReduceMean", &[2, 3, 4], x.clone()).mixed(12);
    arith.nodes[0].output = vec!["m".into()];
    arith.nodes[0].attribute = vec![make_ints("axes", vec![2]), make_i("keepdims", 1)];
    let mut r = node("ReduceSum", &["x", "axis0"], &["r"]);
    r.attribute.push(make_i("keepdims", 0));
    let mut s = node("ReduceSum", &["x"], &["s"]);
    s.attribute.push(make_i("keepdims", 0));
    let mut q = node("ReduceMean", &["xx"], &["q"]);
    q.attribute = vec![make_ints("axes", vec![1]), make_i("keepdims", 1)];
    arith.nodes.extend([
        r,
        s,
        node("Mul", &["x", "m"], &["a"]),  // [2, 3, 4] · [2, 3, 1]
        node("Sub", &["a", "r"], &["b"]),  // [2, 3, 4] − [3, 4]
        node("Mul", &["b", "s"], &["c"]),  // [2, 3, 4] · []
        node("Mul", &["x", "x"], &["xx"]), //
        q,                                 // [2, 1, 4]
        node("Add", &["q", "two"], &["e"]),
        node("Div", &["c", "e"], &["y"]), // [2, 3, 4] / [2, 1, 4]
    ]);
    arith.inits.push(int64s("axis0", &[1], &[0]));
    arith.inits.push(doubles("two", &[], &[2.0]));
    let mut matmul =
        Case::op("MatMul with a broadcast batch", "ReduceMean", &[2, 3, 4], x).mixed(9);
    matmul.nodes[0].output = vec!["w0".into()];
    matmul.nodes[0].attribute = vec![make_ints("axes", vec![0]), make_i("keepdims", 1)];
    let mut t = node("Transpose", &["w0"], &["w"]);
    t.attribute.push(make_ints("perm", vec![0, 2, 1]));
    matmul
        .nodes
        .extend([t, node("MatMul", &["x", "w"], &["y"])]); // [2, 3, 4] · [1, 4, 3]
    check_all(vec![arith, matmul]);
}

#[test]
fn einsum_agrees_with_finite_differences() {
    // x is [rows 2, 3, 4]; w a constant; every output element reaches the logits.
    let x = uniform(45, 24, -2.0, 2.0);
    let case = |name: &'static str, equation: &str, inputs: &[&str], width: usize| {
        let mut c = Case::op(name, "Einsum", &[2, 3, 4], x.clone())
            .attr(make_s("equation", equation))
            .mixed(width);
        c.nodes[0].input = inputs.iter().map(|s| s.to_string()).collect();
        c.inits
            .push(doubles("w45", &[4, 5], &uniform(46, 20, -1.0, 1.0)));
        c.inits
            .push(doubles("w54", &[5, 4], &uniform(47, 20, -1.0, 1.0)));
        c
    };
    check_all(vec![
        case("Einsum bij,jk->bik", "bij,jk->bik", &["x", "w45"], 15),
        case(
            "Einsum kj,bij->bik (x second)",
            "kj,bij->bik",
            &["w54", "x"],
            15,
        ),
        case(
            "Einsum bij,bik->bjk (x twice)",
            "bij,bik->bjk",
            &["x", "x"],
            16,
        ),
        case("Einsum bij->bi (j summed alone)", "bij->bi", &["x"], 3),
        case("Einsum bij->bj (i summed alone)", "bij->bj", &["x"], 4),
        case("Einsum bij->bji", "bij->bji", &["x"], 12),
        case(
            "Einsum ...ij,jk->...ik",
            "...ij,jk->...ik",
            &["x", "w45"],
            15,
        ),
        case("Einsum implicit output bij,jk", "bij,jk", &["x", "w45"], 15),
    ]);
}

#[test]
fn group_normalization_agrees_with_finite_differences() {
    // [rows 2, C 4, L 3] in 2 groups: the affine per group at opset 18, per channel at 21.
    let x = uniform(48, 24, -2.0, 2.0);
    let case = |name: &'static str, opset: i64, params: usize| {
        let mut c = Case::op(name, "GroupNormalization", &[2, 4, 3], x.clone())
            .attr(make_i("num_groups", 2))
            .attr(make_f("epsilon", 1e-3))
            .constant("scale", &[params as i64], &uniform(49, params, 0.5, 1.5))
            .constant("bias", &[params as i64], &uniform(50, params, -0.5, 0.5))
            .mixed(12)
            .opset(opset);
        c.nodes[0].input = vec!["x".into(), "scale".into(), "bias".into()];
        if opset >= 21 {
            // Statistics in double (the default, float, would round the finite differences).
            c = c.attr(make_i("stash_type", DataType::Double as i64));
        }
        c
    };
    check_all(vec![
        case("GroupNormalization per group (18)", 18, 2),
        case("GroupNormalization per channel (21)", 21, 4),
    ]);
}

#[test]
fn gathers_and_scatters_agree_with_finite_differences() {
    // x is [rows 2, 3, 4]; indices are constants, and scattered updates are computed from x.
    let x = uniform(51, 24, -2.0, 2.0);
    let mut cases = Vec::new();
    // GatherND: whole rows of the last axis (one position read twice), and per batch.
    let mut nd = Case::op("GatherND", "GatherND", &[2, 3, 4], x.clone()).mixed(4);
    nd.nodes[0].input.push("idx".into());
    nd.inits.push(int64s("idx", &[2, 2], &[0, 2, 0, 2]));
    cases.push(nd);
    let mut batched = Case::op("GatherND batch_dims 1", "GatherND", &[2, 3, 4], x.clone())
        .attr(make_i("batch_dims", 1))
        .mixed(8);
    batched.nodes[0].input.push("idx".into());
    batched.inits.push(int64s("idx", &[2, 2, 1], &[2, 0, 1, 1]));
    cases.push(batched);
    // ScatterND of updates u = Σ_axis1 x into rows (0, 1) and (1, 2).
    for reduction in ["none", "add"] {
        let name: &'static str = Box::leak(format!("ScatterND {reduction}").into_boxed_str());
        let mut c = Case::op(name, "ReduceSum", &[2, 3, 4], x.clone())
            .attr(make_i("keepdims", 0))
            .mixed(12);
        c.nodes[0].input.push("axis1".into());
        c.nodes[0].output = vec!["u".into()];
        let mut s = node("ScatterND", &["x", "idx", "u"], &["y"]);
        s.attribute.push(make_s("reduction", reduction));
        c.nodes.push(s);
        c.inits.push(int64s("axis1", &[1], &[1]));
        c.inits.push(int64s("idx", &[2, 2], &[0, 1, 1, 2]));
        cases.push(c);
    }
    // ScatterElements along axis 1 of updates u = mean over axis 1, kept.
    for reduction in ["none", "add"] {
        let name: &'static str = Box::leak(format!("ScatterElements {reduction}").into_boxed_str());
        let mut c = Case::op(name, "ReduceMean", &[2, 3, 4], x.clone())
            .attr(make_ints("axes", vec![1]))
            .attr(make_i("keepdims", 1))
            .mixed(12);
        c.nodes[0].output = vec!["u".into()];
        let mut s = node("ScatterElements", &["x", "idx", "u"], &["y"]);
        s.attribute.push(make_s("reduction", reduction));
        s.attribute.push(make_i("axis", 1));
        c.nodes.push(s);
        c.inits
            .push(int64s("idx", &[2, 1, 4], &[0, 2, 1, 0, 2, 2, 0, 1]));
        cases.push(c);
    }
    check_all(cases);
}

#[test]
fn if_with_a_constant_condition_differentiates_the_branch_it_takes() {
    use vog_onnx::graph::value_info;
    use vog_onnx::proto::attribute_proto::AttributeType;
    use vog_onnx::proto::{AttributeProto, GraphProto};
    // y = If(c, then: sigmoid(x)·w, else: tanh(x)); the branches read x from the outer scope,
    // the then-branch has an initializer of its own.
    let branch = |name: &str, nodes: Vec<vog_onnx::proto::NodeProto>, inits| AttributeProto {
        name: name.into(),
        r#type: AttributeType::Graph as i32,
        g: Some(GraphProto {
            name: name.into(),
            node: nodes,
            initializer: inits,
            output: vec![value_info("out", DataType::Double as i32, None)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let x = uniform(52, 12, -2.0, 2.0);
    let mut cases = Vec::new();
    for (name, cond) in [("If true (then)", 1), ("If false (else)", 0)] {
        let mut c = Case::op(name, "If", &ROWS, x.clone());
        c.nodes[0].input = vec!["cond".into()];
        c.nodes[0].attribute = vec![
            branch(
                "then_branch",
                vec![
                    node("Sigmoid", &["x"], &["s"]),
                    node("Mul", &["s", "w"], &["out"]),
                ],
                vec![doubles("w", &[], &[1.5])],
            ),
            branch("else_branch", vec![node("Tanh", &["x"], &["out"])], vec![]),
        ];
        c.inits.push(TensorProto {
            name: "cond".into(),
            data_type: DataType::Bool as i32,
            int32_data: vec![cond],
            ..Default::default()
        });
        cases.push(c);
    }
    check_all(cases);
}

#[test]
fn pools_with_same_padding_at_a_stride_agree_with_finite_differences() {
    // [rows 2, C 2, 5, 7], windows 3 × 4 at strides 2 and 3 (overlapping): the padding depends
    // on the input size (totals 2 and 3: SAME_UPPER and SAME_LOWER differ on the second axis);
    // the average without and with the padding counted.
    let x = uniform(53, 140, -2.0, 2.0);
    let mut cases = Vec::new();
    for mode in ["SAME_UPPER", "SAME_LOWER"] {
        for (op, count_pad) in [("MaxPool", 0), ("AveragePool", 0), ("AveragePool", 1)] {
            let name: &'static str = Box::leak(
                format!("{op} {mode} strides [2, 3] count_include_pad {count_pad}")
                    .into_boxed_str(),
            );
            // Output [2, 2, ⌈5/2⌉ = 3, ⌈7/3⌉ = 3].
            let (upper, avg) = (mode == "SAME_UPPER", op == "AveragePool");
            let mut c = Case::op(name, op, &[2, 2, 5, 7], x.clone())
                .forward(move |x| {
                    same_pool2d(x, [4, 5, 7], [3, 4], [2, 3], upper, avg, count_pad == 1)
                })
                .attr(make_s("auto_pad", mode))
                .attr(make_ints("kernel_shape", vec![3, 4]))
                .attr(make_ints("strides", vec![2, 3]))
                .mixed(18);
            if op == "AveragePool" {
                c = c.attr(make_i("count_include_pad", count_pad));
            }
            cases.push(c);
        }
    }
    check_all(cases);
}

#[test]
fn transposed_convolutions_with_output_shape_or_same_padding_agree_with_finite_differences() {
    // x [rows 2, C_in 2, 4, 5], weight [2, C_out 3, 3, 3], stride 2: the full output is 9 × 11.
    let x = uniform(54, 80, -2.0, 2.0);
    let w = uniform(55, 54, -1.0, 1.0);
    let case = |name: &'static str, attrs: Vec<vog_onnx::proto::AttributeProto>, begin, out| {
        let w = w.clone();
        let [oh, ow]: [usize; 2] = out;
        let mut c = Case::op(name, "ConvTranspose", &[2, 2, 4, 5], x.clone())
            .constant("w", &[2, 3, 3, 3], &w)
            .attr(make_ints("strides", vec![2, 2]))
            .forward(move |x| {
                let rows = x.len() / 40;
                conv_transpose2d(x, [rows, 2, 4, 5], &w, [3, 3], 2, begin, out)
            })
            .mixed(3 * oh * ow);
        for a in attrs {
            c = c.attr(a);
        }
        c
    };
    // SAME: output 8 × 10, total 1 per axis: the one cropped row first (LOWER) or last (UPPER).
    // output_shape: the crop from the input's size (8 × 9: totals 1 and 2; 10 × 12: −1, the
    // output extended by a zero row and column at the end, as ONNX Runtime computes it).
    check_all(vec![
        case(
            "ConvTranspose SAME_UPPER",
            vec![make_s("auto_pad", "SAME_UPPER")],
            [0, 0],
            [8, 10],
        ),
        case(
            "ConvTranspose SAME_LOWER",
            vec![make_s("auto_pad", "SAME_LOWER")],
            [1, 1],
            [8, 10],
        ),
        case(
            "ConvTranspose output_shape [8, 9]",
            vec![make_ints("output_shape", vec![8, 9])],
            [1, 1],
            [8, 9],
        ),
        case(
            "ConvTranspose output_shape [10, 12] (zeros past the full output)",
            vec![make_ints("output_shape", vec![10, 12])],
            [0, 0],
            [10, 12],
        ),
        case(
            "ConvTranspose output_shape [8, 9] SAME_UPPER",
            vec![
                make_ints("output_shape", vec![8, 9]),
                make_s("auto_pad", "SAME_UPPER"),
            ],
            [0, 1],
            [8, 9],
        ),
    ]);
}

#[test]
fn recurrent_ops_agree_with_finite_differences() {
    // x is [rows 2, T 3, I 2], transposed to the op's [T, B, I] (ONNX Runtime runs layout 0
    // only); Y [T, D, B, H 2] is transposed back to [rows, T, D, H].
    let x = uniform(56, 12, -1.5, 1.5);
    let (b, t, i, h) = (2usize, 3usize, 2usize, 2usize);
    let case = |name: &'static str, kind: &'static str, reverse: Vec<bool>, extra: &str| {
        let dn = reverse.len();
        let g = match kind {
            "LSTM" => 4,
            "GRU" => 3,
            _ => 1,
        };
        let seed = name.len() as u64;
        let w = f32_of(&uniform(60 + seed, dn * g * h * i, -0.8, 0.8));
        let r = f32_of(&uniform(70 + seed, dn * g * h * h, -0.8, 0.8));
        let bias = f32_of(&uniform(80 + seed, dn * 2 * g * h, -0.5, 0.5));
        let h0 = f32_of(&uniform(90 + seed, b * dn * h, -0.5, 0.5));
        let c0 = f32_of(&uniform(95 + seed, b * dn * h, -0.5, 0.5));
        let with_states = extra.contains("states");
        let lens = extra.contains("lens").then(|| vec![3usize, 2]);
        let lbr = !extra.contains("reset after");
        let reference = Recurrent {
            kind,
            dims: [b, t, i, h],
            reverse: reverse.clone(),
            w: w.clone(),
            r: r.clone(),
            bias: bias.clone(),
            h0: with_states.then(|| h0.clone()),
            c0: (with_states && kind == "LSTM").then(|| c0.clone()),
            lens: lens.clone(),
            linear_before_reset: lbr,
        };
        let direction = match (dn, reverse[0]) {
            (2, _) => "bidirectional",
            (_, true) => "reverse",
            _ => "forward",
        };
        let (d, gh) = (dn as i64, (g * h) as i64);
        let mut c = Case::op(name, kind, &[2, 3, 2], x.clone())
            .forward(move |x| reference.run(x))
            .attr(make_i("hidden_size", h as i64))
            .attr(make_s("direction", direction))
            .constant("W", &[d, gh, i as i64], &w)
            .constant("R", &[d, gh, h as i64], &r)
            .constant("B", &[d, 2 * gh], &bias)
            .mixed(t * dn * h);
        if kind == "GRU" {
            c = c.attr(make_i("linear_before_reset", i64::from(lbr)));
        }
        let mut inputs: Vec<String> = ["xt", "W", "R", "B"].map(String::from).to_vec();
        if let Some(l) = &lens {
            c.inits.push(TensorProto {
                name: "lens".into(),
                dims: vec![2],
                data_type: DataType::Int32 as i32,
                int32_data: l.iter().map(|&v| v as i32).collect(),
                ..Default::default()
            });
            inputs.push("lens".into());
        } else {
            inputs.push(String::new());
        }
        if with_states {
            c.inits.push(doubles("h0", &[d, b as i64, h as i64], &h0));
            inputs.push("h0".into());
            if kind == "LSTM" {
                c.inits.push(doubles("c0", &[d, b as i64, h as i64], &c0));
                inputs.push("c0".into());
            }
        }
        c.nodes[0].input = inputs;
        c.nodes[0].output = vec!["yt".into()];
        let mut into = node("Transpose", &["x"], &["xt"]);
        into.attribute.push(make_ints("perm", vec![1, 0, 2]));
        let mut back = node("Transpose", &["yt"], &["y"]);
        back.attribute.push(make_ints("perm", vec![2, 0, 1, 3]));
        c.nodes.insert(0, into);
        c.nodes.push(back);
        c
    };
    check_all(vec![
        case("LSTM forward", "LSTM", vec![false], ""),
        case(
            "LSTM with sequence_lens and states",
            "LSTM",
            vec![false],
            "lens states",
        ),
        case("LSTM bidirectional", "LSTM", vec![false, true], "states"),
        case(
            "GRU reverse (reset before)",
            "GRU",
            vec![true],
            "states reset after",
        ),
        case("GRU linear_before_reset", "GRU", vec![false], "lens"),
        case("RNN bidirectional", "RNN", vec![false, true], ""),
        case(
            "LSTM bidirectional with sequence_lens",
            "LSTM",
            vec![false, true],
            "lens states",
        ),
        case("GRU reverse with sequence_lens", "GRU", vec![true], "lens"),
    ]);
}
