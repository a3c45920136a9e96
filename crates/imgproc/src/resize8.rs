//! 8-bit `cv::resize` kernels with OpenCV 5's arithmetic: fixed-point horizontal taps per source
//! row, then its vertical blend of 2 (linear: 16-bit vector arithmetic on the whole row) or 4
//! (cubic: float in 8-lane blocks, fixed point after) cached rows; exact 2x area; float area;
//! nearest.
use crate::image::Image;
use crate::parallel::par_rows;
use crate::simd::multiversion;

/// Per destination pixel: element offsets (pixel * cn, clamped) and 11-bit weights of the taps.
pub(crate) struct Taps<const K: usize> {
    pub ofs: Vec<[u32; K]>,
    pub w: Vec<[i32; K]>,
}

/// Horizontal pass, linear: OpenCV keeps `p0*a0 + p1*a1` in 32 bits and its vertical pass
/// starts with `>> 4` into 16 bits, so the row buffer holds that already.
#[inline(always)]
fn hlinear<const CN: usize>(row: &[u8], t: &Taps<2>, out: &mut [i16]) {
    for ((o, ofs), w) in out.chunks_exact_mut(CN).zip(&t.ofs).zip(&t.w) {
        let (o0, o1) = (ofs[0] as usize, ofs[1] as usize);
        if o1 == o0 + CN {
            // interior: both taps in one slice, one bounds check
            let p = &row[o0..o0 + 2 * CN];
            for c in 0..CN {
                o[c] = ((p[c] as i32 * w[0] + p[CN + c] as i32 * w[1]) >> 4) as i16;
            }
        } else {
            let (p0, p1) = (&row[o0..o0 + CN], &row[o1..o1 + CN]);
            for c in 0..CN {
                o[c] = ((p0[c] as i32 * w[0] + p1[c] as i32 * w[1]) >> 4) as i16;
            }
        }
    }
}

#[inline(always)]
fn hcubic<const CN: usize>(row: &[u8], t: &Taps<4>, out: &mut [i32]) {
    for ((o, ofs), w) in out.chunks_exact_mut(CN).zip(&t.ofs).zip(&t.w) {
        let o0 = ofs[0] as usize;
        if ofs[3] as usize == o0 + 3 * CN {
            let p = &row[o0..o0 + 4 * CN];
            for c in 0..CN {
                o[c] = p[c] as i32 * w[0]
                    + p[CN + c] as i32 * w[1]
                    + p[2 * CN + c] as i32 * w[2]
                    + p[3 * CN + c] as i32 * w[3];
            }
        } else {
            let px = |k: usize| &row[ofs[k] as usize..ofs[k] as usize + CN];
            let (p0, p1, p2, p3) = (px(0), px(1), px(2), px(3));
            for c in 0..CN {
                o[c] = p0[c] as i32 * w[0] + p1[c] as i32 * w[1] + p2[c] as i32 * w[2] + p3[c] as i32 * w[3];
            }
        }
    }
}

multiversion! {
    fn hlinear_row(row: &[u8], t: &Taps<2>, out: &mut [i16], cn: usize) {
        match cn {
            1 => hlinear::<1>(row, t, out),
            2 => hlinear::<2>(row, t, out),
            3 => hlinear::<3>(row, t, out),
            _ => hlinear::<4>(row, t, out),
        }
    }
}

multiversion! {
    fn hcubic_row(row: &[u8], t: &Taps<4>, out: &mut [i32], cn: usize) {
        match cn {
            1 => hcubic::<1>(row, t, out),
            2 => hcubic::<2>(row, t, out),
            3 => hcubic::<3>(row, t, out),
            _ => hcubic::<4>(row, t, out),
        }
    }
}

/// Horizontal cubic pass, dispatching 3-channel rows to the AVX2 kernel (`plan` from
/// [`cubic3_plan`]).
fn hcubic_any(row: &[u8], t: &Taps<4>, plan: &Cubic3Plan, out: &mut [i32], cn: usize) {
    #[cfg(target_arch = "x86_64")]
    if cn == 3 && plan.fits(row, t) && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { x86::hcubic3(row, t, plan, out) };
    }
    hcubic_row(row, t, out, cn)
}

