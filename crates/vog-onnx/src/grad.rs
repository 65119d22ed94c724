//! Reverse-mode differentiation over ONNX graphs: from an inference graph, build one that also
//! returns the gradient of a chosen class score with respect to the input (or a named
//! intermediate tensor), using standard ONNX ops only, so that any ONNX Runtime can execute it.
//!
//! Only the path from `wrt` to the scored output is differentiated; weights, shape subgraphs and
//! branches that do not lead to the output are left alone. The seed (one-hot of the class, or the
//! softmax-probability seed) is computed inside the graph from a `vog_classes` input (−1 = argmax),
//! so one run gives logits, classes and gradients.
//!
//! This module holds the public API and the reverse sweep, which walks the nodes from the output
//! back to `wrt`; the per-op backward rules are in `rules` (whose module doc says how to add one)
//! and the graph-building helpers they share in `builder`.

mod builder;
mod names;
mod rules;
mod shapes;

use std::collections::{HashMap, HashSet};

use vog_core::Target;

use crate::graph::{default_opset, is_float_type, type_name, value_info, value_type, Constants};
use crate::proto::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use crate::{Error, Result};
use builder::Builder;
pub use names::{
    CLASSES_INPUT, CLASSES_OUTPUT, CONV_INPUT_GRAD, GRADIENT_OUTPUT, GRAPH_REVISION, MAX_POOL_GRAD,
    RELU_GRAD, VOG_DOMAIN,
};
use rules::{backward, inactive_output, stops};

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
    /// `MaxUnpool` or scatter; a ReLU's backward one [`RELU_GRAD`] node instead of three. The
    /// graph then runs only where those kernels are registered (the ONNX backend does so on CPU,
    /// for float32 and float64: a model taking half floats keeps to standard ops); off, the graph
    /// uses standard ONNX ops only.
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
    /// Where a 3-D example keeps its channels, as the model's first layers read the input
    /// (`layout::input_channel_axis`); `None` when they do not say or the input is not 4-D.
    pub channel_axis: Option<vog_core::ChannelAxis>,
}

/// Builds the gradient model. Errors name every op on the path that has no rule.
pub fn gradient_model(model: &ModelProto, spec: &GradSpec) -> Result<GradModel> {
    let mut model = model.clone();
    let opset = raise_opset(&mut model)?;
    let mut graph = model
        .graph
        .take()
        .ok_or_else(|| Error::Decode("the model has no graph".into()))?;
    crate::upgrade::inline_constant_ifs(&mut graph);
    crate::upgrade::lower_same_pools(&mut graph);
    crate::unroll::unroll_recurrent(&mut graph);
    let graph = graph;
    let consts = Constants::new(&graph);
    let roles = Roles::find(&graph, spec)?;
    let channel_axis = roles
        .input_dims
        .as_ref()
        .filter(|d| d.len() == 4 && roles.wrt == roles.input)
        .and_then(|_| crate::layout::input_channel_axis(&graph, &roles.input));
    let active = active_tensors(&graph, &roles.wrt);
    if !active.contains(&roles.output) {
        return Err(Error::Model(format!(
            "the output `{}` does not depend on `{}` through differentiable ops",
            roles.output, roles.wrt
        )));
    }

    let ranks = crate::graph::infer_ranks(&graph, &consts);
    let shapes = shapes::SameShapes::infer(&graph, &consts, &ranks);
    // vog's kernels exist for float32 and float64: a model that takes half floats keeps to
    // standard ops (token ids say nothing of the activations' type).
    let t = roles.input_elem_type;
    let half = is_float_type(t) && ![DataType::Float as i32, DataType::Double as i32].contains(&t);
    let mut b = Builder::new(
        &consts,
        (ranks, shapes),
        spec.vog_ops && !half,
        lone_relu_outputs(&graph),
    );
    // The seed: d target / d output, computed in the graph.
    let (seed, classes) = b.seed_head(&roles.output, spec.target);
    let gwrt = reverse_sweep(&mut b, &graph, &active, &roles, seed, opset)?;
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
    add_interface(&mut graph, &roles);
    model.graph = Some(graph);
    Ok(GradModel {
        model,
        input: roles.input,
        input_elem_type: roles.input_elem_type,
        input_dims: roles.input_dims,
        output: roles.output,
        wrt: roles.wrt,
        classes_input: CLASSES_INPUT.into(),
        classes_output: CLASSES_OUTPUT.into(),
        gradient_output: GRADIENT_OUTPUT.into(),
        backward_nodes,
        channel_axis,
    })
}

