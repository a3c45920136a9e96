//! 8-bit `cv::resize` kernels: fixed-point horizontal taps per source row, then OpenCV's
//! vertical blend of 2 (linear) or 4 (cubic) cached rows; exact 2x area downscale; nearest.
use crate::image::Image;
use crate::parallel::par_rows;
use crate::simd::multiversion;

/// Per destination pixel: element offsets (pixel * cn, clamped) and 11-bit weights of the taps.
pub(crate) struct Taps<const K: usize> {
    pub ofs: Vec<[u32; K]>,
    pub w: Vec<[i32; K]>,
}

#[inline(always)]
fn hresize<const CN: usize, const K: usize>(row: &[u8], t: &Taps<K>, out: &mut [i32]) {
    for ((o, ofs), w) in out.chunks_exact_mut(CN).zip(&t.ofs).zip(&t.w) {
        for c in 0..CN {
            let mut s = 0i32;
            for k in 0..K {
                s += row[ofs[k] as usize + c] as i32 * w[k];
            }
            o[c] = s;
        }
    }
}

multiversion! {
    fn hresize2(row: &[u8], t: &Taps<2>, out: &mut [i32], cn: usize) {
        match cn {
            1 => hresize::<1, 2>(row, t, out),
            2 => hresize::<2, 2>(row, t, out),
            3 => hresize::<3, 2>(row, t, out),
            _ => hresize::<4, 2>(row, t, out),
        }
    }
}

multiversion! {
    fn hresize4(row: &[u8], t: &Taps<4>, out: &mut [i32], cn: usize) {
        match cn {
            1 => hresize::<1, 4>(row, t, out),
            2 => hresize::<2, 4>(row, t, out),
            3 => hresize::<3, 4>(row, t, out),
            _ => hresize::<4, 4>(row, t, out),
        }
    }
}

multiversion! {
    /// OpenCV's `VResizeLinearVec_32s8u` on the SSE baseline: 16- then 8-lane blocks in 16-bit
    /// arithmetic (`>> 4`, high product, `(x + 2) >> 2`), the remaining tail in exact fixed point.
    fn vlinear(s0: &[i32], s1: &[i32], b0: i32, b1: i32, out: &mut [u8]) {
        let w = out.len();
        let mut vec_end = 0;
        while vec_end + 16 <= w {
            vec_end += 16;
        }
        while vec_end + 8 < w {
            vec_end += 8;
        }
        let sat16 = |v: i32| v.clamp(-32768, 32767);
        for ((o, &a), &b) in out[..vec_end].iter_mut().zip(&s0[..vec_end]).zip(&s1[..vec_end]) {
            let a = (sat16(a >> 4) * b0) >> 16;
            let b = (sat16(b >> 4) * b1) >> 16;
            let t = sat16(a + b);
            *o = (sat16(t + 2) >> 2).clamp(0, 255) as u8;
        }
        for x in vec_end..w {
            out[x] = ((s0[x] as i64 * b0 as i64 + s1[x] as i64 * b1 as i64 + (1 << 21)) >> 22).clamp(0, 255) as u8;
        }
    }
}

multiversion! {
    /// OpenCV's `VResizeCubicVec_32s8u`: 8-lane blocks in float (`s0*b0 + (s1*b1 + (s2*b2 + s3*b3))`,
    /// round half even), the tail in exact fixed point.
    fn vcubic(s: [&[i32]; 4], b: [i32; 4], out: &mut [u8]) {
        let w = out.len();
        let vec_end = w / 8 * 8;
        let scale = 1.0f32 / (2048.0 * 2048.0);
        let bf = b.map(|v| v as f32 * scale);
        let (s0, s1, s2, s3) = (&s[0][..w], &s[1][..w], &s[2][..w], &s[3][..w]);
        for x in 0..vec_end {
            let t = s3[x] as f32 * bf[3];
            let t = s2[x] as f32 * bf[2] + t;
            let t = s1[x] as f32 * bf[1] + t;
            let t = s0[x] as f32 * bf[0] + t;
            out[x] = (t.round_ties_even() as i32).clamp(0, 255) as u8;
        }
        for x in vec_end..w {
            let v = s0[x] as i64 * b[0] as i64 + s1[x] as i64 * b[1] as i64 + s2[x] as i64 * b[2] as i64 + s3[x] as i64 * b[3] as i64;
            out[x] = ((v + (1 << 21)) >> 22).clamp(0, 255) as u8;
        }
    }
}

