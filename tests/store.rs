//! The audit store: search by every kind of field, idempotent indexing, query errors, format
//! versions, queues under concurrent claims from several processes, durable decisions under
//! SIGKILL, exports.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use vog_store::{Decision, ExportFormat, SearchRequest, Store};

use crate::util::{golden, golden_config, run, text, vog, write_config};

/// A results directory of `n` synthetic examples (no scoring needed): classes cycle over 4,
/// splits alternate, metadata has a camera and an iso value.
fn synthetic_results(dir: &Path, n: usize) -> PathBuf {
    let res = dir.join("synthetic");
    std::fs::create_dir_all(&res).unwrap();
    let manifest = json!({
        "data": {"path": "/data/synthetic.npy", "split": "test"},
        "scoring": {"windows": [{"name": "all", "start": 0, "end": 3}, {"name": "late", "start": 2, "end": 3}]}
    });
    std::fs::write(res.join("run.json"), crate::util::manifest(manifest)).unwrap();
    let mut f = std::fs::File::create(res.join("scores.jsonl")).unwrap();
    for i in 0..n {
        let class = i % 4;
        let line = json!({
            "id": format!("ex{i:04}"), "row": i, "split": "test", "true_label": class, "label_used": class,
            "predicted": (i * 7) % 4, "vog": {"all": i as f64 / 100.0, "late": 1.0 - i as f64 / n as f64},
            "vog_norm": {"all": (i as f64 - n as f64 / 2.0) / 100.0, "late": -(i as f64) / 50.0},
            "scores": {"margin_mean": i as f64 * 0.5},
            "meta": {"camera": if i % 3 == 0 { "b" } else { "a" }, "iso": (i * 10) as i64},
        });
        writeln!(f, "{}", crate::util::score_line(line)).unwrap();
    }
    res
}

fn req() -> SearchRequest {
    SearchRequest {
        limit: 10_000,
        ..Default::default()
    }
}

/// The golden MLP scored with metadata and split, indexed as run `mlp1`.
fn scored_store(dir: &Path) -> PathBuf {
    let meta: String = (0..40)
        .map(|i| format!("{}\n", json!({"id": i.to_string(), "camera": if i % 2 == 0 { "a" } else { "b" }, "iso": 100 * i})))
        .collect();
    std::fs::write(dir.join("meta.jsonl"), meta).unwrap();
    let body = golden_config("mlp", "").replace(
        "[checkpoints]",
        "metadata = \"meta.jsonl\"\nmetadata_key = \"id\"\nsplit = \"test\"\n[checkpoints]",
    );
    let cfg = write_config(dir, "mlp.toml", &body);
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            "res",
            "--store",
            "audit",
            "--run",
            "mlp1",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    dir.join("audit")
}

