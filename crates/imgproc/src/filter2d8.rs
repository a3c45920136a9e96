//! `cv::filter2D` of an 8-bit image with a float kernel: per pixel `delta`, then `+= v * k` over
//! the non-zero taps in row-major order (f32, product and sum each rounded: no FMA), rounded half
//! to even and saturated. Each padded source row is converted to f32 once, into a ring of `kh`
//! rows per band; each output row is summed in registers, 32 values per AVX2 step.
//!
//! Kernels of small integers with an integer `delta` take an i16 path instead: there every
//! product and partial sum of the float path is an integer below 2^15 in magnitude, hence exact
//! in f32, so the float result is the exact integer sum, which i16 lanes compute as well.
use crate::border::{border_interpolate, BorderType};
use crate::filter::RowPadder;
use crate::gauss8::has_avx2;
use crate::image::{Image, Pixel};
use crate::parallel::par_rows;
use crate::simd::multiversion;
use std::mem::MaybeUninit;

/// `taps` are `(kernel row, kernel column, value)`, non-zero, in row-major order; `simd` false
/// runs the scalar row kernel only (for tests).
#[allow(clippy::too_many_arguments)]
pub(crate) fn filter_2d_u8(
    src: &Image<u8>,
    taps: &[(usize, usize, f32)],
    kh: usize,
    ay: usize,
    delta: f32,
    border: BorderType,
    padder: &RowPadder,
    simd: bool,
) -> Image<u8> {
    if let Some((itaps, idelta)) = int_taps(taps, delta) {
        return filter_2d_u8_int(src, &itaps, (kh, ay), idelta, border, padder.span(), simd);
    }
    filter_2d_u8_float(src, taps, kh, ay, delta, border, padder, simd)
}

/// The float path of [`filter_2d_u8`].
#[allow(clippy::too_many_arguments)]
fn filter_2d_u8_float(
    src: &Image<u8>,
    taps: &[(usize, usize, f32)],
    kh: usize,
    ay: usize,
    delta: f32,
    border: BorderType,
    padder: &RowPadder,
    simd: bool,
) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let rl = w * cn;
    let simd = simd && has_avx2();
    // Offsets of the taps in the padded rows.
    let taps: Vec<(usize, usize, f32)> = taps.iter().map(|&(i, j, k)| (i, j * cn, k)).collect();
    let fill = |data: &mut [MaybeUninit<u8>]| {
        par_rows(data, rl, |y0, band| {
            let rows_out = band.len() / rl;
            let mut ring: Vec<Vec<f32>> = (0..kh).map(|_| vec![0f32; padder.len()]).collect();
            let first = y0 as isize - ay as isize;
            for r in 0..rows_out + kh - 1 {
                let pad = &mut ring[r % kh];
                match border_interpolate(first + r as isize, h, border) {
                    Some(sy) => {
                        u8_to_f32(src.row(sy), &mut pad[padder.interior_start()..]);
                        padder.fill_borders(0.0, pad);
                    }
                    None => pad.fill(0.0),
                }
                if r + 1 >= kh {
                    let y = r + 1 - kh;
                    let rows: Vec<&[f32]> = (0..kh).map(|i| ring[(y + i) % kh].as_slice()).collect();
                    filter_row(&rows, &taps, delta, &mut band[y * rl..(y + 1) * rl], simd);
                }
            }
        })
    };
    // SAFETY: every output row is one `band` row above, all of which `filter_row` writes.
    unsafe { Image::<u8>::from_fn_uninit(w, h, cn, fill) }.expect("valid channel count")
}

multiversion! {
    fn u8_to_f32(s: &[u8], d: &mut [f32]) {
        for (d, &s) in d.iter_mut().zip(s) {
            *d = s as f32;
        }
    }
}

/// One output row from its `kh` padded f32 source rows (tap `(i, o, k)` reads `rows[i][x + o]`).
fn filter_row(rows: &[&[f32]], taps: &[(usize, usize, f32)], delta: f32, out: &mut [MaybeUninit<u8>], simd: bool) {
    let n = out.len();
    assert!(taps.iter().all(|&(i, o, _)| rows[i].len() >= n + o), "filter_row: rows too short");
    #[cfg(target_arch = "x86_64")]
    if simd && n >= 32 {
        // SAFETY: AVX2 is present (`simd` implies `has_avx2`); tap reads stay below `n + o`
        // (asserted) and writes below `n` (`MaybeUninit<u8>` has the layout of `u8`).
        unsafe { filter_row_avx2(rows, taps, delta, out.as_mut_ptr() as *mut u8, n) };
        return;
    }
    let _ = simd;
    for (x, o) in out.iter_mut().enumerate() {
        let a = taps.iter().fold(delta, |a, &(i, off, k)| a + rows[i][x + off] * k);
        *o = MaybeUninit::new(u8::from_f32(a));
    }
}

