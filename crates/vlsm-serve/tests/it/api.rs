//! API tests against a real server on a loopback port, with the tiny random CLIPSeg.

use crate::support as common;

use std::time::{Duration, Instant};

use common::{decode_png, get, png_bytes, post_form, request, send, Form, Server};
use vlsm_serve::Options;

fn opts() -> Options {
    Options { model: Some(common::tiny_model()), ..Options::default() }
}

async fn start() -> Server {
    Server::start(opts(), Duration::ZERO).await
}

fn seg_form(img: &[u8], prompts: &[&str]) -> Form {
    let mut f = Form::new().file("image", "img.png", img);
    for p in prompts {
        f = f.text("prompt", p);
    }
    f
}

#[tokio::test]
async fn health_model_openapi_and_page() {
    let s = start().await;
    let h = get(s.addr, "/api/health").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    assert_eq!(h.json()["cache"]["hits"], 0);
    let m = get(s.addr, "/api/model").await.json();
    assert_eq!(m["kind"], "clipseg");
    assert_eq!(m["dataset_enabled"], false);
    assert!(m["default_threshold"].as_f64().is_some());
    let o = get(s.addr, "/api/openapi.json").await.json();
    assert!(o["openapi"].as_str().unwrap().starts_with("3."));
    for p in ["/api/segment", "/api/health", "/api/model", "/api/dataset/save"] {
        assert!(o["paths"][p].is_object(), "{p} missing from the OpenAPI document");
    }
    let page = get(s.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").is_some());
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("<canvas") && html.contains("/app.js"));
    assert!(!html.contains("http://") && !html.contains("https://"), "no external assets");
    assert_eq!(get(s.addr, "/app.js").await.status, 200);
    assert_eq!(get(s.addr, "/style.css").await.status, 200);
    let nf = get(s.addr, "/nope").await;
    assert_eq!(nf.status, 404);
    assert!(!nf.error().is_empty());
}