/// What the 3-channel cubic kernel needs, the same for every row: the pixel pairs `(k, k + 1)`
/// it does two at a time (both with 4 consecutive taps whose 16-byte read stays in the row, and
/// not the last pixels, so that its stores stay in the row), their tap offsets and their
/// weights as i16 pairs for `madd`, each broadcast over its pixel's 128-bit lane; and the
/// pixels left to the scalar loop, done after the pairs.
struct Cubic3Plan {
    row_len: usize,
    pixels: usize,
    pairs: Vec<[u32; 3]>,
    w: Vec<[[i32; 8]; 2]>,
    singles: Vec<u32>,
}

impl Cubic3Plan {
    fn fits(&self, row: &[u8], t: &Taps<4>) -> bool {
        row.len() == self.row_len && self.pixels == t.ofs.len() && self.pixels == t.w.len()
    }
}

fn cubic3_plan(t: &Taps<4>, row_len: usize) -> Cubic3Plan {
    let n = t.ofs.len().min(t.w.len());
    // (OpenCV's cubic weights fit i16; others take the scalar path)
    let inner = |k: usize| {
        let (o, w) = (&t.ofs[k], &t.w[k]);
        o[3] == o[0] + 9 && o[0] as usize + 16 <= row_len && w.iter().all(|&v| v == v as i16 as i32)
    };
    let pack = |k: usize, h: usize| (t.w[k][2 * h] & 0xffff) | (t.w[k][2 * h + 1] << 16);
    let mut plan = Cubic3Plan { row_len, pixels: n, pairs: Vec::new(), w: Vec::new(), singles: Vec::new() };
    let mut k = 0;
    while k < n {
        if k + 2 < n && inner(k) && inner(k + 1) {
            plan.pairs.push([k as u32, t.ofs[k][0], t.ofs[k + 1][0]]);
            plan.w.push(std::array::from_fn(|h| std::array::from_fn(|l| pack(k + l / 4, h))));
            k += 2;
        } else {
            plan.singles.push(k as u32);
            k += 1;
        }
    }
    plan
}

/// Horizontal linear pass, dispatching 3-channel rows to the AVX2 kernel (`plan` from
/// [`linear3_plan`]).
fn hlinear_any(row: &[u8], t: &Taps<2>, plan: &[(u32, i32)], out: &mut [i16], cn: usize) {
    #[cfg(target_arch = "x86_64")]
    if cn == 3 && plan.len() == t.ofs.len() && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { x86::hlinear3(row, t, plan, out) };
    }
    hlinear_row(row, t, out, cn)
}

