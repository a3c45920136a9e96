//! Canny with a 3x3 Sobel, fused and row-parallel: each band of rows computes its gradients,
//! magnitudes and non-maximum suppression in one pass over a ring of three rows, then follows
//! weak edges inside the band; a short serial pass carries edges across band boundaries.
//!
//! The result is the set of OpenCV's candidate pixels 8-connected to a strong one, so it does
//! not depend on how the rows are split.
use crate::image::Image;
use crate::simd::multiversion;
use rayon::prelude::*;

const NONE: u8 = 0;
const WEAK: u8 = 1;
const EDGE: u8 = 2;

multiversion! {
    /// Sobel dx, dy (replicated border) of one row from the rows above, at and below it, and the
    /// magnitude into `mag[1..=w]` (L1, or squared L2).
    #[allow(clippy::too_many_arguments)]
    fn sobel_row(a: &[u8], b: &[u8], c: &[u8], dx: &mut [i16], dy: &mut [i16], mag: &mut [i32], vs: &mut [i16], vd: &mut [i16], l2: bool) {
        let w = b.len();
        // vs/vd hold columns -1..=w (replicated ends) at offsets 0..w+2.
        for x in 0..w {
            let (p, q, r) = (a[x] as i16, b[x] as i16, c[x] as i16);
            vs[x + 1] = p + 2 * q + r;
            vd[x + 1] = r - p;
        }
        vs[0] = vs[1];
        vd[0] = vd[1];
        vs[w + 1] = vs[w];
        vd[w + 1] = vd[w];
        for x in 0..w {
            dx[x] = vs[x + 2] - vs[x];
            dy[x] = vd[x] + 2 * vd[x + 1] + vd[x + 2];
        }
        let m = &mut mag[1..=w];
        if l2 {
            for ((m, &gx), &gy) in m.iter_mut().zip(&dx[..w]).zip(&dy[..w]) {
                *m = gx as i32 * gx as i32 + gy as i32 * gy as i32;
            }
        } else {
            for ((m, &gx), &gy) in m.iter_mut().zip(&dx[..w]).zip(&dy[..w]) {
                *m = (gx as i32).abs() + (gy as i32).abs();
            }
        }
    }
}

/// OpenCV's non-maximum suppression with its Q15 tan(22.5°) test, for one row: `up`, `mid`,
/// `down` are magnitudes with a zero column on each side; `out` (all NONE on entry) gets WEAK /
/// EDGE at 1..=w, and EDGE positions (plus `base`) go on `stack`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn nms_row(
    up: &[i32],
    mid: &[i32],
    down: &[i32],
    dx: &[i16],
    dy: &[i16],
    lo: i32,
    hi: i32,
    out: &mut [u8],
    stack: &mut Vec<usize>,
    base: usize,
) {
    const TG22: i32 = 13573;
    const BLOCK: usize = 16;
    let w = dx.len();
    for x0 in (0..w).step_by(BLOCK) {
        let end = (x0 + BLOCK).min(w);
        // Most pixels are below the low threshold: skip such blocks with a vectorisable test.
        if !mid[x0 + 1..end + 1].iter().fold(false, |a, &m| a | (m > lo)) {
            continue;
        }
        for x in x0..end {
            let j = x + 1;
            let m = mid[j];
            if m <= lo {
                continue;
            }
            let (xs, ys) = (dx[x] as i32, dy[x] as i32);
            let ax = xs.abs();
            let ay = ys.abs() << 15;
            let tg22x = ax * TG22;
            let keep = if ay < tg22x {
                m > mid[j - 1] && m >= mid[j + 1]
            } else if ay > tg22x + (ax << 16) {
                m > up[j] && m >= down[j]
            } else if (xs ^ ys) < 0 {
                m > up[j + 1] && m > down[j - 1]
            } else {
                m > up[j - 1] && m > down[j + 1]
            };
            if keep {
                if m > hi {
                    out[j] = EDGE;
                    stack.push(base + j);
                } else {
                    out[j] = WEAK;
                }
            }
        }
    }
}

/// Marks WEAK pixels 8-connected to the EDGE pixels on `stack` (indices into `map`, rows of
/// `mw` values with zero end columns) as EDGE.
fn follow(map: &mut [u8], mw: usize, stack: &mut Vec<usize>) {
    let offs = [1usize, mw - 1, mw, mw + 1];
    while let Some(i) = stack.pop() {
        for &o in &offs {
            for n in [i.wrapping_sub(o), i + o] {
                if map.get(n) == Some(&WEAK) {
                    map[n] = EDGE;
                    stack.push(n);
                }
            }
        }
    }
}

