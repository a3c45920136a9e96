//! Point operators and histograms.
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};

/// `cv::calcHist` of one channel of an 8-bit image, 256 bins over `[0, 256)`.
pub fn calc_hist(src: &Image<u8>, channel: usize) -> Result<Vec<f32>> {
    src.check("calc_hist")?;
    if channel >= src.channels() {
        return Err(bad("calc_hist", format!("channel {channel} out of range")));
    }
    let mut h = [0u32; 256];
    for &v in src.data().iter().skip(channel).step_by(src.channels()) {
        h[v as usize] += 1;
    }
    Ok(h.iter().map(|&c| c as f32).collect())
}

/// `cv::equalizeHist` (8-bit single channel).
pub fn equalize_hist(src: &Image<u8>) -> Result<Image<u8>> {
    src.check_cn("equalize_hist", "1", &[1])?;
    let mut hist = [0i32; 256];
    for &v in src.data() {
        hist[v as usize] += 1;
    }
    let total = src.data().len() as i32;
    let mut i = hist.iter().position(|&c| c > 0).unwrap_or(0);
    if hist[i] == total {
        let v = i as u8;
        return Ok(src.map(|_| v));
    }
    let scale = 255f32 / (total - hist[i]) as f32;
    let mut lut = [0u8; 256];
    let mut sum = 0i32;
    lut[i] = 0;
    i += 1;
    while i < 256 {
        sum += hist[i];
        lut[i] = u8::from_f32(sum as f32 * scale);
        i += 1;
    }
    Ok(src.map(|v| lut[v as usize]))
}

/// `cv::LUT` for 8-bit images and a 256-entry table.
pub fn lut(src: &Image<u8>, table: &[u8; 256]) -> Result<Image<u8>> {
    src.check("lut")?;
    Ok(src.map(|v| table[v as usize]))
}

/// `cv::convertScaleAbs`: `saturate_u8(|src * alpha + beta|)`, computed in f32 as OpenCV.
pub fn convert_scale_abs<T: Pixel>(src: &Image<T>, alpha: f64, beta: f64) -> Result<Image<u8>> {
    src.check("convert_scale_abs")?;
    let (a, b) = (alpha as f32, beta as f32);
    Ok(src.map(|v| u8::from_f32((v.to_f32() * a + b).abs())))
}