#[tokio::test]
async fn segment_returns_masks_rle_and_probabilities() {
    let s = start().await;
    let img = png_bytes(75, 50, 1);
    let r = post_form(s.addr, "/api/segment", seg_form(&img, &["polyp", "a tumour"]).text("return_image", "1")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-cache"), Some("miss"));
    let j = r.json();
    assert_eq!((j["width"].as_u64(), j["height"].as_u64()), (Some(75), Some(50)));
    assert_eq!(decode_png(j["image_png"].as_str().unwrap()).to_rgb8().dimensions(), (75, 50));
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["prompt"], "a tumour");
    for res in results {
        let mask = decode_png(res["mask_png"].as_str().unwrap()).to_luma8();
        let probs = decode_png(res["probs_png"].as_str().unwrap()).to_luma8();
        assert_eq!(mask.dimensions(), (75, 50));
        assert_eq!(probs.dimensions(), (75, 50));
        assert!(mask.pixels().all(|p| p[0] == 0 || p[0] == 255));
        let area = mask.pixels().filter(|p| p[0] == 255).count() as u64;
        assert_eq!(res["area"].as_u64(), Some(area));
        let presence = res["presence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&presence), "{res}");
        // No presence head: present is "the largest probability exceeds the threshold", and an
        // absent target's mask is empty.
        assert_eq!(res["present"].as_bool(), Some(presence > 0.5), "{res}");
        if res["present"] == false {
            assert_eq!(area, 0);
        }
        let counts: Vec<u64> = res["rle"]["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(counts.iter().sum::<u64>(), 75 * 50);
        assert_eq!(counts.iter().skip(1).step_by(2).sum::<u64>(), area);
        assert_eq!(res["rle"]["size"], serde_json::json!([50, 75]));
    }
}

#[tokio::test]
async fn threshold_is_applied() {
    let s = start().await;
    let img = png_bytes(40, 30, 2);
    let all = post_form(s.addr, "/api/segment", seg_form(&img, &["x"]).text("threshold", "0")).await.json();
    assert_eq!(all["results"][0]["area"], 1200);
    let none = post_form(s.addr, "/api/segment", seg_form(&img, &["x"]).text("threshold", "1")).await.json();
    assert_eq!(none["results"][0]["area"], 0);
    assert_eq!(none["threshold"], 1.0);
}

#[tokio::test]
async fn second_prompt_on_the_same_image_hits_the_cache() {
    let s = start().await;
    let img = png_bytes(64, 64, 3);
    let a = post_form(s.addr, "/api/segment", seg_form(&img, &["liver"])).await;
    assert_eq!(a.header("x-cache"), Some("miss"));
    let b = post_form(s.addr, "/api/segment", seg_form(&img, &["kidney"])).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.header("x-cache"), Some("hit"));
    assert_eq!(b.json()["cache"], "hit");
    assert_eq!(b.json()["timing_ms"]["encode"].as_f64().map(|t| t < 5.0), Some(true));
    // Same prompt and image twice gives the same mask, from the cache or not.
    let c = post_form(s.addr, "/api/segment", seg_form(&img, &["liver"])).await.json();
    assert_eq!(c["results"][0]["mask_png"], a.json()["results"][0]["mask_png"]);
    let other = post_form(s.addr, "/api/segment", seg_form(&png_bytes(64, 64, 4), &["liver"])).await;
    assert_eq!(other.header("x-cache"), Some("miss"));
    let h = get(s.addr, "/api/health").await.json();
    assert_eq!((h["cache"]["hits"].as_u64(), h["cache"]["misses"].as_u64()), (Some(2), Some(2)));
    assert_eq!(h["cache"]["entries"], 2);
}

#[tokio::test]
async fn cache_is_bounded() {
    let s = Server::start(Options { cache: 2, ..opts() }, Duration::ZERO).await;
    for seed in 10..14 {
        let r = post_form(s.addr, "/api/segment", seg_form(&png_bytes(16, 16, seed), &["x"])).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(get(s.addr, "/api/health").await.json()["cache"]["entries"], 2);
    // The oldest was evicted, the newest is still there.
    let old = post_form(s.addr, "/api/segment", seg_form(&png_bytes(16, 16, 10), &["x"])).await;
    assert_eq!(old.header("x-cache"), Some("miss"));
    let new = post_form(s.addr, "/api/segment", seg_form(&png_bytes(16, 16, 13), &["x"])).await;
    assert_eq!(new.header("x-cache"), Some("hit"));
}

#[tokio::test]
async fn dicom_and_nifti_uploads() {
    let s = start().await;
    let io = common::repo_root().join("tests/fixtures/io");
    for name in ["ct_explicit.dcm", "vol.nii.gz"] {
        let bytes = std::fs::read(io.join(name)).unwrap();
        let f = Form::new().file("image", name, &bytes).text("prompt", "organ").text("return_image", "1");
        let r = post_form(s.addr, "/api/segment", f).await;
        assert_eq!(r.status, 200, "{name}: {}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        let im = decode_png(j["image_png"].as_str().unwrap());
        assert_eq!(
            (im.width() as u64, im.height() as u64),
            (j["width"].as_u64().unwrap(), j["height"].as_u64().unwrap())
        );
    }
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx() {
    let s = start().await;
    let img = png_bytes(20, 20, 5);
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        ("missing image", Form::new().text("prompt", "x"), 400, "missing the image"),
        ("no prompt", Form::new().file("image", "a.png", &img), 400, "prompt"),
        ("not an image", seg_form(b"hello, I am text", &["x"]), 422, "cannot read image"),
        ("truncated PNG", seg_form(&img[..img.len() / 2], &["x"]), 422, "cannot read image"),
        ("empty image", seg_form(b"", &["x"]), 400, "empty"),
        ("bad threshold", seg_form(&img, &["x"]).text("threshold", "abc"), 400, "threshold"),
        ("threshold out of range", seg_form(&img, &["x"]).text("threshold", "1.5"), 400, "threshold"),
        ("NaN threshold", seg_form(&img, &["x"]).text("threshold", "NaN"), 400, "threshold"),
        ("unknown field", seg_form(&img, &["x"]).text("colour", "red"), 400, "unknown form field"),
        ("bad slice", seg_form(&img, &["x"]).text("slice", "-1"), 400, "slice"),
        ("too long prompt", seg_form(&img, &[&"a".repeat(600)]), 400, "characters"),
        ("too many prompts", seg_form(&img, &["x"; 17]), 400, "at most"),
    ];
    for (what, form, status, needle) in cases {
        let r = post_form(s.addr, "/api/segment", form).await;
        assert_eq!(r.status, status, "{what}: {}", String::from_utf8_lossy(&r.body));
        let e = r.error();
        assert!(e.contains(needle), "{what}: {e}");
        assert!(!e.contains('\n') && !e.contains("/tmp/"), "{what}: {e}");
    }
    // Bodies that are not well-formed multipart at all.
    let raw: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("garbage boundary", Some("multipart/form-data; boundary=XYZ"), b"this is not multipart at all"),
        ("no boundary", Some("multipart/form-data"), b"--x\r\n"),
        ("json body", Some("application/json"), b"{\"prompt\":\"x\"}"),
        ("no content type", None, b"abc"),
        (
            "unterminated part",
            Some("multipart/form-data; boundary=b"),
            b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nliver",
        ),
    ];
    for (what, ct, body) in raw {
        let r = request(s.addr, "POST", "/api/segment", ct, body.to_vec()).await.unwrap();
        assert_eq!(r.status, 400, "{what}: {}", String::from_utf8_lossy(&r.body));
        assert!(!r.error().is_empty(), "{what}");
    }
    // The server is still healthy.
    assert_eq!(get(s.addr, "/api/health").await.status, 200);
}

#[tokio::test]
async fn upload_over_the_body_limit_is_413() {
    let s = Server::start(Options { max_upload_mb: 1, ..opts() }, Duration::ZERO).await;
    let big = vec![7u8; 1_500_000];
    // With a Content-Length: refused before the body is read.
    let (ct, body) = seg_form(&big, &["x"]).finish();
    let r = request(s.addr, "POST", "/api/segment", Some(&ct), body.clone()).await.unwrap();
    assert_eq!(r.status, 413);
    // Chunked, so the size is only known while streaming.
    let mut chunked = Vec::new();
    for c in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /api/segment HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
    , s.addr);
    let r = send(s.addr, head, chunked).await.unwrap();
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("larger than the limit"), "{}", r.error());
}

