//! Stored gradients (one directory per checkpoint, stacked or one file per example) against the
//! formula computed with numpy on the same arrays (`make_golden.py`, `stored_gradients`).

use vog_engine::{score, Config, Silent};

use crate::util::{assert_close, floats, golden, json};

fn config(layout: &str, channels: &str, labels: bool) -> Config {
    let g = golden("stored");
    let labels = if labels {
        format!("[data]\nlabels = \"{}\"\n", g.join("labels.npy").display())
    } else {
        String::new()
    };
    Config::from_toml(&format!(
        "version = 1\n{labels}[gradients]\ndirs = [\"{}/{layout}/epoch_*\"]\n[backend]\nbatch_size = 5\n\
         [scoring]\nchannels = \"{channels}\"\n",
        g.display()
    ))
    .unwrap()
}

#[test]
fn stored_gradients_match_numpy_in_both_layouts() {
    let expected = json(&golden("stored").join("expected.json"));
    for layout in ["stacked", "per_example"] {
        for channels in ["mean", "none"] {
            let result = score(&config(layout, channels, true), None, &Silent).unwrap();
            assert_eq!(result.examples.len(), 12);
            for (wi, w) in result.windows.iter().enumerate() {
                let exp = &expected[channels][&w.name];
                let raw: Vec<f64> = result.examples.iter().map(|e| e.vog[wi]).collect();
                let norm: Vec<f64> = result
                    .examples
                    .iter()
                    .map(|e| e.vog_norm[wi].unwrap())
                    .collect();
                let what = format!("{layout}/{channels}/{}", w.name);
                assert_close(&what, &raw, &floats(&exp["raw"]), 1e-9, 0.0);
                assert_close(&what, &norm, &floats(&exp["normalized"]), 1e-9, 1.0);
            }
            assert_eq!(result.windows.len(), 4);
        }
    }
}

#[test]
fn per_example_files_sort_by_number_and_name_the_examples() {
    let result = score(&config("per_example", "mean", true), None, &Silent).unwrap();
    let ids: Vec<&str> = result.examples.iter().map(|e| e.id.as_str()).collect();
    let want: Vec<String> = (0..12).map(|i| format!("ex_{i}")).collect();
    assert_eq!(ids, want);
    assert_eq!(result.manifest.checkpoints.len(), 6);
    assert!(result.manifest.checkpoints[1].path.ends_with("epoch_2"));
}

#[test]
fn without_labels_only_raw_vog_is_computed() {
    let result = score(&config("stacked", "mean", false), None, &Silent).unwrap();
    assert!(result
        .examples
        .iter()
        .all(|e| e.vog_norm.iter().all(|v| v.is_none())));
    assert!(result
        .manifest
        .warnings
        .iter()
        .any(|w| w.contains("raw VoG only")));
    let expected = json(&golden("stored").join("expected.json"));
    let raw: Vec<f64> = result.examples.iter().map(|e| e.vog[0]).collect();
    assert_close(
        "raw",
        &raw,
        &floats(&expected["mean"]["all"]["raw"]),
        1e-9,
        0.0,
    );
}
