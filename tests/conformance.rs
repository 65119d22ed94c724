//! One conformance suite for every backend, run in-process and through the plugin loader:
//! gradients against golden files (PyTorch autograd), VoG through the engine, shapes, labels and
//! errors; the two ways must give identical results. The checks are `vog-conformance`'s; here
//! they run on the plugins as this test binary's build of them (`util::plugin_lib`).

use vog_backend_candle::CandleBackend;
use vog_backend_linear::LinearBackend;
use vog_conformance::{check_errors, check_gradients, check_plugin_equivalence, repo, Subject};

use crate::util::plugin_lib;

/// The backends under test, each with a golden model it can load (`vog_conformance::repo`).
const SUBJECTS: [(&str, &str); 3] = [("candle", "mlp"), ("candle", "cnn"), ("linear", "linear")];

/// Backend `name` in-process and as a plugin, with `options`.
fn subjects(name: &str, options: &str) -> [Subject; 2] {
    let in_process = match name {
        "candle" => Subject::in_process::<CandleBackend>(options),
        "linear" => Subject::in_process::<LinearBackend>(options),
        n => panic!("no backend {n}"),
    };
    [in_process, Subject::plugin(&plugin_lib(name), options)]
}

#[test]
fn backends_agree_in_process_and_as_plugins() {
    for (name, model) in SUBJECTS {
        let [in_process, plugin] = subjects(name, repo::options(model));
        let [seen, _] = check_plugin_equivalence(
            &in_process,
            &plugin,
            &repo::case(model, repo::checkpoints(model)),
            Some(&repo::vog(model)),
        );
        assert_eq!(seen.gradients.len(), 6);
    }
}

#[test]
fn candle_gradients_match_torch_in_process_and_as_plugin() {
    for (_, model) in SUBJECTS.iter().filter(|(name, _)| *name == "candle") {
        for subject in subjects("candle", repo::options(model)) {
            let seen = check_gradients(&subject, &repo::case(model, repo::checkpoints(model)));
            assert_eq!(seen.len(), 6);
        }
    }
}

#[test]
fn candle_reports_shape_mismatch_with_shapes() {
    let [_, plugin] = subjects("candle", repo::MLP_OPTIONS);
    let case = repo::case("mlp", repo::checkpoints("mlp")).wrong_row_shape(vec![7]);
    let err = check_errors(&plugin, &case).shape.to_string();
    assert!(err.contains("[N, 7]") && err.contains("[32, 20]"), "{err}");
}
