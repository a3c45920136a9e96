//! Loss and Dice curves as a PNG: left panel train (blue) and val (orange) loss, right panel
//! val Dice (green) on a fixed 0..1 axis. No text; ticks mark tenths of each axis.

use std::path::Path;

use anyhow::Result;
use image::{DynamicImage, Rgb, RgbImage};

use super::log::EpochRecord;

const W: u32 = 400;
const H: u32 = 300;
const PAD: i64 = 24;
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const ORANGE: Rgb<u8> = Rgb([255, 127, 14]);
const GREEN: Rgb<u8> = Rgb([44, 160, 44]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GREY: Rgb<u8> = Rgb([225, 225, 225]);

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Bresenham, two pixels thick.
fn line(img: &mut RgbImage, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>, thick: bool) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        put(img, x0, y0, c);
        if thick {
            put(img, x0 + 1, y0, c);
            put(img, x0, y0 + 1, c);
        }
        if x0 == x1 && y0 == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x0 += sx;
        }
        if e2 <= dx {
            err += dx;
            y0 += sy;
        }
    }
}

/// One panel at x offset `ox`: grid, axes, and each series scaled to `lo..hi`.
fn panel(img: &mut RgbImage, ox: i64, n: usize, lo: f64, hi: f64, series: &[(&[f64], Rgb<u8>)]) {
    let (x0, x1, y0, y1) = (ox + PAD, ox + W as i64 - PAD / 2, H as i64 - PAD, PAD / 2);
    for k in 1..10 {
        let y = y0 + (y1 - y0) * k / 10;
        line(img, (x0, y), (x1, y), GREY, false);
        line(img, (x0 - 4, y), (x0, y), BLACK, false);
        let x = x0 + (x1 - x0) * k / 10;
        line(img, (x, y0), (x, y0 + 4), BLACK, false);
    }
    line(img, (x0, y0), (x1, y0), BLACK, false);
    line(img, (x0, y0), (x0, y1), BLACK, false);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let px = |i: usize, v: f64| {
        let fx = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.5 };
        let fy = ((v - lo) / span).clamp(0.0, 1.0);
        (x0 + (fx * (x1 - x0) as f64).round() as i64, y0 + (fy * (y1 - y0) as f64).round() as i64)
    };
    for (vals, c) in series {
        let pts: Vec<_> = vals.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| px(i, v)).collect();
        for w in pts.windows(2) {
            line(img, w[0], w[1], *c, true);
        }
        if pts.len() == 1 {
            line(img, pts[0], pts[0], *c, true);
        }
    }
}

/// Draws the curves of `history` (one entry per epoch).
pub fn curves_image(history: &[EpochRecord]) -> RgbImage {
    let mut img = RgbImage::from_pixel(2 * W, H, Rgb([255, 255, 255]));
    let n = history.len();
    let tl: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    let vl: Vec<f64> = history.iter().map(|r| r.val_loss).collect();
    let vd: Vec<f64> = history.iter().map(|r| r.val_dice).collect();
    let finite = tl.iter().chain(&vl).copied().filter(|v| v.is_finite());
    let hi = finite.clone().fold(f64::MIN, f64::max);
    let lo = finite.fold(f64::MAX, f64::min).min(0.0);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    panel(&mut img, 0, n, lo, hi, &[(&tl, BLUE), (&vl, ORANGE)]);
    panel(&mut img, W as i64, n, 0.0, 1.0, &[(&vd, GREEN)]);
    img
}

pub fn save_curves(path: &Path, history: &[EpochRecord]) -> Result<()> {
    crate::io::write_png_atomic(path, &DynamicImage::ImageRgb8(curves_image(history)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels() {
        let h: Vec<EpochRecord> = (0..5)
            .map(|i| EpochRecord {
                epoch: i + 1,
                train_loss: 1.0 / (i + 1) as f64,
                val_loss: 1.2 / (i + 1) as f64,
                val_dice: 0.2 * i as f64,
                lr: 1e-3,
                seconds: 1.0,
            })
            .collect();
        let img = curves_image(&h);
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        assert!(count(BLUE) > 100 && count(ORANGE) > 100 && count(GREEN) > 100);
        // One epoch and empty history must not panic.
        curves_image(&h[..1]);
        curves_image(&[]);
    }
}
