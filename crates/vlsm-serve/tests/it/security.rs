//! Hostile requests against a real server on a loopback port (issue #17: items 2, 4, 8, 20,
//! 21, 22): Host / Origin / token checks, header and body timeouts, the connection cap, the
//! bounded shutdown drain, the post-processing bound, JSON errors, option validation.

use crate::support as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, png_bytes, post_form, request, send, Form, Resp, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vlsm_serve::Options;

fn opts() -> Options {
    Options { model: Some(common::tiny_model()), ..Options::default() }
}

fn seg_form(img: &[u8], prompts: &[&str]) -> Form {
    let mut f = Form::new().file("image", "img.png", img);
    for p in prompts {
        f = f.text("prompt", p);
    }
    f
}

/// A request with extra header lines (each "Name: value").
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    extra: &[&str],
    ct: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for e in extra {
        head.push_str(e);
        head.push_str("\r\n");
    }
    if let Some(ct) = ct {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    send(addr, head, body).await.expect("request")
}

fn assert_json_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "status {status}: content type {ct:?}");
    let e = r.error();
    assert!(!e.is_empty() && !e.contains('\n'), "status {status}: error {e:?}");
}

#[tokio::test]
async fn foreign_host_is_refused_and_local_names_are_answered() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let port = s.addr.port();
    for host in
        [format!("rebind.example:{port}"), "rebind.example".into(), format!("127.0.0.1:{}", port + 1), "".into()]
    {
        let r = raw(s.addr, "GET", "/api/model", &host, &[], None, vec![]).await;
        assert!(r.status == 421 || r.status == 400, "Host {host:?}: {}", r.status);
        assert_json_error(&r, r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("tiny_complex"), "Host {host:?} learned the model: {body}");
    }
    // The page too: a rebinding page must not even load our script.
    assert_eq!(raw(s.addr, "GET", "/", &format!("evil.example:{port}"), &[], None, vec![]).await.status, 421);
    for host in
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("LOCALHOST:{port}"), format!("[::1]:{port}")]
    {
        let r = raw(s.addr, "GET", "/api/health", &host, &[], None, vec![]).await;
        assert_eq!(r.status, 200, "Host {host:?}");
    }
    // Absolute-form targets must agree with Host.
    let r = raw(
        s.addr,
        "GET",
        &format!("http://evil.example:{port}/api/health"),
        &format!("127.0.0.1:{port}"),
        &[],
        None,
        vec![],
    )
    .await;
    assert_json_error(&r, 400);
}

#[tokio::test]
async fn allowed_host_option_extends_the_list() {
    let o = Options { allowed_hosts: vec!["Box.LAN".into(), "proxy.example:443".into()], ..opts() };
    let s = Server::start(o, Duration::ZERO).await;
    let port = s.addr.port();
    assert_eq!(raw(s.addr, "GET", "/api/health", &format!("box.lan:{port}"), &[], None, vec![]).await.status, 200);
    assert_eq!(raw(s.addr, "GET", "/api/health", "proxy.example:443", &[], None, vec![]).await.status, 200);
    assert_eq!(raw(s.addr, "GET", "/api/health", "box.lan:1", &[], None, vec![]).await.status, 421);
    assert_eq!(raw(s.addr, "GET", "/api/health", &format!("other.lan:{port}"), &[], None, vec![]).await.status, 421);
    let any = Server::start(Options { allowed_hosts: vec!["*".into()], ..opts() }, Duration::ZERO).await;
    assert_eq!(raw(any.addr, "GET", "/api/health", "whatever.example", &[], None, vec![]).await.status, 200);
}

#[tokio::test]
async fn model_route_does_not_reveal_the_path() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let r = get(s.addr, "/api/model").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["dir"], "tiny_complex");
    let full = common::tiny_model().canonicalize().unwrap();
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains(full.parent().unwrap().to_str().unwrap()) && !body.contains("fixtures"), "{body}");
}

