//! Fine-tuning from the server (`--dataset DIR --train`): start (202), a second start (409),
//! progress to `done`, the new version served and listed, rollback, cancel, the errors of a
//! server without `--train` or with a model it cannot fine-tune, and a server killed during a
//! fine-tune (restart: the old model serves, the dataset is intact, no half-written version).

use crate::support as common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{get, png_bytes, post_form, request, Form, Server};
use serde_json::Value;
use vlsm_serve::{AppState, Options};

/// A tiny TextUNet (channels 4-8-16, 32 px) trained one epoch on squares: a model directory
/// as `vlsm train` writes it, made once per test process.
pub fn tiny_textunet() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tiny_textunet_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("squares");
        for sub in ["images", "masks", "anns"] {
            std::fs::create_dir_all(data.join(sub)).unwrap();
        }
        let mut recs = Vec::new();
        for i in 0..4u32 {
            let name = format!("{i}.png");
            std::fs::write(data.join("images").join(&name), png_bytes(40, 30, i)).unwrap();
            std::fs::write(data.join("masks").join(&name), mask_png(40, 30, i)).unwrap();
            recs.push(serde_json::json!({"img_name": name, "mask_name": name, "prompts": {"p1": "a square"}}));
        }
        let anns = serde_json::to_string(&recs).unwrap();
        std::fs::write(data.join("anns/train.json"), &anns).unwrap();
        std::fs::write(data.join("anns/val.json"), &anns).unwrap();
        let text = format!(
            "output_dir = \"{}\"\nseed = 1\n[model]\nkind = \"textunet\"\nchannels = [4, 8, 16]\n[data]\n\
             datasets = [\"{}\"]\nprompts = [\"p1\"]\nimage_size = 32\nfeature_cache = false\n\
             [train]\nepochs = 1\nmin_epochs = 1\nbatch_size = 4\n",
            root.join("run").display(),
            data.display()
        );
        let cfg = vlsm::train::TrainConfig::parse(&text).unwrap();
        vlsm::train::tasks::textunet::train(&cfg, &vlsm::train::RunOptions::quiet(), vlsm::train::Hooks::none())
            .unwrap();
        root.join("run/best")
    })
    .clone()
}

/// A square mask whose place depends on `seed`.
fn mask_png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let (x0, y0) = (4 + seed % 8, 3 + seed % 6);
    let m = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if (x0..x0 + 14).contains(&x) && (y0..y0 + 10).contains(&y) { 255 } else { 0 }])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(m).write_to(&mut buf, image::ImageFormat::Png).unwrap();
    buf.into_inner()
}

fn train_opts(dataset: &Path) -> Options {
    Options {
        model: Some(tiny_textunet()),
        dataset: Some(dataset.to_path_buf()),
        train: true,
        train_threads: Some(1),
        ..Options::default()
    }
}

async fn start(opts: Options, model: &Path, step_delay: Duration) -> Server {
    let seg = vlsm::pipeline::Segmenter::load(model).expect("model");
    let mut state = AppState::new(&opts, seg).expect("state");
    if let Some(t) = state.train.as_mut() {
        t.step_delay = step_delay;
    }
    Server::start_state(state).await
}

