//! Reading ONNX graphs: attributes, constants, tensors, value types.

use std::collections::HashMap;

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use crate::{Error, Result};

/// Decodes a model from its protobuf bytes.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto> {
    use prost::Message;
    let model = ModelProto::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    if model.graph.is_none() {
        return Err(Error::Decode("the model has no graph".into()));
    }
    Ok(model)
}

/// Encodes a model to protobuf bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    use prost::Message;
    model.encode_to_vec()
}

/// The opset version the model imports for the default (`ai.onnx`) domain.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// An attribute of a node, by name.
pub fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// An integer attribute.
pub fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

/// A float attribute.
pub fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    attr(node, name).map(|a| a.f)
}

/// An integer-list attribute.
pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// A string attribute.
pub fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Builds an integer attribute.
pub fn make_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// Builds an integer-list attribute.
pub fn make_ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v,
        ..Default::default()
    }
}

/// Builds a float attribute.
pub fn make_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

/// Builds a string attribute.
pub fn make_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Builds a node of the default domain computing `output` from `inputs`, named after its output.
pub fn make_node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        attribute,
        ..Default::default()
    }
}

/// Builds a model (IR version 8) of `graph` at `opset` of the default domain.
pub fn make_model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![crate::proto::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "vog".into(),
        graph: Some(graph),
        ..Default::default()
    }
}

/// Builds a tensor attribute.
pub fn make_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..Default::default()
    }
}

/// A 1-d (or scalar, with `dims = []`) int64 tensor.
pub fn tensor_i64(name: &str, dims: Vec<i64>, values: Vec<i64>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims,
        data_type: DataType::Int64 as i32,
        int64_data: values,
        ..Default::default()
    }
}

/// A float32 tensor.
pub fn tensor_f32(name: &str, dims: Vec<i64>, values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims,
        data_type: DataType::Float as i32,
        float_data: values,
        ..Default::default()
    }
}

/// Integer values of a tensor (int64 or int32), when stored inline.
pub fn tensor_ints(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_location == 1 {
        return None; // external data
    }
    match t.data_type {
        x if x == DataType::Int64 as i32 => Some(if t.raw_data.is_empty() {
            t.int64_data.clone()
        } else {
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        }),
        x if x == DataType::Int32 as i32 => Some(if t.raw_data.is_empty() {
            t.int32_data.iter().map(|&v| i64::from(v)).collect()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))))
                .collect()
        }),
        // One byte each in raw data, else one int32 each.
        x if x == DataType::Bool as i32 || x == DataType::Uint8 as i32 => {
            Some(if t.raw_data.is_empty() {
                t.int32_data.iter().map(|&v| i64::from(v)).collect()
            } else {
                t.raw_data.iter().map(|&v| i64::from(v)).collect()
            })
        }
        _ => None,
    }
}

/// Float values of a float32 or float64 tensor, when stored inline.
pub fn tensor_floats(t: &TensorProto) -> Option<Vec<f64>> {
    if t.data_location == 1 {
        return None;
    }
    match t.data_type {
        x if x == DataType::Float as i32 => Some(if t.raw_data.is_empty() {
            t.float_data.iter().map(|&v| f64::from(v)).collect()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
                .collect()
        }),
        x if x == DataType::Double as i32 => Some(if t.raw_data.is_empty() {
            t.double_data.clone()
        } else {
            t.raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        }),
        _ => None,
    }
}

/// Element type and dimensions (`None` = symbolic) of a value, when declared.
pub fn value_type(v: &ValueInfoProto) -> Option<(i32, Option<Vec<Option<i64>>>)> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => {
            let dims = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(crate::proto::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                            Some(v)
                        }
                        _ => None,
                    })
                    .collect()
            });
            Some((t.elem_type, dims))
        }
        _ => None,
    }
}

/// Whether an ONNX element type is a floating-point type (gradients flow only through these).
pub fn is_float_type(elem_type: i32) -> bool {
    [
        DataType::Float,
        DataType::Double,
        DataType::Float16,
        DataType::Bfloat16,
    ]
    .iter()
    .any(|t| *t as i32 == elem_type)
}