/// [`filter_row`] with AVX2: four vectors of 8 floats summed in registers over all taps,
/// then clamped to [0, 255] (NaN to 0), rounded half to even and packed (`n >= 32`; the last
/// step overlaps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn filter_row_avx2(rows: &[&[f32]], taps: &[(usize, usize, f32)], delta: f32, out: *mut u8, n: usize) {
    use std::arch::x86_64::*;
    let (zero, max) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let step = |x: usize| {
        let mut acc = [_mm256_set1_ps(delta); 4];
        for &(i, off, k) in taps {
            let p = rows[i].as_ptr().add(x + off);
            let kv = _mm256_set1_ps(k);
            for (q, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_loadu_ps(p.add(8 * q)), kv));
            }
        }
        // `max` with the sum first returns the second operand (0) for NaN.
        let r = acc.map(|a| _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(a, zero), max)));
        let v = _mm256_packus_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
        _mm256_storeu_si256(out.add(x) as *mut __m256i, _mm256_permutevar8x32_epi32(v, order));
    };
    crate::simd::overlapping_blocks(n, 32, step);
}

/// Taps `(kernel row, offset, value)` of the i16 path.
type IntTaps = Vec<(usize, usize, i16)>;

/// Integer taps and delta when the float sums are exact integers that fit i16: every tap and
/// `delta` integral and `|delta| + 255 * sum |k| <= 32767`.
fn int_taps(taps: &[(usize, usize, f32)], delta: f32) -> Option<(IntTaps, i16)> {
    let int = |v: f32| v.is_finite() && v == v.trunc() && v.abs() <= 32767.0;
    let bound = taps.iter().map(|t| t.2.abs() as f64 * 255.0).sum::<f64>() + delta.abs() as f64;
    (taps.iter().all(|t| int(t.2)) && int(delta) && bound <= 32767.0)
        .then(|| (taps.iter().map(|&(i, j, k)| (i, j, k as i16)).collect(), delta as i16))
}

/// The i16 path of [`filter_2d_u8`]: straight from the source rows, the pixels whose taps leave
/// the row from small padded copies of their neighbourhoods.
fn filter_2d_u8_int(
    src: &Image<u8>,
    taps: &[(usize, usize, i16)],
    (kh, ay): (usize, usize),
    delta: i16,
    border: BorderType,
    (ax, right): (usize, usize),
    simd: bool,
) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let rl = w * cn;
    let kw = ax + right + 1;
    let simd = simd && has_avx2();
    let taps: IntTaps = taps.iter().map(|&(i, j, k)| (i, j * cn, k)).collect();
    let zero = vec![0u8; rl];
    let lo = ax.min(w);
    let inner = lo..w.saturating_sub(right).max(lo);
    let pad_src = |x0: usize, x1: usize| -> Vec<Option<usize>> {
        (x0..x1 + kw - 1).map(|p| border_interpolate(p as isize - ax as isize, w, border)).collect()
    };
    let edges = [(0..lo, pad_src(0, lo)), (inner.end..w, pad_src(inner.end, w))];
    let fill = |data: &mut [MaybeUninit<u8>]| {
        par_rows(data, rl, |y0, band| {
            let mut pads: Vec<Vec<u8>> = vec![Vec::new(); kh];
            for (yy, out) in band.chunks_mut(rl).enumerate() {
                let y = (y0 + yy) as isize;
                let rows: Vec<&[u8]> = (0..kh)
                    .map(|i| {
                        border_interpolate(y + i as isize - ay as isize, h, border).map_or(&zero[..], |s| src.row(s))
                    })
                    .collect();
                int_row(&rows, &taps, delta, &mut out[inner.start * cn..inner.end * cn], simd);
                for (xs, srcs) in &edges {
                    if xs.is_empty() {
                        continue;
                    }
                    for (pad, row) in pads.iter_mut().zip(&rows) {
                        pad.clear();
                        pad.extend(srcs.iter().flat_map(|s| (0..cn).map(move |c| s.map_or(0, |s| row[s * cn + c]))));
                    }
                    let prow: Vec<&[u8]> = pads.iter().map(|p| p.as_slice()).collect();
                    int_row(&prow, &taps, delta, &mut out[xs.start * cn..xs.end * cn], simd);
                }
            }
        })
    };
    // SAFETY: every output row is one `out` above: `int_row` writes its interior and both edges.
    unsafe { Image::<u8>::from_fn_uninit(w, h, cn, fill) }.expect("valid channel count")
}

