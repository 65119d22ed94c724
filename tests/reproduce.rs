//! `vog reproduce` end to end on a small synthetic stand-in for the MNIST digits (the real run is
//! `scripts/reproduce.sh`, minutes in release mode): every section and table of RESULTS.md is
//! written, with finite numbers, and bad inputs are clear errors.

use serde_json::json;

use crate::util::{run, text};

/// 10 classes × 60 "digits": a class-specific bright square on a noisy background.
fn fake_digits(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut r = vog_core::Lcg::new(12345);
    let mut noise = || (r.next_u64() >> 33) as f64 / (1u64 << 31) as f64 * 0.3;
    for d in 0..10usize {
        let mut data = Vec::new();
        for _ in 0..60 {
            for p in 0..784usize {
                let (y, x) = (p / 28, p % 28);
                let (cy, cx) = (4 + (d / 5) * 12, 2 + (d % 5) * 5);
                let on = y >= cy && y < cy + 8 && x >= cx && x < cx + 5;
                data.push(if on { 0.9 } else { noise() });
            }
        }
        std::fs::write(
            dir.join(format!("{d}.json")),
            json!({ "data": data }).to_string(),
        )
        .unwrap();
    }
}

#[test]
fn reproduce_writes_every_section() {
    let dir = tempfile::tempdir().unwrap();
    fake_digits(&dir.path().join("digits"));
    let out = run(
        &[
            "reproduce",
            "-q",
            "--mnist",
            "digits",
            "--work",
            "work",
            "--out",
            "RESULTS.md",
            "--train",
            "400",
            "--mlp-epochs",
            "4",
            "--cnn-epochs",
            "3",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(dir.path().join("RESULTS.md")).unwrap();
    for heading in [
        "## (a) Toy data",
        "## (b) Real MNIST digits under label noise",
        "### Test accuracy and VoG deciles",
        "#### MLP with 10.0% noise (40 flipped of 400)",
        "#### CNN with 20.0% noise (80 flipped of 400)",
    ] {
        assert!(md.contains(heading), "no `{heading}` in\n{md}");
    }
    let decile_rows = md
        .lines()
        .filter(|l| {
            l.starts_with("| 0.0% |") || l.starts_with("| 10.0% |") || l.starts_with("| 20.0% |")
        })
        .count();
    assert_eq!(decile_rows, 6, "{md}");
    assert!(md.contains("`vog_all_norm`") && md.contains("`el2n`") && md.contains("`forgetting`"));
    assert!(!md.contains("NaN") && !md.contains("inf"), "{md}");
    // The runs are kept for inspection: results with the panel and the flipped labels in metadata.
    let scores =
        std::fs::read_to_string(dir.path().join("work/noise-20/cnn/train/scores.jsonl")).unwrap();
    assert!(
        scores
            .lines()
            .filter(|l| l.contains("\"is_noisy\":true"))
            .count()
            == 80
    );
}

#[test]
fn reproduce_names_missing_digits() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "reproduce",
            "-q",
            "--mnist",
            "nowhere",
            "--work",
            "w",
            "--out",
            "R.md",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("nowhere/0.json"), "{}", text(&out));
    assert!(!dir.path().join("R.md").exists());
}