#[test]
fn search_by_class_score_split_status_decision_metadata_and_notes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&scored_store(dir.path())).unwrap();
    let all = store.search(&req()).unwrap();
    assert_eq!(all.total, 40);
    let expected = crate::util::json(&golden("mlp").join("expected.json"));
    let labels: Vec<u64> = expected["true/logit"]["label_used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let norm: Vec<f64> = crate::util::floats(&expected["true/logit"]["all"]["normalized"]);

    // Class.
    let class0 = store
        .search(&SearchRequest {
            class: Some(0),
            ..req()
        })
        .unwrap();
    assert_eq!(class0.total, labels.iter().filter(|&&l| l == 0).count());
    assert!(class0.hits.iter().all(|h| h["class"] == 0));
    // Score range, sorted by score descending.
    let high = store
        .search(&SearchRequest {
            min_score: Some(1.0),
            ..req()
        })
        .unwrap();
    assert_eq!(
        high.total,
        norm.iter().filter(|&&v| v >= 1.0 - 1e-9).count()
    );
    let s: Vec<f64> = high
        .hits
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(s.windows(2).all(|w| w[0] >= w[1]), "{s:?}");
    let band = store
        .search(&SearchRequest {
            min_score: Some(-0.5),
            max_score: Some(0.5),
            ..req()
        })
        .unwrap();
    assert_eq!(
        band.total,
        norm.iter().filter(|&&v| (-0.5..=0.5).contains(&v)).count()
    );
    // Split.
    assert_eq!(
        store
            .search(&SearchRequest {
                split: Some("test".into()),
                ..req()
            })
            .unwrap()
            .total,
        40
    );
    assert_eq!(
        store
            .search(&SearchRequest {
                split: Some("train".into()),
                ..req()
            })
            .unwrap()
            .total,
        0
    );
    // Metadata key and numeric range.
    let b = store
        .search(&SearchRequest {
            wheres: vec!["meta.camera:b".into()],
            ..req()
        })
        .unwrap();
    assert_eq!(b.total, 20);
    let iso = store
        .search(&SearchRequest {
            query: Some("meta.iso:[1000 TO 1900]".into()),
            ..req()
        })
        .unwrap();
    assert_eq!(iso.total, 10);
    // Sorting by a score path, ascending.
    let by_late = store
        .search(&SearchRequest {
            sort: Some("scores.vog_late_norm".into()),
            ascending: true,
            limit: 40,
            ..req()
        })
        .unwrap();
    let late: Vec<f64> = by_late
        .hits
        .iter()
        .map(|h| h["scores"]["vog_late_norm"].as_f64().unwrap())
        .collect();
    assert!(late.windows(2).all(|w| w[0] <= w[1]), "{late:?}");

    // Review: status, decision and notes become searchable.
    store
        .record_decision(&Decision {
            example: "mlp1/12".into(),
            reviewer: "alice".into(),
            decision: "mislabeled".into(),
            label: Some(3),
            note: Some("blurry stroke, looks like a three".into()),
            ..Default::default()
        })
        .unwrap();
    store
        .record_decision(&Decision {
            example: "7".into(),
            reviewer: "bob".into(),
            decision: "ok".into(),
            label: None,
            note: None,
            ..Default::default()
        })
        .unwrap();
    let reviewed = store
        .search(&SearchRequest {
            status: Some("reviewed".into()),
            ..req()
        })
        .unwrap();
    assert_eq!(reviewed.total, 2);
    assert_eq!(
        store
            .search(&SearchRequest {
                status: Some("unreviewed".into()),
                ..req()
            })
            .unwrap()
            .total,
        38
    );
    let mis = store
        .search(&SearchRequest {
            decision: Some("mislabeled".into()),
            ..req()
        })
        .unwrap();
    assert_eq!(mis.total, 1);
    assert_eq!(mis.hits[0]["new_label"], 3);
    let notes = store
        .search(&SearchRequest {
            query: Some("notes:blurry".into()),
            ..req()
        })
        .unwrap();
    assert_eq!(notes.total, 1);
    assert_eq!(notes.hits[0]["id"], "12");
    assert_eq!(all.counts.class.values().sum::<u64>(), 40);
    let counts = store.search(&req()).unwrap().counts;
    assert_eq!(counts.status.get("reviewed"), Some(&2));
    assert_eq!(counts.decision.get("mislabeled"), Some(&1));
}

