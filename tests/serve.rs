//! `vog serve`: the JSON API and pages over a real store (escaping, asset confinement, the
//! token rule), 8 concurrent annotators, and a review session in headless Chromium driven over
//! WebDriver (search, an example with its image and heat map, three decisions by keyboard in
//! queue mode, then the decisions read back from the store; screenshots saved as artifacts).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{golden, run, text, vog, CNN_OPTIONS};

/// A running `vog serve`, stopped on drop.
pub(crate) struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(store: &Path, extra: &[&str]) -> Server {
    let mut child = vog()
        .args([
            "serve",
            "--store",
            store.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env_remove("VOG_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("vog serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving STORE on http://127.0.0.1:PORT/…"
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{line}`"));
    let base = url.split('/').take(3).collect::<Vec<_>>().join("/");
    Server { child, base }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub(crate) fn get(a: &ureq::Agent, url: &str) -> (u16, String) {
    let mut r = a
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let bytes = r.body_mut().read_to_vec().unwrap();
    (
        r.status().as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub(crate) fn get_json(a: &ureq::Agent, url: &str) -> Value {
    let (status, body) = get(a, url);
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub(crate) fn post_json(a: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = a.post(url).send_json(body).unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

/// The golden CNN's colour images (3×12×12) scored with metadata that holds markup and image
/// paths, the top 25% flagged (maps kept), indexed with queue `review` over the flagged ones.
/// Returns (store, dataset dir).
pub(crate) fn image_store(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("img")).unwrap();
    let g = golden("cnn");
    std::fs::copy(g.join("x.npy"), data.join("x.npy")).unwrap();
    std::fs::copy(g.join("y.npy"), data.join("y.npy")).unwrap();
    std::fs::write(data.join("img/thumb.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(dir.join("secret.txt"), b"TOP-SECRET-CONTENT").unwrap();
    let mut meta = std::fs::File::create(data.join("meta.jsonl")).unwrap();
    for i in 0..24 {
        let m = json!({
            "caption": format!("<script>alert({i})</script>"),
            "thumb": "img/thumb.png",
            "camera": if i % 2 == 0 { "a" } else { "b" },
        });
        writeln!(meta, "{m}").unwrap();
    }
    let cfg = format!(
        "version = 1\n[data]\npath = \"data/x.npy\"\nlabels = \"data/y.npy\"\nmetadata = \"data/meta.jsonl\"\n\
         [checkpoints]\npaths = [\"{}\"]\n[backend]\nbatch_size = 8\n[backend.options]\n{CNN_OPTIONS}\n\
         [flag]\ntop_percent = 25\n",
        g.join("ckpt").display()
    );
    std::fs::write(dir.join("cfg.toml"), cfg).unwrap();
    let out = run(
        &[
            "score", "-q", "-c", "cfg.toml", "-o", "res", "--store", "store", "--run", "cnn",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &["queue", "create", "-s", "store", "review", "--flagged"],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    (dir.join("store"), data)
}

#[test]
fn api_and_pages_escape_markup_and_keep_assets_inside_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (store, data) = image_store(dir.path());
    let s = serve(&store, &[]);
    let a = agent();

    let found = get_json(&a, &format!("{}/api/search?flagged=true&limit=100", s.base));
    let queue = get_json(&a, &format!("{}/api/queues", s.base));
    assert_eq!(found["total"], queue[0]["total"], "{found}");
    assert!(found["total"].as_u64().unwrap() >= 6, "{found}");
    let key = found["hits"][0]["key"].as_str().unwrap().to_string();
    assert_eq!(
        found["hits"][0]["checkpoints"]["margin"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let counts = get_json(&a, &format!("{}/api/search?q=meta.camera:b", s.base));
    assert_eq!(counts["total"], 12);
    assert_eq!(counts["counts"]["status"]["unreviewed"], 12);

    // The page shows metadata as text: the script tag is escaped, never live.
    let (status, page) = get(&a, &format!("{}/example/{key}", s.base));
    assert_eq!(status, 200);
    assert!(page.contains("&lt;script&gt;alert("), "caption not escaped");
    assert!(
        !page.contains("<script>alert("),
        "live script tag in the page"
    );
    assert!(page.contains("src=\"/asset/cnn/img/thumb.png\""));
    let (status, search_page) = get(&a, &format!("{}/?q=meta.camera:b", s.base));
    assert_eq!(status, 200);
    assert!(!search_page.contains("<script>alert("));

    // Tensors: the input as an image, the kept VoG map and gradient.
    let input = get_json(&a, &format!("{}/api/tensor/input/{key}", s.base));
    assert_eq!(input["shape"], json!([3, 12, 12]));
    assert_eq!(input["layout"], "image");
    let row = found["hits"][0]["row"].as_u64().unwrap() as usize;
    let (_, x) = crate::util::npy(&data.join("x.npy"));
    let got: Vec<f32> = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, x[row * 432..(row + 1) * 432].to_vec());
    let map = get_json(&a, &format!("{}/api/tensor/map/{key}", s.base));
    assert_eq!(map["shape"], json!([12, 12]));
    let grad = get_json(&a, &format!("{}/api/tensor/grad/{key}", s.base));
    assert_eq!(grad["shape"], json!([3, 12, 12]));
    let unflagged = get_json(&a, &format!("{}/api/search?flagged=false&limit=1", s.base));
    let other = unflagged["hits"][0]["key"].as_str().unwrap();
    let (status, body) = get(&a, &format!("{}/api/tensor/map/{other}", s.base));
    assert_eq!(status, 404, "{body}");

    // Assets: inside the dataset directory only.
    let (status, _) = get(&a, &format!("{}/asset/cnn/img/thumb.png", s.base));
    assert_eq!(status, 200);
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), data.join("img/link.txt")).unwrap();
    for bad in [
        "..%2Fsecret.txt",
        "img%2F..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "img/link.txt",
    ] {
        let (status, body) = get(&a, &format!("{}/asset/cnn/{bad}", s.base));
        assert_eq!(status, 403, "{bad}: {body}");
        assert!(!body.contains("TOP-SECRET"), "{bad} leaked the file");
    }
    let (status, _) = get(&a, &format!("{}/asset/..%2F..%2Fetc/passwd", s.base));
    assert!(
        status == 400 || status == 404,
        "run name traversal: {status}"
    );

    // Errors are JSON with a status.
    let (status, body) = get(&a, &format!("{}/api/example/cnn/nope", s.base));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no example"));
    let (status, body) = get(&a, &format!("{}/api/search?q=class:(", s.base));
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_json(
        &a,
        &format!("{}/api/decision", s.base),
        &json!({"example": key, "reviewer": "bob", "decision": "maybe"}),
    );
    assert_eq!(status, 400, "{body}");

    // A decision through the API reaches the store and the export.
    let (status, rec) = post_json(
        &a,
        &format!("{}/api/decision", s.base),
        &json!({"example": key, "reviewer": "bob", "decision": "mislabeled", "label": 2, "note": "<b>x</b>"}),
    );
    assert_eq!(status, 200, "{rec}");
    let (status, csv) = get(&a, &format!("{}/api/export?format=relabel", s.base));
    assert_eq!(status, 200);
    assert!(
        csv.lines()
            .any(|l| l.contains(&key[4..]) && l.ends_with(",2")),
        "{csv}"
    );
    let (_, page) = get(&a, &format!("{}/example/{key}", s.base));
    assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x</b>"));
}

#[test]
fn tabular_examples_come_as_feature_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["demo", "-q", "-o", "demo"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &[
            "index",
            "demo/results/test-logit",
            "-s",
            "store",
            "--run",
            "toy",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = serve(&dir.path().join("store"), &[]);
    let a = agent();
    let t = get_json(&a, &format!("{}/api/tensor/input/toy/5", s.base));
    assert_eq!(t["layout"], "table");
    assert_eq!(t["shape"], json!([2]));
    let (_, x) = crate::util::npy(&dir.path().join("demo/data/test_x.npy"));
    assert_eq!(t["data"][1].as_f64().unwrap() as f32, x[11]);
    let (status, page) = get(&a, &format!("{}/example/toy/5", s.base));
    assert_eq!(status, 200);
    assert!(
        page.contains("<svg class=trajectory"),
        "no per-checkpoint chart"
    );
}

#[test]
fn a_token_is_required_off_loopback_and_enforced_when_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    // Refuses to start on a non-loopback address without a token, before opening anything.
    let out = vog()
        .args(["serve", "--store", "empty", "--addr", "0.0.0.0:0"])
        .env_remove("VOG_SERVE_TOKEN")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("without an access token"),
        "{}",
        text(&out)
    );

    let (store, _) = image_store(dir.path());
    let token = "correct-horse-battery";
    let s = serve(&store, &["--token", token]);
    let a = agent();
    let (status, body) = get(&a, &format!("{}/api/search", s.base));
    assert_eq!(status, 401, "{body}");
    let (status, _) = get(&a, &format!("{}/?token=wrong-token-123", s.base));
    assert_eq!(status, 401);
    let mut r = a
        .get(&format!("{}/api/search", s.base))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    // The printed link sets a cookie and redirects to the page without the token.
    let r = a
        .get(&format!("{}/?token={token}&q=x", s.base))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/?q=x");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("vog_token={token}")) && cookie.contains("HttpOnly"));
    let mut r = a
        .get(&format!("{}/api/queues", s.base))
        .header("Cookie", format!("vog_token={token}"))
        .call()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
}

#[test]
fn eight_annotators_claim_each_item_once_and_lose_no_decision() {
    const ANNOTATORS: usize = 8;
    const EACH: usize = 500;
    let n = ANNOTATORS * EACH;
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("many");
    std::fs::create_dir_all(&res).unwrap();
    let manifest = json!({
        "data": {"path": "/data/many.npy", "split": "test"},
        "scoring": {"windows": [{"name": "all", "start": 0, "end": 3}]}
    });
    std::fs::write(res.join("run.json"), crate::util::manifest(manifest)).unwrap();
    let mut f = std::fs::File::create(res.join("scores.jsonl")).unwrap();
    for i in 0..n {
        let line = json!({
            "id": format!("ex{i:05}"), "row": i, "split": "test", "true_label": i % 10,
            "label_used": i % 10, "predicted": i % 10, "vog": {"all": i as f64},
            "vog_norm": {"all": i as f64 / n as f64}, "scores": {}, "meta": {},
        });
        writeln!(f, "{}", crate::util::score_line(line)).unwrap();
    }
    drop(f);
    let out = run(&["index", "many", "-s", "store", "-q"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["queue", "create", "-s", "store", "all"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let s = serve(&dir.path().join("store"), &[]);
    let base = s.base.clone();

    let decisions = [
        "ok",
        "mislabeled",
        "ambiguous",
        "corrupt",
        "out-of-distribution",
    ];
    let workers: Vec<_> = (0..ANNOTATORS)
        .map(|w| {
            let base = base.clone();
            std::thread::spawn(move || {
                let a = agent();
                let me = format!("annotator-{w}");
                let mut mine = Vec::new();
                while mine.len() < EACH {
                    let (status, body) = post_json(
                        &a,
                        &format!("{base}/api/claim"),
                        &json!({"queue": "all", "reviewer": me}),
                    );
                    assert_eq!(status, 200, "{body}");
                    let key = body["claims"][0]["key"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{me} found the queue empty after {}", mine.len()))
                        .to_string();
                    let (status, rec) = post_json(
                        &a,
                        &format!("{base}/api/decision"),
                        &json!({"example": key, "reviewer": me, "decision": decisions[mine.len() % 5]}),
                    );
                    assert_eq!(status, 200, "{rec}");
                    mine.push(key);
                }
                mine
            })
        })
        .collect();
    let per: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let mut all = HashSet::new();
    for keys in &per {
        assert_eq!(keys.len(), EACH);
        for k in keys {
            assert!(all.insert(k.clone()), "{k} was claimed twice");
        }
    }
    assert_eq!(all.len(), n);
    let a = agent();
    let q = get_json(&a, &format!("{base}/api/queues"));
    assert_eq!(q[0]["reviewed"], n as u64, "{q}");
    assert_eq!(q[0]["claimed"], 0, "{q}");
    let (_, rec) = post_json(
        &a,
        &format!("{base}/api/claim"),
        &json!({"queue": "all", "reviewer": "late"}),
    );
    assert_eq!(rec["claims"], json!([]), "{rec}");
    // Every decision is in the store, each by the annotator that claimed the item.
    let store = vog_store::Store::open(&dir.path().join("store")).unwrap();
    for (w, keys) in per.iter().enumerate() {
        for (i, k) in keys.iter().enumerate().step_by(37) {
            let h = store.history(k).unwrap();
            assert_eq!(h.len(), 1, "{k}");
            assert_eq!(h[0].reviewer, format!("annotator-{w}"));
            assert_eq!(h[0].decision, decisions[i % 5]);
        }
    }
    // The search index catches up with all of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get_json(&a, &format!("{base}/api/search?status=reviewed&limit=1"));
        if r["total"] == n as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "index behind: {}", r["total"]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium over WebDriver (the W3C protocol, spoken with ureq).

pub(crate) struct Browser {
    driver: Child,
    url: String,
    agent: ureq::Agent,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.url).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

impl Browser {
    pub(crate) fn start() -> Browser {
        let driver_bin = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| find_program(&["chromedriver"]))
            .expect(
                "chromedriver not found: scripts/test.sh installs Debian's chromium and chromium-driver \
                 (or set CHROMEDRIVER)",
            );
        let chrome = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| find_program(&["chromium", "chromium-browser", "google-chrome"]))
            .expect("chromium not found (scripts/test.sh installs it; or set CHROMIUM)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent = agent();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while a_get_ok(&agent, &format!("{base}/status")).is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome.to_str().unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1300,1100"]
            }
        }}});
        let (status, v) = post_json(&agent, &format!("{base}/session"), &caps);
        assert_eq!(status, 200, "new session: {v}");
        let id = v["value"]["sessionId"].as_str().unwrap();
        let url = format!("{base}/session/{id}");
        Browser { driver, url, agent }
    }

    pub(crate) fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.url);
        let mut r = match method {
            "GET" => self.agent.get(&url).call().unwrap(),
            _ => self.agent.post(&url).send_json(&body).unwrap(),
        };
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    pub(crate) fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    pub(crate) fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("{}/element", self.url);
            let mut r = self
                .agent
                .post(&url)
                .send_json(json!({"using": "css selector", "value": css}))
                .unwrap();
            let ok = r.status().as_u16() == 200;
            let v: Value = r.body_mut().read_json().unwrap();
            if ok {
                let obj = v["value"].as_object().unwrap();
                return obj.values().next().unwrap().as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no element `{css}`: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn text_of(&self, css: &str) -> String {
        let el = self.find(css);
        self.cmd("GET", &format!("/element/{el}/text"), Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub(crate) fn script(&self, js: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": js, "args": []}))
    }

    /// Waits until `js` (an expression) is truthy; returns its value.
    pub(crate) fn wait_for(&self, js: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.script(&format!("return {js};"));
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/clear"), json!({}));
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        );
    }

    /// Presses keys on whatever has focus, as a user would.
    fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for c in keys.chars() {
            let k = if c == '\n' {
                "\u{E007}".to_string()
            } else {
                c.to_string()
            };
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    pub(crate) fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

fn a_get_ok(a: &ureq::Agent, url: &str) -> Option<()> {
    let r = a.get(url).call().ok()?;
    (r.status().as_u16() == 200).then_some(())
}

/// Where the browser test leaves its screenshots: `$VOG_TEST_ARTIFACTS` (scripts/test.sh sets
/// it), else `artifacts/` in cargo's test scratch directory.
pub(crate) fn artifacts() -> PathBuf {
    std::env::var_os("VOG_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"))
}

/// `VOG_SKIP_BROWSER` skips the browser parts on a machine without chromium (never under `CI`).
pub(crate) fn skip_browser() -> bool {
    let skip = std::env::var_os("VOG_SKIP_BROWSER").is_some() && std::env::var_os("CI").is_none();
    if skip {
        eprintln!("VOG_SKIP_BROWSER set: skipping the browser part (never skipped under CI)");
    }
    skip
}

#[test]
fn review_session_in_headless_chromium() {
    if skip_browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = image_store(dir.path());
    let s = serve(&store, &[]);
    let b = Browser::start();

    // Identify.
    b.go(&format!("{}/login?next=/", s.base));
    b.type_into("#reviewer", "alice\u{E007}");
    b.wait_for(
        "document.querySelector('.who b') && document.querySelector('.who b').textContent",
        "login",
    );

    // Search by typing a query, as a user does.
    b.press("/");
    b.type_into("#q", "meta.camera:b AND flagged:true\u{E007}");
    b.wait_for("location.search.includes('camera')", "search results");
    let total: u64 = b.text_of("#total").parse().unwrap();
    let a = agent();
    let want = get_json(
        &a,
        &format!("{}/api/search?q=meta.camera:b%20AND%20flagged:true", s.base),
    );
    assert_eq!(total, want["total"].as_u64().unwrap());
    assert!(total > 0);
    assert!(b.text_of("[data-facet=class]").contains("class"));

    // Open the first hit: its image and heat map are drawn from the tensors.
    let first = b.find("a.hit");
    b.cmd("POST", &format!("/element/{first}/click"), json!({}));
    let drawn = b.wait_for(
        "document.getElementById('view') && document.getElementById('view').dataset.drawn",
        "the image",
    );
    assert_eq!(drawn, "input+map");
    let pixels = b.script(
        "const c = document.getElementById('input-canvas'), h = document.getElementById('heat-canvas');
         const sum = (cv) => cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data.reduce((a, v) => a + v, 0);
         return [c.width, c.height, sum(c), h.width, sum(h)];",
    );
    assert_eq!(pixels[0], 12);
    assert_eq!(pixels[1], 12);
    assert!(pixels[2].as_f64().unwrap() > 0.0, "blank image");
    assert_eq!(pixels[3], 12);
    assert!(pixels[4].as_f64().unwrap() > 0.0, "blank heat map");
    assert!(
        b.text_of("#meta").contains("<script>alert("),
        "caption shown as text"
    );
    assert_eq!(
        b.script("return document.querySelectorAll('#meta script').length;"),
        0
    );
    b.screenshot(&artifacts().join("serve-example.png"));

    // Queue mode: three decisions by keyboard (ok, ambiguous, relabel as 2).
    b.go(&format!("{}/queue/review", s.base));
    // The queue page claims nothing by itself: the reviewer asks for the next item (a POST).
    let start = b.find("#claim-next");
    b.cmd("POST", &format!("/element/{start}/click"), json!({}));
    let mut decided = Vec::new();
    for step in 0..3 {
        let key = b
            .wait_for("document.getElementById('decide') && document.getElementById('decide').dataset.key", "a queue item")
            .as_str()
            .unwrap()
            .to_string();
        assert!(!decided.contains(&key), "{key} came back");
        b.wait_for(
            "document.getElementById('view').dataset.drawn",
            "the queue item's image",
        );
        if step == 2 {
            b.screenshot(&artifacts().join("serve-queue.png"));
        }
        match step {
            0 => b.press("1"),
            1 => b.press("3"),
            _ => {
                b.press("l");
                b.wait_for("document.activeElement.id === 'new-label'", "the label box");
                b.press("2\n");
            }
        }
        b.wait_for(
            &format!("document.getElementById('decide') === null || document.getElementById('decide').dataset.key !== {}", json!(key)),
            "the next item",
        );
        decided.push(key);
    }
    let queued = get_json(&a, &format!("{}/api/queues", s.base))[0]["total"].clone();
    let progress = b.text_of("#progress");
    assert_eq!(progress, format!("3 of {queued} reviewed"));

    // The decisions are in the store.
    let st = vog_store::Store::open(&store).unwrap();
    let want = [("ok", None), ("ambiguous", None), ("mislabeled", Some(2))];
    for (key, (decision, label)) in decided.iter().zip(want) {
        let h = st.history(key).unwrap();
        assert_eq!(h.len(), 1, "{key}: {h:?}");
        assert_eq!(h[0].reviewer, "alice");
        assert_eq!(h[0].decision, decision);
        assert_eq!(h[0].label, label);
    }
    eprintln!("screenshots: {}", artifacts().display());
}
