//! OpenCV's bit-exact 8-bit Gaussian blur (8-fraction-bit taps, 16-bit row results), fused: each
//! band of output rows runs the horizontal pass of every source row it needs once, into a ring of
//! `kh` u16 rows, and the vertical pass of each output row straight into the unzeroed output.
//!
//! OpenCV's result is the exact integer `(sum ky[i] * kx[j] * p[i][j] + 2^15) >> 16` (no
//! intermediate rounding: row results fit 16 bits), so the sums may be formed in any order and
//! modulo 2^16 wherever the true value fits 16 bits.
// Only the AVX2 kernels use the tap lists and symmetric halves of a plan.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
use crate::border::{border_interpolate, BorderType};
use crate::image::Image;
use crate::parallel::par_rows;
use std::mem::MaybeUninit;

/// Taps of one pass: equal mirrored taps `(k, i, j)` are added before the multiply; the others
/// (and the centre) are `(k, i)`. Zero taps are dropped.
struct Taps {
    pairs: Vec<(u16, usize, usize)>,
    singles: Vec<(u16, usize)>,
}

impl Taps {
    fn new(k: &[u16]) -> Self {
        let n = k.len();
        let (mut pairs, mut singles) = (Vec::new(), Vec::new());
        for i in 0..n / 2 {
            let j = n - 1 - i;
            if k[i] == k[j] {
                if k[i] != 0 {
                    pairs.push((k[i], i, j));
                }
            } else {
                singles.extend([(k[i], i), (k[j], j)].into_iter().filter(|t| t.0 != 0));
            }
        }
        if !n.is_multiple_of(2) && k[n / 2] != 0 {
            singles.push((k[n / 2], n / 2));
        }
        Self { pairs, singles }
    }
}

/// How the two passes compute `out`.
struct Plan {
    kx: Vec<u16>,
    row: Taps,
    ky: Vec<u16>,
    col: Taps,
    /// Both kernels share power-of-two factors `gx * gy >= 256`: with them divided out the
    /// whole sum `T` fits 16 bits and `out = (T + add) >> shift`. Otherwise ("wide") row
    /// results are stored minus 2^15 (as i16) and the vertical pass sums in i32 (`madd`).
    narrow: bool,
    shift: u32,
    add: u16,
    /// Start value of each row result: 0, or 0x8000 in the wide mode.
    init: u16,
    /// Symmetric kernels as (zero taps dropped at each end, pair taps outside in, centre).
    sym_x: Option<(usize, Vec<u16>)>,
    sym_y: Option<(usize, Vec<u16>)>,
}

/// `(z, half)`: `k` is `z` zeros, `half`, `half` mirrored without its last value, `z` zeros.
fn symmetric(k: &[u16]) -> Option<(usize, Vec<u16>)> {
    let n = k.len();
    if n.is_multiple_of(2) || (0..n / 2).any(|i| k[i] != k[n - 1 - i]) {
        return None;
    }
    let z = k[..n / 2].iter().take_while(|&&v| v == 0).count();
    Some((z, k[z..=n / 2].to_vec()))
}

/// Largest power of two dividing every tap (the taps sum to 256, so at most 256).
fn pow2_factor(k: &[u16]) -> u32 {
    k.iter().filter(|&&v| v != 0).map(|v| v.trailing_zeros()).min().unwrap_or(0).min(8)
}

impl Plan {
    fn new(kx: &[u16], ky: &[u16]) -> Self {
        let (sx, sy) = (pow2_factor(kx), pow2_factor(ky));
        let narrow = sx + sy >= 8;
        let (kx, ky): (Vec<u16>, Vec<u16>) = if narrow {
            (kx.iter().map(|v| v >> sx).collect(), ky.iter().map(|v| v >> sy).collect())
        } else {
            (kx.to_vec(), ky.to_vec())
        };
        let shift = if narrow { 16 - (sx + sy) } else { 16 };
        let add = if narrow && shift > 0 { 1 << (shift - 1) } else { 0 };
        let (sym_x, sym_y) = (symmetric(&kx), symmetric(&ky));
        let init = if narrow { 0 } else { 0x8000 };
        Self { row: Taps::new(&kx), col: Taps::new(&ky), kx, ky, narrow, shift, add, init, sym_x, sym_y }
    }
}

