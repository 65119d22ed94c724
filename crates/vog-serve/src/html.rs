//! HTML output: escaping, URL encoding and the page frame. Every value that did not come from
//! this crate's own literals goes through [`escape`] (element text and quoted attributes alike)
//! or [`percent_encode`] (URL parts).

use std::fmt::Write;

pub use vog_report::escape;

/// Percent-encodes everything but unreserved characters (RFC 3986) and, when `keep_slash`, `/`.
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Percent-encodes a query value or a single path segment.
pub fn percent_encode(text: &str) -> String {
    encode(text, false)
}

/// Percent-encodes a path made of segments (keeps `/`).
pub fn percent_encode_path(text: &str) -> String {
    encode(text, true)
}

/// Decodes `%XX` sequences and `+` (as a space); invalid sequences are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A whole page: title, navigation with the reviewer's name, body.
pub fn page(title: &str, reviewer: Option<&str>, body: &str) -> String {
    let who = match reviewer {
        Some(r) => format!(
            "<span class=who>reviewer: <b>{}</b> · <a href=\"/login\">change</a></span>",
            escape(r)
        ),
        None => "<span class=who><a href=\"/login\">identify yourself</a></span>".into(),
    };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{} · vog</title><link rel=stylesheet href=\"/static/app.css\"></head><body>\
         <nav><a href=\"/\" class=brand>vog</a> <a href=\"/\">search</a> <a href=\"/queues\">queues</a> {who}</nav>\
         <main>{body}</main><script src=\"/static/app.js\"></script></body></html>",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        for s in ["run/id 1", "a&b=c", "ünï", "100%", "%zz", "%4"] {
            assert_eq!(percent_decode(&percent_encode(s)), s, "{s}");
        }
        assert_eq!(percent_encode_path("run/a b"), "run/a%20b");
        assert_eq!(percent_decode("a+b%2Fc"), "a b/c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
