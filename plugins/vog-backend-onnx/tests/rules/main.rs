//! Every gradient rule of `vog_onnx::gradient_model` against central finite differences, in
//! float64, run by ONNX Runtime.
//!
//! Each case is a small graph `x → op(s) → Flatten → logits [N, C]` on a double-precision
//! input. The gradient graph's `∂ Σ_r logit[r, c_r] / ∂x` (one class per row) is compared with
//! `(S(x + h·eᵢ) − S(x − h·eᵢ)) / 2h` for every element `i`, where `S` is the same sum read from
//! the gradient graph's own logits at the perturbed input. Inputs are drawn away from the points
//! where an op is not differentiable (kinks, ties), so the comparison is of the rule alone.
//!
//! To test a new rule, add a [`Case`] to the list of its family below.

mod case;
mod forms;
mod reference;

use case::{check_all, doubles, f32_of, node, uniform, Case, PAIRS, ROWS};
use reference::{away_from, celu, conv2d_same, pool2d, selu, spread};
use vog_onnx::graph::{make_f, make_i, make_ints, make_s};
use vog_onnx::proto::tensor_proto::DataType;
use vog_onnx::proto::TensorProto;

/// `Gelu` is left to the model tests against PyTorch (`tests/onnx.rs`): its rule uses `Erf`,
/// which ONNX Runtime runs in float32 only, and the standard library has no `erf` to take the
/// float64 differences of.
#[test]
fn activations_already_supported_agree_with_finite_differences() {
    let x = || uniform(1, 12, -2.0, 2.0);
    check_all(vec![
        Case::op("Sigmoid", "Sigmoid", &ROWS, x()).formula(|x: f64| 1.0 / (1.0 + (-x).exp())),
        Case::op("Tanh", "Tanh", &ROWS, x()).formula(|x: f64| x.tanh()),
        Case::op("Softplus", "Softplus", &ROWS, x()).formula(|x: f64| x.exp().ln_1p()),
        Case::op("Elu", "Elu", &ROWS, x())
            .attr(make_f("alpha", 0.7))
            .formula(|x: f64| {
                if x > 0.0 {
                    x
                } else {
                    f64::from(0.7f32) * x.exp_m1()
                }
            }),
        Case::op("Exp", "Exp", &ROWS, x()).formula(|x: f64| x.exp()),
    ]);
}

