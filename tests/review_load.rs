//! `vog serve` and the store under heavy use: memory while 8 clients pull the largest export,
//! per-reviewer tokens and claims, stale queue items, `vog index` racing decisions on the same
//! run, and a bounded load test (16 reviewers for 60 s on loopback while another run is
//! re-indexed; `VOG_LOAD_SECS` changes the length). Fixtures are `hostile.rs`'s.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hostile::{dataset, get_with_cookie, hostile_store, raw, results};
use crate::serve::{agent, get, get_json, post_json, serve};
use crate::util::{run, text, vog};

/// Peak resident memory of a process, in bytes (Linux: VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// The bound on the server's peak RSS while 8 clients pull a 20,000-example export (≈ 21 MB of
/// JSON lines each) at once. Buffered whole, the exports alone would take over 8 × 21 MB.
const EXPORT_RSS_BOUND: u64 = 160 * 1024 * 1024;

#[test]
#[cfg(target_os = "linux")]
fn eight_clients_pull_the_largest_export_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    results(dir.path(), "big", 20_000, &data, 900);
    let out = run(&["index", "big", "-s", "store", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let s = serve(&dir.path().join("store"), &[]);
    let before = peak_rss(s.child.id());
    let base = s.base.clone();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                let mut r = agent()
                    .get(&format!("{base}/api/export?format=jsonl"))
                    .call()
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let mut reader = r.body_mut().as_reader();
                let (mut lines, mut bytes, mut buf) = (0usize, 0usize, vec![0u8; 1 << 16]);
                loop {
                    let n = reader.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                    bytes += n;
                }
                (lines, bytes)
            })
        })
        .collect();
    for c in clients {
        let (lines, bytes) = c.join().unwrap();
        assert_eq!(lines, 20_000);
        assert!(bytes > 20_000_000, "{bytes}");
    }
    let peak = peak_rss(s.child.id());
    eprintln!(
        "serve peak RSS: {:.1} MiB before, {:.1} MiB after 8 concurrent exports (bound {} MiB)",
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        EXPORT_RSS_BOUND / 1048576
    );
    assert!(peak < EXPORT_RSS_BOUND, "peak RSS {peak} bytes");
}

