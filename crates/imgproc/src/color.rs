//! Colour conversions (`cv::cvtColor`): gray, CIE L*a*b* (D65) and HSV, for RGB or BGR order.
//!
//! 8-bit conversions use OpenCV's integer arithmetic: 14-bit gray coefficients, the 12/15-bit
//! tables of `RGB2Lab_b`, and `RGB2HSV_b`'s 12-bit division tables.
use crate::error::{Error, Result};
use crate::filter::{as_u8, from_u8};
use crate::image::{Image, Pixel};
use crate::parallel::par_rows;
use crate::simd::multiversion;
use std::sync::OnceLock;

/// Conversion codes (`cv::COLOR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorConversion {
    Rgb2Gray,
    Bgr2Gray,
    Gray2Rgb,
    Gray2Bgr,
    Rgb2Bgr,
    Bgr2Rgb,
    Rgb2Lab,
    Bgr2Lab,
    Lab2Rgb,
    Lab2Bgr,
    Rgb2Hsv,
    Bgr2Hsv,
    Hsv2Rgb,
    Hsv2Bgr,
}

/// `cv::cvtColor`. Sources with an alpha channel (4 channels) are accepted where OpenCV accepts
/// them (to gray, Lab, HSV; swapping). 8-bit HSV hue is in `[0, 180)`; float hue in degrees.
/// 8-bit Lab is scaled as OpenCV: `L * 255 / 100`, `a + 128`, `b + 128`.
pub fn cvt_color<T: Pixel>(src: &Image<T>, code: ColorConversion) -> Result<Image<T>> {
    use ColorConversion::*;
    const OP: &str = "cvt_color";
    match code {
        Gray2Rgb | Gray2Bgr => src.check_cn(OP, "1", &[1])?,
        Lab2Rgb | Lab2Bgr | Hsv2Rgb | Hsv2Bgr => src.check_cn(OP, "3", &[3])?,
        _ => src.check_cn(OP, "3 or 4", &[3, 4])?,
    }
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<u16>() && !matches!(code, Rgb2Gray | Bgr2Gray | Gray2Rgb | Gray2Bgr | Rgb2Bgr | Bgr2Rgb) {
        return Err(Error::BadArg { op: OP, msg: "16-bit images support only gray and channel-order conversions".into() });
    }
    let bgr = matches!(code, Bgr2Gray | Bgr2Lab | Lab2Bgr | Bgr2Hsv | Hsv2Bgr);
    let out_cn = match code {
        Rgb2Gray | Bgr2Gray => 1,
        Rgb2Bgr | Bgr2Rgb => src.channels(),
        _ => 3,
    };
    if matches!(code, Rgb2Bgr | Bgr2Rgb) {
        let cn = src.channels();
        return Ok(convert(src, cn, |s, d| swap_rb(s, d, cn)));
    }
    if let Some(s8) = as_u8(src) {
        let f: fn(&[u8], &mut [u8], bool) = match code {
            Rgb2Gray | Bgr2Gray => gray_u8,
            Gray2Rgb | Gray2Bgr => |s, d, _| expand_gray(s, d),
            Rgb2Bgr | Bgr2Rgb => unreachable!("handled above"),
            Rgb2Lab | Bgr2Lab => lab_u8,
            Lab2Rgb | Lab2Bgr => lab2rgb_u8,
            Rgb2Hsv | Bgr2Hsv => hsv_u8,
            Hsv2Rgb | Hsv2Bgr => hsv2rgb_u8,
        };
        return Ok(from_u8(convert(s8, out_cn, |s, d| f(s, d, bgr))));
    }
    let f: fn(&[T], &mut [T], bool) = match code {
        Rgb2Gray | Bgr2Gray => gray_f,
        Gray2Rgb | Gray2Bgr => |s, d, _| expand_gray(s, d),
        Rgb2Bgr | Bgr2Rgb => unreachable!("handled above"),
        Rgb2Lab | Bgr2Lab => lab_f,
        Lab2Rgb | Lab2Bgr => lab2rgb_f,
        Rgb2Hsv | Bgr2Hsv => hsv_f,
        Hsv2Rgb | Hsv2Bgr => hsv2rgb_f,
    };
    Ok(convert(src, out_cn, |s, d| f(s, d, bgr)))
}

