//! Point operators and histograms.
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};
use crate::parallel::par_rows;
use rayon::prelude::*;

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
    let hist = hist_u8(src.data());
    let total = src.data().len() as i32;
    let mut i = hist.iter().position(|&c| c > 0).unwrap_or(0);
    let mut lut = [0u8; 256];
    if hist[i] as i32 == total {
        lut.fill(i as u8);
        return Ok(apply_lut(src, &lut));
    }
    let scale = 255f32 / (total - hist[i] as i32) as f32;
    let mut sum = 0i32;
    i += 1;
    while i < 256 {
        sum += hist[i] as i32;
        lut[i] = u8::from_f32(sum as f32 * scale);
        i += 1;
    }
    Ok(apply_lut(src, &lut))
}

/// `cv::LUT` for 8-bit images and a 256-entry table.
pub fn lut(src: &Image<u8>, table: &[u8; 256]) -> Result<Image<u8>> {
    src.check("lut")?;
    Ok(apply_lut(src, table))
}

fn apply_lut(src: &Image<u8>, table: &[u8; 256]) -> Image<u8> {
    let mut dst = Image::<u8>::new(src.width(), src.height(), src.channels()).expect("same shape as src");
    let rl = src.row_len();
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (o, &v) in band.iter_mut().zip(&src.data()[y0 * rl..]) {
            *o = table[v as usize];
        }
    });
    dst
}

/// Histogram of all bytes of `data`, counted in parallel chunks; within a chunk four
/// interleaved sub-histograms keep runs of equal values from serialising on one counter.
pub(crate) fn hist_u8(data: &[u8]) -> [u32; 256] {
    fn count(chunk: &[u8]) -> [u32; 256] {
        let mut h = [[0u32; 256]; 4];
        let mut quads = chunk.chunks_exact(4);
        for q in &mut quads {
            h[0][q[0] as usize] += 1;
            h[1][q[1] as usize] += 1;
            h[2][q[2] as usize] += 1;
            h[3][q[3] as usize] += 1;
        }
        for &v in quads.remainder() {
            h[0][v as usize] += 1;
        }
        std::array::from_fn(|i| h[0][i] + h[1][i] + h[2][i] + h[3][i])
    }
    let add = |mut a: [u32; 256], b: [u32; 256]| {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        a
    };
    if data.len() < 1 << 16 {
        return count(data);
    }
    let chunk = data.len().div_ceil(rayon::current_num_threads().max(1) * 2);
    data.par_chunks(chunk).map(count).reduce(|| [0; 256], add)
}

/// `cv::convertScaleAbs`: `saturate_u8(|src * alpha + beta|)`, computed in f32 as OpenCV.
pub fn convert_scale_abs<T: Pixel>(src: &Image<T>, alpha: f64, beta: f64) -> Result<Image<u8>> {
    src.check("convert_scale_abs")?;
    let (a, b) = (alpha as f32, beta as f32);
    Ok(src.map(|v| u8::from_f32((v.to_f32() * a + b).abs())))
}
