//! Row kernels for 8-bit filters, multiversioned so that they vectorise with AVX2 where the CPU
//! has it. Flat slices in, flat slices out; the callers handle borders and rows.
use crate::simd::multiversion;

multiversion! {
    /// `out[x] = sum of pad[x + i * cn]` for `i < kw` (sums fit u16: `kw * 255 < 65536`).
    pub(crate) fn box_row_u16(pad: &[u8], out: &mut [u16], kw: usize, cn: usize) {
        let n = out.len();
        for (o, &p) in out.iter_mut().zip(&pad[..n]) {
            *o = p as u16;
        }
        for i in 1..kw {
            for (o, &p) in out.iter_mut().zip(&pad[i * cn..i * cn + n]) {
                *o += p as u16;
            }
        }
    }
}

/// `(m, s)` with `(n * m) >> s == n / d` for every `n <= max` (checked exhaustively).
pub(crate) fn magic_div(d: u32, max: u32) -> Option<(u32, u32)> {
    (16..32).find_map(|s| {
        let m = (1u64 << s).div_ceil(d as u64);
        (m * max as u64 <= u32::MAX as u64 && (0..=max).all(|n| ((n as u64 * m) >> s) as u32 == n / d))
            .then_some((m as u32, s))
    })
}

multiversion! {
    /// `acc[x] = min/max(acc[x], src[x])`.
    pub(crate) fn minmax_into(acc: &mut [u8], src: &[u8], dilate: bool) {
        if dilate {
            for (a, &b) in acc.iter_mut().zip(src) {
                *a = (*a).max(b);
            }
        } else {
            for (a, &b) in acc.iter_mut().zip(src) {
                *a = (*a).min(b);
            }
        }
    }
}

multiversion! {
    /// Horizontal min/max over `kw` pixels: `out[x] = op(pad[x + i * cn])`.
    pub(crate) fn minmax_row(pad: &[u8], out: &mut [u8], kw: usize, cn: usize, dilate: bool) {
        let n = out.len();
        out.copy_from_slice(&pad[..n]);
        for i in 1..kw {
            let s = &pad[i * cn..i * cn + n];
            if dilate {
                for (a, &b) in out.iter_mut().zip(s) {
                    *a = (*a).max(b);
                }
            } else {
                for (a, &b) in out.iter_mut().zip(s) {
                    *a = (*a).min(b);
                }
            }
        }
    }
}

/// Row length below which the 3x3 median takes the generic network (not worth the setup).
pub(crate) const MB: usize = 128;

multiversion! {
    /// Integer row convolution: `out[x] = sum k[i] * pad[x + i * cn]`.
    pub(crate) fn conv_row_i32(pad: &[u8], out: &mut [i32], k: &[i32], cn: usize) {
        let n = out.len();
        out.fill(0);
        for (i, &ki) in k.iter().enumerate() {
            if ki == 0 {
                continue;
            }
            for (o, &p) in out.iter_mut().zip(&pad[i * cn..i * cn + n]) {
                *o += p as i32 * ki;
            }
        }
    }
}

multiversion! {
    /// Integer column convolution of i32 rows, saturated to i16.
    pub(crate) fn conv_col_i16(rows: &[&[i32]], k: &[i32], out: &mut [i16]) {
        let mut acc = [0i32; 512];
        for x0 in (0..out.len()).step_by(512) {
            let len = (out.len() - x0).min(512);
            let acc = &mut acc[..len];
            acc.fill(0);
            for (r, &ki) in rows.iter().zip(k) {
                if ki == 0 {
                    continue;
                }
                for (a, &v) in acc.iter_mut().zip(&r[x0..x0 + len]) {
                    *a += v * ki;
                }
            }
            for (o, &a) in out[x0..x0 + len].iter_mut().zip(acc.iter()) {
                *o = a.clamp(-32768, 32767) as i16;
            }
        }
    }
}

#[inline(always)]
fn med3(a: u8, b: u8, c: u8) -> u8 {
    a.min(b).max(a.max(b).min(c))
}