impl Plan {
    fn col_centre(&self) -> u16 {
        self.sym_y.as_ref().map_or(0, |(_, k)| k[k.len() - 1])
    }
}

/// Whether the AVX2 kernels can run.
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[allow(unreachable_code)]
    false
}

/// `cv::GaussianBlur` of an 8-bit image with the 8-fraction-bit symmetric kernels `kx`, `ky`
/// (each summing to 256); `simd` false runs the scalar kernels only (for tests).
pub(crate) fn gaussian_u8(src: &Image<u8>, kx: &[u16], ky: &[u16], border: BorderType, simd: bool) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let plan = Plan::new(kx, ky);
    let (kw, kh) = (kx.len(), ky.len());
    let (ax, ay) = (kw / 2, kh / 2);
    let rl = w * cn;
    // Pixels whose taps all lie in the row; those left and right of them are computed from
    // small padded copies of their neighbourhoods (source pixel of each; None: constant 0).
    let lo = ax.min(w);
    let inner = lo..w.saturating_sub(kw - 1 - ax).max(lo);
    let pad_src = |x0: usize, x1: usize| -> Vec<Option<usize>> {
        (x0..x1 + kw - 1).map(|p| border_interpolate(p as isize - ax as isize, w, border)).collect()
    };
    let edges = [(0..lo, pad_src(0, lo)), (inner.end..w, pad_src(inner.end, w))];
    let simd = simd && has_avx2();
    let row_pass = |sy: Option<usize>, out: &mut [u16], pad: &mut Vec<u8>| {
        let Some(sy) = sy else {
            out.fill(plan.init);
            return;
        };
        let row = src.row(sy);
        row_interior(row, &mut out[inner.start * cn..inner.end * cn], &plan, cn, simd);
        for (xs, srcs) in &edges {
            if xs.is_empty() {
                continue;
            }
            pad.clear();
            pad.extend(srcs.iter().flat_map(|s| (0..cn).map(move |c| s.map_or(0, |s| row[s * cn + c]))));
            row_interior(pad, &mut out[xs.start * cn..xs.end * cn], &plan, cn, simd);
        }
    };
    let fill = |data: &mut [MaybeUninit<u8>]| {
        par_rows(data, rl, |y0, band| {
            let mut ring: Vec<Vec<u16>> = (0..kh).map(|_| vec![0u16; rl]).collect();
            let mut pad = Vec::new();
            let first = y0 as isize - ay as isize;
            let rows_out = band.len() / rl;
            for r in 0..rows_out + kh - 1 {
                row_pass(border_interpolate(first + r as isize, h, border), &mut ring[r % kh], &mut pad);
                if r + 1 >= kh {
                    let y = r + 1 - kh;
                    let rows: Vec<&[u16]> = (0..kh).map(|i| ring[(y + i) % kh].as_slice()).collect();
                    col_pass(&rows, &mut band[y * rl..(y + 1) * rl], &plan, simd);
                }
            }
        })
    };
    // SAFETY: every output row is one `band` row above, all of whose values `col_pass` writes.
    unsafe { Image::<u8>::from_fn_uninit(w, h, cn, fill) }.expect("valid channel count")
}

/// Row results of the pixels whose taps all lie in `row`: `out[t] = init + sum k[j] *
/// row[t + j * cn]` (mod 2^16).
fn row_interior(row: &[u8], out: &mut [u16], plan: &Plan, cn: usize, simd: bool) {
    let n = out.len();
    if n == 0 {
        return;
    }
    assert!(row.len() >= n + (plan.kx.len() - 1) * cn, "row_interior: row too short");
    #[cfg(target_arch = "x86_64")]
    if simd && n >= 16 {
        let (src, o) = (row.as_ptr(), out.as_mut_ptr());
        // SAFETY: AVX2 is present (`simd` implies `has_avx2`); reads stay below
        // `n + (kw - 1) * cn <= row.len()` (asserted; `z` zero taps are skipped at each end)
        // and writes below `n`.
        unsafe {
            macro_rules! fixed {
                ($($p:literal)*) => {
                    match &plan.sym_x {
                        $(Some((z, k)) if k.len() == $p + 1 => {
                            row_sym::<$p>(src.add(z * cn), o, n, cn, k[..$p].try_into().unwrap(), k[$p], plan.init)
                        })*
                        _ => row_avx2(src, o, n, &plan.row, cn, plan.init),
                    }
                };
            }
            fixed!(0 1 2 3 4 5 6 7 8 9 10);
        }
        return;
    }
    let _ = simd;
    out.fill(plan.init);
    for (&k, j) in plan.kx.iter().zip(0..) {
        if k != 0 {
            for (o, &p) in out.iter_mut().zip(&row[j * cn..j * cn + n]) {
                *o = o.wrapping_add(k.wrapping_mul(p as u16));
            }
        }
    }
}

