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

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::Tensor;
use vog_core::Target;
use vog_onnx::graph::{make_f, make_i, make_ints, value_info};
use vog_onnx::proto::tensor_proto::DataType;
use vog_onnx::proto::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use vog_onnx::GradSpec;

const DOUBLE: i32 = DataType::Double as i32;
const FLOAT: i32 = DataType::Float as i32;
/// The finite-difference step (float64: truncation ~h², rounding ~1e-16/h).
const H: f64 = 1e-5;
/// Largest error allowed, relative to the largest gradient magnitude of the case.
const TOLERANCE: f64 = 1e-7;
/// The same for an op ONNX Runtime runs in float32 only (its CPU provider has no double kernel
/// for `Softplus`, `HardSigmoid`, `Tan`, …): the rule runs in float32, the finite differences of
/// the op's own formula in float64.
const FLOAT_TOLERANCE: f64 = 2e-6;

/// The ONNX Runtime environment of this test process (from `ORT_DYLIB_PATH`).
fn env() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = std::env::var_os("ORT_DYLIB_PATH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .expect(
                "ORT_DYLIB_PATH must name libonnxruntime.so.1.31.1 (pip install onnxruntime==1.31.1); \
                 scripts/test.sh sets it",
            );
        ort::init_from(&lib)
            .unwrap_or_else(|e| panic!("loading ONNX Runtime from {}: {e}", lib.display()))
            .with_name("vog-rules")
            .build()
            .expect("ONNX Runtime starts")
    })
}

/// A double-precision constant.
fn doubles(name: &str, dims: &[i64], values: &[f64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DOUBLE,
        double_data: values.to_vec(),
        ..Default::default()
    }
}

/// `t` (a double constant) as `elem_type`: unchanged, or rounded to float32.
fn of_type(t: &TensorProto, elem_type: i32) -> TensorProto {
    if elem_type == DOUBLE {
        return t.clone();
    }
    TensorProto {
        data_type: FLOAT,
        float_data: t.double_data.iter().map(|&v| v as f32).collect(),
        double_data: Vec::new(),
        ..t.clone()
    }
}

/// `values` rounded to float32, as a float32 graph holds them.
fn f32_of(values: &[f64]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v as f32)).collect()
}

/// The mixing matrix of a [`Case::mixed`] case with `width` outputs per row: `[width, MIXED]`.
fn mix(width: usize) -> Vec<f64> {
    uniform(99, width * MIXED, -1.0, 1.0)
}

/// A node of the standard domain.
fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs.first().unwrap_or(&"")),
        ..Default::default()
    }
}

/// A small deterministic generator (SplitMix64) of inputs in `[lo, hi)`.
fn uniform(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = vog_core::SplitMix64::new(seed);
    (0..n).map(|_| lo + (hi - lo) * s.uniform()).collect()
}

/// The op's forward in float64 on the whole input (all rows, row-major), for the float32
/// fallback.
type Forward = Box<dyn Fn(&[f64]) -> Vec<f64>>;

