//! Canny with a 3x3 Sobel, fused and row-parallel: each band of rows computes its gradients,
//! magnitudes and non-maximum suppression in one pass over a ring of three rows, then follows
//! weak edges inside the band; a short serial pass carries edges across band boundaries.
//!
//! The result is the set of OpenCV's candidate pixels 8-connected to a strong one, so it does
//! not depend on how the rows are split.
use crate::image::Image;
use crate::parallel::par_rows;
use crate::simd::multiversion;
use std::mem::MaybeUninit;
use std::sync::Mutex;

const NONE: u8 = 0;
const WEAK: u8 = 1;
const EDGE: u8 = 2;

/// Gradient magnitudes: i16 for L1 (at most 2 * 1020), i32 for squared L2 (at most 2 * 1020^2);
/// the narrower lanes for L1 halve the vector work.
trait Mag: Copy + PartialOrd + Default + Send + Sync {
    /// A threshold in magnitude units: values above every magnitude behave alike.
    fn threshold(t: i32) -> Self;
    #[allow(clippy::too_many_arguments)]
    fn sobel(
        a: &[u8],
        b: &[u8],
        c: &[u8],
        dx: &mut [i16],
        dy: &mut [i16],
        mag: &mut [Self],
        vs: &mut [i16],
        vd: &mut [i16],
    );
    #[allow(clippy::too_many_arguments)]
    fn nms(
        rows: [&[Self]; 3],
        dx: &[i16],
        dy: &[i16],
        lo: Self,
        hi: Self,
        out: &mut [MaybeUninit<u8>],
        stack: &mut Vec<(u32, u32)>,
        y: u32,
    );
}

impl Mag for i16 {
    fn threshold(t: i32) -> Self {
        t.clamp(-1, i16::MAX as i32) as i16
    }
    fn sobel(
        a: &[u8],
        b: &[u8],
        c: &[u8],
        dx: &mut [i16],
        dy: &mut [i16],
        mag: &mut [Self],
        vs: &mut [i16],
        vd: &mut [i16],
    ) {
        sobel_row_l1(a, b, c, dx, dy, mag, vs, vd)
    }
    fn nms(
        rows: [&[Self]; 3],
        dx: &[i16],
        dy: &[i16],
        lo: Self,
        hi: Self,
        out: &mut [MaybeUninit<u8>],
        stack: &mut Vec<(u32, u32)>,
        y: u32,
    ) {
        nms_row_l1(rows[0], rows[1], rows[2], dx, dy, lo, hi, out, stack, y)
    }
}

impl Mag for i32 {
    fn threshold(t: i32) -> Self {
        t.max(-1)
    }
    fn sobel(
        a: &[u8],
        b: &[u8],
        c: &[u8],
        dx: &mut [i16],
        dy: &mut [i16],
        mag: &mut [Self],
        vs: &mut [i16],
        vd: &mut [i16],
    ) {
        sobel_row_l2(a, b, c, dx, dy, mag, vs, vd)
    }
    fn nms(
        rows: [&[Self]; 3],
        dx: &[i16],
        dy: &[i16],
        lo: Self,
        hi: Self,
        out: &mut [MaybeUninit<u8>],
        stack: &mut Vec<(u32, u32)>,
        y: u32,
    ) {
        nms_row_l2(rows[0], rows[1], rows[2], dx, dy, lo, hi, out, stack, y)
    }
}