#[test]
fn reindexing_is_idempotent_and_keeps_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), 50);
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    let opts = vog_store::ImportOptions {
        run: Some("syn".into()),
        class_names: Some(vec!["cat".into(), "dog".into(), "emu".into(), "fox".into()]),
    };
    store.index_results(&res, &opts).unwrap();
    store
        .record_decision(&Decision {
            example: "syn/ex0003".into(),
            reviewer: "al".into(),
            decision: "corrupt".into(),
            label: None,
            note: Some("torn".into()),
            ..Default::default()
        })
        .unwrap();
    let first = store.search(&req()).unwrap();
    let summary = store.index_results(&res, &opts).unwrap();
    assert_eq!(summary.reviewed, 1);
    let second = store.search(&req()).unwrap();
    assert_eq!(first.total, 50);
    assert_eq!(second.total, 50);
    let sort_keys = |r: &vog_store::SearchResults| {
        let mut k: Vec<String> = r.hits.iter().map(|h| h.to_string()).collect();
        k.sort();
        k
    };
    assert_eq!(sort_keys(&first), sort_keys(&second));
    let (doc, history) = store.example("syn/ex0003").unwrap();
    assert_eq!(doc["decision"], "corrupt");
    assert_eq!(doc["class_name"], "fox");
    assert_eq!(history.len(), 1);
    // Ranks: the highest normalized score is rank 1 and the 100th percentile.
    let top = store
        .search(&SearchRequest {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(top.hits[0]["id"], "ex0049");
    assert_eq!(top.hits[0]["rank"], 1);
    assert_eq!(top.hits[0]["percentile"], 100.0);
}

#[test]
fn bad_queries_give_the_position_and_unknown_fields_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), 10);
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    store.index_results(&res, &Default::default()).unwrap();
    let err = store
        .search(&SearchRequest {
            query: Some("class:1 AND (score:[1 TO".into()),
            ..req()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("position 24") && err.contains("class:1 AND (score:[1 TO"),
        "{err}"
    );
    let err = store
        .search(&SearchRequest {
            query: Some("colour:red".into()),
            ..req()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `colour`")
            && err.contains("meta.*")
            && err.contains("decision"),
        "{err}"
    );
    let err = store
        .search(&SearchRequest {
            sort: Some("colour".into()),
            ..req()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot sort by `colour`"), "{err}");
    let out = run(&["search", "-s", "audit", "class:1 AND ("], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("position 13"), "{}", text(&out));
}

#[test]
fn another_store_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit");
    drop(Store::open_or_create(&path).unwrap());
    std::fs::write(
        path.join("store.json"),
        r#"{"format": 99, "created_by": "vog 9.0"}"#,
    )
    .unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("store format 99") && err.contains("reads format 2"),
        "{err}"
    );
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a vog store"), "{err}");
}

#[test]
fn queues_hand_out_items_once_and_keep_decision_history() {
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), 20);
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    store.index_results(&res, &Default::default()).unwrap();
    let n = store
        .create_queue(
            "cls1",
            &SearchRequest {
                class: Some(1),
                ..Default::default()
            },
            "score-desc",
        )
        .unwrap();
    assert_eq!(n, 5);
    assert!(store
        .create_queue("cls1", &SearchRequest::default(), "score-desc")
        .is_err());
    let lease = std::time::Duration::from_secs(60);
    let a = store.claim("cls1", "alice", 2, lease).unwrap();
    let b = store.claim("cls1", "bob", 10, lease).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 3);
    assert!(a.iter().all(|x| b.iter().all(|y| x.key != y.key)));
    // Highest score first.
    assert_eq!(a[0].key, "synthetic/ex0017");
    // Alice asks again: she gets her own items back, nothing new.
    let again = store.claim("cls1", "alice", 2, lease).unwrap();
    let keys = |v: &[vog_store::Claim]| v.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&again), keys(&a));
    assert!(again[0].until_ms >= a[0].until_ms, "the lease is renewed");
    // A decision takes the item out of every queue; a later one supersedes without erasing.
    for (decision, reviewer) in [("ambiguous", "alice"), ("mislabeled", "carol")] {
        store
            .record_decision(&Decision {
                example: a[0].key.clone(),
                reviewer: reviewer.into(),
                decision: decision.into(),
                label: Some(2),
                note: None,
                ..Default::default()
            })
            .unwrap();
    }
    let history = store.history(&a[0].key).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.decision.as_str())
            .collect::<Vec<_>>(),
        ["ambiguous", "mislabeled"]
    );
    let (doc, _) = store.example(&a[0].key).unwrap();
    assert_eq!(doc["decision"], "mislabeled");
    assert_eq!(doc["reviewer"], "carol");
    let status = &store.queues(Some("cls1")).unwrap()[0];
    assert_eq!((status.total, status.reviewed, status.claimed), (5, 1, 4));
    // Expired leases are handed out again.
    let short = store
        .claim("cls1", "dave", 10, std::time::Duration::from_millis(0))
        .unwrap();
    assert!(short.is_empty(), "everything is still leased");
    assert!(store
        .record_decision(&Decision {
            example: "nope".into(),
            reviewer: "x".into(),
            decision: "ok".into(),
            label: None,
            note: None,
            ..Default::default()
        })
        .is_err());
    assert!(store
        .record_decision(&Decision {
            example: a[1].key.clone(),
            reviewer: "x".into(),
            decision: "maybe".into(),
            label: None,
            note: None,
            ..Default::default()
        })
        .is_err());
}

