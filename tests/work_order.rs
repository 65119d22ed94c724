//! The streaming engine and its work orders: `score_to_dir` (scores spilled, results written in
//! a second pass) writes what the in-memory `score` + `write_results` write, and the chunked work
//! order (one checkpoint loaded at a time, chosen by `--memory`) gives byte-identical results to
//! the resident one.

use std::path::Path;

use vog_backend_candle::CandleBackend;
use vog_engine::{score, score_to_dir, write_results, ByteSize, Config, Silent};

use crate::util::{golden_config, options, run, text};

/// The golden CNN (10 checkpoints) with flags, per-class extremes and a second target, so the
/// selection, the maps pass and both accumulators are exercised.
fn config(out: &Path, scoring: &str) -> Config {
    let body = golden_config("cnn", scoring)
        + "second_target = \"probability\"\n[flag]\ntop_percent = 20.0\nmax_maps = 4\nextremes_per_class = 1\n"
        + &format!("[output]\ndir = \"{}\"\nformats = [\"csv\", \"jsonl\"]\n", out.display());
    Config::from_toml(&body).unwrap()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in ["scores.csv", "scores.jsonl"] {
        out.push((name.to_string(), std::fs::read(dir.join(name)).unwrap()));
    }
    let mut maps: Vec<_> = std::fs::read_dir(dir.join("maps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    maps.sort();
    assert!(!maps.is_empty(), "maps were kept");
    for m in maps {
        out.push((
            m.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&m).unwrap(),
        ));
    }
    out
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

#[test]
fn streamed_results_equal_in_memory_results() {
    let dir = tempfile::tempdir().unwrap();
    let backend = CandleBackend::from_options(options("cnn")).unwrap();
    for labels in ["true", "predicted"] {
        let scoring = format!("labels = \"{labels}\"\n");
        let mem = config(&dir.path().join(format!("mem-{labels}")), &scoring);
        let result = score(&mem, Some(&backend), &Silent).unwrap();
        write_results(&result, &mem.output).unwrap();
        let streamed = config(&dir.path().join(format!("stream-{labels}")), &scoring);
        let w = score_to_dir(&streamed, Some(&backend), &Silent, 5, None).unwrap();
        assert_eq!(w.examples, result.examples.len());
        assert!(
            files(&mem.output.dir) == files(&w.dir),
            "{labels}: streamed files differ from in-memory ones"
        );
        let (a, b) = (manifest(&mem.output.dir), manifest(&w.dir));
        for key in ["classes", "flagged", "maps", "warnings", "data"] {
            assert_eq!(a[key], b[key], "{labels}: run.json `{key}`");
        }
        assert!(b["flagged"].as_u64().unwrap() > 0);
        // The top list is the highest first-window scores.
        let mut ranked: Vec<f64> = result
            .examples
            .iter()
            .map(|e| e.vog_norm[0].unwrap())
            .collect();
        ranked.sort_by(|x, y| y.total_cmp(x));
        let top: Vec<f64> = w.top.iter().map(|e| e.vog_norm[0].unwrap()).collect();
        assert_eq!(top, ranked[..5].to_vec());
        assert!(
            !dir.path().join(format!(".stream-{labels}.spill")).exists(),
            "the spill file is removed"
        );
    }
}

#[test]
fn chunked_order_equals_resident_order() {
    let dir = tempfile::tempdir().unwrap();
    let backend = CandleBackend::from_options(options("cnn")).unwrap();
    for labels in ["true", "predicted"] {
        let scoring = format!("labels = \"{labels}\"\n");
        // One example per batch: the golden checkpoints are small next to an example's running
        // statistics, so only small batches let a budget hold one checkpoint but not all ten.
        let mut resident = config(&dir.path().join(format!("resident-{labels}")), &scoring);
        resident.backend.batch_size = Some(1);
        let r = score_to_dir(&resident, Some(&backend), &Silent, 0, None).unwrap();
        let m = manifest(&r.dir);
        assert_eq!(m["scoring"]["work_order"]["order"], "resident");
        let sizes: Vec<u64> = std::fs::read_dir(crate::util::golden("cnn").join("ckpt"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        let models = 2 * sizes.iter().sum::<u64>();
        // The resident estimate is all checkpoints, three batches in flight and the gradients
        // queued for the statistics worker (taken here as part of the batches: an overestimate).
        let per_batch = (m["scoring"]["work_order"]["estimated_bytes"]
            .as_u64()
            .unwrap()
            - models)
            / 3;
        // Room for the largest checkpoint and four batches (two in the chunk, two read ahead).
        let usable = 2 * sizes.iter().max().unwrap() + 4 * per_batch + 64;
        let budget = usable / 3 * 4 + 4;
        assert!(
            usable < models + 3 * per_batch,
            "the budget must not fit them all"
        );
        let mut chunked = config(&dir.path().join(format!("chunked-{labels}")), &scoring);
        chunked.backend.batch_size = Some(1);
        chunked.backend.memory = Some(ByteSize(budget));
        let c = score_to_dir(&chunked, Some(&backend), &Silent, 0, None).unwrap();
        let m = manifest(&c.dir);
        let order = &m["scoring"]["work_order"];
        assert_eq!(order["order"], "chunked", "{m}");
        let chunk_rows = order["chunk_rows"].as_u64().unwrap();
        assert!(
            chunk_rows < m["data"]["rows"].as_u64().unwrap(),
            "more than one chunk: {order}"
        );
        assert_eq!(order["chunk_rows"], 2, "{order}");
        assert!(order["estimated_bytes"].as_u64().unwrap() <= budget);
        assert!(m["timings"]["reload_s"].as_f64().unwrap() > 0.0);
        assert!(
            files(&r.dir) == files(&c.dir),
            "{labels}: chunked results differ from resident ones"
        );
    }
}

#[test]
fn a_budget_too_small_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("run.toml"), golden_config("cnn", "")).unwrap();
    let out = run(
        &[
            "score", "-q", "-c", "run.toml", "-o", "out", "--memory", "2KiB",
        ],
        d,
    );
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("backend.memory = 2KiB") && t.contains("too small"),
        "{t}"
    );
    assert!(!d.join("out").exists() && !d.join(".out.spill").exists());
    let out = run(
        &[
            "score", "-q", "-c", "run.toml", "-o", "out", "--memory", "lots",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("lots"), "{}", text(&out));
    // --batch-size auto is accepted and recorded.
    let out = run(
        &[
            "score",
            "-q",
            "-c",
            "run.toml",
            "-o",
            "auto",
            "--batch-size",
            "auto",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    let m = manifest(&d.join("auto"));
    let bs = m["scoring"]["batch_size"].as_u64().unwrap();
    assert!(bs.is_power_of_two() && bs >= 8, "{bs}");
}
