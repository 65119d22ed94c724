//! VoG through the candle backend against the PyTorch-autograd reference
//! (`tests/data/golden/make_golden.py`): both models, every label mode, both targets, every window.

use vog_backend_candle::CandleBackend;
use vog_engine::{score, Config, Silent};

use crate::util::{assert_close, floats, golden, golden_config, json, options};

fn check_model(model: &str) {
    let expected = json(&golden(model).join("expected.json"));
    let backend = CandleBackend::from_options(options(model)).unwrap();
    for mode in ["true", "predicted", "predicted-each"] {
        for target in ["logit", "probability"] {
            let scoring = format!("labels = \"{mode}\"\ntarget = \"{target}\"\n");
            let config = Config::from_toml(&golden_config(model, &scoring)).unwrap();
            let result = score(&config, Some(&backend), &Silent).unwrap();
            let exp = &expected[format!("{mode}/{target}")];
            let what = format!("{model} {mode}/{target}");

            let windows: Vec<&str> = result.windows.iter().map(|w| w.name.as_str()).collect();
            let exp_windows: Vec<&String> =
                expected["windows"].as_object().unwrap().keys().collect();
            // Scoring predicted classes with the logit target adds the probability target by
            // default (`second_target = "auto"`): its windows must match that reference too.
            let second = mode != "true" && target == "logit";
            assert_eq!(
                windows.len(),
                exp_windows.len() * if second { 2 } else { 1 },
                "{what}: windows {windows:?}"
            );
            for (wi, w) in result.windows.iter().enumerate() {
                let (base, exp) = match w.name.strip_suffix("_probability") {
                    Some(base) => (base, &expected[format!("{mode}/probability")]),
                    None => (w.name.as_str(), exp),
                };
                assert_eq!(
                    w.name.ends_with("_probability"),
                    second && wi >= exp_windows.len()
                );
                let range = floats(&expected["windows"][base]);
                assert_eq!(
                    [w.start as f64, w.end as f64],
                    [range[0], range[1]],
                    "{what}: window {}",
                    w.name
                );
                let raw: Vec<f64> = result.examples.iter().map(|e| e.vog[wi]).collect();
                let norm: Vec<f64> = result
                    .examples
                    .iter()
                    .map(|e| e.vog_norm[wi].unwrap())
                    .collect();
                // 1e-5 relative on raw VoG; normalized scores are O(1), compared to 1e-5 absolute
                // at least.
                assert_close(
                    &format!("{what} raw {}", w.name),
                    &raw,
                    &floats(&exp[base]["raw"]),
                    1e-5,
                    0.0,
                );
                assert_close(
                    &format!("{what} norm {}", w.name),
                    &norm,
                    &floats(&exp[base]["normalized"]),
                    1e-5,
                    1.0,
                );
            }
            let used: Vec<f64> = result
                .examples
                .iter()
                .map(|e| f64::from(e.label_used.unwrap()))
                .collect();
            assert_eq!(used, floats(&exp["label_used"]), "{what}: label used");
            let predicted: Vec<f64> = result
                .examples
                .iter()
                .map(|e| f64::from(e.predicted.unwrap()))
                .collect();
            assert_eq!(
                predicted,
                floats(&expected["predicted"]),
                "{what}: predicted"
            );
        }
    }
}

#[test]
fn mlp_vog_matches_torch_reference_all_modes_targets_windows() {
    check_model("mlp");
}

#[test]
fn cnn_with_maxpool_batchnorm_groups_matches_torch_reference() {
    check_model("cnn");
}

#[test]
fn uneven_thirds_for_ten_checkpoints() {
    // 10 checkpoints split 4/3/3 like numpy.array_split (the reference script's windows).
    let expected = json(&golden("mlp").join("expected.json"));
    assert_eq!(floats(&expected["windows"]["early"]), vec![0.0, 4.0]);
    assert_eq!(floats(&expected["windows"]["late"]), vec![7.0, 10.0]);
}

#[test]
fn flat_rows_reshaped_by_input_shape_score_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (shape, x) = crate::util::npy(&golden("cnn").join("x.npy"));
    let flat = dir.path().join("x_flat.npy");
    vog_data::write_npy_f32(&flat, &[shape[0], 432], &x).unwrap();
    let body = golden_config("cnn", "labels = \"true\"\n")
        .replace(
            &golden("cnn").join("x.npy").display().to_string(),
            &flat.display().to_string(),
        )
        .replace("[checkpoints]", "input_shape = [3, 12, 12]\n[checkpoints]");
    let config = Config::from_toml(&body).unwrap();
    let backend = CandleBackend::from_options(options("cnn")).unwrap();
    let result = score(&config, Some(&backend), &Silent).unwrap();
    let expected = json(&golden("cnn").join("expected.json"));
    let raw: Vec<f64> = result.examples.iter().map(|e| e.vog[0]).collect();
    assert_close(
        "reshaped",
        &raw,
        &floats(&expected["true/logit"]["all"]["raw"]),
        1e-5,
        0.0,
    );
    assert_eq!(result.manifest.data.example_shape, vec![432]);
    assert_eq!(result.manifest.data.model_input_shape, vec![3, 12, 12]);
}
