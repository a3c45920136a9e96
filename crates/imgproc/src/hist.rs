//! Point operators and histograms.
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};
use crate::parallel::par_rows;

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
    let hist = histogram(src.data());
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

/// Histogram of `data`: parallel chunks, each with four interleaved sub-histograms so that
/// runs of equal values do not serialise on one counter.
pub(crate) fn histogram(data: &[u8]) -> [u32; 256] {
    use rayon::prelude::*;
    let part = |chunk: &[u8]| {
        let mut h = [[0u32; 256]; 4];
        let mut it = chunk.chunks_exact(4);
        for q in &mut it {
            h[0][q[0] as usize] += 1;
            h[1][q[1] as usize] += 1;
            h[2][q[2] as usize] += 1;
            h[3][q[3] as usize] += 1;
        }
        for &v in it.remainder() {
            h[0][v as usize] += 1;
        }
        let mut out = [0u32; 256];
        for (i, o) in out.iter_mut().enumerate() {
            *o = h[0][i] + h[1][i] + h[2][i] + h[3][i];
        }
        out
    };
    let chunk = (data.len() / rayon::current_num_threads().max(1)).max(1 << 16);
    data.par_chunks(chunk).map(part).reduce(
        || [0u32; 256],
        |mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        },
    )
}

/// `tab[v]` for every value, in parallel row bands.
fn apply_lut(src: &Image<u8>, tab: &[u8; 256]) -> Image<u8> {
    let mut dst = Image::<u8>::new(src.width(), src.height(), src.channels()).expect("channels");
    let rl = src.row_len();
    par_rows(dst.data_mut(), rl, |y0, band| {
        let s = &src.data()[y0 * rl..y0 * rl + band.len()];
        for (o, &v) in band.iter_mut().zip(s) {
            *o = tab[v as usize];
        }
    });
    dst
}

/// `cv::convertScaleAbs`: `saturate_u8(|src * alpha + beta|)`, computed in f32 as OpenCV.
pub fn convert_scale_abs<T: Pixel>(src: &Image<T>, alpha: f64, beta: f64) -> Result<Image<u8>> {
    src.check("convert_scale_abs")?;
    let (a, b) = (alpha as f32, beta as f32);
    Ok(src.map(|v| u8::from_f32((v.to_f32() * a + b).abs())))
}
