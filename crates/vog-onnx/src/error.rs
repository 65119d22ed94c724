/// Errors of ONNX model handling and gradient-graph construction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not an ONNX model.
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    /// The model is valid ONNX but cannot be used as it is (missing tensors, ambiguous inputs,
    /// unsupported opset, external data).
    #[error("{0}")]
    Model(String),
    /// Ops on the path from the input to the output that have no gradient rule.
    #[error(
        "cannot differentiate {} node(s) on the path from `{wrt}` to `{output}`: {}. Ways out: \
         re-export the model at another opset or with another exporter (the op may be expressed \
         with ops vog differentiates), differentiate with respect to a tensor after these nodes \
         ([backend.options] wrt), or compute the gradients in the model's own framework: from \
         Python with `vog.torch.Backend`, `vog.jax.Backend` or `vog.keras.Backend` (any op that \
         framework differentiates), or the torch backend on TorchScript checkpoints",
        .nodes.len(),
        list(.nodes)
    )]
    Unsupported {
        /// The tensor differentiated with respect to.
        wrt: String,
        /// The output differentiated.
        output: String,
        /// `(op_type, node name)` of every unsupported node, in graph order.
        nodes: Vec<(String, String)>,
    },
}

fn list(nodes: &[(String, String)]) -> String {
    nodes
        .iter()
        .map(|(op, name)| format!("{op} (node `{name}`)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
