//! `vog serve` and the store against hostile use: every request an outsider tried (huge and
//! negative paging, overlong and deeply nested queries, foreign Host and Origin, traversal in raw
//! and percent-encoded forms, symbolic and hard links, dotfiles, oversized bodies, slow clients)
//! gets a 4xx with a JSON error, the server stays up, and no secret byte comes back; the command
//! line has the same caps. Heavy use (memory, tokens and claims, stale items, races, load) is in
//! `review_load.rs`, on the same fixtures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{agent, get, get_json, serve, Server};
use crate::util::{run, text};

const SECRET: &str = "TOP-SECRET";

/// A results directory of `n` synthetic examples whose metadata names images, hostile paths
/// among them, and carries spreadsheet formulas; its manifest names `data` as the dataset.
pub(crate) fn results(
    dir: &Path,
    name: &str,
    n: usize,
    data: &Path,
    caption_len: usize,
) -> PathBuf {
    let res = dir.join(name);
    std::fs::create_dir_all(&res).unwrap();
    let manifest = json!({
        "data": {"path": data.join("x.npy"), "split": "test"},
        "config": {"data": {"metadata": data.join("meta.jsonl")}},
        "scoring": {"windows": [{"name": "all", "start": 0, "end": 3}]}
    });
    std::fs::write(res.join("run.json"), crate::util::manifest(manifest)).unwrap();
    let images = [
        "img/thumb.png",
        "./img/thumb.png",
        "../secret.png",
        "img/link.png",
        "out/secret.png",
        "img/hard.png",
        ".ssh/id_ed25519.png",
        "img/huge.png",
        "img/fifo.png",
    ];
    let mut f = std::io::BufWriter::new(std::fs::File::create(res.join("scores.jsonl")).unwrap());
    for i in 0..n {
        let caption = if i % 7 == 0 {
            "=HYPERLINK(\"http://evil.example\",\"click\")".to_string()
        } else {
            format!("{i}-{}", "x".repeat(caption_len))
        };
        let line = json!({
            "id": format!("ex{i:05}"), "row": i, "true_label": i % 10, "label_used": i % 10,
            "predicted": (i * 3) % 10, "vog": {"all": i as f64}, "vog_norm": {"all": i as f64 / n as f64},
            "scores": {"margin_mean": -(i as f64)},
            "meta": {"image": images[i % images.len()], "caption": caption, "camera": if i % 2 == 0 { "a" } else { "b" }},
        });
        writeln!(f, "{}", crate::util::score_line(line)).unwrap();
    }
    f.flush().unwrap();
    res
}

/// The dataset directory with one real image and every kind of escape next to it:
/// `dir/secret.png` and `dir/outside/…` hold secrets.
pub(crate) fn dataset(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    for d in ["img", ".ssh"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    std::fs::create_dir_all(dir.join("outside")).unwrap();
    std::fs::write(data.join("img/thumb.png"), b"\x89PNG\r\n\x1a\nthumb").unwrap();
    std::fs::write(data.join("img/unlisted.png"), format!("{SECRET}-unlisted")).unwrap();
    std::fs::write(data.join(".ssh/id_ed25519.png"), format!("{SECRET}-KEY")).unwrap();
    std::fs::write(data.join(".ssh/id_ed25519"), format!("{SECRET}-KEY")).unwrap();
    std::fs::write(dir.join("secret.png"), format!("{SECRET}-CONTENT")).unwrap();
    std::fs::write(dir.join("outside/secret.png"), format!("{SECRET}-OUTSIDE")).unwrap();
    std::fs::write(dir.join("outside/hard.png"), format!("{SECRET}-HARD")).unwrap();
    std::fs::write(data.join("meta.jsonl"), "{}\n").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.join("secret.png"), data.join("img/link.png")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), data.join("out")).unwrap();
        std::fs::hard_link(dir.join("outside/hard.png"), data.join("img/hard.png")).unwrap();
        let fifo = std::ffi::CString::new(data.join("img/fifo.png").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    }
    let huge = std::fs::File::create(data.join("img/huge.png")).unwrap();
    huge.set_len(33 * 1024 * 1024).unwrap();
    data
}