/// Sobel dx, dy (replicated border) of one row from the rows above, at and below it, and the
/// magnitude `norm(dx, dy)` into `mag[1..=w]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sobel_body<M: Copy>(
    a: &[u8],
    b: &[u8],
    c: &[u8],
    dx: &mut [i16],
    dy: &mut [i16],
    mag: &mut [M],
    vs: &mut [i16],
    vd: &mut [i16],
    norm: impl Fn(i16, i16) -> M,
) {
    let w = b.len();
    let (a, c, vs, vd) = (&a[..w], &c[..w], &mut vs[..w + 2], &mut vd[..w + 2]);
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
    let (dx, dy, m) = (&mut dx[..w], &mut dy[..w], &mut mag[1..=w]);
    for x in 0..w {
        let gx = vs[x + 2] - vs[x];
        let gy = vd[x] + 2 * vd[x + 1] + vd[x + 2];
        dx[x] = gx;
        dy[x] = gy;
        m[x] = norm(gx, gy);
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn sobel_row_l1(a: &[u8], b: &[u8], c: &[u8], dx: &mut [i16], dy: &mut [i16], mag: &mut [i16], vs: &mut [i16], vd: &mut [i16]) {
        sobel_body(a, b, c, dx, dy, mag, vs, vd, |gx, gy| gx.abs() + gy.abs())
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn sobel_row_l2(a: &[u8], b: &[u8], c: &[u8], dx: &mut [i16], dy: &mut [i16], mag: &mut [i32], vs: &mut [i16], vd: &mut [i16]) {
        sobel_body(a, b, c, dx, dy, mag, vs, vd, |gx, gy| gx as i32 * gx as i32 + gy as i32 * gy as i32)
    }
}

/// OpenCV's direction classes of a gradient (`|dx|`, `|dy|` at most 1020) in 16-bit lanes:
/// (horizontal, vertical). OpenCV tests `ay << 15 < ax * 13573` and `ay << 15 > ax * (13573 +
/// 2^16)`; with `f = floor(ax * 13573 / 2^15)` (13573 is odd, so the product is a multiple of
/// 2^15 only for ax = 0) these are `ax != 0 && ay <= f` and `ay > 2 * ax + f`.
#[inline(always)]
fn direction(ax: u16, ay: u16) -> (bool, bool) {
    let f = ((ax as u32 * (2 * 13573)) >> 16) as u16;
    ((ax != 0) & (ay <= f), ay > 2 * ax + f)
}

/// OpenCV's non-maximum suppression with its Q15 tan(22.5°) test, for one row: `up`, `mid`,
/// `down` are magnitudes with a zero column on each side; `out` gets NONE / WEAK / EDGE for
/// every pixel and EDGE positions (`x`, `y`) go on `stack`. Branch-free so that it vectorises;
/// blocks with no magnitude above `lo` are skipped.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn nms_body<M: Copy + PartialOrd>(
    up: &[M],
    mid: &[M],
    down: &[M],
    dx: &[i16],
    dy: &[i16],
    lo: M,
    hi: M,
    out: &mut [MaybeUninit<u8>],
    stack: &mut Vec<(u32, u32)>,
    y: u32,
) {
    const BLOCK: usize = 64;
    let w = out.len();
    let (up, mid, down, dx, dy) = (&up[..w + 2], &mid[..w + 2], &down[..w + 2], &dx[..w], &dy[..w]);
    for x0 in (0..w).step_by(BLOCK) {
        let end = (x0 + BLOCK).min(w);
        let o = &mut out[x0..end];
        if mid[x0 + 1..end + 1].iter().fold(lo, |a, &m| if m > a { m } else { a }) <= lo {
            store(o, &[NONE; BLOCK]);
            continue;
        }
        let n = end - x0;
        let (u, m3, d) = (&up[x0..x0 + n + 2], &mid[x0..x0 + n + 2], &down[x0..x0 + n + 2]);
        let (gx, gy) = (&dx[x0..end], &dy[x0..end]);
        let mut block = [NONE; BLOCK];
        let codes = &mut block[..n];
        let mut any = 0u8;
        for i in 0..n {
            let m = m3[i + 1];
            let (horiz, vert) = direction(gx[i].unsigned_abs(), gy[i].unsigned_abs());
            // The four neighbour tests as bits, the direction picking one: selecting between
            // loaded neighbours instead compiles to gathers.
            let ok = ((m > m3[i]) & (m >= m3[i + 2])) as u16
                | (((m > u[i + 1]) & (m >= d[i + 1])) as u16) << 1
                | (((m > u[i + 2]) & (m > d[i])) as u16) << 2
                | (((m > u[i]) & (m > d[i + 2])) as u16) << 3;
            // Gradient signs differ: the diagonal runs up-right to down-left.
            let sel = if horiz {
                0
            } else if vert {
                1
            } else if (gx[i] ^ gy[i]) < 0 {
                2
            } else {
                3
            };
            let keep = (m > lo) & ((ok >> sel) & 1 != 0);
            let code = (keep as u8) << ((m > hi) as u8);
            any |= code;
            codes[i] = code;
        }
        store(o, &block);
        if any & EDGE != 0 {
            // Eight codes at a time; of NONE, WEAK and EDGE only EDGE has bit 1 set.
            for (k, c) in block.chunks_exact(8).enumerate() {
                let mut bits = u64::from_le_bytes(c.try_into().expect("8 bytes")) & 0x0202_0202_0202_0202;
                while bits != 0 {
                    stack.push(((x0 + 8 * k + bits.trailing_zeros() as usize / 8) as u32, y));
                    bits &= bits - 1;
                }
            }
        }
    }
}

/// `out` = the first `out.len()` codes, inline for a whole block (a library call otherwise).
#[inline(always)]
fn store<const N: usize>(out: &mut [MaybeUninit<u8>], codes: &[u8; N]) {
    if let Ok(o) = <&mut [MaybeUninit<u8>; N]>::try_from(&mut *out) {
        for (o, &c) in o.iter_mut().zip(codes) {
            *o = MaybeUninit::new(c);
        }
    } else {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = MaybeUninit::new(c);
        }
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn nms_row_l1(up: &[i16], mid: &[i16], down: &[i16], dx: &[i16], dy: &[i16], lo: i16, hi: i16, out: &mut [MaybeUninit<u8>], stack: &mut Vec<(u32, u32)>, y: u32) {
        nms_body(up, mid, down, dx, dy, lo, hi, out, stack, y)
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn nms_row_l2(up: &[i32], mid: &[i32], down: &[i32], dx: &[i16], dy: &[i16], lo: i32, hi: i32, out: &mut [MaybeUninit<u8>], stack: &mut Vec<(u32, u32)>, y: u32) {
        nms_body(up, mid, down, dx, dy, lo, hi, out, stack, y)
    }
}

/// Marks WEAK pixels of `map` (rows of `w`) 8-connected to the EDGE pixels on `stack` as EDGE.
/// EDGE pixels of the last row go on `below` too: the band pass has yet to compute the row
/// under them.
fn follow(map: &mut [u8], w: usize, stack: &mut Vec<(u32, u32)>, below: &mut Vec<(u32, u32)>) {
    const AROUND: [(usize, usize); 8] = [(!0, !0), (0, !0), (1, !0), (!0, 0), (1, 0), (!0, 1), (0, 1), (1, 1)];
    let h = map.len().checked_div(w).unwrap_or(0);
    while let Some((x, y)) = stack.pop() {
        if y as usize + 1 == h {
            below.push((x, y));
        }
        for (ox, oy) in AROUND {
            // Offsets of -1 wrap to huge values, which the bounds test rejects.
            let (nx, ny) = ((x as usize).wrapping_add(ox), (y as usize).wrapping_add(oy));
            if nx < w && ny < h && map[ny * w + nx] == WEAK {
                map[ny * w + nx] = EDGE;
                stack.push((nx as u32, ny as u32));
            }
        }
    }
}

/// Marks WEAK pixels of `row` (row `y`) under the EDGE pixels of `above` as EDGE, onto `stack`.
fn follow_down(row: &mut [u8], y: u32, above: &mut Vec<(u32, u32)>, stack: &mut Vec<(u32, u32)>) {
    for (x, _) in above.drain(..) {
        let x = x as usize;
        for nx in x.saturating_sub(1)..(x + 2).min(row.len()) {
            if row[nx] == WEAK {
                row[nx] = EDGE;
                stack.push((nx as u32, y));
            }
        }
    }
}

multiversion! {
    /// Hysteresis codes to the output values: EDGE to 255, the rest to 0.
    fn final_pass(map: &mut [u8]) {
        for v in map.iter_mut() {
            *v = if *v == EDGE { 255 } else { 0 };
        }
    }
}

/// Canny edges of `src` (3x3 Sobel) with integer thresholds already in magnitude units.
pub(crate) fn canny3(src: &Image<u8>, lo: i32, hi: i32, l2: bool) -> Image<u8> {
    if l2 {
        canny3_with::<i32>(src, lo, hi)
    } else {
        canny3_with::<i16>(src, lo, hi)
    }
}

fn canny3_with<M: Mag>(src: &Image<u8>, lo: i32, hi: i32) -> Image<u8> {
    let (w, h) = (src.width(), src.height());
    let (lo, hi) = (M::threshold(lo), M::threshold(hi));
    let row = |y: isize| src.row(y.clamp(0, h as isize - 1) as usize);
    // First rows of the bands the parallel pass used (its split is not ours to know).
    let starts = Mutex::new(Vec::new());
    let band_pass = |y0: usize, band: &mut [MaybeUninit<u8>]| {
        let n = band.len() / w;
        let mut dx = vec![vec![0i16; w]; 3];
        let mut dy = vec![vec![0i16; w]; 3];
        let mut mag = vec![vec![M::default(); w + 2]; 3];
        let (mut vs, mut vd) = (vec![0i16; w + 2], vec![0i16; w + 2]);
        // Slot of source row y is (y + 1) % 3; rows outside the image keep zero magnitudes.
        let mut fill = |y: isize, dx: &mut [Vec<i16>], dy: &mut [Vec<i16>], mag: &mut [Vec<M>]| {
            let s = (y + 1).rem_euclid(3) as usize;
            if y < 0 || y >= h as isize {
                mag[s].fill(M::default());
            } else {
                M::sobel(row(y - 1), row(y), row(y + 1), &mut dx[s], &mut dy[s], &mut mag[s], &mut vs, &mut vd);
            }
        };
        fill(y0 as isize - 1, &mut dx, &mut dy, &mut mag);
        fill(y0 as isize, &mut dx, &mut dy, &mut mag);
        // Weak edges are followed row by row, while the rows they reach are still in cache.
        let (mut stack, mut below) = (Vec::new(), Vec::new());
        for r in 0..n {
            let y = (y0 + r) as isize;
            fill(y + 1, &mut dx, &mut dy, &mut mag);
            let (u, m, d) = (y.rem_euclid(3) as usize, (y + 1).rem_euclid(3) as usize, (y + 2).rem_euclid(3) as usize);
            let out = &mut band[r * w..(r + 1) * w];
            M::nms([&mag[u], &mag[m], &mag[d]], &dx[m], &dy[m], lo, hi, out, &mut stack, r as u32);
            // SAFETY: `nms` wrote every value of rows 0..=r.
            let done = unsafe { std::slice::from_raw_parts_mut(band.as_mut_ptr() as *mut u8, (r + 1) * w) };
            follow_down(&mut done[r * w..], r as u32, &mut below, &mut stack);
            follow(done, w, &mut stack, &mut below);
        }
        starts.lock().unwrap_or_else(|e| e.into_inner()).push(y0);
    };
    let fill = |data: &mut [MaybeUninit<u8>]| par_rows(data, w, band_pass);
    // SAFETY: the band pass writes every value (`nms` covers each row of each band).
    let mut out = unsafe { Image::<u8>::from_fn_uninit(w, h, 1, fill) }.expect("one channel");
    // Edges reaching a band boundary continue into the next band.
    let map = out.data_mut();
    let mut stack = Vec::new();
    for b in starts.into_inner().unwrap_or_else(|e| e.into_inner()) {
        if b == 0 {
            continue;
        }
        for x in 0..w {
            for (from, to) in [(b - 1, b), (b, b - 1)] {
                if map[from * w + x] == EDGE {
                    for t in x.saturating_sub(1)..(x + 2).min(w) {
                        if map[to * w + t] == WEAK {
                            map[to * w + t] = EDGE;
                            stack.push((t as u32, to as u32));
                        }
                    }
                }
            }
        }
    }
    follow(map, w, &mut stack, &mut Vec::new());
    par_rows(map, w, |_, rows| final_pass(rows));
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
    fn direction_classes_match_opencv_tests() {
        for ax in 0..=1020i32 {
            for ay in 0..=1020i32 {
                let tg22x = ax * 13573;
                let want = ((ay << 15) < tg22x, (ay << 15) > tg22x + (ax << 16));
                assert_eq!(direction(ax as u16, ay as u16), want, "{ax} {ay}");
            }
        }
    }

    /// The multiversioned row kernels (AVX-512 or AVX2 where the CPU has them) against the same
    /// bodies compiled for the baseline target, on odd widths and extreme values.
    #[test]
    fn vector_row_kernels_match_baseline() {
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for w in [1usize, 2, 3, 15, 63, 64, 65, 127, 130, 257] {
            let rows: Vec<Vec<u8>> =
                (0..3).map(|_| (0..w).map(|_| if next() % 3 == 0 { 255 } else { next() as u8 }).collect()).collect();
            let (a, b, c) = (&rows[0], &rows[1], &rows[2]);
            let (mut dx, mut dy, mut vs, mut vd) = (vec![0i16; w], vec![0i16; w], vec![0i16; w + 2], vec![0i16; w + 2]);
            let (mut dx2, mut dy2) = (dx.clone(), dy.clone());
            let (mut m1, mut m1b) = (vec![0i16; w + 2], vec![0i16; w + 2]);
            sobel_row_l1(a, b, c, &mut dx, &mut dy, &mut m1, &mut vs, &mut vd);
            sobel_body(a, b, c, &mut dx2, &mut dy2, &mut m1b, &mut vs, &mut vd, |gx, gy| gx.abs() + gy.abs());
            assert!(dx == dx2 && dy == dy2 && m1 == m1b, "sobel l1 {w}");
            let (mut m2, mut m2b) = (vec![0i32; w + 2], vec![0i32; w + 2]);
            sobel_row_l2(a, b, c, &mut dx, &mut dy, &mut m2, &mut vs, &mut vd);
            sobel_body(a, b, c, &mut dx2, &mut dy2, &mut m2b, &mut vs, &mut vd, |gx, gy| {
                gx as i32 * gx as i32 + gy as i32 * gy as i32
            });
            assert!(m2 == m2b, "sobel l2 {w}");
            // NMS on random gradients and magnitudes (independent of each other, so that every
            // direction meets every neighbour order).
            for (lo, hi) in [(-1, 0), (100, 300), (1000, 1500)] {
                let gx: Vec<i16> = (0..w).map(|_| (next() % 2041) as i16 - 1020).collect();
                let gy: Vec<i16> = (0..w).map(|_| (next() % 2041) as i16 - 1020).collect();
                let mags: Vec<Vec<i16>> = (0..3)
                    .map(|_| {
                        let mut r: Vec<i16> = (0..w + 2).map(|_| (next() % 2041) as i16).collect();
                        (r[0], r[w + 1]) = (0, 0);
                        r
                    })
                    .collect();
                let run = |vector: bool| {
                    let mut out = vec![MaybeUninit::new(9u8); w];
                    let mut stack = Vec::new();
                    let (u, m, d) = (&mags[0], &mags[1], &mags[2]);
                    if vector {
                        nms_row_l1(u, m, d, &gx, &gy, lo, hi, &mut out, &mut stack, 5);
                    } else {
                        nms_body(u, m, d, &gx, &gy, lo, hi, &mut out, &mut stack, 5);
                    }
                    // SAFETY: the kernels write every value (and it started initialised).
                    (out.iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<u8>>(), stack)
                };
                let mags32: Vec<Vec<i32>> = mags.iter().map(|r| r.iter().map(|&v| v as i32).collect()).collect();
                let run32 = |vector: bool| {
                    let mut out = vec![MaybeUninit::new(9u8); w];
                    let mut stack = Vec::new();
                    let (u, m, d) = (&mags32[0], &mags32[1], &mags32[2]);
                    let (lo, hi) = (lo as i32, hi as i32);
                    if vector {
                        nms_row_l2(u, m, d, &gx, &gy, lo, hi, &mut out, &mut stack, 5);
                    } else {
                        nms_body(u, m, d, &gx, &gy, lo, hi, &mut out, &mut stack, 5);
                    }
                    // SAFETY: as above.
                    (out.iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<u8>>(), stack)
                };
                let want = run(false);
                assert_eq!(run(true), want, "nms {w} {lo} {hi}");
                assert_eq!(run32(true), want, "nms i32 {w} {lo} {hi}");
                assert_eq!(run32(false), want, "nms i32 baseline {w} {lo} {hi}");
            }
        }
    }

    #[test]
    fn small_and_odd_sizes_match_serial_reference() {
        // Rows shorter than, equal to and just past the 64-pixel blocks; single rows and columns.
        for (w, h) in [(1, 1), (1, 7), (7, 1), (2, 2), (63, 5), (64, 3), (65, 9), (129, 31), (200, 171)] {
            // Black and white noise reaches the largest gradients (|dx| = 1020, L1 2040).
            let bw = (0..w * h).map(|i| if ((i * 2654435761usize) >> 13) & 1 == 0 { 0 } else { 255 }).collect();
            for img in [test_image(w, h), Image::from_vec(w, h, 1, bw).unwrap()] {
                let cases = [
                    (-1, 0, false),
                    (0, 5, false),
                    (20, 60, false),
                    (2000, 2039, false),
                    (2039, 40000, false),
                    (100, 900, true),
                    (-1, 40, true),
                    (1_000_000, 2_000_000, true),
                ];
                for (lo, hi, l2) in cases {
                    let fast = canny3(&img, lo, hi, l2).into_vec();
                    let slow = crate::edges::canny_generic(&img, lo as i64, hi as i64, 3, l2).unwrap();
                    assert!(fast == slow.data(), "{w}x{h} {lo} {hi} {l2}");
                }
            }
        }
    }

    #[test]
    fn banded_canny_matches_serial_reference() {
        // Tall thin bands and a long edge crossing them exercise the boundary pass.
        for (w, h) in [(301, 257), (1000, 40), (40, 1000)] {
            let img = test_image(w, h);
            for (lo, hi, l2) in [(20, 60, false), (50, 150, false), (400, 3600, true), (5, 300, false)] {
                let fast = canny3(&img, lo, hi, l2).into_vec();
                let slow = crate::edges::canny_generic(&img, lo as i64, hi as i64, 3, l2).unwrap();
                assert_eq!(fast.iter().filter(|&&v| v > 0).count(), slow.data().iter().filter(|&&v| v > 0).count());
                assert!(fast == slow.data(), "{w}x{h} {lo} {hi} {l2}");
            }
        }
    }
}
