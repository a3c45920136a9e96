//! 8-bit `cv::warpAffine` kernels with OpenCV 5's float arithmetic (1, 3 and 4 channels):
//! coordinates `fma(m0, x, y*m1 + m2)` in its 16-pixel vector blocks and
//! `fma(x, m0, y*m1) + m2` in the scalar tail, bilinear blend with fused multiply-adds, rounding
//! half to even.
use crate::simd::multiversion;

/// Source image of a warp (tightly packed rows).
pub(crate) struct WarpSrc<'a> {
    pub data: &'a [u8],
    pub w: usize,
    pub h: usize,
}

/// OpenCV's vector block (AVX2: two registers of 8 floats); pixels after the last full block
/// take the scalar formula.
const BLOCK: usize = 16;
const CHUNK: usize = 64;

fn vector_end(width: usize) -> usize {
    width / BLOCK * BLOCK
}

/// Source coordinates of destination pixels `x0..x0+n` of row `y` (matrix `m`: destination to
/// source, as float).
#[inline(always)]
fn coords(m: &[f32; 6], y: usize, x0: usize, vend: usize, sx: &mut [f32], sy: &mut [f32]) {
    let yf = y as f32;
    let (ym1, ym4) = (yf * m[1], yf * m[4]);
    let (mx, my) = (ym1 + m[2], ym4 + m[5]);
    let n = sx.len();
    let split = vend.saturating_sub(x0).min(n);
    // destination sizes fit i32 (checked by the caller); i32 -> f32 converts in one instruction
    let x0 = x0 as i32;
    for i in 0..split {
        let xf = (x0 + i as i32) as f32;
        sx[i] = m[0].mul_add(xf, mx);
        sy[i] = m[3].mul_add(xf, my);
    }
    for i in split..n {
        let xf = (x0 + i as i32) as f32;
        sx[i] = xf.mul_add(m[0], ym1) + m[2];
        sy[i] = xf.mul_add(m[3], ym4) + m[5];
    }
}

/// `saturate_cast<uchar>` of a float (round half to even): adding 1.5 * 2^23 leaves the rounded
/// value in the low mantissa bits, which keeps the loop in vector registers.
#[inline(always)]
pub(crate) fn round_u8(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 12_582_912.0).to_bits() as u8
}

/// Little-endian word of the `2 * CN` bytes of a horizontal pixel pair (zero above them).
#[inline(always)]
fn pair_word<const CN: usize>(bytes: impl Fn(usize) -> u8) -> u64 {
    let mut v = 0u64;
    for k in 0..2 * CN {
        v |= (bytes(k) as u64) << (8 * k);
    }
    v
}

/// Source coordinates of the `width` pixels of destination row `y`, as the bilinear kernel.
pub(crate) fn warp_coords(m: &[f32; 6], y: usize, width: usize, sx: &mut [f32], sy: &mut [f32]) {
    coords(m, y, 0, vector_end(width), &mut sx[..width], &mut sy[..width]);
}

/// Scratch of one chunk of pixels.
struct Scratch<const CN: usize> {
    sx: [f32; CHUNK],
    sy: [f32; CHUNK],
    ixs: [i32; CHUNK],
    iys: [i32; CHUNK],
    // Each pixel's top and bottom pixel pairs as 64-bit words, split into low and high halves
    // so the unpacking below runs on 32-bit lanes.
    words: [[u32; CHUNK]; 4],
    res: [[u8; CHUNK]; CN],
}

