//! Reading ONNX graphs: attributes, constants, tensors, value types.

use std::collections::HashMap;

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, TensorProto, ValueInfoProto,
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
        Constants {
            tensors,
            constant_nodes,
        }
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

    /// Dimensions of an initializer.
    pub fn dims(&self, name: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.tensors.get(name) {
            return Some(t.dims.clone());
        }
        let n = self.constant_nodes.get(name)?;
        attr(n, "value")
            .and_then(|a| a.t.as_ref())
            .map(|t| t.dims.clone())
    }
}
