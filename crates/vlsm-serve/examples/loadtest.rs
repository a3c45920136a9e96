//! Load test on loopback: starts the server in this process on 127.0.0.1:0, then N concurrent
//! clients send a fixed number of requests that mix new images (image encoder runs) with new
//! prompts on images sent before (cache hits: text encoder + decoder only). 503s are counted and
//! retried after a pause; any other failure is reported. Peak memory is VmHWM from /proc.
//!
//! cargo run --release -p vlsm-serve --example loadtest -- [--model DIR] [--clients 50]
//!     [--requests 1000] [--new-every 5] [--size 256] [--queue 64] [--workers 1]

#[path = "../tests/it/support/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Model directory (default: the tiny random test CLIPSeg).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 50)]
    clients: usize,
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Every n-th request carries a new image; the others a new prompt on an earlier image.
    #[arg(long, default_value_t = 5)]
    new_every: usize,
    /// Side of the square test images.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Server queue (max waiting requests).
    #[arg(long, default_value_t = 64)]
    queue: usize,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Retries of a request answered 503, before it counts as failed.
    #[arg(long, default_value_t = 50)]
    retries: usize,
}

fn vm(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.clients > 0 && a.requests > 0 && a.new_every > 0, "counts must be positive");
    let model = a.model.clone().unwrap_or_else(common::tiny_model);
    let opts = vlsm_serve::Options {
        model: Some(model.clone()),
        queue: a.queue,
        workers: a.workers,
        cache: 64,
        timeout_secs: 120,
        ..Default::default()
    };
    let seg = vlsm::pipeline::Segmenter::load(&model)?;
    let state = Arc::new(vlsm_serve::AppState::new(&opts, seg)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vlsm_serve::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let n_images = a.requests.div_ceil(a.new_every);
    let images: Arc<Vec<Vec<u8>>> =
        Arc::new((0..n_images as u32).map(|i| common::png_bytes(a.size, a.size, i + 1000)).collect());
    let rss_loaded = vm("VmRSS:");

    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(a.requests)));
    let (busy, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..a.clients {
        let (next, lat, busy, failed, images) =
            (next.clone(), lat.clone(), busy.clone(), failed.clone(), images.clone());
        let (total, every, retries) = (a.requests, a.new_every, a.retries);
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    break;
                }
                // New image on every `every`-th request, else a fresh prompt on one of the
                // last few images already sent.
                let group = i / every;
                let img = if i % every == 0 { group } else { group.saturating_sub(1 + i % 3) };
                let prompt = format!("finding number {i}");
                let t = Instant::now();
                let mut outcome = Err(String::from("not sent"));
                for attempt in 0..=retries {
                    let form = common::Form::new().file("image", "img.png", &images[img]).text("prompt", &prompt);
                    let (ct, body) = form.finish();
                    match common::request(addr, "POST", "/api/segment", Some(&ct), body).await {
                        Ok(r) if r.status == 200 => {
                            outcome = Ok(());
                            break;
                        }
                        Ok(r) if r.status == 503 && attempt < retries => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50 + 10 * attempt as u64)).await;
                        }
                        Ok(r) => {
                            outcome = Err(format!("status {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                            break;
                        }
                        Err(e) => {
                            outcome = Err(format!("io: {e}"));
                            break;
                        }
                    }
                }
                match outcome {
                    Ok(()) => lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3),
                    Err(e) => failed.lock().unwrap().push(e),
                }
            }
        }));
    }
    for c in clients {
        c.await?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let stats = state.cache.stats();
    let _ = stop_tx.send(());
    server.await??;
    let mut lat = lat.lock().unwrap().clone();
    lat.sort_by(|x, y| x.total_cmp(y));
    let failed = failed.lock().unwrap().clone();
    println!("model            {}", model.display());
    println!("clients          {}", a.clients);
    println!("requests         {} ({} ok, {} failed)", a.requests, lat.len(), failed.len());
    println!(
        "mix              1 in {} new images ({}x{} PNG), others new prompts on earlier images",
        a.new_every, a.size, a.size
    );
    println!("cache            {} hits, {} misses", stats.hits, stats.misses);
    println!("503 (retried)    {}", busy.load(Ordering::Relaxed));
    println!("wall             {wall:.2} s");
    println!("throughput       {:.1} req/s", lat.len() as f64 / wall);
    println!("latency p50      {:.1} ms", pct(&lat, 0.50));
    println!("latency p99      {:.1} ms", pct(&lat, 0.99));
    println!("latency max      {:.1} ms", lat.last().copied().unwrap_or(f64::NAN));
    println!("RSS after load   {:.1} MiB", rss_loaded as f64 / 1024.0);
    println!("peak RSS (HWM)   {:.1} MiB", vm("VmHWM:") as f64 / 1024.0);
    for e in failed.iter().take(5) {
        println!("failure: {e}");
    }
    anyhow::ensure!(failed.is_empty(), "{} requests failed", failed.len());
    Ok(())
}