/// `out[t] = clamp(delta + sum k * rows[i][t + o])` over the taps `(i, o, k)`.
fn int_row(rows: &[&[u8]], taps: &[(usize, usize, i16)], delta: i16, out: &mut [MaybeUninit<u8>], simd: bool) {
    let n = out.len();
    if n == 0 {
        return;
    }
    assert!(taps.iter().all(|&(i, o, _)| rows[i].len() >= n + o), "int_row: rows too short");
    #[cfg(target_arch = "x86_64")]
    if simd && n >= 32 {
        // SAFETY: AVX2 is present (`simd` implies `has_avx2`); tap reads stay below `n + o`
        // (asserted) and writes below `n` (`MaybeUninit<u8>` has the layout of `u8`).
        unsafe { int_row_avx2(rows, taps, delta, out.as_mut_ptr() as *mut u8, n) };
        return;
    }
    let _ = simd;
    for (x, o) in out.iter_mut().enumerate() {
        let s = taps.iter().fold(delta as i32, |a, &(i, off, k)| a + k as i32 * rows[i][x + off] as i32);
        *o = MaybeUninit::new(s.clamp(0, 255) as u8);
    }
}

/// [`int_row`] with AVX2, 32 values per step in two vectors of i16 (`n >= 32`; the last step
/// overlaps); `packus` saturates to [0, 255].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_row_avx2(rows: &[&[u8]], taps: &[(usize, usize, i16)], delta: i16, out: *mut u8, n: usize) {
    use std::arch::x86_64::*;
    let ld = |p: *const u8| _mm256_cvtepu8_epi16(_mm_loadu_si128(p as *const __m128i));
    let step = |x: usize| {
        let (mut a0, mut a1) = (_mm256_set1_epi16(delta), _mm256_set1_epi16(delta));
        for &(i, off, k) in taps {
            let p = rows[i].as_ptr().add(x + off);
            let kv = _mm256_set1_epi16(k);
            a0 = _mm256_add_epi16(a0, _mm256_mullo_epi16(ld(p), kv));
            a1 = _mm256_add_epi16(a1, _mm256_mullo_epi16(ld(p.add(16)), kv));
        }
        let v = _mm256_permute4x64_epi64(_mm256_packus_epi16(a0, a1), 0xD8);
        _mm256_storeu_si256(out.add(x) as *mut __m256i, v);
    };
    crate::simd::overlapping_blocks(n, 32, step);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_scalar() {
        // Non-integer taps (rounding ties and saturation both ways), odd widths, 1/3/4 channels.
        let k: Vec<f32> = (0..15).map(|i| (i as f32 - 6.0) / 11.0).collect();
        let sharpen = [0.0, -1.0, 0.0, -1.0, 5.0, -1.0, 0.0, -1.0, 0.0];
        let half = [0.5f32; 9];
        let wide: Vec<f32> = (0..25).map(|i| [-2.0, 3.0, 0.0, 1.0, -1.0][i % 5]).collect();
        assert!(int_taps(&[(0, 0, 5.0), (1, 1, -1.0)], 2.0).is_some());
        assert!(int_taps(&[(0, 0, 5.5)], 0.0).is_none() && int_taps(&[(0, 0, 200.0)], 0.0).is_none());
        for (w, h) in [(1, 5), (7, 4), (33, 6), (45, 3)] {
            for cn in [1, 3, 4] {
                let data: Vec<u8> = (0..w * h * cn).map(|i| ((i * 2654435761usize) >> 9) as u8).collect();
                let img = Image::from_vec(w, h, cn, data).unwrap();
                for border in [BorderType::Reflect101, BorderType::Constant] {
                    for (kern, kw, kh, delta) in [
                        (&k[..], 5, 3, 0.5),
                        (&sharpen[..], 3, 3, 0.0),
                        (&sharpen[..], 3, 3, -7.0),
                        (&wide[..], 5, 5, 3.0),
                        (&half[..], 3, 3, 0.5),
                        (&half[..], 1, 1, 0.0),
                    ] {
                        let taps: Vec<(usize, usize, f32)> =
                            (0..kh * kw).filter(|&t| kern[t] != 0.0).map(|t| (t / kw, t % kw, kern[t])).collect();
                        let padder = RowPadder::new(w, cn, kw, kw / 2, border);
                        let run = |simd| filter_2d_u8(&img, &taps, kh, kh / 2, delta, border, &padder, simd);
                        let tag = format!("{w}x{h}x{cn} {kw}x{kh} {border:?}");
                        assert_eq!(run(true).data(), run(false).data(), "{tag}");
                        // The integer path (sharpen) equals the float one.
                        let float = |simd| filter_2d_u8_float(&img, &taps, kh, kh / 2, delta, border, &padder, simd);
                        assert_eq!(run(true).data(), float(false).data(), "{tag}");
                        assert_eq!(float(true).data(), float(false).data(), "{tag}");
                    }
                }
            }
        }
    }
}