/// One output row from its `kh` row results (in source order).
fn col_pass(rows: &[&[u16]], out: &mut [MaybeUninit<u8>], plan: &Plan, simd: bool) {
    let n = out.len();
    assert!(rows.len() == plan.ky.len() && rows.iter().all(|r| r.len() >= n), "col_pass: bad rows");
    #[cfg(target_arch = "x86_64")]
    if simd && n >= 32 {
        let o = out.as_mut_ptr() as *mut u8;
        // SAFETY: AVX2 is present; every row holds at least `n` values (asserted) and the
        // kernels read and write below `n` (`MaybeUninit<u8>` has the layout of `u8`).
        unsafe {
            macro_rules! fixed {
                ($($p:literal)*) => {
                    match &plan.sym_y {
                        $(Some((z, k)) if k.len() == $p + 1 => {
                            let (r, k) = (&rows[*z..], k[..$p].try_into().unwrap());
                            if plan.narrow {
                                col_narrow_sym::<$p>(r, k, plan.col_centre(), plan.add, plan.shift, o, n)
                            } else {
                                col_wide_sym::<$p>(r, k, plan.col_centre(), o, n)
                            }
                        })*
                        _ if plan.narrow => col_narrow_avx2(rows, &plan.col, plan.add, plan.shift, o, n),
                        _ => col_wide_avx2(rows, &plan.ky, o, n),
                    }
                };
            }
            fixed!(0 1 2 3 4 5 6 7 8 9 10);
        }
        return;
    }
    let _ = simd;
    if plan.narrow {
        for (t, o) in out.iter_mut().enumerate() {
            let s = rows.iter().zip(&plan.ky).fold(0u16, |s, (r, &k)| s.wrapping_add(k.wrapping_mul(r[t])));
            *o = MaybeUninit::new(((s as u32 + plan.add as u32) >> plan.shift).min(255) as u8);
        }
    } else {
        for (t, o) in out.iter_mut().enumerate() {
            let s =
                rows.iter().zip(&plan.ky).fold((1 << 23) + (1 << 15), |s, (r, &k)| s + k as i32 * r[t] as i16 as i32);
            *o = MaybeUninit::new((s >> 16).clamp(0, 255) as u8);
        }
    }
}

/// [`row_interior`] for a symmetric kernel of `2P + 1` taps (`k` the outer `P`, `kc` the
/// centre), unrolled: mirrored pixels are added before the multiply. 16 values per vector
/// (`n >= 16`; the last step overlaps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_sym<const P: usize>(src: *const u8, out: *mut u16, n: usize, cn: usize, k: [u16; P], kc: u16, init: u16) {
    use std::arch::x86_64::*;
    let ld = |o: usize| _mm256_cvtepu8_epi16(_mm_loadu_si128(src.add(o) as *const __m128i));
    let kv = k.map(|k| _mm256_set1_epi16(k as i16));
    let (kcv, initv) = (_mm256_set1_epi16(kc as i16), _mm256_set1_epi16(init as i16));
    let step = |x: usize| {
        let mut acc = _mm256_add_epi16(initv, _mm256_mullo_epi16(ld(x + P * cn), kcv));
        for (t, kv) in kv.iter().enumerate() {
            let s = _mm256_add_epi16(ld(x + t * cn), ld(x + (2 * P - t) * cn));
            acc = _mm256_add_epi16(acc, _mm256_mullo_epi16(s, *kv));
        }
        _mm256_storeu_si256(out.add(x) as *mut __m256i, acc);
    };
    crate::simd::overlapping_blocks(n, 16, step);
}