/// Name of an ONNX element type, for messages.
pub fn type_name(elem_type: i32) -> String {
    DataType::try_from(elem_type)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {elem_type}"))
}

/// Constants known from the graph alone: initializers and `Constant` node outputs.
pub struct Constants<'a> {
    tensors: HashMap<&'a str, &'a TensorProto>,
    constant_nodes: HashMap<&'a str, &'a NodeProto>,
    /// Dimensions of tensors computed from constants by layout ops (a kernel stored in another
    /// layout and transposed in the graph, as jax2onnx and tf2onnx export convolutions).
    derived_dims: HashMap<&'a str, Vec<i64>>,
}

impl<'a> Constants<'a> {
    /// Indexes the constants of `graph`.
    pub fn new(graph: &'a GraphProto) -> Self {
        let tensors = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let constant_nodes = graph
            .node
            .iter()
            .filter(|n| n.op_type == "Constant" && n.domain.is_empty())
            .filter_map(|n| n.output.first().map(|o| (o.as_str(), n)))
            .collect();
        let mut c = Constants {
            tensors,
            constant_nodes,
            derived_dims: HashMap::new(),
        };
        for n in graph.node.iter().filter(|n| n.domain.is_empty()) {
            let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
                continue;
            };
            let Some(d) = c.dims(x) else { continue };
            let out = match n.op_type.as_str() {
                "Identity" | "Cast" => d,
                "Transpose" => {
                    let perm =
                        attr_ints(n, "perm").unwrap_or_else(|| (0..d.len() as i64).rev().collect());
                    match perm
                        .iter()
                        .map(|&p| usize::try_from(p).ok().and_then(|p| d.get(p).copied()))
                        .collect::<Option<Vec<i64>>>()
                    {
                        Some(v) if v.len() == d.len() => v,
                        _ => continue,
                    }
                }
                "Reshape" => {
                    let Some(shape) = n.input.get(1).and_then(|t| c.ints(t)) else {
                        continue;
                    };
                    let total: i64 = d.iter().product();
                    let mut out: Vec<i64> = shape
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| match v {
                            0 if attr_i(n, "allowzero").unwrap_or(0) == 0 => {
                                d.get(i).copied().unwrap_or(-2)
                            }
                            v => v,
                        })
                        .collect();
                    let known: i64 = out.iter().filter(|&&v| v >= 0).product();
                    match out.iter().filter(|&&v| v == -1).count() {
                        0 => {}
                        1 if known > 0 && total % known == 0 => {
                            out.iter_mut()
                                .filter(|v| **v == -1)
                                .for_each(|v| *v = total / known);
                        }
                        _ => continue,
                    }
                    if out.iter().any(|&v| v < 0) || out.iter().product::<i64>() != total {
                        continue;
                    }
                    out
                }
                _ => continue,
            };
            c.derived_dims.insert(y.as_str(), out);
        }
        c
    }

    /// Whether `name` is an initializer or a `Constant` output.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.constant_nodes.contains_key(name)
    }

    /// The initializer named `name`.
    pub fn initializer(&self, name: &str) -> Option<&'a TensorProto> {
        self.tensors.get(name).copied()
    }

    /// Integer values of a constant (initializer or `Constant` with `value`/`value_int(s)`).
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.tensors.get(name) {
            return tensor_ints(t);
        }
        let n = self.constant_nodes.get(name)?;
        if let Some(a) = attr(n, "value") {
            return a.t.as_ref().and_then(tensor_ints);
        }
        if let Some(a) = attr(n, "value_ints") {
            return Some(a.ints.clone());
        }
        attr(n, "value_int").map(|a| vec![a.i])
    }

    /// Float values of a constant.
    pub fn floats(&self, name: &str) -> Option<Vec<f64>> {
        if let Some(t) = self.tensors.get(name) {
            return tensor_floats(t);
        }
        let n = self.constant_nodes.get(name)?;
        if let Some(a) = attr(n, "value") {
            return a.t.as_ref().and_then(tensor_floats);
        }
        if let Some(a) = attr(n, "value_floats") {
            return Some(a.floats.iter().map(|&v| f64::from(v)).collect());
        }
        attr(n, "value_float").map(|a| vec![f64::from(a.f)])
    }

    /// Dimensions of a constant: an initializer, a `Constant` output, or a layout op's output
    /// of one (`Transpose`, `Identity`, `Cast`, `Reshape` to a constant shape).
    pub fn dims(&self, name: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.tensors.get(name) {
            return Some(t.dims.clone());
        }
        if let Some(d) = self.derived_dims.get(name) {
            return Some(d.clone());
        }
        let n = self.constant_nodes.get(name)?;
        attr(n, "value")
            .and_then(|a| a.t.as_ref())
            .map(|t| t.dims.clone())
    }
}