/// Checks the model's `ai.onnx` opset and raises it (and the IR version) to what the reverse pass
/// emits; returns the new opset.
fn raise_opset(model: &mut ModelProto) -> Result<i64> {
    let opset = default_opset(model)
        .ok_or_else(|| Error::Model("the model imports no ai.onnx opset".into()))?;
    if opset < 11 {
        return Err(Error::Model(format!(
            "the model uses ai.onnx opset {opset}; vog needs opset 11 or newer (re-export, e.g. \
             torch.onnx.export(..., opset_version=17))"
        )));
    }
    if opset < 13 {
        if let Some(graph) = model.graph.as_mut() {
            crate::upgrade::to_opset13(graph);
        }
    }
    // Ops emitted for the reverse pass (CastLike, ScatterElements with reduction) need opset 16;
    // 13–15 → 16 changes no existing op's behaviour (11–12 models were rewritten above).
    let opset = opset.max(16);
    for o in model.opset_import.iter_mut() {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            o.version = opset;
        }
    }
    model.ir_version = model.ir_version.max(8);
    Ok(opset)
}

/// The tensors a gradient model is built around: the data input, the scored output and the tensor
/// differentiated with respect to.
struct Roles {
    /// The data input.
    input: String,
    /// Its element type (ONNX `DataType` code).
    input_elem_type: i32,
    /// Its declared dimensions (`None` = symbolic), when declared.
    input_dims: Option<Vec<Option<i64>>>,
    /// The scored output (logits).
    output: String,
    /// The tensor differentiated with respect to.
    wrt: String,
}

impl Roles {
    /// Finds the roles in `graph` as `spec` names them or, where it names none, as the graph's
    /// only input and output; errors say which name is missing and how to give it.
    fn find(graph: &GraphProto, spec: &GradSpec) -> Result<Roles> {
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
        let (input_elem_type, input_dims) =
            value_type(input).unwrap_or((DataType::Float as i32, None));
        let input_name = input.name.clone();
        let produced: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        let output = match &spec.output {
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
                graph
                    .output
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
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
        Ok(Roles {
            input: input_name,
            input_elem_type,
            input_dims,
            output,
            wrt,
        })
    }
}

/// Forward activity: tensors that depend on `wrt` through differentiable edges.
fn active_tensors(graph: &GraphProto, wrt: &str) -> HashSet<String> {
    let mut active: HashSet<String> = HashSet::from([wrt.to_string()]);
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
    active
}

/// Outputs of `Relu` nodes read by exactly one node (or graph output): a max pool that reads one
/// may take over that ReLU's backward.
fn lone_relu_outputs(graph: &GraphProto) -> HashSet<String> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for t in graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(graph.output.iter().map(|o| &o.name))
    {
        *readers.entry(t.as_str()).or_default() += 1;
    }
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "Relu" && (n.domain.is_empty() || n.domain == "ai.onnx"))
        .filter_map(|n| n.output.first())
        .filter(|o| readers.get(o.as_str()) == Some(&1))
        .cloned()
        .collect()
}