/// One graph to check: `x` of `shape` (first axis: rows) through `nodes` to `y`, flattened to
/// the logits; `inits` are its constants.
struct Case {
    name: &'static str,
    /// The op's formula, for an elementwise op that ONNX Runtime runs in float32 only.
    reference: Option<Forward>,
    /// `Some(width)`: scores `MIXED` random combinations of the op's outputs instead of one output per row, so
    /// that every output element reaches the logits (for ops whose outputs each depend on many
    /// inputs: normalizations, pools, resizes).
    /// With `mixed`: the op's output elements per row.
    mixed: Option<usize>,
    opset: i64,
    shape: Vec<i64>,
    x: Vec<f64>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Case {
    /// `op` applied to `x` (and the constants named in `extra`), its output `y`.
    fn op(name: &'static str, op: &str, shape: &[i64], x: Vec<f64>) -> Case {
        Case {
            name,
            reference: None,
            mixed: None,
            opset: 17,
            shape: shape.to_vec(),
            x,
            nodes: vec![node(op, &["x"], &["y"])],
            inits: Vec::new(),
        }
    }

    fn attr(mut self, a: vog_onnx::proto::AttributeProto) -> Case {
        self.nodes[0].attribute.push(a);
        self
    }

    /// Adds a constant input to the first node.
    fn constant(mut self, name: &str, dims: &[i64], values: &[f64]) -> Case {
        self.nodes[0].input.push(name.into());
        self.inits.push(doubles(name, dims, values));
        self
    }

    /// The op's formula (elementwise, the node's attributes applied), for the float32 fallback.
    fn formula(mut self, f: impl Fn(f64) -> f64 + 'static) -> Case {
        self.reference = Some(Box::new(move |x: &[f64]| x.iter().map(|&v| f(v)).collect()));
        self
    }

    /// The op's forward on the whole input (rows × elements, row-major), in float64, for the
    /// float32 fallback of an op that is not elementwise. Constants it uses must be the float32
    /// values the graph holds ([`f32_of`]).
    fn forward(mut self, f: impl Fn(&[f64]) -> Vec<f64> + 'static) -> Case {
        self.reference = Some(Box::new(f));
        self
    }

    /// Scores random combinations of all `width` outputs per row (see [`Case::mixed`]).
    fn mixed(mut self, width: usize) -> Case {
        self.mixed = Some(width);
        self
    }

    fn opset(mut self, opset: i64) -> Case {
        self.opset = opset;
        self
    }

    fn model(&self, elem_type: i32) -> ModelProto {
        let mut nodes = self.nodes.clone();
        let mut inits: Vec<TensorProto> =
            self.inits.iter().map(|t| of_type(t, elem_type)).collect();
        let last = if self.mixed.is_some() {
            "flat"
        } else {
            "logits"
        };
        let mut flatten = node("Flatten", &["y"], &[last]);
        flatten.attribute.push(make_i("axis", 1));
        nodes.push(flatten);
        if let Some(width) = self.mixed {
            nodes.push(node("MatMul", &["flat", "mix"], &["logits"]));
            inits.push(of_type(
                &doubles("mix", &[width as i64, MIXED as i64], &mix(width)),
                elem_type,
            ));
        }
        let mut dims: Vec<Option<i64>> = self.shape.iter().map(|&d| Some(d)).collect();
        dims[0] = None;
        let output: ValueInfoProto = value_info("logits", elem_type, None);
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            graph: Some(GraphProto {
                name: self.name.into(),
                node: nodes,
                initializer: inits,
                input: vec![value_info("x", elem_type, Some(dims))],
                output: vec![output],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The gradient graph of the case in `elem_type`, in an ONNX Runtime session.
    fn session(&self, elem_type: i32) -> Result<(Session, vog_onnx::GradModel), String> {
        let spec = GradSpec {
            target: Target::Logit,
            vog_ops: false,
            ..Default::default()
        };
        let g = vog_onnx::gradient_model(&self.model(elem_type), &spec)
            .unwrap_or_else(|e| panic!("{}: no gradient graph: {e}", self.name));
        let bytes = vog_onnx::encode_model(&g.model);
        let session = Session::builder(env())
            .expect("session builder")
            .commit_from_memory(&bytes)
            .map_err(|e| e.to_string())?;
        Ok((session, g))
    }

    /// Builds the gradient graph, runs it, and compares with finite differences: of the graph's
    /// own logits in float64, or, where ONNX Runtime runs the op in float32 only, of the op's
    /// formula.
    fn check(&self) {
        match self.session(DOUBLE) {
            Ok((session, g)) => self.check_double(session, &g),
            // No double kernel (`Softplus`, `HardSigmoid`, `Tan`, …), or an op whose schema
            // allows float only (`Celu`).
            Err(e)
                if (e.contains("Could not find an implementation") || e.contains("Type Error"))
                    && self.reference.is_some() =>
            {
                let (session, g) = self.session(FLOAT).unwrap_or_else(|e| {
                    panic!(
                        "{}: ONNX Runtime refuses the gradient graph: {e}",
                        self.name
                    )
                });
                self.check_float(session, &g)
            }
            Err(e) => panic!(
                "{}: ONNX Runtime refuses the gradient graph: {e}",
                self.name
            ),
        }
    }

    /// The float32 fallback: the gradient graph in float32 against central differences of the
    /// op's forward in float64, at the same (float32) inputs.
    fn check_float(&self, mut session: Session, g: &vog_onnx::GradModel) {
        let forward = self.reference.as_ref().expect("a formula");
        let rows = self.shape[0] as usize;
        let x32: Vec<f32> = self.x.iter().map(|&v| v as f32).collect();
        let xt = Tensor::from_array((self.shape.clone(), x32.clone())).expect("x");
        let width = self.mixed.map_or(self.x.len() / rows, |_| MIXED);
        let classes: Vec<i64> = (0..rows).map(|r| (r % width) as i64).collect();
        let ct = Tensor::from_array((vec![rows as i64], classes)).expect("classes");
        let out = session
            .run(ort::inputs![g.input.as_str() => xt, g.classes_input.as_str() => ct])
            .unwrap_or_else(|e| panic!("{}: running the gradient graph: {e}", self.name));
        let (_, grad) = out[g.gradient_output.as_str()]
            .try_extract_tensor::<f32>()
            .expect("float gradient");
        // S(x) = Σ_r logit[r, r mod width], the logits being y itself or y·mix.
        let mix = self.mixed.map(|w| f32_of(&mix(w)));
        let score = |x: &[f64]| -> f64 {
            let y = forward(x);
            let per_row = y.len() / rows;
            (0..rows)
                .map(|r| {
                    let row = &y[r * per_row..(r + 1) * per_row];
                    match &mix {
                        Some(m) => row
                            .iter()
                            .enumerate()
                            .map(|(j, v)| v * m[j * MIXED + r % MIXED])
                            .sum::<f64>(),
                        None => row[r % per_row],
                    }
                })
                .sum()
        };
        let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let fd: Vec<f64> = (0..x64.len())
            .map(|i| {
                let mut xp = x64.clone();
                xp[i] += H;
                let mut xm = x64.clone();
                xm[i] -= H;
                (score(&xp) - score(&xm)) / (2.0 * H)
            })
            .collect();
        let got: Vec<f64> = grad.iter().map(|&v| f64::from(v)).collect();
        self.compare(&got, &fd, FLOAT_TOLERANCE);
    }

    /// Largest difference between `gradient` and `fd`, relative to the largest gradient.
    fn compare(&self, gradient: &[f64], fd: &[f64], tolerance: f64) {
        let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        let mut worst = (0.0f64, 0usize);
        for (i, (g, f)) in gradient.iter().zip(fd).enumerate() {
            let err = (g - f).abs() / scale;
            if err.is_nan() || err > worst.0 {
                worst = (err, i);
            }
        }
        assert_eq!(gradient.len(), fd.len(), "{}: gradient length", self.name);
        assert!(
            worst.0 <= tolerance,
            "{}: element {} has gradient {} but finite differences give {} (error {:.2e} of the largest, {scale:.3e})",
            self.name,
            worst.1,
            gradient[worst.1],
            fd[worst.1],
            worst.0
        );
    }

    /// Float64 throughout: the gradient graph against central differences of its own logits.
    fn check_double(&self, mut session: Session, g: &vog_onnx::GradModel) {
        let rows = self.shape[0] as usize;
        // The row's class: every case's op keeps the shape, so the logits are as wide as a row.
        let width0 = if self.mixed.is_some() {
            MIXED
        } else {
            self.x.len() / rows
        };
        let mut run = |x: &[f64]| -> (Vec<f64>, Vec<f64>, usize) {
            let xt = Tensor::from_array((self.shape.clone(), x.to_vec())).expect("x");
            let classes: Vec<i64> = (0..rows).map(|r| (r % width0) as i64).collect();
            let ct = Tensor::from_array((vec![rows as i64], classes)).expect("classes");
            let out = session
                .run(ort::inputs![g.input.as_str() => xt, g.classes_input.as_str() => ct])
                .unwrap_or_else(|e| panic!("{}: running the gradient graph: {e}", self.name));
            let (lshape, logits) = out[g.output.as_str()]
                .try_extract_tensor::<f64>()
                .expect("double logits");
            let (_, grad) = out[g.gradient_output.as_str()]
                .try_extract_tensor::<f64>()
                .expect("double gradient");
            (logits.to_vec(), grad.to_vec(), lshape[1] as usize)
        };
        let (_, gradient, width) = run(&self.x);
        assert_eq!(
            width, width0,
            "{}: logits as wide as the flattened input",
            self.name
        );
        // S(x) = Σ_r logit[r, r mod width]: the class of row r is r mod width (given above).
        let score = |logits: &[f64]| {
            (0..rows)
                .map(|r| logits[r * width + r % width])
                .sum::<f64>()
        };
        let fd: Vec<f64> = (0..self.x.len())
            .map(|i| {
                let mut xp = self.x.clone();
                xp[i] += H;
                let mut xm = self.x.clone();
                xm[i] -= H;
                (score(&run(&xp).0) - score(&run(&xm).0)) / (2.0 * H)
            })
            .collect();
        self.compare(&gradient, &fd, TOLERANCE);
    }
}

/// The logits of a [`Case::mixed`] case.
const MIXED: usize = 3;

/// An elementwise case's input: 12 rows of one feature, so every element is some row's logit.
const ROWS: [i64; 2] = [12, 1];
/// A broadcasting case's input: 6 rows of 2 features (row `r` scores feature `r mod 2`).
const PAIRS: [i64; 2] = [6, 2];

fn check_all(cases: Vec<Case>) {
    for c in &cases {
        c.check();
    }
}

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

/// A 2-D pool with `ceil_mode` over `[planes, H, W]`, as ONNX Runtime and PyTorch compute it:
/// the last window starts inside the input or its left padding; an average's divisor counts the
/// explicit padding with `include_pad`, never the end the last windows reach past it.
fn pool2d(
    x: &[f64],
    [planes, h, w]: [usize; 3],
    k: usize,
    s: usize,
    p: usize,
    avg: bool,
    include_pad: bool,
) -> Vec<f64> {
    let out = |n: usize| {
        let mut o = (n + 2 * p - k).div_ceil(s) + 1;
        if (o - 1) * s >= n + p {
            o -= 1;
        }
        o
    };
    let (oh, ow) = (out(h), out(w));
    let mut y = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks(h * w).take(planes) {
        for i in 0..oh {
            for j in 0..ow {
                let (h0, w0) = ((i * s) as i64 - p as i64, (j * s) as i64 - p as i64);
                let (h1, w1) = (
                    (h0 + k as i64).min((h + p) as i64),
                    (w0 + k as i64).min((w + p) as i64),
                );
                let padded = ((h1 - h0) * (w1 - w0)) as f64;
                let (a0, b0) = (h0.max(0) as usize, w0.max(0) as usize);
                let (a1, b1) = (h1.min(h as i64) as usize, w1.min(w as i64) as usize);
                let cells = (a0..a1).flat_map(|a| (b0..b1).map(move |b| plane[a * w + b]));
                y.push(if avg {
                    let n = ((a1 - a0) * (b1 - b0)) as f64;
                    cells.sum::<f64>() / if include_pad { padded } else { n }
                } else {
                    cells.fold(f64::NEG_INFINITY, f64::max)
                });
            }
        }
    }
    y
}

/// `Selu` with float32 attributes, as the graph has them.
fn selu(x: f64, alpha: f32, gamma: f32) -> f64 {
    let (a, g) = (f64::from(alpha), f64::from(gamma));
    if x > 0.0 {
        g * x
    } else {
        g * a * x.exp_m1()
    }
}

/// `Celu` with a float32 `alpha`.
fn celu(x: f64, alpha: f32) -> f64 {
    let a = f64::from(alpha);
    x.max(0.0) + (a * (x / a).exp_m1()).min(0.0)
}

/// `n` = 12 points spread evenly over `[lo, hi)` (offset, so that none falls on a round value):
/// every piece of a piecewise op gets some.
fn spread(lo: f64, hi: f64) -> Vec<f64> {
    (0..12)
        .map(|i| lo + (i as f64 + 0.37) * (hi - lo) / 12.0)
        .collect()
}

/// Keeps values at least `gap` away from every point in `kinks` (where an op has no derivative).
fn away_from(mut x: Vec<f64>, kinks: &[f64], gap: f64) -> Vec<f64> {
    for v in x.iter_mut() {
        for &k in kinks {
            if (*v - k).abs() < gap {
                *v = k + if *v >= k { gap } else { -gap };
            }
        }
    }
    x
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