/// Separable 8-bit resize with `K` taps: `xt` horizontal taps, `yofs[dy]` the first source row
/// (unclamped) and `yw[dy]` the 11-bit vertical weights.
pub(crate) fn resize_sep<const K: usize>(src: &Image<u8>, dw: usize, dh: usize, xt: &Taps<K>, yofs: &[isize], yw: &[[i32; K]]) -> Image<u8>
where
    Taps<K>: HPass + Sync,
{
    let (sh, cn) = (src.height(), src.channels());
    let rl = dw * cn;
    let mut dst = Image::<u8>::new(dw, dh, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut bufs: Vec<Vec<i32>> = (0..K).map(|_| vec![0; rl]).collect();
        let mut tags: [Option<usize>; K] = [None; K];
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            for k in 0..K {
                let s = (yofs[dy] + k as isize).clamp(0, sh as isize - 1) as usize;
                if tags[k] == Some(s) {
                    continue;
                }
                // Source rows only move down: a later slot may already hold this one.
                if let Some(j) = (k + 1..K).find(|&j| tags[j] == Some(s)) {
                    bufs.swap(j, k);
                    tags.swap(j, k);
                } else if let Some(j) = (0..k).find(|&j| tags[j] == Some(s)) {
                    let (a, b) = bufs.split_at_mut(k);
                    b[0].copy_from_slice(&a[j]);
                    tags[k] = Some(s);
                } else {
                    xt.hrow(src.row(s), &mut bufs[k], cn);
                    tags[k] = Some(s);
                }
            }
            let b = yw[dy].as_slice();
            if K == 2 {
                vlinear(&bufs[0], &bufs[1], b[0], b[1], out);
            } else {
                vcubic([&bufs[0], &bufs[1], &bufs[2], &bufs[3]], [b[0], b[1], b[2], b[3]], out);
            }
        }
    });
    dst
}

/// The horizontal pass of a tap table.
pub(crate) trait HPass {
    fn hrow(&self, row: &[u8], out: &mut [i32], cn: usize);
}
impl HPass for Taps<2> {
    fn hrow(&self, row: &[u8], out: &mut [i32], cn: usize) {
        hresize2(row, self, out, cn)
    }
}
impl HPass for Taps<4> {
    fn hrow(&self, row: &[u8], out: &mut [i32], cn: usize) {
        hresize4(row, self, out, cn)
    }
}

#[inline(always)]
fn area2x<const CN: usize>(r0: &[u8], r1: &[u8], out: &mut [u8]) {
    for ((o, a), b) in out.chunks_exact_mut(CN).zip(r0.chunks_exact(2 * CN)).zip(r1.chunks_exact(2 * CN)) {
        for c in 0..CN {
            o[c] = ((a[c] as u16 + a[c + CN] as u16 + b[c] as u16 + b[c + CN] as u16 + 2) >> 2) as u8;
        }
    }
}

multiversion! {
    fn area2x_row(r0: &[u8], r1: &[u8], out: &mut [u8], cn: usize) {
        match cn {
            1 => area2x::<1>(r0, r1, out),
            3 => area2x::<3>(r0, r1, out),
            _ => area2x::<4>(r0, r1, out),
        }
    }
}

/// Exact 2x downscale (area and linear): rounded mean of each 2x2 block, as OpenCV's
/// `ResizeAreaFastVec` (1, 3 and 4 channels).
pub(crate) fn area_2x(src: &Image<u8>, dw: usize, dh: usize) -> Image<u8> {
    let cn = src.channels();
    debug_assert!(cn != 2);
    let rl = dw * cn;
    let mut dst = Image::<u8>::new(dw, dh, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let y = 2 * (y0 + i);
            area2x_row(src.row(y), src.row(y + 1), out, cn);
        }
    });
    dst
}

#[inline(always)]
fn nearest<const CN: usize>(row: &[u8], xofs: &[usize], out: &mut [u8]) {
    for (o, &xo) in out.chunks_exact_mut(CN).zip(xofs) {
        o.copy_from_slice(&row[xo..xo + CN]);
    }
}

/// One row of nearest-neighbour resize (`xofs` are element offsets of each destination pixel).
pub(crate) fn nearest_row(row: &[u8], xofs: &[usize], out: &mut [u8], cn: usize) {
    match cn {
        1 => nearest::<1>(row, xofs, out),
        2 => nearest::<2>(row, xofs, out),
        3 => nearest::<3>(row, xofs, out),
        _ => nearest::<4>(row, xofs, out),
    }
}
