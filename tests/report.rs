//! `vog report`: one self-contained HTML file, from a results directory and from a store, opened
//! offline in headless Chromium with every section on screen (screenshot saved as an artifact).

use serde_json::json;

use crate::serve::{artifacts, image_store, skip_browser, Browser};
use crate::util::{run, text};

const SECTIONS: [&str; 6] = [
    "summary",
    "distributions",
    "deciles",
    "trust",
    "datamap",
    "examples",
];

#[test]
fn report_is_self_contained_and_shows_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = image_store(dir.path());
    let out = run(&["report", "res", "-o", "report.html"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for id in SECTIONS {
        assert!(
            html.contains(&format!("<section id={id}>")),
            "no section {id}"
        );
    }
    // Nothing is fetched: no scripts, no remote or root-relative resources, images inline.
    assert!(!html.contains("<script"), "a script in the report");
    for bad in ["src=\"http", "href=\"http", "src=\"/", "url("] {
        assert!(!html.contains(bad), "external resource `{bad}`");
    }
    assert!(html.matches("src=\"data:image/png;base64,").count() >= 24);
    // Metadata markup never reaches the report; ids are escaped.
    assert!(!html.contains("<script>alert("));
    // Flagged examples carry their heat map.
    assert!(html.contains("class=heat"));

    // From the store, same run.
    let out = run(
        &["report", store.to_str().unwrap(), "-o", "from-store.html"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let from_store = std::fs::read_to_string(dir.path().join("from-store.html")).unwrap();
    for id in SECTIONS {
        assert!(from_store.contains(&format!("<section id={id}>")));
    }
    assert!(from_store.contains("class=heat"));

    // Offline in a browser: every section laid out with a size, the data map drawn.
    if skip_browser() {
        return;
    }
    let b = Browser::start();
    b.go(&format!(
        "file://{}",
        dir.path().join("report.html").display()
    ));
    let sizes = b.script(
        "return ['summary','distributions','deciles','trust','datamap','examples'].map(id => {
           const r = document.getElementById(id).getBoundingClientRect(); return [r.width, r.height]; });",
    );
    for (id, wh) in SECTIONS.iter().zip(sizes.as_array().unwrap()) {
        assert!(
            wh[0].as_f64().unwrap() > 100.0 && wh[1].as_f64().unwrap() > 40.0,
            "{id}: {wh}"
        );
    }
    assert!(b.script("return document.querySelectorAll('#datamap circle').length;") == json!(24));
    let broken = b.script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;",
    );
    assert_eq!(broken, 0, "images that did not decode");
    // The whole page in one screenshot: a window as tall as the document.
    let height = b
        .script("return document.documentElement.scrollHeight;")
        .as_f64()
        .unwrap();
    b.cmd(
        "POST",
        "/window/rect",
        json!({"width": 1300, "height": height.min(16_000.0) + 160.0}),
    );
    b.screenshot(&artifacts().join("report.png"));
}

#[test]
fn report_errors_name_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["report", "nowhere", "-o", "r.html"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("nowhere"), "{}", text(&out));
    assert!(!dir.path().join("r.html").exists());
}

#[test]
fn the_server_renders_a_runs_report_that_can_load_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = image_store(dir.path());
    let s = crate::serve::serve(&store, &[]);
    let a = crate::serve::agent();
    let mut r = a.get(format!("{}/report/cnn", s.base)).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let policy = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(!policy.contains("script-src"), "{policy}");
    let html = r.body_mut().read_to_string().unwrap();
    for id in SECTIONS {
        assert!(html.contains(&format!("<section id={id}>")), "no {id}");
    }
    assert!(html.contains("class=heat"));
    assert!(!html.contains("<script"));
    // The same page `vog report` writes from the store, but for the time it was generated.
    let out = run(
        &["report", store.to_str().unwrap(), "-o", "cli.html"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let cli = std::fs::read_to_string(dir.path().join("cli.html")).unwrap();
    let body = |h: &str| h[h.find("<section id=summary>").unwrap()..].to_string();
    assert_eq!(body(&html), body(&cli));

    for (path, status) in [
        ("/report/nope", 404),
        ("/report/..%2Fstore", 400),
        ("/report/a%00b", 400),
    ] {
        let (got, text) = crate::serve::get(&a, &format!("{}{path}", s.base));
        assert_eq!(got, status, "{path}: {text}");
    }
}

/// "Which score to trust": every score's AUROC for the run's own errors equals `vog evaluate`'s
/// with those errors as the bad examples, the label-reading scores left out, best first.
#[test]
fn which_score_to_trust_ranks_scores_by_the_runs_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    image_store(dir.path());
    let out = run(&["report", "res", "-o", "r.html"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    let start = html.find("<section id=trust>").unwrap();
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    let table: Vec<(String, String)> = section
        .split("<tr><td><code>")
        .skip(1)
        .map(|row| {
            let name = row[..row.find("</code>").unwrap()].to_string();
            let rest = &row[row.find("</td><td>").unwrap() + 9..];
            (name, rest[..rest.find("</td>").unwrap()].to_string())
        })
        .collect();
    let scores = std::fs::read_to_string(dir.path().join("res/scores.jsonl")).unwrap();
    let bad: Vec<String> = scores
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["true_label"] != r["predicted"])
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!bad.is_empty(), "the golden CNN run should have errors");
    std::fs::write(dir.path().join("bad.txt"), bad.join("\n")).unwrap();
    let out = run(
        &[
            "evaluate",
            "res",
            "--bad-ids",
            "bad.txt",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let eval: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<(String, String)> = eval["scores"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !["correct_ratio", "forgetting"].contains(&s["score"].as_str().unwrap()))
        .map(|s| {
            let a = s["auroc"]
                .as_f64()
                .map_or("–".to_string(), |a| format!("{a:.3}"));
            (s["score"].as_str().unwrap().to_string(), a)
        })
        .collect();
    let mut got = table.clone();
    got.sort();
    let mut want = expected;
    want.sort();
    assert_eq!(got, want);
    assert!(table.iter().any(|(n, _)| n == "msp_last"));
    let aurocs: Vec<f64> = table.iter().filter_map(|(_, a)| a.parse().ok()).collect();
    assert!(aurocs.windows(2).all(|w| w[0] >= w[1]), "{table:?}");
    assert!(
        section.contains(&format!("{} of 24", bad.len())),
        "{section}"
    );
}
