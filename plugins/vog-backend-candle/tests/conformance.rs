//! The conformance suite (`vog-conformance`) on the golden MLP and CNN, in-process and as a
//! plugin: gradients and logits against PyTorch autograd, VoG through the engine against
//! PyTorch's, every error path, and bit-identical results both ways.

use std::path::PathBuf;

use vog_backend_candle::CandleBackend;
use vog_conformance::{check_plugin_equivalence, repo, Subject};

/// The plugin build of this crate (`--features plugin`), current with its sources: the
/// repository's one build of its plugins, shared with every other test that loads them (a
/// third-party crate would use `PluginBuild::new(env!("CARGO_MANIFEST_DIR"))` with its package).
fn plugin() -> PathBuf {
    repo::workspace_plugins().library("candle")
}

#[test]
fn golden_models_conform_in_process_and_as_a_plugin() {
    for model in ["mlp", "cnn"] {
        let options = repo::options(model);
        let [in_process, _] = check_plugin_equivalence(
            &Subject::in_process::<CandleBackend>(options),
            &Subject::plugin(&plugin(), options),
            &repo::case(model, repo::checkpoints(model)),
            Some(&repo::vog(model)),
        );
        assert_eq!(in_process.gradients.len(), 6, "{model}");
        assert_eq!(in_process.vog.len(), 2, "{model}");
    }
}
