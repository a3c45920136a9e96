//! Property test of the multipart parser and the form handling behind `/api/segment` and
//! `/api/dataset/save` (#17): mutated bodies (flipped bytes, cuts, repeated or broken
//! boundaries and part headers, a mutated boundary parameter) against a real server. Every
//! answer must be a complete HTTP answer with a JSON body, 200 or a 4xx (never a 5xx or a
//! dropped connection), bodies over `--max-upload-mb` are 413, and the server answers a plain
//! request afterwards. The cargo-fuzz target `fuzz/fuzz_targets/multipart.rs` drives the same
//! parser (docs/security.md). `PROPTEST_CASES` raises the number of cases.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vlsm_serve::Options;

use crate::support::{get, png_bytes, request, Form, Server};

/// Pieces that confuse a multipart parser.
const SNIPPETS: [&str; 10] = [
    "\r\n",
    "--",
    "--vlsmtestboundary7MA4YWxkTrZu0gW",
    "--vlsmtestboundary7MA4YWxkTrZu0gW--\r\n",
    "\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n",
    "Content-Disposition: form-data; name=\"image\"; filename=\"../../x.png\"\r\n",
    "Content-Type: text/plain; charset=utf-16\r\n",
    "\u{feff}\u{fffe}",
    "\0",
    "name=\"\"; filename*=UTF-8''%e2%82%ac",
];

const CONTENT_TYPES: [&str; 6] = [
    "multipart/form-data; boundary=vlsmtestboundary7MA4YWxkTrZu0gW",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=\"vlsmtestboundary7MA4YWxkTrZu0gW\"",
    "multipart/form-data; boundary=x",
    "multipart/mixed; boundary=vlsmtestboundary7MA4YWxkTrZu0gW",
];

#[derive(Debug, Clone)]
struct Mutation {
    path: usize,
    content_type: usize,
    flips: Vec<(usize, u8)>,
    inserts: Vec<(usize, usize)>,
    cut: Option<usize>,
    pad: Option<usize>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0..2usize,
        prop_oneof![4 => Just(0usize), 1 => 0..CONTENT_TYPES.len()],
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..5),
        prop::collection::vec((any::<usize>(), 0..SNIPPETS.len()), 0..4),
        prop::option::weighted(0.25, any::<usize>()),
        prop::option::weighted(0.05, 900_000..1_200_000usize),
    )
        .prop_map(|(path, content_type, flips, inserts, cut, pad)| Mutation {
            path,
            content_type,
            flips,
            inserts,
            cut,
            pad,
        })
}

fn body(base: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(at, k) in &m.inserts {
        let at = at % (b.len() + 1);
        b.splice(at..at, SNIPPETS[k].bytes());
    }
    for &(at, v) in &m.flips {
        let n = b.len();
        b[at % n] = v;
    }
    if let Some(c) = m.cut {
        b.truncate(c % (b.len() + 1));
    }
    if let Some(n) = m.pad {
        // Near and past the 1 MiB upload limit: a big prompt part before the closing boundary.
        let end = b.len().saturating_sub(36);
        b.splice(end..end, std::iter::repeat_n(b'a', n));
    }
    b
}

#[test]
fn mutated_multipart_bodies_get_json_4xx_or_200() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        model: Some(crate::support::tiny_model()),
        dataset: Some(tmp.path().to_path_buf()),
        max_upload_mb: 1,
        ..Options::default()
    };
    let server = rt.block_on(Server::start(opts, Duration::ZERO));
    let img = png_bytes(12, 10, 3);
    let mask = {
        let m = image::GrayImage::from_fn(12, 10, |x, _| image::Luma([if x < 6 { 255 } else { 0 }]));
        let mut c = std::io::Cursor::new(Vec::new());
        m.write_to(&mut c, image::ImageFormat::Png).unwrap();
        c.into_inner()
    };
    let (_, segment) =
        Form::new().file("image", "a.png", &img).text("prompt", "polyp").text("threshold", "0.4").finish();
    let (_, save) = Form::new()
        .file("image", "a.png", &img)
        .file("mask", "a_mask.png", &mask)
        .text("prompt", "polyp")
        .text("name", "case1")
        .finish();
    let bases = [("/api/segment", segment), ("/api/dataset/save", save)];
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    runner
        .run(&mutation(), |m| {
            let (path, base) = &bases[m.path];
            let b = body(base, &m);
            let len = b.len();
            let r = rt
                .block_on(request(server.addr, "POST", path, Some(CONTENT_TYPES[m.content_type]), b))
                .map_err(|e| TestCaseError::fail(format!("{path}: no answer: {e}")))?;
            *statuses.borrow_mut().entry(r.status).or_default() += 1;
            let ct = r.header("content-type").unwrap_or("").to_string();
            prop_assert!(
                r.status == 200 || (400..500).contains(&r.status),
                "{path}: status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            prop_assert!(ct.starts_with("application/json"), "{path}: status {} content type {ct:?}", r.status);
            if r.status != 200 {
                let e = r.error();
                prop_assert!(!e.is_empty() && !e.contains('\n'), "{path}: error {e:?}");
            }
            if len > 1 << 20 {
                prop_assert_eq!(r.status, 413, "{} bytes", len);
            }
            Ok(())
        })
        .unwrap();
    // The mutations reach past the parser: some forms still work, others fail in several ways.
    let statuses = statuses.into_inner();
    eprintln!("answers by status: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|&n| n > 0) && statuses.len() >= 3, "{statuses:?}");
    // Still serving, and nothing was written outside the dataset's folders.
    assert_eq!(rt.block_on(get(server.addr, "/api/health")).status, 200);
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(["images", "masks", "anns"].contains(&name.as_str()), "{name} in the dataset folder");
    }
}

/// The cargo-fuzz target's body (support::fuzz_harness, the router in process) on the same
/// mutated bodies and on arbitrary bytes.
#[test]
fn fuzz_target_body_runs() {
    let img = png_bytes(12, 10, 3);
    let (_, base) = Form::new().file("image", "a.png", &img).text("prompt", "polyp").finish();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = prop_oneof![
        mutation().prop_map(move |m| body(&base, &Mutation { content_type: 0, ..m })),
        prop::collection::vec(any::<u8>(), 0..400),
    ];
    runner
        .run(&strategy, |data| {
            crate::support::fuzz_harness::multipart(&data);
            Ok(())
        })
        .unwrap();
}
