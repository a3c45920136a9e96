//! `cargo run --release -p imgproc --example bench -- IMAGE [--json] [--reps N]`
fn main() {
    keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with("--") && a.parse::<usize>().is_err()) else {
        eprintln!("usage: bench IMAGE [--json] [--reps N]");
        std::process::exit(2);
    };
    let json = args.iter().any(|a| a == "--json");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    match imgproc::bench::run(std::path::Path::new(path), reps) {
        Ok(rows) => {
            if json {
                let body: Vec<String> = rows.iter().map(|(k, v)| format!("\"{k}\": {v:.4}")).collect();
                println!("{{{}}}", body.join(", "));
            } else {
                for (k, v) in rows {
                    println!("{k:24} {v:9.3} ms");
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// The allocator settings of the `vlsm` binary (see crates/vlsm-cli/src/main.rs), so these
/// figures match `vlsm bench imgproc`: freed images stay in the heap instead of being unmapped
/// and faulted in again on the next call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