#[tokio::test]
async fn cross_site_writes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(Options { dataset: Some(tmp.path().to_path_buf()), ..opts() }, Duration::ZERO).await;
    let host = s.addr.to_string();
    let img = png_bytes(20, 20, 1);
    let save = || {
        Form::new().file("image", "a.png", &img).file("mask", "m.png", &png_bytes(20, 20, 2)).text("prompt", "polyp")
    };
    let cases: [&[&str]; 5] = [
        &["Origin: http://evil.example"],
        &["Origin: null"],
        &["Origin: http://localhost:1"],
        &["Sec-Fetch-Site: cross-site"],
        &["Sec-Fetch-Site: same-site"],
    ];
    for extra in cases {
        for path in ["/api/dataset/save", "/api/segment", "/api/train", "/anything"] {
            let (ct, body) = save().finish();
            let r = raw(s.addr, "POST", path, &host, extra, Some(&ct), body).await;
            assert_json_error(&r, 403);
            assert!(r.error().contains("refusing"), "{extra:?} {path}: {}", r.error());
        }
        for method in ["PUT", "DELETE", "PATCH"] {
            assert_eq!(raw(s.addr, method, "/api/dataset/save", &host, extra, None, vec![]).await.status, 403);
        }
    }
    let written: Vec<_> = walk(tmp.path());
    assert!(written.is_empty(), "a refused request wrote {written:?}");
    // The page's own requests pass.
    let own = format!("Origin: http://{host}");
    let (ct, body) = save().finish();
    let r =
        raw(s.addr, "POST", "/api/dataset/save", &host, &[&own, "Sec-Fetch-Site: same-origin"], Some(&ct), body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (ct, body) = seg_form(&img, &["polyp"]).finish();
    assert_eq!(raw(s.addr, "POST", "/api/segment", &host, &[&own], Some(&ct), body).await.status, 200);
    // Cross-site reads are not writes (and the browser hides the answer without CORS headers).
    assert_eq!(
        raw(s.addr, "GET", "/api/health", &host, &["Sec-Fetch-Site: cross-site"], None, vec![]).await.status,
        200
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn token_is_required_on_the_api() {
    let s = Server::start(Options { token: Some("s3cret-token".into()), ..opts() }, Duration::ZERO).await;
    let host = s.addr.to_string();
    for path in ["/api/health", "/api/model", "/api/openapi.json", "/api/train", "/api/nope"] {
        let r = raw(s.addr, "GET", path, &host, &[], None, vec![]).await;
        assert_json_error(&r, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = raw(s.addr, "GET", path, &host, &["Authorization: Bearer s3cret-tokeX"], None, vec![]).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let (ct, body) = seg_form(&png_bytes(20, 20, 3), &["x"]).finish();
    assert_eq!(raw(s.addr, "POST", "/api/segment", &host, &[], Some(&ct), body.clone()).await.status, 401);
    let ok = raw(s.addr, "POST", "/api/segment", &host, &["Authorization: Bearer s3cret-token"], Some(&ct), body).await;
    assert_eq!(ok.status, 200);
    let h = raw(s.addr, "GET", "/api/health", &host, &["Authorization: Bearer s3cret-token"], None, vec![]).await;
    assert_eq!(h.status, 200);
    // The page itself is not secret.
    assert_eq!(get(s.addr, "/").await.status, 200);
    // An empty token is refused at startup.
    let seg = vlsm::pipeline::Segmenter::load(&common::tiny_model()).unwrap();
    assert!(vlsm_serve::AppState::new(&Options { token: Some(" ".into()), ..opts() }, seg).is_err());
}

#[tokio::test]
async fn every_error_is_json() {
    let s = Server::start(Options { max_upload_mb: 1, ..opts() }, Duration::ZERO).await;
    let host = s.addr.to_string();
    // 405, with Allow kept.
    let r = get(s.addr, "/api/segment").await;
    assert_json_error(&r, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")), "{:?}", r.headers);
    // 404.
    assert_json_error(&get(s.addr, "/nope").await, 404);
    assert_json_error(&request(s.addr, "POST", "/api/nope", None, vec![]).await.unwrap(), 404);
    // 413 refused from the Content-Length alone.
    let (ct, body) = seg_form(&vec![7u8; 1_500_000], &["x"]).finish();
    let r = request(s.addr, "POST", "/api/segment", Some(&ct), body).await.unwrap();
    assert_json_error(&r, 413);
    assert!(r.error().contains("larger than the limit of 1048576 bytes"), "{}", r.error());
    // 414 and 431 (below the HTTP layer's own limits, whose answers have no body).
    let long = format!("/api/health?{}", "a".repeat(9000));
    assert_json_error(&get(s.addr, &long).await, 414);
    let many: Vec<String> = (0..80).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    assert_json_error(&raw(s.addr, "GET", "/api/health", &host, &many, None, vec![]).await, 431);
    let big = format!("X-Big: {}", "b".repeat(20_000));
    assert_json_error(&raw(s.addr, "GET", "/api/health", &host, &[&big], None, vec![]).await, 431);
    // 400: no Host, and a body that is not multipart.
    let r = send(s.addr, "GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n".into(), vec![]).await.unwrap();
    assert_json_error(&r, 400);
    let r = request(s.addr, "POST", "/api/segment", Some("text/plain"), b"hello".to_vec()).await.unwrap();
    assert_json_error(&r, 400);
}

/// Heads the HTTP parser itself refuses (#17 item 20): hyper answers them before any route, with
/// a bare status; they now carry a one-line JSON error too, and the connection closes.
#[tokio::test]
async fn http_parser_errors_are_json() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let host = s.addr.to_string();
    let many: String = (0..300).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let cases: Vec<(String, u16)> = vec![
        ("\x01\x02 / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/9.9\r\n\r\n".into(), 400),
        (format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\nBad Header\r\n\r\n"), 400),
        (format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\nX-Ok: a\x01b\r\n\r\n"), 400),
        (format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\n{many}\r\n"), 431),
        ("GARBAGE\r\n\r\n".into(), 400),
    ];
    for (head, status) in cases {
        let r = send(s.addr, head.clone(), vec![]).await.unwrap_or_else(|e| panic!("{head:?}: {e}"));
        assert_json_error(&r, status);
        assert!(r.error().contains("HTTP"), "{head:?}: {}", r.error());
        assert_eq!(r.header("connection"), Some("close"), "{head:?}");
    }
    // A good request first on a kept-alive connection, then a malformed one: both answered.
    let head = format!(
        "GET /api/health HTTP/1.1\r\nHost: {host}\r\n\r\nGET /api/health HTTP/1.1\r\nHost: {host}\r\nBad Header\r\n\r\n"
    );
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let (buf, _) = read_until_closed(&mut c, Duration::from_secs(10)).await.expect("closed");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("HTTP/1.1 400"), "{text}");
    assert!(text.ends_with("\"}"), "{text}");
    // Answers of the server's own with no body stay as they are (a 200 HEAD, say).
    let r = raw(s.addr, "HEAD", "/api/health", &host, &[], None, vec![]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn invalid_utf8_prompt_is_400() {
    let s = Server::start(opts(), Duration::ZERO).await;
    for bytes in [&b"\xff\xfe p\x00o\x00l\x00y\x00p\x00"[..], b"\xff\xfe polyp", b"poly\xc3"] {
        let f = Form::new().file("image", "a.png", &png_bytes(20, 20, 4)).file("prompt", "p.txt", bytes);
        let r = post_form(s.addr, "/api/segment", f).await;
        assert_json_error(&r, 400);
        assert!(r.error().contains("not valid UTF-8"), "{}", r.error());
    }
    let f = Form::new().file("image", "a.png", &png_bytes(20, 20, 4)).file("prompt", "p.txt", "polype à".as_bytes());
    assert_eq!(post_form(s.addr, "/api/segment", f).await.status, 200);
}

#[tokio::test]
async fn post_processing_is_bounded_by_workers() {
    let seg = vlsm::pipeline::Segmenter::load(&common::tiny_model()).unwrap();
    let mut state = vlsm_serve::AppState::new(&Options { workers: 1, queue: 16, ..opts() }, seg).unwrap();
    state.post_delay = Duration::from_millis(300);
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vlsm_serve::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let mut jobs = Vec::new();
    for seed in 0..4 {
        jobs.push(tokio::spawn(async move {
            post_form(addr, "/api/segment", seg_form(&png_bytes(64, 48, 30 + seed), &["a", "b", "c"])).await
        }));
    }
    for j in jobs {
        assert_eq!(j.await.unwrap().status, 200);
    }
    // Without the bound the model (fast) is free again while the first request post-processes.
    assert_eq!(state.gate.post_processing_peak(), 1);
    assert_eq!(state.gate.post_processing(), 0);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    r.ok().map(|_| (buf, t.elapsed()))
}

#[tokio::test]
async fn partial_head_is_closed_after_the_header_timeout() {
    let s = Server::start(Options { header_timeout_secs: 1, ..opts() }, Duration::ZERO).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(format!("GET /api/health HTTP/1.1\r\nHost: {}\r\nX-Slow: ", s.addr).as_bytes()).await.unwrap();
    let (_, took) = read_until_closed(&mut c, Duration::from_secs(5)).await.expect("partial head still open after 5 s");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.state.conns.open(), 0);
    assert_eq!(get(s.addr, "/api/health").await.status, 200);
}

#[tokio::test]
async fn slow_body_gets_408() {
    let s = Server::start(Options { body_timeout_secs: 1, ..opts() }, Duration::ZERO).await;
    let (ct, body) = seg_form(&png_bytes(20, 20, 5), &["x"]).finish();
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/segment HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&body[..body.len() / 2]).await.unwrap();
    let t = Instant::now();
    let (resp, _) = read_until_closed(&mut c, Duration::from_secs(5)).await.expect("slow body still open after 5 s");
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\"") && text.contains("timed out"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn connection_cap_holds_and_requests_are_still_answered() {
    let s = Server::start(Options { max_connections: 3, header_timeout_secs: 2, ..opts() }, Duration::ZERO).await;
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.state.conns.open(), 3, "the cap is 3");
    let t = Instant::now();
    let r = get(s.addr, "/api/health").await;
    assert_eq!(r.status, 200);
    // Answered once the header timeout freed slots, not before.
    assert!(t.elapsed() >= Duration::from_millis(1000), "answered after {:?} beyond the cap", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(s.state.conns.peak() <= 3, "peak {}", s.state.conns.peak());
    drop(stalled);
}

#[cfg(unix)]
#[test]
fn sigterm_with_partial_head_and_body_exits_promptly() {
    use std::io::{Read, Write};
    use std::process::Command;
    let (mut child, addr) = crate::sigterm::spawn_binary(&["--drain-secs", "3"]);
    let mut head = std::net::TcpStream::connect(&addr).unwrap();
    write!(head, "GET /api/health HTTP/1.1\r\nHost: {addr}\r\nX-Half").unwrap();
    let (ct, body) = seg_form(&png_bytes(40, 30, 1), &["x"]).finish();
    let mut partial = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        partial,
        "POST /api/segment HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    partial.write_all(&body[..body.len() / 3]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    // The partial head is closed at once, not at the drain deadline.
    head.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let _ = head.read_to_end(&mut sink);
    assert!(t.elapsed() < Duration::from_millis(1500), "partial head closed after {:?}", t.elapsed());
    // The partial body (it never completes; the body timeout is 30 s) ends at the 3 s drain.
    let status = crate::sigterm::wait_exit(&mut child, t + Duration::from_secs(8));
    assert!(status.success(), "exit status {status}");
    drop(partial);
}

#[test]
fn meaningless_option_values_are_refused() {
    for (flag, val) in [
        ("--max-upload-mb", "0"),
        ("--max-pixels", "0"),
        ("--timeout-secs", "0"),
        ("--workers", "0"),
        ("--cache", "0"),
        ("--max-connections", "0"),
        ("--header-timeout-secs", "0"),
        ("--body-timeout-secs", "0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vlsm-serve"))
            .args(["--addr", "127.0.0.1:0", flag, val])
            .env_remove("VLSM_TOKEN")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {val} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && (err.contains("1..") || err.contains("at least 1")), "{flag} {val}: {err}");
        assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    }
    let seg = || vlsm::pipeline::Segmenter::load(&common::tiny_model()).unwrap();
    for o in [
        Options { timeout_secs: 0, ..opts() },
        Options { max_upload_mb: 0, ..opts() },
        Options { max_pixels: 0, ..opts() },
        Options { workers: 0, ..opts() },
        Options { max_connections: 0, ..opts() },
    ] {
        assert!(vlsm_serve::AppState::new(&o, seg()).is_err(), "{o:?}");
    }
}
