//! The conformance suite of **vog** gradient backends, for a backend's own tests (as burn's
//! backend test suite is for burn's backends).
//!
//! A backend is a [`Subject`]: a constructor taking backend options, and the options to test it
//! with. A [`Case`] is a model to check it on: inputs and labels, the checkpoints, and reference
//! answers from an independent source (PyTorch autograd, numpy). The checks:
//!
//! * [`check_gradients`]: logits and input gradients against the references, for the logit and
//!   the probability target, with given classes and with each row's argmax; answers validate and
//!   use the classes they should;
//! * [`check_vog_through_engine`]: whole scoring runs of `vog_engine::score`, against reference
//!   VoG ([`VogCase`]) or, with [`assert_scores_agree`], against another backend's run;
//! * [`check_errors`]: every error path: rows of the wrong shape, classes out of range, missing
//!   and damaged checkpoints, unknown options, and a NaN in one row;
//! * [`check_plugin_equivalence`]: all of the above in-process and through the plugin loader
//!   (`vog_plugin_host`), with bit-identical results.
//!
//! Checks panic, like `assert!`, with a message that starts with the check's name and names the
//! subject, the case, the checkpoint, target and classes, the row and element, and the numbers.
//! A reference file that a case names and that is missing fails the check; nothing is skipped.
//!
//! ```no_run
//! use vog_conformance::{
//!     check_plugin_equivalence, Case, LabelMode, Pick, PluginBuild, Reference, Subject, Target,
//!     VogCase,
//! };
//! # struct MyBackend;
//! # impl vog_core::GradientBackend for MyBackend {
//! #     fn info(&self) -> vog_core::BackendInfo { <Self as vog_plugin::PluginBackend>::describe() }
//! #     fn load(&self, p: &std::path::Path) -> vog_core::Result<Box<dyn vog_core::Model>> {
//! #         Err(vog_core::Error::checkpoint(p, "this example loads nothing"))
//! #     }
//! # }
//! # impl vog_plugin::PluginBackend for MyBackend {
//! #     fn describe() -> vog_core::BackendInfo {
//! #         vog_core::BackendInfo { name: "mine".into(), version: "0".into(), extensions: vec![], devices: vec![] }
//! #     }
//! #     fn create(_: &str) -> vog_core::Result<Self> { Ok(MyBackend) }
//! #     fn self_test() -> vog_core::Result<String> { Ok(String::new()) }
//! # }
//!
//! // In tests/conformance.rs of the crate vog-backend-mine.
//! let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
//! let case = Case::new("mlp", data.join("x.npy"), data.join("y.npy"))
//!     .reference(
//!         Reference::new(data.join("epoch_10.pt"), Pick::Labels, Target::Probability)
//!             .gradient(data.join("grad_10_probability.npy"))
//!             .logits(data.join("logits_10.npy")),
//!     )
//!     .reference(
//!         Reference::new(data.join("epoch_10.pt"), Pick::Argmax, Target::Logit)
//!             .gradient(data.join("grad_10_logit_argmax.npy")),
//!     );
//! let vog = VogCase::new("mlp", data.join("x.npy"), data.join("y.npy"))
//!     .checkpoints([data.join("epoch_*.pt")])
//!     .run(LabelMode::True, Target::Logit)
//!     .reference(data.join("vog.json"));
//!
//! let library = PluginBuild::new(env!("CARGO_MANIFEST_DIR"))
//!     .package("vog-backend-mine")
//!     .library("mine");
//! check_plugin_equivalence(
//!     &Subject::in_process::<MyBackend>("threads = 1"),
//!     &Subject::plugin(&library, "threads = 1"),
//!     &case,
//!     Some(&vog),
//! );
//! ```
//!
//! [`repo`] describes the vog repository's own golden models, which vog's backends are checked
//! on.

#![deny(missing_docs)]

mod case;
mod compare;
mod engine;
mod equivalence;
mod errors;
mod gradients;
mod plugins;
pub mod repo;
mod subject;

pub use case::{Case, Data, Pick, Reference, DEFAULT_TOLERANCE};
pub use compare::{labels, max_rel, npy, worst, Worst};
pub use engine::{assert_scores_agree, check_vog_through_engine, ExampleVog, Scores, VogCase};
pub use equivalence::{check_plugin_equivalence, run_suite, Observed};
pub use errors::{check_errors, Errors, NanInput, UNKNOWN_OPTION};
pub use gradients::{check_gradients, Gradients};
pub use plugins::PluginBuild;
pub use subject::Subject;
/// Re-exported for cases: the target a request differentiates.
pub use vog_core::Target;
/// Re-exported for scoring runs: the label mode of a run.
pub use vog_engine::LabelMode;