/// What the 3-channel kernel needs per destination pixel, the same for every row of
/// `row_len` bytes: the offset of its tap pair when both taps sit in one 8-byte read
/// (`u32::MAX` otherwise), and its two weights packed as i16 pairs for `madd`.
fn linear3_plan(t: &Taps<2>, row_len: usize) -> Vec<(u32, i32)> {
    t.ofs
        .iter()
        .zip(&t.w)
        .map(|(o, w)| {
            let inner = o[1] == o[0] + 3 && o[0] as usize + 8 <= row_len;
            (if inner { o[0] } else { u32::MAX }, (w[0] & 0xffff) | (w[1] << 16))
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Taps;
    use std::arch::x86_64::*;

    /// `hlinear::<3>` with the 6 tap bytes of a pixel shuffled into (tap, channel) 16-bit lanes,
    /// two pixels per step (one per 128-bit lane).
    #[target_feature(enable = "avx2")]
    pub(super) fn hlinear3(row: &[u8], t: &Taps<2>, plan: &[(u32, i32)], out: &mut [i16]) {
        let ma = _mm256_setr_epi8(
            0, -128, 3, -128, 1, -128, 4, -128, 2, -128, 5, -128, -128, -128, -128, -128, //
            0, -128, 3, -128, 1, -128, 4, -128, 2, -128, 5, -128, -128, -128, -128, -128,
        );
        let n = plan.len().min(out.len() / 3);
        let load = |o: u32| {
            let o = o as usize;
            _mm_cvtsi64_si128(i64::from_le_bytes(row[o..o + 8].try_into().expect("8 bytes")))
        };
        let mut k = 0;
        // Each step writes 4 lanes per pixel (the 4th is rewritten by the next pixel), so the
        // pair must not be the last pixels of `out`.
        while k + 2 < n {
            let ((a, wa), (b, wb)) = (plan[k], plan[k + 1]);
            if a == u32::MAX || b == u32::MAX {
                hlinear_one(row, t, out, k);
                k += 1;
                continue;
            }
            let v = _mm256_set_m128i(load(b), load(a));
            let w = _mm256_setr_m128i(_mm_set1_epi32(wa), _mm_set1_epi32(wb));
            let sum = _mm256_srai_epi32::<4>(_mm256_madd_epi16(_mm256_shuffle_epi8(v, ma), w));
            let s16 = _mm256_packs_epi32(sum, sum);
            // SAFETY: k + 2 < n <= out.len() / 3, so both 4-lane stores end inside `out`.
            unsafe {
                let dst = out.as_mut_ptr().add(k * 3);
                _mm_storel_epi64(dst as *mut __m128i, _mm256_castsi256_si128(s16));
                _mm_storel_epi64(dst.add(3) as *mut __m128i, _mm256_extracti128_si256::<1>(s16));
            }
            k += 2;
        }
        while k < n {
            hlinear_one(row, t, out, k);
            k += 1;
        }
    }

    #[inline(always)]
    fn hlinear_one(row: &[u8], t: &Taps<2>, out: &mut [i16], k: usize) {
        let (o0, o1, w) = (t.ofs[k][0] as usize, t.ofs[k][1] as usize, t.w[k]);
        let (p0, p1) = (&row[o0..o0 + 3], &row[o1..o1 + 3]);
        for c in 0..3 {
            out[k * 3 + c] = ((p0[c] as i32 * w[0] + p1[c] as i32 * w[1]) >> 4) as i16;
        }
    }

    /// `hcubic::<3>` with the 12 tap bytes of a pixel shuffled into (tap pair, channel) 16-bit
    /// lanes and summed by `pmaddwd`, two pixels per step (one per 128-bit lane): the same exact
    /// integers.
    #[target_feature(enable = "avx2")]
    pub(super) fn hcubic3(row: &[u8], t: &Taps<4>, plan: &super::Cubic3Plan, out: &mut [i32]) {
        let ma = _mm256_setr_epi8(
            0, -128, 3, -128, 1, -128, 4, -128, 2, -128, 5, -128, -128, -128, -128, -128, //
            0, -128, 3, -128, 1, -128, 4, -128, 2, -128, 5, -128, -128, -128, -128, -128,
        );
        let mb = _mm256_setr_epi8(
            6, -128, 9, -128, 7, -128, 10, -128, 8, -128, 11, -128, -128, -128, -128, -128, //
            6, -128, 9, -128, 7, -128, 10, -128, 8, -128, 11, -128, -128, -128, -128, -128,
        );
        // the two pixels' 3 sums next to each other
        let pack = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
        if out.len() < plan.pixels * 3 {
            return;
        }
        for (&[k, a, b], w) in plan.pairs.iter().zip(&plan.w) {
            // SAFETY: the plan was made for rows of `row.len()` bytes and `plan.pixels` pixels
            // (checked by the caller, and `out` above): a + 16 and b + 16 <= row.len(), and
            // k + 2 < plan.pixels, so the 8-lane store ends inside `out`.
            unsafe {
                let p = row.as_ptr();
                let v = _mm256_setr_m128i(
                    _mm_loadu_si128(p.add(a as usize) as *const __m128i),
                    _mm_loadu_si128(p.add(b as usize) as *const __m128i),
                );
                let w01 = _mm256_loadu_si256(w[0].as_ptr() as *const __m256i);
                let w23 = _mm256_loadu_si256(w[1].as_ptr() as *const __m256i);
                let sum = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_shuffle_epi8(v, ma), w01),
                    _mm256_madd_epi16(_mm256_shuffle_epi8(v, mb), w23),
                );
                let dst = out.as_mut_ptr().add(k as usize * 3);
                _mm256_storeu_si256(dst as *mut __m256i, _mm256_permutevar8x32_epi32(sum, pack));
            }
        }
        // after the pairs: their spare lanes may have written these pixels' first channels
        for &k in &plan.singles {
            hcubic_one(row, t, out, k as usize);
        }
    }

    #[inline(always)]
    fn hcubic_one(row: &[u8], t: &Taps<4>, out: &mut [i32], k: usize) {
        let (ofs, w) = (t.ofs[k], t.w[k]);
        let px = |j: usize| &row[ofs[j] as usize..ofs[j] as usize + 3];
        let (p0, p1, p2, p3) = (px(0), px(1), px(2), px(3));
        for c in 0..3 {
            out[k * 3 + c] = p0[c] as i32 * w[0] + p1[c] as i32 * w[1] + p2[c] as i32 * w[2] + p3[c] as i32 * w[3];
        }
    }
}

