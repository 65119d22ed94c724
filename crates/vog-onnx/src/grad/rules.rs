//! The backward rules and what the sweep must know about each op. The rules are one function per
//! op, grouped by family in `rules/`: `unary` (elementwise, one differentiable input),
//! `arithmetic` (broadcasting), `normalization` (softmax and normalization layers), `linalg`,
//! `einsum`, `conv` and `pool` (with their window `geometry`), `shape` (data movement), `reduce`,
//! `scatter` (GatherND and the scatters), `activation` (hard and modern activations), `trig` (trigonometric and hyperbolic) and `resize`. Here
//! are the dispatcher, [`backward`], which checks the node and the gradients flowing into it and
//! hands it to the rule [`rule_for`] finds for its op type (an op without one is reported as
//! unsupported, never differentiated wrongly), and the per-op facts used before any rule runs:
//! which inputs carry no gradient ([`stops`]) and which outputs never do ([`inactive_output`]).
//!
//! To add a rule for op `X`: write `fn x(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads` in the family
//! file it belongs to (or in a new file for a new family, declared below). It reads the node, its
//! inputs and the incoming gradient from the [`Ctx`] (`context`), emits its nodes through the
//! [`Builder`] and returns one gradient per input (`None` where `c.need(i)` is false), or `Err(())`
//! for attributes it cannot handle, which reports the node as unsupported. Then add a line for
//! `"X"` to [`rule_for`], and if some of its inputs are indices, shapes or other values without a
//! gradient, list them in [`stops`] so that the sweep never asks for theirs.

mod activation;
mod arithmetic;
mod context;
mod conv;
mod einsum;
mod geometry;
mod linalg;
mod normalization;
mod pool;
mod reduce;
mod resize;
mod scatter;
mod shape;
mod trig;
mod unary;

use super::builder::Builder;
use crate::graph::{attr_i, is_float_type};
use crate::proto::NodeProto;
use context::{Ctx, Grads};

/// A backward rule: the gradients of a node's inputs given those of its outputs.
type Rule = fn(&mut Builder<'_>, &Ctx<'_>) -> Grads;

/// Gradients of `n`'s inputs given its outputs' gradients; `Err(())` when `n` has no rule.
pub(super) fn backward(
    b: &mut Builder<'_>,
    n: &NodeProto,
    idx: usize,
    gy: &[Option<String>],
    need: &[bool],
    opset: i64,
) -> Grads {
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return Err(());
    }
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
    let c = Ctx {
        n,
        idx,
        g,
        gy,
        need,
        opset,
    };
    match rule_for(&n.op_type) {
        Some(rule) => rule(b, &c),
        None => Err(()),
    }
}

/// The rule for an `ai.onnx` op type, if there is one.
fn rule_for(op_type: &str) -> Option<Rule> {
    Some(match op_type {
        // Elementwise, one differentiable input.
        "Identity" | "Dropout" => unary::identity,
        "Cast" | "CastLike" => unary::cast,
        "Relu" => unary::relu,
        "LeakyRelu" => unary::leaky_relu,
        "Elu" => unary::elu,
        "Sigmoid" => unary::sigmoid,
        "Tanh" => unary::tanh,
        "Softplus" => unary::softplus,
        "Erf" => unary::erf,
        "Gelu" => unary::gelu,
        "Exp" => unary::exp,
        "Log" => unary::log,
        "Neg" => unary::neg,
        "Abs" => unary::abs,
        "Sqrt" => unary::sqrt,
        "Reciprocal" => unary::reciprocal,
        "Pow" => unary::pow,
        "Clip" => unary::clip,
        "HardSigmoid" => activation::hard_sigmoid,
        "HardSwish" => activation::hard_swish,
        "ThresholdedRelu" => activation::thresholded_relu,
        "Selu" => activation::selu,
        "Celu" => activation::celu,
        "Mish" => activation::mish,
        "Softsign" => activation::softsign,
        "Sin" => trig::sin,
        "Cos" => trig::cos,
        "Tan" => trig::tan,
        "Asin" => trig::asin,
        "Acos" => trig::acos,
        "Atan" => trig::atan,
        "Sinh" => trig::sinh,
        "Cosh" => trig::cosh,
        "Asinh" => trig::asinh,
        "Acosh" => trig::acosh,
        "Atanh" => trig::atanh,
        // Broadcasting arithmetic.
        "Add" | "Sub" | "Mul" | "Div" => arithmetic::binary,
        "Sum" | "Mean" => arithmetic::variadic,
        "Where" => arithmetic::where_,
        "Max" | "Min" => arithmetic::max_or_min,
        "PRelu" => arithmetic::prelu,
        // Normalization along axes.
        "Softmax" | "LogSoftmax" => normalization::softmax,
        "BatchNormalization" => normalization::batch_norm,
        "LayerNormalization" => normalization::layer_norm,
        "InstanceNormalization" => normalization::instance_norm,
        "GroupNormalization" => normalization::group_norm,
        "LpNormalization" => normalization::lp_normalization,
        // Linear algebra.
        "Gemm" => linalg::gemm,
        "MatMul" => linalg::matmul,
        "Einsum" => einsum::einsum,
        // Convolution and pooling.
        "Conv" => conv::conv,
        "ConvTranspose" => conv::conv_transpose,
        "MaxPool" => pool::max_pool,
        "AveragePool" => pool::average_pool,
        "GlobalAveragePool" => pool::global_average_pool,
        // Shapes and data movement.
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => shape::reshape,
        "Transpose" => shape::transpose,
        "Concat" => shape::concat,
        "Split" => shape::split,
        "Slice" => shape::slice,
        "Gather" | "GatherElements" => shape::gather,
        "GatherND" => scatter::gather_nd,
        "ScatterND" | "ScatterElements" => scatter::scatter,
        "Tile" => shape::tile,
        "ReverseSequence" => shape::reverse_sequence,
        "CumSum" => shape::cum_sum,
        "Trilu" => shape::trilu,
        "DepthToSpace" => shape::depth_to_space,
        "SpaceToDepth" => shape::space_to_depth,
        "Pad" => shape::pad,
        "Expand" => shape::expand,
        "Resize" => resize::resize,
        // Reductions.
        "ReduceSum" | "ReduceMean" => reduce::sum_or_mean,
        "ReduceMax" | "ReduceMin" => reduce::max_or_min,
        "ReduceL1" | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSumExp" => reduce::norms,
        "ReduceProd" => reduce::prod,
        _ => return None,
    })
}

/// Whether input `i` of `n` carries no gradient (shape inputs, indices, conditions, exponents).
pub(super) fn stops(n: &NodeProto, i: usize) -> bool {
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
        | "ReduceL1" | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSumExp" | "Split" | "Tile"
        | "TopK" | "Pad" | "Slice" | "Dropout" | "Clip" | "Resize" | "Upsample" | "CumSum" => {
            i >= 1
        }
        "ScatterElements" | "ScatterND" | "Scatter" => i == 1,
        "Where" => i == 0,
        "ReverseSequence" => i == 1,
        // The type comes from the second input, nothing else.
        "CastLike" => i == 1,
        "Pow" => i == 1,
        "BatchNormalization" => i >= 1,
        _ => false,
    }
}

/// Outputs that never carry gradient (indices, masks).
pub(super) fn inactive_output(n: &NodeProto, k: usize) -> bool {
    matches!(
        (n.op_type.as_str(), k),
        ("MaxPool", 1) | ("TopK", 1) | ("Dropout", 1)
    )
}
