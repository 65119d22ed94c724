//! `vog score --resume`: runs killed with SIGKILL at several points, each continued from the
//! journal, end with byte-identical results to an uninterrupted run; a journal never resumes a
//! different run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{golden, run, text, vog};

/// 12,000 examples for the golden MLP (20 features), scored in batches of 8 with predicted labels:
/// a few seconds in a debug build, long enough to be killed mid-way.
fn setup(d: &Path) -> String {
    let n = 12_000usize;
    let x = vog_core::Lcg::new(7).uniform_f32(n * 20, -2.0, 2.0);
    vog_data::write_npy_f32(&d.join("x.npy"), &[n, 20], &x).unwrap();
    let cfg = format!(
        "version = 1\n[data]\npath = \"x.npy\"\n[checkpoints]\npaths = [\"{}\"]\n[backend]\nbatch_size = 8\n\
         [backend.options]\narch = \"mlp\"\nactivation = \"relu\"\n[scoring]\nlabels = \"predicted\"\n",
        golden("mlp").join("ckpt").display()
    );
    std::fs::write(d.join("run.toml"), cfg).unwrap();
    "run.toml".into()
}

/// Commit records in a spill file (format in `vog_engine::spill`).
fn commits(spill: &Path) -> usize {
    let Ok(b) = std::fs::read(spill) else {
        return 0;
    };
    if b.len() < 12 {
        return 0;
    }
    let mut at = 12 + u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    let mut n = 0;
    while at + 5 <= b.len() {
        let len = u32::from_le_bytes(b[at + 1..at + 5].try_into().unwrap()) as usize;
        if at + 5 + len > b.len() {
            break;
        }
        n += usize::from(b[at] == b'C');
        at += 5 + len;
    }
    n
}

#[test]
fn killed_runs_resume_to_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = setup(d);
    let out = run(&["score", "-q", "-c", &cfg, "-o", "whole"], d);
    assert!(out.status.success(), "{}", text(&out));

    let journal = d.join(".resumed.spill");
    let mut kills = 0;
    // Kill at varied points: each time after the journal gained a commit, plus a varying delay.
    for extra_ms in [0u64, 170, 60, 330] {
        let before = commits(&journal);
        let mut child = vog()
            .args(["score", "-q", "-c", &cfg, "-o", "resumed", "--resume"])
            .current_dir(d)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut finished = false;
        while commits(&journal) <= before {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            assert!(Instant::now() < deadline, "no progress in the journal");
            std::thread::sleep(Duration::from_millis(10));
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(
        kills >= 2,
        "the run finished before it could be killed twice"
    );
    assert!(!d.join("resumed").exists(), "no results from a killed run");
    let out = run(&["score", "-q", "-c", &cfg, "-o", "resumed", "--resume"], d);
    assert!(out.status.success(), "{}", text(&out));
    for f in ["scores.csv", "scores.jsonl"] {
        let a = std::fs::read(d.join("whole").join(f)).unwrap();
        let b = std::fs::read(d.join("resumed").join(f)).unwrap();
        assert!(a == b, "{f} differs after {kills} kills");
    }
    assert!(
        !journal.exists(),
        "the journal is removed with the results written"
    );
}

#[test]
fn a_journal_only_resumes_its_own_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = setup(d);
    // A journal whose fingerprint (configuration, checkpoints, data) is another run's.
    let mut spill = b"VOGSPIL\x02".to_vec();
    spill.extend_from_slice(&14u32.to_le_bytes());
    spill.extend_from_slice(b"something else");
    std::fs::write(d.join(".out.spill"), spill).unwrap();
    let out = run(&["score", "-q", "-c", &cfg, "-o", "out", "--resume"], d);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the journal of a different run"),
        "{}",
        text(&out)
    );
    assert!(!d.join("out").exists());
    // Killed after the results were renamed into place but before the journal was removed.
    let out = run(&["score", "-q", "-c", &cfg, "-o", "done"], d);
    assert!(out.status.success());
    std::fs::write(d.join(".done.spill"), "x").unwrap();
    let out = run(&["score", "-c", &cfg, "-o", "done", "--resume"], d);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already complete"));
    assert!(!d.join(".done.spill").exists());
}
