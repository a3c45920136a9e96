//! Derivatives (Sobel, Scharr, Laplacian) and the Canny edge detector.
use crate::border::{border_interpolate, BorderType};
use crate::error::{bad, Result};
use crate::filter::{filter_2d, separable};
use crate::image::{Image, Pixel};
use crate::kernels8;
use crate::parallel::par_rows;
use std::mem::MaybeUninit;

/// `cv::getDerivKernels` integer Sobel kernel of `order` for `ksize` (1 means 3 for order > 0).
pub(crate) fn sobel_kernel(order: usize, ksize: usize) -> Vec<i32> {
    let ksize = if ksize == 1 && order > 0 { 3 } else { ksize };
    if ksize == 1 {
        return vec![1];
    }
    if ksize == 3 {
        return match order {
            0 => vec![1, 2, 1],
            1 => vec![-1, 0, 1],
            _ => vec![1, -2, 1],
        };
    }
    let mut k = vec![0i32; ksize + 1];
    k[0] = 1;
    for _ in 0..ksize - order - 1 {
        let mut old = k[0];
        for j in 1..=ksize {
            let new = k[j] + k[j - 1];
            k[j - 1] = old;
            old = new;
        }
    }
    for _ in 0..order {
        let mut old = -k[0];
        for j in 1..=ksize {
            let new = k[j - 1] - k[j];
            k[j - 1] = old;
            old = new;
        }
    }
    k.truncate(ksize);
    k
}

fn check_deriv(op: &'static str, dx: usize, dy: usize, ksize: usize) -> Result<()> {
    if !(ksize == 1 || (ksize % 2 == 1 && ksize <= 31)) {
        return Err(bad(op, format!("ksize {ksize} must be odd and at most 31 (1, 3, 5, ..., 31)")));
    }
    if dx + dy == 0 || dx >= ksize.max(3) || dy >= ksize.max(3) {
        return Err(bad(op, format!("derivative orders dx={dx}, dy={dy} are invalid for ksize {ksize}")));
    }
    Ok(())
}

/// Integer separable filter of an 8-bit image into 16-bit signed (saturated), like
/// `cv::sepFilter2D(src, CV_16S, ...)` with integer kernels.
pub(crate) fn sep_i16(src: &Image<u8>, kx: &[i32], ky: &[i32], border: BorderType) -> Image<i16> {
    let cn = src.channels();
    let (kw, kh) = (kx.len(), ky.len());
    let row = move |pad: &[u8], out: &mut [i32]| kernels8::conv_row_i32(pad, out, kx, cn);
    let col = move |rows: &[&[i32]], out: &mut [i16]| kernels8::conv_col_i16(rows, ky, out);
    separable(src, cn, (kw, kw / 2), (kh, kh / 2), border, 0u8, row, col)
}

/// `cv::Sobel(src, CV_16S, dx, dy, 7, 1 / 16.0, 0, BORDER_REPLICATE)`, Canny's derivatives for
/// aperture 7: the integer sums divided by 16, rounded half to even (OpenCV's float kernels make
/// `sum / 16` exact before `cvRound`; |sum| <= 20 * 64 * 255, so the result fits in i16).
fn sobel7_over16(src: &Image<u8>, dx: usize, dy: usize) -> Image<i16> {
    let (kx, ky) = (sobel_kernel(dx, 7), sobel_kernel(dy, 7));
    let row = move |pad: &[u8], out: &mut [i32]| kernels8::conv_row_i32(pad, out, &kx, 1);
    let col = move |rows: &[&[i32]], out: &mut [i16]| {
        for (x, o) in out.iter_mut().enumerate() {
            let s: i32 = rows.iter().zip(&ky).map(|(r, &k)| r[x] * k).sum();
            *o = (s as f32 / 16.0).round_ties_even() as i16;
        }
    };
    separable(src, 1, (7, 3), (7, 3), BorderType::Replicate, 0u8, row, col)
}

/// `cv::Sobel(src, CV_16S, dx, dy, ksize, 1, 0, border)` for 8-bit images.
pub fn sobel(src: &Image<u8>, dx: usize, dy: usize, ksize: usize, border: BorderType) -> Result<Image<i16>> {
    src.check("sobel")?;
    check_deriv("sobel", dx, dy, ksize)?;
    if border == BorderType::Wrap {
        return Err(bad("sobel", "BORDER_WRAP is not supported"));
    }
    if ksize == 3 && dx + dy == 1 {
        return Ok(sobel3_first(src, dx == 1, border));
    }
    let kx = sobel_kernel(dx, if ksize == 1 && dx == 0 { 1 } else { ksize });
    let ky = sobel_kernel(dy, if ksize == 1 && dy == 0 { 1 } else { ksize });
    Ok(sep_i16(src, &kx, &ky, border))
}

