//! Reverse-mode differentiation over ONNX graphs: from an inference graph, build one that also
//! returns the gradient of a chosen class score with respect to the input (or a named
//! intermediate tensor), using standard ONNX ops only, so that any ONNX Runtime can execute it.
//!
//! Only the path from `wrt` to the scored output is differentiated; weights, shape subgraphs and
//! branches that do not lead to the output are left alone. The seed (one-hot of the class, or the
//! softmax-probability seed) is computed inside the graph from a `vog_classes` input (−1 = argmax),
//! so one run gives logits, classes and gradients.

use std::collections::{HashMap, HashSet};

use vog_core::Target;

use crate::graph::{
    attr, attr_f, attr_i, attr_ints, attr_s, default_opset, is_float_type, make_f, make_i,
    make_ints, make_s, make_t, tensor_f32, tensor_i64, type_name, value_info, value_type,
    Constants,
};
use crate::proto::{tensor_proto::DataType, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::{Error, Result};

/// Name of the graph input holding one class per row (−1: the row's argmax).
pub const CLASSES_INPUT: &str = "vog_classes";
/// Name of the graph output holding the class differentiated per row.
pub const CLASSES_OUTPUT: &str = "vog_classes_used";
/// Name of the graph output holding the gradient.
pub const GRADIENT_OUTPUT: &str = "vog_gradient";
/// Revision of the graphs [`gradient_model`] builds: bumped whenever a change to the builder changes
/// its output for some model, so that caches keyed by it never serve a graph of an older builder.
pub const GRAPH_REVISION: u32 = 2;
/// Operator domain of vog's own kernels (see [`GradSpec::vog_ops`]).
pub const VOG_DOMAIN: &str = "ai.vog";
/// `ai.vog.MaxPoolGrad(X, dY) -> dX`: the input gradient of a `MaxPool` over `X` with the same
/// attributes (`kernel_shape`, `strides`, explicit `pads`, `dilations`): each element of `dY` is
/// added at its window's first maximum in `X` (PyTorch's rule), every other element is 0. With
/// `relu = 1`, `X` is a ReLU's output and the gradient is taken through that ReLU as well: an
/// element passes only where its maximum is positive.
pub const MAX_POOL_GRAD: &str = "MaxPoolGrad";

/// What to differentiate.
#[derive(Debug, Clone, Default)]
pub struct GradSpec {
    /// The graph input fed with examples; found automatically when the graph has one.
    pub input: Option<String>,
    /// The tensor scored (logits `[N, C]`); the graph's output when it has one. May name an
    /// intermediate tensor (for instance the pre-softmax scores of a model that outputs
    /// probabilities).
    pub output: Option<String>,
    /// The tensor to differentiate with respect to; the input by default. May name an
    /// intermediate tensor (an embedding lookup's output for token-id models).
    pub wrt: Option<String>,
    /// Logit or softmax probability.
    pub target: Target,
    /// Use vog's own kernels ([`VOG_DOMAIN`]) where standard ONNX ops express a backward rule
    /// slowly: a max pool's input gradient becomes one [`MAX_POOL_GRAD`] node instead of a
    /// `MaxPool` that also returns indices (which sends ONNX Runtime to a slow kernel) and a
    /// `MaxUnpool` or scatter. The graph then runs only where those kernels are registered (the
    /// ONNX backend does so on CPU); off, the graph uses standard ONNX ops only.
    pub vog_ops: bool,
}

/// A model extended with the gradient computation, and the names to run it with.
#[derive(Debug, Clone)]
pub struct GradModel {
    /// The extended model.
    pub model: ModelProto,
    /// The data input.
    pub input: String,
    /// Element type of the data input (ONNX `DataType` code).
    pub input_elem_type: i32,
    /// Declared dimensions of the data input (`None` = symbolic), when declared.
    pub input_dims: Option<Vec<Option<i64>>>,
    /// The scored output (logits).
    pub output: String,
    /// The tensor differentiated with respect to.
    pub wrt: String,
    /// Input: class per row (int64, −1 for argmax).
    pub classes_input: String,
    /// Output: class used per row (int64).
    pub classes_output: String,
    /// Output: the gradient, shaped like `wrt`.
    pub gradient_output: String,
    /// Nodes added for the reverse pass.
    pub backward_nodes: usize,
}

/// Builds the gradient model. Errors name every op on the path that has no rule.
pub fn gradient_model(model: &ModelProto, spec: &GradSpec) -> Result<GradModel> {
    let mut model = model.clone();
    let opset = default_opset(&model)
        .ok_or_else(|| Error::Model("the model imports no ai.onnx opset".into()))?;
    if opset < 13 {
        return Err(Error::Model(format!(
            "the model uses ai.onnx opset {opset}; vog needs opset 13 or newer (re-export, e.g. \
             torch.onnx.export(..., opset_version=17))"
        )));
    }
    // Ops emitted for the reverse pass (CastLike, ScatterElements with reduction) need opset 16;
    // 13–15 → 16 changes no existing op's behaviour.
    let opset = opset.max(16);
    for o in model.opset_import.iter_mut() {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            o.version = opset;
        }
    }
    model.ir_version = model.ir_version.max(8);

    let graph = model
        .graph
        .take()
        .ok_or_else(|| Error::Decode("the model has no graph".into()))?;
    let consts = Constants::new(&graph);
    let init_names: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let data_inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|v| !init_names.contains(v.name.as_str()))
        .collect();
    let input = match &spec.input {
        Some(name) => data_inputs.iter().find(|v| &v.name == name).copied().ok_or_else(|| {
            Error::Model(format!("no graph input `{name}`; inputs are: {}", names(&data_inputs)))
        })?,
        None if data_inputs.len() == 1 => data_inputs[0],
        None => {
            return Err(Error::Model(format!(
                "the graph has {} inputs ({}); name the one holding the examples in the backend options (`input`)",
                data_inputs.len(),
                names(&data_inputs)
            )))
        }
    };
    let (input_elem_type, input_dims) = value_type(input).unwrap_or((DataType::Float as i32, None));
    let input_name = input.name.clone();
    let produced: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let output =
        match &spec.output {
            Some(name) => {
                if !produced.contains(name.as_str()) {
                    return Err(Error::Model(format!(
                        "no node produces the output tensor `{name}`"
                    )));
                }
                name.clone()
            }
            None if graph.output.len() == 1 => graph.output[0].name.clone(),
            None => {
                return Err(Error::Model(format!(
                "the graph has {} outputs ({}); name the logits in the backend options (`output`)",
                graph.output.len(),
                graph.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
            )))
            }
        };
    let wrt = spec.wrt.clone().unwrap_or_else(|| input_name.clone());
    if wrt != input_name && !produced.contains(wrt.as_str()) {
        return Err(Error::Model(format!(
            "`wrt`: no node produces a tensor named `{wrt}`"
        )));
    }
    if wrt == input_name && !is_float_type(input_elem_type) {
        return Err(Error::Model(format!(
            "input `{}` holds {} values, which have no gradient; set `wrt` to a float tensor computed \
             from it (for a text model, the embedding lookup's output)",
            input_name,
            type_name(input_elem_type)
        )));
    }

    // Forward activity: tensors that depend on `wrt` through differentiable edges.
    let mut active: HashSet<String> = HashSet::from([wrt.clone()]);
    for n in &graph.node {
        let live = n
            .input
            .iter()
            .enumerate()
            .any(|(i, t)| !t.is_empty() && active.contains(t) && !stops(n, i));
        if live {
            for (k, o) in n.output.iter().enumerate() {
                if !o.is_empty() && !inactive_output(n, k) {
                    active.insert(o.clone());
                }
            }
        }
    }
    if !active.contains(&output) {
        return Err(Error::Model(format!(
            "the output `{output}` does not depend on `{wrt}` through differentiable ops"
        )));
    }

    let ranks = crate::graph::infer_ranks(&graph, &consts);
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for t in graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(graph.output.iter().map(|o| &o.name))
    {
        *readers.entry(t.as_str()).or_default() += 1;
    }
    let lone_relu_outputs = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Relu" && (n.domain.is_empty() || n.domain == "ai.onnx"))
        .filter_map(|n| n.output.first())
        .filter(|o| readers.get(o.as_str()) == Some(&1))
        .cloned()
        .collect();
    let mut b = Builder {
        consts: &consts,
        ranks,
        nodes: Vec::new(),
        inits: Vec::new(),
        n: 0,
        extra_outputs: HashMap::new(),
        vog_ops: spec.vog_ops,
        used_vog_domain: false,
        lone_relu_outputs,
        relu_applied: HashSet::new(),
    };
    // The seed: d target / d output, computed in the graph.
    let (seed, classes) = b.seed_head(&output, spec.target);
    let mut grads: HashMap<String, Vec<String>> = HashMap::from([(output.clone(), vec![seed])]);
    let mut unsupported = Vec::new();
    for (idx, n) in graph.node.iter().enumerate().rev() {
        // Inputs that need a gradient: those depending on `wrt`. Nodes upstream of `wrt` have
        // none, so the recursion stops there (and `wrt`'s own gradient is left in place).
        let need: Vec<bool> = n
            .input
            .iter()
            .enumerate()
            .map(|(i, t)| !t.is_empty() && active.contains(t) && !stops(n, i))
            .collect();
        if !need.iter().any(|x| *x) {
            continue;
        }
        let gy: Vec<Option<String>> = n
            .output
            .iter()
            .map(|o| grads.remove(o).map(|g| b.sum(g)))
            .collect();
        if gy.iter().all(Option::is_none) {
            continue;
        }
        match backward(&mut b, n, idx, &gy, &need, opset) {
            Ok(gx) => {
                for (i, g) in gx.into_iter().enumerate() {
                    if let (Some(g), true) = (g, need.get(i).copied().unwrap_or(false)) {
                        grads.entry(n.input[i].clone()).or_default().push(g);
                    }
                }
            }
            Err(()) => {
                unsupported.push((op_label(n), node_label(n, idx)));
                // Keep walking upstream so that every unsupported node on the path is reported;
                // the placeholder gradient is never emitted because the build fails below.
                let placeholder = format!("vog_grad/unsupported_{idx}");
                for (i, t) in n.input.iter().enumerate() {
                    if need[i] {
                        grads
                            .entry(t.clone())
                            .or_default()
                            .push(placeholder.clone());
                    }
                }
            }
        }
    }
    if !unsupported.is_empty() {
        unsupported.reverse();
        return Err(Error::Unsupported {
            wrt,
            output,
            nodes: unsupported,
        });
    }
    let gwrt = grads.remove(&wrt).ok_or_else(|| {
        Error::Model(format!(
            "no gradient reaches `{wrt}` from `{output}` (only non-differentiable paths)"
        ))
    })?;
    let gwrt = b.sum(gwrt);
    b.push(
        "Identity",
        &[&gwrt],
        vec![GRADIENT_OUTPUT.to_string()],
        vec![],
    );
    b.push(
        "Identity",
        &[&classes],
        vec![CLASSES_OUTPUT.to_string()],
        vec![],
    );

    let backward_nodes = b.nodes.len();
    let Builder {
        nodes,
        inits,
        extra_outputs,
        used_vog_domain,
        ..
    } = b;
    if used_vog_domain {
        model.opset_import.push(crate::proto::OperatorSetIdProto {
            domain: VOG_DOMAIN.into(),
            version: 1,
        });
    }
    drop(consts);
    let mut graph = graph;
    // MaxPool nodes on the path also export their argmax indices.
    for (idx, name) in extra_outputs {
        let n = &mut graph.node[idx];
        while n.output.len() < 2 {
            n.output.push(String::new());
        }
        n.output[1] = name;
    }
    graph.node.extend(nodes);
    graph.initializer.extend(inits);
    graph.input.push(value_info(
        CLASSES_INPUT,
        DataType::Int64 as i32,
        Some(vec![None]),
    ));
    let grad_type = if wrt == input_name {
        input_elem_type
    } else {
        DataType::Float as i32
    };
    if !graph.output.iter().any(|o| o.name == output) {
        graph
            .output
            .push(value_info(&output, DataType::Float as i32, None));
    }
    graph.output.push(value_info(
        CLASSES_OUTPUT,
        DataType::Int64 as i32,
        Some(vec![None]),
    ));
    graph
        .output
        .push(value_info(GRADIENT_OUTPUT, grad_type, None));
    model.graph = Some(graph);
    Ok(GradModel {
        model,
        input: input_name,
        input_elem_type,
        input_dims,
        output,
        wrt,
        classes_input: CLASSES_INPUT.into(),
        classes_output: CLASSES_OUTPUT.into(),
        gradient_output: GRADIENT_OUTPUT.into(),
        backward_nodes,
    })
}

