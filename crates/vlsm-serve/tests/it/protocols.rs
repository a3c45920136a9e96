//! The MONAI Label and Label Studio ML backend routes (#20). The Python suite
//! (bindings/python/tests/test_protocols.py) drives them with MONAI Label's own client and
//! decodes the brush RLE with label-studio-sdk; these tests check the same answers from Rust.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use vlsm_serve::Options;

use crate::support::{decode_png, get, png_bytes, post_form, repo_root, send, tiny_model, Form, Resp, Server};

fn opts() -> Options {
    Options { model: Some(tiny_model()), ..Options::default() }
}

/// A request with extra header lines.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    send(addr, head, body).await.expect("request")
}

async fn post_json(addr: std::net::SocketAddr, path: &str, body: &serde_json::Value) -> Resp {
    let b = body.to_string().into_bytes();
    request(addr, "POST", path, &[("content-type", "application/json")], b).await
}

#[tokio::test]
async fn monai_label_info_and_infer() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let info = get(s.addr, "/info/").await.json();
    assert_eq!(info["name"], "vlsm");
    assert_eq!(info["models"]["vlsm"]["type"], "segmentation");
    assert_eq!(info["models"]["vlsm"]["dimension"], 3);
    assert_eq!(info["models"]["vlsm_2d"]["dimension"], 2);
    let o = get(s.addr, "/api/openapi.json").await.json();
    for p in [
        "/info/",
        "/infer/{model}",
        "/datastore/",
        "/session/",
        "/session/{id}",
        "/health",
        "/setup",
        "/predict",
        "/train",
    ] {
        assert!(o["paths"][p].is_object(), "{p} missing from the OpenAPI document");
    }

    let nii = std::fs::read(repo_root().join("tests/fixtures/nifti/geom_oblique.nii.gz")).unwrap();
    let params = json!({"prompts": ["organ"]}).to_string();
    let form = || Form::new().text("params", &params).file("file", "scan.nii.gz", &nii);
    // ?output=image: the label file alone, the same volume /api/segment gives.
    let r = post_form(s.addr, "/infer/vlsm?output=image", form()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("content-disposition").unwrap().contains(".nii.gz"));
    let seg = Form::new().file("image", "scan.nii.gz", &nii).text("prompt", "organ").text("return", "nifti");
    let want = post_form(s.addr, "/api/segment", seg).await;
    assert_eq!(r.body, want.body);
    // Default: multipart with the params JSON and the file.
    let r = post_form(s.addr, "/infer/vlsm", form()).await;
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap().to_string();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").expect(&ct);
    let body = r.body.clone();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with(&format!("--{boundary}\r\n")) && text.ends_with(&format!("--{boundary}--\r\n")));
    assert!(text.contains("\"label_names\":{\"organ\":1}"), "{}", &text[..300.min(text.len())]);
    let at = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let file_head = body.windows(9).position(|w| w == b"filename=").unwrap();
    assert!(file_head > at);
    let start = file_head + body[file_head..].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let end = body.len() - format!("\r\n--{boundary}--\r\n").len();
    assert_eq!(&body[start..end], &want.body[..]);
    // ?output=json
    let j = post_form(s.addr, "/infer/vlsm?output=json", form()).await.json();
    assert_eq!(j["label_names"]["organ"], 1);
    assert_eq!(j["shape"], json!([12, 10, 6]));
    // 2-D: a PNG label.
    let png = png_bytes(40, 30, 3);
    let f = Form::new().text("params", r#"{"prompt": "organ", "threshold": 0.0}"#).file("file", "a.png", &png);
    let r = post_form(s.addr, "/infer/vlsm_2d?output=image", f).await;
    assert_eq!(r.status, 200);
    let lab = image::load_from_memory(&r.body).unwrap().to_luma8();
    assert_eq!(lab.dimensions(), (40, 30));
    assert!(lab.pixels().all(|p| p[0] == 1), "threshold 0 labels everything");
    // Errors: one line of JSON.
    let cases = [
        ("/infer/nope", Form::new().text("params", &params).file("file", "a.png", &png), 404, "no model"),
        ("/infer/vlsm", Form::new().text("params", &params), 400, "\"file\""),
        ("/infer/vlsm", Form::new().text("params", "{}").file("file", "a.png", &png), 400, "prompt"),
        ("/infer/vlsm", Form::new().text("params", "[").file("file", "a.png", &png), 400, "JSON"),
        ("/infer/vlsm?output=dicom_seg", form(), 400, "dicom_seg"),
    ];
    for (path, f, status, needle) in cases {
        let r = post_form(s.addr, path, f).await;
        assert_eq!(r.status, status, "{path}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.error().contains(needle), "{path}: {}", r.error());
    }
}

#[tokio::test]
async fn label_studio_backend_predicts_brush_labels() {
    let s = Server::start(opts(), Duration::ZERO).await;
    assert_eq!(get(s.addr, "/health").await.json()["status"], "UP");
    let setup = post_json(s.addr, "/setup", &json!({"project": "1.1", "schema": "<View/>"})).await;
    assert!(setup.json()["model_version"].as_str().unwrap().starts_with("vlsm-"));
    let png = png_bytes(50, 40, 7);
    let uri = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    let config = r#"<View><Image name="img" value="$image"/>
      <BrushLabels name="tag" toName="img"><Label value="organ"/><Label value="a tumour"/></BrushLabels></View>"#;
    let req = json!({"tasks": [{"id": 7, "data": {"image": uri}}], "label_config": config, "project": "1.1"});
    let r = post_json(s.addr, "/predict", &req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let results = j["results"][0]["result"].as_array().unwrap().clone();
    // One result per prompt with a non-empty mask, each equal to /api/segment's mask.
    let f = Form::new().file("image", "task.png", &png).text("prompt", "organ").text("prompt", "a tumour");
    let seg = post_form(s.addr, "/api/segment", f).await.json();
    let mut seen = 0;
    for k in 0..2 {
        let want = decode_png(seg["results"][k]["mask_png"].as_str().unwrap()).to_luma8();
        let label = seg["results"][k]["prompt"].as_str().unwrap();
        let got = results.iter().find(|r| r["value"]["brushlabels"][0] == label);
        let Some(got) = got else {
            assert!(want.pixels().all(|p| p[0] == 0), "{label}: no result for a non-empty mask");
            continue;
        };
        seen += 1;
        assert_eq!(
            (got["type"].as_str(), got["from_name"].as_str(), got["to_name"].as_str()),
            (Some("brushlabels"), Some("tag"), Some("img"))
        );
        assert_eq!((got["original_width"].as_u64(), got["original_height"].as_u64()), (Some(50), Some(40)));
        let rle: Vec<u8> = got["value"]["rle"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        let rgba = vlsm_serve::testkit::decode_ls_rle(&rle);
        let alpha: Vec<u8> = rgba.chunks(4).map(|c| c[3]).collect();
        assert_eq!(alpha, want.as_raw().clone(), "{label}");
    }
    assert!(seen > 0, "the tiny model gave empty masks for both prompts: the test would test nothing");
    // A prompt in the task's data wins over the config's labels.
    let req = json!({"tasks": [{"id": 1, "data": {"image": uri, "prompt": "organ"}}], "label_config": config});
    let j = post_json(s.addr, "/predict", &req).await.json();
    for r in j["results"][0]["result"].as_array().unwrap() {
        assert_eq!(r["value"]["brushlabels"], json!(["organ"]));
    }
    // Errors.
    let no_brush = json!({"tasks": [{"data": {"image": uri}}], "label_config": "<View/>"});
    let r = post_json(s.addr, "/predict", &no_brush).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("BrushLabels"), "{}", r.error());
    let url = json!({"tasks": [{"id": 3, "data": {"image": "/data/upload/1/a.png"}}], "label_config": config});
    let r = post_json(s.addr, "/predict", &url).await;
    assert_eq!(r.status, 422);
    assert!(r.error().contains("task 3") && r.error().contains("data:"), "{}", r.error());
    // The fine-tune it starts needs --train (tests/it/train.rs starts one).
    let r = post_json(s.addr, "/train", &json!({"action": "START_TRAINING"})).await;
    assert_eq!(r.status, 403);
    assert!(r.error().contains("--train"), "{}", r.error());
}

#[tokio::test]
async fn protocol_routes_need_the_token() {
    let s = Server::start(Options { token: Some("s3cret".into()), ..opts() }, Duration::ZERO).await;
    for path in ["/info/", "/health", "/versions"] {
        assert_eq!(get(s.addr, path).await.status, 401, "{path}");
    }
    let bearer = request(s.addr, "GET", "/info/", &[("authorization", "Bearer s3cret")], Vec::new()).await;
    assert_eq!(bearer.status, 200);
    let basic = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
    let r = request(s.addr, "GET", "/health", &[("authorization", &format!("Basic {basic}"))], Vec::new()).await;
    assert_eq!(r.status, 200);
    let wrong = base64::engine::general_purpose::STANDARD.encode("user:nope");
    let r = request(s.addr, "GET", "/health", &[("authorization", &format!("Basic {wrong}"))], Vec::new()).await;
    assert_eq!(r.status, 401);
    let r = request(s.addr, "POST", "/predict", &[("content-type", "application/json")], b"{}".to_vec()).await;
    assert_eq!(r.status, 401);
}

/// A stand-in for Label Studio's file server: `GET /data/upload/1/a.png` with `Authorization:
/// Token k` answers `png`, anything else 401/404. Returns its address.
async fn fake_label_studio(png: Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let png = png.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let (status, body) = if !head.starts_with("get /data/upload/1/a.png ") {
                    ("404 Not Found", b"no".to_vec())
                } else if !head.contains("\r\nauthorization: token k\r\n") {
                    ("401 Unauthorized", b"no".to_vec())
                } else {
                    ("200 OK", png)
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = c.write_all(head.as_bytes()).await;
                let _ = c.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn label_studio_images_are_fetched_from_label_studio_only() {
    let png = png_bytes(50, 40, 7);
    let ls = fake_label_studio(png.clone()).await;
    let config = r#"<View><Image name="img" value="$image"/>
      <BrushLabels name="tag" toName="img"><Label value="organ"/></BrushLabels></View>"#;
    let task = |image: &str| json!({"tasks": [{"id": 5, "data": {"image": image}}], "label_config": config});
    let uri = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    let s = Server::start(
        Options { label_studio_url: Some(format!("http://{ls}/")), label_studio_api_key: Some("k".into()), ..opts() },
        Duration::ZERO,
    )
    .await;
    let inline = post_json(s.addr, "/predict", &task(&uri)).await.json();
    assert!(!inline["results"][0]["result"].as_array().unwrap().is_empty(), "an empty mask tests nothing");
    for src in ["/data/upload/1/a.png".to_string(), format!("http://{ls}/data/upload/1/a.png")] {
        let r = post_json(s.addr, "/predict", &task(&src)).await;
        assert_eq!(r.status, 200, "{src}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["results"], inline["results"], "{src}");
    }
    for (src, needle) in [
        ("/data/upload/1/missing.png", "404"),
        ("http://127.0.0.2:1/data/upload/1/a.png", "not under --label-studio-url"),
        ("//evil.example/a.png", "not under"),
    ] {
        let r = post_json(s.addr, "/predict", &task(src)).await;
        assert_eq!(r.status, 422, "{src}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.error().contains("task 5") && r.error().contains(needle), "{src}: {}", r.error());
    }
    // A wrong key: Label Studio's 401 comes back as a one-line 422.
    let s2 = Server::start(
        Options { label_studio_url: Some(format!("http://{ls}")), label_studio_api_key: Some("x".into()), ..opts() },
        Duration::ZERO,
    )
    .await;
    let r = post_json(s2.addr, "/predict", &task("/data/upload/1/a.png")).await;
    assert_eq!(r.status, 422);
    assert!(r.error().contains("401"), "{}", r.error());
    // Not configured: nothing is fetched.
    let s3 = Server::start(opts(), Duration::ZERO).await;
    let r = post_json(s3.addr, "/predict", &task("/data/upload/1/a.png")).await;
    assert_eq!(r.status, 422);
    assert!(r.error().contains("--label-studio-url (not set)"), "{}", r.error());
    assert!(vlsm_serve::AppState::new(&Options { label_studio_url: Some("ftp://x".into()), ..opts() }, {
        vlsm::pipeline::Segmenter::load(&tiny_model()).unwrap()
    })
    .is_err());
}