/// Rows `y0..` (one per `rl`-long row of `band`), columns `xs..xe` of a `width`-wide warp.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn linear_band<const CN: usize>(
    s: &WarpSrc,
    m: &[f32; 6],
    y0: usize,
    band: &mut [u8],
    rl: usize,
    xs: usize,
    xe: usize,
    width: usize,
    replicate: bool,
    bval: u8,
    avx2: bool,
) {
    let mut sc = Scratch::<CN> {
        sx: [0.0; CHUNK],
        sy: [0.0; CHUNK],
        ixs: [0; CHUNK],
        iys: [0; CHUNK],
        words: [[0; CHUNK]; 4],
        res: [[0; CHUNK]; CN],
    };
    for (i, row) in band.chunks_mut(rl).enumerate() {
        linear_row::<CN>(s, m, y0 + i, xs, width, &mut row[xs * CN..xe * CN], replicate, bval, avx2, &mut sc);
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn linear_row<const CN: usize>(
    s: &WarpSrc,
    m: &[f32; 6],
    y: usize,
    xs: usize,
    width: usize,
    out: &mut [u8],
    replicate: bool,
    bval: u8,
    avx2: bool,
    sc: &mut Scratch<CN>,
) {
    let (w, h) = (s.w as i32, s.h as i32);
    let stride = s.w * CN;
    let dw = out.len() / CN;
    let vend = vector_end(width).saturating_sub(xs);
    let Scratch { sx, sy, ixs, iys, words, res } = sc;
    let data = s.data;
    for x0 in (0..dw).step_by(CHUNK) {
        let n = (dw - x0).min(CHUNK);
        coords(m, y, xs + x0, vend + xs, &mut sx[..n], &mut sy[..n]);
        for i in 0..n {
            // Clamped first: far outside is all the same, and the conversion needs no saturation.
            // (`max`/`min` return the number when the other operand is NaN, unlike `clamp`.)
            #[allow(clippy::manual_clamp)]
            let (fx, fy) = (sx[i].floor().max(-1e9).min(1e9), sy[i].floor().max(-1e9).min(1e9));
            // SAFETY: `fx`, `fy` are finite and within i32 after the clamps above.
            unsafe {
                ixs[i] = fx.to_int_unchecked::<i32>();
                iys[i] = fy.to_int_unchecked::<i32>();
            }
            sx[i] -= fx;
            sy[i] -= fy;
        }
        let dst = &mut out[x0 * CN..(x0 + n) * CN];
        if !replicate {
            // a chunk wholly outside the source (frequent around rotations) is just the border
            let touches = (0..n).fold(false, |t, i| {
                t | (((ixs[i] + 1) as u32) < (w + 1) as u32 && ((iys[i] + 1) as u32) < (h + 1) as u32)
            });
            if !touches {
                dst.fill(bval);
                continue;
            }
        }
        // Bit i: pixel i is written already (groups of 8 wholly inside the source, 3 or 4
        // channels: blended straight from the source, one pixel's channels per vector).
        let mut written = 0u64;
        #[cfg(target_arch = "x86_64")]
        if avx2 && (CN == 3 || CN == 4) {
            // SAFETY: the CPU has AVX2 and FMA (checked by the caller).
            written =
                unsafe { x86::inner_blend::<CN>(data, stride, (w, h), &ixs[..n], &iys[..n], &sx[..n], &sy[..n], dst) };
            if written.count_ones() as usize == n {
                continue;
            }
        }
        // Bit i: pixel i's words are read already (groups of 8 wholly inside the source).
        let mut done = written;
        #[cfg(target_arch = "x86_64")]
        if avx2 && written == 0 {
            // SAFETY: the CPU has AVX2 (checked by the caller).
            done = unsafe { x86::inner_words::<CN>(data, stride, (w, h), &ixs[..n], &iys[..n], words) };
        }
        for i in 0..n {
            if done >> i & 1 == 1 {
                continue;
            }
            let (ix, iy) = (ixs[i], iys[i]);
            let o = (iy as isize * stride as isize + ix as isize * CN as isize) as usize;
            let (top, bot) =
                if (ix as u32) < (w - 1) as u32 && (iy as u32) < (h - 1) as u32 && o + stride + 8 <= data.len() {
                    let t = u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
                    let b = u64::from_le_bytes(data[o + stride..o + stride + 8].try_into().expect("8 bytes"));
                    (t, b)
                } else if !replicate && ((ix + 1) as u32 >= (w + 1) as u32 || (iy + 1) as u32 >= (h + 1) as u32) {
                    let v = pair_word::<CN>(|_| bval);
                    (v, v)
                } else {
                    let fetch = |xx: i32, yy: i32, c: usize| -> u8 {
                        if (xx as u32) < w as u32 && (yy as u32) < h as u32 || replicate {
                            data[yy.clamp(0, h - 1) as usize * stride + xx.clamp(0, w - 1) as usize * CN + c]
                        } else {
                            bval
                        }
                    };
                    let t = pair_word::<CN>(|k| fetch(ix + (k / CN) as i32, iy, k % CN));
                    let b = pair_word::<CN>(|k| fetch(ix + (k / CN) as i32, iy + 1, k % CN));
                    (t, b)
                };
            words[0][i] = top as u32;
            words[1][i] = (top >> 32) as u32;
            words[2][i] = bot as u32;
            words[3][i] = (bot >> 32) as u32;
        }
        for (c, r) in res.iter_mut().enumerate() {
            // byte k of a pair word: low half for k < 4, high half after
            let byte = |lo: &[u32; CHUNK], hi: &[u32; CHUNK], k: usize, i: usize| -> f32 {
                let v = if k < 4 { lo[i] >> (8 * k) } else { hi[i] >> (8 * (k - 4)) };
                (v & 0xff) as f32
            };
            for i in 0..CHUNK {
                let p00 = byte(&words[0], &words[1], c, i);
                let p01 = byte(&words[0], &words[1], c + CN, i);
                let p10 = byte(&words[2], &words[3], c, i);
                let p11 = byte(&words[2], &words[3], c + CN, i);
                let v0 = sx[i].mul_add(p01 - p00, p00);
                let v1 = sx[i].mul_add(p11 - p10, p10);
                let v = sy[i].mul_add(v1 - v0, v0);
                r[i] = round_u8(v);
            }
        }
        for (i, o) in dst.chunks_exact_mut(CN).enumerate() {
            if written >> i & 1 == 1 {
                continue;
            }
            for c in 0..CN {
                o[c] = res[c][i];
            }
        }
    }
}

multiversion! {
    /// Columns `xs..xe` of the destination rows in `band` (rows of `rl` bytes, the first being
    /// row `y0`) of an 8-bit bilinear `warp_affine` `width` pixels wide (`cn` 1, 3 or 4).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn warp_linear_band_u8(s: &WarpSrc, m: &[f32; 6], y0: usize, band: &mut [u8], rl: usize, xs: usize, xe: usize, width: usize, cn: usize, replicate: bool, bval: u8) {
        let avx2 = has_avx2();
        match cn {
            1 => linear_band::<1>(s, m, y0, band, rl, xs, xe, width, replicate, bval, avx2),
            3 => linear_band::<3>(s, m, y0, band, rl, xs, xe, width, replicate, bval, avx2),
            _ => linear_band::<4>(s, m, y0, band, rl, xs, xe, width, replicate, bval, avx2),
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHUNK;
    use std::arch::x86_64::*;

    /// Lanes of the groups of 8 pixels whose 2x2 neighbourhoods all lie inside the source and
    /// whose 8-byte reads (top and bottom row) end inside `data`: bit per pixel.
    #[inline(always)]
    fn inside_groups<const CN: usize>(
        data: &[u8],
        stride: usize,
        (w, h): (i32, i32),
        ixs: &[i32],
        iys: &[i32],
        offs: &mut [i32; CHUNK],
    ) -> u64 {
        let n = ixs.len().min(iys.len()).min(CHUNK);
        if data.len() >= i32::MAX as usize - 16 || data.len() < stride + 8 {
            return 0;
        }
        // SAFETY (intrinsics below): the callers are compiled with AVX2.
        unsafe {
            let limit = _mm256_set1_epi32((data.len() - stride - 8) as i32);
            let (wm1, hm1) = (_mm256_set1_epi32(w - 1), _mm256_set1_epi32(h - 1));
            let (vstride, vcn) = (_mm256_set1_epi32(stride as i32), _mm256_set1_epi32(CN as i32));
            let mut inside = 0u64;
            let mut i = 0;
            while i + 8 <= n {
                let ix = _mm256_loadu_si256(ixs[i..i + 8].as_ptr() as *const __m256i);
                let iy = _mm256_loadu_si256(iys[i..i + 8].as_ptr() as *const __m256i);
                let o = _mm256_add_epi32(_mm256_mullo_epi32(iy, vstride), _mm256_mullo_epi32(ix, vcn));
                let neg = _mm256_or_si256(_mm256_or_si256(ix, iy), o);
                let out = _mm256_or_si256(
                    _mm256_or_si256(
                        _mm256_cmpgt_epi32(_mm256_add_epi32(ix, _mm256_set1_epi32(1)), wm1),
                        _mm256_cmpgt_epi32(_mm256_add_epi32(iy, _mm256_set1_epi32(1)), hm1),
                    ),
                    _mm256_or_si256(_mm256_cmpgt_epi32(o, limit), _mm256_srai_epi32::<31>(neg)),
                );
                if _mm256_testz_si256(out, out) == 1 {
                    inside |= 0xff << i;
                    _mm256_storeu_si256(offs[i..i + 8].as_mut_ptr() as *mut __m256i, o);
                }
                i += 8;
            }
            inside
        }
    }

    /// Bilinear pixels (3 or 4 channels) of the groups [`inside_groups`] finds, written into
    /// `dst` (`CN` bytes per pixel): the channels of two pixels in the lanes of one vector, the
    /// same fused multiply-adds and rounding as the scalar blend. Returns a bit per pixel written.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn inner_blend<const CN: usize>(
        data: &[u8],
        stride: usize,
        wh: (i32, i32),
        ixs: &[i32],
        iys: &[i32],
        sx: &[f32],
        sy: &[f32],
        dst: &mut [u8],
    ) -> u64 {
        let mut offs = [0i32; CHUNK];
        let inside = inside_groups::<CN>(data, stride, wh, ixs, iys, &mut offs);
        let n = ixs.len().min(iys.len()).min(sx.len()).min(sy.len()).min(dst.len() / CN);
        // Two pixels per step: pixel j's channels in lanes 0..4, pixel j + 1's in lanes 4..8.
        let dup = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        let mut i = 0;
        while i + 8 <= n {
            if inside >> i & 1 == 1 {
                for j in (i..i + 8).step_by(2) {
                    // SAFETY: `inside_groups` checked off + stride + 8 <= data.len() for these
                    // lanes; j + 1 < n <= the lengths of `sx`, `sy`.
                    let (ta, ba, tb, bb, fx, fy) = unsafe {
                        let pa = data.as_ptr().add(offs[j] as usize);
                        let pb = data.as_ptr().add(offs[j + 1] as usize);
                        (
                            _mm_loadl_epi64(pa as *const __m128i),
                            _mm_loadl_epi64(pa.add(stride) as *const __m128i),
                            _mm_loadl_epi64(pb as *const __m128i),
                            _mm_loadl_epi64(pb.add(stride) as *const __m128i),
                            _mm256_permutevar8x32_ps(
                                _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64(
                                    sx.as_ptr().add(j) as *const __m128i
                                ))),
                                dup,
                            ),
                            _mm256_permutevar8x32_ps(
                                _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64(
                                    sy.as_ptr().add(j) as *const __m128i
                                ))),
                                dup,
                            ),
                        )
                    };
                    let widen =
                        |a: __m128i, b: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi32(a, b)));
                    let tl = widen(ta, tb);
                    let tr = widen(next_pixel::<CN>(ta), next_pixel::<CN>(tb));
                    let bl = widen(ba, bb);
                    let br = widen(next_pixel::<CN>(ba), next_pixel::<CN>(bb));
                    let v0 = _mm256_fmadd_ps(fx, _mm256_sub_ps(tr, tl), tl);
                    let v1 = _mm256_fmadd_ps(fx, _mm256_sub_ps(br, bl), bl);
                    let v = _mm256_fmadd_ps(fy, _mm256_sub_ps(v1, v0), v0);
                    // Round half to even (the default MXCSR mode), as `round_u8`; the blend of
                    // bytes with weights in [0, 1) stays within [0, 255].
                    let q = _mm256_cvtps_epi32(v);
                    let q = _mm256_packus_epi16(_mm256_packs_epi32(q, q), q);
                    let (wa, wb) = (_mm256_extract_epi32::<0>(q) as u32, _mm256_extract_epi32::<4>(q) as u32);
                    for (k, word) in [(j, wa), (j + 1, wb)] {
                        let o = k * CN;
                        if o + 4 <= dst.len() {
                            // (with 3 channels the fourth byte is the next pixel's first, which
                            // is written after this one)
                            dst[o..o + 4].copy_from_slice(&word.to_le_bytes());
                        } else {
                            dst[o..o + CN].copy_from_slice(&word.to_le_bytes()[..CN]);
                        }
                    }
                }
            }
            i += 8;
        }
        inside & if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// The bytes from the second pixel (`CN` bytes on) at the bottom.
    #[inline(always)]
    fn next_pixel<const CN: usize>(v: __m128i) -> __m128i {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            if CN == 3 {
                _mm_srli_si128::<3>(v)
            } else {
                _mm_srli_si128::<4>(v)
            }
        }
    }

    /// For each group of 8 pixels whose 2x2 neighbourhoods all lie inside the source (and whose
    /// 8-byte reads end inside `data`), reads the top and bottom pixel pairs into `words` as the
    /// scalar loop would, with the offsets and bounds done 8 at a time and no per-pixel checks.
    /// (AVX2 gathers were slower here on AMD Zen 3.) Returns a bit per pixel done.
    #[target_feature(enable = "avx2")]
    pub(super) fn inner_words<const CN: usize>(
        data: &[u8],
        stride: usize,
        (w, h): (i32, i32),
        ixs: &[i32],
        iys: &[i32],
        words: &mut [[u32; CHUNK]; 4],
    ) -> u64 {
        let n = ixs.len().min(iys.len()).min(CHUNK);
        // Offsets are i32 lanes: only for sources under 2 GiB; and a source without a second
        // row plus 8 bytes has no pixel this path may read.
        if data.len() >= i32::MAX as usize - 16 || data.len() < stride + 8 {
            return 0;
        }
        let limit = _mm256_set1_epi32((data.len() - stride - 8) as i32);
        let (wm1, hm1) = (_mm256_set1_epi32(w - 1), _mm256_set1_epi32(h - 1));
        let (vstride, vcn) = (_mm256_set1_epi32(stride as i32), _mm256_set1_epi32(CN as i32));
        let mut done = 0u64;
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            let (ix, iy) = unsafe {
                (
                    _mm256_loadu_si256(ixs[i..i + 8].as_ptr() as *const __m256i),
                    _mm256_loadu_si256(iys[i..i + 8].as_ptr() as *const __m256i),
                )
            };
            let o = _mm256_add_epi32(_mm256_mullo_epi32(iy, vstride), _mm256_mullo_epi32(ix, vcn));
            // 0 <= ix < w - 1, 0 <= iy < h - 1, o <= len - stride - 8 (signed compares).
            let neg = _mm256_or_si256(_mm256_or_si256(ix, iy), o);
            let out = _mm256_or_si256(
                _mm256_or_si256(
                    _mm256_cmpgt_epi32(_mm256_add_epi32(ix, _mm256_set1_epi32(1)), wm1),
                    _mm256_cmpgt_epi32(_mm256_add_epi32(iy, _mm256_set1_epi32(1)), hm1),
                ),
                _mm256_or_si256(_mm256_cmpgt_epi32(o, limit), _mm256_srai_epi32::<31>(neg)),
            );
            if _mm256_testz_si256(out, out) == 1 {
                let mut offs = [0i32; 8];
                // SAFETY: `offs` holds 8 i32.
                unsafe { _mm256_storeu_si256(offs.as_mut_ptr() as *mut __m256i, o) };
                for (j, &off) in offs.iter().enumerate() {
                    let off = off as usize;
                    // SAFETY: checked above for every lane: off + stride + 8 <= data.len().
                    let (t, b) = unsafe {
                        let p = data.as_ptr().add(off);
                        ((p as *const u64).read_unaligned(), (p.add(stride) as *const u64).read_unaligned())
                    };
                    words[0][i + j] = t as u32;
                    words[1][i + j] = (t >> 32) as u32;
                    words[2][i + j] = b as u32;
                    words[3][i + j] = (b >> 32) as u32;
                }
                done |= 0xff << i;
            }
            i += 8;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band<const CN: usize>(src: &[u8], (w, h): (usize, usize), m: &[f32; 6], replicate: bool, avx2: bool) -> Vec<u8> {
        let s = WarpSrc { data: src, w, h };
        let (dw, dh) = (w + 5, h + 3);
        let mut out = vec![0u8; dw * dh * CN];
        linear_band::<CN>(&s, m, 0, &mut out, dw * CN, 0, dw, dw, replicate, 7, avx2);
        out
    }

    #[test]
    fn vector_offsets_match_scalar_reads() {
        if !has_avx2() {
            return;
        }
        // Tiny sources too: fewer bytes than a row plus the 8-byte reads.
        for (w, h) in [(131, 67), (2, 2), (1, 3), (3, 1), (5, 2)] {
            let src: Vec<u8> = (0..w * h * 4).map(|i| ((i * 2654435761usize) >> 13) as u8).collect();
            let (c, s) = (0.3f32.cos() * 1.1, 0.3f32.sin() * 1.1);
            for m in [
                [c, -s, 20.0, s, c, -9.0],
                [1.0, 0.0, 0.5, 0.0, 1.0, -0.25],
                [0.9, 0.2, -3.0, -0.1, 1.2, 4.0],
                [0.1, 0.0, 0.2, 0.0, 0.1, 0.1],
            ] {
                for replicate in [false, true] {
                    let (s1, s3) = (&src[..w * h], &src[..w * h * 3]);
                    assert_eq!(band::<1>(s1, (w, h), &m, replicate, true), band::<1>(s1, (w, h), &m, replicate, false));
                    assert_eq!(band::<3>(s3, (w, h), &m, replicate, true), band::<3>(s3, (w, h), &m, replicate, false));
                    assert_eq!(
                        band::<4>(&src, (w, h), &m, replicate, true),
                        band::<4>(&src, (w, h), &m, replicate, false)
                    );
                }
            }
        }
    }
}
