//! The CLIPSeg paper's visual prompt engineering.

use image::{GrayImage, RgbImage};
use imgproc::{get_gaussian_kernel, sep_filter_2d, BorderType, Image};

use super::{PreprocessError, Result};

/// Gaussian sigma of the visual-prompt background blur.
pub const VISUAL_PROMPT_SIGMA: f64 = 2.0;
/// Radius (taps = 2r+1) of the visual-prompt background blur.
pub const VISUAL_PROMPT_RADIUS: usize = 6;
/// Background intensity factor of the visual prompt.
pub const VISUAL_PROMPT_DARKEN: f32 = 0.1;

/// The CLIPSeg paper's visual prompt engineering, as `tools/make_clipseg_fixtures.py`
/// defines it: background (mask ≤ 127) = 0.1 × Gaussian blur (σ 2, radius 6, reflect-101,
/// f32, horizontal then vertical) of the image, foreground kept; rounded `floor(x + 0.5)`;
/// cropped to the mask's bounding box grown by `ceil(max(bw, bh) / 10)` on each side.
pub fn visual_prompt(img: &RgbImage, mask: &GrayImage) -> Result<RgbImage> {
    if img.dimensions() != mask.dimensions() {
        return Err(PreprocessError::Invalid(format!(
            "prompt image is {}x{} but its mask is {}x{}",
            img.width(),
            img.height(),
            mask.width(),
            mask.height()
        )));
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let m = mask.as_raw();
    let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0usize, usize::MAX, 0usize);
    for y in 0..h {
        for x in 0..w {
            if m[y * w + x] > 127 {
                x0 = x0.min(x);
                x1 = x1.max(x + 1);
                y0 = y0.min(y);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x0 == usize::MAX {
        return Err(PreprocessError::Invalid("the prompt mask is empty (no pixel > 127)".into()));
    }
    let mg = (x1 - x0).max(y1 - y0).div_ceil(10);
    let (cx0, cx1) = (x0.saturating_sub(mg), (x1 + mg).min(w));
    let (cy0, cy1) = (y0.saturating_sub(mg), (y1 + mg).min(h));
    // OpenCV's kernel for 13 taps at sigma 2 equals the fixture's (exp(-k^2 / 8) normalised, in
    // f64, then f32); the separable filter accumulates in f32 tap by tap, rows first, as it does.
    let blur_err = |e: imgproc::Error| PreprocessError::Invalid(format!("visual prompt blur: {e}"));
    let taps: Vec<f32> = get_gaussian_kernel(2 * VISUAL_PROMPT_RADIUS + 1, VISUAL_PROMPT_SIGMA)
        .map_err(blur_err)?
        .into_iter()
        .map(|x| x as f32)
        .collect();
    let blur: Image<f32> =
        sep_filter_2d(&Image::from(img), &taps, &taps, 0.0, BorderType::Reflect101).map_err(blur_err)?;
    let blur = blur.data();
    let raw = img.as_raw();
    let mut out = RgbImage::new((cx1 - cx0) as u32, (cy1 - cy0) as u32);
    for y in cy0..cy1 {
        for x in cx0..cx1 {
            let mut px = [0u8; 3];
            for (c, p) in px.iter_mut().enumerate() {
                let i = (y * w + x) * 3 + c;
                *p = if m[y * w + x] > 127 {
                    raw[i]
                } else {
                    (VISUAL_PROMPT_DARKEN * blur[i] + 0.5).floor().clamp(0.0, 255.0) as u8
                };
            }
            out.put_pixel((x - cx0) as u32, (y - cy0) as u32, image::Rgb(px));
        }
    }
    Ok(out)
}