multiversion! {
    /// 3x3 median of one output row from three source rows (replicated border): sort each
    /// column of three once, then median = med3(max of lows, med3 of mids, min of highs) over
    /// the 3 columns. `lo`, `mid`, `hi` hold `out.len() + 2 * cn` values.
    pub(crate) fn median3_row(p: [&[u8]; 3], out: &mut [u8], cn: usize, lo: &mut [u8], mid: &mut [u8], hi: &mut [u8]) {
        let rl = out.len();
        let (p0, p1, p2) = (&p[0][..rl], &p[1][..rl], &p[2][..rl]);
        {
            let (lo, mid, hi) = (&mut lo[cn..cn + rl], &mut mid[cn..cn + rl], &mut hi[cn..cn + rl]);
            for i in 0..rl {
                let (a, b, c) = (p0[i], p1[i], p2[i]);
                let (l, h) = (a.min(b), a.max(b));
                lo[i] = l.min(c);
                hi[i] = h.max(c);
                mid[i] = l.max(h.min(c));
            }
        }
        // Sorting replicated columns is replicating sorted ones.
        for v in [&mut *lo, &mut *mid, &mut *hi] {
            v.copy_within(cn..2 * cn, 0);
            v.copy_within(rl..rl + cn, rl + cn);
        }
        let m = out.len();
        let (l0, l1, l2) = (&lo[..m], &lo[cn..cn + m], &lo[2 * cn..2 * cn + m]);
        let (m0, m1, m2) = (&mid[..m], &mid[cn..cn + m], &mid[2 * cn..2 * cn + m]);
        let (h0, h1, h2) = (&hi[..m], &hi[cn..cn + m], &hi[2 * cn..2 * cn + m]);
        for i in 0..m {
            let a = l0[i].max(l1[i]).max(l2[i]);
            let b = med3(m0[i], m1[i], m2[i]);
            let c = h0[i].min(h1[i]).min(h2[i]);
            out[i] = med3(a, b, c);
        }
    }
}

/// Whether [`median3_row_direct`] handles rows of `rl` values with `cn` channels: the CPU has
/// AVX2 and a row holds at least `32 + 2 * cn` values.
pub(crate) fn median3_direct(rl: usize, cn: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if rl >= 32 + 2 * cn {
        return std::arch::is_x86_feature_detected!("avx2");
    }
    let _ = (rl, cn);
    false
}

/// 3x3 median of one output row straight from the three source rows (replicated border), 32
/// bytes per AVX2 step with no buffer: each of the three columns of a step is
/// sorted in registers (three compare-exchanges), then median = med3(max of lows, med3 of mids,
/// min of highs). The last step overlaps the previous one; the first and last pixel take the
/// scalar path. Writes every value of `out` when [`median3_direct`] holds for its length;
/// panics otherwise (or when a row is shorter than `out`).
pub(crate) fn median3_row_direct(p: [&[u8]; 3], out: &mut [u8], cn: usize) {
    let rl = out.len();
    assert!(median3_direct(rl, cn) && p.iter().all(|r| r.len() >= rl), "median3_row_direct: row too short");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX2 and the rows hold `rl >= 32 + 2 * cn` values (asserted).
        // (No AVX-512 version: its intrinsics need Rust 1.89, above the workspace's MSRV.)
        unsafe { median3_row_avx2(p, out, cn) };
        median3_edges(p, out, cn);
    }
}