/// 3x3 first-order Sobel (`dx` true: d/dx, else d/dy) in 16-bit lanes: one pass per output row
/// over the three source rows, no intermediate image. Same integers as [`sep_i16`] (the sums fit
/// in i16: at most 4 * 255 in magnitude).
fn sobel3_first(src: &Image<u8>, dx: bool, border: BorderType) -> Image<i16> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let rl = w * cn;
    let zero = vec![0u8; rl];
    // Source column of each of the two border columns on either side (None: constant 0).
    let col = |x: isize| border_interpolate(x, w, border);
    let fill = |data: &mut [MaybeUninit<i16>]| {
        par_rows(data, rl, |y0, band| {
            let mut t = vec![0i16; rl];
            for (i, out) in band.chunks_mut(rl).enumerate() {
                let y = (y0 + i) as isize;
                let row = |yy: isize| border_interpolate(yy, h, border).map_or(zero.as_slice(), |r| src.row(r));
                let (a, b, c) = (row(y - 1), row(y), row(y + 1));
                // columns 1..w-1 (when w >= 3)
                sobel3_row(a, b, c, &mut t, out, cn, dx);
                // Columns whose horizontal neighbours lie outside the row: from `t` through the
                // border; with the call above every value of the row is written.
                let tv = |x: isize, k: usize| col(x).map_or(0i32, |xx| t[xx * cn + k] as i32);
                for x in [0, w - 1].into_iter().chain(if w < 3 { 0..w } else { 0..0 }) {
                    let xi = x as isize;
                    for k in 0..cn {
                        let v = if dx {
                            tv(xi + 1, k) - tv(xi - 1, k)
                        } else {
                            tv(xi - 1, k) + 2 * tv(xi, k) + tv(xi + 1, k)
                        };
                        out[x * cn + k] = MaybeUninit::new(v as i16);
                    }
                }
            }
        })
    };
    // SAFETY: `fill` writes every value: each row is one `out` above, whose columns 1..w-1
    // `sobel3_row` writes and the loop after it the rest.
    unsafe { Image::<i16>::from_fn_uninit(w, h, cn, fill) }.expect("valid channel count")
}

crate::simd::multiversion! {
    /// One output row of [`sobel3_first`] for the columns with both horizontal neighbours inside
    /// the row; `t` receives the vertical pass (`a + 2b + c` for d/dx, `c - a` for d/dy).
    fn sobel3_row(a: &[u8], b: &[u8], c: &[u8], t: &mut [i16], out: &mut [MaybeUninit<i16>], cn: usize, dx: bool) {
        let n = t.len();
        let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
        if dx {
            for i in 0..n {
                t[i] = a[i] as i16 + 2 * b[i] as i16 + c[i] as i16;
            }
        } else {
            for i in 0..n {
                t[i] = c[i] as i16 - a[i] as i16;
            }
        }
        if n <= 2 * cn {
            return;
        }
        let m = n - 2 * cn;
        let (l, mid, r) = (&t[..m], &t[cn..cn + m], &t[2 * cn..]);
        let o = &mut out[cn..cn + m];
        if dx {
            for i in 0..m {
                o[i] = MaybeUninit::new(r[i] - l[i]);
            }
        } else {
            for i in 0..m {
                o[i] = MaybeUninit::new(l[i] + 2 * mid[i] + r[i]);
            }
        }
    }
}

/// `cv::Sobel` into float with a `scale` (as used by corner detectors).
pub fn sobel_f32<T: Pixel>(
    src: &Image<T>,
    dx: usize,
    dy: usize,
    ksize: usize,
    scale: f32,
    border: BorderType,
) -> Result<Image<f32>> {
    src.check("sobel")?;
    check_deriv("sobel", dx, dy, ksize)?;
    let kx: Vec<f32> =
        sobel_kernel(dx, if ksize == 1 && dx == 0 { 1 } else { ksize }).iter().map(|&v| v as f32).collect();
    let ky: Vec<f32> =
        sobel_kernel(dy, if ksize == 1 && dy == 0 { 1 } else { ksize }).iter().map(|&v| v as f32 * scale).collect();
    crate::filter::sep_filter_2d(src, &kx, &ky, 0.0, border)
}