/// Walks the nodes from the output back to `wrt`, asking each node's rule for the gradients of its
/// inputs, and returns the gradient of `wrt`. Errors name every node on the path without a rule.
fn reverse_sweep(
    b: &mut Builder<'_>,
    graph: &GraphProto,
    active: &HashSet<String>,
    roles: &Roles,
    seed: String,
    opset: i64,
) -> Result<String> {
    let (output, wrt) = (&roles.output, &roles.wrt);
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
        match backward(b, n, idx, &gy, &need, opset) {
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
            wrt: wrt.clone(),
            output: output.clone(),
            nodes: unsupported,
        });
    }
    let gwrt = grads.remove(wrt).ok_or_else(|| {
        Error::Model(format!(
            "no gradient reaches `{wrt}` from `{output}` (only non-differentiable paths)"
        ))
    })?;
    Ok(b.sum(gwrt))
}

/// Adds the classes input and the logits, classes and gradient outputs to `graph`.
fn add_interface(graph: &mut GraphProto, roles: &Roles) {
    let output = &roles.output;
    graph.input.push(value_info(
        CLASSES_INPUT,
        DataType::Int64 as i32,
        Some(vec![None]),
    ));
    let grad_type = if roles.wrt == roles.input {
        roles.input_elem_type
    } else {
        DataType::Float as i32
    };
    if !graph.output.iter().any(|o| &o.name == output) {
        graph
            .output
            .push(value_info(output, DataType::Float as i32, None));
    }
    graph.output.push(value_info(
        CLASSES_OUTPUT,
        DataType::Int64 as i32,
        Some(vec![None]),
    ));
    graph
        .output
        .push(value_info(GRADIENT_OUTPUT, grad_type, None));
}

/// `a`, `b`, …: the names of `v`, for error messages.
fn names(v: &[&ValueInfoProto]) -> String {
    v.iter()
        .map(|v| format!("`{}`", v.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An op's name in errors: its type, prefixed by its domain when not `ai.onnx`.
fn op_label(n: &NodeProto) -> String {
    if n.domain.is_empty() || n.domain == "ai.onnx" {
        n.op_type.clone()
    } else {
        format!("{}::{}", n.domain, n.op_type)
    }
}

/// A node's name in errors: its own, or `#index` when it has none.
fn node_label(n: &NodeProto, idx: usize) -> String {
    if n.name.is_empty() {
        format!("#{idx}")
    } else {
        n.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{make_i, make_model, make_node};

    /// x [N, 4] → Relu → Flatten → logits, its input of type `elem`.
    fn relu_model(elem: DataType) -> ModelProto {
        let graph = GraphProto {
            name: "relu".into(),
            node: vec![
                make_node("Relu", &["x"], "r", vec![]),
                make_node("Flatten", &["r"], "logits", vec![make_i("axis", 1)]),
            ],
            input: vec![value_info("x", elem as i32, Some(vec![None, Some(4)]))],
            output: vec![value_info("logits", elem as i32, Some(vec![None, Some(4)]))],
            ..Default::default()
        };
        make_model(graph, 17)
    }

    fn vog_nodes(elem: DataType, vog_ops: bool) -> Vec<String> {
        let spec = GradSpec {
            vog_ops,
            ..Default::default()
        };
        let g = gradient_model(&relu_model(elem), &spec).expect("a gradient graph");
        let graph = g.model.graph.expect("a graph");
        graph
            .node
            .iter()
            .filter(|n| n.domain == VOG_DOMAIN)
            .map(|n| n.op_type.clone())
            .collect()
    }

    #[test]
    fn a_relus_backward_is_vogs_kernel_for_float_and_double_only() {
        assert_eq!(vog_nodes(DataType::Float, true), [RELU_GRAD]);
        assert_eq!(vog_nodes(DataType::Double, true), [RELU_GRAD]);
        // Standard ops when asked, and for half floats (vog's kernels have no such type).
        assert!(vog_nodes(DataType::Float, false).is_empty());
        assert!(vog_nodes(DataType::Float16, true).is_empty());
    }
}