/// Ranks of the graph's tensors, where they can be told from declarations, constants and simple
/// per-op rules (no shape values are needed, only the number of dimensions).
pub fn infer_ranks(graph: &GraphProto, consts: &Constants<'_>) -> HashMap<String, usize> {
    let mut ranks: HashMap<String, usize> = HashMap::new();
    for v in graph
        .input
        .iter()
        .chain(&graph.value_info)
        .chain(&graph.output)
    {
        if let Some((_, Some(dims))) = value_type(v) {
            ranks.insert(v.name.clone(), dims.len());
        }
    }
    for t in &graph.initializer {
        ranks.insert(t.name.clone(), t.dims.len());
    }
    // Lengths of 1-d integer tensors (shape computations), so that `Reshape(x, Concat(…))` has a
    // known rank even when the shape values are only known at run time.
    let mut lens: HashMap<String, usize> = HashMap::new();
    // `Shape(v)` of a vector v of known length: the one-element vector holding that length.
    let mut shape_of_vector: HashMap<String, usize> = HashMap::new();
    for n in &graph.node {
        let out_len = {
            let r = |i: usize| n.input.get(i).and_then(|t| ranks.get(t)).copied();
            let l = |i: usize| {
                let t = n.input.get(i)?;
                lens.get(t).copied().or_else(|| {
                    consts
                        .ints(t)
                        .filter(|_| consts.dims(t).is_some_and(|d| d.len() == 1))
                        .map(|v| v.len())
                })
            };
            // A scalar input of a broadcasting op leaves the vector's length alone.
            let scalar = |i: usize| {
                n.input.get(i).is_some_and(|t| {
                    ranks.get(t) == Some(&0) || consts.dims(t).is_some_and(|d| d.is_empty())
                })
            };
            let out_len: Option<usize> = match n.op_type.as_str() {
                "Shape" if attr(n, "start").is_none() && attr(n, "end").is_none() => r(0),
                "Unsqueeze" if r(0) == Some(0) => Some(1),
                "Concat" if attr_i(n, "axis") == Some(0) || attr_i(n, "axis") == Some(-1) => {
                    (0..n.input.len()).map(l).sum::<Option<usize>>()
                }
                "Cast" | "Identity" | "Neg" | "Abs" | "Not" => l(0),
                "Add" | "Sub" | "Mul" | "Div" | "Where" | "Max" | "Min" | "Equal" | "Less"
                | "Greater" | "And" | "Or" | "Mod" => {
                    // Vectors broadcast with scalars only when every operand's length is known.
                    let ls: Option<Vec<usize>> =
                        (0..n.input.len()).filter(|&i| !scalar(i)).map(l).collect();
                    ls.and_then(|v| v.into_iter().max())
                }
                // Reshape(v, [-1]) or to a fixed length.
                "Reshape" => match n.input.get(1).and_then(|t| consts.ints(t)).as_deref() {
                    Some([-1]) => l(0),
                    Some(&[k]) if k >= 0 => Some(k as usize),
                    _ => None,
                },
                // ConstantOfShape(Shape(v)) for a vector v: a vector as long as v.
                "ConstantOfShape" => n
                    .input
                    .first()
                    .and_then(|t| shape_of_vector.get(t))
                    .copied(),
                "Gather" if r(0) == Some(1) => n
                    .input
                    .get(1)
                    .and_then(|t| consts.ints(t))
                    .map(|v| v.len())
                    .filter(|_| {
                        n.input
                            .get(1)
                            .and_then(|t| consts.dims(t))
                            .is_some_and(|d| d.len() == 1)
                    }),
                "Slice" if r(0) == Some(1) || l(0).is_some() => {
                    let get = |i: usize| n.input.get(i).and_then(|t| consts.ints(t));
                    match (l(0), get(1), get(2)) {
                        (Some(len), Some(st), Some(en)) if st.len() == 1 && en.len() == 1 => {
                            let step = get(4).and_then(|s| s.first().copied()).unwrap_or(1);
                            let len = len as i64;
                            let clamp = |v: i64| if v < 0 { (v + len).max(0) } else { v.min(len) };
                            let (a, b) = (clamp(st[0]), clamp(en[0]));
                            (step == 1).then(|| (b - a).max(0) as usize)
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            out_len
        };
        if let (Some(k), Some(o)) = (out_len, n.output.first()) {
            lens.insert(o.clone(), k);
            ranks.entry(o.clone()).or_insert(1);
        }
        if n.op_type == "Shape" && attr(n, "start").is_none() && attr(n, "end").is_none() {
            if let (Some(k), Some(o)) = (
                n.input.first().and_then(|t| lens.get(t)).copied(),
                n.output.first(),
            ) {
                shape_of_vector.insert(o.clone(), k);
            }
        }
        let r = |i: usize| n.input.get(i).and_then(|t| ranks.get(t)).copied();
        let len_of = |i: usize| {
            n.input.get(i).and_then(|t| {
                lens.get(t)
                    .copied()
                    .or_else(|| consts.ints(t).map(|v| v.len()))
            })
        };
        let axes_len = || attr_ints(n, "axes").map(|a| a.len()).or_else(|| len_of(1));
        let out: Option<usize> = match n.op_type.as_str() {
            "Constant" => consts
                .dims(n.output.first().map(String::as_str).unwrap_or(""))
                .map(|d| d.len()),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Where" | "Sum" | "Mean" | "Max" | "Min"
            | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
            | "PRelu" => {
                let rs: Option<Vec<usize>> = (0..n.input.len()).map(r).collect();
                rs.and_then(|v| v.into_iter().max())
            }
            "MatMul" => match (r(0), r(1)) {
                (Some(a), Some(b)) if a >= 2 && b >= 2 => Some(a.max(b)),
                (Some(1), Some(b)) if b >= 2 => Some(b - 1),
                (Some(a), Some(1)) if a >= 2 => Some(a - 1),
                (Some(1), Some(1)) => Some(0),
                _ => None,
            },
            "Gemm" | "Flatten" => Some(2),
            "Shape" | "Range" => Some(1),
            "NonZero" => Some(2),
            "Size" => Some(0),
            "Reshape" => len_of(1),
            "Squeeze" => r(0).zip(axes_len()).map(|(a, k)| a.saturating_sub(k)),
            "Unsqueeze" => r(0).zip(axes_len()).map(|(a, k)| a + k),
            "Gather" => r(0)
                .zip(r(1).or_else(|| n.input.get(1).and_then(|t| consts.dims(t)).map(|d| d.len())))
                .map(|(a, b)| a + b - 1),
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2" => {
                if attr_i(n, "keepdims").unwrap_or(1) != 0 {
                    r(0)
                } else {
                    match axes_len() {
                        Some(k) => r(0).map(|a| a.saturating_sub(k)),
                        None => Some(0),
                    }
                }
            }
            "ArgMax" | "ArgMin" => {
                if attr_i(n, "keepdims").unwrap_or(1) != 0 {
                    r(0)
                } else {
                    r(0).map(|a| a.saturating_sub(1))
                }
            }
            "Expand" => r(0).zip(len_of(1)).map(|(a, k)| a.max(k)),
            // Every input of a Concat has the output's rank.
            "Concat" => (0..n.input.len()).find_map(r),
            "ConstantOfShape" => len_of(0),
            "Einsum" => attr_s(n, "equation").and_then(|e| einsum_rank(&e, r)),
            "If" | "Loop" | "Scan" | "TopK" => None,
            // Everything else keeps the rank of its first input (elementwise, conv, pool, norms,
            // Transpose, Concat, Split, Slice, Pad, Tile, Cast, Softmax, …).
            _ => r(0),
        };
        if let Some(k) = out {
            for (i, o) in n.output.iter().enumerate() {
                if !o.is_empty() && (i == 0 || n.op_type == "Split") {
                    ranks.entry(o.clone()).or_insert(k);
                }
            }
        }
    }
    ranks
}

/// The rank of an `Einsum`'s output from its equation (and, with an ellipsis, the rank of an
/// input holding one).
fn einsum_rank(equation: &str, rank: impl Fn(usize) -> Option<usize>) -> Option<usize> {
    let letters = |t: &str| t.chars().filter(char::is_ascii_alphabetic).count();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation, None),
    };
    let inputs: Vec<&str> = lhs.split(',').collect();
    let ellipsis = || {
        inputs
            .iter()
            .enumerate()
            .filter(|(_, t)| t.contains("..."))
            .filter_map(|(i, t)| rank(i).and_then(|r| r.checked_sub(letters(t))))
            .max()
    };
    match rhs {
        Some(out) if out.contains("...") => Some(letters(out) + ellipsis()?),
        Some(out) => Some(letters(out)),
        None => {
            let all: String = inputs.concat();
            let once = all
                .chars()
                .filter(|c| c.is_ascii_alphabetic() && all.matches(*c).count() == 1)
                .count();
            let any_ellipsis = inputs.iter().any(|t| t.contains("..."));
            Some(once + if any_ellipsis { ellipsis()? } else { 0 })
        }
    }
}

/// Moves tensors stored in external data files (`location`, `offset`, `length` entries, relative
/// to `base_dir`) into the model itself, so that it can be rewritten and handed to ONNX Runtime as
/// one buffer. Returns the external files read, in order of first use.
pub fn inline_external_data(
    model: &mut ModelProto,
    base_dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut inline = |t: &mut TensorProto| -> Result<()> {
        if t.data_location != 1 {
            return Ok(());
        }
        let entry = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        let location = entry("location").ok_or_else(|| {
            Error::Model(format!(
                "tensor `{}` is external but names no location",
                t.name
            ))
        })?;
        let rel = std::path::Path::new(&location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::Model(format!(
                "tensor `{}`: external data location `{location}` leaves the model's directory",
                t.name
            )));
        }
        let path = base_dir.join(rel);
        let offset: u64 = entry("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut f = std::fs::File::open(&path).map_err(|e| {
            Error::Model(format!(
                "tensor `{}`: external data file {}: {e}",
                t.name,
                path.display()
            ))
        })?;
        let length: u64 = match entry("length").and_then(|v| v.parse().ok()) {
            Some(l) => l,
            None => f
                .metadata()
                .map(|m| m.len().saturating_sub(offset))
                .unwrap_or(0),
        };
        let mut buf = vec![0u8; length as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| {
                Error::Model(format!(
                    "tensor `{}`: external data file {} is too short: {e}",
                    t.name,
                    path.display()
                ))
            })?;
        t.raw_data = buf;
        t.data_location = 0;
        t.external_data.clear();
        if !files.contains(&path) {
            files.push(path);
        }
        Ok(())
    };
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| Error::Decode("the model has no graph".into()))?;
    for t in graph.initializer.iter_mut() {
        inline(t)?;
    }
    for n in graph.node.iter_mut() {
        for a in n.attribute.iter_mut() {
            if let Some(t) = a.t.as_mut() {
                inline(t)?;
            }
        }
    }
    Ok(files)
}

/// A tensor value declaration: name, element type and dims (`None` for a dynamic axis, named `N`;
/// no dims at all for an unknown shape).
pub fn value_info(name: &str, elem_type: i32, dims: Option<Vec<Option<i64>>>) -> ValueInfoProto {
    let shape = dims.map(|d| TensorShapeProto {
        dim: d
            .into_iter()
            .map(|v| tensor_shape_proto::Dimension {
                value: Some(match v {
                    Some(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                    None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
                }),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