/// `cv::Scharr(src, CV_16S, dx, dy)` (3x3, more rotation-invariant than Sobel).
pub fn scharr(src: &Image<u8>, dx: usize, dy: usize, border: BorderType) -> Result<Image<i16>> {
    src.check("scharr")?;
    if dx + dy != 1 {
        return Err(bad("scharr", "exactly one of dx, dy must be 1"));
    }
    let d = [-1, 0, 1];
    let s = [3, 10, 3];
    Ok(if dx == 1 { sep_i16(src, &d, &s, border) } else { sep_i16(src, &s, &d, border) })
}

/// `cv::Laplacian(src, CV_16S, ksize)`.
pub fn laplacian(src: &Image<u8>, ksize: usize, border: BorderType) -> Result<Image<i16>> {
    src.check("laplacian")?;
    if ksize == 0 || ksize.is_multiple_of(2) || ksize > 31 {
        return Err(bad("laplacian", format!("ksize {ksize} must be odd and <= 31")));
    }
    if ksize <= 3 {
        let k: [f32; 9] =
            if ksize == 1 { [0., 1., 0., 1., -4., 1., 0., 1., 0.] } else { [2., 0., 2., 0., -8., 0., 2., 0., 2.] };
        let f = src.to_f32();
        let out = filter_2d(&f, &k, 3, 3, 0.0, border)?;
        return Ok(out.map(i16::from_f32));
    }
    let a = sep_i32(src, &sobel_kernel(2, ksize), &sobel_kernel(0, ksize), border);
    let b = sep_i32(src, &sobel_kernel(0, ksize), &sobel_kernel(2, ksize), border);
    let data = a.iter().zip(&b).map(|(&x, &y)| (x + y).clamp(-32768, 32767) as i16).collect();
    Image::from_vec(src.width(), src.height(), src.channels(), data)
}

fn sep_i32(src: &Image<u8>, kx: &[i32], ky: &[i32], border: BorderType) -> Vec<i32> {
    let cn = src.channels();
    let (kw, kh) = (kx.len(), ky.len());
    let row = move |pad: &[u8], out: &mut [i32]| {
        let n = out.len();
        out.fill(0);
        for (i, &k) in kx.iter().enumerate() {
            for (o, &p) in out.iter_mut().zip(&pad[i * cn..i * cn + n]) {
                *o += p as i32 * k;
            }
        }
    };
    // Results land in an f32 image (exact for these magnitudes) to reuse the engine.
    let col = move |rows: &[&[i32]], out: &mut [f32]| {
        for (x, o) in out.iter_mut().enumerate() {
            *o = rows.iter().zip(ky).map(|(r, &k)| r[x] * k).sum::<i32>() as f32;
        }
    };
    let img: Image<f32> = separable(src, cn, (kw, kw / 2), (kh, kh / 2), border, 0u8, row, col);
    img.data().iter().map(|&v| v as i32).collect()
}

/// `cv::Canny` on an 8-bit single-channel image: Sobel (`aperture` 3, 5 or 7, replicated
/// border), non-maximum suppression with OpenCV's fixed-point tan(22.5°) test, hysteresis.
pub fn canny(src: &Image<u8>, low: f64, high: f64, aperture: usize, l2: bool) -> Result<Image<u8>> {
    src.check_cn("canny", "1", &[1])?;
    if !matches!(aperture, 3 | 5 | 7) {
        return Err(bad("canny", format!("aperture {aperture} must be 3, 5 or 7")));
    }
    if low.is_nan() || high.is_nan() {
        return Err(bad("canny", "thresholds must not be NaN"));
    }
    let (mut lo, mut hi) = if low > high { (high, low) } else { (low, high) };
    if aperture == 7 {
        // OpenCV scales 7x7 derivatives by 1/16 (they would overflow i16) and the thresholds too.
        lo /= 16.0;
        hi /= 16.0;
    }
    if l2 {
        lo = lo.min(32767.0);
        hi = hi.min(32767.0);
        if lo > 0.0 {
            lo *= lo;
        }
        if hi > 0.0 {
            hi *= hi;
        }
    }
    let (lo, hi) = (lo.floor() as i64, hi.floor() as i64);
    // The fast path keeps pixel coordinates in u32.
    if aperture == 3 && src.width().max(src.height()) <= u32::MAX as usize {
        let (lo, hi) = (lo.clamp(-1, i32::MAX as i64) as i32, hi.clamp(-1, i32::MAX as i64) as i32);
        return Ok(crate::canny::canny3(src, lo, hi, l2));
    }
    canny_generic(src, lo, hi, aperture, l2)
}

