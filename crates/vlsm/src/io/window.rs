//! Windowing: single-channel values (DICOM, NIfTI, 16-bit greyscale) mapped to 8 bits.

use anyhow::{bail, Result};

use super::types::{Window, Windowing};

/// CT presets in Hounsfield units: (name, width, level).
pub const WINDOW_PRESETS: [(&str, f64, f64); 4] =
    [("soft", 400.0, 40.0), ("lung", 1500.0, -600.0), ("bone", 1800.0, 400.0), ("brain", 80.0, 40.0)];

/// Parses a `--window` value: a CT preset (`soft`, `lung`, `bone`, `brain`), `W,L` (width,
/// level), `auto` (the file's window, else percentiles 0.5-99.5), `minmax`, or `pLOW,HIGH`
/// (percentiles, e.g. `p1,99`).
pub fn parse_window(s: &str) -> Result<Windowing> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(&(_, w, l)) = WINDOW_PRESETS.iter().find(|(n, _, _)| *n == t) {
        return Ok(Windowing::Fixed(Window { center: l, width: w }));
    }
    match t.as_str() {
        "auto" => return Ok(Windowing::Auto),
        "minmax" => return Ok(Windowing::MinMax),
        _ => {}
    }
    let (pct, rest) = match t.strip_prefix('p') {
        Some(r) => (true, r),
        None => (false, t.as_str()),
    };
    let nums: Vec<f64> = rest.split(',').map(|v| v.trim().parse::<f64>()).collect::<Result<_, _>>().unwrap_or_default();
    let bad = || {
        anyhow::anyhow!(
            "bad window {s:?}: give soft, lung, bone, brain, W,L (width,level, e.g. 400,40), auto, minmax or pLOW,HIGH"
        )
    };
    if nums.len() != 2 || !nums.iter().all(|v| v.is_finite()) {
        return Err(bad());
    }
    if pct {
        let (low, high) = (nums[0], nums[1]);
        if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
            bail!("bad window {s:?}: percentiles must satisfy 0 <= low < high <= 100");
        }
        return Ok(Windowing::Percentile { low, high });
    }
    if nums[0] < 1.0 {
        bail!("bad window {s:?}: the width must be at least 1");
    }
    Ok(Windowing::Fixed(Window { center: nums[1], width: nums[0] }))
}

/// A window resolved against data: maps one value to 0..255 (non-finite values to 0). Resolve it
/// once over a whole volume and apply it to every slice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowMap {
    /// DICOM linear (PS3.3 C.11.2.1.2.1).
    Dicom { center: f64, width: f64 },
    /// Linear from `lo` (0) to `hi` (255).
    Linear { lo: f64, hi: f64 },
    /// Constant or empty data: everything is 0.
    Zero,
}

impl WindowMap {
    pub fn map(&self, x: f32) -> u8 {
        if !x.is_finite() {
            return 0;
        }
        let x = x as f64;
        let y = match *self {
            WindowMap::Dicom { center: c, width: wd } => {
                let (lo, hi) = (c - 0.5 - (wd - 1.0) / 2.0, c - 0.5 + (wd - 1.0) / 2.0);
                if x <= lo {
                    0.0
                } else if x > hi {
                    255.0
                } else {
                    ((x - (c - 0.5)) / (wd - 1.0) + 0.5) * 255.0
                }
            }
            WindowMap::Linear { lo, hi } => (x - lo) / (hi - lo) * 255.0,
            WindowMap::Zero => 0.0,
        };
        y.round().clamp(0.0, 255.0) as u8
    }

    /// `values` mapped to 0..255; `invert` (MONOCHROME1) flips the result.
    pub fn apply(&self, values: &[f32], invert: bool) -> Vec<u8> {
        values.iter().map(|&x| if invert { 255 - self.map(x) } else { self.map(x) }).collect()
    }
}

/// Resolves `windowing` over `values` (`file_window`: the file's own, for `Auto`). Percentiles
/// are exact (numpy's linear rule) and need no copy of large data.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
pub fn resolve_window(values: &[f32], windowing: Windowing, file_window: Option<Window>) -> Result<WindowMap> {
    let auto = Windowing::Percentile { low: 0.5, high: 99.5 };
    let w = match windowing {
        Windowing::Auto => file_window.map(Windowing::Fixed).unwrap_or(auto),
        w => w,
    };
    Ok(match w {
        Windowing::Fixed(Window { center: c, width: wd }) => {
            if !(wd >= 1.0) || !c.is_finite() || !wd.is_finite() {
                bail!("window width must be >= 1 and finite (center {c}, width {wd})");
            }
            WindowMap::Dicom { center: c, width: wd }
        }
        Windowing::Percentile { low, high } => {
            if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                bail!("percentiles must satisfy 0 <= low < high <= 100 (got {low}, {high})");
            }
            linear(percentile(values, low), percentile(values, high))
        }
        Windowing::MinMax => {
            let fin = values.iter().copied().filter(|x| x.is_finite());
            let lo = fin.clone().fold(f32::INFINITY, f32::min) as f64;
            let hi = fin.fold(f32::NEG_INFINITY, f32::max) as f64;
            linear(lo, hi)
        }
        Windowing::Auto => unreachable!(),
    })
}

/// Maps values to 0..255. Non-finite values map to 0.
pub fn window_to_u8(
    values: &[f32],
    windowing: Windowing,
    file_window: Option<Window>,
    invert: bool,
) -> Result<Vec<u8>> {
    Ok(resolve_window(values, windowing, file_window)?.apply(values, invert))
}

#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
fn linear(lo: f64, hi: f64) -> WindowMap {
    if !(hi > lo) {
        return WindowMap::Zero;
    }
    WindowMap::Linear { lo, hi }
}

/// numpy.percentile of the finite values with the default linear interpolation.
fn percentile(values: &[f32], q: f64) -> f64 {
    let n = values.iter().filter(|x| x.is_finite()).count();
    if n == 0 {
        return 0.0;
    }
    let pos = q / 100.0 * (n - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(n - 1);
    let f = pos - i as f64;
    let (a, b) = (order_stat(values, i) as f64, order_stat(values, j) as f64);
    a + (b - a) * f
}

/// A key whose unsigned order is the numeric order of finite f32s.
#[inline]
fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The `k`-th smallest finite value (0-based): a sort for small data, else a two-pass radix
/// select on the 16 high and 16 low bits of the order key (no copy of the data).
fn order_stat(values: &[f32], k: usize) -> f32 {
    if values.len() <= 1 << 20 {
        let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_unstable_by(f32::total_cmp);
        return v[k];
    }
    let mut hist = vec![0usize; 1 << 16];
    for &x in values.iter().filter(|x| x.is_finite()) {
        hist[(key(x) >> 16) as usize] += 1;
    }
    let (hi, below) = find_bin(&hist, k);
    hist.fill(0);
    for &x in values.iter().filter(|x| x.is_finite()) {
        let kx = key(x);
        if kx >> 16 == hi as u32 {
            hist[(kx & 0xFFFF) as usize] += 1;
        }
    }
    let (lo, _) = find_bin(&hist, k - below);
    let kx = (hi as u32) << 16 | lo as u32;
    let b = if kx >> 31 == 1 { kx & 0x7FFF_FFFF } else { !kx };
    f32::from_bits(b)
}

/// The bin holding rank `k` and the count below it.
fn find_bin(hist: &[usize], k: usize) -> (usize, usize) {
    let mut acc = 0;
    for (b, &c) in hist.iter().enumerate() {
        if acc + c > k {
            return (b, acc);
        }
        acc += c;
    }
    (hist.len() - 1, acc)
}
