//! Harris response, minimum-eigenvalue response and Shi-Tomasi corners.
use crate::border::BorderType;
use crate::edges::sobel_f32;
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};
use crate::morphology::{dilate, get_structuring_element, MorphShape};
use crate::parallel::par_rows;
use crate::simd::multiversion;

/// Per pixel, the `kind` response of the gradient covariance `(dx², dx·dy, dy²)` summed over
/// `block` (unnormalised box filter as OpenCV's `boxFilter`: products in f32, sums in f64, the
/// sums rounded to f32). Row bands in parallel; each output row sums its `block` source rows.
fn covariance_map(
    src: &Image<u8>,
    block: usize,
    ksize: usize,
    border: BorderType,
    kind: Response,
) -> Result<Image<f32>> {
    src.check_cn("corner", "1", &[1])?;
    if block == 0 {
        return Err(bad("corner", "block size must be positive"));
    }
    crate::limits::check_kernel_limit("corner", block, block)?;
    if !(ksize == 1 || (ksize % 2 == 1 && ksize <= 7)) {
        return Err(bad("corner", format!("ksize {ksize} must be 1, 3, 5 or 7")));
    }
    let scale = 1.0 / ((1u32 << (ksize.max(1) - 1)) as f64 * block as f64 * 255.0);
    let dx = sobel_f32(src, 1, 0, ksize, scale as f32, border)?;
    let dy = sobel_f32(src, 0, 1, ksize, scale as f32, border)?;
    let (w, h) = (src.width(), src.height());
    let anchor = block / 2;
    let pw = w + block - 1;
    // Source column of each padded column (None: outside, a constant zero border).
    let cols: Vec<Option<usize>> =
        (0..pw).map(|i| crate::border_interpolate(i as isize - anchor as isize, w, border)).collect();
    let mut out = Image::<f32>::new(w, h, 1)?;
    par_rows(out.data_mut(), w, |y0, band| {
        let mut prod = vec![0f32; 3 * pw];
        // Horizontal sums (a, b, c planes of `w`) of the last `block` source rows, by virtual
        // row index modulo `block`.
        let mut ring = vec![0f64; block * 3 * w];
        let mut acc = vec![0f64; 3 * w];
        let hsum = |v: isize, dst: &mut [f64], prod: &mut [f32]| match crate::border_interpolate(v, h, border) {
            None => dst.fill(0.0),
            Some(yy) => {
                let (rx, ry) = (&dx.data()[yy * w..(yy + 1) * w], &dy.data()[yy * w..(yy + 1) * w]);
                let (pa, rest) = prod.split_at_mut(pw);
                let (pb, pc) = rest.split_at_mut(pw);
                products(rx, ry, pa, pb, pc, anchor, &cols);
                let (da, rest) = dst.split_at_mut(w);
                let (db, dc) = rest.split_at_mut(w);
                box_row(pa, da, block);
                box_row(pb, db, block);
                box_row(pc, dc, block);
            }
        };
        let slot = |v: isize| v.rem_euclid(block as isize) as usize * 3 * w;
        let first = y0 as isize - anchor as isize;
        for v in first..first + block as isize - 1 {
            let o = slot(v);
            hsum(v, &mut ring[o..o + 3 * w], &mut prod);
        }
        for (i, orow) in band.chunks_mut(w).enumerate() {
            let v = first + (i + block - 1) as isize;
            let o = slot(v);
            hsum(v, &mut ring[o..o + 3 * w], &mut prod);
            sum_rows(&ring, &mut acc);
            let (aa, rest) = acc.split_at(w);
            let (ab, ac) = rest.split_at(w);
            response_row(aa, ab, ac, orow, kind);
        }
    });
    Ok(out)
}

/// What [`covariance_map`] computes from the summed covariance `(a, b, c)` (rounded to f32).
#[derive(Clone, Copy)]
enum Response {
    /// `det - k trace²`, in f64.
    Harris(f64),
    /// The smaller eigenvalue, in f32.
    MinEigen,
}

multiversion! {
    fn response_row(aa: &[f64], ab: &[f64], ac: &[f64], out: &mut [f32], kind: Response) {
        let it = out.iter_mut().zip(aa.iter().zip(ab).zip(ac));
        match kind {
            Response::Harris(k) => {
                for (o, ((&a, &b), &c)) in it {
                    let (a, b, c) = (a as f32 as f64, b as f32 as f64, c as f32 as f64);
                    *o = (a * c - b * b - k * (a + c) * (a + c)) as f32;
                }
            }
            Response::MinEigen => {
                for (o, ((&a, &b), &c)) in it {
                    let (a, b, c) = (a as f32 * 0.5, b as f32, c as f32 * 0.5);
                    *o = (a + c) - ((a - c) * (a - c) + b * b).sqrt();
                }
            }
        }
    }
}