#[test]
fn piecewise_activations_agree_with_finite_differences() {
    // Every piece of HardSwish: below −3, between, above 3.
    let wide = || {
        vec![
            -4.7, -3.6, -3.1, -2.9, -1.3, -0.2, 0.4, 1.7, 2.8, 3.2, 3.9, 4.6,
        ]
    };
    check_all(vec![
        Case::op(
            "HardSigmoid",
            "HardSigmoid",
            &ROWS,
            away_from(spread(-4.0, 4.0), &[-2.5, 2.5], 0.05),
        )
        .formula(|x: f64| (f64::from(0.2f32) * x + 0.5).clamp(0.0, 1.0)),
        Case::op(
            "HardSigmoid(α, β)",
            "HardSigmoid",
            &ROWS,
            away_from(spread(-4.0, 4.0), &[-3.0, 3.0], 0.05),
        )
        .attr(make_f("alpha", 1.0 / 6.0))
        .attr(make_f("beta", 0.5))
        .formula(|x: f64| (f64::from(1.0f32 / 6.0) * x + 0.5).clamp(0.0, 1.0)),
        Case::op("HardSwish", "HardSwish", &ROWS, wide())
            .formula(|x: f64| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        Case::op(
            "ThresholdedRelu",
            "ThresholdedRelu",
            &ROWS,
            away_from(spread(-2.0, 3.0), &[1.0], 0.05),
        )
        .formula(|x: f64| if x > 1.0 { x } else { 0.0 }),
        Case::op(
            "ThresholdedRelu(α)",
            "ThresholdedRelu",
            &ROWS,
            away_from(spread(-2.0, 3.0), &[0.4], 0.05),
        )
        .attr(make_f("alpha", 0.4))
        .formula(|x: f64| if x > f64::from(0.4f32) { x } else { 0.0 }),
        Case::op(
            "Selu",
            "Selu",
            &ROWS,
            away_from(spread(-3.0, 3.0), &[0.0], 0.05),
        )
        .formula(|x: f64| selu(x, 1.673_263_2, 1.050_701)),
        Case::op(
            "Selu(α, γ)",
            "Selu",
            &ROWS,
            away_from(spread(-3.0, 3.0), &[0.0], 0.05),
        )
        .attr(make_f("alpha", 1.5))
        .attr(make_f("gamma", 1.1))
        .formula(|x: f64| selu(x, 1.5, 1.1)),
        Case::op(
            "Celu",
            "Celu",
            &ROWS,
            away_from(spread(-3.0, 3.0), &[0.0], 0.05),
        )
        .formula(|x: f64| celu(x, 1.0)),
        Case::op(
            "Celu(α)",
            "Celu",
            &ROWS,
            away_from(spread(-3.0, 3.0), &[0.0], 0.05),
        )
        .attr(make_f("alpha", 0.5))
        .formula(|x: f64| celu(x, 0.5)),
        Case::op(
            "PRelu (one slope)",
            "PRelu",
            &PAIRS,
            away_from(spread(-2.0, 2.0), &[0.0], 0.05),
        )
        .constant("slope", &[1], &[0.25]),
        Case::op(
            "PRelu (a slope per feature)",
            "PRelu",
            &PAIRS,
            away_from(spread(-2.0, 2.0), &[0.0], 0.05),
        )
        .constant("slope", &[2], &[-0.2, 1.5]),
    ]);
}

#[test]
fn smooth_activations_agree_with_finite_differences() {
    let x = || uniform(13, 12, -3.0, 3.0);
    check_all(vec![
        Case::op("Mish", "Mish", &ROWS, x())
            .opset(18)
            .formula(|x: f64| x * x.exp().ln_1p().tanh()),
        Case::op("Softsign", "Softsign", &ROWS, x()).formula(|x: f64| x / (1.0 + x.abs())),
    ]);
}

#[test]
fn trigonometric_and_hyperbolic_functions_agree_with_finite_differences() {
    let inside = || uniform(14, 12, -0.9, 0.9);
    check_all(vec![
        Case::op("Sin", "Sin", &ROWS, uniform(15, 12, -3.0, 3.0)).formula(|x: f64| x.sin()),
        Case::op("Cos", "Cos", &ROWS, uniform(16, 12, -3.0, 3.0)).formula(|x: f64| x.cos()),
        Case::op("Tan", "Tan", &ROWS, uniform(17, 12, -1.2, 1.2)).formula(|x: f64| x.tan()),
        Case::op("Atan", "Atan", &ROWS, uniform(18, 12, -3.0, 3.0)).formula(|x: f64| x.atan()),
        Case::op("Asin", "Asin", &ROWS, inside()).formula(|x: f64| x.asin()),
        Case::op("Acos", "Acos", &ROWS, inside()).formula(|x: f64| x.acos()),
        Case::op("Sinh", "Sinh", &ROWS, uniform(19, 12, -2.0, 2.0)).formula(|x: f64| x.sinh()),
        Case::op("Cosh", "Cosh", &ROWS, uniform(20, 12, -2.0, 2.0)).formula(|x: f64| x.cosh()),
        Case::op("Asinh", "Asinh", &ROWS, uniform(21, 12, -3.0, 3.0)).formula(|x: f64| x.asinh()),
        Case::op("Acosh", "Acosh", &ROWS, uniform(22, 12, 1.1, 4.0)).formula(|x: f64| x.acosh()),
        Case::op("Atanh", "Atanh", &ROWS, inside()).formula(|x: f64| x.atanh()),
    ]);
}

#[test]
fn rounding_ops_have_zero_gradient() {
    // Away from the steps, where the derivative is zero.
    let x = || {
        away_from(
            uniform(23, 12, -3.0, 3.0),
            &[-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
            0.05,
        )
    };
    for op in ["Sign", "Floor", "Ceil", "Round"] {
        // A zero gradient alone cannot be compared relatively: add the input back, so the rule's
        // zero shows as an exact 1 in the sum's gradient.
        let mut c = Case::op(op, op, &ROWS, x());
        c.nodes[0].output = vec!["r".into()];
        c.nodes.push(node("Add", &["r", "x"], &["y"]));
        c.check();
    }
}

#[test]
fn max_and_min_route_the_gradient_to_the_chosen_input() {
    // Two inputs and a broadcast third; no ties (a tie would split the gradient).
    for op in ["Max", "Min"] {
        let mut c = Case::op(op, op, &PAIRS, uniform(24, 12, -2.0, 2.0))
            .constant("b", &[6, 2], &uniform(25, 12, -2.0, 2.0))
            .constant("c", &[2], &[0.3, -0.4]);
        c.name = if op == "Max" {
            "Max (3 inputs, broadcast)"
        } else {
            "Min (3 inputs, broadcast)"
        };
        c.check();
        let one = Case::op(
            if op == "Max" {
                "Max (one input)"
            } else {
                "Min (one input)"
            },
            op,
            &ROWS,
            uniform(26, 12, -2.0, 2.0),
        );
        one.check();
    }
}

#[test]
fn normalizations_agree_with_finite_differences() {
    // [N, C, spatial]: 2 examples, 3 channels, 2 × 3 positions; all outputs reach the logits.
    let x = uniform(30, 36, -2.0, 2.0);
    check_all(vec![
        Case::op(
            "InstanceNormalization",
            "InstanceNormalization",
            &[2, 3, 2, 3],
            x.clone(),
        )
        .constant("scale", &[3], &[0.7, -1.3, 2.0])
        .constant("bias", &[3], &[0.1, 0.2, -0.3])
        .attr(make_f("epsilon", 1e-3))
        .mixed(18)
        .forward(|x| {
            let (scale, bias) = (f32_of(&[0.7, -1.3, 2.0]), f32_of(&[0.1, 0.2, -0.3]));
            let eps = f64::from(1e-3f32);
            // One group per (example, channel) of 6 positions.
            x.chunks(6)
                .enumerate()
                .flat_map(|(k, group)| {
                    let c = k % 3;
                    let mean = group.iter().sum::<f64>() / 6.0;
                    let var = group.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
                    let sd = (var + eps).sqrt();
                    group
                        .iter()
                        .map(|v| scale[c] * (v - mean) / sd + bias[c])
                        .collect::<Vec<_>>()
                })
                .collect()
        }),
        Case::op("LayerNormalization", "LayerNormalization", &[2, 3, 2, 3], x)
            .constant("scale", &[3], &[0.7, -1.3, 2.0])
            .constant("bias", &[3], &[0.1, 0.2, -0.3])
            .attr(make_i("axis", -1))
            .mixed(18),
    ]);
}

#[test]
fn pools_with_ceil_mode_agree_with_finite_differences() {
    // [N, C, H, W] = [2, 2, 5, 5]: with ceil_mode the last windows reach past the input.
    let x = uniform(31, 100, -2.0, 2.0);
    let pool = |name: &'static str, op: &str, kernel: i64, pads: i64, include_pad: bool| {
        let avg = op == "AveragePool";
        let (k, p) = (kernel as usize, pads as usize);
        let mut c = Case::op(name, op, &[2, 2, 5, 5], x.clone())
            .forward(move |x| pool2d(x, [4, 5, 5], k, 2, p, avg, include_pad))
            .attr(make_ints("kernel_shape", vec![kernel, kernel]))
            .attr(make_ints("strides", vec![2, 2]))
            .attr(make_ints("pads", vec![pads; 4]))
            .attr(make_i("ceil_mode", 1))
            .mixed(18);
        if op == "AveragePool" {
            c = c.attr(make_i("count_include_pad", i64::from(include_pad)));
        }
        c
    };
    check_all(vec![
        pool("AveragePool 2×2/2 ceil", "AveragePool", 2, 0, false),
        pool(
            "AveragePool 2×2/2 ceil, include pad",
            "AveragePool",
            2,
            0,
            true,
        ),
        pool("AveragePool 3×3/2 pad 1 ceil", "AveragePool", 3, 1, false),
        pool(
            "AveragePool 3×3/2 pad 1 ceil, include pad",
            "AveragePool",
            3,
            1,
            true,
        ),
        pool("MaxPool 2×2/2 ceil", "MaxPool", 2, 0, false),
        pool("MaxPool 3×3/2 pad 1 ceil", "MaxPool", 3, 1, false),
    ]);
}

#[test]
fn same_padded_convolutions_at_any_stride_agree_with_finite_differences() {
    // [N, C, H, W] = [2, 2, 7, 6] into 3 channels, `auto_pad` SAME_UPPER or SAME_LOWER at stride
    // 2 or 3: the padding depends on the input size and is uneven for odd totals. (ONNX Runtime
    // runs no dilated convolution with SAME padding, so none is tested.)
    let x = uniform(36, 2 * 2 * 7 * 6, -2.0, 2.0);
    let weight = f32_of(&uniform(37, 3 * 2 * 3 * 3, -1.0, 1.0));
    let conv = |name: &'static str, mode: &str, stride: usize, dilation: usize| {
        let lower = mode == "SAME_LOWER";
        let w = weight.clone();
        let (oh, ow) = (7usize.div_ceil(stride), 6usize.div_ceil(stride));
        Case::op(name, "Conv", &[2, 2, 7, 6], x.clone())
            .constant("W", &[3, 2, 3, 3], &weight)
            .attr(make_s("auto_pad", mode))
            .attr(make_ints("strides", vec![stride as i64; 2]))
            .attr(make_ints("dilations", vec![dilation as i64; 2]))
            .forward(move |x| {
                let rows = x.len() / (2 * 7 * 6);
                conv2d_same(x, [rows, 2, 7, 6], &w, [3, 3], stride, dilation, lower)
            })
            .mixed(3 * oh * ow)
    };
    check_all(vec![
        conv("Conv 3×3/2 SAME_UPPER", "SAME_UPPER", 2, 1),
        conv("Conv 3×3/2 SAME_LOWER", "SAME_LOWER", 2, 1),
        conv("Conv 3×3/3 SAME_UPPER", "SAME_UPPER", 3, 1),
    ]);
}