/// Canny over whole Sobel images with a serial hysteresis: any aperture (the 3x3 fast path's
/// reference in tests).
pub(crate) fn canny_generic(src: &Image<u8>, lo: i64, hi: i64, aperture: usize, l2: bool) -> Result<Image<u8>> {
    let (w, h) = (src.width(), src.height());
    let (dx, dy) = if aperture == 7 {
        (sobel7_over16(src, 1, 0), sobel7_over16(src, 0, 1))
    } else {
        (sobel(src, 1, 0, aperture, BorderType::Replicate)?, sobel(src, 0, 1, aperture, BorderType::Replicate)?)
    };
    let (dxd, dyd) = (dx.data(), dy.data());
    // Magnitudes with a zero frame (i32 suffices: 2 * 32767^2 < 2^31).
    let mw = w + 2;
    let mut mag = vec![0i32; mw * (h + 2)];
    par_rows(&mut mag[mw..mw * (h + 1)], mw, |y0, band| {
        for (i, row) in band.chunks_mut(mw).enumerate() {
            let (a, b) = (&dxd[(y0 + i) * w..(y0 + i + 1) * w], &dyd[(y0 + i) * w..(y0 + i + 1) * w]);
            for ((m, &a), &b) in row[1..=w].iter_mut().zip(a).zip(b) {
                let (a, b) = (a as i32, b as i32);
                *m = if l2 { a * a + b * b } else { a.abs() + b.abs() };
            }
        }
    });
    let (lo, hi) = (lo.clamp(-1, i32::MAX as i64) as i32, hi.clamp(-1, i32::MAX as i64) as i32);
    const TG22: i64 = 13573; // tan(22.5°) in Q15
                             // 0: none, 1: weak candidate, 2: strong
    let mut class = vec![0u8; w * h];
    par_rows(&mut class, w, |y0, band| {
        for (i, crow) in band.chunks_mut(w).enumerate() {
            let y = y0 + i;
            for (x, cl) in crow.iter_mut().enumerate() {
                let j = (y + 1) * mw + x + 1;
                let m = mag[j];
                if m <= lo {
                    continue;
                }
                let (xs, ys) = (dxd[y * w + x] as i64, dyd[y * w + x] as i64);
                let ax = xs.abs();
                let ay = ys.abs() << 15;
                let tg22x = ax * TG22;
                let keep = if ay < tg22x {
                    m > mag[j - 1] && m >= mag[j + 1]
                } else {
                    let tg67x = tg22x + (ax << 16);
                    if ay > tg67x {
                        m > mag[j - mw] && m >= mag[j + mw]
                    } else {
                        let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                        m > mag[(j as isize - mw as isize - s) as usize]
                            && m > mag[(j as isize + mw as isize + s) as usize]
                    }
                };
                if keep {
                    *cl = if m > hi { 2 } else { 1 };
                }
            }
        }
    });
    let mut out = vec![0u8; w * h];
    let mut stack: Vec<usize> = Vec::new();
    for (i, &c) in class.iter().enumerate() {
        if c == 2 {
            out[i] = 255;
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        for ddy in -1..=1isize {
            for ddx in -1..=1isize {
                let (nx, ny) = (x + ddx, y + ddy);
                if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                    continue;
                }
                let n = ny as usize * w + nx as usize;
                if class[n] != 0 && out[n] == 0 {
                    out[n] = 255;
                    stack.push(n);
                }
            }
        }
    }
    Image::from_vec(w, h, 1, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sobel3_fast_path_equals_separable_filter() {
        let borders = [BorderType::Reflect101, BorderType::Reflect, BorderType::Replicate, BorderType::Constant];
        for (w, h) in [(1, 1), (1, 5), (2, 3), (3, 2), (4, 1), (37, 29), (130, 67)] {
            for cn in 1..=4 {
                let data: Vec<u8> = (0..w * h * cn).map(|i| ((i * 2654435761usize) >> 11) as u8).collect();
                let img = Image::from_vec(w, h, cn, data).unwrap();
                for border in borders {
                    for dx in [true, false] {
                        let (kx, ky) = if dx {
                            (sobel_kernel(1, 3), sobel_kernel(0, 3))
                        } else {
                            (sobel_kernel(0, 3), sobel_kernel(1, 3))
                        };
                        assert_eq!(
                            sobel3_first(&img, dx, border).data(),
                            sep_i16(&img, &kx, &ky, border).data(),
                            "{w}x{h}x{cn} {border:?} dx {dx}"
                        );
                    }
                }
            }
        }
    }
}
