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

/// The reference implementation's output, unmoved: `weight_STEP/grad_NNNNN.npy` beside
/// `classified_flag.npy`, `ground_truth.npy` and `pred_label.npy` (`make_golden.py`,
/// `reference_layout`), scored by `vog score --gradients` with no other setting.
#[test]
fn the_reference_layout_scores_without_settings() {
    let g = golden("reference_layout");
    let expected = json(&g.join("expected.json"));
    let out = tempfile::tempdir().unwrap();
    let status = crate::util::vog()
        .args(["score", "-q", "--gradients"])
        .arg(g.join("weight_*"))
        .arg("--out")
        .arg(out.path().join("r"))
        .status()
        .unwrap();
    assert!(status.success());
    let run = vog_results::ResultsDir::open(&out.path().join("r")).unwrap();
    let m = run.manifest();
    assert_eq!(m.checkpoints.len(), 5);
    assert!(m.checkpoints[0].path.ends_with("weight_03753"));
    assert!(
        m.checkpoints[4].path.ends_with("weight_12510"),
        "natural order"
    );
    assert!(m
        .data
        .labels
        .as_deref()
        .unwrap()
        .contains("ground_truth.npy"));
    assert_eq!(m.scoring.vog_map_shape, vec![6, 6]);
    let rows: Vec<vog_results::ScoreRow> = run.rows().unwrap().map(Result::unwrap).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("grad_{i:05}")).collect();
    assert_eq!(ids, want);
    let labels: Vec<f64> = rows
        .iter()
        .map(|r| f64::from(r.true_label.unwrap()))
        .collect();
    assert_eq!(labels, floats(&expected["labels"]));
    let windows = expected["windows"].as_object().unwrap();
    assert_eq!(m.scoring.windows.len(), windows.len()); // 5 checkpoints: no one-checkpoint `late`
    for w in windows.keys().map(String::as_str) {
        let raw: Vec<f64> = rows.iter().map(|r| r.vog[w].unwrap()).collect();
        let norm: Vec<f64> = rows.iter().map(|r| r.vog_norm[w].unwrap()).collect();
        assert_close(w, &raw, &floats(&expected[w]["raw"]), 1e-6, 0.0);
        assert_close(w, &norm, &floats(&expected[w]["normalized"]), 1e-6, 1.0);
    }
}

#[test]
fn a_gradient_pattern_picks_the_files() {
    let g = golden("reference_layout");
    let cfg = |pattern: &str| {
        Config::from_toml(&format!(
            "version = 1\n[gradients]\ndirs = [\"{}/weight_*\"]\npattern = \"{pattern}\"\n",
            g.display()
        ))
        .unwrap()
    };
    let five = score(&cfg("grad_0000[0-4].npy"), None, &Silent).unwrap();
    assert_eq!(five.examples.len(), 5);
    let none = score(&cfg("gradient_*.npy"), None, &Silent).unwrap_err();
    assert!(
        none.to_string().contains("matching `gradient_*.npy`"),
        "{none}"
    );
    let bad = score(&cfg("grad_[.npy"), None, &Silent).unwrap_err();
    assert!(bad.to_string().contains("gradients.pattern"), "{bad}");
}

/// The same stored gradients laid out channels-last (`[N, H, W, C]`): `channel_axis = "auto"`
/// reads the layout from the shape and gives numpy's channel-mean VoG; a shape that does not
/// tell is an error naming the setting, and setting it scores.
#[test]
fn channels_last_gradients_average_the_colours_too() {
    let g = golden("stored");
    let expected = json(&g.join("expected.json"));
    let dir = tempfile::tempdir().unwrap();
    for k in 1..=6 {
        let (shape, v) = crate::util::npy(&g.join(format!("stacked/epoch_{k}/grads.npy")));
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let mut last = vec![0f32; v.len()];
        for (i, &x) in v.iter().enumerate() {
            let (e, ch, y, xx) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
            last[((e * h + y) * w + xx) * c + ch] = x;
        }
        let d = dir.path().join(format!("last/epoch_{k}"));
        std::fs::create_dir_all(&d).unwrap();
        vog_data::write_npy_f32(&d.join("grads.npy"), &[n, h, w, c], &last).unwrap();
        // A cube: neither end looks like colour channels.
        let d = dir.path().join(format!("cube/epoch_{k}"));
        std::fs::create_dir_all(&d).unwrap();
        vog_data::write_npy_f32(&d.join("grads.npy"), &[n, 4, 3, 4], &v).unwrap();
    }
    let cfg = |layout: &str, axis: &str| {
        Config::from_toml(&format!(
            "version = 1\n[data]\nlabels = \"{}\"\n[gradients]\ndirs = [\"{}/{layout}/epoch_*\"]\n\
             [scoring]\nwindows = [\"all\"]\nchannel_axis = \"{axis}\"\n",
            g.join("labels.npy").display(),
            dir.path().display()
        ))
        .unwrap()
    };
    let result = score(&cfg("last", "auto"), None, &Silent).unwrap();
    let raw: Vec<f64> = result.examples.iter().map(|e| e.vog[0]).collect();
    assert_close(
        "channels last",
        &raw,
        &floats(&expected["mean"]["all"]["raw"]),
        1e-9,
        0.0,
    );
    assert_eq!(
        result.manifest.scoring.channels,
        vog_core::ChannelReduce::MeanLast
    );
    assert_eq!(result.manifest.scoring.vog_map_shape, vec![4, 4]);
    let first = score(&cfg("last", "first"), None, &Silent).unwrap();
    assert_ne!(first.examples[0].vog[0], result.examples[0].vog[0]);
    let err = score(&cfg("cube", "auto"), None, &Silent).unwrap_err();
    assert!(err.to_string().contains("channel_axis"), "{err}");
    let none = score(&cfg("cube", "none"), None, &Silent).unwrap();
    assert_eq!(
        none.manifest.scoring.channels,
        vog_core::ChannelReduce::None
    );
}
