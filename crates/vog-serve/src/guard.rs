//! Who may talk to the server and as whom: access tokens (one shared, or one per reviewer from a
//! tokens file), the `Host` check that stops DNS rebinding when no token is set, and the
//! `Origin`/`Sec-Fetch-Site` check on every state-changing request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{html, ApiError, AppState, Error};

/// The shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 8;

/// How requests are authenticated.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// No token: loopback use by one person. Only loopback `Host` names (and the bound address,
    /// and `--allow-host` names) are answered.
    #[default]
    Open,
    /// One token shared by everyone; reviewers name themselves.
    Shared(String),
    /// A token per reviewer (`--tokens FILE`): the token says who decides.
    Team(HashMap<String, String>),
}

impl Access {
    /// Whether requests must carry a token.
    pub fn needs_token(&self) -> bool {
        !matches!(self, Access::Open)
    }

    /// The reviewer a presented token stands for: `Some(None)` for the shared token,
    /// `Some(Some(name))` for a reviewer's token, `None` when it is no token of ours. Every
    /// comparison runs in constant time.
    fn holder(&self, presented: &str) -> Option<Option<Arc<str>>> {
        match self {
            Access::Open => Some(None),
            Access::Shared(t) => same(presented, t).then_some(None),
            Access::Team(tokens) => {
                let mut found = None;
                for (token, name) in tokens {
                    if same(presented, token) {
                        found = Some(Some(Arc::from(name.as_str())));
                    }
                }
                found
            }
        }
    }
}

/// Reads a tokens file: one `TOKEN NAME` per line (the name is the rest of the line), `#`
/// comments and blank lines ignored. The file must not be readable by group or others, tokens
/// must be at least [`MIN_TOKEN_CHARS`] long and unique, names valid reviewer names.
pub fn read_tokens(path: &Path) -> Result<HashMap<String, String>, Error> {
    let bad = |message: String| Error::Config(format!("{}: {message}", path.display()));
    let io = |source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "the tokens file is readable by others (mode {:o}); run `chmod 600` on it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (token, name) = line
            .split_once(char::is_whitespace)
            .map(|(t, n)| (t, n.trim()))
            .ok_or_else(|| bad(format!("line {}: give `TOKEN NAME`", i + 1)))?;
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(bad(format!(
                "line {}: a token has at least {MIN_TOKEN_CHARS} characters",
                i + 1
            )));
        }
        vog_store::check_reviewer(name).map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if tokens.insert(token.to_string(), name.to_string()).is_some() {
            return Err(bad(format!("line {}: this token is given twice", i + 1)));
        }
    }
    if tokens.is_empty() {
        return Err(bad("no tokens in the file".into()));
    }
    Ok(tokens)
}

/// Constant-time comparison (a token must not leak through timing).
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value, percent-decoded.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| html::percent_decode(v))
}

/// Who the request is from, as far as the server knows: the reviewer a per-reviewer token names
/// (`None` without such a token). Put on every request by [`access`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity(pub Option<Arc<str>>);

impl Identity {
    /// The reviewer a state change is recorded under: the token's reviewer when there is one
    /// (a different name in the request is refused), else the name the request gives.
    pub fn reviewer(&self, claimed: Option<&str>) -> Result<String, ApiError> {
        match (&self.0, claimed.map(str::trim).filter(|c| !c.is_empty())) {
            (Some(me), None) => Ok(me.to_string()),
            (Some(me), Some(c)) if c == &**me => Ok(me.to_string()),
            (Some(me), Some(c)) => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("your token is `{me}`'s; it cannot act as `{c}`"),
            )),
            (None, Some(c)) => {
                vog_store::check_reviewer(c)
                    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
                Ok(c.to_string())
            }
            (None, None) => Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give `reviewer` (or log in on the web page)".into(),
            )),
        }
    }

    /// The name shown on pages: the token's reviewer, else the `vog_reviewer` cookie.
    pub fn shown(&self, headers: &HeaderMap) -> Option<String> {
        match &self.0 {
            Some(me) => Some(me.to_string()),
            None => cookie(headers, "vog_reviewer").filter(|r| !r.trim().is_empty()),
        }
    }
}

/// The host part of a `Host` header value or an origin's authority, lower-cased, without port
/// and brackets.
fn host_name(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match a.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => a,
    }
}

/// Whether a `Host` name may be answered without a token: loopback names and addresses, the
/// bound address, and the operator's `--allow-host` names.
pub(crate) fn host_allowed(host: &str, bound: IpAddr, allowed: &[String]) -> bool {
    let name = host_name(host);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        if ip.is_loopback() || (ip == bound && !bound.is_unspecified()) {
            return true;
        }
    }
    allowed.iter().any(|a| host_name(a) == name)
}

/// Whether a browser says this request comes from another site: `Sec-Fetch-Site` other than
/// `same-origin`/`none`, or an `Origin` whose authority is not the request's `Host`. Requests
/// with neither header (command-line clients) pass.
pub(crate) fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site is `{site}`"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(a) if a.eq_ignore_ascii_case(host) => None,
        _ => Some(format!("Origin `{origin}` is not this server (`{host}`)")),
    }
}

