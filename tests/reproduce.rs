//! `vog reproduce` end to end on small synthetic stand-ins for the two digit datasets (the real run is
//! `scripts/reproduce.sh`, minutes in release mode): every section and table of RESULTS.md is
//! written, with finite numbers, and bad inputs are clear errors.

use serde_json::json;

use crate::util::{run, text};

/// 10 classes × 60 "digits": a class-specific bright square on a noisy background (every sixth
/// shows the next class's square).
fn fake_digits(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut r = vog_core::Lcg::new(12345);
    let mut noise = || (r.next_u64() >> 33) as f64 / (1u64 << 31) as f64 * 0.3;
    for d in 0..10usize {
        let mut data = Vec::new();
        for i in 0..60 {
            // Every sixth digit carries another class's square: errors a model cannot avoid.
            let shown = if i % 6 == 5 { (d + 1) % 10 } else { d };
            for p in 0..784usize {
                let (y, x) = (p / 28, p % 28);
                let (cy, cx) = (4 + (shown / 5) * 12, 2 + (shown % 5) * 5);
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

/// 10 classes × 20 "8×8 digits" as scikit-learn's CSV: a class-specific bright pixel pair (every
/// seventh shows another class's).
fn fake_small_digits(path: &std::path::Path) {
    let mut r = vog_core::Lcg::new(777);
    let mut text = String::new();
    for i in 0..200usize {
        let d = i % 10;
        let shown = if i % 7 == 6 { (d + 3) % 10 } else { d };
        let row: Vec<String> = (0..64usize)
            .map(|p| {
                let on = p == shown * 6 || p == shown * 6 + 1;
                let v = if on { 16 } else { (r.next_u64() % 4) as i64 };
                format!("{v}.0")
            })
            .chain(std::iter::once(d.to_string()))
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn reproduce_writes_every_section() {
    let dir = tempfile::tempdir().unwrap();
    fake_digits(&dir.path().join("digits"));
    fake_small_digits(&dir.path().join("small.csv"));
    let out = run(
        &[
            "reproduce",
            "-q",
            "--mnist",
            "digits",
            "--digits",
            "small.csv",
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
            "--digits-epochs",
            "4",
            "--seeds",
            "2",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(dir.path().join("RESULTS.md")).unwrap();
    for heading in [
        "## (a) Toy data",
        "## (b) Real digits",
        "### Accuracy and time",
        "**The cost of the second target**",
        "## (c) Which score finds the model's test errors without labels?",
        "### MNIST digits, MLP",
        "### MNIST digits, CNN",
        "### scikit-learn 8×8 digits, MLP",
        "### Top decile against bottom decile",
        "## (d) Out-of-distribution probe",
        "## (e) Finding the flipped labels",
        "## Reading these numbers",
    ] {
        assert!(md.contains(heading), "no `{heading}` in\n{md}");
    }
    // Accuracy rows: 3 models × 3 noise levels; the cost of the second target: one per model.
    let rows = |prefix: &str| md.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        rows("| MNIST digits | MLP |") + rows("| MNIST digits | CNN |"),
        6 + 2 + 2 * 3 * 3,
        "{md}"
    );
    assert_eq!(
        rows("| scikit-learn 8×8 digits | MLP |"),
        3 + 1 + 3 * 3,
        "{md}"
    );
    // Label-free tables hold both targets and the new panel scores, not the label-reading ones.
    let test_time = &md[md.find("## (c)").unwrap()..md.find("## (d)").unwrap()];
    for score in [
        "`vog_all_norm`",
        "`vog_early_probability_norm`",
        "`msp_last`",
        "`margin_last`",
        "`entropy_last`",
        "`pred_changes`",
        "`confidence`",
    ] {
        assert!(
            test_time.contains(score),
            "no {score} in the test-time tables"
        );
    }
    assert!(!test_time.contains("`correct_ratio`") && !test_time.contains("`forgetting`"));
    let msp = test_time
        .lines()
        .find(|l| l.starts_with("| `msp_last` |"))
        .unwrap();
    assert!(msp.contains(" ± "), "AUROC of msp_last undefined: {msp}");
    let flipped = &md[md.find("## (e)").unwrap()..];
    assert!(flipped.contains("`forgetting`") && flipped.contains("`el2n`"));
    // Means and standard deviations over the two seeds, and no undefined numbers.
    assert!(md.contains(" ± "), "{md}");
    assert!(!md.contains("NaN") && !md.contains("inf"), "{md}");
    // The computed reading replaces the fixed sentences.
    assert!(!md.contains("Flipped labels are consistently wrong"));
    assert!(!md.contains("loss- and margin-based scores"));
    assert!(
        md.contains("The probability target beats the logit target"),
        "{md}"
    );
    // The runs are kept for inspection: results with the panel and the flipped labels in metadata.
    let scores = std::fs::read_to_string(
        dir.path()
            .join("work/mnist/noise-20/seed-1/cnn/train/scores.jsonl"),
    )
    .unwrap();
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
            "--digits",
            "small.csv",
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
