//! Audit-store benchmark (not a timed test): indexing rate for a large run, and latency of a
//! filtered query with the top 20 by score.
//!
//!     cargo bench --bench store -- [EXAMPLES]      (default 1,000,000)
//!
//! Prints figures; medians of repeated queries.

use std::io::Write;
use std::time::Instant;

use vog_store::{SearchRequest, Store};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let res = dir.path().join("bench-run");
    std::fs::create_dir_all(&res).unwrap();
    let manifest = serde_json::json!({
        "data": {"path": "/data/bench.npy", "split": "train"},
        "scoring": {"windows": [{"name": "all", "start": 0, "end": 6}, {"name": "late", "start": 4, "end": 6}]}
    });
    std::fs::write(res.join("run.json"), manifest.to_string()).unwrap();
    let t = Instant::now();
    {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(res.join("scores.jsonl")).unwrap());
        let mut s = 0x9E3779B97F4A7C15u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for i in 0..n {
            let class = i % 10;
            let camera = ["a", "b", "c"][i % 3];
            let line = serde_json::json!({
                "id": format!("img{i:07}"), "row": i, "true_label": class, "label_used": class, "predicted": class,
                "vog": {"all": rnd(), "late": rnd()}, "vog_norm": {"all": rnd() * 6.0 - 3.0, "late": rnd() * 6.0 - 3.0},
                "scores": {"margin_mean": rnd(), "loss_last": rnd()},
                "meta": {"camera": camera, "iso": (i % 32) * 100},
            });
            writeln!(f, "{line}").unwrap();
        }
    }
    let gen_s = t.elapsed().as_secs_f64();
    let store = Store::open_or_create(&dir.path().join("audit")).unwrap();
    let t = Instant::now();
    let summary = store.index_results(&res, &Default::default()).unwrap();
    let index_s = t.elapsed().as_secs_f64();
    assert_eq!(summary.examples, n);
    let req = SearchRequest {
        class: Some(3),
        min_score: Some(2.0),
        wheres: vec!["meta.camera:b".into()],
        status: Some("unreviewed".into()),
        limit: 20,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut total = 0;
    for _ in 0..21 {
        let t = Instant::now();
        let r = store.search(&req).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        total = r.total;
    }
    times.sort_by(f64::total_cmp);
    println!("examples: {n} (results written in {gen_s:.1} s)");
    println!(
        "indexing: {index_s:.1} s, {:.0} examples/s",
        n as f64 / index_s
    );
    println!(
        "query `{}`: {total} matches, top 20 by score in {:.1} ms (median of 21; min {:.1}, max {:.1})",
        req.query_string(),
        times[10],
        times[0],
        times[20]
    );
}
