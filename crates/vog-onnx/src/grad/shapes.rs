//! Which tensors of the forward graph are known to have the same shape, without knowing the shapes
//! themselves (the batch axis is symbolic, and exporters rarely record intermediate shapes).
//!
//! The reverse pass of a broadcasting op sums each operand's gradient over the axes it was
//! broadcast along; where that is unknown at build time the graph finds out at run time from
//! `Shape(operand)`. On ONNX Runtime that `Shape` is not free: an operand computed in its blocked
//! convolution layout is reordered back, in full, just to read its shape, and the reorder keeps
//! the runtime from fusing the residual `Add` into the convolution before it (ResNet-18: a
//! quarter of a second per 768 example-checkpoints). Where both operands are known to have the
//! output's shape, the gradient passes through as it is.
//!
//! Tensors get a class each; a node whose output has its input's shape (element-wise ops, a
//! "same" convolution) passes the class on, and so does a broadcasting op whose operands all share
//! one class (or are size-1 constants). Convolutions and pools that change the shape derive a
//! class from their input's and their geometry: two of them with the same input, strides, output
//! channels and `pads − dilation·(kernel − 1)` per axis give the same output shape (ResNet's
//! downsampling shortcut, a 1×1 convolution at stride 2, and its 3×3 main path at stride 2 and
//! padding 1). Anything else gets a class of its own: unknown, never wrongly equal.

use std::collections::HashMap;

use crate::graph::{attr_i, attr_ints, attr_s, Constants};
use crate::proto::{GraphProto, NodeProto};

/// Ops whose first output has their first input's shape.
const SAME_SHAPE: &[&str] = &[
    "Abs",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "Mish",
    "Neg",
    "Not",
    "PRelu",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sign",
    "Sin",
    "Softmax",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Tanh",
    "ThresholdedRelu",
];

/// Broadcasting ops: their output has the shape every operand has when they all have one.
const BROADCASTING: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Sum", "Mean", "Max", "Min", "Where",
];

/// What a shape-changing convolution or pool keeps of its input's class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Derived {
    of: usize,
    /// Output channels, or `None` for the input's own.
    channels: Option<i64>,
    strides: Vec<i64>,
    /// `pads_begin + pads_end − dilation·(kernel − 1)` per spatial axis.
    offsets: Vec<i64>,
}

/// Shape classes of a forward graph's tensors (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SameShapes {
    class: HashMap<String, usize>,
    derived: HashMap<Derived, usize>,
    next: usize,
}

impl SameShapes {
    /// The classes of `graph`'s tensors, its nodes read in order (`ranks` as inferred for it).
    pub(crate) fn infer(
        graph: &GraphProto,
        consts: &Constants<'_>,
        ranks: &HashMap<String, usize>,
    ) -> Self {
        let mut s = SameShapes::default();
        for n in &graph.node {
            let op = n.op_type.as_str();
            let class = if SAME_SHAPE.contains(&op) {
                n.input.first().map(|x| s.of(x))
            } else if BROADCASTING.contains(&op) {
                s.broadcast(n, consts, ranks)
            } else if op == "Conv" {
                s.conv(n, consts)
            } else if matches!(op, "MaxPool" | "AveragePool" | "LpPool") {
                s.pool(n)
            } else {
                None
            };
            let Some(class) = class else { continue };
            // MaxPool's indices have its values' shape.
            let outputs = if op == "MaxPool" { 2 } else { 1 };
            for o in n.output.iter().take(outputs).filter(|o| !o.is_empty()) {
                s.class.insert(o.clone(), class);
            }
        }
        s
    }

    /// Whether `a` and `b` are known to have the same shape.
    pub(crate) fn same(&self, a: &str, b: &str) -> bool {
        a == b
            || matches!(
                (self.class.get(a), self.class.get(b)),
                (Some(x), Some(y)) if x == y
            )
    }

    /// `name`'s class, a new one when it has none yet.
    fn of(&mut self, name: &str) -> usize {
        if let Some(&c) = self.class.get(name) {
            return c;
        }
        let c = self.fresh();
        self.class.insert(name.to_string(), c);
        c
    }

    fn fresh(&mut self) -> usize {
        self.next += 1;
        self.next
    }

    /// A broadcasting op's class: its operands', when all that are not size-1 constants (of a
    /// rank no higher than theirs) share one.
    fn broadcast(
        &mut self,
        n: &NodeProto,
        consts: &Constants<'_>,
        ranks: &HashMap<String, usize>,
    ) -> Option<usize> {
        let inputs: Vec<&String> = n.input.iter().filter(|i| !i.is_empty()).collect();
        let small = |t: &str| {
            consts
                .dims(t)
                .filter(|d| d.iter().all(|&k| k == 1))
                .map(|d| d.len())
        };
        let big: Vec<&String> = inputs
            .iter()
            .copied()
            .filter(|t| small(t).is_none())
            .collect();
        let first = big.first()?;
        let rank = ranks.get(first.as_str()).copied()?;
        let smalls_fit = inputs.iter().filter_map(|t| small(t)).all(|r| r <= rank);
        let class = self.of(first);
        (smalls_fit && big.iter().all(|t| self.of(t) == class)).then_some(class)
    }