multiversion! {
    /// `dx²`, `dx·dy`, `dy²` (f32) of one row at its padded columns.
    fn products(rx: &[f32], ry: &[f32], pa: &mut [f32], pb: &mut [f32], pc: &mut [f32], anchor: usize, cols: &[Option<usize>]) {
        let w = rx.len();
        let inner = anchor..anchor + w;
        for (((a, b), c), (&gx, &gy)) in
            pa[inner.clone()].iter_mut().zip(&mut pb[inner.clone()]).zip(&mut pc[inner]).zip(rx.iter().zip(ry))
        {
            *a = gx * gx;
            *b = gx * gy;
            *c = gy * gy;
        }
        for i in (0..anchor).chain(anchor + w..cols.len()) {
            let (gx, gy) = cols[i].map_or((0.0, 0.0), |x| (rx[x], ry[x]));
            pa[i] = gx * gx;
            pb[i] = gx * gy;
            pc[i] = gy * gy;
        }
    }
}

multiversion! {
    /// `out[x] = sum of p[x..x + block]`, in f64.
    fn box_row(p: &[f32], out: &mut [f64], block: usize) {
        if block == 2 {
            for (a, q) in out.iter_mut().zip(p.windows(2)) {
                *a = q[0] as f64 + q[1] as f64;
            }
            return;
        }
        for (x, a) in out.iter_mut().enumerate() {
            let mut s = 0f64;
            for &v in &p[x..x + block] {
                s += v as f64;
            }
            *a = s;
        }
    }
}

multiversion! {
    /// `acc` = the sum of the `acc.len()`-long rows of `ring`, in f64.
    fn sum_rows(ring: &[f64], acc: &mut [f64]) {
        let n = acc.len();
        if ring.len() < 2 * n {
            acc.copy_from_slice(&ring[..n]);
            return;
        }
        for ((a, &u), &v) in acc.iter_mut().zip(&ring[..n]).zip(&ring[n..2 * n]) {
            *a = u + v;
        }
        for r in ring[2 * n..].chunks_exact(n) {
            for (a, &v) in acc.iter_mut().zip(r) {
                *a += v;
            }
        }
    }
}

/// `cv::cornerHarris`: `det(M) - k trace(M)²` of the gradient covariance over `block_size`.
pub fn corner_harris(
    src: &Image<u8>,
    block_size: usize,
    ksize: usize,
    k: f64,
    border: BorderType,
) -> Result<Image<f32>> {
    if k.is_nan() {
        return Err(bad("corner_harris", "k is NaN"));
    }
    covariance_map(src, block_size, ksize, border, Response::Harris(k))
}

/// `cv::cornerMinEigenVal`: the smaller eigenvalue of the gradient covariance.
pub fn corner_min_eigen_val(
    src: &Image<u8>,
    block_size: usize,
    ksize: usize,
    border: BorderType,
) -> Result<Image<f32>> {
    covariance_map(src, block_size, ksize, border, Response::MinEigen)
}

/// `cv::goodFeaturesToTrack` (Shi-Tomasi, block 3, Sobel 3): strongest local maxima of the
/// minimum eigenvalue above `quality * max`, at least `min_distance` apart; `(x, y)` points.
pub fn good_features_to_track(
    src: &Image<u8>,
    max_corners: usize,
    quality: f64,
    min_distance: f64,
) -> Result<Vec<(f32, f32)>> {
    // (written so that a NaN quality is rejected too)
    if quality.is_nan() || quality <= 0.0 || min_distance < 0.0 || min_distance.is_nan() {
        return Err(bad("good_features_to_track", "quality must be > 0 and min_distance >= 0"));
    }
    let eig = corner_min_eigen_val(src, 3, 3, BorderType::Reflect101)?;
    let maxv = eig.data().iter().cloned().fold(f32::MIN, f32::max);
    let thresh = (maxv as f64 * quality) as f32;
    let k = get_structuring_element(MorphShape::Rect, (3, 3))?;
    let dil = dilate(&eig, &k, 1)?;
    let (w, h) = (src.width(), src.height());
    let mut cands: Vec<(f32, usize, usize)> = Vec::new();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let v = eig.data()[y * w + x];
            if v > thresh && v == dil.data()[y * w + x] {
                cands.push((v, x, y));
            }
        }
    }
    cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then((a.2, a.1).cmp(&(b.2, b.1))));
    let md2 = (min_distance * min_distance) as f32;
    let mut out: Vec<(f32, f32)> = Vec::new();
    for (_, x, y) in cands {
        if max_corners > 0 && out.len() >= max_corners {
            break;
        }
        let (fx, fy) = (x as f32, y as f32);
        if min_distance > 0.0 && out.iter().any(|&(px, py)| (px - fx).powi(2) + (py - fy).powi(2) < md2) {
            continue;
        }
        out.push((fx, fy));
    }
    Ok(out)
}

#[allow(dead_code)]
fn _unused<T: Pixel>(_: T) {}