/// Canny edges of `src` (3x3 Sobel) with integer thresholds already in magnitude units.
pub(crate) fn canny3(src: &Image<u8>, lo: i32, hi: i32, l2: bool) -> Vec<u8> {
    let (w, h) = (src.width(), src.height());
    let mw = w + 2;
    let mut map = vec![NONE; mw * h];
    let threads = rayon::current_num_threads().max(1);
    let bands = if w * h < 1 << 15 { 1 } else { (threads * 4).min(h) };
    let rows_per = h.div_ceil(bands);
    let row = |y: isize| src.row(y.clamp(0, h as isize - 1) as usize);
    map.par_chunks_mut(rows_per * mw).enumerate().for_each(|(bi, band)| {
        let y0 = bi * rows_per;
        let n = band.len() / mw;
        let mut dx = vec![vec![0i16; w]; 3];
        let mut dy = vec![vec![0i16; w]; 3];
        let mut mag = vec![vec![0i32; mw]; 3];
        let (mut vs, mut vd) = (vec![0i16; w + 2], vec![0i16; w + 2]);
        // Slot of source row y is (y + 1) % 3; rows outside the image keep zero magnitudes.
        let mut fill = |y: isize, dx: &mut [Vec<i16>], dy: &mut [Vec<i16>], mag: &mut [Vec<i32>]| {
            let s = (y + 1).rem_euclid(3) as usize;
            if y < 0 || y >= h as isize {
                mag[s].fill(0);
            } else {
                sobel_row(row(y - 1), row(y), row(y + 1), &mut dx[s], &mut dy[s], &mut mag[s], &mut vs, &mut vd, l2);
            }
        };
        fill(y0 as isize - 1, &mut dx, &mut dy, &mut mag);
        fill(y0 as isize, &mut dx, &mut dy, &mut mag);
        let mut stack = Vec::new();
        for r in 0..n {
            let y = (y0 + r) as isize;
            fill(y + 1, &mut dx, &mut dy, &mut mag);
            let (u, m, d) = (y.rem_euclid(3) as usize, (y + 1).rem_euclid(3) as usize, (y + 2).rem_euclid(3) as usize);
            let out = &mut band[r * mw..(r + 1) * mw];
            nms_row(&mag[u], &mag[m], &mag[d], &dx[m], &dy[m], lo, hi, out, &mut stack, r * mw);
        }
        follow(band, mw, &mut stack);
    });
    // Edges reaching a band boundary continue into the next band.
    let mut stack = Vec::new();
    for b in (rows_per..h).step_by(rows_per) {
        for x in 1..=w {
            for (from, to) in [((b - 1) * mw + x, b * mw + x), (b * mw + x, (b - 1) * mw + x)] {
                if map[from] == EDGE {
                    for t in [to - 1, to, to + 1] {
                        if map[t] == WEAK {
                            map[t] = EDGE;
                            stack.push(t);
                        }
                    }
                }
            }
        }
    }
    follow(&mut map, mw, &mut stack);
    let mut out = vec![0u8; w * h];
    out.par_chunks_mut(w.max(1)).zip(map.par_chunks(mw)).for_each(|(o, m)| {
        for (o, &v) in o.iter_mut().zip(&m[1..]) {
            *o = if v == EDGE { 255 } else { 0 };
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smooth blobs plus noise, big enough for several bands.
    fn test_image(w: usize, h: usize) -> Image<u8> {
        let mut state = 99u64;
        let data = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (state >> 59) as f64;
                let v = 128.0 + 90.0 * (x / 17.0).sin() * (y / 23.0).cos() + 30.0 * ((x + y) / 7.0).sin() + noise * 3.0;
                v.clamp(0.0, 255.0) as u8
            })
            .collect();
        Image::from_vec(w, h, 1, data).unwrap()
    }

    #[test]
    fn banded_canny_matches_serial_reference() {
        // Tall thin bands and a long edge crossing them exercise the boundary pass.
        for (w, h) in [(301, 257), (1000, 40), (40, 1000)] {
            let img = test_image(w, h);
            for (lo, hi, l2) in [(20, 60, false), (50, 150, false), (400, 3600, true), (5, 300, false)] {
                let fast = canny3(&img, lo, hi, l2);
                let slow = crate::edges::canny_generic(&img, lo as i64, hi as i64, 3, l2).unwrap();
                assert_eq!(fast.iter().filter(|&&v| v > 0).count(), slow.data().iter().filter(|&&v| v > 0).count());
                assert!(fast == slow.data(), "{w}x{h} {lo} {hi} {l2}");
            }
        }
    }
}
