//! ONNX models in **vog**: protobuf types (generated from the vendored `onnx.proto3`, IR version
//! 13, with prost) and the input-gradient graph builder used by the ONNX Runtime backend.
//!
//! ONNX Runtime's standard builds have no training API, so [`gradient_model`] rewrites an
//! inference graph into one that also computes `∂ score_c / ∂ input` by reverse-mode
//! differentiation over standard ONNX ops. The rules per op are in `grad/rules/`; an op on the path
//! from the input to the output without a rule is an error naming every such node, never a silently
//! wrong gradient.
//!
//! ```no_run
//! let bytes = std::fs::read("model.onnx").unwrap();
//! let model = vog_onnx::decode_model(&bytes)?;
//! let grad = vog_onnx::gradient_model(&model, &vog_onnx::GradSpec::default())?;
//! std::fs::write("model.grad.onnx", vog_onnx::encode_model(&grad.model)).unwrap();
//! # Ok::<(), vog_onnx::Error>(())
//! ```

#![deny(missing_docs)]

mod emit;
mod error;
mod grad;
pub mod graph;
pub mod kernels;
pub mod layout;
mod unroll;
mod upgrade;

/// Types generated from `onnx.proto3`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!("proto/onnx.rs");
}

pub use error::{Error, Result};
pub use grad::{
    gradient_model, GradModel, GradSpec, CLASSES_INPUT, CLASSES_OUTPUT, CONV_INPUT_GRAD,
    GRADIENT_OUTPUT, GRAPH_REVISION, MAX_POOL_GRAD, RELU_GRAD, VOG_DOMAIN,
};
pub use graph::{decode_model, encode_model};