#[test]
fn resize_in_every_mode_agrees_with_finite_differences() {
    // [N, C, H, W] = [2, 2, 3, 4] resized ×2 by ×1.5: every output reaches the logits.
    let x = uniform(32, 48, -2.0, 2.0);
    let resize = |name: &'static str, mode: &str, coords: &str| {
        Case::op(name, "Resize", &[2, 2, 3, 4], x.clone())
            .constant_f32("roi", &[0], &[])
            .constant_f32("scales", &[4], &[1.0, 1.0, 2.0, 1.5])
            .attr(make_s("mode", mode))
            .attr(make_s("coordinate_transformation_mode", coords))
            .mixed(72)
            .linear()
            .opset(13)
    };
    let mut cases = vec![
        resize("Resize nearest asymmetric", "nearest", "asymmetric")
            .attr(make_s("nearest_mode", "floor")),
        resize("Resize nearest half_pixel", "nearest", "half_pixel"),
        resize("Resize linear half_pixel", "linear", "half_pixel"),
        resize("Resize linear align_corners", "linear", "align_corners"),
        resize("Resize linear asymmetric", "linear", "asymmetric"),
        resize(
            "Resize linear pytorch_half_pixel",
            "linear",
            "pytorch_half_pixel",
        ),
        resize("Resize cubic half_pixel", "cubic", "half_pixel"),
        resize("Resize cubic align_corners", "cubic", "align_corners")
            .attr(make_f("cubic_coeff_a", -0.5)),
    ];
    // By output size instead of scale.
    let mut sized = Case::op("Resize linear by sizes", "Resize", &[2, 2, 3, 4], x.clone())
        .attr(make_s("mode", "linear"))
        .attr(make_s("coordinate_transformation_mode", "half_pixel"))
        .mixed(2 * 5 * 7)
        .linear()
        .opset(13);
    sized.nodes[0].input = vec!["x".into(), String::new(), String::new(), "sizes".into()];
    sized.inits.push(TensorProto {
        name: "sizes".into(),
        dims: vec![4],
        data_type: DataType::Int64 as i32,
        int64_data: vec![2, 2, 5, 7],
        ..Default::default()
    });
    cases.push(sized);
    check_all(cases);
}