fn convert<T: Pixel>(src: &Image<T>, out_cn: usize, f: impl Fn(&[T], &mut [T]) + Sync + Send) -> Image<T> {
    let mut dst = Image::<T>::new(src.width(), src.height(), out_cn).expect("channels");
    let orl = dst.row_len();
    par_rows(dst.data_mut(), orl, |y0, band| {
        for (i, out) in band.chunks_mut(orl).enumerate() {
            f(src.row(y0 + i), out);
        }
    });
    dst
}

fn expand_gray<T: Pixel>(s: &[T], d: &mut [T]) {
    for (o, &v) in d.chunks_exact_mut(3).zip(s) {
        o.fill(v);
    }
}

fn swap_rb<T: Pixel>(s: &[T], d: &mut [T], cn: usize) {
    for (o, i) in d.chunks_exact_mut(cn).zip(s.chunks_exact(cn)) {
        o.copy_from_slice(i);
        o.swap(0, 2);
    }
}

/// Returns (r, g, b) positions in a pixel.
#[inline]
fn rgb_idx(bgr: bool) -> (usize, usize, usize) {
    if bgr {
        (2, 1, 0)
    } else {
        (0, 1, 2)
    }
}

// ---------------------------------------------------------------- gray

#[inline(always)]
fn gray_px<const CN: usize>(s: &[u8], d: &mut [u8], (ri, gi, bi): (usize, usize, usize)) {
    // OpenCV 5 uses 15-bit coefficients (4.x used 14-bit ones).
    const R: u32 = 9798;
    const G: u32 = 19235;
    const B: u32 = 3735;
    for (o, p) in d.iter_mut().zip(s.chunks_exact(CN)) {
        *o = ((p[ri] as u32 * R + p[gi] as u32 * G + p[bi] as u32 * B + (1 << 14)) >> 15) as u8;
    }
}

multiversion! {
    fn gray_u8(s: &[u8], d: &mut [u8], bgr: bool) {
        let idx = rgb_idx(bgr);
        if s.len() == d.len() * 3 {
            gray_px::<3>(s, d, idx)
        } else {
            gray_px::<4>(s, d, idx)
        }
    }
}

fn gray_f<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    let cn = s.len() / d.len();
    let (ri, gi, bi) = rgb_idx(bgr);
    if T::IS_FLOAT {
        for (o, p) in d.iter_mut().zip(s.chunks_exact(cn)) {
            *o = T::from_f32(p[bi].to_f32() * 0.114 + p[gi].to_f32() * 0.587 + p[ri].to_f32() * 0.299);
        }
    } else {
        // 16-bit: OpenCV's 14-bit fixed point.
        for (o, p) in d.iter_mut().zip(s.chunks_exact(cn)) {
            let v = (p[ri].to_f64() as u64 * 9798 + p[gi].to_f64() as u64 * 19235 + p[bi].to_f64() as u64 * 3735 + (1 << 14)) >> 15;
            *o = T::from_f64(v as f64);
        }
    }
}

// ---------------------------------------------------------------- Lab

const LAB_SHIFT: u32 = 12;
const GAMMA_SHIFT: u32 = 3;
const LAB_SHIFT2: u32 = LAB_SHIFT + GAMMA_SHIFT;
const CBRT_TAB_SIZE_B: usize = 256 * 3 / 2 * (1 << GAMMA_SHIFT);
// sRGB -> XYZ (D65) and the D65 white point, as OpenCV's constants.
const SRGB2XYZ: [f64; 9] = [0.412453, 0.357580, 0.180423, 0.212671, 0.715160, 0.072169, 0.019334, 0.119193, 0.950227];
const XYZ2SRGB: [f64; 9] = [3.240479, -1.53715, -0.498535, -0.969256, 1.875991, 0.041556, 0.055648, -0.204043, 1.057311];
const D65: [f64; 3] = [0.950456, 1.0, 1.088754];

