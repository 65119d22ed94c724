//! `vog evaluate` against scikit-learn on a committed example (tests/data/evaluate,
//! written by make_expected.py): AUROC, AUPRC and precision@k of every score, with ties, scores
//! where lower means harder, and undefined values.

use serde_json::Value;

use crate::util::{json, root, run, text};

fn evaluate(args: &[&str]) -> Value {
    let dir = root().join("tests/data/evaluate");
    let mut all = vec![
        "evaluate",
        dir.to_str().unwrap(),
        "--k",
        "10,36,100",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let out = run(&all, &root());
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn numbers_match_scikit_learn() {
    let want = json(&root().join("tests/data/evaluate/expected.json"));
    let got = evaluate(&["--bad-column", "meta.is_noisy"]);
    assert_eq!(got["examples"], want["examples"]);
    assert_eq!(got["bad"], want["bad"]);
    let scores = got["scores"].as_array().unwrap();
    assert_eq!(scores.len(), want["scores"].as_object().unwrap().len());
    let mut last_auroc = f64::INFINITY;
    for s in scores {
        let name = s["score"].as_str().unwrap();
        let w = &want["scores"][name];
        assert!(w.is_object(), "unexpected score {name}");
        assert_eq!(s["harder_when"], w["harder_when"], "{name}");
        assert_eq!(s["n"], w["n"], "{name}");
        assert_eq!(s["bad"], w["bad"], "{name}");
        for m in ["auroc", "auprc"] {
            let (g, e) = (s[m].as_f64().unwrap(), w[m].as_f64().unwrap());
            assert!((g - e).abs() < 1e-12, "{name} {m}: vog {g}, sklearn {e}");
        }
        for p in s["precision_at"].as_array().unwrap() {
            let k = p["k"].as_u64().unwrap().to_string();
            let (g, e) = (
                p["precision"].as_f64().unwrap(),
                w["precision_at"][&k].as_f64().unwrap(),
            );
            assert!((g - e).abs() < 1e-12, "{name} P@{k}: vog {g}, numpy {e}");
        }
        // Best first.
        let a = s["auroc"].as_f64().unwrap();
        assert!(a <= last_auroc);
        last_auroc = a;
    }
    // The same examples given as an id list.
    let ids = root().join("tests/data/evaluate/bad_ids.txt");
    let by_ids = evaluate(&["--bad-ids", ids.to_str().unwrap()]);
    assert_eq!(by_ids["scores"], got["scores"]);
}

#[test]
fn a_flag_that_is_not_there_or_ids_that_are_not_in_the_run_are_errors() {
    let dir = root().join("tests/data/evaluate");
    let d = dir.to_str().unwrap();
    let out = run(&["evaluate", d, "--bad-column", "meta.nope"], &root());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("`meta.nope` is missing") && text(&out).contains("ex000"),
        "{}",
        text(&out)
    );
    let out = run(&["evaluate", d, "--bad-column", "meta.camera"], &root());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a true/false flag"),
        "{}",
        text(&out)
    );
    let tmp = tempfile::tempdir().unwrap();
    let ids = tmp.path().join("ids.txt");
    std::fs::write(&ids, "ex001\nnot-there\n").unwrap();
    let out = run(
        &["evaluate", d, "--bad-ids", ids.to_str().unwrap()],
        &root(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("1 of its 2 ids are not in"),
        "{}",
        text(&out)
    );
    let out = run(&["evaluate", d], &root());
    assert!(!out.status.success(), "a flag source is required");
}