#[test]
fn reductions_agree_with_finite_differences() {
    // [rows, 3, 4] reduced over the last axis (attribute at opset 17, input at 18), kept or not,
    // and over everything but the rows; every reduced value reaches the logits.
    let x = uniform(33, 24, -2.0, 2.0);
    // ReduceProd again where some groups hold one zero or two (its rule must not divide by
    // them): row 0's first group of 4 has one, its second two.
    let mut with_zeros = x.clone();
    for i in [1, 4, 6] {
        with_zeros[i] = 0.0;
    }
    let mut cases = Vec::new();
    for (op, x) in [
        ("ReduceMax", &x),
        ("ReduceMin", &x),
        ("ReduceL1", &x),
        ("ReduceL2", &x),
        ("ReduceSumSquare", &x),
        ("ReduceLogSumExp", &x),
        ("ReduceProd", &x),
        ("ReduceProd with zeros", &with_zeros),
    ] {
        let op_name = op.split(' ').next().unwrap();
        for keep in [0, 1] {
            let name: &'static str =
                Box::leak(format!("{op} axis 2 keepdims {keep}").into_boxed_str());
            cases.push(
                Case::op(name, op_name, &[2, 3, 4], x.clone())
                    .attr(make_ints("axes", vec![2]))
                    .attr(make_i("keepdims", keep))
                    .mixed(3),
            );
            let name: &'static str =
                Box::leak(format!("{op} axes [1, 2] as input, keepdims {keep}").into_boxed_str());
            let mut c = Case::op(name, op_name, &[2, 3, 4], x.clone())
                .attr(make_i("keepdims", keep))
                .mixed(1)
                .opset(18);
            c.nodes[0].input.push("axes".into());
            c.inits.push(TensorProto {
                name: "axes".into(),
                dims: vec![2],
                data_type: DataType::Int64 as i32,
                int64_data: vec![1, 2],
                ..Default::default()
            });
            cases.push(c);
        }
    }
    check_all(cases);
}