/// A store with run `syn` (`n` examples) indexed and queue `q` over all of it.
pub(crate) fn hostile_store(dir: &Path, n: usize) -> PathBuf {
    let data = dataset(dir);
    results(dir, "syn", n, &data, 40);
    let out = run(&["index", "syn", "-s", "store", "-q"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["queue", "create", "-s", "store", "q"], dir);
    assert!(out.status.success(), "{}", text(&out));
    dir.join("store")
}

/// Sends `request` as it is over a fresh connection; returns the status and everything after
/// the head (`(0, _)` when the server closed without answering).
pub(crate) fn raw(base: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get_request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Asserts a refusal: the status is in `want`, the body a JSON error, no secret in it, and the
/// server still answers.
fn refused(s: &Server, what: &str, (status, body): (u16, String), want: &[u16]) {
    assert!(want.contains(&status), "{what}: status {status}: {body}");
    assert!(!body.contains(SECRET), "{what} leaked a secret: {body}");
    let v: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("{what}: not a JSON error ({e}): {body}"));
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {v}"
    );
    still_up(s);
}

fn still_up(s: &Server) {
    let (status, body) = get(&agent(), &format!("{}/api/search?limit=1", s.base));
    assert_eq!(status, 200, "the server stopped answering: {body}");
}

fn host_of(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

#[test]
fn hostile_requests_get_a_4xx_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = hostile_store(dir.path(), 2000);
    let s = serve(&store, &["--header-timeout", "2", "--request-timeout", "3"]);
    let a = agent();
    let host = host_of(&s);
    let api = |path: &str| get(&a, &format!("{}{path}", s.base));

    // Paging: huge, negative, overflowing and over-the-cap numbers.
    for q in [
        "offset=100000000000000",
        "offset=18446744073709551615",
        "offset=99999999999999999999999999",
        "offset=-1",
        "limit=-5",
        "limit=1001",
        "limit=18446744073709551615",
        "limit=1e9",
        "class=-1",
        "min_score=abc",
        "flagged=maybe",
        "sort=no_such_field",
    ] {
        refused(&s, q, api(&format!("/api/search?{q}")), &[400]);
    }
    let (status, page) = api("/?offset=100000000000000");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("maximum of 100000"), "{page}");
    refused(
        &s,
        "export offset",
        api("/api/export?offset=100000000000000"),
        &[400],
    );
    refused(&s, "export format", api("/api/export?format=xls"), &[400]);

    // Queries: deeply nested (the issue's 30,000 parentheses), just over the depth, overlong.
    let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
    let (status, body) = raw(
        &s.base,
        &get_request(&format!("/api/search?q={}", nested(30_000)), &host),
    );
    assert!(body.contains("the limit is 4096"), "{body}");
    refused(&s, "30,000 parentheses", (status, body), &[400]);
    let (status, body) = api(&format!("/api/search?q={}", nested(33)));
    assert!(body.contains("nested 33 deep; the limit is 32"), "{body}");
    refused(&s, "33 levels", (status, body), &[400]);
    assert_eq!(api(&format!("/api/search?q={}", nested(32))).0, 200);
    refused(
        &s,
        "overlong query",
        api(&format!("/api/search?q={}", "a%20OR%20".repeat(700))),
        &[400],
    );
    refused(
        &s,
        "nested where in export",
        api(&format!("/api/export?q={}", nested(40))),
        &[400],
    );
    refused(
        &s,
        "nested run",
        api(&format!("/api/search?run={}", "(".repeat(5000))),
        &[400],
    );
    // A request head over the server's bound is refused by the HTTP layer, and it stays up.
    let (status, _) = raw(
        &s.base,
        &get_request(&format!("/api/search?q={}", "a".repeat(200_000)), &host),
    );
    // 414 when hyper has the whole request line before it gives up, 431 when it runs out of
    // room in the head first (it depends on how the bytes arrive), 0 when it closes at once.
    assert!(matches!(status, 414 | 431 | 400 | 0), "{status}");
    still_up(&s);

    // Foreign Host (DNS rebinding) and foreign Origin: refused, nothing exported or recorded.
    refused(
        &s,
        "foreign Host export",
        raw(
            &s.base,
            &get_request("/api/export?format=jsonl", "attacker.example:8787"),
        ),
        &[403],
    );
    refused(
        &s,
        "no Host",
        raw(&s.base, b"GET /api/search HTTP/1.0\r\n\r\n"),
        &[403, 400],
    );
    let decision =
        json!({"example": "syn/ex00010", "reviewer": "mallory", "decision": "ok"}).to_string();
    for (what, headers) in [
        (
            "foreign Host and Origin",
            "Host: attacker.example:8787\r\nOrigin: http://attacker.example:8787\r\n".to_string(),
        ),
        (
            "foreign Origin",
            format!("Host: {host}\r\nOrigin: http://attacker.example\r\n"),
        ),
        ("null Origin", format!("Host: {host}\r\nOrigin: null\r\n")),
        (
            "cross-site fetch",
            format!("Host: {host}\r\nSec-Fetch-Site: cross-site\r\n"),
        ),
    ] {
        let req = format!(
            "POST /api/decision HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{decision}",
            decision.len()
        );
        refused(&s, what, raw(&s.base, req.as_bytes()), &[403]);
    }
    let form = "reviewer=mallory&next=%2F";
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://attacker.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    refused(&s, "cross-site login", raw(&s.base, req.as_bytes()), &[403]);
    let h = get_json(&a, &format!("{}/api/example/syn/ex00010", s.base));
    assert_eq!(h["history"], json!([]), "a refused decision was recorded");

    // Assets: only images an example names, beneath the dataset, no links, dotfiles or FIFOs.
    let (status, body) = api("/asset/syn/img/thumb.png");
    assert_eq!(
        (status, body.as_str()),
        (200, "\u{fffd}PNG\r\n\u{1a}\nthumb")
    );
    for path in [
        "../secret.png",
        "img/../../secret.png",
        "..%2Fsecret.png",
        "%2e%2e%2fsecret.png",
        "%2E%2E/secret.png",
        "img%2F..%2F..%2Fsecret.png",
        "%2Fetc%2Fpasswd",
        "img/%2e%2e/%2e%2e/secret.png",
        "img/link.png",
        "out/secret.png",
        "img/hard.png",
        ".ssh/id_ed25519.png",
        ".ssh/id_ed25519",
        "img/unlisted.png",
        "img/fifo.png",
        "img%5C..%5C..%5Csecret.png",
        "img/thumb.png%00.txt",
        "./img/thumb.png",
    ] {
        let what = format!("asset {path}");
        refused(
            &s,
            &what,
            raw(&s.base, &get_request(&format!("/asset/syn/{path}"), &host)),
            &[403, 404, 400],
        );
    }
    refused(&s, "huge asset", api("/asset/syn/img/huge.png"), &[413]);
    refused(
        &s,
        "run traversal",
        api("/asset/..%2F..%2Fetc/passwd"),
        &[400, 404],
    );
    refused(
        &s,
        "unknown run",
        api("/asset/nope/img/thumb.png"),
        &[403, 404],
    );
    refused(&s, "unknown page", api("/no/such/page"), &[404]);

    // Exports honour `limit`, stream, and escape spreadsheet formulas.
    let (status, one) = api("/api/export?format=jsonl&limit=1");
    assert_eq!(status, 200);
    assert_eq!(one.lines().count(), 1, "{one}");
    let (status, csv) = api("/api/export?format=csv&class=0&limit=50");
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count(), 51);
    assert!(csv.contains("'=HYPERLINK("), "formula not escaped");
    assert!(
        !csv.contains(",=HYPERLINK(") && !csv.contains("\"=HYPERLINK("),
        "live formula"
    );
    assert!(csv.contains(",-"), "negative numbers are kept as numbers");

    // Bodies: oversized, malformed, wrong type, unknown fields, overlong names and notes.
    let post_raw = |path: &str, ctype: &str, body: &[u8]| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        raw(&s.base, &req)
    };
    let big = format!(
        "{{\"example\": \"syn/ex00001\", \"reviewer\": \"a\", \"decision\": \"ok\", \"note\": \"{}\"}}",
        "n".repeat(1 << 20)
    );
    refused(
        &s,
        "1 MiB decision",
        post_raw("/api/decision", "application/json", big.as_bytes()),
        &[413],
    );
    refused(
        &s,
        "10 KiB login",
        post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            "reviewer=".repeat(1200).as_bytes(),
        ),
        &[413],
    );
    refused(
        &s,
        "bad JSON",
        post_raw("/api/decision", "application/json", b"{\"example\": "),
        &[400, 422],
    );
    refused(
        &s,
        "form as JSON",
        post_raw("/api/decision", "text/plain", decision.as_bytes()),
        &[415],
    );
    for (what, body) in [
        (
            "unknown field",
            json!({"example": "syn/ex00001", "reviewer": "a", "decision": "ok", "forced": true}),
        ),
        (
            "long reviewer",
            json!({"example": "syn/ex00001", "reviewer": "r".repeat(65), "decision": "ok"}),
        ),
        (
            "control reviewer",
            json!({"example": "syn/ex00001", "reviewer": "a\u{7}b", "decision": "ok"}),
        ),
        (
            "long note",
            json!({"example": "syn/ex00001", "reviewer": "a", "decision": "ok", "note": "n".repeat(4001)}),
        ),
        (
            "no reviewer",
            json!({"example": "syn/ex00001", "decision": "ok"}),
        ),
        (
            "huge n",
            json!({"queue": "q", "reviewer": "a", "n": 1u64 << 40}),
        ),
        (
            "negative lease",
            json!({"queue": "q", "reviewer": "a", "lease_s": -1}),
        ),
    ] {
        let path = if what.contains("lease") || what.contains(" n") {
            "/api/claim"
        } else {
            "/api/decision"
        };
        refused(
            &s,
            what,
            post_raw(path, "application/json", body.to_string().as_bytes()),
            &[400, 422],
        );
    }

    // GET changes nothing: the queue page claims no item; the login redirect stays on site.
    let (status, page) = get_with_cookie(&format!("{}/queue/q", s.base), "vog_reviewer=ana");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=claim-next"), "{page}");
    let q = get_json(&a, &format!("{}/api/queues", s.base));
    assert_eq!(q[0]["claimed"], 0, "a GET claimed an item: {q}");
    for next in [
        "/%09/evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "https://evil.example",
    ] {
        let form = format!("reviewer=ana&next={next}");
        let req = format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        let mut c = TcpStream::connect(&host).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 303"), "{out}");
        let location = out
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or_default();
        assert_eq!(location, "/", "{next} redirected to {location}");
    }

    // Slow clients: headers trickling in, an idle connection, and a body that never completes
    // are cut off by the timeouts while others are served.
    let started = Instant::now();
    let mut trickle = TcpStream::connect(&host).unwrap();
    trickle
        .write_all(b"GET /api/search HTTP/1.1\r\nHost: ")
        .unwrap();
    let idle = TcpStream::connect(&host).unwrap();
    still_up(&s);
    let mut closed = false;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        if trickle.write_all(b"x").is_err() {
            closed = true;
            break;
        }
    }
    let mut buf = [0u8; 256];
    trickle
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server's end is closed (end of file, a reset, or a 408 first); a read that times
    // out means the connection is still open.
    let cut_off = |c: &mut TcpStream, buf: &mut [u8]| match c.read(buf) {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&buf[..n]).contains(" 408 "),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(
        closed || cut_off(&mut trickle, &mut buf),
        "a trickling client was not cut off"
    );
    let mut idle = idle;
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        cut_off(&mut idle, &mut buf),
        "an idle connection stayed open"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let mut slow_body = TcpStream::connect(&host).unwrap();
    slow_body
        .write_all(format!("POST /api/decision HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"exa").as_bytes())
        .unwrap();
    slow_body
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    still_up(&s);
}

pub(crate) fn get_with_cookie(url: &str, cookie: &str) -> (u16, String) {
    let mut r = agent().get(url).header("Cookie", cookie).call().unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn the_command_line_has_the_same_caps() {
    let dir = tempfile::tempdir().unwrap();
    hostile_store(dir.path(), 50);
    let nested = format!("{}a{}", "(".repeat(30_000), ")".repeat(30_000));
    for (args, says) in [
        (
            vec!["search", "-s", "store", nested.as_str()],
            "the limit is 4096",
        ),
        (
            vec![
                "search",
                "-s",
                "store",
                "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))",
            ],
            "the limit is 32",
        ),
        (
            vec!["search", "-s", "store", "--limit", "100000"],
            "maximum of 10000",
        ),
        (
            vec!["search", "-s", "store", "--offset", "100000000000000"],
            "maximum of 100000",
        ),
        (
            vec!["export", "-s", "store", "--query", nested.as_str()],
            "the limit is 4096",
        ),
        (
            vec![
                "queue",
                "create",
                "-s",
                "store",
                "deep",
                "--query",
                nested.as_str(),
            ],
            "the limit is 4096",
        ),
    ] {
        let out = run(&args, dir.path());
        assert!(!out.status.success(), "{:?}", &args[..args.len().min(4)]);
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    let out = run(
        &["export", "-s", "store", "--limit", "3", "--format", "jsonl"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    // A failed export leaves no file behind.
    let out = run(
        &["export", "-s", "store", "--query", "class:(", "-o", "x.csv"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(!dir.path().join("x.csv").exists());
}