/// Writes a tokens file (mode 600) and returns its path.
fn tokens_file(dir: &Path, lines: &str) -> PathBuf {
    let p = dir.join("tokens");
    std::fs::write(&p, lines).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

fn post_as(token: &str, url: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .send_json(body)
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

#[test]
fn reviewers_are_their_tokens_and_claims_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let store = hostile_store(dir.path(), 40);
    let ana = "ana-token-0123456789";
    let bob = "bob-token-9876543210";
    let file = tokens_file(dir.path(), &format!("# team\n{ana} ana\n{bob} Bob B.\n"));
    // A tokens file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let open = dir.path().join("open-tokens");
        std::fs::copy(&file, &open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = vog()
            .args([
                "serve",
                "--store",
                store.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
                "--tokens",
            ])
            .arg(&open)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    }
    let s = serve(&store, &["--tokens", file.to_str().unwrap()]);
    let url = |p: &str| format!("{}{p}", s.base);
    let (status, _) = get(&agent(), &url("/api/search"));
    assert_eq!(status, 401);
    // Ana claims an item: the token says who she is.
    let (status, got) = post_as(ana, &url("/api/claim"), &json!({"queue": "q"}));
    assert_eq!(status, 200, "{got}");
    let key = got["claims"][0]["key"].as_str().unwrap().to_string();
    // Bob cannot act as Ana, nor decide her item without force.
    let (status, e) = post_as(
        bob,
        &url("/api/decision"),
        &json!({"example": key, "reviewer": "ana", "decision": "ok"}),
    );
    assert_eq!(status, 403, "{e}");
    let (status, e) = post_as(
        bob,
        &url("/api/decision"),
        &json!({"example": key, "decision": "corrupt"}),
    );
    assert_eq!(status, 409, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("claimed by `ana`"),
        "{e}"
    );
    let (status, e) = post_as(
        bob,
        &url("/api/skip"),
        &json!({"queue": "q", "example": key}),
    );
    assert_eq!(status, 409, "{e}");
    let (status, rec) = post_as(
        ana,
        &url("/api/decision"),
        &json!({"example": key, "decision": "ok"}),
    );
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["reviewer"], "ana");
    // With force, Bob overrides a claim; the record names him.
    let (_, got) = post_as(ana, &url("/api/claim"), &json!({"queue": "q"}));
    let key2 = got["claims"][0]["key"].as_str().unwrap().to_string();
    let (status, rec) = post_as(
        bob,
        &url("/api/decision"),
        &json!({"example": key2, "decision": "ambiguous", "force": true}),
    );
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["reviewer"], "Bob B.");
    // The CLI refuses the same without --force.
    let (_, got) = post_as(ana, &url("/api/claim"), &json!({"queue": "q"}));
    let key3 = got["claims"][0]["key"].as_str().unwrap().to_string();
    let out = run(
        &[
            "review",
            "-s",
            "store",
            &key3,
            "--decision",
            "ok",
            "--reviewer",
            "carl",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("claimed by `ana`"), "{}", text(&out));
    let out = run(
        &[
            "review",
            "-s",
            "store",
            &key3,
            "--decision",
            "ok",
            "--reviewer",
            "carl",
            "--force",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    // Pages show the token's reviewer; the login form cannot rename them.
    let mut r = agent()
        .get(&url("/queues"))
        .header("Cookie", format!("vog_token={bob}"))
        .call()
        .unwrap();
    assert!(r.body_mut().read_to_string().unwrap().contains("Bob B."));
    let r = agent()
        .post(&url("/login"))
        .header("Cookie", format!("vog_token={bob}"))
        .send_form([("reviewer", "ana")])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A foreign Host is fine with a token (no rebinding page has it); a wrong token is not.
    let (status, _) = raw(
        &s.base,
        format!("GET /api/queues HTTP/1.1\r\nHost: review.lab\r\nAuthorization: Bearer {ana}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 200);
    let (status, _) = post_as(
        "not-a-token-at-all",
        &url("/api/claim"),
        &json!({"queue": "q"}),
    );
    assert_eq!(status, 401);
}

#[test]
fn queue_items_whose_examples_left_the_index_are_dropped_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let store = hostile_store(dir.path(), 30);
    // The run is indexed again with only its last 10 examples; the queue still lists all 30.
    let res = dir.path().join("syn");
    let text_rows = std::fs::read_to_string(res.join("scores.jsonl")).unwrap();
    let kept: Vec<&str> = text_rows.lines().skip(20).collect();
    std::fs::write(res.join("scores.jsonl"), kept.join("\n") + "\n").unwrap();
    let out = run(&["index", "syn", "-s", "store", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let s = serve(&store, &[]);
    let a = agent();
    let mut seen = HashSet::new();
    loop {
        let (status, got) = post_json(
            &a,
            &format!("{}/api/claim", s.base),
            &json!({"queue": "q", "reviewer": "ana"}),
        );
        assert_eq!(status, 200, "{got}");
        let Some(key) = got["claims"][0]["key"].as_str() else {
            break;
        };
        let (status, body) = get(&a, &format!("{}/example/{key}", s.base));
        assert_eq!(status, 200, "{key} was handed out but is gone: {body}");
        assert!(seen.insert(key.to_string()));
        let (status, rec) = post_json(
            &a,
            &format!("{}/api/decision", s.base),
            &json!({"example": key, "reviewer": "ana", "decision": "ok"}),
        );
        assert_eq!(status, 200, "{rec}");
    }
    assert_eq!(seen.len(), 10);
    let q = get_json(&a, &format!("{}/api/queues", s.base));
    assert_eq!(
        (
            q[0]["total"].as_i64(),
            q[0]["reviewed"].as_i64(),
            q[0]["dropped"].as_i64()
        ),
        (Some(10), Some(10), Some(20)),
        "{q}"
    );
    let (_, page) = get_with_cookie(&format!("{}/queue/q", s.base), "vog_reviewer=ana");
    assert!(page.contains("20 dropped"), "{page}");
}

#[test]
fn indexing_a_run_while_it_is_reviewed_loses_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    let store = hostile_store(dir.path(), 300);
    let s = serve(&store, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let indexer = {
        let stop = stop.clone();
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = run(&["index", "syn", "-s", "store", "-q"], &dir);
                assert!(out.status.success(), "{}", text(&out));
                n += 1;
            }
            n
        })
    };
    let a = agent();
    let decisions = ["ok", "mislabeled", "ambiguous", "corrupt"];
    for i in 0..300 {
        let (status, rec) = post_json(
            &a,
            &format!("{}/api/decision", s.base),
            &json!({"example": format!("syn/ex{i:05}"), "reviewer": "ana", "decision": decisions[i % 4]}),
        );
        assert_eq!(status, 200, "{rec}");
    }
    stop.store(true, Ordering::Relaxed);
    let reindexed = indexer.join().unwrap();
    assert!(reindexed >= 1);
    // After a sync every example carries its decision in the index.
    let st = vog_store::Store::open(&store).unwrap();
    assert!(st.sync_index(Duration::from_secs(60)).unwrap());
    for (d, want) in decisions.iter().map(|d| (d, 75)) {
        let r = st
            .search(&vog_store::SearchRequest {
                decision: Some(d.to_string()),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.total, want, "decision {d} after {reindexed} re-indexings");
    }
}

#[test]
fn sixteen_reviewers_for_a_minute_while_another_run_is_indexed() {
    let secs: u64 = std::env::var("VOG_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let store = hostile_store(dir.path(), 20_000);
    let data = dir.path().join("data");
    results(dir.path(), "other", 5_000, &data, 40);
    let s = serve(&store, &[]);
    let base = s.base.clone();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let indexer = {
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut n = 0;
            while Instant::now() < deadline {
                let out = run(&["index", "other", "-s", "store", "-q"], &dir);
                assert!(out.status.success(), "{}", text(&out));
                n += 1;
            }
            n
        })
    };
    let latencies = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let reviewers: Vec<_> = (0..16)
        .map(|w| {
            let base = base.clone();
            let latencies = latencies.clone();
            std::thread::spawn(move || {
                let a = agent();
                let me = format!("reviewer-{w}");
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, got) = post_json(
                        &a,
                        &format!("{base}/api/claim"),
                        &json!({"queue": "q", "reviewer": me}),
                    );
                    let claim = t.elapsed();
                    assert_eq!(status, 200, "{got}");
                    let Some(key) = got["claims"][0]["key"].as_str().map(String::from) else {
                        break;
                    };
                    let t = Instant::now();
                    let (status, rec) = post_json(
                        &a,
                        &format!("{base}/api/decision"),
                        &json!({"example": key, "reviewer": me, "decision": "ok"}),
                    );
                    let decide = t.elapsed();
                    assert_eq!(status, 200, "{rec}");
                    let mut l = latencies.lock().unwrap();
                    l.0.push(claim);
                    l.1.push(decide);
                    mine.push(key);
                }
                mine
            })
        })
        .collect();
    let per: Vec<Vec<String>> = reviewers.into_iter().map(|r| r.join().unwrap()).collect();
    let indexed = indexer.join().unwrap();
    let mut all = HashSet::new();
    for keys in &per {
        for k in keys {
            assert!(all.insert(k.clone()), "{k} was claimed twice");
        }
    }
    assert!(all.len() > 100, "only {} decisions", all.len());
    let st = vog_store::Store::open(&store).unwrap();
    let q = &st.queues(Some("q")).unwrap()[0];
    assert_eq!(q.reviewed as usize, all.len());
    assert!(st.sync_index(Duration::from_secs(60)).unwrap());
    let reviewed = st
        .search(&vog_store::SearchRequest {
            status: Some("reviewed".into()),
            run: Some("syn".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .total;
    assert_eq!(reviewed, all.len(), "index and review database disagree");
    let (mut claim, mut decide) = std::mem::take(&mut *latencies.lock().unwrap());
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0
    };
    eprintln!(
        "load: 16 reviewers, {secs} s, {} decisions ({:.0}/s), {indexed} re-indexings of a 5,000-example run; \
         claim p50 {:.1} ms p99 {:.1} ms; decision p50 {:.1} ms p99 {:.1} ms",
        all.len(),
        all.len() as f64 / secs as f64,
        pct(&mut claim, 0.5),
        pct(&mut claim, 0.99),
        pct(&mut decide, 0.5),
        pct(&mut decide, 0.99)
    );
}
