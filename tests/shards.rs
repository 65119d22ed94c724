//! Sharded runs: `vog score --shard I/N` in parallel processes (one of them told its shard by
//! SLURM's environment), `vog merge` joining them with class normalization from the shards'
//! sufficient statistics, and the same scores as one run; bad splits are clear errors.

use std::path::Path;

use serde_json::Value;

use crate::util::{golden_config, run, text, vog, write_config};

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(a: &Value, b: &Value, rel: f64, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= rel * x.abs().max(y.abs()).max(1e-12),
            "{what}: {x} vs {y}"
        ),
        _ => assert_eq!(a, b, "{what}"),
    }
}

#[test]
fn four_shards_merged_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = write_config(d, "mlp.toml", &golden_config("mlp", "labels = \"true\"\n"));
    let cfg = cfg.to_str().unwrap();
    let out = run(&["score", "-q", "-c", cfg, "-o", "full"], d);
    assert!(out.status.success(), "{}", text(&out));

    // Four processes at once; the last learns its shard from a SLURM array's environment.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut c = vog();
            c.args(["score", "-q", "-c", cfg, "-o", &format!("s{i}")])
                .current_dir(d)
                .env_remove("JOB_COMPLETION_INDEX");
            if i < 3 {
                c.args(["--shard", &format!("{i}/4")])
                    .env_remove("SLURM_ARRAY_TASK_ID");
            } else {
                c.env("SLURM_ARRAY_TASK_ID", "4")
                    .env("SLURM_ARRAY_TASK_MIN", "1")
                    .env("SLURM_ARRAY_TASK_COUNT", "4");
            }
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success());
    }
    let shard3: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("s3/run.json")).unwrap()).unwrap();
    assert_eq!(shard3["config"]["shard"]["index"], 3);

    let out = run(
        &[
            "merge", "s2", "s0", "s3", "s1", "-o", "merged", "--store", "audit", "--run", "mlp",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (full, merged) = (
        rows(&d.join("full/scores.jsonl")),
        rows(&d.join("merged/scores.jsonl")),
    );
    assert_eq!(full.len(), merged.len());
    for (f, m) in full.iter().zip(&merged) {
        assert_eq!(f["id"], m["id"]);
        assert_eq!(f["label_used"], m["label_used"]);
        assert_eq!(f["checkpoints"]["predicted"], m["checkpoints"]["predicted"]);
        let windows = f["vog"].as_object().unwrap();
        assert!(windows.len() >= 4);
        for w in windows.keys() {
            // Batches differ between the runs, so float32 gradients may differ in the last bits.
            close(
                &f["vog"][w],
                &m["vog"][w],
                1e-5,
                &format!("{} vog {w}", f["id"]),
            );
            close(
                &f["vog_norm"][w],
                &m["vog_norm"][w],
                1e-4,
                &format!("{} vog_norm {w}", f["id"]),
            );
        }
        for (k, v) in f["scores"].as_object().unwrap() {
            close(v, &m["scores"][k], 1e-5, &format!("{} {k}", f["id"]));
        }
    }
    // The CSV says the same, and the manifest holds the whole run's class statistics.
    let csv = |p: &str| -> Vec<Vec<String>> {
        csv::Reader::from_path(d.join(p))
            .unwrap()
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect()
    };
    let (fc, mc) = (csv("full/scores.csv"), csv("merged/scores.csv"));
    assert_eq!(fc.len(), mc.len());
    for (a, b) in fc.iter().zip(&mc) {
        for (x, y) in a.iter().zip(b) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!((x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1e-9)),
                _ => assert_eq!(x, y),
            }
        }
    }
    let fm: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("full/run.json")).unwrap()).unwrap();
    let mm: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("merged/run.json")).unwrap()).unwrap();
    assert!(mm["config"]["shard"].is_null() && mm["data"]["shard_rows"].is_null());
    assert_eq!(mm["merged_from"]["shards"], 4);
    for (w, entries) in fm["classes"].as_object().unwrap() {
        for (a, b) in entries
            .as_array()
            .unwrap()
            .iter()
            .zip(mm["classes"][w].as_array().unwrap())
        {
            assert_eq!(a["count"], b["count"]);
            close(&a["mean"], &b["mean"], 1e-5, "class mean");
            close(&a["std"], &b["std"], 1e-4, "class std");
        }
    }
    // Indexed like any run.
    let store = vog_store::Store::open(&d.join("audit")).unwrap();
    let all = store
        .search(&vog_store::SearchRequest {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.total, full.len());
}

#[test]
fn bad_splits_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = write_config(d, "mlp.toml", &golden_config("mlp", "labels = \"true\"\n"));
    let cfg = cfg.to_str().unwrap();
    for i in 0..2 {
        let out = run(
            &[
                "score",
                "-q",
                "-c",
                cfg,
                "-o",
                &format!("s{i}"),
                "--shard",
                &format!("{i}/3"),
            ],
            d,
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = run(&["score", "-q", "-c", cfg, "-o", "whole"], d);
    assert!(out.status.success());
    for (args, needle) in [
        (vec!["s0", "s1"], "missing shard(s) 2/3"),
        (vec!["s0", "s0", "s1"], "given twice"),
        (vec!["s0", "whole"], "not a shard"),
    ] {
        let mut all = vec!["merge"];
        all.extend(args);
        all.extend(["-o", "m"]);
        let out = run(&all, d);
        assert!(!out.status.success());
        assert!(text(&out).contains(needle), "{needle}: {}", text(&out));
        assert!(!d.join("m").exists(), "no partial output");
    }
    // A shard of other checkpoints is not a slice of the same run.
    let other = write_config(d, "cnn.toml", &golden_config("cnn", "labels = \"true\"\n"));
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            other.to_str().unwrap(),
            "-o",
            "c2",
            "--shard",
            "2/3",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["merge", "s0", "s1", "c2", "-o", "m"], d);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("differ in their checkpoints"),
        "{}",
        text(&out)
    );

    // Scoring: a slice that is not one, flagging (needs the whole run), a pod without its count.
    let out = run(&["score", "-q", "-c", cfg, "-o", "x", "--shard", "3/3"], d);
    assert!(
        !out.status.success() && text(&out).contains("shard `3/3`"),
        "{}",
        text(&out)
    );
    let flagged = write_config(
        d,
        "flag.toml",
        &(golden_config("mlp", "labels = \"true\"\n") + "[flag]\ntop_percent = 10.0\n"),
    );
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            flagged.to_str().unwrap(),
            "-o",
            "x",
            "--shard",
            "0/2",
        ],
        d,
    );
    assert!(
        !out.status.success() && text(&out).contains("vog merge"),
        "{}",
        text(&out)
    );
    let out = vog()
        .args(["score", "-q", "-c", cfg, "-o", "x"])
        .env("JOB_COMPLETION_INDEX", "1")
        .env_remove("VOG_SHARD_COUNT")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && text(&out).contains("VOG_SHARD_COUNT"),
        "{}",
        text(&out)
    );
    assert!(!d.join("x").exists());
}