#[test]
fn a_thousand_concurrent_claims_from_several_processes_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), 1000);
    let store_dir = dir.path().join("audit");
    let store = Store::open_or_create(&store_dir).unwrap();
    store.index_results(&res, &Default::default()).unwrap();
    assert_eq!(
        store
            .create_queue("all", &SearchRequest::default(), "row")
            .unwrap(),
        1000
    );
    drop(store);
    // 20 processes × 50 claims at once, then one more pass to mop up.
    let children: Vec<_> = (0..20)
        .map(|p| {
            vog()
                .args([
                    "queue",
                    "next",
                    "all",
                    "-s",
                    store_dir.to_str().unwrap(),
                    "--reviewer",
                    &format!("worker{p}"),
                    "-n",
                    "50",
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut claimed: Vec<String> = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        claimed.extend(
            v.as_array()
                .unwrap()
                .iter()
                .map(|c| c["key"].as_str().unwrap().to_string()),
        );
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "an item was handed to two reviewers");
    assert_eq!(total, 1000);
    let store = Store::open(&store_dir).unwrap();
    assert!(store
        .claim("all", "late", 10, std::time::Duration::from_secs(60))
        .unwrap()
        .is_empty());
}

#[test]
fn acknowledged_decisions_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), 400);
    let store_dir = dir.path().join("audit");
    Store::open_or_create(&store_dir)
        .unwrap()
        .index_results(&res, &Default::default())
        .unwrap();
    let mut child = vog()
        .args([
            "review",
            "--stdin",
            "-s",
            store_dir.to_str().unwrap(),
            "--reviewer",
            "bulk",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..400 {
            let line = json!({"example": format!("synthetic/ex{i:04}"), "decision": "ok", "note": format!("n{i}")});
            if writeln!(stdin, "{line}").is_err() {
                break; // the process is gone
            }
        }
    });
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 120 {
        let line = lines.next().expect("acks keep coming").unwrap();
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("ack"), "{line}");
        parts.next();
        acked.push(parts.next().unwrap().to_string());
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let _ = writer.join();
    let store = Store::open(&store_dir).unwrap();
    for key in &acked {
        let h = store.history(key).unwrap();
        assert_eq!(h.len(), 1, "{key}: acknowledged decision lost");
        assert_eq!(h[0].decision, "ok");
    }
    // The store opens cleanly, and the index catches up with every recorded decision.
    let reviewed = store
        .search(&SearchRequest {
            status: Some("reviewed".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert!(
        reviewed.total >= acked.len(),
        "{} reviewed in the index, {} acknowledged",
        reviewed.total,
        acked.len()
    );
}

#[test]
fn exports_the_filtered_set_with_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), 12);
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    store.index_results(&res, &Default::default()).unwrap();
    store
        .record_decision(&Decision {
            example: "ex0005".into(),
            reviewer: "a".into(),
            decision: "mislabeled".into(),
            label: Some(2),
            note: Some("wrong".into()),
            ..Default::default()
        })
        .unwrap();
    let filter = SearchRequest {
        class: Some(1),
        ..Default::default()
    };
    let mut csv_out = Vec::new();
    assert_eq!(
        store
            .export(&filter, ExportFormat::Csv, &mut csv_out)
            .unwrap(),
        3
    );
    let csv_text = String::from_utf8(csv_out).unwrap();
    assert!(
        csv_text.lines().next().unwrap().contains("meta.camera"),
        "{csv_text}"
    );
    assert_eq!(csv_text.lines().count(), 4);
    let mut relabel = Vec::new();
    assert_eq!(
        store
            .export(&filter, ExportFormat::Relabel, &mut relabel)
            .unwrap(),
        1
    );
    assert_eq!(
        String::from_utf8(relabel).unwrap(),
        "run,id,row,old_label,new_label\nsynthetic,ex0005,5,1,2\n"
    );
    let mut jsonl = Vec::new();
    store
        .export(&filter, ExportFormat::Jsonl, &mut jsonl)
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let five = rows.iter().find(|r| r["id"] == "ex0005").unwrap();
    assert_eq!(five["history"][0]["note"], "wrong");
    let mut ls = Vec::new();
    store
        .export(&filter, ExportFormat::LabelStudio, &mut ls)
        .unwrap();
    let tasks: serde_json::Value = serde_json::from_slice(&ls).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 3);
    assert_eq!(
        tasks[0]["predictions"][0]["result"][0]["value"]["choices"][0],
        "1"
    );
    // The CLI writes the same set.
    let out = run(
        &[
            "export",
            "-s",
            "audit",
            "--class",
            "1",
            "--format",
            "relabel",
            "-o",
            "relabel.csv",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(dir.path().join("relabel.csv"))
        .unwrap()
        .contains("ex0005,5,1,2"));
}

