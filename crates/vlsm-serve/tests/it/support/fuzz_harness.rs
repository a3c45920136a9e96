//! The body of the cargo-fuzz target `fuzz/fuzz_targets/multipart.rs` (which includes this file
//! by `#[path]`), also run on every CI build by `tests/it/fuzz_multipart.rs`: the bytes as the
//! multipart body of `POST /api/segment`, through the whole router (guard, body limit, form
//! parsing, decoding, the model) in process. The answer must be 200 or a 4xx with a JSON body.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use tower_service::Service;

pub const BOUNDARY: &str = "vlsmtestboundary7MA4YWxkTrZu0gW";

fn tiny_model() -> std::path::PathBuf {
    let mut d = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !d.join("tests/fixtures/clipseg/tiny_complex").is_dir() {
        assert!(d.pop(), "no tests/fixtures above {}", env!("CARGO_MANIFEST_DIR"));
    }
    d.join("tests/fixtures/clipseg/tiny_complex")
}

pub fn multipart(data: &[u8]) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    let (rt, app) = APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let opts = vlsm_serve::Options { model: Some(tiny_model()), max_upload_mb: 1, ..Default::default() };
        let seg = vlsm::pipeline::Segmenter::load(&tiny_model()).expect("tiny model");
        let state = Arc::new(vlsm_serve::AppState::new(&opts, seg).expect("state"));
        let app = rt.block_on(async { vlsm_serve::router(state, "127.0.0.1:8080".parse().unwrap()) });
        (rt, app)
    });
    let req = Request::builder()
        .method("POST")
        .uri("/api/segment")
        .header("host", "127.0.0.1:8080")
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .header("content-length", data.len())
        .body(Body::from(data.to_vec()))
        .expect("request");
    let resp = rt.block_on(app.clone().call(req)).expect("the router is infallible");
    let status = resp.status();
    assert!(status.is_success() || status.is_client_error(), "status {status}");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "status {status}, content type {ct:?}");
}
