//! Dev probe: GFLOP/s of the gemm crate on a CLIP MLP product (485×768 · 768×3072) for the
//! weight read transposed in place ([N, K] as PyTorch stores it) or pre-transposed ([K, N]),
//! with gemm's own threading or one half of N per thread. `cargo run --release -p vlsm-kernels --example gemm_probe`
use gemm::{gemm, Parallelism};
use std::time::Instant;

fn main() {
    let (m, k, n) = (485usize, 768usize, 3072usize);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 1000) as f32 * 1e-3).collect();
    let mut wt = vec![0f32; n * k];
    for j in 0..n {
        for c in 0..k {
            wt[c * n + j] = w[j * k + c];
        }
    }
    let mut out = vec![0f32; m * n];
    let threads: usize = std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let (x, w, wt) = (&x, &w, &wt);
    let run = |out: &mut [f32], transposed: bool, split: bool| {
        let (b, cs, rs) = if transposed { (wt.as_ptr(), 1isize, n as isize) } else { (w.as_ptr(), k as isize, 1isize) };
        if split {
            let half = n / 2;
            let optr = out.as_mut_ptr() as usize;
            let bptr = b as usize;
            rayon::scope(|s| {
                for t in 0..2 {
                    let j0 = t * half;
                    // SAFETY: out is [m, n] row-major, x [m, k] and b the k×n rhs through (cs, rs);
                    // task t reads and writes only columns j0..j0 + half, so the tasks' outputs
                    // are disjoint, and the scope ends before out, x and b are dropped.
                    s.spawn(move |_| unsafe {
                        gemm(
                            m,
                            half,
                            k,
                            (optr as *mut f32).add(j0),
                            1,
                            n as isize,
                            false,
                            x.as_ptr(),
                            1,
                            k as isize,
                            (bptr as *const f32).offset(j0 as isize * cs),
                            cs,
                            rs,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        )
                    });
                }
            });
        } else {
            // SAFETY: out is [m, n] row-major, x [m, k] and b the k×n rhs through (cs, rs).
            unsafe {
                gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    b,
                    cs,
                    rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(threads),
                )
            }
        }
    };
    let flop = 2.0 * (m * n * k) as f64;
    let names = ["w[n,k] gemm-threads", "wt[k,n] gemm-threads", "w[n,k] split", "wt[k,n] split"];
    let mut t: Vec<Vec<f64>> = vec![vec![]; 4];
    for _ in 0..15 {
        for (i, (tr, sp)) in [(false, false), (true, false), (false, true), (true, true)].into_iter().enumerate() {
            let s = Instant::now();
            run(&mut out, tr, sp);
            t[i].push(flop / s.elapsed().as_secs_f64() / 1e9);
        }
    }
    for (name, mut v) in names.iter().zip(t) {
        v.sort_by(|a, b| a.total_cmp(b));
        println!("{name:24} median {:6.1} GFLOP/s  max {:6.1}", v[v.len() / 2], v[v.len() - 1]);
    }
}
