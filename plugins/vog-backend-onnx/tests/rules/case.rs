//! The harness of `tests/rules/main.rs`: a [`Case`] is a small graph around one op, checked against
//! finite differences.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::Tensor;
use vog_core::Target;
use vog_onnx::graph::{make_i, value_info};
use vog_onnx::proto::tensor_proto::DataType;
use vog_onnx::proto::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use vog_onnx::GradSpec;

pub(crate) const DOUBLE: i32 = DataType::Double as i32;
pub(crate) const FLOAT: i32 = DataType::Float as i32;
/// The finite-difference step (float64: truncation ~h², rounding ~1e-16/h).
pub(crate) const H: f64 = 1e-5;
/// Largest error allowed, relative to the largest gradient magnitude of the case.
pub(crate) const TOLERANCE: f64 = 1e-7;
/// The same for an op ONNX Runtime runs in float32 only (its CPU provider has no double kernel
/// for `Softplus`, `HardSigmoid`, `Tan`, …): the rule runs in float32, the finite differences of
/// the op's own formula in float64.
pub(crate) const FLOAT_TOLERANCE: f64 = 2e-6;
/// The same for a linear op run in float32 (differences of float32 logits).
pub(crate) const LINEAR_TOLERANCE: f64 = 1e-5;

/// The ONNX Runtime environment of this test process (from `ORT_DYLIB_PATH`).
pub(crate) fn env() -> &'static ort::environment::Environment {
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
pub(crate) fn doubles(name: &str, dims: &[i64], values: &[f64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DOUBLE,
        double_data: values.to_vec(),
        ..Default::default()
    }
}

/// `t` (a double constant) as `elem_type`: unchanged, or rounded to float32.
pub(crate) fn of_type(t: &TensorProto, elem_type: i32) -> TensorProto {
    if elem_type == DOUBLE || t.data_type != DOUBLE {
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
pub(crate) fn f32_of(values: &[f64]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v as f32)).collect()
}

/// The mixing matrix of a [`Case::mixed`] case with `width` outputs per row: `[width, MIXED]`.
pub(crate) fn mix(width: usize) -> Vec<f64> {
    uniform(99, width * MIXED, -1.0, 1.0)
}

/// A node of the standard domain.
pub(crate) fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs.first().unwrap_or(&"")),
        ..Default::default()
    }
}

/// A small deterministic generator (SplitMix64) of inputs in `[lo, hi)`.
pub(crate) fn uniform(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = vog_core::SplitMix64::new(seed);
    (0..n).map(|_| lo + (hi - lo) * s.uniform()).collect()
}

/// The op's forward in float64 on the whole input (all rows, row-major), for the float32
/// fallback.
pub(crate) type Forward = Box<dyn Fn(&[f64]) -> Vec<f64>>;

/// One graph to check: `x` of `shape` (first axis: rows) through `nodes` to `y`, flattened to
/// the logits; `inits` are its constants.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    /// The op's formula, for an elementwise op that ONNX Runtime runs in float32 only.
    pub(crate) reference: Option<Forward>,
    /// `Some(width)`: scores `MIXED` random combinations of the op's outputs instead of one output per row, so
    /// that every output element reaches the logits (for ops whose outputs each depend on many
    /// inputs: normalizations, pools, resizes).
    /// With `mixed`: the op's output elements per row.
    pub(crate) mixed: Option<usize>,
    /// The op is linear in its input (resizes, data movement): where ONNX Runtime has no double
    /// kernel, differences of its float32 logits with a step of 1 are exact up to rounding.
    pub(crate) linear: bool,
    pub(crate) opset: i64,
    pub(crate) shape: Vec<i64>,
    pub(crate) x: Vec<f64>,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) inits: Vec<TensorProto>,
}

impl Case {
    /// `op` applied to `x` (and the constants named in `extra`), its output `y`.
    pub(crate) fn op(name: &'static str, op: &str, shape: &[i64], x: Vec<f64>) -> Case {
        Case {
            name,
            reference: None,
            mixed: None,
            linear: false,
            opset: 17,
            shape: shape.to_vec(),
            x,
            nodes: vec![node(op, &["x"], &["y"])],
            inits: Vec::new(),
        }
    }

    pub(crate) fn attr(mut self, a: vog_onnx::proto::AttributeProto) -> Case {
        self.nodes[0].attribute.push(a);
        self
    }