/// The middleware in front of every route: the `Host` check (without a token), the token check
/// (with one: `Authorization: Bearer T`, the `vog_token` cookie, or `?token=T`, which sets the
/// cookie and redirects to the same page without it), and the cross-site check on anything but
/// GET and HEAD. Puts the request's [`Identity`] into its extensions.
pub(crate) async fn access(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    if !state.access.needs_token() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host_allowed(host, state.bound.ip(), &state.allow_hosts) {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "host `{}` is not served here: without a token vog serve answers only to \
                     loopback names (localhost, 127.0.0.1, [::1]) and the names given with \
                     --allow-host",
                    host.chars().take(100).collect::<String>()
                ),
            )
            .into_response();
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Some(why) = cross_site(headers) {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("cross-site request refused: {why}"),
            )
            .into_response();
        }
    }
    if !state.access.needs_token() {
        req.extensions_mut().insert(Identity(None));
        return next.run(req).await;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let presented = bearer
        .map(str::to_string)
        .or_else(|| cookie(headers, "vog_token"));
    if let Some(who) = presented.and_then(|t| state.access.holder(&t)) {
        req.extensions_mut().insert(Identity(who));
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let from_query = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .map(html::percent_decode)
        .find(|t| state.access.holder(t).is_some());
    if let Some(token) = from_query {
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
            .collect();
        let mut location = req.uri().path().to_string();
        if !rest.is_empty() {
            location = format!("{location}?{}", rest.join("&"));
        }
        return (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!(
                        "vog_token={}; Path=/; HttpOnly; SameSite=Strict",
                        html::percent_encode(&token)
                    ),
                ),
                (header::LOCATION, location),
            ],
        )
            .into_response();
    }
    ApiError(
        StatusCode::UNAUTHORIZED,
        "an access token is required: open the link with ?token=…, or send Authorization: Bearer …"
            .into(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same("abcdefgh", "abcdefgh"));
        assert!(!same("abcdefgh", "abcdefgi"));
        assert!(!same("abc", "abcdefgh"));
    }

    #[test]
    fn loopback_hosts_and_the_allowed_ones_only() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let lan: IpAddr = "10.1.2.3".parse().unwrap();
        let allowed = vec!["review.lab".to_string()];
        for ok in [
            "localhost:8787",
            "LOCALHOST",
            "127.0.0.1:8787",
            "127.9.9.9",
            "[::1]:8787",
            "vog.localhost:1",
            "review.lab:8787",
        ] {
            assert!(host_allowed(ok, lo, &allowed), "{ok}");
        }
        for bad in [
            "attacker.example:8787",
            "",
            "127.0.0.1.attacker.example",
            "localhost.attacker.example",
            "0.0.0.0:8787",
            "10.1.2.3:8787",
        ] {
            assert!(!host_allowed(bad, lo, &allowed), "{bad}");
        }
        assert!(host_allowed("10.1.2.3:8787", lan, &[]));
        assert!(!host_allowed("0.0.0.0", any, &[]));
    }

    #[test]
    fn cross_site_requests_are_recognized() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(cross_site(&h(&[("host", "127.0.0.1:8787")])).is_none());
        assert!(cross_site(&h(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "http://127.0.0.1:8787"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_none());
        for bad in [
            h(&[
                ("host", "127.0.0.1:8787"),
                ("origin", "http://attacker.example"),
            ]),
            h(&[("host", "127.0.0.1:8787"), ("origin", "null")]),
            h(&[
                ("host", "127.0.0.1:8787"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            h(&[("host", "127.0.0.1:8787"), ("sec-fetch-site", "cross-site")]),
            h(&[("host", "127.0.0.1:8787"), ("sec-fetch-site", "same-site")]),
        ] {
            assert!(cross_site(&bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn identity_decides_the_reviewer() {
        let team = Identity(Some(Arc::from("ana")));
        assert_eq!(team.reviewer(None).unwrap(), "ana");
        assert_eq!(team.reviewer(Some("ana")).unwrap(), "ana");
        assert_eq!(team.reviewer(Some("bob")).unwrap_err().0, 403);
        let open = Identity(None);
        assert_eq!(open.reviewer(Some("bob")).unwrap(), "bob");
        assert_eq!(open.reviewer(None).unwrap_err().0, 400);
        assert_eq!(open.reviewer(Some(&"x".repeat(65))).unwrap_err().0, 400);
    }

    #[cfg(unix)]
    #[test]
    fn tokens_files_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "# team\nabcdefgh12345678 Ana Lima\n\nzyxwvuts98765432 bob\n",
            0o600,
        );
        let t = read_tokens(&path).unwrap();
        assert_eq!(t["abcdefgh12345678"], "Ana Lima");
        assert_eq!(t.len(), 2);
        write("abcdefgh12345678 ana\n", 0o644);
        assert!(read_tokens(&path)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        for bad in [
            "short ana\n",
            "abcdefgh12345678\n",
            "abcdefgh12345678 ana\nabcdefgh12345678 bob\n",
            "# nothing\n",
        ] {
            write(bad, 0o600);
            assert!(read_tokens(&path).is_err(), "{bad}");
        }
    }
}
