//! Global, automatic (Otsu, triangle) and adaptive thresholds (`cv::threshold`,
//! `cv::adaptiveThreshold`).
use crate::border::BorderType;
use crate::error::{bad, Result};
use crate::filter::{as_u8, blur, from_u8, gaussian_kernels, sep_filter_u8_via_f32};
use crate::hist::histogram;
use crate::image::{Image, Pixel};
use crate::parallel::par_rows;
use crate::simd::multiversion;

/// `cv::ThresholdTypes` without the automatic flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdType {
    Binary,
    BinaryInv,
    Trunc,
    ToZero,
    ToZeroInv,
}

/// How the threshold value is chosen: as given, or by `THRESH_OTSU` / `THRESH_TRIANGLE`
/// (8-bit single-channel images only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThresholdMethod {
    #[default]
    Fixed,
    Otsu,
    Triangle,
}

/// `cv::threshold`. Returns the threshold used (the computed one for Otsu/triangle, the floored
/// one for 8-bit images) and the result.
pub fn threshold<T: Pixel>(
    src: &Image<T>,
    thresh: f64,
    maxval: f64,
    ty: ThresholdType,
    method: ThresholdMethod,
) -> Result<(f64, Image<T>)> {
    src.check("threshold")?;
    if thresh.is_nan() || maxval.is_nan() {
        return Err(bad("threshold", "threshold and maxval must not be NaN"));
    }
    if let Some(s8) = as_u8(src) {
        let thresh = match method {
            ThresholdMethod::Fixed => thresh,
            _ => {
                src.check_cn("threshold", "1 (Otsu/triangle)", &[1])?;
                let hist = histogram(s8.data());
                if method == ThresholdMethod::Otsu {
                    otsu(&hist, s8.data().len())
                } else {
                    triangle(&hist)
                }
            }
        };
        let (t, img) = threshold_u8(s8, thresh, maxval, ty);
        return Ok((t, from_u8(img)));
    }
    if method != ThresholdMethod::Fixed {
        return Err(bad("threshold", "Otsu and triangle need an 8-bit single-channel image"));
    }
    let (t, m) = if T::IS_FLOAT { (thresh as f32 as f64, maxval as f32 as f64) } else { (thresh.floor(), maxval) };
    let mv = T::from_f64(m);
    let tt = T::from_f64(t);
    let out = src.map(|v| {
        let above = v.to_f64() > t;
        match ty {
            ThresholdType::Binary => {
                if above {
                    mv
                } else {
                    T::default()
                }
            }
            ThresholdType::BinaryInv => {
                if above {
                    T::default()
                } else {
                    mv
                }
            }
            ThresholdType::Trunc => {
                if above {
                    tt
                } else {
                    v
                }
            }
            ThresholdType::ToZero => {
                if above {
                    v
                } else {
                    T::default()
                }
            }
            ThresholdType::ToZeroInv => {
                if above {
                    T::default()
                } else {
                    v
                }
            }
        }
    });
    Ok((t, out))
}

fn threshold_u8(src: &Image<u8>, thresh: f64, maxval: f64, ty: ThresholdType) -> (f64, Image<u8>) {
    let it = thresh.floor() as i64;
    let mut imax = maxval.round_ties_even() as i64;
    if ty == ThresholdType::Trunc {
        imax = it;
    }
    let imax = imax.clamp(0, 255) as u8;
    if !(0..255).contains(&it) {
        use ThresholdType::*;
        let constant = matches!(ty, Binary | BinaryInv)
            || (matches!(ty, Trunc | ToZeroInv) && it < 0)
            || (ty == ToZero && it >= 255);
        let out = if constant {
            // Binary gives 0 above 255, BinaryInv imax; the other types reach here as all 0.
            let v = match ty {
                Binary if it < 255 => imax,
                BinaryInv if it >= 255 => imax,
                _ => 0,
            };
            src.map(|_| v)
        } else {
            src.clone()
        };
        return (it as f64, out);
    }
    let t = it as u8;
    let mut dst = Image::<u8>::new(src.width(), src.height(), src.channels()).expect("channels");
    let rl = src.row_len();
    par_rows(dst.data_mut(), rl, |y0, band| {
        threshold_run(&src.data()[y0 * rl..y0 * rl + band.len()], band, t, imax, ty)
    });
    (it as f64, dst)
}

multiversion! {
    /// One comparison and select per byte (vectorised), for `0 <= t < 255`.
    fn threshold_run(src: &[u8], dst: &mut [u8], t: u8, imax: u8, ty: ThresholdType) {
        let px = dst.iter_mut().zip(src);
        match ty {
            ThresholdType::Binary => px.for_each(|(o, &v)| *o = if v > t { imax } else { 0 }),
            ThresholdType::BinaryInv => px.for_each(|(o, &v)| *o = if v > t { 0 } else { imax }),
            ThresholdType::Trunc => px.for_each(|(o, &v)| *o = v.min(t)),
            ThresholdType::ToZero => px.for_each(|(o, &v)| *o = if v > t { v } else { 0 }),
            ThresholdType::ToZeroInv => px.for_each(|(o, &v)| *o = if v > t { 0 } else { v }),
        }
    }
}