    /// Adds a constant input to the first node.
    pub(crate) fn constant(mut self, name: &str, dims: &[i64], values: &[f64]) -> Case {
        self.nodes[0].input.push(name.into());
        self.inits.push(doubles(name, dims, values));
        self
    }

    /// The op's formula (elementwise, the node's attributes applied), for the float32 fallback.
    pub(crate) fn formula(mut self, f: impl Fn(f64) -> f64 + 'static) -> Case {
        self.reference = Some(Box::new(move |x: &[f64]| x.iter().map(|&v| f(v)).collect()));
        self
    }

    /// The op's forward on the whole input (rows × elements, row-major), in float64, for the
    /// float32 fallback of an op that is not elementwise. Constants it uses must be the float32
    /// values the graph holds ([`f32_of`]).
    pub(crate) fn forward(mut self, f: impl Fn(&[f64]) -> Vec<f64> + 'static) -> Case {
        self.reference = Some(Box::new(f));
        self
    }

    /// Marks the op linear in its input (see [`Case::linear`]).
    pub(crate) fn linear(mut self) -> Case {
        self.linear = true;
        self
    }

    /// Scores random combinations of all `width` outputs per row (see [`Case::mixed`]).
    pub(crate) fn mixed(mut self, width: usize) -> Case {
        self.mixed = Some(width);
        self
    }