/// Narrow vertical pass over `2P + 1` rows with a symmetric kernel (`k` outer taps, `kc`
/// centre), unrolled, 32 outputs per step (`n >= 32`; the last step overlaps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn col_narrow_sym<const P: usize>(
    rows: &[&[u16]],
    k: [u16; P],
    kc: u16,
    add: u16,
    shift: u32,
    out: *mut u8,
    n: usize,
) {
    use std::arch::x86_64::*;
    let lo: [*const u16; P] = std::array::from_fn(|t| rows[t].as_ptr());
    let hi: [*const u16; P] = std::array::from_fn(|t| rows[2 * P - t].as_ptr());
    let c = rows[P].as_ptr();
    let ld = |p: *const u16, o: usize| _mm256_loadu_si256(p.add(o) as *const __m256i);
    let kv = k.map(|k| _mm256_set1_epi16(k as i16));
    let (kcv, addv) = (_mm256_set1_epi16(kc as i16), _mm256_set1_epi16(add as i16));
    let cnt = _mm_cvtsi32_si128(shift as i32);
    let step = |x: usize| {
        let mut a0 = _mm256_add_epi16(addv, _mm256_mullo_epi16(ld(c, x), kcv));
        let mut a1 = _mm256_add_epi16(addv, _mm256_mullo_epi16(ld(c, x + 16), kcv));
        for t in 0..P {
            let s0 = _mm256_add_epi16(ld(lo[t], x), ld(hi[t], x));
            let s1 = _mm256_add_epi16(ld(lo[t], x + 16), ld(hi[t], x + 16));
            a0 = _mm256_add_epi16(a0, _mm256_mullo_epi16(s0, kv[t]));
            a1 = _mm256_add_epi16(a1, _mm256_mullo_epi16(s1, kv[t]));
        }
        let v = _mm256_packus_epi16(_mm256_srl_epi16(a0, cnt), _mm256_srl_epi16(a1, cnt));
        _mm256_storeu_si256(out.add(x) as *mut __m256i, _mm256_permute4x64_epi64(v, 0xD8));
    };
    crate::simd::overlapping_blocks(n, 32, step);
}

/// Wide vertical pass over `2P + 1` rows with a symmetric kernel, unrolled: each mirrored pair
/// of rows is interleaved and multiplied by `(k, k)` with `madd`, the centre row by `(kc, 0)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn col_wide_sym<const P: usize>(rows: &[&[u16]], k: [u16; P], kc: u16, out: *mut u8, n: usize) {
    use std::arch::x86_64::*;
    let lo: [*const u16; P] = std::array::from_fn(|t| rows[t].as_ptr());
    let hi: [*const u16; P] = std::array::from_fn(|t| rows[2 * P - t].as_ptr());
    let c = rows[P].as_ptr();
    let ld = |p: *const u16, o: usize| _mm256_loadu_si256(p.add(o) as *const __m256i);
    let kv = k.map(|k| _mm256_set1_epi32((k as u32 * 0x1_0001) as i32));
    let kcv = _mm256_set1_epi32(kc as i32);
    let zero = _mm256_setzero_si256();
    // sum k * (r - 2^15) + 2^15 * 256 (the taps' sum) + 2^15 (rounding).
    let bias = _mm256_set1_epi32((1 << 23) + (1 << 15));
    let half = |x: usize| {
        let v = ld(c, x);
        let mut a0 = _mm256_add_epi32(bias, _mm256_madd_epi16(_mm256_unpacklo_epi16(v, zero), kcv));
        let mut a1 = _mm256_add_epi32(bias, _mm256_madd_epi16(_mm256_unpackhi_epi16(v, zero), kcv));
        for t in 0..P {
            let (a, b) = (ld(lo[t], x), ld(hi[t], x));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), kv[t]));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), kv[t]));
        }
        // unpacklo/hi split each 128-bit lane, and packs joins them back in order.
        _mm256_packs_epi32(_mm256_srai_epi32(a0, 16), _mm256_srai_epi32(a1, 16))
    };
    let step = |x: usize| {
        let v = _mm256_permute4x64_epi64(_mm256_packus_epi16(half(x), half(x + 16)), 0xD8);
        _mm256_storeu_si256(out.add(x) as *mut __m256i, v);
    };
    crate::simd::overlapping_blocks(n, 32, step);
}

