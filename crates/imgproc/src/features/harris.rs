//! Harris response, minimum-eigenvalue response and Shi-Tomasi corners.
use crate::border::BorderType;
use crate::edges::sobel_f32;
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};
use crate::morphology::{dilate, get_structuring_element, MorphShape};

/// Per-pixel gradient covariance `(dx², dx·dy, dy²)` summed over `block` (unnormalised box,
/// sums in f64 as OpenCV).
fn covariance(src: &Image<u8>, block: usize, ksize: usize, border: BorderType) -> Result<Vec<[f32; 3]>> {
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
    let cov: Vec<[f32; 3]> = dx.data().iter().zip(dy.data()).map(|(&a, &b)| [a * a, a * b, b * b]).collect();
    let anchor = block / 2;
    let mut out = vec![[0f32; 3]; w * h];
    // separable unnormalised box, f64 sums
    let mut rows = vec![[0f64; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = [0f64; 3];
            for k in 0..block {
                if let Some(xx) = crate::border_interpolate(x as isize + k as isize - anchor as isize, w, border) {
                    let c = cov[y * w + xx];
                    for t in 0..3 {
                        s[t] += c[t] as f64;
                    }
                }
            }
            rows[y * w + x] = s;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut s = [0f64; 3];
            for k in 0..block {
                if let Some(yy) = crate::border_interpolate(y as isize + k as isize - anchor as isize, h, border) {
                    let c = rows[yy * w + x];
                    for t in 0..3 {
                        s[t] += c[t];
                    }
                }
            }
            out[y * w + x] = [s[0] as f32, s[1] as f32, s[2] as f32];
        }
    }
    Ok(out)
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
    let cov = covariance(src, block_size, ksize, border)?;
    let data = cov
        .iter()
        .map(|&[a, b, c]| {
            let (a, b, c) = (a as f64, b as f64, c as f64);
            (a * c - b * b - k * (a + c) * (a + c)) as f32
        })
        .collect();
    Image::from_vec(src.width(), src.height(), 1, data)
}

/// `cv::cornerMinEigenVal`: the smaller eigenvalue of the gradient covariance.
pub fn corner_min_eigen_val(
    src: &Image<u8>,
    block_size: usize,
    ksize: usize,
    border: BorderType,
) -> Result<Image<f32>> {
    let cov = covariance(src, block_size, ksize, border)?;
    let data = cov
        .iter()
        .map(|&[a, b, c]| {
            let (a, c) = (a * 0.5, c * 0.5);
            (a + c) - ((a - c) * (a - c) + b * b).sqrt()
        })
        .collect();
    Image::from_vec(src.width(), src.height(), 1, data)
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