#[test]
fn cumulative_sums_and_triangles_agree_with_finite_differences() {
    // [rows, 3, 4]; every output reaches the logits.
    let x = uniform(34, 24, -2.0, 2.0);
    let mut cases = Vec::new();
    for (exclusive, reverse) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let name: &'static str = Box::leak(
            format!("CumSum axis 2 exclusive {exclusive} reverse {reverse}").into_boxed_str(),
        );
        let mut c = Case::op(name, "CumSum", &[2, 3, 4], x.clone())
            .attr(make_i("exclusive", exclusive))
            .attr(make_i("reverse", reverse))
            .mixed(12);
        c.nodes[0].input.push("axis".into());
        c.inits.push(int64s("axis", &[], &[2]));
        cases.push(c);
    }
    for (upper, k) in [(1, 0), (0, 0), (1, 1), (0, -1)] {
        let name: &'static str = Box::leak(format!("Trilu upper {upper} k {k}").into_boxed_str());
        let mut c = Case::op(name, "Trilu", &[2, 3, 4], x.clone())
            .attr(make_i("upper", upper))
            .mixed(12)
            .opset(14);
        c.nodes[0].input.push("k".into());
        c.inits.push(int64s("k", &[], &[k]));
        cases.push(c);
    }
    check_all(cases);
}