multiversion! {
    /// OpenCV's `VResizeLinearVec_32s8u`: high halves of 16-bit products, saturating adds,
    /// `(x + 2) >> 2`, unsigned saturation (OpenCV 5 runs it on the whole row).
    fn vlinear(s0: &[i16], s1: &[i16], b0: i16, b1: i16, out: &mut [u8]) {
        let n = out.len();
        for ((o, &a), &b) in out.iter_mut().zip(&s0[..n]).zip(&s1[..n]) {
            let a = ((a as i32 * b0 as i32) >> 16) as i16;
            let b = ((b as i32 * b1 as i32) >> 16) as i16;
            let t = a.saturating_add(b).saturating_add(2) >> 2;
            *o = t.clamp(0, 255) as u8;
        }
    }
}

multiversion! {
    /// OpenCV's `VResizeCubicVec_32s8u`: 8-lane blocks in float (`s0*b0 + (s1*b1 + (s2*b2 +
    /// s3*b3))`, no fused multiply-add, rounded half to even), the rest of the row in exact fixed
    /// point.
    fn vcubic(s: [&[i32]; 4], b: [i32; 4], out: &mut [u8]) {
        let n = out.len();
        let vec_end = n / 8 * 8;
        let scale = 1.0f32 / (2048.0 * 2048.0);
        let bf = b.map(|v| v as f32 * scale);
        let (s0, s1, s2, s3) = (&s[0][..n], &s[1][..n], &s[2][..n], &s[3][..n]);
        for x in 0..vec_end {
            let t = s3[x] as f32 * bf[3];
            let t = s2[x] as f32 * bf[2] + t;
            let t = s1[x] as f32 * bf[1] + t;
            let t = s0[x] as f32 * bf[0] + t;
            out[x] = crate::warp8::round_u8(t);
        }
        for x in vec_end..n {
            let v = s0[x] as i64 * b[0] as i64 + s1[x] as i64 * b[1] as i64 + s2[x] as i64 * b[2] as i64 + s3[x] as i64 * b[3] as i64;
            out[x] = ((v + (1 << 21)) >> 22).clamp(0, 255) as u8;
        }
    }
}

/// Ring of `K` horizontal rows keyed by source row, refilled as the source rows move down.
struct RowCache<B, const K: usize> {
    bufs: Vec<Vec<B>>,
    tags: [Option<usize>; K],
}

impl<B: Copy + Default, const K: usize> RowCache<B, K> {
    fn new(len: usize) -> Self {
        RowCache { bufs: (0..K).map(|_| vec![B::default(); len]).collect(), tags: [None; K] }
    }
    /// Makes slot `k` hold source row `rows[k]` for all `k`, computing missing ones with `fill`.
    fn load(&mut self, rows: [usize; K], mut fill: impl FnMut(usize, &mut [B])) {
        for (k, &s) in rows.iter().enumerate() {
            if self.tags[k] == Some(s) {
                continue;
            }
            if let Some(j) = (k + 1..K).find(|&j| self.tags[j] == Some(s)) {
                self.bufs.swap(j, k);
                self.tags.swap(j, k);
            } else if let Some(j) = (0..k).find(|&j| self.tags[j] == Some(s)) {
                let (a, b) = self.bufs.split_at_mut(k);
                b[0].copy_from_slice(&a[j]);
                self.tags[k] = Some(s);
            } else {
                fill(s, &mut self.bufs[k]);
                self.tags[k] = Some(s);
            }
        }
    }
}