struct LabTabs {
    gamma: [u16; 256],
    cbrt: Vec<u16>,
    /// XYZ scaled coefficients, rows X, Y, Z, columns R, G, B.
    coeffs: [i32; 9],
}

fn apply_gamma(x: f32) -> f32 {
    let x = x as f64;
    (if x <= 0.04045 { x / 12.92 } else { ((x + 0.055) / 1.055).powf(2.4) }) as f32
}

fn apply_inv_gamma(x: f32) -> f32 {
    let x = x as f64;
    (if x <= 0.0031308 { x * 12.92 } else { x.powf(1.0 / 2.4) * 1.055 - 0.055 }) as f32
}

fn lab_tabs() -> &'static LabTabs {
    static TABS: OnceLock<LabTabs> = OnceLock::new();
    TABS.get_or_init(|| {
        let int_scale = (255 * (1 << GAMMA_SHIFT)) as f32;
        let mut gamma = [0u16; 256];
        for (i, g) in gamma.iter_mut().enumerate() {
            *g = (int_scale * apply_gamma(i as f32 / 255.0)).round_ties_even() as u16;
        }
        let lthresh = 216f32 / 24389f32;
        let lscale = 841f32 / 108f32;
        let lbias = 16f32 / 116f32;
        let tab_scale = 1f32 / (255f32 * (1 << GAMMA_SHIFT) as f32);
        let lshift2 = (1 << LAB_SHIFT2) as f32;
        let cbrt = (0..CBRT_TAB_SIZE_B)
            .map(|i| {
                let x = tab_scale * i as f32;
                let f = if x < lthresh { x.mul_add(lscale, lbias) } else { x.cbrt() };
                (lshift2 * f).round_ties_even() as u16
            })
            .collect();
        let mut coeffs = [0i32; 9];
        for i in 0..9 {
            coeffs[i] = ((1 << LAB_SHIFT) as f64 * SRGB2XYZ[i] / D65[i / 3]).round_ties_even() as i32;
        }
        LabTabs { gamma, cbrt, coeffs }
    })
}

fn lab_u8(s: &[u8], d: &mut [u8], bgr: bool) {
    let t = lab_tabs();
    let cn = s.len() / (d.len() / 3);
    let (ri, gi, bi) = rgb_idx(bgr);
    let c = &t.coeffs;
    let lscale: i32 = (116 * 255 + 50) / 100;
    let lshift: i32 = -((16 * 255 * (1 << LAB_SHIFT2) + 50) / 100);
    let descale = |v: i32, n: u32| (v + (1 << (n - 1))) >> n;
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(cn)) {
        let (r, g, b) = (t.gamma[p[ri] as usize] as i32, t.gamma[p[gi] as usize] as i32, t.gamma[p[bi] as usize] as i32);
        let fx = t.cbrt[descale(r * c[0] + g * c[1] + b * c[2], LAB_SHIFT) as usize] as i32;
        let fy = t.cbrt[descale(r * c[3] + g * c[4] + b * c[5], LAB_SHIFT) as usize] as i32;
        let fz = t.cbrt[descale(r * c[6] + g * c[7] + b * c[8], LAB_SHIFT) as usize] as i32;
        let l = descale(lscale * fy + lshift, LAB_SHIFT2);
        let a = descale(500 * (fx - fy) + 128 * (1 << LAB_SHIFT2), LAB_SHIFT2);
        let bb = descale(200 * (fy - fz) + 128 * (1 << LAB_SHIFT2), LAB_SHIFT2);
        o[0] = l.clamp(0, 255) as u8;
        o[1] = a.clamp(0, 255) as u8;
        o[2] = bb.clamp(0, 255) as u8;
    }
}

