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
        let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        // Bit i: pixel i's 2x2 neighbourhood lies wholly outside the source, so it is the border
        // value (the blend of four equal values is exact). Chunks wholly outside are frequent
        // around rotations, and near the edges these are most of the pixels the vector paths
        // leave.
        let far = if replicate {
            0
        } else {
            let far_at = |i: usize| ((ixs[i] + 1) as u32 >= (w + 1) as u32) | ((iys[i] + 1) as u32 >= (h + 1) as u32);
            let mut far = 0u64;
            let mut i = 0;
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 (checked by the caller).
                (far, i) = unsafe { x86::far_groups(&ixs[..n], &iys[..n], (w, h)) };
            }
            for i in i..n {
                far |= (far_at(i) as u64) << i;
            }
            far
        };
        if far == all {
            dst.fill(bval);
            continue;
        }
        // Bit i: pixel i is written already (groups of 8 wholly inside the source, 3 or 4
        // channels: blended straight from the source, 8 pixels per step).
        let mut written = 0u64;
        #[cfg(target_arch = "x86_64")]
        if avx2 && (CN == 3 || CN == 4) {
            // SAFETY: the CPU has AVX2 and FMA (checked by the caller).
            written =
                unsafe { x86::inner_blend::<CN>(data, stride, (w, h), &ixs[..n], &iys[..n], &sx[..n], &sy[..n], dst) };
        }
        if far & !written != 0 {
            for (i, o) in dst.chunks_exact_mut(CN).enumerate() {
                if (far & !written) >> i & 1 == 1 {
                    o.fill(bval);
                }
            }
            written |= far;
        }
        if written == all {
            continue;
        }
        // Bit i: pixel i's words are read already (groups of 8 wholly inside the source).
        let mut done = written;
        #[cfg(target_arch = "x86_64")]
        if avx2 && CN == 1 {
            // SAFETY: the CPU has AVX2 (checked by the caller).
            done |= unsafe { x86::inner_words::<CN>(data, stride, (w, h), &ixs[..n], &iys[..n], words) };
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

    /// Bit per pixel of whole groups of 8: its 2x2 neighbourhood lies wholly outside the source
    /// (`ix < -1 || ix >= w || iy < -1 || iy >= h`); and the first pixel after those groups.
    #[target_feature(enable = "avx2")]
    pub(super) fn far_groups(ixs: &[i32], iys: &[i32], (w, h): (i32, i32)) -> (u64, usize) {
        let n = ixs.len().min(iys.len()).min(64);
        let m1 = _mm256_set1_epi32(-1);
        let (wm1, hm1) = (_mm256_set1_epi32(w - 1), _mm256_set1_epi32(h - 1));
        let mut far = 0u64;
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            let (ix, iy) = unsafe {
                (
                    _mm256_loadu_si256(ixs.as_ptr().add(i) as *const __m256i),
                    _mm256_loadu_si256(iys.as_ptr().add(i) as *const __m256i),
                )
            };
            let out = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpgt_epi32(m1, ix), _mm256_cmpgt_epi32(ix, wm1)),
                _mm256_or_si256(_mm256_cmpgt_epi32(m1, iy), _mm256_cmpgt_epi32(iy, hm1)),
            );
            far |= (_mm256_movemask_ps(_mm256_castsi256_ps(out)) as u8 as u64) << i;
            i += 8;
        }
        (far, i)
    }

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
    /// `dst` (`CN` bytes per pixel), 8 pixels per step: each pixel's top and bottom pixel pairs
    /// read as 8-byte words, one channel of the 8 pixels per vector after, the same fused
    /// multiply-adds and rounding as the scalar blend. (AVX2 gathers were slower on AMD Zen 3
    /// and 4.) Returns a bit per pixel written.
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
        let split = _mm256_setr_epi8(
            0, 1, 2, -128, 3, 4, 5, -128, 8, 9, 10, -128, 11, 12, 13, -128, //
            0, 1, 2, -128, 3, 4, 5, -128, 8, 9, 10, -128, 11, 12, 13, -128,
        );
        // bytes of (channel, pixel) after the packs below, to pixel order within each lane
        let order = if CN == 3 {
            _mm256_setr_epi8(
                0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, -128, -128, -128, -128, //
                0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, -128, -128, -128, -128,
            )
        } else {
            _mm256_setr_epi8(
                0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, //
                0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
            )
        };
        let mut i = 0;
        while i + 8 <= n {
            if inside >> i & 1 == 0 {
                i += 8;
                continue;
            }
            // SAFETY: `inside_groups` checked off + stride + 8 <= data.len() for these lanes;
            // i + 8 <= n <= the lengths of `offs`, `sx`, `sy`.
            let (t0, t1, b0, b1, fx, fy) = unsafe {
                let o = &offs[i..i + 8];
                let (t0, t1) = pairs::<CN>(data, o, 0, split);
                let (b0, b1) = pairs::<CN>(data, o, stride, split);
                (t0, t1, b0, b1, _mm256_loadu_ps(sx.as_ptr().add(i)), _mm256_loadu_ps(sy.as_ptr().add(i)))
            };
            let mut q = [_mm256_setzero_si256(); 4];
            for (c, qc) in q.iter_mut().enumerate().take(CN) {
                let tl = channel::<CN>(t0, c);
                let tr = channel::<CN>(t1, c);
                let bl = channel::<CN>(b0, c);
                let br = channel::<CN>(b1, c);
                let v0 = _mm256_fmadd_ps(fx, _mm256_sub_ps(tr, tl), tl);
                let v1 = _mm256_fmadd_ps(fx, _mm256_sub_ps(br, bl), bl);
                // Round half to even (the default MXCSR mode) and saturate, as `round_u8`.
                *qc = _mm256_cvtps_epi32(_mm256_fmadd_ps(fy, _mm256_sub_ps(v1, v0), v0));
            }
            let hi = if CN == 3 { q[2] } else { q[3] };
            let bytes = _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], hi));
            // lane 0: pixels i..i + 4, lane 1: i + 4..i + 8, `4 * CN` bytes each
            let px = _mm256_shuffle_epi8(bytes, order);
            let o = i * CN;
            if CN == 4 {
                dst[o..o + 32].copy_from_slice(&bytes_of(px));
            } else if o + 28 <= dst.len() {
                // SAFETY: o + 28 <= dst.len(); the second store rewrites the 4 spare bytes of
                // the first, and its own spare bytes belong to pixel i + 8, written later.
                unsafe {
                    let p = dst.as_mut_ptr().add(o);
                    _mm_storeu_si128(p as *mut __m128i, _mm256_castsi256_si128(px));
                    _mm_storeu_si128(p.add(12) as *mut __m128i, _mm256_extracti128_si256::<1>(px));
                }
            } else {
                let b = bytes_of(px);
                dst[o..o + 12].copy_from_slice(&b[..12]);
                dst[o + 12..o + 24].copy_from_slice(&b[16..28]);
            }
            i += 8;
        }
        inside & if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// The left and right pixels of the 8 pixel pairs at `offs + row`, 4 bytes each (a function,
    /// not a closure, so that it is inlined with the caller's target features).
    ///
    /// # Safety
    /// Every `offs[k] + row + 8 <= data.len()`, and AVX2 is enabled.
    #[inline(always)]
    unsafe fn pairs<const CN: usize>(data: &[u8], offs: &[i32], row: usize, split: __m256i) -> (__m256i, __m256i) {
        let ld = |k: usize| (data.as_ptr().add(offs[k] as usize + row) as *const i64).read_unaligned();
        // A pixel pair per 64-bit lane; pixels 0, 1, 4, 5 in one vector and 2, 3, 6, 7 in the
        // other, so that the even/odd split below yields pixels in order.
        let a = _mm256_setr_epi64x(ld(0), ld(1), ld(4), ld(5));
        let b = _mm256_setr_epi64x(ld(2), ld(3), ld(6), ld(7));
        // (3 channels: each pixel of a pair into its own 32-bit lane, top byte 0)
        let (a, b) = if CN == 3 { (_mm256_shuffle_epi8(a, split), _mm256_shuffle_epi8(b, split)) } else { (a, b) };
        let (a, b) = (_mm256_castsi256_ps(a), _mm256_castsi256_ps(b));
        (_mm256_castps_si256(_mm256_shuffle_ps::<0x88>(a, b)), _mm256_castps_si256(_mm256_shuffle_ps::<0xdd>(a, b)))
    }

    /// Byte `c` of each 32-bit lane as a float (with 3 channels the top byte is 0).
    #[inline(always)]
    fn channel<const CN: usize>(v: __m256i, c: usize) -> __m256 {
        // SAFETY: the callers are compiled with AVX2.
        unsafe {
            let m = _mm256_set1_epi32(0xff);
            _mm256_cvtepi32_ps(match c {
                0 => _mm256_and_si256(v, m),
                1 => _mm256_and_si256(_mm256_srli_epi32::<8>(v), m),
                2 if CN == 3 => _mm256_srli_epi32::<16>(v),
                2 => _mm256_and_si256(_mm256_srli_epi32::<16>(v), m),
                _ => _mm256_srli_epi32::<24>(v),
            })
        }
    }

    #[inline(always)]
    fn bytes_of(v: __m256i) -> [u8; 32] {
        let mut b = [0u8; 32];
        // SAFETY: `b` holds 32 bytes; AVX is enabled in the callers.
        unsafe { _mm256_storeu_si256(b.as_mut_ptr() as *mut __m256i, v) };
        b
    }

    /// For each group of 8 pixels [`inside_groups`] finds, reads the top and bottom pixel pairs
    /// into `words` as the scalar loop would, without per-pixel checks. Returns a bit per pixel
    /// done.
    #[target_feature(enable = "avx2")]
    pub(super) fn inner_words<const CN: usize>(
        data: &[u8],
        stride: usize,
        wh: (i32, i32),
        ixs: &[i32],
        iys: &[i32],
        words: &mut [[u32; CHUNK]; 4],
    ) -> u64 {
        let mut offs = [0i32; CHUNK];
        let done = inside_groups::<CN>(data, stride, wh, ixs, iys, &mut offs);
        for (i, &off) in offs.iter().enumerate() {
            if done >> i & 1 == 0 {
                continue;
            }
            let off = off as usize;
            // SAFETY: `inside_groups` checked off + stride + 8 <= data.len() for this pixel.
            let (t, b) = unsafe {
                let p = data.as_ptr().add(off);
                ((p as *const u64).read_unaligned(), (p.add(stride) as *const u64).read_unaligned())
            };
            words[0][i] = t as u32;
            words[1][i] = (t >> 32) as u32;
            words[2][i] = b as u32;
            words[3][i] = (b >> 32) as u32;
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

    /// The comparison above means something only if the vector kernel runs: here every group
    /// of 8 lies inside the source (the last one takes the copying 3-channel store), and each
    /// pixel must equal the scalar blend.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_blend_covers_inner_groups() {
        if !has_avx2() {
            return;
        }
        fn check<const CN: usize>(src: &[u8], (w, h): (usize, usize)) {
            let n = 64;
            let ixs: Vec<i32> = (0..n).map(|i| (i * 7 % (w - 1)) as i32).collect();
            let iys: Vec<i32> = (0..n).map(|i| (i * 5 % (h - 1)) as i32).collect();
            let fx: Vec<f32> = (0..n).map(|i| (i % 7) as f32 / 7.0).collect();
            let fy: Vec<f32> = (0..n).map(|i| (i % 5) as f32 / 5.3).collect();
            let mut dst = vec![0u8; n * CN];
            let stride = w * CN;
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            let done = unsafe {
                x86::inner_blend::<CN>(&src[..w * h * CN], stride, (w as i32, h as i32), &ixs, &iys, &fx, &fy, &mut dst)
            };
            assert_eq!(done, u64::MAX, "{CN} channels");
            for i in 0..n {
                for c in 0..CN {
                    let at = |dx: usize, dy: usize| {
                        src[(iys[i] as usize + dy) * stride + (ixs[i] as usize + dx) * CN + c] as f32
                    };
                    let v0 = fx[i].mul_add(at(1, 0) - at(0, 0), at(0, 0));
                    let v1 = fx[i].mul_add(at(1, 1) - at(0, 1), at(0, 1));
                    assert_eq!(dst[i * CN + c], round_u8(fy[i].mul_add(v1 - v0, v0)), "{CN} channels, pixel {i}");
                }
            }
        }
        let (w, h) = (61usize, 37usize);
        let src: Vec<u8> = (0..w * h * 4).map(|i| (i * 37 % 253) as u8).collect();
        check::<3>(&src, (w, h));
        check::<4>(&src, (w, h));
    }
}