/// Separable 8-bit linear resize: `yofs[dy]` the first source row (unclamped: OpenCV clamps rows,
/// not weights, vertically) and `yw[dy]` the 11-bit vertical weights.
pub(crate) fn resize_linear(
    src: &Image<u8>,
    dw: usize,
    dh: usize,
    xt: &Taps<2>,
    yofs: &[isize],
    yw: &[[i32; 2]],
) -> Image<u8> {
    let (sh, cn) = (src.height(), src.channels());
    let rl = dw * cn;
    let mut dst = Image::<u8>::new(dw, dh, cn).expect("channels");
    let clampy = |v: isize| v.clamp(0, sh as isize - 1) as usize;
    let plan = if cn == 3 { linear3_plan(xt, src.row_len()) } else { Vec::new() };
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut cache = RowCache::<i16, 2>::new(rl);
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            cache.load([clampy(yofs[dy]), clampy(yofs[dy] + 1)], |s, buf| hlinear_any(src.row(s), xt, &plan, buf, cn));
            vlinear(&cache.bufs[0], &cache.bufs[1], yw[dy][0] as i16, yw[dy][1] as i16, out);
        }
    });
    dst
}

/// Separable 8-bit bicubic resize (`yofs[dy]`: first of the 4 source rows, unclamped).
pub(crate) fn resize_cubic(
    src: &Image<u8>,
    dw: usize,
    dh: usize,
    xt: &Taps<4>,
    yofs: &[isize],
    yw: &[[i32; 4]],
) -> Image<u8> {
    let (sh, cn) = (src.height(), src.channels());
    let rl = dw * cn;
    let mut dst = Image::<u8>::new(dw, dh, cn).expect("channels");
    let clampy = |v: isize| v.clamp(0, sh as isize - 1) as usize;
    let plan = cubic3_plan(xt, src.row_len());
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut cache = RowCache::<i32, 4>::new(rl);
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            let rows = std::array::from_fn(|k| clampy(yofs[dy] + k as isize));
            cache.load(rows, |s, buf| hcubic_any(src.row(s), xt, &plan, buf, cn));
            let b = &cache.bufs;
            vcubic([&b[0], &b[1], &b[2], &b[3]], yw[dy], out);
        }
    });
    dst
}

/// One axis of OpenCV's generic area table (`computeResizeAreaTab`), grouped per destination
/// index: the first source index and the weights of the consecutive sources it covers.
pub(crate) struct AreaAxis {
    pub start: Vec<u32>,
    pub w: Vec<f32>,
    pub taps: usize,
}