fn names(v: &[&ValueInfoProto]) -> String {
    v.iter()
        .map(|v| format!("`{}`", v.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn op_label(n: &NodeProto) -> String {
    if n.domain.is_empty() || n.domain == "ai.onnx" {
        n.op_type.clone()
    } else {
        format!("{}::{}", n.domain, n.op_type)
    }
}

fn node_label(n: &NodeProto, idx: usize) -> String {
    if n.name.is_empty() {
        format!("#{idx}")
    } else {
        n.name.clone()
    }
}

/// Whether input `i` of `n` carries no gradient (shape inputs, indices, conditions, exponents).
fn stops(n: &NodeProto, i: usize) -> bool {
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return false; // unknown domains are reported as unsupported when on the path
    }
    match n.op_type.as_str() {
        "Shape" | "Size" | "ConstantOfShape" | "NonZero" | "Range" | "OneHot" | "Not" | "And"
        | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual"
        | "IsInf" | "IsNaN" | "ArgMax" | "ArgMin" | "Floor" | "Ceil" | "Round" | "Sign"
        | "EyeLike" | "RandomNormalLike" | "RandomUniformLike" | "Bernoulli" => true,
        "Cast" => attr_i(n, "to").is_some_and(|t| !is_float_type(t as i32)),
        "Reshape" | "Expand" | "Gather" | "GatherElements" | "GatherND" | "Squeeze"
        | "Unsqueeze" | "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "Split" | "Tile" | "TopK" | "Pad" | "Slice" | "Dropout" | "Clip" | "Resize"
        | "Upsample" | "CumSum" => i >= 1,
        "ScatterElements" | "ScatterND" | "Scatter" => i == 1,
        "Where" => i == 0,
        "Pow" => i == 1,
        "BatchNormalization" => i >= 1,
        _ => false,
    }
}

/// Outputs that never carry gradient (indices, masks).
fn inactive_output(n: &NodeProto, k: usize) -> bool {
    matches!(
        (n.op_type.as_str(), k),
        ("MaxPool", 1) | ("TopK", 1) | ("Dropout", 1)
    )
}

struct Builder<'a> {
    consts: &'a Constants<'a>,
    ranks: HashMap<String, usize>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    n: usize,
    /// Forward nodes that must gain a second output (MaxPool indices): node index → tensor name.
    extra_outputs: HashMap<usize, String>,
    /// Whether [`VOG_DOMAIN`] kernels may be used, and whether one was.
    vog_ops: bool,
    used_vog_domain: bool,
    /// Outputs of `Relu` nodes read by exactly one node (a max pool may take over their backward).
    lone_relu_outputs: HashSet<String>,
    /// Gradients that already went through the ReLU producing their tensor.
    relu_applied: HashSet<String>,
}

impl Builder<'_> {
    fn fresh(&mut self, hint: &str) -> String {
        self.n += 1;
        format!("vog_grad/{hint}_{}", self.n)
    }

    fn push(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: Vec<String>,
        attrs: Vec<crate::proto::AttributeProto>,
    ) {
        let name = format!("vog_grad/{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs,
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a one-output node and returns its output.
    fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<crate::proto::AttributeProto>,
    ) -> String {
        let out = self.fresh(op);
        self.push(op, inputs, vec![out.clone()], attrs);
        out
    }

    fn ops(
        &mut self,
        op: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<crate::proto::AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op)).collect();
        self.push(op, inputs, outs.clone(), attrs);
        outs
    }

    fn i64s(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_i64(
            &name,
            vec![values.len() as i64],
            values.to_vec(),
        ));
        name
    }

    fn i64_scalar(&mut self, v: i64) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_i64(&name, vec![], vec![v]));
        name
    }

    /// A float scalar with the element type of `like`.
    fn scalar_like(&mut self, v: f32, like: &str) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_f32(&name, vec![], vec![v]));
        self.op("CastLike", &[&name, like], vec![])
    }

    /// A float tensor constant with the element type of `like`.
    fn floats_like(&mut self, dims: Vec<i64>, values: Vec<f32>, like: &str) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_f32(&name, dims, values));
        self.op("CastLike", &[&name, like], vec![])
    }

    fn sum(&mut self, mut gs: Vec<String>) -> String {
        if gs.len() == 1 {
            return gs.pop().expect("one");
        }
        let refs: Vec<&str> = gs.iter().map(String::as_str).collect();
        self.op("Sum", &refs, vec![])
    }

    fn shape(&mut self, x: &str) -> String {
        self.op("Shape", &[x], vec![])
    }

    fn size(&mut self, x: &str) -> String {
        self.op("Size", &[x], vec![])
    }

    /// `Reshape(g, Shape(x))`.
    fn reshape_like(&mut self, g: &str, x: &str) -> String {
        let s = self.shape(x);
        self.op("Reshape", &[g, &s], vec![make_i("allowzero", 1)])
    }

    /// Zeros shaped and typed like `x`.
    fn zeros_like(&mut self, x: &str) -> String {
        let s = self.shape(x);
        let z = self.op(
            "ConstantOfShape",
            &[&s],
            vec![make_t("value", tensor_f32("", vec![1], vec![0.0]))],
        );
        self.op("CastLike", &[&z, x], vec![])
    }

    /// Sums `t` over the axes along which `a` was broadcast to `t`'s shape, then reshapes to `a`.
    fn unb(&mut self, t: &str, a: &str) -> String {
        let st = self.shape(t);
        let sa = self.shape(a);
        let rt = self.size(&st);
        let ra = self.size(&sa);
        let pad = self.op("Sub", &[&rt, &ra], vec![]);
        let zero = self.i64_scalar(0);
        let pad = self.op("Max", &[&pad, &zero], vec![]);
        let shape1 = self.i64s(&[1]);
        let pad = self.op("Reshape", &[&pad, &shape1], vec![]);
        let ones = self.op(
            "ConstantOfShape",
            &[&pad],
            vec![make_t("value", tensor_i64("", vec![1], vec![1]))],
        );
        let sa_full = self.op("Concat", &[&ones, &sa], vec![make_i("axis", 0)]);
        let one = self.i64_scalar(1);
        let a_is_one = self.op("Equal", &[&sa_full, &one], vec![]);
        let t_is_one = self.op("Equal", &[&st, &one], vec![]);
        let t_not_one = self.op("Not", &[&t_is_one], vec![]);
        let mask = self.op("And", &[&a_is_one, &t_not_one], vec![]);
        let nz = self.op("NonZero", &[&mask], vec![]);
        let flat = self.i64s(&[-1]);
        let axes = self.op("Reshape", &[&nz, &flat], vec![]);
        let r = self.op(
            "ReduceSum",
            &[t, &axes],
            vec![make_i("keepdims", 1), make_i("noop_with_empty_axes", 1)],
        );
        self.op("Reshape", &[&r, &sa], vec![make_i("allowzero", 1)])
    }

    /// The adjoint of a pure data-movement op `f`: scatter-add `g` back through `f` applied to the
    /// element indices of `x`.
    fn scatter_adjoint(
        &mut self,
        g: &str,
        x: &str,
        f: impl FnOnce(&mut Self, &str) -> String,
    ) -> String {
        let n = self.size(x);
        let start = self.i64_scalar(0);
        let step = self.i64_scalar(1);
        let range = self.op("Range", &[&start, &n, &step], vec![]);
        let sx = self.shape(x);
        let iota = self.op("Reshape", &[&range, &sx], vec![]);
        let idx = f(self, &iota);
        let flat = self.i64s(&[-1]);
        let idx = self.op("Reshape", &[&idx, &flat], vec![]);
        let gf = self.op("Reshape", &[g, &flat], vec![]);
        let shape1 = self.i64s(&[1]);
        let n1 = self.op("Reshape", &[&n, &shape1], vec![]);
        let z = self.op(
            "ConstantOfShape",
            &[&n1],
            vec![make_t("value", tensor_f32("", vec![1], vec![0.0]))],
        );
        let z = self.op("CastLike", &[&z, g], vec![]);
        let s = self.op(
            "ScatterElements",
            &[&z, &idx, &gf],
            vec![make_i("axis", 0), make_s("reduction", "add")],
        );
        self.op("Reshape", &[&s, &sx], vec![])
    }

    /// Spatial dims of `x` (everything from axis 2).
    fn spatial(&mut self, x: &str) -> String {
        let s = self.shape(x);
        let two = self.i64s(&[2]);
        let big = self.i64s(&[i64::MAX]);
        self.op("Slice", &[&s, &two, &big], vec![])
    }

    /// Crops or zero-pads the trailing end of the spatial axes of `y` to those of `x`. A transposed
    /// convolution run without end padding covers every input position some window read; rows
    /// past the last window are absent and get zero gradient.
    fn fit_spatial_to(&mut self, y: &str, x: &str) -> String {
        let sx = self.spatial(x);
        let sxf = self.shape(x);
        let rank = self.size(&sxf);
        let two = self.i64_scalar(2);
        let step = self.i64_scalar(1);
        let axes = self.op("Range", &[&two, &rank, &step], vec![]);
        let zeros = self.op("Sub", &[&sx, &sx], vec![]);
        let y = self.op("Slice", &[y, &zeros, &sx, &axes], vec![]);
        let sy = self.spatial(&y);
        let diff = self.op("Sub", &[&sx, &sy], vec![]);
        let rank1 = self.shape(&sxf);
        let begins = self.op(
            "ConstantOfShape",
            &[&rank1],
            vec![make_t("value", tensor_i64("", vec![1], vec![0]))],
        );
        let nc = self.i64s(&[0, 0]);
        let pads = self.op("Concat", &[&begins, &nc, &diff], vec![make_i("axis", 0)]);
        self.op("Pad", &[&y, &pads], vec![make_s("mode", "constant")])
    }

    /// Begin pads only (end pads zeroed): transposed convolutions are run uncropped at the end.
    fn begin_pads(pads: &[i64]) -> Vec<i64> {
        let r = pads.len() / 2;
        pads[..r]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, r))
            .collect()
    }

    /// The seed d(target)/d(output) and the classes used.
    fn seed_head(&mut self, y: &str, target: Target) -> (String, String) {
        let am = self.op(
            "ArgMax",
            &[y],
            vec![make_i("axis", 1), make_i("keepdims", 0)],
        );
        let zero = self.i64_scalar(0);
        let neg = self.op("Less", &[CLASSES_INPUT, &zero], vec![]);
        let cls = self.op("Where", &[&neg, &am, CLASSES_INPUT], vec![]);
        let sy = self.shape(y);
        let one = self.i64_scalar(1);
        let depth = self.op("Gather", &[&sy, &one], vec![make_i("axis", 0)]);
        let values = self.fresh("const");
        self.inits
            .push(tensor_f32(&values, vec![2], vec![0.0, 1.0]));
        let oh = self.op("OneHot", &[&cls, &depth, &values], vec![make_i("axis", -1)]);
        let oh = self.op("CastLike", &[&oh, y], vec![]);
        let seed = match target {
            Target::Logit => oh,
            Target::Probability => {
                // In double precision: for a confident row p_c ≈ 1, and `onehot − p` would lose
                // most of its digits in float.
                let to_double = vec![make_i("to", i64::from(DataType::Double as i32))];
                let yd = self.op("Cast", &[y], to_double.clone());
                let ohd = self.op("Cast", &[&oh], to_double);
                let p = self.op("Softmax", &[&yd], vec![make_i("axis", -1)]);
                let po = self.op("Mul", &[&p, &ohd], vec![]);
                let axes = self.i64s(&[-1]);
                let pc = self.op("ReduceSum", &[&po, &axes], vec![make_i("keepdims", 1)]);
                let d = self.op("Sub", &[&ohd, &p], vec![]);
                let seed = self.op("Mul", &[&pc, &d], vec![]);
                self.op("CastLike", &[&seed, y], vec![])
            }
        };
        (seed, cls)
    }
}