    /// Adds a float32 input to the first node whatever the graph's type (`Resize`'s `roi` and
    /// `scales` are float32 in any graph).
    pub(crate) fn constant_f32(mut self, name: &str, dims: &[i64], values: &[f32]) -> Case {
        self.nodes[0].input.push(name.into());
        self.inits.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: FLOAT,
            float_data: values.to_vec(),
            ..Default::default()
        });
        self
    }

    pub(crate) fn opset(mut self, opset: i64) -> Case {
        self.opset = opset;
        self
    }

    pub(crate) fn model(&self, elem_type: i32) -> ModelProto {
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
    pub(crate) fn session(&self, elem_type: i32) -> Result<(Session, vog_onnx::GradModel), String> {
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
    pub(crate) fn check(&self) {
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
            Err(e)
                if (e.contains("Could not find an implementation") || e.contains("Type Error"))
                    && self.linear =>
            {
                let (session, g) = self.session(FLOAT).unwrap_or_else(|e| {
                    panic!(
                        "{}: ONNX Runtime refuses the gradient graph: {e}",
                        self.name
                    )
                });
                self.check_float_linear(session, &g)
            }
            Err(e) => panic!(
                "{}: ONNX Runtime refuses the gradient graph: {e}",
                self.name
            ),
        }
    }

    /// The float32 fallback: the gradient graph in float32 against central differences of the
    /// op's forward in float64, at the same (float32) inputs.
    pub(crate) fn check_float(&self, mut session: Session, g: &vog_onnx::GradModel) {
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

    /// The float32 fallback of a linear op: differences of the graph's own float32 logits with a
    /// step of 1 (exact for a linear map, up to float32 rounding).
    pub(crate) fn check_float_linear(&self, mut session: Session, g: &vog_onnx::GradModel) {
        let rows = self.shape[0] as usize;
        let width = self.mixed.map_or(self.x.len() / rows, |_| MIXED);
        let classes: Vec<i64> = (0..rows).map(|r| (r % width) as i64).collect();
        let mut run = |x: &[f32]| -> (f64, Vec<f64>) {
            let xt = Tensor::from_array((self.shape.clone(), x.to_vec())).expect("x");
            let ct = Tensor::from_array((vec![rows as i64], classes.clone())).expect("classes");
            let out = session
                .run(ort::inputs![g.input.as_str() => xt, g.classes_input.as_str() => ct])
                .unwrap_or_else(|e| panic!("{}: running the gradient graph: {e}", self.name));
            let (lshape, logits) = out[g.output.as_str()]
                .try_extract_tensor::<f32>()
                .expect("float logits");
            let w = lshape[1] as usize;
            let score = (0..rows)
                .map(|r| f64::from(logits[r * w + r % w]))
                .sum::<f64>();
            let (_, grad) = out[g.gradient_output.as_str()]
                .try_extract_tensor::<f32>()
                .expect("float gradient");
            (score, grad.iter().map(|&v| f64::from(v)).collect())
        };
        let x32: Vec<f32> = self.x.iter().map(|&v| v as f32).collect();
        let (_, gradient) = run(&x32);
        let fd: Vec<f64> = (0..x32.len())
            .map(|i| {
                let mut xp = x32.clone();
                xp[i] += 1.0;
                let mut xm = x32.clone();
                xm[i] -= 1.0;
                (run(&xp).0 - run(&xm).0) / 2.0
            })
            .collect();
        self.compare(&gradient, &fd, LINEAR_TOLERANCE);
    }

    /// Largest difference between `gradient` and `fd`, relative to the largest gradient.
    pub(crate) fn compare(&self, gradient: &[f64], fd: &[f64], tolerance: f64) {
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

    /// The logits from the op's formula in float64 (rows, then the op's outputs or their mixes).
    fn formula_logits(&self, x: &[f64]) -> Vec<f64> {
        let y = (self.reference.as_ref().expect("a formula"))(x);
        let rows = self.shape[0] as usize;
        let per_row = y.len() / rows;
        match self.mixed {
            None => y,
            Some(w) => {
                let m = mix(w);
                (0..rows)
                    .flat_map(|r| {
                        let row = &y[r * per_row..(r + 1) * per_row];
                        let m = &m;
                        (0..MIXED).map(move |k| {
                            row.iter()
                                .enumerate()
                                .map(|(j, v)| v * m[j * MIXED + k])
                                .sum::<f64>()
                        })
                    })
                    .collect()
            }
        }
    }

    /// Float64 throughout: the gradient graph against central differences of the model's logits
    /// (and its logits equal to the model's).
    pub(crate) fn check_double(&self, mut session: Session, g: &vog_onnx::GradModel) {
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
        let (logits0, gradient, width) = run(&self.x);
        assert_eq!(
            width, width0,
            "{}: logits as wide as the flattened input",
            self.name
        );
        // The differences come from the model as written, run by ONNX Runtime at its own opset,
        // not from the gradient graph's copy of the forward (which vog may have rewritten).
        // Where ONNX Runtime has no double kernel for the op as written (the recurrent ops), the
        // op's formula stands in for it.
        let bytes = vog_onnx::encode_model(&self.model(DOUBLE));
        let session = Session::builder(env())
            .expect("session builder")
            .commit_from_memory(&bytes);
        let mut forward = match (session, &self.reference) {
            (Ok(s), _) => Some(s),
            (Err(_), Some(_)) => None,
            (Err(e), None) => panic!("{}: ONNX Runtime refuses the model: {e}", self.name),
        };
        // A kernel may also refuse double only when it runs.
        if self.reference.is_some() {
            if let Some(s) = forward.as_mut() {
                let xt = Tensor::from_array((self.shape.clone(), self.x.clone())).expect("x");
                if s.run(ort::inputs!["x" => xt]).is_err() {
                    forward = None;
                }
            }
        }
        let mut run = |x: &[f64]| -> Vec<f64> {
            let Some(forward) = forward.as_mut() else {
                return self.formula_logits(x);
            };
            let xt = Tensor::from_array((self.shape.clone(), x.to_vec())).expect("x");
            let out = forward
                .run(ort::inputs!["x" => xt])
                .unwrap_or_else(|e| panic!("{}: running the model: {e}", self.name));
            let (_, logits) = out["logits"]
                .try_extract_tensor::<f64>()
                .expect("double logits");
            logits.to_vec()
        };
        let original = run(&self.x);
        assert!(
            original
                .iter()
                .zip(&logits0)
                .all(|(a, b)| (a - b).abs() <= 1e-12 * a.abs().max(1.0)),
            "{}: the gradient graph's logits differ from the model's",
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
                (score(&run(&xp)) - score(&run(&xm))) / (2.0 * H)
            })
            .collect();
        self.compare(&gradient, &fd, TOLERANCE);
    }
}

/// The logits of a [`Case::mixed`] case.
pub(crate) const MIXED: usize = 3;

/// An elementwise case's input: 12 rows of one feature, so every element is some row's logit.
pub(crate) const ROWS: [i64; 2] = [12, 1];
/// A broadcasting case's input: 6 rows of 2 features (row `r` scores feature `r mod 2`).
pub(crate) const PAIRS: [i64; 2] = [6, 2];

pub(crate) fn check_all(cases: Vec<Case>) {
    for c in &cases {
        c.check();
    }
}