async fn save_corrections(addr: SocketAddr, n: u32) {
    for i in 0..n {
        let f = Form::new()
            .file("image", &format!("case{i}.png"), &png_bytes(40, 30, i))
            .file("mask", "mask.png", &mask_png(40, 30, i))
            .text("prompt", "a square");
        let r = post_form(addr, "/api/dataset/save", f).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

async fn post_json(addr: SocketAddr, path: &str, body: &str) -> common::Resp {
    request(addr, "POST", path, Some("application/json"), body.as_bytes().to_vec()).await.expect("POST")
}

/// Polls `GET /api/train` until its state is not `running`.
async fn wait_end(addr: SocketAddr, limit: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let s = get(addr, "/api/train").await.json();
        if s["state"] != "running" {
            return s;
        }
        assert!(t0.elapsed() < limit, "still running after {limit:?}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn versions_on_disk(dataset: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dataset.join(".vlsm/models"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

async fn segment_ok(addr: SocketAddr) -> Value {
    let f = Form::new().file("image", "x.png", &png_bytes(40, 30, 7)).text("prompt", "a square");
    let r = post_form(addr, "/api/segment", f).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn fine_tune_runs_in_the_background_switches_the_model_and_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("corrections");
    let s = start(train_opts(&ds), &tiny_textunet(), Duration::from_millis(500)).await;
    let m = get(s.addr, "/api/model").await.json();
    assert_eq!(
        (m["version"].as_str(), m["train_enabled"].as_bool(), m["can_rollback"].as_bool()),
        (Some("base"), Some(true), Some(false))
    );
    assert_eq!(get(s.addr, "/api/train").await.json()["state"], "idle");
    // Nothing saved yet.
    let r = post_json(s.addr, "/api/train", "").await;
    assert_eq!(r.status, 409, "{}", r.error());
    assert!(r.error().contains("no saved corrections"), "{}", r.error());

    save_corrections(s.addr, 3).await;
    let r = post_json(s.addr, "/api/train", r#"{"epochs": 2, "lr": 0.001}"#).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let st = r.json();
    assert_eq!(
        (st["state"].as_str(), st["version"].as_str(), st["base"].as_str()),
        (Some("running"), Some("v001"), Some("base"))
    );
    assert_eq!(st["epochs"], 2);
    // Three records: too few to hold out; validation is the training set.
    assert_eq!(
        (st["train_records"].as_u64(), st["val_records"].as_u64(), st["held_out"].as_bool()),
        (Some(3), Some(3), Some(false))
    );
    let again = post_json(s.addr, "/api/train", "{}").await;
    assert_eq!(again.status, 409);
    assert!(again.error().contains("already running"), "{}", again.error());
    // Label Studio's /train starts the same job: refused while it runs.
    let ls = post_json(s.addr, "/train", r#"{"action": "START_TRAINING"}"#).await;
    assert_eq!(ls.status, 409, "{}", ls.error());
    // Segmentation answers while it trains (the image's features cached from now on).
    assert_eq!(segment_ok(s.addr).await["cache"], "miss");
    assert_eq!(segment_ok(s.addr).await["cache"], "hit");
    let running = get(s.addr, "/api/train").await.json();
    assert_eq!(running["state"], "running");

    let end = wait_end(s.addr, Duration::from_secs(120)).await;
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!((end["epoch"].as_u64(), end["progress"].as_f64()), (Some(2), Some(1.0)));
    assert_eq!(end["history"].as_array().unwrap().len(), 2);
    assert!(end["val_dice"].as_f64().is_some_and(|d| (0.0..=1.0).contains(&d)), "{end}");

    let m = get(s.addr, "/api/model").await.json();
    assert_eq!(m["version"], "v001", "{m}");
    assert_eq!(m["can_rollback"], true);
    assert_eq!(m["history"].as_array().unwrap().len(), 2);
    assert_eq!(m["versions"][0]["version"], "v001");
    assert_eq!(m["versions"][0]["base"], "base");
    assert_eq!(versions_on_disk(&ds), vec!["v001"]);
    let v1 = ds.join(".vlsm/models/v001");
    for f in ["config.json", "model.safetensors", "version.json"] {
        assert!(v1.join(f).is_file(), "{f} missing from the version");
    }
    assert!(!v1.join("optimizer.safetensors").exists(), "the trainer's checkpoint is not part of a version");
    assert!(!ds.join(".vlsm/runs/v001").exists(), "scratch space left behind");
    // The new model segments; it is another model than the base.
    let new_w = std::fs::read(v1.join("model.safetensors")).unwrap();
    assert_ne!(new_w, std::fs::read(tiny_textunet().join("model.safetensors")).unwrap());
    // The old model's cached features are gone.
    assert_eq!(segment_ok(s.addr).await["cache"], "miss");

    // Rollback to the base, then nothing further back.
    let r = post_json(s.addr, "/api/model/rollback", "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], "base");
    assert_eq!(get(s.addr, "/api/model").await.json()["version"], "base");
    let r = post_json(s.addr, "/api/model/rollback", "").await;
    assert_eq!(r.status, 409);
    assert!(r.error().contains("nothing to roll back"), "{}", r.error());
    segment_ok(s.addr).await;
    // The next version is numbered after what is on disk.
    let r = post_json(s.addr, "/api/train", r#"{"epochs": 1}"#).await;
    assert_eq!(r.json()["version"], "v002");
    assert_eq!(wait_end(s.addr, Duration::from_secs(120)).await["state"], "done");
    assert_eq!(versions_on_disk(&ds), vec!["v001", "v002"]);
    let m = get(s.addr, "/api/model").await.json();
    assert_eq!((m["version"].as_str(), m["versions"].as_array().map(Vec::len)), (Some("v002"), Some(2)));
    assert_eq!(m["version_meta"]["base"], "base");
}

#[tokio::test]
async fn cancel_ends_as_cancelled_without_a_version_and_bad_requests_are_400() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("corrections");
    let s = start(train_opts(&ds), &tiny_textunet(), Duration::from_millis(200)).await;
    save_corrections(s.addr, 9).await;
    for (body, what) in [
        (r#"{"epochs": 0}"#, "epochs"),
        (r#"{"epochs": 2, "speed": 1}"#, "speed"),
        (r#"{"lr": -1}"#, "lr"),
        (r#"{"max_minutes": 0}"#, "max_minutes"),
        ("[1", "JSON"),
    ] {
        let r = post_json(s.addr, "/api/train", body).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.error().contains(what), "{body}: {}", r.error());
    }
    assert_eq!(request(s.addr, "DELETE", "/api/train", None, Vec::new()).await.unwrap().status, 409);
    let r = post_json(s.addr, "/api/train", r#"{"epochs": 50}"#).await;
    assert_eq!(r.status, 202);
    // Nine records: every fifth held out.
    assert_eq!((r.json()["train_records"].as_u64(), r.json()["val_records"].as_u64()), (Some(8), Some(1)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = request(s.addr, "DELETE", "/api/train", None, Vec::new()).await.unwrap();
    assert_eq!(d.status, 202, "{}", String::from_utf8_lossy(&d.body));
    let end = wait_end(s.addr, Duration::from_secs(60)).await;
    assert_eq!(end["state"], "cancelled", "{end}");
    assert_eq!(get(s.addr, "/api/model").await.json()["version"], "base");
    assert!(versions_on_disk(&ds).is_empty(), "{:?}", versions_on_disk(&ds));
    segment_ok(s.addr).await;
}

#[tokio::test]
async fn without_train_the_errors_are_json() {
    // No --train: 403 naming the flag, on every train route.
    let s = start(
        Options { model: Some(common::tiny_model()), ..Options::default() },
        &common::tiny_model(),
        Duration::ZERO,
    )
    .await;
    assert_eq!(get(s.addr, "/api/model").await.json()["train_enabled"], false);
    for (method, path) in
        [("GET", "/api/train"), ("POST", "/api/train"), ("DELETE", "/api/train"), ("POST", "/api/model/rollback")]
    {
        let r = request(s.addr, method, path, None, Vec::new()).await.unwrap();
        assert_eq!(r.status, 403, "{method} {path}");
        assert!(r.error().contains("--train"), "{}", r.error());
    }
    // --train without --dataset is refused at start.
    let seg = vlsm::pipeline::Segmenter::load(&common::tiny_model()).unwrap();
    let e = AppState::new(&Options { train: true, ..Options::default() }, seg).err().unwrap();
    assert!(e.to_string().contains("--dataset"), "{e}");
}

/// A CLIPSeg model fine-tunes too: its decoder, on cached encoder features, published as a
/// model directory that the server switches to and that loads on its own.
#[tokio::test]
async fn a_clipseg_model_fine_tunes_its_decoder() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("c");
    let base = common::tiny_model();
    let s = start(Options { model: Some(base.clone()), ..train_opts(&ds) }, &base, Duration::ZERO).await;
    save_corrections(s.addr, 2).await;
    let r = post_json(s.addr, "/api/train", r#"{"epochs": 2, "lr": 0.001}"#).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let end = wait_end(s.addr, Duration::from_secs(300)).await;
    assert_eq!(end["state"], "done", "{end}");
    let m = get(s.addr, "/api/model").await.json();
    assert_eq!((m["version"].as_str(), m["kind"].as_str()), (Some("v001"), Some("clipseg")), "{m}");
    let v1 = ds.join(".vlsm/models/v001");
    let seg = vlsm::pipeline::Segmenter::load(&v1).expect("the version loads on its own");
    assert_eq!(seg.kind_name(), "clipseg");
    // The decoder changed; the encoders are the base's.
    let (old, new) = (weights(&base), weights(&v1));
    let changed = |k: &str| old[k].to_vec1::<f32>().unwrap() != new[k].to_vec1::<f32>().unwrap();
    let decoder: Vec<&String> = new.keys().filter(|k| k.starts_with("decoder.")).collect();
    assert!(!decoder.is_empty() && decoder.iter().any(|k| changed(k)), "no decoder tensor changed");
    assert!(new.keys().filter(|k| !k.starts_with("decoder.")).all(|k| !changed(k)), "an encoder tensor changed");
    segment_ok(s.addr).await;
}

/// Every tensor of a model directory's safetensors file, flattened.
fn weights(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    let w = vlsm::weights::find_weights(dir).unwrap();
    candle_core::safetensors::load(&w, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap()))
        .collect()
}

/// The binary with the tiny TextUNet, `--dataset DIR --train`; returns it and its address.
fn spawn(dataset: &Path, model: &Path) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlsm-serve"))
        .args(["--addr", "127.0.0.1:0", "--train", "--train-threads", "1", "--dataset"])
        .arg(dataset)
        .arg("--model")
        .arg(model)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vlsm-serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.trim().strip_suffix('/')).expect("address line");
    (child, addr.parse().unwrap())
}

#[cfg(unix)]
#[tokio::test]
async fn a_server_killed_during_a_fine_tune_restarts_on_the_old_model_with_the_dataset_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("corrections");
    let (mut child, addr) = spawn(&ds, &tiny_textunet());
    save_corrections(addr, 4).await;
    let anns = std::fs::read(ds.join("anns/train.json")).unwrap();
    let r = post_json(addr, "/api/train", r#"{"epochs": 200}"#).await;
    assert_eq!(r.status, 202);
    // Wait for a finished epoch (checkpoints on disk), then kill -9 mid-run.
    let t0 = Instant::now();
    loop {
        let s = get(addr, "/api/train").await.json();
        assert_eq!(s["state"], "running", "ended before the kill: {s}");
        if s["epoch"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ds.join(".vlsm/runs").exists(), "the run had scratch space");
    // What a kill during a publish leaves: a temporary version directory.
    std::fs::create_dir_all(ds.join(".vlsm/models/.tmp-v001-99999")).unwrap();
    std::fs::write(ds.join(".vlsm/models/.tmp-v001-99999/config.json"), "{").unwrap();

    let (mut child, addr) = spawn(&ds, &tiny_textunet());
    let m = get(addr, "/api/model").await.json();
    assert_eq!(m["version"], "base");
    assert_eq!(m["versions"].as_array().map(Vec::len), Some(0), "{m}");
    assert_eq!(get(addr, "/api/train").await.json()["state"], "idle");
    assert_eq!(std::fs::read(ds.join("anns/train.json")).unwrap(), anns, "the dataset changed");
    for i in 0..4 {
        assert!(ds.join(format!("images/case{i}.png")).is_file() && ds.join(format!("masks/case{i}.png")).is_file());
    }
    assert!(versions_on_disk(&ds).is_empty(), "{:?}", versions_on_disk(&ds));
    assert!(!ds.join(".vlsm/runs").exists(), "scratch space of the killed run not cleared");
    segment_ok(addr).await;
    // The next fine-tune works and a restart can serve its version.
    assert_eq!(post_json(addr, "/api/train", r#"{"epochs": 1}"#).await.status, 202);
    assert_eq!(wait_end(addr, Duration::from_secs(120)).await["state"], "done");
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, addr) = spawn(&ds, &ds.join(".vlsm/models/v001"));
    let m = get(addr, "/api/model").await.json();
    assert_eq!((m["version"].as_str(), m["can_rollback"].as_bool()), (Some("v001"), Some(false)));
    assert_eq!(post_json(addr, "/api/train", r#"{"epochs": 1}"#).await.json()["version"], "v002");
    assert_eq!(wait_end(addr, Duration::from_secs(120)).await["state"], "done");
    assert_eq!(get(addr, "/api/model").await.json()["version_meta"]["base"], "v001");
    child.kill().unwrap();
    child.wait().unwrap();
}