pub(crate) fn area_axis(ssize: usize, dsize: usize, scale: f64) -> AreaAxis {
    let mut groups: Vec<(u32, Vec<f32>)> = Vec::with_capacity(dsize);
    for d in 0..dsize {
        let f1 = d as f64 * scale;
        let f2 = f1 + scale;
        let cell = scale.min(ssize as f64 - f1);
        let s2 = (f2.floor() as isize).min(ssize as isize - 1);
        let s1 = (f1.ceil() as isize).min(s2);
        let mut first = None;
        let mut w = Vec::new();
        if s1 as f64 - f1 > 1e-3 {
            first.get_or_insert(s1 - 1);
            w.push(((s1 as f64 - f1) / cell) as f32);
        }
        for s in s1..s2 {
            first.get_or_insert(s);
            w.push((1.0 / cell) as f32);
        }
        if f2 - s2 as f64 > 1e-3 {
            first.get_or_insert(s2);
            w.push(((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32);
        }
        groups.push((first.unwrap_or(0).max(0) as u32, w));
    }
    let taps = groups.iter().map(|g| g.1.len()).max().unwrap_or(1).max(1);
    let mut start = Vec::with_capacity(dsize);
    let mut w = Vec::with_capacity(dsize * taps);
    for (s, g) in groups {
        // Zero weights pad short groups (`acc + p * 0` leaves OpenCV's float sums unchanged);
        // near the end the group is shifted left and padded in front instead.
        let shift = (s as usize + taps).saturating_sub(ssize.max(taps));
        start.push(s - shift as u32);
        w.extend(std::iter::repeat_n(0.0, shift).chain(g.iter().copied()).chain(std::iter::repeat(0.0)).take(taps));
    }
    AreaAxis { start, w, taps }
}

#[inline(always)]
fn harea<const CN: usize>(row: &[u8], ax: &AreaAxis, first: &[u32], out: &mut [f32]) {
    let t = ax.taps;
    for ((o, &s), w) in out.chunks_exact_mut(CN).zip(first).zip(ax.w.chunks_exact(t)) {
        let px = &row[s as usize * CN..(s as usize + t) * CN];
        let mut acc = [0f32; CN];
        for (p, &wk) in px.chunks_exact(CN).zip(w) {
            for c in 0..CN {
                acc[c] += p[c] as f32 * wk;
            }
        }
        o.copy_from_slice(&acc);
    }
}

multiversion! {
    fn harea_row(row: &[u8], ax: &AreaAxis, first: &[u32], out: &mut [f32], cn: usize) {
        match cn {
            1 => harea::<1>(row, ax, first, out),
            2 => harea::<2>(row, ax, first, out),
            3 => harea::<3>(row, ax, first, out),
            _ => harea::<4>(row, ax, first, out),
        }
    }
}

multiversion! {
    /// `sum = buf * beta` for the first row of a cell, `sum += buf * beta` after (no fusing).
    fn varea_acc(sum: &mut [f32], buf: &[f32], beta: f32, first: bool) {
        let n = sum.len();
        if first {
            for (s, &b) in sum.iter_mut().zip(&buf[..n]) {
                *s = b * beta;
            }
        } else {
            for (s, &b) in sum.iter_mut().zip(&buf[..n]) {
                *s += b * beta;
            }
        }
    }
}

multiversion! {
    fn store_u8(sum: &[f32], out: &mut [u8]) {
        for (o, &s) in out.iter_mut().zip(sum) {
            *o = crate::warp8::round_u8(s);
        }
    }
}

/// `cv::resize` INTER_AREA for non-integer downscales: OpenCV's float sums in its order
/// (horizontal taps left to right per source row, then rows top to bottom).
pub(crate) fn resize_area(src: &Image<u8>, dw: usize, dh: usize, xa: &AreaAxis, ya: &AreaAxis) -> Image<u8> {
    let cn = src.channels();
    let rl = dw * cn;
    let mut dst = Image::<u8>::new(dw, dh, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut bufs: Vec<(Option<usize>, Vec<f32>)> = (0..2).map(|_| (None, vec![0f32; rl])).collect();
        let mut sum = vec![0f32; rl];
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            let ws = &ya.w[dy * ya.taps..(dy + 1) * ya.taps];
            let mut first = true;
            for (k, &beta) in ws.iter().enumerate() {
                if beta == 0.0 {
                    continue;
                }
                let sy = ya.start[dy] as usize + k;
                // Consecutive cells share their boundary row: keep the last two rows.
                let slot = match bufs.iter().position(|b| b.0 == Some(sy)) {
                    Some(j) => j,
                    None => {
                        let j = if bufs[0].0.is_some_and(|r| r + 1 == sy) { 1 } else { 0 };
                        let j = if bufs[j].0.is_some_and(|r| r + 1 == sy) { 1 - j } else { j };
                        harea_row(src.row(sy), xa, &xa.start, &mut bufs[j].1, cn);
                        bufs[j].0 = Some(sy);
                        j
                    }
                };
                varea_acc(&mut sum, &bufs[slot].1, beta, first);
                first = false;
            }
            if first {
                sum.fill(0.0); // no source row (cannot happen for a downscale; keeps stale sums out)
            }
            store_u8(&sum, out);
        }
    });
    dst
}

/// Sums of each element with its right neighbour pixel in both rows, then every other pixel's
/// sum rounded: the first loop runs on whole vectors, the second only moves bytes.
#[inline(always)]
fn area2x<const CN: usize>(r0: &[u8], r1: &[u8], out: &mut [u8], sums: &mut [u16]) {
    let n = out.len() * 2;
    let (r0, r1) = (&r0[..n], &r1[..n]);
    let m = n - CN;
    for (k, s) in sums[..m].iter_mut().enumerate() {
        *s = r0[k] as u16 + r0[k + CN] as u16 + r1[k] as u16 + r1[k + CN] as u16 + 2;
    }
    for (o, s) in out.chunks_exact_mut(CN).zip(sums[..m + CN].chunks(2 * CN)) {
        for c in 0..CN {
            o[c] = (s[c] >> 2) as u8;
        }
    }
}

