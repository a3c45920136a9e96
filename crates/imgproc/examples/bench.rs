//! `cargo run --release -p imgproc --example bench -- IMAGE [--json] [--reps N]`
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with("--") && a.parse::<usize>().is_err()) else {
        eprintln!("usage: bench IMAGE [--json] [--reps N]");
        std::process::exit(2);
    };
    let json = args.iter().any(|a| a == "--json");
    let reps = args.iter().position(|a| a == "--reps").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(15);
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
