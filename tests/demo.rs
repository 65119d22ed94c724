//! `vog demo`: the toy experiment runs offline, fast, and finds the boundary points.

use std::time::Instant;

use crate::util::{json, run, text};

#[test]
fn demo_runs_under_a_minute_and_probability_vog_tracks_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(&["demo", "--out", "demo"], dir.path());
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    assert!(secs < 60.0, "demo took {secs:.1} s");
    let stdout = text(&out);
    assert!(stdout.contains("10 hardest training points"), "{stdout}");

    let summary = json(&dir.path().join("demo/summary.json"));
    let rows = summary["correlations"].as_array().unwrap();
    for split in ["train", "test"] {
        let row = rows
            .iter()
            .find(|r| r["split"] == split && r["target"] == "probability" && r["window"] == "all")
            .unwrap();
        let (rho, p) = (
            row["spearman_normalized"].as_f64().unwrap(),
            row["p_normalized"].as_f64().unwrap(),
        );
        assert!(rho < 0.0 && p < 0.01, "{split}: rho {rho}, p {p}");
        assert!(rows
            .iter()
            .any(|r| r["split"] == split && r["target"] == "logit"));
    }
    let svg = std::fs::read_to_string(dir.path().join("demo/demo.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Bayes boundary"));
    for k in 1..=15 {
        assert!(dir
            .path()
            .join(format!("demo/checkpoints/epoch_{k}.safetensors"))
            .is_file());
    }
    assert!(dir
        .path()
        .join("demo/results/test-probability/scores.csv")
        .is_file());
}