multiversion! {
    fn area2x_row(r0: &[u8], r1: &[u8], out: &mut [u8], cn: usize, sums: &mut [u16]) {
        match cn {
            1 => area2x::<1>(r0, r1, out, sums),
            3 => area2x::<3>(r0, r1, out, sums),
            _ => area2x::<4>(r0, r1, out, sums),
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
        let mut sums = vec![0u16; 2 * rl];
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let y = 2 * (y0 + i);
            area2x_row(src.row(y), src.row(y + 1), out, cn, &mut sums);
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

/// `nearest::<3>` moving each pixel as one 4-byte word; the spare byte lands where the next
/// pixel is written, so the last pixel (and any at the row's end) goes byte-wise.
fn nearest3(row: &[u8], xofs: &[usize], out: &mut [u8]) {
    let n = xofs.len().min(out.len() / 3);
    let mut k = 0;
    while k + 1 < n {
        let xo = xofs[k];
        let Some(word) = row.get(xo..xo + 4) else { break };
        out[k * 3..k * 3 + 4].copy_from_slice(word);
        k += 1;
    }
    nearest::<3>(row, &xofs[k..n], &mut out[k * 3..n * 3]);
}

/// One row of nearest-neighbour resize (`xofs` are element offsets of each destination pixel).
pub(crate) fn nearest_row(row: &[u8], xofs: &[usize], out: &mut [u8], cn: usize) {
    match cn {
        1 => nearest::<1>(row, xofs, out),
        2 => nearest::<2>(row, xofs, out),
        3 => nearest3(row, xofs, out),
        _ => nearest::<4>(row, xofs, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taps of a 3-channel row `sw` wide resized to `dw`, first tap `start(d)`, clamped.
    fn taps<const K: usize>(sw: usize, dw: usize, seed: u32) -> Taps<K> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 8
        };
        let ofs = (0..dw)
            .map(|d| {
                let s = (d * sw / dw) as isize - 1;
                std::array::from_fn(|k| ((s + k as isize).clamp(0, sw as isize - 1) as u32) * 3)
            })
            .collect();
        let w = (0..dw).map(|_| std::array::from_fn(|_| (next() % 2600) as i32 - 300)).collect();
        Taps { ofs, w }
    }

    #[test]
    fn simd_horizontal_passes_match_scalar() {
        for (sw, dw) in [(1usize, 5usize), (2, 3), (5, 4), (17, 11), (40, 97), (97, 40), (1001, 701), (333, 1001)] {
            let row: Vec<u8> = (0..sw * 3).map(|i| (i * 97 % 251) as u8).collect();
            let mut t4 = taps::<4>(sw, dw, 7);
            for wide in [false, true] {
                if wide {
                    // a weight beyond i16 in the middle: that pixel goes scalar between pairs
                    t4.w[dw / 2][1] = 40_000;
                }
                let (mut a, mut b) = (vec![0i32; dw * 3], vec![0i32; dw * 3]);
                hcubic_any(&row, &t4, &cubic3_plan(&t4, row.len()), &mut a, 3);
                hcubic::<3>(&row, &t4, &mut b);
                assert_eq!(a, b, "cubic {sw}->{dw}");
            }
            let t2 = taps::<2>(sw, dw, 9);
            let t2 = Taps::<2> {
                ofs: t2.ofs,
                w: t2.w.iter().map(|w| [w[0].abs() % 2049, 2048 - w[0].abs() % 2049]).collect(),
            };
            let (mut a, mut b) = (vec![0i16; dw * 3], vec![0i16; dw * 3]);
            hlinear_any(&row, &t2, &linear3_plan(&t2, row.len()), &mut a, 3);
            hlinear::<3>(&row, &t2, &mut b);
            assert_eq!(a, b, "linear {sw}->{dw}");
        }
    }
}