/// [`row_interior`] with AVX2, 16 values per vector (`n >= 16`; the last step overlaps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2(src: *const u8, out: *mut u16, n: usize, taps: &Taps, cn: usize, init: u16) {
    use std::arch::x86_64::*;
    let ld = |o: usize| _mm256_cvtepu8_epi16(_mm_loadu_si128(src.add(o) as *const __m128i));
    let initv = _mm256_set1_epi16(init as i16);
    let step = |x: usize| {
        let mut acc = initv;
        for &(k, i, j) in &taps.pairs {
            let s = _mm256_add_epi16(ld(x + i * cn), ld(x + j * cn));
            acc = _mm256_add_epi16(acc, if k == 1 { s } else { _mm256_mullo_epi16(s, _mm256_set1_epi16(k as i16)) });
        }
        for &(k, i) in &taps.singles {
            acc = _mm256_add_epi16(acc, _mm256_mullo_epi16(ld(x + i * cn), _mm256_set1_epi16(k as i16)));
        }
        _mm256_storeu_si256(out.add(x) as *mut __m256i, acc);
    };
    crate::simd::overlapping_blocks(n, 16, step);
}

/// Narrow vertical pass, 32 outputs per step (`n >= 32`; the last step overlaps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn col_narrow_avx2(rows: &[&[u16]], taps: &Taps, add: u16, shift: u32, out: *mut u8, n: usize) {
    use std::arch::x86_64::*;
    let ld = |i: usize, o: usize| _mm256_loadu_si256(rows[i].as_ptr().add(o) as *const __m256i);
    let addv = _mm256_set1_epi16(add as i16);
    let cnt = _mm_cvtsi32_si128(shift as i32);
    let step = |x: usize| {
        let (mut a0, mut a1) = (addv, addv);
        for &(k, i, j) in &taps.pairs {
            let kv = _mm256_set1_epi16(k as i16);
            let s0 = _mm256_add_epi16(ld(i, x), ld(j, x));
            let s1 = _mm256_add_epi16(ld(i, x + 16), ld(j, x + 16));
            if k == 1 {
                a0 = _mm256_add_epi16(a0, s0);
                a1 = _mm256_add_epi16(a1, s1);
            } else {
                a0 = _mm256_add_epi16(a0, _mm256_mullo_epi16(s0, kv));
                a1 = _mm256_add_epi16(a1, _mm256_mullo_epi16(s1, kv));
            }
        }
        for &(k, i) in &taps.singles {
            let kv = _mm256_set1_epi16(k as i16);
            a0 = _mm256_add_epi16(a0, _mm256_mullo_epi16(ld(i, x), kv));
            a1 = _mm256_add_epi16(a1, _mm256_mullo_epi16(ld(i, x + 16), kv));
        }
        let v = _mm256_packus_epi16(_mm256_srl_epi16(a0, cnt), _mm256_srl_epi16(a1, cnt));
        _mm256_storeu_si256(out.add(x) as *mut __m256i, _mm256_permute4x64_epi64(v, 0xD8));
    };
    crate::simd::overlapping_blocks(n, 32, step);
}