/// Float sRGB (0..1) to L (0..100), a, b.
fn rgb_to_lab_f(r: f32, g: f32, b: f32) -> [f32; 3] {
    let (r, g, b) = (apply_gamma(r.clamp(0.0, 1.0)), apply_gamma(g.clamp(0.0, 1.0)), apply_gamma(b.clamp(0.0, 1.0)));
    let m = |i: usize| ((SRGB2XYZ[i * 3] * r as f64 + SRGB2XYZ[i * 3 + 1] * g as f64 + SRGB2XYZ[i * 3 + 2] * b as f64) / D65[i]) as f32;
    let (x, y, z) = (m(0), m(1), m(2));
    let th = 0.008856f32;
    let f = |t: f32| if t > th { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    let l = if y > th { 116.0 * fy - 16.0 } else { 903.3 * y };
    [l, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn lab_to_rgb_f(l: f32, a: f32, b: f32) -> [f32; 3] {
    let th = 0.008856f32 * 903.3;
    let (y, fy) = if l <= th {
        let y = l / 903.3;
        (y, 7.787 * y + 16.0 / 116.0)
    } else {
        let fy = (l + 16.0) / 116.0;
        (fy * fy * fy, fy)
    };
    let finv = |f: f32| if f <= 0.206_893_03 { (f - 16.0 / 116.0) / 7.787 } else { f * f * f };
    let x = finv(a / 500.0 + fy) * D65[0] as f32;
    let z = finv(fy - b / 200.0) * D65[2] as f32;
    let m = |i: usize| (XYZ2SRGB[i * 3] as f32 * x + XYZ2SRGB[i * 3 + 1] as f32 * y + XYZ2SRGB[i * 3 + 2] as f32 * z).clamp(0.0, 1.0);
    [apply_inv_gamma(m(0)), apply_inv_gamma(m(1)), apply_inv_gamma(m(2))]
}

fn lab_f<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    let cn = s.len() / (d.len() / 3);
    let (ri, gi, bi) = rgb_idx(bgr);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(cn)) {
        let lab = rgb_to_lab_f(p[ri].to_f32(), p[gi].to_f32(), p[bi].to_f32());
        for k in 0..3 {
            o[k] = T::from_f32(lab[k]);
        }
    }
}

fn lab2rgb_f<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    let (ri, gi, bi) = rgb_idx(bgr);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(3)) {
        let rgb = lab_to_rgb_f(p[0].to_f32(), p[1].to_f32(), p[2].to_f32());
        o[ri] = T::from_f32(rgb[0]);
        o[gi] = T::from_f32(rgb[1]);
        o[bi] = T::from_f32(rgb[2]);
    }
}

fn lab2rgb_u8(s: &[u8], d: &mut [u8], bgr: bool) {
    let (ri, gi, bi) = rgb_idx(bgr);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(3)) {
        let rgb = lab_to_rgb_f(p[0] as f32 * (100.0 / 255.0), p[1] as f32 - 128.0, p[2] as f32 - 128.0);
        o[ri] = u8::from_f32(rgb[0] * 255.0);
        o[gi] = u8::from_f32(rgb[1] * 255.0);
        o[bi] = u8::from_f32(rgb[2] * 255.0);
    }
}

// ---------------------------------------------------------------- HSV

const HSV_SHIFT: u32 = 12;

fn hsv_tabs() -> &'static ([i32; 256], [i32; 256]) {
    static T: OnceLock<([i32; 256], [i32; 256])> = OnceLock::new();
    T.get_or_init(|| {
        let mut sdiv = [0i32; 256];
        let mut hdiv = [0i32; 256];
        for i in 1..256 {
            sdiv[i] = ((255 << HSV_SHIFT) as f64 / i as f64).round_ties_even() as i32;
            hdiv[i] = ((180 << HSV_SHIFT) as f64 / (6.0 * i as f64)).round_ties_even() as i32;
        }
        (sdiv, hdiv)
    })
}

