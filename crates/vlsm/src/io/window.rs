//! Windowing: single-channel values (DICOM, NIfTI, 16-bit greyscale) mapped to 8 bits.

use anyhow::{bail, Result};

use super::types::{Window, Windowing};

/// Maps values to 0..255. Non-finite values map to 0.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
pub fn window_to_u8(
    values: &[f32],
    windowing: Windowing,
    file_window: Option<Window>,
    invert: bool,
) -> Result<Vec<u8>> {
    let auto = Windowing::Percentile { low: 0.5, high: 99.5 };
    let w = match windowing {
        Windowing::Auto => file_window.map(Windowing::Fixed).unwrap_or(auto),
        w => w,
    };
    let map: Box<dyn Fn(f64) -> f64> = match w {
        Windowing::Fixed(Window { center: c, width: wd }) => {
            if !(wd >= 1.0) || !c.is_finite() || !wd.is_finite() {
                bail!("window width must be >= 1 and finite (center {c}, width {wd})");
            }
            let (lo, hi) = (c - 0.5 - (wd - 1.0) / 2.0, c - 0.5 + (wd - 1.0) / 2.0);
            Box::new(move |x| {
                if x <= lo {
                    0.0
                } else if x > hi {
                    255.0
                } else {
                    ((x - (c - 0.5)) / (wd - 1.0) + 0.5) * 255.0
                }
            })
        }
        Windowing::Percentile { low, high } => {
            if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                bail!("percentiles must satisfy 0 <= low < high <= 100 (got {low}, {high})");
            }
            let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_unstable_by(f32::total_cmp);
            linear(percentile(&v, low), percentile(&v, high))
        }
        Windowing::MinMax => {
            let fin = values.iter().copied().filter(|x| x.is_finite());
            let lo = fin.clone().fold(f32::INFINITY, f32::min) as f64;
            let hi = fin.fold(f32::NEG_INFINITY, f32::max) as f64;
            linear(lo, hi)
        }
        Windowing::Auto => unreachable!(),
    };
    Ok(values
        .iter()
        .map(|&x| {
            let y = if x.is_finite() { map(x as f64).round().clamp(0.0, 255.0) as u8 } else { 0 };
            if invert {
                255 - y
            } else {
                y
            }
        })
        .collect())
}

#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
fn linear(lo: f64, hi: f64) -> Box<dyn Fn(f64) -> f64> {
    if !(hi > lo) {
        // Constant (or empty) data: everything maps to 0.
        return Box::new(|_| 0.0);
    }
    Box::new(move |x| (x - lo) / (hi - lo) * 255.0)
}

/// numpy.percentile with the default linear interpolation, on sorted data.
fn percentile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    let f = pos - i as f64;
    sorted[i] as f64 + (sorted[j] as f64 - sorted[i] as f64) * f
}