/// Wide vertical pass: rows hold `r - 2^15` as i16; consecutive rows are interleaved and
/// multiplied by their two taps with `madd` into i32, 32 outputs per step (`n >= 32`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn col_wide_avx2(rows: &[&[u16]], k: &[u16], out: *mut u8, n: usize) {
    use std::arch::x86_64::*;
    let kh = k.len();
    let ld = |i: usize, o: usize| _mm256_loadu_si256(rows[i].as_ptr().add(o) as *const __m256i);
    // sum k * (r - 2^15) + 2^15 * 256 (the taps' sum) + 2^15 (rounding).
    let bias = _mm256_set1_epi32((1 << 23) + (1 << 15));
    let step = |x: usize| {
        let mut acc = [bias; 4];
        let mut i = 0;
        while i < kh {
            let (ka, kb) = (k[i], if i + 1 < kh { k[i + 1] } else { 0 });
            if ka != 0 || kb != 0 {
                let kv = _mm256_set1_epi32((ka as u32 | (kb as u32) << 16) as i32);
                for h in 0..2 {
                    let a = ld(i, x + 16 * h);
                    let b = if kb != 0 { ld(i + 1, x + 16 * h) } else { _mm256_setzero_si256() };
                    acc[2 * h] = _mm256_add_epi32(acc[2 * h], _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), kv));
                    acc[2 * h + 1] =
                        _mm256_add_epi32(acc[2 * h + 1], _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), kv));
                }
            }
            i += 2;
        }
        // unpacklo/hi split each 128-bit lane, and packs joins them back in order.
        let v0 = _mm256_packs_epi32(_mm256_srai_epi32(acc[0], 16), _mm256_srai_epi32(acc[1], 16));
        let v1 = _mm256_packs_epi32(_mm256_srai_epi32(acc[2], 16), _mm256_srai_epi32(acc[3], 16));
        let v = _mm256_permute4x64_epi64(_mm256_packus_epi16(v0, v1), 0xD8);
        _mm256_storeu_si256(out.add(x) as *mut __m256i, v);
    };
    crate::simd::overlapping_blocks(n, 32, step);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: usize, h: usize, cn: usize, seed: u64) -> Image<u8> {
        let mut s = seed;
        let data = (0..w * h * cn)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Saturated runs (0 and 255) stress the extremes of the sums.
                match i % 11 {
                    0..=2 => 255,
                    3 => 0,
                    _ => (s >> 56) as u8,
                }
            })
            .collect();
        Image::from_vec(w, h, cn, data).unwrap()
    }

    /// Direct evaluation of OpenCV's arithmetic, no shortcuts.
    fn reference(src: &Image<u8>, kx: &[u16], ky: &[u16], border: BorderType) -> Vec<u8> {
        let (w, h, cn) = (src.width(), src.height(), src.channels());
        let mut out = vec![0u8; w * h * cn];
        for y in 0..h {
            for x in 0..w {
                for c in 0..cn {
                    let mut s = 0u64;
                    for (i, &a) in ky.iter().enumerate() {
                        let Some(sy) = border_interpolate((y + i) as isize - (ky.len() / 2) as isize, h, border) else {
                            continue;
                        };
                        let r: u64 = kx
                            .iter()
                            .enumerate()
                            .map(|(j, &b)| {
                                let sx = border_interpolate((x + j) as isize - (kx.len() / 2) as isize, w, border);
                                sx.map_or(0, |sx| b as u64 * src.row(sy)[sx * cn + c] as u64)
                            })
                            .sum();
                        s += a as u64 * r;
                    }
                    out[(y * w + x) * cn + c] = ((s + (1 << 15)) >> 16).min(255) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn simd_matches_scalar_and_reference() {
        // Narrow (5x5 1-4-6-4-1, 3x3) and wide (sigma 2: 13 taps) kernels, odd widths.
        // Also zero end taps (trimmed), a 1-tap kernel and one too long for the unrolled kernels.
        let long: Vec<u16> = (0..23).map(|i| if i == 11 { 234 } else { 1 }).collect();
        let kernels: [&[u16]; 7] = [
            &[16, 64, 96, 64, 16],
            &[64, 128, 64],
            &[1, 2, 7, 16, 31, 45, 52, 45, 31, 16, 7, 2, 1],
            &[8, 28, 56, 72, 56, 28, 8],
            &[0, 3, 250, 3, 0],
            &[256],
            &long,
        ];
        for (w, h) in [(1, 9), (7, 5), (33, 14), (70, 3)] {
            for cn in [1, 3, 4] {
                let img = noise(w, h, cn, (w * 31 + h * 7 + cn) as u64);
                for kx in kernels {
                    for ky in kernels {
                        for border in [BorderType::Reflect101, BorderType::Constant, BorderType::Replicate] {
                            let fast = gaussian_u8(&img, kx, ky, border, true);
                            let slow = gaussian_u8(&img, kx, ky, border, false);
                            let tag = format!("{w}x{h}x{cn} {} {} {border:?}", kx.len(), ky.len());
                            assert_eq!(fast.data(), slow.data(), "{tag}");
                            assert_eq!(slow.data(), &reference(&img, kx, ky, border)[..], "{tag}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn plan_modes() {
        let p = Plan::new(&[16, 64, 96, 64, 16], &[16, 64, 96, 64, 16]);
        assert!(p.narrow && p.shift == 8 && p.kx == [1, 4, 6, 4, 1]);
        assert!(!Plan::new(&[8, 28, 56, 72, 56, 28, 8], &[8, 28, 56, 72, 56, 28, 8]).narrow);
        let t = Taps::new(&[0, 3, 250, 3, 0]);
        assert_eq!((t.pairs, t.singles), (vec![(3, 1, 3)], vec![(250, 2)]));
    }
}
