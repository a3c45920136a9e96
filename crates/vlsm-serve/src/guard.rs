//! Checks every request passes before it reaches a route (see docs/security.md):
//! - `Host` must name this server (the bound address, localhost, 127.0.0.1, [::1], or an
//!   `--allowed-host`): a DNS-rebinding page addresses us by its own name and gets 421;
//! - with `--token`, every /api request and every protocol route (MONAI Label, Label Studio)
//!   needs `Authorization: Bearer TOKEN` or `Basic base64(user:TOKEN)` (401);
//! - state-changing methods are refused (403) when `Origin` is present and not our own, or when
//!   `Sec-Fetch-Site` says another site sent them (cross-site request forgery);
//! - over-long URIs (414) and header sections (431) are answered here as JSON, below the HTTP
//!   layer's own (larger) limits, whose answers have no body.
//!
//! `json_errors` turns every error answer without a JSON body (405, 413 from the body limit,
//! rejections of extractors) into `{"error": ...}`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::AppState;

/// Longest request target answered (longer: 414).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields answered (more: 431); the HTTP layer refuses above `HYPER_MAX_HEADERS`.
pub const MAX_HEADERS: usize = 64;
pub const HYPER_MAX_HEADERS: usize = 256;
/// Largest header section answered (names + values; larger: 431).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Who may talk to the server.
#[derive(Debug, Default)]
pub struct Access {
    /// Lower-case `--allowed-host` entries: `name` (any port of ours) or `name:port`.
    pub hosts: Vec<String>,
    /// `--allowed-host '*'`: no Host check.
    pub any_host: bool,
    pub token: Option<String>,
}

impl Access {
    pub fn new(hosts: &[String], token: Option<String>) -> Result<Self> {
        let mut a = Access { token, ..Default::default() };
        if a.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            bail!("--token (or VLSM_TOKEN) must not be empty");
        }
        if let Some(t) = &a.token {
            if t.chars().any(|c| !c.is_ascii_graphic()) {
                bail!("--token (or VLSM_TOKEN) must be printable ASCII without spaces");
            }
        }
        for h in hosts {
            let h = h.trim().to_ascii_lowercase();
            if h == "*" {
                a.any_host = true;
            } else if h.is_empty() || h.contains(['/', ' ', '@']) {
                bail!("--allowed-host {h:?}: expected a host name or name:port");
            } else {
                a.hosts.push(h);
            }
        }
        Ok(a)
    }
}

pub struct Guard {
    pub state: Arc<AppState>,
    pub local: SocketAddr,
}

/// Splits `host[:port]` (`[v6]:port` for IPv6); `None` when malformed.
fn split_host(h: &str) -> Option<(String, Option<u16>)> {
    let h = h.trim().to_ascii_lowercase();
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let end = rest.find(']')?;
        let name = format!("[{}]", &rest[..end]);
        match &rest[end + 1..] {
            "" => (name, None),
            p => (name, Some(p.strip_prefix(':')?.parse().ok()?)),
        }
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n.to_string(), Some(p.parse().ok()?)),
            None => (h.clone(), None),
        }
    };
    if name.is_empty() {
        return None;
    }
    Some((name, port))
}

impl Guard {
    fn host_allowed(&self, host: &str) -> bool {
        let acc = &self.state.access;
        if acc.any_host {
            return true;
        }
        let Some((name, port)) = split_host(host) else { return false };
        let ours = self.local.port();
        let port_ok = match port {
            Some(p) => p == ours,
            None => ours == 80,
        };
        let bound = match self.local.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip.to_string()),
            std::net::IpAddr::V6(ip) if !ip.is_unspecified() => Some(format!("[{ip}]")),
            _ => None,
        };
        let builtin = ["localhost", "127.0.0.1", "[::1]"].contains(&name.as_str()) || bound.as_deref() == Some(&name);
        if port_ok && (builtin || acc.hosts.contains(&name)) {
            return true;
        }
        // An explicit `name:port` entry (e.g. a proxy's public port).
        let full = match port {
            Some(p) => format!("{name}:{p}"),
            None => name.clone(),
        };
        acc.hosts.contains(&full)
    }
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    ApiError(status, msg.into()).into_response()
}

/// The password of `Authorization: Basic base64(user:password)` (Label Studio's ML backend
/// settings send the token this way).
fn basic_password(v: &str) -> Option<String> {
    use base64::Engine;
    let b = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.split_once(':').map(|(_, p)| p.to_string())
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: see the module comment.
pub async fn check(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if uri_len > MAX_URI_BYTES {
        return refuse(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {uri_len} bytes; at most {MAX_URI_BYTES}"),
        );
    }
    let headers = req.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} header fields, {header_bytes} bytes; at most {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        );
    }
    let host = match headers.get(header::HOST).map(|h| h.to_str()) {
        Some(Ok(h)) => h.to_string(),
        Some(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "the Host header is not ASCII"),
        None => match req.uri().authority() {
            Some(a) => a.as_str().to_string(),
            None => return refuse(StatusCode::BAD_REQUEST, "the request has no Host header"),
        },
    };
    if let Some(a) = req.uri().authority() {
        if !a.as_str().eq_ignore_ascii_case(&host) {
            return refuse(StatusCode::BAD_REQUEST, "the request target's authority and the Host header differ");
        }
    }
    if !g.host_allowed(&host) {
        let shown: String = host.chars().take(100).collect();
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server does not answer to Host {shown:?}; use http://{}/ or start it with --allowed-host NAME",
                g.local
            ),
        );
    }
    if let Some(token) = &g.state.access.token {
        let path = req.uri().path();
        if path.starts_with("/api/")
            || path == "/api"
            || crate::monailabel::protected(path)
            || crate::labelstudio::protected(path)
        {
            let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let given = auth
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(|t| t.trim().to_string())
                .or_else(|| auth.and_then(basic_password));
            if !given.is_some_and(|t| same_bytes(t.as_bytes(), token.as_bytes())) {
                let mut r = refuse(
                    StatusCode::UNAUTHORIZED,
                    "this server needs an \"Authorization: Bearer TOKEN\" header (its --token)",
                );
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
    if changes_state {
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
            if !matches!(site.as_str(), "same-origin" | "none") {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!("refusing a {} request sent by another site (Sec-Fetch-Site: {site})", req.method()),
                );
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").trim();
            let own = format!("http://{host}");
            if !origin.eq_ignore_ascii_case(&own) {
                let shown: String = origin.chars().take(100).collect();
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!("refusing a {} request from origin {shown:?}; only {own} may send it", req.method()),
                );
            }
        }
    }
    next.run(req).await
}

/// Gives every error answer a `{"error": ...}` JSON body (keeping status and headers such as
/// `Allow`); `max_upload` names the body limit in 413 answers.
pub async fn json_errors(resp: Response, max_upload: usize) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().replace('\n', " ");
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body is larger than the limit of {max_upload} bytes")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        match parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()) {
            Some(a) if !a.is_empty() => format!("method not allowed on this route (allowed: {a})"),
            _ => "method not allowed on this route".to_string(),
        }
    } else if text.is_empty() {
        reason
    } else {
        text
    };
    let body = serde_json::to_vec(&serde_json::json!({ "error": msg })).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, Body::from(body))
}