fn hsv_u8(s: &[u8], d: &mut [u8], bgr: bool) {
    let (sdiv, hdiv) = hsv_tabs();
    let cn = s.len() / (d.len() / 3);
    let (ri, gi, bi) = rgb_idx(bgr);
    let half = 1 << (HSV_SHIFT - 1);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(cn)) {
        let (r, g, b) = (p[ri] as i32, p[gi] as i32, p[bi] as i32);
        let v = r.max(g).max(b);
        let vmin = r.min(g).min(b);
        let diff = v - vmin;
        let sat = (diff * sdiv[v as usize] + half) >> HSV_SHIFT;
        let h = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut h = (h * hdiv[diff as usize] + half) >> HSV_SHIFT;
        if h < 0 {
            h += 180;
        }
        o[0] = h as u8;
        o[1] = sat as u8;
        o[2] = v as u8;
    }
}

fn rgb_to_hsv_f(r: f32, g: f32, b: f32) -> [f32; 3] {
    let v = r.max(g).max(b);
    let vmin = r.min(g).min(b);
    let diff = v - vmin;
    let s = diff / (v.abs() + f32::EPSILON);
    let diff = 60.0 / (diff + f32::EPSILON);
    let mut h = if v == r {
        (g - b) * diff
    } else if v == g {
        (b - r) * diff + 120.0
    } else {
        (r - g) * diff + 240.0
    };
    if h < 0.0 {
        h += 360.0;
    }
    [h, s, v]
}

fn hsv_to_rgb_f(h: f32, s: f32, v: f32, hscale: f32) -> [f32; 3] {
    if s == 0.0 {
        return [v, v, v];
    }
    const SECTOR: [[usize; 3]; 6] = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]];
    let mut h = h * hscale;
    while h < 0.0 {
        h += 6.0;
    }
    while h >= 6.0 {
        h -= 6.0;
    }
    let mut sector = h.floor() as i32;
    h -= sector as f32;
    if !(0..6).contains(&sector) {
        sector = 0;
        h = 0.0;
    }
    let tab = [v, v * (1.0 - s), v * (1.0 - s * h), v * (1.0 - s * (1.0 - h))];
    let sd = SECTOR[sector as usize];
    // sector table is in (b, g, r) order
    [tab[sd[2]], tab[sd[1]], tab[sd[0]]]
}

fn hsv_f<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    let cn = s.len() / (d.len() / 3);
    let (ri, gi, bi) = rgb_idx(bgr);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(cn)) {
        let hsv = rgb_to_hsv_f(p[ri].to_f32(), p[gi].to_f32(), p[bi].to_f32());
        for k in 0..3 {
            o[k] = T::from_f32(hsv[k]);
        }
    }
}

fn hsv2rgb_f<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    let (ri, gi, bi) = rgb_idx(bgr);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(3)) {
        let rgb = hsv_to_rgb_f(p[0].to_f32(), p[1].to_f32(), p[2].to_f32(), 6.0 / 360.0);
        o[ri] = T::from_f32(rgb[0]);
        o[gi] = T::from_f32(rgb[1]);
        o[bi] = T::from_f32(rgb[2]);
    }
}

fn hsv2rgb_u8(s: &[u8], d: &mut [u8], bgr: bool) {
    let (ri, gi, bi) = rgb_idx(bgr);
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(3)) {
        let rgb = hsv_to_rgb_f(p[0] as f32, p[1] as f32 * (1.0 / 255.0), p[2] as f32 * (1.0 / 255.0), 6.0 / 180.0);
        o[ri] = u8::from_f32(rgb[0] * 255.0);
        o[gi] = u8::from_f32(rgb[1] * 255.0);
        o[bi] = u8::from_f32(rgb[2] * 255.0);
    }
}
