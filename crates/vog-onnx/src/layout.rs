//! Where a model keeps the channels of an image input, as its first layers read it: a convolution,
//! pool or normalization taking the input as it comes reads it channels-first (ONNX's layout), a
//! transpose from `[N, H, W, C]` to `[N, C, H, W]` in front of them means channels-last (Keras,
//! tf2onnx and jax2onnx exports). Elementwise preprocessing (scaling, mean subtraction, casts) on
//! the way is looked through. Anything else, or layers that disagree, tell nothing.

use std::collections::HashSet;

use vog_core::ChannelAxis;

use crate::graph::attr_ints;
use crate::proto::GraphProto;

/// The channel axis of input `input` (rank 4: a batch of 3-D examples), if the graph tells.
pub fn input_channel_axis(graph: &GraphProto, input: &str) -> Option<ChannelAxis> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut frontier = vec![input];
    let mut found: Option<ChannelAxis> = None;
    while let Some(t) = frontier.pop() {
        if !seen.insert(t) {
            continue;
        }
        for n in graph.node.iter().filter(|n| n.input.iter().any(|i| i == t)) {
            if !(n.domain.is_empty() || n.domain == "ai.onnx") {
                return None;
            }
            let first = n.input.first().is_some_and(|i| i == t);
            let says = match n.op_type.as_str() {
                "Conv"
                | "ConvTranspose"
                | "MaxPool"
                | "AveragePool"
                | "LpPool"
                | "GlobalAveragePool"
                | "GlobalMaxPool"
                | "BatchNormalization"
                | "InstanceNormalization"
                    if first =>
                {
                    Some(ChannelAxis::First)
                }
                "Transpose" if attr_ints(n, "perm").as_deref() == Some(&[0, 3, 1, 2]) => {
                    Some(ChannelAxis::Last)
                }
                "Cast" | "Identity" | "Add" | "Sub" | "Mul" | "Div" | "Clip" => {
                    frontier.extend(n.output.iter().map(String::as_str));
                    None
                }
                _ => return None,
            };
            if let Some(s) = says {
                if found.is_some_and(|f| f != s) {
                    return None;
                }
                found = Some(s);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{make_ints, make_node};
    use crate::proto::NodeProto;

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        make_node(op, inputs, output, vec![])
    }

    fn graph(nodes: Vec<NodeProto>) -> GraphProto {
        GraphProto {
            node: nodes,
            ..Default::default()
        }
    }

    #[test]
    fn first_layers_tell_the_channel_axis() {
        // Scaled, then convolved: channels first.
        let g = graph(vec![
            node("Div", &["x", "k"], "s"),
            node("Conv", &["s", "w"], "y"),
        ]);
        assert_eq!(input_channel_axis(&g, "x"), Some(ChannelAxis::First));
        // Transposed from NHWC, then convolved: channels last.
        let mut t = node("Transpose", &["x"], "xt");
        t.attribute.push(make_ints("perm", vec![0, 3, 1, 2]));
        let g = graph(vec![t.clone(), node("Conv", &["xt", "w"], "y")]);
        assert_eq!(input_channel_axis(&g, "x"), Some(ChannelAxis::Last));
        // A flatten (an MLP) or a conflict tells nothing; nor does the input as a weight.
        let g = graph(vec![node("Flatten", &["x"], "f")]);
        assert_eq!(input_channel_axis(&g, "x"), None);
        let g = graph(vec![t, node("Conv", &["x", "w"], "y")]);
        assert_eq!(input_channel_axis(&g, "x"), None);
        let g = graph(vec![node("Conv", &["w", "x"], "y")]);
        assert_eq!(input_channel_axis(&g, "x"), None);
    }
}