/// OpenCV's `getThreshVal_Otsu_8u`, same double arithmetic so that ties resolve the same way.
fn otsu(h: &[u32; 256], total: usize) -> f64 {
    let scale = 1.0 / total as f64;
    let mu: f64 = h.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum::<f64>() * scale;
    let (mut mu1, mut q1) = (0.0f64, 0.0f64);
    let (mut max_sigma, mut max_val) = (0.0f64, 0.0f64);
    let eps = f32::EPSILON as f64;
    for (i, &c) in h.iter().enumerate() {
        let p = c as f64 * scale;
        mu1 *= q1;
        q1 += p;
        let q2 = 1.0 - q1;
        if q1.min(q2) < eps || q1.max(q2) > 1.0 - eps {
            continue;
        }
        mu1 = (mu1 + i as f64 * p) / q1;
        let mu2 = (mu - q1 * mu1) / q2;
        let sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
        if sigma > max_sigma {
            max_sigma = sigma;
            max_val = i as f64;
        }
    }
    max_val
}

/// OpenCV's `getThreshVal_Triangle_8u`.
fn triangle(hist: &[u32; 256]) -> f64 {
    const N: usize = 256;
    let mut h = *hist;
    let mut left = h.iter().position(|&c| c > 0).unwrap_or(0);
    left = left.saturating_sub(1);
    let mut right = (1..N).rev().find(|&i| h[i] > 0).unwrap_or(0);
    if right < N - 1 {
        right += 1;
    }
    let (mut max_ind, mut max) = (0usize, 0u32);
    for (i, &c) in h.iter().enumerate() {
        if c > max {
            max = c;
            max_ind = i;
        }
    }
    let mut flipped = false;
    if (max_ind as i64 - left as i64) < (right as i64 - max_ind as i64) {
        flipped = true;
        h.reverse();
        left = N - 1 - right;
        max_ind = N - 1 - max_ind;
    }
    let mut thresh = left as f64;
    let a = max as f64;
    let b = left as f64 - max_ind as f64;
    let mut dist = 0.0;
    for (i, &hi) in h.iter().enumerate().take(max_ind + 1).skip(left + 1) {
        let d = a * i as f64 + b * hi as f64;
        if d > dist {
            dist = d;
            thresh = i as f64;
        }
    }
    thresh -= 1.0;
    if flipped {
        thresh = (N - 1) as f64 - thresh;
    }
    thresh
}

/// `cv::AdaptiveThresholdTypes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdaptiveMethod {
    Mean,
    Gaussian,
}

/// `cv::adaptiveThreshold` on an 8-bit single-channel image: compares each pixel with the mean
/// (box or Gaussian, replicated border) of its `block_size` neighbourhood minus `c`.
/// `ty` must be `Binary` or `BinaryInv`; `block_size` odd and > 1.
pub fn adaptive_threshold(
    src: &Image<u8>,
    max_value: f64,
    method: AdaptiveMethod,
    ty: ThresholdType,
    block_size: usize,
    c: f64,
) -> Result<Image<u8>> {
    src.check_cn("adaptive_threshold", "1", &[1])?;
    if block_size < 3 || block_size.is_multiple_of(2) {
        return Err(bad("adaptive_threshold", format!("block size {block_size} must be odd and > 1")));
    }
    crate::limits::check_kernel_limit("adaptive_threshold", block_size, block_size)?;
    if !matches!(ty, ThresholdType::Binary | ThresholdType::BinaryInv) {
        return Err(bad("adaptive_threshold", "type must be Binary or BinaryInv"));
    }
    if c.is_nan() || max_value.is_nan() {
        return Err(bad("adaptive_threshold", "NaN argument"));
    }
    if max_value < 0.0 {
        return Ok(src.map(|_| 0));
    }
    let mean = match method {
        AdaptiveMethod::Mean => blur(src, (block_size, block_size), BorderType::Replicate)?,
        AdaptiveMethod::Gaussian => {
            // OpenCV blurs the image as f32 here (not with its 8-bit fixed-point Gaussian);
            // the kernels are those of a float image.
            let size = (src.width(), src.height());
            match gaussian_kernels(size, false, (block_size, block_size), (0.0, 0.0), BorderType::Replicate)? {
                None => src.clone(),
                Some((kx, ky)) => {
                    let f32s = |k: Vec<f64>| k.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
                    sep_filter_u8_via_f32(src, &f32s(kx), &f32s(ky), BorderType::Replicate)
                }
            }
        }
    };
    let imax = max_value.round_ties_even().clamp(0.0, 255.0) as u8;
    let idelta = if ty == ThresholdType::Binary { c.ceil() } else { c.floor() } as i32;
    let mut tab = [0u8; 768];
    for (i, t) in tab.iter_mut().enumerate() {
        let above = i as i32 - 255 > -idelta;
        *t = if above == (ty == ThresholdType::Binary) { imax } else { 0 };
    }
    let mut dst = Image::<u8>::new(src.width(), src.height(), 1)?;
    let rl = src.row_len();
    par_rows(dst.data_mut(), rl, |y0, band| {
        let r = y0 * rl..y0 * rl + band.len();
        for ((o, &s), &m) in band.iter_mut().zip(&src.data()[r.clone()]).zip(&mean.data()[r]) {
            *o = tab[(s as i32 - m as i32 + 255) as usize];
        }
    });
    Ok(dst)
}