#[tokio::test]
async fn image_over_the_pixel_limit_is_413() {
    let s = Server::start(Options { max_pixels: 1000, ..opts() }, Duration::ZERO).await;
    let r = post_form(s.addr, "/api/segment", seg_form(&png_bytes(75, 50, 6), &["x"])).await;
    assert_eq!(r.status, 413);
    assert!(r.error().contains("75x50 = 3750 pixels") && r.error().contains("1000"), "{}", r.error());
    let ok = post_form(s.addr, "/api/segment", seg_form(&png_bytes(30, 30, 6), &["x"])).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn slow_model_gives_504() {
    let s = Server::start(Options { timeout_secs: 1, ..opts() }, Duration::from_millis(2500)).await;
    let t = Instant::now();
    let r = post_form(s.addr, "/api/segment", seg_form(&png_bytes(20, 20, 7), &["x"])).await;
    assert_eq!(r.status, 504);
    assert!(r.error().contains("limit of 1 s"), "{}", r.error());
    assert!(t.elapsed() < Duration::from_millis(2300), "answered after {:?}", t.elapsed());
}

#[tokio::test]
async fn full_queue_gives_503() {
    // One running, one waiting; the third is refused at once.
    let s = Server::start(Options { workers: 1, queue: 1, ..opts() }, Duration::from_millis(1500)).await;
    let addr = s.addr;
    let fire = |seed| {
        tokio::spawn(async move { post_form(addr, "/api/segment", seg_form(&png_bytes(20, 20, seed), &["x"])).await })
    };
    let a = fire(20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = fire(21);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let h = get(addr, "/api/health").await.json();
    assert_eq!((h["queue"]["running"].as_u64(), h["queue"]["waiting"].as_u64()), (Some(1), Some(1)));
    let t = Instant::now();
    let c = post_form(addr, "/api/segment", seg_form(&png_bytes(20, 20, 22), &["x"])).await;
    assert_eq!(c.status, 503);
    assert!(c.error().contains("queue is full"), "{}", c.error());
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(b.await.unwrap().status, 200);
    let h = get(addr, "/api/health").await.json();
    assert_eq!((h["queue"]["running"].as_u64(), h["queue"]["waiting"].as_u64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = Server::start(opts(), Duration::from_millis(1000)).await;
    let addr = s.addr;
    let req =
        tokio::spawn(async move { post_form(addr, "/api/segment", seg_form(&png_bytes(20, 20, 8), &["x"])).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop();
    let r = req.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request was cut off");
    tokio::time::timeout(Duration::from_secs(5), &mut s.task).await.expect("server stopped").unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

#[test]
fn non_loopback_addresses_need_allow_remote() {
    assert!(vlsm_serve::resolve_addr("127.0.0.1:0", false).is_ok());
    assert!(vlsm_serve::resolve_addr("[::1]:0", false).is_ok());
    assert!(vlsm_serve::resolve_addr("localhost:0", false).is_ok());
    let e = vlsm_serve::resolve_addr("0.0.0.0:8080", false).unwrap_err().to_string();
    assert!(e.contains("--allow-remote"), "{e}");
    assert!(vlsm_serve::resolve_addr("0.0.0.0:8080", true).is_ok());
    assert!(vlsm_serve::resolve_addr("not an address", false).is_err());
}

// ---- dataset ----------------------------------------------------------------------------

fn mask_png(w: u32, h: u32) -> Vec<u8> {
    let m = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if (5..15).contains(&x) && (4..10).contains(&y) { 200 } else { 0 }])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(m).write_to(&mut buf, image::ImageFormat::Png).unwrap();
    buf.into_inner()
}

fn save_form(img: &[u8], mask: &[u8], prompt: &str, name: Option<&str>) -> Form {
    let f = Form::new().file("image", "scan 1.png", img).file("mask", "mask.png", mask).text("prompt", prompt);
    match name {
        Some(n) => f.text("name", n),
        None => f,
    }
}

#[tokio::test]
async fn dataset_save_appends_medvlsm_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corrections");
    let s = Server::start(Options { dataset: Some(root.clone()), ..opts() }, Duration::ZERO).await;
    assert_eq!(get(s.addr, "/api/model").await.json()["dataset_enabled"], true);
    let img = png_bytes(24, 16, 9);
    let r = post_form(s.addr, "/api/dataset/save", save_form(&img, &mask_png(24, 16), "a polyp", None)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["img_name"], "scan_1.png");
    // The same name again gets a suffix instead of overwriting.
    let r2 = post_form(s.addr, "/api/dataset/save", save_form(&img, &mask_png(24, 16), "polyp", Some("scan_1"))).await;
    assert_eq!(r2.json()["img_name"], "scan_1-1.png");
    assert_eq!(r2.json()["records"], 2);
    let saved_mask = image::open(root.join("masks/scan_1.png")).unwrap().to_luma8();
    assert_eq!(saved_mask.dimensions(), (24, 16));
    assert!(saved_mask.pixels().all(|p| p[0] == 0 || p[0] == 255), "mask is binarised");
    assert_eq!(saved_mask.get_pixel(6, 5)[0], 255);
    assert_eq!(
        image::open(root.join("images/scan_1.png")).unwrap().to_rgb8(),
        image::load_from_memory(&img).unwrap().to_rgb8()
    );
    let anns: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("anns/train.json")).unwrap()).unwrap();
    let rec = &anns[0];
    assert_eq!(rec["img_name"], "scan_1.png");
    assert_eq!(rec["mask_name"], "scan_1.png");
    assert_eq!(rec["prompts"], serde_json::json!({"p0": "", "p1": "a polyp"}));
    assert_eq!(rec["bbox"], serde_json::json!([4, 3, 15, 10]));
    // The library's own loader accepts the folder.
    let ds = vlsm::data::Dataset::open(&root, "train").expect("a valid medvlsm dataset");
    assert_eq!(ds.records.len(), 2);
    assert_eq!(ds.records[1].img_name, "scan_1-1.png");
}

#[tokio::test]
async fn dataset_save_refuses_path_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ds");
    let s = Server::start(Options { dataset: Some(root.clone()), ..opts() }, Duration::ZERO).await;
    let img = png_bytes(24, 16, 9);
    let m = mask_png(24, 16);
    for name in ["../evil", "../../evil", "/tmp/evil", "a/b", "..\\evil", "C:evil", "..", "images/../../evil"] {
        let r = post_form(s.addr, "/api/dataset/save", save_form(&img, &m, "x", Some(name))).await;
        assert_eq!(r.status, 400, "{name}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.error().contains("bad name"), "{name}: {}", r.error());
    }
    // The same through the upload's file name.
    let f = Form::new().file("image", "../../evil.png", &img).file("mask", "m.png", &m).text("prompt", "x");
    assert_eq!(post_form(s.addr, "/api/dataset/save", f).await.status, 400);
    let mut found = Vec::new();
    for e in walk(tmp.path()) {
        found.push(e.strip_prefix(tmp.path()).unwrap().display().to_string());
    }
    found.sort();
    assert_eq!(found, ["ds", "ds/anns", "ds/images", "ds/masks"], "nothing was written");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        out.push(path.clone());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

#[tokio::test]
async fn dataset_save_errors() {
    let s = start().await;
    let img = png_bytes(24, 16, 9);
    let r = post_form(s.addr, "/api/dataset/save", save_form(&img, &mask_png(24, 16), "x", None)).await;
    assert_eq!(r.status, 403);
    assert!(r.error().contains("--dataset"), "{}", r.error());

    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(Options { dataset: Some(tmp.path().to_path_buf()), ..opts() }, Duration::ZERO).await;
    let r = post_form(s.addr, "/api/dataset/save", save_form(&img, &mask_png(10, 10), "x", None)).await;
    assert_eq!(r.status, 422);
    assert!(r.error().contains("mask is 10x10 but the image is 24x16"), "{}", r.error());
    let r = post_form(s.addr, "/api/dataset/save", Form::new().file("image", "a.png", &img).text("prompt", "x")).await;
    assert_eq!(r.status, 400);
    let r = post_form(
        s.addr,
        "/api/dataset/save",
        Form::new().file("image", "a.png", &img).file("mask", "m.png", &mask_png(24, 16)),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("prompt"));
    // A broken annotation file is left alone.
    std::fs::write(tmp.path().join("anns/train.json"), "{not json").unwrap();
    let r = post_form(s.addr, "/api/dataset/save", save_form(&img, &mask_png(24, 16), "x", None)).await;
    assert_eq!(r.status, 500);
    assert!(r.error().contains("not a JSON list"), "{}", r.error());
    assert_eq!(std::fs::read_to_string(tmp.path().join("anns/train.json")).unwrap(), "{not json");
}

#[tokio::test]
async fn request_queued_behind_the_same_new_image_reuses_its_encoding() {
    let s = Server::start(opts(), Duration::from_millis(600)).await;
    let addr = s.addr;
    let img = png_bytes(32, 32, 30);
    let img2 = img.clone();
    let a = tokio::spawn(async move { post_form(addr, "/api/segment", seg_form(&img2, &["a"])).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = post_form(addr, "/api/segment", seg_form(&img, &["b"])).await;
    assert_eq!(a.await.unwrap().header("x-cache"), Some("miss"));
    assert_eq!(b.header("x-cache"), Some("hit"));
    let h = get(addr, "/api/health").await.json();
    assert_eq!((h["cache"]["hits"].as_u64(), h["cache"]["misses"].as_u64()), (Some(1), Some(1)));
}