fn ints_or(n: &NodeProto, name: &str, default: Vec<i64>) -> Vec<i64> {
    attr_ints(n, name)
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

/// Kernel size (from `kernel_shape` or the constant weight), strides and dilations of a
/// convolution-like node.
fn conv_geometry(b: &Builder<'_>, n: &NodeProto) -> Option<(Vec<i64>, Vec<i64>, Vec<i64>)> {
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
fn explicit_pads(
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
fn non_overlapping_pool(n: &NodeProto) -> bool {
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
fn max_unpool_attrs(n: &NodeProto) -> Vec<crate::proto::AttributeProto> {
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

/// Gradients of `n`'s inputs given its outputs' gradients; `Err(())` when `n` has no rule.
fn backward(
    b: &mut Builder<'_>,
    n: &NodeProto,
    idx: usize,
    gy: &[Option<String>],
    need: &[bool],
    opset: i64,
) -> std::result::Result<Vec<Option<String>>, ()> {
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return Err(());
    }
    let x = |i: usize| n.input.get(i).map(String::as_str).unwrap_or("");
    let y = n.output.first().map(String::as_str).unwrap_or("");
    let need_i = |i: usize| need.get(i).copied().unwrap_or(false);
    // Most ops have one differentiable output.
    let g = match gy.first() {
        Some(Some(g)) => g.clone(),
        _ => {
            return if gy.iter().skip(1).any(Option::is_some) {
                Err(())
            } else {
                Ok(vec![])
            }
        }
    };
    if gy.iter().skip(1).any(Option::is_some) && !matches!(n.op_type.as_str(), "Split") {
        return Err(()); // gradients flowing into secondary outputs (LayerNorm mean, …)
    }
    let one_input = |g: String| Ok(vec![Some(g)]);
    match n.op_type.as_str() {
        "Identity" | "Dropout" => one_input(g),
        "Cast" => one_input(b.op("CastLike", &[&g, x(0)], vec![])),
        "Relu" if b.relu_applied.contains(&g) => one_input(g.clone()),
        "Relu" => {
            // g · [x > 0] as a multiply by the cast mask: ONNX Runtime's Where (with a broadcast
            // scalar) is several times slower than Cast + Mul on CPU.
            let zero = b.scalar_like(0.0, x(0));
            let pos = b.op("Greater", &[x(0), &zero], vec![]);
            let mask = b.op("CastLike", &[&pos, &g], vec![]);
            one_input(b.op("Mul", &[&g, &mask], vec![]))
        }
        "LeakyRelu" => {
            let alpha = attr_f(n, "alpha").unwrap_or(0.01);
            let zero = b.scalar_like(0.0, x(0));
            let pos = b.op("Greater", &[x(0), &zero], vec![]);
            let a = b.scalar_like(alpha, &g);
            let ga = b.op("Mul", &[&g, &a], vec![]);
            one_input(b.op("Where", &[&pos, &g, &ga], vec![]))
        }
        "Elu" => {
            let alpha = attr_f(n, "alpha").unwrap_or(1.0);
            let zero = b.scalar_like(0.0, x(0));
            let pos = b.op("Greater", &[x(0), &zero], vec![]);
            let a = b.scalar_like(alpha, y);
            let ya = b.op("Add", &[y, &a], vec![]);
            let gn = b.op("Mul", &[&g, &ya], vec![]);
            one_input(b.op("Where", &[&pos, &g, &gn], vec![]))
        }
        "Sigmoid" => {
            let one = b.scalar_like(1.0, y);
            let om = b.op("Sub", &[&one, y], vec![]);
            let d = b.op("Mul", &[y, &om], vec![]);
            one_input(b.op("Mul", &[&g, &d], vec![]))
        }
        "Tanh" => {
            let one = b.scalar_like(1.0, y);
            let y2 = b.op("Mul", &[y, y], vec![]);
            let d = b.op("Sub", &[&one, &y2], vec![]);
            one_input(b.op("Mul", &[&g, &d], vec![]))
        }
        "Softplus" => {
            let s = b.op("Sigmoid", &[x(0)], vec![]);
            one_input(b.op("Mul", &[&g, &s], vec![]))
        }
        "Erf" => {
            let c = b.scalar_like(std::f32::consts::FRAC_2_SQRT_PI, x(0));
            let x2 = b.op("Mul", &[x(0), x(0)], vec![]);
            let nx2 = b.op("Neg", &[&x2], vec![]);
            let e = b.op("Exp", &[&nx2], vec![]);
            let d = b.op("Mul", &[&c, &e], vec![]);
            one_input(b.op("Mul", &[&g, &d], vec![]))
        }
        "Gelu" => {
            let xs = x(0);
            let d = match attr_s(n, "approximate").as_deref().unwrap_or("none") {
                "tanh" => {
                    // t = tanh(k (x + 0.044715 x³)); d = 0.5 (1 + t) + 0.5 x (1 − t²) k (1 + 0.134145 x²)
                    let k = b.scalar_like((2.0f32 / std::f32::consts::PI).sqrt(), xs);
                    let c = b.scalar_like(0.044715, xs);
                    let c3 = b.scalar_like(0.134145, xs);
                    let half = b.scalar_like(0.5, xs);
                    let one = b.scalar_like(1.0, xs);
                    let x2 = b.op("Mul", &[xs, xs], vec![]);
                    let x3 = b.op("Mul", &[&x2, xs], vec![]);
                    let cx3 = b.op("Mul", &[&c, &x3], vec![]);
                    let inner = b.op("Add", &[xs, &cx3], vec![]);
                    let kin = b.op("Mul", &[&k, &inner], vec![]);
                    let t = b.op("Tanh", &[&kin], vec![]);
                    let opt = b.op("Add", &[&one, &t], vec![]);
                    let a = b.op("Mul", &[&half, &opt], vec![]);
                    let t2 = b.op("Mul", &[&t, &t], vec![]);
                    let omt2 = b.op("Sub", &[&one, &t2], vec![]);
                    let c3x2 = b.op("Mul", &[&c3, &x2], vec![]);
                    let poly = b.op("Add", &[&one, &c3x2], vec![]);
                    let hx = b.op("Mul", &[&half, xs], vec![]);
                    let p1 = b.op("Mul", &[&hx, &omt2], vec![]);
                    let p2 = b.op("Mul", &[&p1, &k], vec![]);
                    let bterm = b.op("Mul", &[&p2, &poly], vec![]);
                    b.op("Add", &[&a, &bterm], vec![])
                }
                "none" => {
                    // Φ(x) + x φ(x)
                    let r2 = b.scalar_like(std::f32::consts::FRAC_1_SQRT_2, xs);
                    let half = b.scalar_like(0.5, xs);
                    let one = b.scalar_like(1.0, xs);
                    let inv = b.scalar_like(1.0 / (2.0 * std::f32::consts::PI).sqrt(), xs);
                    let xr = b.op("Mul", &[xs, &r2], vec![]);
                    let e = b.op("Erf", &[&xr], vec![]);
                    let ope = b.op("Add", &[&one, &e], vec![]);
                    let cdf = b.op("Mul", &[&half, &ope], vec![]);
                    let x2 = b.op("Mul", &[xs, xs], vec![]);
                    let mh = b.scalar_like(-0.5, xs);
                    let ex = b.op("Mul", &[&x2, &mh], vec![]);
                    let ee = b.op("Exp", &[&ex], vec![]);
                    let pdf = b.op("Mul", &[&ee, &inv], vec![]);
                    let xp = b.op("Mul", &[xs, &pdf], vec![]);
                    b.op("Add", &[&cdf, &xp], vec![])
                }
                _ => return Err(()),
            };
            one_input(b.op("Mul", &[&g, &d], vec![]))
        }
        "Exp" => one_input(b.op("Mul", &[&g, y], vec![])),
        "Log" => one_input(b.op("Div", &[&g, x(0)], vec![])),
        "Neg" => one_input(b.op("Neg", &[&g], vec![])),
        "Abs" => {
            let s = b.op("Sign", &[x(0)], vec![]);
            one_input(b.op("Mul", &[&g, &s], vec![]))
        }
        "Sqrt" => {
            let half = b.scalar_like(0.5, y);
            let gh = b.op("Mul", &[&g, &half], vec![]);
            one_input(b.op("Div", &[&gh, y], vec![]))
        }
        "Reciprocal" => {
            let y2 = b.op("Mul", &[y, y], vec![]);
            let gy2 = b.op("Mul", &[&g, &y2], vec![]);
            one_input(b.op("Neg", &[&gy2], vec![]))
        }
        "Pow" => {
            let p = b.op("CastLike", &[x(1), x(0)], vec![]);
            let one = b.scalar_like(1.0, x(0));
            let pm1 = b.op("Sub", &[&p, &one], vec![]);
            let xp = b.op("Pow", &[x(0), &pm1], vec![]);
            let d = b.op("Mul", &[&p, &xp], vec![]);
            let gd = b.op("Mul", &[&g, &d], vec![]);
            one_input(b.unb(&gd, x(0)))
        }
        "Clip" => {
            let mut mask: Option<String> = None;
            for (i, op) in [(1, "GreaterOrEqual"), (2, "LessOrEqual")] {
                if !x(i).is_empty() {
                    let m = b.op(op, &[x(0), x(i)], vec![]);
                    mask = Some(match mask {
                        Some(prev) => b.op("And", &[&prev, &m], vec![]),
                        None => m,
                    });
                }
            }
            match mask {
                None => one_input(g),
                Some(m) => {
                    let gz = b.scalar_like(0.0, &g);
                    one_input(b.op("Where", &[&m, &g, &gz], vec![]))
                }
            }
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let mut out = vec![None, None];
            if need_i(0) {
                let t = match n.op_type.as_str() {
                    "Mul" => b.op("Mul", &[&g, x(1)], vec![]),
                    "Div" => b.op("Div", &[&g, x(1)], vec![]),
                    _ => g.clone(),
                };
                out[0] = Some(b.unb(&t, x(0)));
            }
            if need_i(1) {
                let t = match n.op_type.as_str() {
                    "Add" => g.clone(),
                    "Sub" => b.op("Neg", &[&g], vec![]),
                    "Mul" => b.op("Mul", &[&g, x(0)], vec![]),
                    _ => {
                        let gy_ = b.op("Mul", &[&g, y], vec![]);
                        let q = b.op("Div", &[&gy_, x(1)], vec![]);
                        b.op("Neg", &[&q], vec![])
                    }
                };
                out[1] = Some(b.unb(&t, x(1)));
            }
            Ok(out)
        }
        "Sum" | "Mean" => {
            let t = if n.op_type == "Mean" {
                let k = b.scalar_like(1.0 / n.input.len() as f32, &g);
                b.op("Mul", &[&g, &k], vec![])
            } else {
                g.clone()
            };
            Ok((0..n.input.len())
                .map(|i| need_i(i).then(|| b.unb(&t, x(i))))
                .collect())
        }
        "Where" => {
            let gz = b.scalar_like(0.0, &g);
            let mut out = vec![None, None, None];
            if need_i(1) {
                let w = b.op("Where", &[x(0), &g, &gz], vec![]);
                out[1] = Some(b.unb(&w, x(1)));
            }
            if need_i(2) {
                let w = b.op("Where", &[x(0), &gz, &g], vec![]);
                out[2] = Some(b.unb(&w, x(2)));
            }
            Ok(out)
        }
        "Softmax" | "LogSoftmax" => {
            if opset < 13 {
                return Err(());
            }
            let axis = attr_i(n, "axis").unwrap_or(-1);
            let axes = b.i64s(&[axis]);
            let d = if n.op_type == "Softmax" {
                let gy_ = b.op("Mul", &[&g, y], vec![]);
                let s = b.op("ReduceSum", &[&gy_, &axes], vec![make_i("keepdims", 1)]);
                let diff = b.op("Sub", &[&g, &s], vec![]);
                b.op("Mul", &[y, &diff], vec![])
            } else {
                let s = b.op("ReduceSum", &[&g, &axes], vec![make_i("keepdims", 1)]);
                let e = b.op("Exp", &[y], vec![]);
                let es = b.op("Mul", &[&e, &s], vec![]);
                b.op("Sub", &[&g, &es], vec![])
            };
            one_input(d)
        }
        "Gemm" => {
            let alpha = attr_f(n, "alpha").unwrap_or(1.0);
            let beta = attr_f(n, "beta").unwrap_or(1.0);
            let (ta, tb) = (
                attr_i(n, "transA").unwrap_or(0),
                attr_i(n, "transB").unwrap_or(0),
            );
            let gemm = |b: &mut Builder<'_>, p: &str, q: &str, t1: i64, t2: i64| {
                b.op(
                    "Gemm",
                    &[p, q],
                    vec![
                        make_f("alpha", alpha),
                        make_i("transA", t1),
                        make_i("transB", t2),
                    ],
                )
            };
            let mut out = vec![None, None, None];
            if need_i(0) {
                out[0] = Some(match (ta, tb) {
                    (0, 0) => gemm(b, &g, x(1), 0, 1),
                    (0, _) => gemm(b, &g, x(1), 0, 0),
                    (_, 0) => gemm(b, x(1), &g, 0, 1),
                    _ => gemm(b, x(1), &g, 1, 1),
                });
            }
            if need_i(1) {
                out[1] = Some(match (ta, tb) {
                    (0, 0) => gemm(b, x(0), &g, 1, 0),
                    (0, _) => gemm(b, &g, x(0), 1, 0),
                    (_, 0) => gemm(b, x(0), &g, 0, 0),
                    _ => gemm(b, &g, x(0), 1, 1),
                });
            }
            if need_i(2) {
                let bt = b.scalar_like(beta, &g);
                let gb = b.op("Mul", &[&g, &bt], vec![]);
                out[2] = Some(b.unb(&gb, x(2)));
            }
            Ok(out)
        }
        "MatMul" => {
            // The gradient of each operand transposes the last two axes of the other one, so it
            // needs that operand's rank (≥ 2; vectors are not supported).
            let ranks = &b.ranks;
            let (ra, rb) = (
                ranks.get(x(0)).copied().filter(|&r| r >= 2),
                ranks.get(x(1)).copied().filter(|&r| r >= 2),
            );
            let swap = |r: usize| {
                let mut p: Vec<i64> = (0..r as i64).collect();
                p.swap(r - 1, r - 2);
                vec![make_ints("perm", p)]
            };
            let mut out = vec![None, None];
            if need_i(0) {
                let rb = rb.ok_or(())?;
                let bt = b.op("Transpose", &[x(1)], swap(rb));
                let t = b.op("MatMul", &[&g, &bt], vec![]);
                out[0] = Some(b.unb(&t, x(0)));
            }
            if need_i(1) {
                let ra = ra.ok_or(())?;
                let at = b.op("Transpose", &[x(0)], swap(ra));
                let t = b.op("MatMul", &[&at, &g], vec![]);
                out[1] = Some(b.unb(&t, x(1)));
            }
            Ok(out)
        }
        "Conv" => {
            let (kernel, strides, dil) = conv_geometry(b, n).ok_or(())?;
            let pads = explicit_pads(n, &kernel, &strides, &dil).ok_or(())?;
            let group = attr_i(n, "group").unwrap_or(1);
            if !need_i(0) {
                return Err(()); // weight gradients are never needed
            }
            let r = kernel.len();
            // A gradient of few channels (the input image's: 1 or 3) is left to ConvTranspose:
            // ONNX Runtime runs convolutions in a blocked layout of 8 or 16 channels, so a
            // convolution producing 1–7 channels would compute mostly padding.
            let few_channels = b
                .consts
                .dims(x(1))
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
                let wt = b.op("Transpose", &[x(1)], vec![make_ints("perm", perm)]);
                let starts = b.i64s(&vec![-1; r]);
                let ends = b.i64s(&vec![i64::MIN; r]);
                let axes = b.i64s(&(2..2 + r as i64).collect::<Vec<_>>());
                let steps = b.i64s(&vec![-1; r]);
                let wf = b.op("Slice", &[&wt, &starts, &ends, &axes, &steps], vec![]);
                let back: Vec<i64> = (0..2 * r).map(|i| kernel[i % r] - 1 - pads[i]).collect();
                return one_input(b.op(
                    "Conv",
                    &[&g, &wf],
                    vec![make_ints("pads", back), make_ints("kernel_shape", kernel)],
                ));
            }
            let t = b.op(
                "ConvTranspose",
                &[&g, x(1)],
                vec![
                    make_i("group", group),
                    make_ints("strides", strides),
                    make_ints("dilations", dil),
                    make_ints("pads", Builder::begin_pads(&pads)),
                ],
            );
            Ok(vec![Some(b.fit_spatial_to(&t, x(0)))])
        }
        "ConvTranspose" => {
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
            if !need_i(0) {
                return Err(());
            }
            one_input(b.op(
                "Conv",
                &[&g, x(1)],
                vec![
                    make_i("group", group),
                    make_ints("strides", strides),
                    make_ints("dilations", dil),
                    make_ints("pads", pads),
                ],
            ))
        }
        "MaxPool" => {
            if attr_i(n, "storage_order").unwrap_or(0) != 0 {
                return Err(());
            }
            if b.vog_ops {
                let kernel = attr_ints(n, "kernel_shape").ok_or(())?;
                let r = kernel.len();
                let strides = ints_or(n, "strides", vec![1; r]);
                let dil = ints_or(n, "dilations", vec![1; r]);
                if let Some(pads) = explicit_pads(n, &kernel, &strides, &dil) {
                    b.used_vog_domain = true;
                    // A ReLU feeding only this pool: its backward (a mask on the same elements)
                    // is done in the same pass, and the ReLU's rule passes the result through.
                    let relu = b.lone_relu_outputs.contains(x(0));
                    let out = b.fresh(MAX_POOL_GRAD);
                    let name = format!("vog_grad/{MAX_POOL_GRAD}_{}", b.nodes.len());
                    b.nodes.push(NodeProto {
                        input: vec![x(0).to_string(), g.clone()],
                        output: vec![out.clone()],
                        name,
                        op_type: MAX_POOL_GRAD.into(),
                        domain: VOG_DOMAIN.into(),
                        attribute: vec![
                            make_ints("kernel_shape", kernel),
                            make_ints("strides", strides),
                            make_ints("pads", pads),
                            make_ints("dilations", dil),
                            make_i("relu", i64::from(relu)),
                        ],
                        ..Default::default()
                    });
                    if relu {
                        b.relu_applied.insert(out.clone());
                    }
                    return one_input(out);
                }
            }
            let indices = match n.output.get(1).filter(|o| !o.is_empty()) {
                Some(o) => o.clone(),
                None => {
                    let name = b.fresh("maxpool_indices");
                    b.extra_outputs.insert(idx, name.clone());
                    name
                }
            };
            if non_overlapping_pool(n) {
                // Windows do not overlap, so every index is hit at most once: MaxUnpool places
                // each gradient at its maximum in one kernel (the general path scatter-adds).
                let sx = b.shape(x(0));
                return one_input(b.op("MaxUnpool", &[&g, &indices, &sx], max_unpool_attrs(n)));
            }
            one_input(b.scatter_adjoint(&g, x(0), |_, _| indices))
        }
        "AveragePool" => {
            if attr_i(n, "ceil_mode").unwrap_or(0) != 0
                || attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1))
            {
                return Err(());
            }
            let kernel = attr_ints(n, "kernel_shape").ok_or(())?;
            let r = kernel.len();
            let strides = ints_or(n, "strides", vec![1; r]);
            let pads = explicit_pads(n, &kernel, &strides, &vec![1; r]).ok_or(())?;
            let include_pad = attr_i(n, "count_include_pad").unwrap_or(0) != 0;
            // g [N, C, o…] → [N·C, 1, o…]
            let sg = b.spatial(&g);
            let lead = b.i64s(&[-1, 1]);
            let shape = b.op("Concat", &[&lead, &sg], vec![make_i("axis", 0)]);
            let g2 = b.op("Reshape", &[&g, &shape], vec![]);
            let mut kdims = vec![1, 1];
            kdims.extend(&kernel);
            let count: usize = kernel.iter().product::<i64>() as usize;
            let ones_k = b.floats_like(kdims, vec![1.0; count], &g);
            let attrs = || {
                vec![
                    make_ints("strides", strides.clone()),
                    make_ints("pads", pads.clone()),
                ]
            };
            let t_attrs = vec![
                make_ints("strides", strides.clone()),
                make_ints("pads", Builder::begin_pads(&pads)),
            ];
            let g2 = if include_pad {
                let k = b.scalar_like(1.0 / count as f32, &g);
                b.op("Mul", &[&g2, &k], vec![])
            } else {
                // Divisor per window: how many real (unpadded) inputs it covers.
                let sx = b.spatial(x(0));
                let one1 = b.i64s(&[1, 1]);
                let os = b.op("Concat", &[&one1, &sx], vec![make_i("axis", 0)]);
                let ones = b.op(
                    "ConstantOfShape",
                    &[&os],
                    vec![make_t("value", tensor_f32("", vec![1], vec![1.0]))],
                );
                let ones = b.op("CastLike", &[&ones, &g], vec![]);
                let counts = b.op("Conv", &[&ones, &ones_k], attrs());
                b.op("Div", &[&g2, &counts], vec![])
            };
            let d = b.op("ConvTranspose", &[&g2, &ones_k], t_attrs);
            // Back to [N, C, …]: fit to the input's size, then reshape.
            let d = b.fit_spatial_to(&d, x(0));
            one_input(b.reshape_like(&d, x(0)))
        }
        "GlobalAveragePool" => {
            let nx = b.size(x(0));
            let ny = b.size(y);
            let cnt = b.op("Div", &[&nx, &ny], vec![]);
            let cnt = b.op("CastLike", &[&cnt, &g], vec![]);
            let q = b.op("Div", &[&g, &cnt], vec![]);
            let sx = b.shape(x(0));
            one_input(b.op("Expand", &[&q, &sx], vec![]))
        }
        "BatchNormalization" => {
            if attr_i(n, "training_mode").unwrap_or(0) != 0 {
                return Err(());
            }
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5);
            let e = b.scalar_like(eps, x(4));
            let ve = b.op("Add", &[x(4), &e], vec![]);
            let sd = b.op("Sqrt", &[&ve], vec![]);
            let scale = b.op("Div", &[x(1), &sd], vec![]);
            let scale = b.op("CastLike", &[&scale, &g], vec![]);
            // [C] → [1, C, 1, …] for the rank of x.
            let sx = b.shape(x(0));
            let rank = b.shape(&sx);
            let two = b.i64s(&[2]);
            let rest = b.op("Sub", &[&rank, &two], vec![]);
            let ones = b.op(
                "ConstantOfShape",
                &[&rest],
                vec![make_t("value", tensor_i64("", vec![1], vec![1]))],
            );
            let lead = b.i64s(&[1, -1]);
            let shape = b.op("Concat", &[&lead, &ones], vec![make_i("axis", 0)]);
            let scale = b.op("Reshape", &[&scale, &shape], vec![]);
            one_input(b.op("Mul", &[&g, &scale], vec![]))
        }
        "LayerNormalization" => {
            let axis = attr_i(n, "axis").unwrap_or(-1);
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5);
            let xs = x(0);
            let axes = if axis < 0 {
                b.i64s(&(axis..0).collect::<Vec<_>>())
            } else {
                let sx = b.shape(xs);
                let rank = b.size(&sx);
                let start = b.i64_scalar(axis);
                let step = b.i64_scalar(1);
                b.op("Range", &[&start, &rank, &step], vec![])
            };
            let red = |b: &mut Builder<'_>, t: &str| {
                b.op("ReduceSum", &[t, &axes], vec![make_i("keepdims", 1)])
            };
            let sum_x = red(b, xs);
            let nx = b.size(xs);
            let nr = b.size(&sum_x);
            let cnt = b.op("Div", &[&nx, &nr], vec![]);
            let cnt = b.op("CastLike", &[&cnt, xs], vec![]);
            let mean = |b: &mut Builder<'_>, t: &str| {
                let s = red(b, t);
                b.op("Div", &[&s, &cnt], vec![])
            };
            let mu = b.op("Div", &[&sum_x, &cnt], vec![]);
            let d = b.op("Sub", &[xs, &mu], vec![]);
            let d2 = b.op("Mul", &[&d, &d], vec![]);
            let var = mean(b, &d2);
            let e = b.scalar_like(eps, xs);
            let ve = b.op("Add", &[&var, &e], vec![]);
            let sd = b.op("Sqrt", &[&ve], vec![]);
            let r = b.op("Reciprocal", &[&sd], vec![]);
            let xh = b.op("Mul", &[&d, &r], vec![]);
            let h = b.op("Mul", &[&g, x(1)], vec![]);
            let mh = mean(b, &h);
            let hx = b.op("Mul", &[&h, &xh], vec![]);
            let mhx = mean(b, &hx);
            let t1 = b.op("Sub", &[&h, &mh], vec![]);
            let t2 = b.op("Mul", &[&xh, &mhx], vec![]);
            let t3 = b.op("Sub", &[&t1, &t2], vec![]);
            one_input(b.op("Mul", &[&r, &t3], vec![]))
        }
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => one_input(b.reshape_like(&g, x(0))),
        "Transpose" => {
            let attrs = match attr_ints(n, "perm") {
                Some(p) if !p.is_empty() => {
                    let mut inv = vec![0i64; p.len()];
                    for (i, &v) in p.iter().enumerate() {
                        *inv.get_mut(v as usize).ok_or(())? = i as i64;
                    }
                    vec![make_ints("perm", inv)]
                }
                _ => vec![],
            };
            one_input(b.op("Transpose", &[&g], attrs))
        }
        "Concat" => {
            let axis = attr_i(n, "axis").ok_or(())?;
            let ax = b.i64s(&[axis]);
            let sizes: Vec<String> = (0..n.input.len())
                .map(|i| {
                    let s = b.shape(x(i));
                    b.op("Gather", &[&s, &ax], vec![make_i("axis", 0)])
                })
                .collect();
            let refs: Vec<&str> = sizes.iter().map(String::as_str).collect();
            let split = b.op("Concat", &refs, vec![make_i("axis", 0)]);
            let parts = b.ops(
                "Split",
                &[&g, &split],
                n.input.len(),
                vec![make_i("axis", axis)],
            );
            Ok(parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| need_i(i).then_some(p))
                .collect())
        }
        "Split" => {
            let axis = attr_i(n, "axis").unwrap_or(0);
            let parts: Vec<String> = n
                .output
                .iter()
                .zip(gy)
                .map(|(o, g)| match g {
                    Some(g) => g.clone(),
                    None => b.zeros_like(o),
                })
                .collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            one_input(b.op("Concat", &refs, vec![make_i("axis", axis)]))
        }
        "Slice" => {
            let inputs: Vec<String> = n.input.iter().skip(1).cloned().collect();
            one_input(b.scatter_adjoint(&g, x(0), |b, iota| {
                let mut ins: Vec<&str> = vec![iota];
                ins.extend(inputs.iter().map(String::as_str));
                b.op("Slice", &ins, vec![])
            }))
        }
        "Gather" | "GatherElements" => {
            let axis = attr_i(n, "axis").unwrap_or(0);
            let op = n.op_type.clone();
            let indices = x(1).to_string();
            one_input(b.scatter_adjoint(&g, x(0), |b, iota| {
                b.op(&op, &[iota, &indices], vec![make_i("axis", axis)])
            }))
        }
        "Tile" => {
            let reps = x(1).to_string();
            one_input(b.scatter_adjoint(&g, x(0), |b, iota| b.op("Tile", &[iota, &reps], vec![])))
        }
        "Pad" => {
            let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
            let axes = x(3).to_string();
            if mode == "constant" {
                let neg = b.op("Neg", &[x(1)], vec![]);
                let mut ins = vec![g.as_str(), neg.as_str()];
                if !axes.is_empty() {
                    ins.extend(["", axes.as_str()]);
                }
                let ins: Vec<String> = ins.iter().map(|s| s.to_string()).collect();
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                one_input(b.op("Pad", &refs, vec![make_s("mode", "constant")]))
            } else {
                let pads = x(1).to_string();
                one_input(b.scatter_adjoint(&g, x(0), |b, iota| {
                    let mut ins = vec![iota, pads.as_str()];
                    if !axes.is_empty() {
                        ins.extend(["", axes.as_str()]);
                    }
                    b.op("Pad", &ins, vec![make_s("mode", &mode)])
                }))
            }
        }
        "Expand" => one_input(b.unb(&g, x(0))),
        "ReduceSum" | "ReduceMean" => {
            let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
            let noop = attr_i(n, "noop_with_empty_axes").unwrap_or(0) != 0;
            let axes_from_input = (n.op_type == "ReduceSum" && opset >= 13) || opset >= 18;
            let axes: Option<String> = if axes_from_input {
                (!x(1).is_empty()).then(|| x(1).to_string())
            } else {
                attr_ints(n, "axes")
                    .filter(|a| !a.is_empty())
                    .map(|a| b.i64s(&a))
            };
            if axes.is_none() && noop {
                return one_input(g);
            }
            let g2 = match (&axes, keep) {
                (Some(a), false) => b.op("Unsqueeze", &[&g, a], vec![]),
                _ => g.clone(),
            };
            let sx = b.shape(x(0));
            let e = b.op("Expand", &[&g2, &sx], vec![]);
            if n.op_type == "ReduceMean" {
                let nx = b.size(x(0));
                let ny = b.size(y);
                let cnt = b.op("Div", &[&nx, &ny], vec![]);
                let cnt = b.op("CastLike", &[&cnt, &g], vec![]);
                one_input(b.op("Div", &[&e, &cnt], vec![]))
            } else {
                one_input(e)
            }
        }
        _ => Err(()),
    }
}
