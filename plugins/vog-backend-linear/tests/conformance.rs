//! The conformance suite (`vog-conformance`) on the golden linear model, in-process and as a
//! plugin: VoG through the engine against PyTorch autograd's, every error path, and
//! bit-identical results both ways (the golden linear model has no reference gradients).

use vog_backend_linear::LinearBackend;
use vog_conformance::{check_plugin_equivalence, repo, Subject};

#[test]
fn golden_model_conforms_in_process_and_as_a_plugin() {
    // The repository's one build of its plugins, shared with every test that loads them; a
    // crate of its own would build itself: `PluginBuild::new(env!("CARGO_MANIFEST_DIR"))
    // .package("vog-backend-linear")`.
    let plugin = repo::workspace_plugins().library("linear");
    let options = repo::options("linear");
    let [in_process, _] = check_plugin_equivalence(
        &Subject::in_process::<LinearBackend>(options),
        &Subject::plugin(&plugin, options),
        &repo::case("linear", repo::checkpoints("linear")),
        Some(&repo::vog("linear")),
    );
    assert_eq!(in_process.gradients.len(), 6);
    assert_eq!(in_process.vog.len(), 2);
}