#[test]
fn depth_and_space_rearrangements_agree_with_finite_differences() {
    // [2, 8, 2, 2] ↔ [2, 2, 4, 4] with blocks of 2; both modes of DepthToSpace.
    let deep = uniform(35, 64, -2.0, 2.0);
    let wide = uniform(36, 64, -2.0, 2.0);
    let mut cases = Vec::new();
    for mode in ["DCR", "CRD"] {
        let name: &'static str = Box::leak(format!("DepthToSpace {mode}").into_boxed_str());
        cases.push(
            Case::op(name, "DepthToSpace", &[2, 8, 2, 2], deep.clone())
                .attr(make_i("blocksize", 2))
                .attr(make_s("mode", mode))
                .linear()
                .mixed(32),
        );
    }
    cases.push(
        Case::op("SpaceToDepth", "SpaceToDepth", &[2, 2, 4, 4], wide)
            .attr(make_i("blocksize", 2))
            .linear()
            .mixed(32),
    );
    check_all(cases);
}

#[test]
fn lp_normalization_agrees_with_finite_differences() {
    // [2, 3, 4] normalized along each axis, with L2 and L1 norms (inputs away from zero so that
    // every sign is stable under the differences).
    let x = away_from(uniform(37, 24, -2.0, 2.0), &[0.0], 0.2);
    let mut cases = Vec::new();
    for (p, axis) in [(2, 1), (2, -1), (1, 2), (1, 1)] {
        let name: &'static str =
            Box::leak(format!("LpNormalization p {p} axis {axis}").into_boxed_str());
        cases.push(
            Case::op(name, "LpNormalization", &[2, 3, 4], x.clone())
                .attr(make_i("p", p))
                .attr(make_i("axis", axis))
                .mixed(12),
        );
    }
    check_all(cases);
}

#[test]
fn matmul_with_vector_operands_agrees_with_finite_differences() {
    let x = uniform(38, 24, -2.0, 2.0);
    let mut cases = Vec::new();
    // [2, 3, 4] · [4] → [2, 3]: a vector on the right.
    let mut right = Case::op("MatMul matrix · vector", "MatMul", &[2, 3, 4], x.clone())
        .constant("w", &[4], &uniform(39, 4, -1.0, 1.0))
        .mixed(3);
    right.nodes[0].input = vec!["x".into(), "w".into()];
    cases.push(right);
    // [3] · [2, 3, 4] → [2, 4]: a vector on the left.
    let mut left = Case::op("MatMul vector · matrix", "MatMul", &[2, 3, 4], x)
        .constant("v", &[3], &uniform(40, 3, -1.0, 1.0))
        .mixed(4);
    left.nodes[0].input = vec!["v".into(), "x".into()];
    cases.push(left);
    // The vector itself on the gradient's path: one row [1, 4], its row 0 as a vector, times a
    // [4, 4] matrix (on either side), plus the vector again, so that the vector's two gradients
    // must have its own shape to add up; back to a row.
    for (name, vector_first) in [
        ("MatMul input vector · matrix", true),
        ("MatMul matrix · input vector", false),
    ] {
        let mut c = Case::op(name, "Gather", &[1, 4], uniform(41, 4, -2.0, 2.0)).mixed(4);
        c.nodes[0].input.push("row".into());
        c.nodes[0].output = vec!["vec".into()];
        c.nodes[0].attribute.push(make_i("axis", 0));
        c.inits.push(int64s("row", &[], &[0]));
        let inputs = if vector_first {
            ["vec", "m"]
        } else {
            ["m", "vec"]
        };
        c.inits
            .push(doubles("m", &[4, 4], &uniform(42, 16, -1.0, 1.0)));
        c.nodes.push(node("MatMul", &inputs, &["prod"]));
        c.nodes.push(node("Add", &["prod", "vec"], &["both"]));
        c.nodes.push(node("Unsqueeze", &["both", "zero"], &["y"]));
        c.inits.push(int64s("zero", &[1], &[0]));
        cases.push(c);
    }
    check_all(cases);
}

/// An int64 constant.
pub(crate) fn int64s(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}
