//! Core of **vog**: finding the examples a model finds hard with *Variance of Gradients*
//! (Agarwal, D'souza & Hooker, CVPR 2022).
//!
//! For an example `x` and training checkpoints `t = 1..K`, let `S_t = ∂ logit_p(x) / ∂x` be the
//! gradient of the pre-softmax score of class `p` (the true or the predicted label) with respect to
//! the input. Colour inputs are averaged over channels first. VoG is the mean over input elements
//! of the population standard deviation of `S_t` across checkpoints; scores are then normalized
//! within each class.
//!
//! This crate holds what every part of vog shares:
//!
//! * [`GradientBackend`] and [`Model`]: the interface to frameworks (candle, ONNX Runtime, libtorch);
//! * [`VogAccumulator`]: the streaming per-element statistics, windows included;
//! * [`ClassStats`]: class normalization from sufficient statistics;
//! * [`Reducer`]: per-checkpoint outputs (loss, margin, correctness) turned into scores;
//! * [`natural_cmp`]: checkpoint ordering by the numbers in their names.
//!
//! ```
//! use vog_core::{resolve_windows, ChannelReduce, VogAccumulator, BUILTIN_WINDOWS};
//!
//! let names: Vec<String> = BUILTIN_WINDOWS.iter().map(|s| s.to_string()).collect();
//! let (windows, _warnings) = resolve_windows(6, &names, &Default::default())?;
//! let mut acc = VogAccumulator::new(&[3, 2, 2], &windows, 6, ChannelReduce::Mean)?;
//! acc.reset(1); // one example per batch
//! for k in 0..6 {
//!     let gradient = vec![k as f32; 12]; // gradient of the example at checkpoint k
//!     acc.add(k, &gradient)?;
//! }
//! let scores = acc.scores()?; // [all, early, middle, late] for the example
//! assert!((scores[0] - 1.707825127659933).abs() < 1e-12); // std of 0..=5
//! assert!((scores[1] - 0.5).abs() < 1e-12);
//! # Ok::<(), vog_core::Error>(())
//! ```

#![deny(missing_docs)]

mod backend;
mod error;
mod floats;
mod kernels;
mod normalize;
pub mod rank;
mod reduce;
mod rng;
mod sort;
mod tensor;
mod time;
mod vog;
mod window;

pub use backend::{
    check_classes, check_finite, within_tolerance, worst_error, BackendInfo, Classes, GradOutput,
    GradRequest, GradientBackend, Model, ModelInfo, Target,
};
pub use error::{Error, Result};
pub use floats::{Floats, Recycler};
pub use normalize::{ClassStats, ClassSummary};
pub use reduce::{
    accuracy, panel_reducers, CheckpointOutcomes, Confidence, CorrectRatio, El2n, Forgetting,
    LastLoss, LastUncertainty, MeanMargin, PredictionChanges, Reducer, RowOutcome,
};
pub use rng::{Lcg, SplitMix64};
pub use sort::natural_cmp;
pub use tensor::{batch_shape_string, Tensor, TensorView};
pub use time::now_rfc3339;
pub use vog::{ChannelAxis, ChannelReduce, Moments, VogAccumulator};
pub use window::{resolve_windows, thirds, Window, BUILTIN_WINDOWS};