/// Columns `0..cn` and `rl - cn..rl` of [`median3_row_direct`] (replicated horizontally).
fn median3_edges(p: [&[u8]; 3], out: &mut [u8], cn: usize) {
    let rl = out.len();
    for i in (0..cn).chain(rl - cn..rl) {
        let (l, r) = (if i < cn { i } else { i - cn }, if i + cn >= rl { i } else { i + cn });
        let mut v = [0u8; 9];
        for (k, row) in p.iter().enumerate() {
            v[k * 3] = row[l];
            v[k * 3 + 1] = row[i];
            v[k * 3 + 2] = row[r];
        }
        v.sort_unstable();
        out[i] = v[4];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn median3_row_avx2(p: [&[u8]; 3], out: &mut [u8], cn: usize) {
    use std::arch::x86_64::*;
    let rl = out.len();
    let end = rl - cn;
    let (p0, p1, p2) = (p[0].as_ptr(), p[1].as_ptr(), p[2].as_ptr());
    // Sorted column (low, middle, high) of the three rows at byte offset `o`.
    let col = |o: usize| {
        let a = _mm256_loadu_si256(p0.add(o) as *const __m256i);
        let b = _mm256_loadu_si256(p1.add(o) as *const __m256i);
        let c = _mm256_loadu_si256(p2.add(o) as *const __m256i);
        let (l, h) = (_mm256_min_epu8(a, b), _mm256_max_epu8(a, b));
        (_mm256_min_epu8(l, c), _mm256_max_epu8(l, _mm256_min_epu8(h, c)), _mm256_max_epu8(h, c))
    };
    let med3 = |a: __m256i, b: __m256i, c: __m256i| {
        _mm256_max_epu8(_mm256_min_epu8(a, b), _mm256_min_epu8(_mm256_max_epu8(a, b), c))
    };
    let mut x = cn;
    loop {
        let xx = if x + 32 <= end { x } else { end - 32 };
        // Reads bytes xx - cn .. xx + cn + 32 <= rl of each row.
        let (l0, m0, h0) = col(xx - cn);
        let (l1, m1, h1) = col(xx);
        let (l2, m2, h2) = col(xx + cn);
        let lo = _mm256_max_epu8(_mm256_max_epu8(l0, l1), l2);
        let hi = _mm256_min_epu8(_mm256_min_epu8(h0, h1), h2);
        let v = med3(lo, med3(m0, m1, m2), hi);
        _mm256_storeu_si256(out.as_mut_ptr().add(xx) as *mut __m256i, v);
        if xx + 32 >= end {
            break;
        }
        x += 32;
    }
}

/// Lanes per 5x5 median block: one AVX2 vector of bytes.
pub(crate) const M5: usize = 32;

multiversion! {
    /// 5x5 median of one output row from five source rows (replicated border). First each
    /// column's vertical window of 5 is sorted (shared by the 5 outputs that use it, into
    /// `cols[rank]`, which hold `out.len() + 4 * cn` values), then a 79-comparator network,
    /// pruned from Batcher's merge sort for inputs made of 5 sorted columns (checked on all
    /// 0/1 inputs of that form), leaves the median in slot 12.
    pub(crate) fn median5_row(rows: [&[u8]; 5], out: &mut [u8], cn: usize, cols: &mut [Vec<u8>]) {
        let rl = out.len();
        // Sort each vertical window of 5 in registers, a block of lanes at a time (the last
        // block overlaps the previous one); optimal 9-comparator network for 5.
        let o = 2 * cn;
        let mut x0 = 0;
        while x0 < rl {
            let x = if x0 + M5 <= rl { x0 } else { rl - M5 };
            let mut v = [[0u8; M5]; 5];
            for (vk, p) in v.iter_mut().zip(rows) {
                vk.copy_from_slice(&p[x..x + M5]);
            }
            macro_rules! cs {
                ($a:literal, $b:literal) => {{
                    let (p, q) = (v[$a], v[$b]);
                    for t in 0..M5 {
                        v[$a][t] = p[t].min(q[t]);
                        v[$b][t] = p[t].max(q[t]);
                    }
                }};
            }
            cs!(0, 1); cs!(3, 4); cs!(2, 4); cs!(2, 3); cs!(0, 3); cs!(0, 2); cs!(1, 4); cs!(1, 3); cs!(1, 2);
            for (c, vk) in cols.iter_mut().zip(&v) {
                c[o + x..o + x + M5].copy_from_slice(vk);
            }
            x0 += M5;
        }
        for c in cols.iter_mut() {
            for k in 0..2 {
                c.copy_within(2 * cn..3 * cn, k * cn);
                c.copy_within(rl + cn..rl + 2 * cn, rl + (2 + k) * cn);
            }
        }
        let rl = out.len();
        debug_assert!(rl >= M5);
        let mut x0 = 0;
        while x0 < rl {
            // The last block overlaps the previous one so that every block is full.
            let x = if x0 + M5 <= rl { x0 } else { rl - M5 };
            let mut v = [[0u8; M5]; 25];
            for c in 0..5 {
                for k in 0..5 {
                    v[c * 5 + k].copy_from_slice(&cols[k][x + c * cn..x + c * cn + M5]);
                }
            }
            macro_rules! cx {
                ($a:literal, $b:literal) => {{
                    let (p, q) = (v[$a], v[$b]);
                    for t in 0..M5 {
                        v[$a][t] = p[t].min(q[t]);
                        v[$b][t] = p[t].max(q[t]);
                    }
                }};
            }
            cx!(4, 5); cx!(14, 15); cx!(5, 7); cx!(8, 10); cx!(9, 11); cx!(12, 14); cx!(5, 6); cx!(9, 10);
            cx!(13, 14); cx!(0, 4); cx!(1, 5); cx!(2, 6); cx!(8, 12); cx!(10, 14); cx!(11, 15); cx!(16, 20);
            cx!(17, 21); cx!(18, 22); cx!(19, 23); cx!(2, 4); cx!(3, 5); cx!(10, 12); cx!(11, 13); cx!(18, 20);
            cx!(19, 21); cx!(1, 2); cx!(3, 4); cx!(5, 6); cx!(9, 10); cx!(11, 12); cx!(13, 14); cx!(17, 18);
            cx!(19, 20); cx!(0, 8); cx!(1, 9); cx!(2, 10); cx!(3, 11); cx!(4, 12); cx!(5, 13); cx!(6, 14);
            cx!(7, 15); cx!(4, 8); cx!(5, 9); cx!(6, 10); cx!(7, 11); cx!(20, 24); cx!(2, 4); cx!(3, 5);
            cx!(6, 8); cx!(7, 9); cx!(10, 12); cx!(11, 13); cx!(22, 24); cx!(3, 4); cx!(5, 6); cx!(7, 8);
            cx!(9, 10); cx!(11, 12); cx!(21, 22); cx!(23, 24); cx!(3, 19); cx!(4, 20); cx!(5, 21); cx!(6, 22);
            cx!(7, 23); cx!(8, 24); cx!(8, 16); cx!(9, 17); cx!(10, 18); cx!(11, 19); cx!(12, 20); cx!(13, 21);
            cx!(6, 10); cx!(7, 11); cx!(12, 16); cx!(13, 17); cx!(10, 12); cx!(11, 13); cx!(11, 12);
            out[x..x + M5].copy_from_slice(&v[12]);
            x0 += M5;
        }
    }
}

multiversion! {
    /// `acc[x] += v[x]` (u16).
    pub(crate) fn add_u16(acc: &mut [u16], v: &[u16]) {
        for (a, &b) in acc.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
}

/// `((s + add) * m) >> sh`: a box sum divided by the area, rounded (see `magic_div`).
#[inline(always)]
fn box_div(s: u16, (add, m, sh): (u32, u32, u32)) -> u8 {
    (((s as u32 + add) * m) >> sh).min(255) as u8
}

multiversion! {
    /// Writes the blurred row of column sums `col`.
    pub(crate) fn box_div_u16(col: &[u16], out: &mut [u8], div: (u32, u32, u32)) {
        for (o, &s) in out.iter_mut().zip(col) {
            *o = box_div(s, div);
        }
    }
}

multiversion! {
    /// Writes the blurred row of `col`, then slides it down one row: `+ entering - leaving`.
    pub(crate) fn box_div_slide_u16(col: &mut [u16], entering: &[u16], leaving: &[u16], out: &mut [u8], div: (u32, u32, u32)) {
        for (((o, c), &e), &l) in out.iter_mut().zip(col.iter_mut()).zip(entering).zip(leaving) {
            *o = box_div(*c, div);
            *c = c.wrapping_add(e).wrapping_sub(l);
        }
    }
}