#[test]
fn a_run_larger_than_one_search_page_is_reported_whole() {
    let n = vog_store::MAX_LIMIT + 37;
    let dir = tempfile::tempdir().unwrap();
    let res = synthetic_results(dir.path(), n);
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    let opts = vog_store::ImportOptions {
        run: Some("big".into()),
        class_names: None,
    };
    store.index_results(&res, &opts).unwrap();
    // One search page cannot hold the run...
    let all = SearchRequest {
        run: Some("big".into()),
        limit: n,
        ..Default::default()
    };
    assert!(store.search(&all).is_err());
    // ...but every example is visited, in the requested order, and the report shows them all.
    let mut rows = Vec::new();
    let visited = store
        .for_each_match(
            &SearchRequest {
                sort: Some("row".into()),
                ascending: true,
                ..all
            },
            |h| {
                rows.push(h["row"].as_u64().unwrap());
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(visited, n);
    assert_eq!(rows, (0..n as u64).collect::<Vec<_>>());
    drop(store);
    let out = run(
        &["report", "audit", "--run", "big", "-o", "big.html"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(dir.path().join("big.html")).unwrap();
    assert!(
        html.contains(&format!("<tr><th>examples</th><td>{n}</td></tr>")),
        "the summary does not count every example"
    );
}

/// The label-free panel scores are indexed like the rest: sortable and range-searchable under
/// `scores.`, with the values of `scores.jsonl`.
#[test]
fn label_free_panel_scores_sort_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&scored_store(dir.path())).unwrap();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("res/scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for name in ["msp_last", "margin_last", "entropy_last", "pred_changes"] {
        let sorted = store
            .search(&SearchRequest {
                sort: Some(format!("scores.{name}")),
                ..req()
            })
            .unwrap();
        assert_eq!(sorted.total, 40, "{name}");
        let got: Vec<f64> = sorted
            .hits
            .iter()
            .map(|h| h["scores"][name].as_f64().unwrap())
            .collect();
        assert!(got.windows(2).all(|w| w[0] >= w[1]), "{name}: {got:?}");
        let mut want: Vec<f64> = rows
            .iter()
            .map(|r| r["scores"][name].as_f64().unwrap())
            .collect();
        want.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(got, want, "{name}");
    }
    let changed = rows
        .iter()
        .filter(|r| r["scores"]["pred_changes"].as_f64().unwrap() >= 1.0)
        .count();
    let hits = store
        .search(&SearchRequest {
            query: Some("scores.pred_changes:[1 TO *]".into()),
            ..req()
        })
        .unwrap();
    assert_eq!(hits.total, changed);
}