    /// A convolution's class: its input's when it keeps the shape ("same" padding at stride 1,
    /// as many output channels as input channels), else one derived from the input's.
    fn conv(&mut self, n: &NodeProto, consts: &Constants<'_>) -> Option<usize> {
        let w = consts.dims(n.input.get(1)?)?;
        if w.len() < 3 {
            return None;
        }
        let group = attr_i(n, "group").unwrap_or(1);
        let cin = w[1].checked_mul(group)?;
        let channels = (w[0] != cin).then_some(w[0]);
        self.spatial(n, &w[2..], channels)
    }

    /// A pool's class (floor mode only: `ceil_mode` 1 rounds up, another shape rule).
    fn pool(&mut self, n: &NodeProto) -> Option<usize> {
        if attr_i(n, "ceil_mode").unwrap_or(0) != 0 {
            return None;
        }
        let kernel = attr_ints(n, "kernel_shape")?;
        self.spatial(n, &kernel, None)
    }

    /// The class of a windowed op over input 0 with these kernel sizes and output channels.
    fn spatial(&mut self, n: &NodeProto, kernel: &[i64], channels: Option<i64>) -> Option<usize> {
        let sp = kernel.len();
        match attr_s(n, "auto_pad").as_deref() {
            None | Some("NOTSET") | Some("VALID") => {}
            Some(_) => return None,
        }
        let ones = || vec![1; sp];
        let strides = attr_ints(n, "strides").unwrap_or_else(ones);
        let dilations = attr_ints(n, "dilations").unwrap_or_else(ones);
        let pads = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 2 * sp]);
        if strides.len() != sp || dilations.len() != sp || pads.len() != 2 * sp {
            return None;
        }
        let offsets: Vec<i64> = (0..sp)
            .map(|i| pads[i] + pads[i + sp] - dilations[i] * (kernel[i] - 1))
            .collect();
        let of = self.of(n.input.first()?);
        if channels.is_none() && strides.iter().all(|&s| s == 1) && offsets.iter().all(|&o| o == 0)
        {
            return Some(of);
        }
        let key = Derived {
            of,
            channels,
            strides,
            offsets,
        };
        if let Some(&c) = self.derived.get(&key) {
            return Some(c);
        }
        let c = self.fresh();
        self.derived.insert(key, c);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{make_ints, make_node, tensor_f32};

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        make_node(op, inputs, output, vec![])
    }

    /// A convolution of `x` by `w` at `stride` with `pad` on every side.
    fn conv(x: &str, w: &str, y: &str, stride: i64, pad: i64) -> NodeProto {
        let mut n = node("Conv", &[x, w], y);
        n.attribute.push(make_ints("strides", vec![stride, stride]));
        n.attribute.push(make_ints("pads", vec![pad; 4]));
        n
    }

    fn weight(name: &str, dims: [i64; 4]) -> crate::proto::TensorProto {
        let len = dims.iter().product::<i64>() as usize;
        tensor_f32(name, dims.to_vec(), vec![0.0; len])
    }

    fn shapes(nodes: Vec<NodeProto>) -> SameShapes {
        let graph = GraphProto {
            node: nodes,
            initializer: vec![
                weight("w3", [8, 8, 3, 3]),
                weight("w3s2", [16, 8, 3, 3]),
                weight("w1s2", [16, 8, 1, 1]),
                weight("w16", [16, 16, 3, 3]),
                tensor_f32("one", vec![1, 1, 1], vec![1.0]),
                tensor_f32("bias", vec![8, 1, 1], vec![0.0; 8]),
            ],
            ..Default::default()
        };
        let consts = Constants::new(&graph);
        let ranks: HashMap<String, usize> = ["x", "h", "r", "a", "m", "s", "d", "u", "v", "y"]
            .iter()
            .map(|t| (t.to_string(), 4))
            .collect();
        SameShapes::infer(&graph, &consts, &ranks)
    }

    #[test]
    fn a_residual_blocks_operands_have_the_outputs_shape() {
        let s = shapes(vec![
            conv("x", "w3", "h", 1, 1),
            node("Relu", &["h"], "r"),
            conv("r", "w3", "a", 1, 1),
            node("Add", &["a", "x"], "y"),
            node("Mul", &["y", "one"], "z"),
            node("Add", &["y", "bias"], "b"),
        ]);
        assert!(s.same("a", "y") && s.same("x", "y") && s.same("r", "x"));
        // A size-1 constant keeps the shape; a constant that may broadcast the other way not.
        assert!(s.same("z", "y"));
        assert!(!s.same("b", "y"));
    }

    #[test]
    fn a_downsampling_blocks_two_paths_meet_with_one_shape() {
        let s = shapes(vec![
            conv("x", "w3s2", "m", 2, 1),
            conv("m", "w16", "d", 1, 1),
            conv("x", "w1s2", "s", 2, 0),
            node("Add", &["d", "s"], "y"),
            // Other geometry, other shapes: no padding, or stride 1.
            conv("x", "w3s2", "u", 2, 0),
            conv("x", "w1s2", "v", 1, 0),
        ]);
        assert!(s.same("d", "s") && s.same("y", "s"));
        assert!(!s.same("u", "s") && !s.same("v", "s") && !s.same("m", "x"));
    }

    #[test]
    fn unknown_ops_and_mismatched_operands_are_never_equal() {
        let s = shapes(vec![
            node("Flatten", &["x"], "f"),
            node("Relu", &["f"], "g"),
            node("Add", &["x", "h"], "y"),
        ]);
        assert!(s.same("f", "g"));
        assert!(!s.same("f", "x") && !s.same("y", "x") && !s.same("y", "h"));
        assert!(!s.same("p", "q") && s.same("p", "p"));
    }
}
