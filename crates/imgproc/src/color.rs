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
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<u16>()
        && !matches!(code, Rgb2Gray | Bgr2Gray | Gray2Rgb | Gray2Bgr | Rgb2Bgr | Bgr2Rgb)
    {
        return Err(Error::BadArg {
            op: OP,
            msg: "16-bit images support only gray and channel-order conversions".into(),
        });
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
        if matches!(code, Rgb2Gray | Bgr2Gray) {
            return Ok(from_u8(convert_gray_u8(s8, bgr)));
        }
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

/// [`convert`] for 8-bit gray: the output is not zeroed first (the conversion writes all of it).
fn convert_gray_u8(src: &Image<u8>, bgr: bool) -> Image<u8> {
    let orl = src.width();
    let fill = |data: &mut [std::mem::MaybeUninit<u8>]| {
        par_rows(data, orl, |y0, band| {
            for (i, out) in band.chunks_mut(orl).enumerate() {
                // SAFETY: `gray_u8` only writes `out` (every value of it) and never reads it;
                // `MaybeUninit<u8>` has the layout of `u8`.
                let out = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len()) };
                gray_u8(src.row(y0 + i), out, bgr);
            }
        })
    };
    // SAFETY: `fill` writes every value (each row is one `out` above, all of which `gray_u8` writes).
    unsafe { Image::<u8>::from_fn_uninit(src.width(), src.height(), 1, fill) }.expect("one channel")
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

fn gray_u8(s: &[u8], d: &mut [u8], bgr: bool) {
    let idx = rgb_idx(bgr);
    let cn = s.len() / d.len();
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        done = unsafe {
            if cn == 3 {
                gray_avx2::<3>(s, d, idx)
            } else {
                gray_avx2::<4>(s, d, idx)
            }
        };
    }
    let (s, d) = (&s[done * cn..], &mut d[done..]);
    if cn == 3 {
        gray_px::<3>(s, d, idx)
    } else {
        gray_px::<4>(s, d, idx)
    }
}

/// `gray_px` on 32 pixels per step, 8 per 256-bit register: a dword permute puts pixels 0-3 of
/// a group in the low 128-bit lane and 4-7 in the high one, one byte shuffle per lane then
/// zero-extends them to `(r, g)` u16 pairs and another to `(b, 1)` pairs, and `madd` forms
/// `r*R + g*G` and `b*B + 2^14` in i32 lanes. Returns how many leading pixels it converted.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gray_avx2<const CN: usize>(s: &[u8], d: &mut [u8], (ri, gi, bi): (usize, usize, usize)) -> usize {
    use std::arch::x86_64::*;
    // Byte masks for 4 pixels of a 128-bit lane: u16 lane 2j gets channel `c0` of pixel j and
    // lane 2j + 1 channel `c1` (None: zero).
    let mask = |c0: usize, c1: Option<usize>| {
        let m: [i8; 16] = std::array::from_fn(|k| {
            let (j, b) = (k / 4, k % 4);
            match (b, c1) {
                (0, _) => (j * CN + c0) as i8,
                (2, Some(c1)) => (j * CN + c1) as i8,
                _ => -1,
            }
        });
        let v = _mm_loadu_si128(m.as_ptr() as *const __m128i);
        _mm256_broadcastsi128_si256(v)
    };
    let (mrg, mb) = (mask(ri, Some(gi)), mask(bi, None));
    let perm = _mm256_setr_epi32(0, 1, 2, 3, CN as i32, CN as i32 + 1, CN as i32 + 2, CN as i32 + 3);
    let one_hi = _mm256_set1_epi32(1 << 16);
    let krg = _mm256_set1_epi32(9798 | (19235 << 16));
    let kb1 = _mm256_set1_epi32(3735 | (1 << 14 << 16));
    let fix = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // Gray values of pixels `at..at + 8` as i32.
    let group = |at: usize| {
        let v = _mm256_loadu_si256(s.as_ptr().add(at * CN) as *const __m256i);
        let v = _mm256_permutevar8x32_epi32(v, perm);
        let rg = _mm256_shuffle_epi8(v, mrg);
        let b1 = _mm256_or_si256(_mm256_shuffle_epi8(v, mb), one_hi);
        _mm256_srli_epi32::<15>(_mm256_add_epi32(_mm256_madd_epi16(rg, krg), _mm256_madd_epi16(b1, kb1)))
    };
    let mut i = 0;
    // The last group's load reads 32 bytes from pixel i + 24.
    while (i + 24) * CN + 32 <= s.len() && i + 32 <= d.len() {
        let w01 = _mm256_packs_epi32(group(i), group(i + 8));
        let w23 = _mm256_packs_epi32(group(i + 16), group(i + 24));
        // Dwords of 4 pixels now come as 0, 8, 16, 24, 4, 12, 20, 28.
        let y = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), fix);
        _mm256_storeu_si256(d.as_mut_ptr().add(i) as *mut __m256i, y);
        i += 32;
    }
    i
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
            let v = (p[ri].to_f64() as u64 * 9798
                + p[gi].to_f64() as u64 * 19235
                + p[bi].to_f64() as u64 * 3735
                + (1 << 14))
                >> 15;
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
const XYZ2SRGB: [f64; 9] =
    [3.240479, -1.53715, -0.498535, -0.969256, 1.875991, 0.041556, 0.055648, -0.204043, 1.057311];
const D65: [f64; 3] = [0.950456, 1.0, 1.088754];
/// Fixed-point base of the integer Lab -> RGB path.
const LAB_BASE: i32 = 1 << 14;
/// Smallest `f(x)` / `f(z)` index the inverse path can produce (a = 255 or b = 0 at L = 0).
const MIN_AB: i32 = -8145;
const INV_GAMMA_TAB: usize = 1 << 12;

struct LabTabs {
    gamma: [u16; 256],
    /// `f(t) * 2^15` indexed by `t * 2040`; padded to 4096 so a masked index needs no check.
    cbrt: Vec<u16>,
    /// XYZ scaled coefficients, rows X, Y, Z, columns R, G, B.
    coeffs: [i32; 9],
    /// Inverse path: per L byte, `y` and `f(y)` in units of 2^-14.
    l_to_yf: [(i32, i32); 256],
    /// `f^-1` on 2^-14 units, indexed by `f - MIN_AB`.
    ab_to_xz: Vec<i32>,
    /// Linear RGB (12 bits) to sRGB bytes.
    inv_gamma: Vec<u8>,
    /// XYZ -> RGB coefficients (2^12) with the white point folded in; rows R, G, B.
    inv_coeffs: [i32; 9],
}

// The gamma curves in f64 with OpenCV's constants written as the same fractions.
fn apply_gamma(x: f32) -> f32 {
    let x = x as f64;
    let shift = 11.0 / 200.0;
    (if x <= 809.0 / 20000.0 { x / (323.0 / 25.0) } else { ((x + shift) / (1.0 + shift)).powf(12.0 / 5.0) }) as f32
}

fn apply_inv_gamma(x: f32) -> f32 {
    let x = x as f64;
    let shift = 11.0 / 200.0;
    (if x <= 7827.0 / 2_500_000.0 { x * (323.0 / 25.0) } else { x.powf(1.0 / (12.0 / 5.0)) * (1.0 + shift) - shift })
        as f32
}

/// OpenCV's `softfloat` cube root (Turkowski): a rational approximation on the mantissa in
/// f64 whose result is truncated, not rounded, to f32. Its tables must use this, not a
/// correctly rounded cbrt, to hit the same integer after scaling (e.g. index 324).
fn cbrt_tk(x: f32) -> f32 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff == 0 || !x.is_finite() {
        return x;
    }
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut shx = e % 3;
    if shx >= 0 {
        shx -= 3;
    }
    let ex = (e - shx) / 3 - 1;
    let fr = f64::from_bits(((shx + 1023) as u64) << 52 | ((bits & 0x7f_ffff) as u64) << 29);
    const A: [f64; 10] = [
        45.254_833_975_680_3,
        192.279_836_835_506_1,
        119.165_482_428_558_16,
        13.432_501_390_862_4,
        0.163_616_122_658_575_42,
        14.808_840_932_191_346,
        151.971_405_104_443_56,
        168.525_441_410_156_83,
        33.990_594_135_021_56,
        1.0,
    ];
    let num = (((A[0] * fr + A[1]) * fr + A[2]) * fr + A[3]) * fr + A[4];
    let den = (((A[5] * fr + A[6]) * fr + A[7]) * fr + A[8]) * fr + A[9];
    let m = ((num / den).to_bits() & ((1 << 52) - 1)) >> 29;
    f32::from_bits((bits & 0x8000_0000) | ((ex + 127) as u32) << 23 | m as u32)
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
        let mut cbrt: Vec<u16> = (0..CBRT_TAB_SIZE_B)
            .map(|i| {
                let x = tab_scale * i as f32;
                let f = if x < lthresh { x.mul_add(lscale, lbias) } else { cbrt_tk(x) };
                (lshift2 * f).round_ties_even() as u16
            })
            .collect();
        cbrt.resize(4096, 0);
        let mut coeffs = [0i32; 9];
        let mut inv_coeffs = [0i32; 9];
        for i in 0..9 {
            coeffs[i] = ((1 << LAB_SHIFT) as f64 * SRGB2XYZ[i] / D65[i / 3]).round_ties_even() as i32;
            inv_coeffs[i] = ((1 << LAB_SHIFT) as f64 * XYZ2SRGB[i] * D65[i % 3]).round_ties_even() as i32;
        }
        // L -> (y, f(y)): exact fractions evaluated in f32 as OpenCV does.
        let base = LAB_BASE as f32;
        let mut l_to_yf = [(0i32, 0i32); 256];
        for (i, e) in l_to_yf.iter_mut().enumerate() {
            let i = i as i32;
            *e = if i <= 20 {
                let y = ((i * LAB_BASE * 180) as f32 / (17 * 29 * 29 * 29) as f32).round_ties_even() as i32;
                let f = base * (16f32 / 116f32 + (i * 5) as f32 / (3 * 17 * 29) as f32);
                (y, f.round_ties_even() as i32)
            } else {
                let fy = (i * 100 * LAB_BASE) as f32 / (255 * 116) as f32 + (16 * LAB_BASE) as f32 / 116f32;
                (((fy * fy * fy) / (base * base)).round_ties_even() as i32, fy.round_ties_even() as i32)
            };
        }
        let ab_to_xz = (MIN_AB..LAB_BASE * 9 / 4 + MIN_AB)
            .map(|i| {
                // Integer division truncating toward zero, as C.
                if i <= 3390 {
                    i * 108 / 841 - LAB_BASE * 16 / 116 * 108 / 841
                } else {
                    i * i / LAB_BASE * i / LAB_BASE
                }
            })
            .collect();
        let inv_scale = 1f32 / INV_GAMMA_TAB as f32;
        let inv_gamma = (0..INV_GAMMA_TAB)
            .map(|i| (255f32 * apply_inv_gamma(inv_scale * i as f32)).round_ties_even() as u8)
            .collect();
        LabTabs { gamma, cbrt, coeffs, l_to_yf, ab_to_xz, inv_gamma, inv_coeffs }
    })
}

#[inline(always)]
fn lab_px<const CN: usize>(s: &[u8], d: &mut [u8], (ri, gi, bi): (usize, usize, usize), t: &LabTabs) {
    let c = &t.coeffs;
    let cbrt: &[u16; 4096] = t.cbrt.as_slice().try_into().expect("4096 entries");
    const LSCALE: i32 = (116 * 255 + 50) / 100;
    const LSHIFT: i32 = -((16 * 255 * (1 << LAB_SHIFT2) + 50) / 100);
    const H12: i32 = 1 << (LAB_SHIFT - 1);
    const H15: i32 = 1 << (LAB_SHIFT2 - 1);
    const AB0: i32 = 128 * (1 << LAB_SHIFT2) + H15;
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(CN)) {
        let (r, g, b) =
            (t.gamma[p[ri] as usize] as i32, t.gamma[p[gi] as usize] as i32, t.gamma[p[bi] as usize] as i32);
        // Indices stay below 3072 (coefficient rows sum to < 2^13); the mask only elides checks.
        let fx = cbrt[((r * c[0] + g * c[1] + b * c[2] + H12) >> LAB_SHIFT) as usize & 4095] as i32;
        let fy = cbrt[((r * c[3] + g * c[4] + b * c[5] + H12) >> LAB_SHIFT) as usize & 4095] as i32;
        let fz = cbrt[((r * c[6] + g * c[7] + b * c[8] + H12) >> LAB_SHIFT) as usize & 4095] as i32;
        let l = (LSCALE * fy + LSHIFT + H15) >> LAB_SHIFT2;
        let a = (500 * (fx - fy) + AB0) >> LAB_SHIFT2;
        let bb = (200 * (fy - fz) + AB0) >> LAB_SHIFT2;
        o[0] = l.clamp(0, 255) as u8;
        o[1] = a.clamp(0, 255) as u8;
        o[2] = bb.clamp(0, 255) as u8;
    }
}

multiversion! {
    fn lab_u8(s: &[u8], d: &mut [u8], bgr: bool) {
        let t = lab_tabs();
        let idx = rgb_idx(bgr);
        if s.len() == d.len() {
            lab_px::<3>(s, d, idx, t)
        } else {
            lab_px::<4>(s, d, idx, t)
        }
    }
}

multiversion! {
    /// OpenCV's integer Lab -> RGB (`Lab2RGBinteger`): L through a table to y and f(y), a and b
    /// scaled by fixed-point reciprocals, f^-1 through a table, 2^12 matrix, inverse gamma table.
    fn lab2rgb_u8(s: &[u8], d: &mut [u8], bgr: bool) {
        let t = lab_tabs();
        let (ri, gi, bi) = rgb_idx(bgr);
        let c = &t.inv_coeffs;
        let inv: &[u8; INV_GAMMA_TAB] = t.inv_gamma.as_slice().try_into().expect("table size");
        const SHIFT: u32 = LAB_SHIFT + 14 - 12;
        let xz = |v: i32| t.ab_to_xz[(v - MIN_AB) as usize];
        for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(3)) {
            let (y, ify) = t.l_to_yf[p[0] as usize];
            let (aa, bb) = (p[1] as i32, p[2] as i32);
            let adiv = ((5 * aa * 53687 + (1 << 7)) >> 13) - 128 * LAB_BASE / 500;
            let bdiv = ((bb * 41943 + (1 << 4)) >> 9) - 128 * LAB_BASE / 200 + 1;
            let (x, z) = (xz(ify + adiv), xz(ify - bdiv));
            let ch = |k: usize| {
                let v = (c[k] * x + c[k + 1] * y + c[k + 2] * z + (1 << (SHIFT - 1))) >> SHIFT;
                inv[v.clamp(0, INV_GAMMA_TAB as i32 - 1) as usize]
            };
            o[ri] = ch(0);
            o[gi] = ch(3);
            o[bi] = ch(6);
        }
    }
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
    let m = |i: usize| {
        (XYZ2SRGB[i * 3] as f32 * x + XYZ2SRGB[i * 3 + 1] as f32 * y + XYZ2SRGB[i * 3 + 2] as f32 * z).clamp(0.0, 1.0)
    };
    [apply_inv_gamma(m(0)), apply_inv_gamma(m(1)), apply_inv_gamma(m(2))]
}

// OpenCV's float RGB -> Lab for sRGB with the D65 white point (`RGB2Lab_f` with
// `useInterpolation`): the Lab of a 33^3 grid of sRGB values, in units of 2^-14, built once in
// f32 as OpenCV builds it (`initLUTforLABLUVs16`), then per pixel a fixed-point trilinear
// interpolation of the cell the pixel falls in (`trilinearInterpolate`), 16 steps per cell edge.
const LAB_LUT_DIM: usize = 33;
const LAB_LUT_SHIFT: u32 = 5;
const LAB_BASE_SHIFT: u32 = 14;
const TRILINEAR_SHIFT: u32 = 8 - LAB_LUT_SHIFT + 1;
const TRILINEAR_BASE: usize = 1 << TRILINEAR_SHIFT;

struct LabLut {
    /// Per grid cell origin (blue fastest, then green, then red): the 8 corners' L, then a,
    /// then b, corner `4 * db + 2 * dg + dr`.
    cells: Vec<i16>,
    /// Per fractional position (blue fastest): the 8 corner weights, summing to 2^12.
    weights: Vec<i16>,
}

fn lab_lut() -> &'static LabLut {
    static LUT: OnceLock<LabLut> = OnceLock::new();
    LUT.get_or_init(|| {
        const N: usize = LAB_LUT_DIM;
        // Rows X, Y, Z over (blue, green, red): the matrix times 1 / white point, rounded to f32.
        let mut s = [0f32; 9];
        for i in 0..3 {
            let scale = 1.0 / D65[i];
            for (k, col) in [2, 1, 0].into_iter().enumerate() {
                s[i * 3 + k] = (SRGB2XYZ[i * 3 + col] * scale) as f32;
            }
        }
        let lthresh = 216f32 / 24389f32;
        let lscale = 841f32 / 108f32;
        let lbias = 16f32 / 116f32;
        let f9033 = 24389f32 / 27f32;
        let lbase = (1 << LAB_BASE_SHIFT) as f32;
        let gam: Vec<f32> = (0..N).map(|p| apply_gamma(p as f32 / (N - 1) as f32)).collect();
        let f = |t: f32| if t > lthresh { cbrt_tk(t) } else { t.mul_add(lscale, lbias) };
        let mut prev = vec![0i16; N * N * N * 3];
        for r in 0..N {
            for q in 0..N {
                for p in 0..N {
                    let (cb, cg, cr) = (gam[p], gam[q], gam[r]);
                    let x = cb * s[0] + cg * s[1] + cr * s[2];
                    let y = cb * s[3] + cg * s[4] + cr * s[5];
                    let z = cb * s[6] + cg * s[7] + cr * s[8];
                    let (fx, fy, fz) = (f(x), f(y), f(z));
                    let l = if y > lthresh { 116f32 * fy - 16f32 } else { f9033 * y };
                    let a = 500f32 * (fx - fy);
                    let b = 200f32 * (fy - fz);
                    let i = 3 * (p + N * q + N * N * r);
                    prev[i] = (lbase * l / 100f32).round_ties_even() as i16;
                    prev[i + 1] = (lbase * (a + 128f32) / 256f32).round_ties_even() as i16;
                    prev[i + 2] = (lbase * (b + 128f32) / 256f32).round_ties_even() as i16;
                }
            }
        }
        let mut cells = vec![0i16; N * N * N * 24];
        for r in 0..N {
            for q in 0..N {
                for p in 0..N {
                    let cell = 24 * (p + N * q + N * N * r);
                    for corner in 0..8 {
                        let (dp, dq, dr) = (corner >> 2, (corner >> 1) & 1, corner & 1);
                        let old = 3 * ((p + dp).min(N - 1) + N * (q + dq).min(N - 1) + N * N * (r + dr).min(N - 1));
                        for c in 0..3 {
                            cells[cell + 8 * c + corner] = prev[old + c];
                        }
                    }
                }
            }
        }
        const TB: usize = TRILINEAR_BASE;
        let mut weights = vec![0i16; TB * TB * TB * 8];
        for r in 0..TB {
            for q in 0..TB {
                for p in 0..TB {
                    let (pp, qq, rr) = ((TB - p) as i16, (TB - q) as i16, (TB - r) as i16);
                    let (p, q, r16) = (p as i16, q as i16, r as i16);
                    let w = &mut weights[8 * (p as usize + TB * q as usize + TB * TB * r)..][..8];
                    w.copy_from_slice(&[
                        pp * qq * rr,
                        pp * qq * r16,
                        pp * q * rr,
                        pp * q * r16,
                        p * qq * rr,
                        p * qq * r16,
                        p * q * rr,
                        p * q * r16,
                    ]);
                }
            }
        }
        LabLut { cells, weights }
    })
}

/// A channel value in [0, 1] (NaN as 0, as OpenCV's vector loop) in units of 2^-14.
#[inline(always)]
fn lab_fixed(v: f32) -> usize {
    let v = if v >= 0.0 { v.min(1.0) } else { 0.0 };
    (v * (1 << LAB_BASE_SHIFT) as f32).round_ties_even() as usize
}

#[inline(always)]
fn lab_interp(lut: &LabLut, cb: usize, cg: usize, cr: usize) -> [i32; 3] {
    const N: usize = LAB_LUT_DIM;
    const TB: usize = TRILINEAR_BASE;
    const S: u32 = LAB_BASE_SHIFT - LAB_LUT_SHIFT;
    const F: u32 = LAB_BASE_SHIFT - 8 - 1;
    const M: usize = TB - 1;
    let cell = 24 * ((cb >> S) + N * (cg >> S) + N * N * (cr >> S));
    let wi = 8 * (((cb >> F) & M) + TB * ((cg >> F) & M) + TB * TB * ((cr >> F) & M));
    let c: &[i16; 24] = lut.cells[cell..cell + 24].try_into().expect("cell");
    let w: &[i16; 8] = lut.weights[wi..wi + 8].try_into().expect("weights");
    let mut out = [0i32; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut acc = 0i32;
        for i in 0..8 {
            acc += c[8 * k + i] as i32 * w[i] as i32;
        }
        *o = (acc + (1 << (3 * TRILINEAR_SHIFT - 1))) >> (3 * TRILINEAR_SHIFT);
    }
    out
}

#[inline(always)]
fn lab_f_row<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    let lut = lab_lut();
    let cn = s.len() / (d.len() / 3);
    let (ri, gi, bi) = rgb_idx(bgr);
    let l_scale = 100.0 / (1 << LAB_BASE_SHIFT) as f32;
    let ab_scale = 256.0 / (1 << LAB_BASE_SHIFT) as f32;
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(cn)) {
        let (cr, cg, cb) = (lab_fixed(p[ri].to_f32()), lab_fixed(p[gi].to_f32()), lab_fixed(p[bi].to_f32()));
        let [l, a, b] = lab_interp(lut, cb, cg, cr);
        o[0] = T::from_f32(l as f32 * l_scale);
        o[1] = T::from_f32(a as f32 * ab_scale - 128.0);
        o[2] = T::from_f32(b as f32 * ab_scale - 128.0);
    }
}

multiversion! {
    fn lab_f32_row(s: &[f32], d: &mut [f32], bgr: bool) {
        lab_f_row(s, d, bgr)
    }
}

/// [`lab_f32_row`] with the interpolation in SSE4.1 registers (AVX2 machines): the same integer
/// sums (`pmaddwd` on the 8 corners) and float scalings; the last pixel of a row (whose vector
/// read would pass the row's end) takes the scalar formula.
#[cfg(target_arch = "x86_64")]
fn lab_f32_row_simd(s: &[f32], d: &mut [f32], bgr: bool) -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    if !*HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2")) {
        return false;
    }
    // SAFETY: the CPU has AVX2 (checked just above).
    unsafe { lab_x86::row(s, d, bgr, lab_lut()) };
    true
}

#[cfg(target_arch = "x86_64")]
mod lab_x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn row(s: &[f32], d: &mut [f32], bgr: bool, lut: &LabLut) {
        let n = d.len() / 3;
        if n == 0 {
            return;
        }
        let cn = s.len() / n;
        // Lanes of the loaded pixel holding blue, green, red.
        let (bl, rl) = if bgr { (0, 2) } else { (2, 0) };
        const N: usize = LAB_LUT_DIM;
        const TB: usize = TRILINEAR_BASE;
        const SH: i32 = (LAB_BASE_SHIFT - LAB_LUT_SHIFT) as i32;
        const F: i32 = (LAB_BASE_SHIFT - 8 - 1) as i32;
        // SAFETY (whole body): AVX2 is enabled for this function; every pointer read or written
        // below is inside `s`, `d`, `lut.cells` or `lut.weights` (bounds noted where taken).
        unsafe {
            let zero = _mm_setzero_ps();
            let one = _mm_set1_ps(1.0);
            let base = _mm_set1_ps((1 << LAB_BASE_SHIFT) as f32);
            let scale = _mm_setr_ps(100.0 / (1 << LAB_BASE_SHIFT) as f32, 1.0 / 64.0, 1.0 / 64.0, 0.0);
            let shift = _mm_setr_ps(0.0, 128.0, 128.0, 0.0);
            let half = _mm_set1_epi32(1 << (3 * TRILINEAR_SHIFT - 1));
            let mask = _mm_set1_epi32((TB - 1) as i32);
            let cells = lut.cells.as_ptr();
            let weights = lut.weights.as_ptr();
            let mut tmp = [0f32; 4];
            for i in 0..n {
                let o = i * cn;
                let v = if o + 4 <= s.len() {
                    _mm_loadu_ps(s.as_ptr().add(o))
                } else {
                    _mm_setr_ps(s[o], s[o + 1], s[o + 2], 0.0)
                };
                // max(v, 0) gives 0 for NaN (the second operand), as OpenCV's v_max.
                let v = _mm_min_ps(_mm_max_ps(v, zero), one);
                let c = _mm_cvtps_epi32(_mm_mul_ps(v, base)); // half to even (default MXCSR)
                let t = _mm_srai_epi32::<SH>(c);
                let f = _mm_and_si128(_mm_srai_epi32::<F>(c), mask);
                let mut tc = [0i32; 4];
                let mut fc = [0i32; 4];
                _mm_storeu_si128(tc.as_mut_ptr() as *mut __m128i, t);
                _mm_storeu_si128(fc.as_mut_ptr() as *mut __m128i, f);
                // coordinates are in 0..=2^14: cell indices 0..=32, fractions 0..16
                let cell = 24 * (tc[bl] as usize + N * tc[1] as usize + N * N * tc[rl] as usize);
                let wi = 8 * (fc[bl] as usize + TB * fc[1] as usize + TB * TB * fc[rl] as usize);
                debug_assert!(cell + 24 <= lut.cells.len() && wi + 8 <= lut.weights.len());
                let w = _mm_loadu_si128(weights.add(wi) as *const __m128i);
                let cp = cells.add(cell);
                let sl = _mm_madd_epi16(_mm_loadu_si128(cp as *const __m128i), w);
                let sa = _mm_madd_epi16(_mm_loadu_si128(cp.add(8) as *const __m128i), w);
                let sb = _mm_madd_epi16(_mm_loadu_si128(cp.add(16) as *const __m128i), w);
                let sum = _mm_hadd_epi32(_mm_hadd_epi32(sl, sa), _mm_hadd_epi32(sb, sb));
                let lab = _mm_srai_epi32::<{ 3 * TRILINEAR_SHIFT as i32 }>(_mm_add_epi32(sum, half));
                let r = _mm_sub_ps(_mm_mul_ps(_mm_cvtepi32_ps(lab), scale), shift);
                if i + 1 < n {
                    // the fourth lane lands on the next pixel's L, written after this
                    _mm_storeu_ps(d.as_mut_ptr().add(3 * i), r);
                } else {
                    _mm_storeu_ps(tmp.as_mut_ptr(), r);
                    d[3 * i..3 * i + 3].copy_from_slice(&tmp[..3]);
                }
            }
        }
    }
}

/// Float RGB to Lab as OpenCV's `RGB2Lab_f` (sRGB, D65): table interpolation, see [`lab_lut`].
fn lab_f<T: Pixel>(s: &[T], d: &mut [T], bgr: bool) {
    if let (Some(s32), Some(d32)) = (as_f32_slice(s), as_f32_slice_mut(d)) {
        #[cfg(target_arch = "x86_64")]
        if lab_f32_row_simd(s32, d32, bgr) {
            return;
        }
        return lab_f32_row(s32, d32, bgr);
    }
    lab_f_row(s, d, bgr)
}

fn as_f32_slice<T: Pixel>(s: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32 (checked just above), so the slice's layout is that of [f32].
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr() as *const f32, s.len()) })
}

fn as_f32_slice_mut<T: Pixel>(s: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32 (checked just above), so the slice's layout is that of [f32].
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len()) })
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

#[inline(always)]
fn hsv_px<const CN: usize>(
    s: &[u8],
    d: &mut [u8],
    (ri, gi, bi): (usize, usize, usize),
    sdiv: &[i32; 256],
    hdiv: &[i32; 256],
) {
    const HALF: i32 = 1 << (HSV_SHIFT - 1);
    // Selects rather than branches, and u8 table indices (no bounds checks).
    for (o, p) in d.chunks_exact_mut(3).zip(s.chunks_exact(CN)) {
        let (r8, g8, b8) = (p[ri], p[gi], p[bi]);
        let v8 = r8.max(g8).max(b8);
        let diff8 = v8 - r8.min(g8).min(b8);
        let (r, g, b, v, diff) = (r8 as i32, g8 as i32, b8 as i32, v8 as i32, diff8 as i32);
        let sat = (diff * sdiv[v8 as usize] + HALF) >> HSV_SHIFT;
        let hg = if v == g { b - r + 2 * diff } else { r - g + 4 * diff };
        let h = if v == r { g - b } else { hg };
        let h = (h * hdiv[diff8 as usize] + HALF) >> HSV_SHIFT;
        o[0] = (h + (h >> 31 & 180)) as u8;
        o[1] = sat as u8;
        o[2] = v8;
    }
}

/// OpenCV's `RGB2HSV_b`: 12-bit reciprocal tables for s and h, hue in [0, 180).
fn hsv_u8(s: &[u8], d: &mut [u8], bgr: bool) {
    let (sdiv, hdiv) = hsv_tabs();
    let idx = rgb_idx(bgr);
    let cn = if s.len() == d.len() { 3 } else { 4 };
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        done = unsafe { hsv_avx2(s, d, cn, idx, sdiv, hdiv) };
    }
    let (s, d) = (&s[done * cn..], &mut d[done * 3..]);
    if cn == 3 {
        hsv_px::<3>(s, d, idx, sdiv, hdiv)
    } else {
        hsv_px::<4>(s, d, idx, sdiv, hdiv)
    }
}

/// The same arithmetic on 8 pixels per step (i32 lanes; byte shuffles spread the pixels,
/// gathers read the tables). Returns how many leading pixels it converted; the caller does the rest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsv_avx2(
    s: &[u8],
    d: &mut [u8],
    cn: usize,
    (ri, gi, bi): (usize, usize, usize),
    sdiv: &[i32; 256],
    hdiv: &[i32; 256],
) -> usize {
    use std::arch::x86_64::*;
    // Loads read 32 bytes and the stores write 16: stay clear of both slice ends.
    let mut i = 0;
    // Dwords 0..3 and 3..6: with 3 channels, pixels 4..7 start at byte 12 of the second half.
    let spread =
        if cn == 3 { _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6) } else { _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7) };
    // Per 128-bit half: byte `k * cn + c` of the half into the low byte of dword k.
    let pick = |c: usize| {
        let mut m = [-1i8; 32];
        for half in 0..2 {
            for k in 0..4 {
                m[half * 16 + k * 4] = (k * cn + c) as i8;
            }
        }
        _mm256_loadu_si256(m.as_ptr() as *const __m256i)
    };
    let (mr, mg, mb) = (pick(ri), pick(gi), pick(bi));
    let half = _mm256_set1_epi32(1 << (HSV_SHIFT - 1));
    // Per 128-bit lane: bytes 0,1,2 of each of its four i32 (h | s << 8 | v << 16) packed to 12.
    let pack = _mm256_setr_epi8(
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
    );
    while i * cn + 32 <= s.len() && i * 3 + 28 <= d.len() {
        let raw = _mm256_loadu_si256(s.as_ptr().add(i * cn) as *const __m256i);
        let raw = _mm256_permutevar8x32_epi32(raw, spread);
        let (r, g, b) = (_mm256_shuffle_epi8(raw, mr), _mm256_shuffle_epi8(raw, mg), _mm256_shuffle_epi8(raw, mb));
        let v = _mm256_max_epi32(_mm256_max_epi32(r, g), b);
        let diff = _mm256_sub_epi32(v, _mm256_min_epi32(_mm256_min_epi32(r, g), b));
        let sd = _mm256_i32gather_epi32::<4>(sdiv.as_ptr(), v);
        let hd = _mm256_i32gather_epi32::<4>(hdiv.as_ptr(), diff);
        let sat = _mm256_srai_epi32::<12>(_mm256_add_epi32(_mm256_mullo_epi32(diff, sd), half));
        let is_r = _mm256_cmpeq_epi32(v, r);
        let is_g = _mm256_cmpeq_epi32(v, g);
        let d2 = _mm256_add_epi32(diff, diff);
        let hg = _mm256_add_epi32(_mm256_sub_epi32(b, r), d2);
        let hb = _mm256_add_epi32(_mm256_sub_epi32(r, g), _mm256_add_epi32(d2, d2));
        let h = _mm256_blendv_epi8(hb, hg, is_g);
        let h = _mm256_blendv_epi8(h, _mm256_sub_epi32(g, b), is_r);
        let h = _mm256_srai_epi32::<12>(_mm256_add_epi32(_mm256_mullo_epi32(h, hd), half));
        let h = _mm256_add_epi32(h, _mm256_and_si256(_mm256_srai_epi32::<31>(h), _mm256_set1_epi32(180)));
        let px = _mm256_or_si256(_mm256_or_si256(h, _mm256_slli_epi32::<8>(sat)), _mm256_slli_epi32::<16>(v));
        let px = _mm256_shuffle_epi8(px, pack);
        let out = d.as_mut_ptr().add(i * 3);
        _mm_storeu_si128(out as *mut __m128i, _mm256_castsi256_si128(px));
        _mm_storeu_si128(out.add(12) as *mut __m128i, _mm256_extracti128_si256::<1>(px));
        i += 8;
    }
    i
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

/// Pixels per block of OpenCV's 8-bit `HSV2RGB_b` vector loop on this CPU: four vectors of f32,
/// as wide as the widest SIMD OpenCV 5.1 dispatches `cvtColor` to here (AVX-512 SKX: 64, AVX2: 32,
/// otherwise 16). Whole blocks truncate and the rest of the row rounds, so cv2's own 8-bit
/// HSV->RGB output depends on the machine; ours follows the machine it runs on.
pub fn hsv2rgb_block_width() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        // The same switch as the kernels' AVX-512 build (`IMGPROC_NO_AVX512=1` gives AVX2's width,
        // to match an OpenCV started with OPENCV_CPU_DISABLE=AVX512_SKX).
        if crate::simd::has_avx512() {
            return 64;
        }
        if has!("avx2") {
            return 32;
        }
    }
    16
}

/// HSV bytes to RGB in f32 as OpenCV 5's 8-bit path: `1 - s*h` is one fused multiply-add (its
/// AVX2 build contracts it). `trunc` picks the vector loop's truncation, otherwise the scalar
/// tail's rounding (with its `s == 0` shortcut).
#[inline(always)]
fn hsv2rgb_px(p: &[u8], trunc: bool) -> [u8; 3] {
    // (r, g, b) picks from `tab` per sector.
    const SECTOR: [[usize; 3]; 6] = [[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]];
    let s = p[1] as f32 * (1.0 / 255.0);
    let v = p[2] as f32 * (1.0 / 255.0);
    let rgb = if s == 0.0 && !trunc {
        [v; 3]
    } else {
        let h = p[0] as f32 * (6.0 / 180.0);
        let fl = h.floor();
        let h = h - fl;
        let tab = [v, v * (1.0 - s), v * (-s).mul_add(h, 1.0), v * (-s).mul_add(1.0 - h, 1.0)];
        let sec = SECTOR[fl as usize % 6];
        [tab[sec[0]], tab[sec[1]], tab[sec[2]]]
    };
    rgb.map(|c| {
        let c = c * 255.0;
        (if trunc { c.trunc() } else { c.round_ties_even() }).clamp(0.0, 255.0) as u8
    })
}

multiversion! {
    /// Rows are split as OpenCV's dispatch splits them: whole blocks of
    /// [`hsv2rgb_block_width`] pixels truncate, the remaining pixels round (the two disagree on a
    /// few values, and we follow both).
    fn hsv2rgb_u8(s: &[u8], d: &mut [u8], bgr: bool) {
        let (ri, gi, bi) = rgb_idx(bgr);
        let n = s.len() / 3;
        let block = hsv2rgb_block_width();
        let nb = n / block * block;
        for (i, (o, p)) in d.chunks_exact_mut(3).zip(s.chunks_exact(3)).enumerate() {
            let rgb = hsv2rgb_px(p, i < nb);
            o[ri] = rgb[0];
            o[gi] = rgb[1];
            o[bi] = rgb[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turkowski_cbrt_is_within_one_ulp() {
        for i in 1..20000 {
            let x = i as f32 * 7.3e-5;
            let (got, want) = (cbrt_tk(x), (x as f64).cbrt() as f32);
            assert!((got.to_bits() as i64 - want.to_bits() as i64).abs() <= 1, "{x}: {got} vs {want}");
        }
    }

    #[test]
    fn lab_f32_vector_path_matches_scalar() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut state = 11u64;
        for (n, cn) in [(1, 3), (2, 3), (57, 3), (1, 4), (31, 4)] {
            let src: Vec<f32> = (0..n * cn)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    match i % 11 {
                        3 => f32::NAN,
                        5 => (i % 3) as f32 * 0.5,
                        _ => (state >> 40) as f32 / (1u64 << 24) as f32 * 1.2 - 0.1,
                    }
                })
                .collect();
            for bgr in [false, true] {
                let (mut a, mut b) = (vec![0f32; n * 3], vec![0f32; n * 3]);
                lab_f_row(&src, &mut a, bgr);
                // SAFETY: AVX2 checked above.
                unsafe { lab_x86::row(&src, &mut b, bgr, lab_lut()) };
                assert_eq!(a, b, "{n} px, {cn} channels, bgr {bgr}");
            }
        }
    }

    #[test]
    fn hsv_vector_path_matches_scalar() {
        let (sdiv, hdiv) = hsv_tabs();
        let mut state = 7u64;
        for (n, cn) in [(1, 3), (9, 3), (37, 3), (300, 3), (1, 4), (13, 4), (301, 4)] {
            let src: Vec<u8> = (0..n * cn)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    // Ties between channels decide the hue formula; make them common.
                    if i % 5 == 0 {
                        77
                    } else {
                        (state >> 56) as u8
                    }
                })
                .collect();
            for bgr in [false, true] {
                let mut fast = vec![0u8; n * 3];
                let mut slow = vec![0u8; n * 3];
                hsv_u8(&src, &mut fast, bgr);
                if cn == 3 {
                    hsv_px::<3>(&src, &mut slow, rgb_idx(bgr), sdiv, hdiv);
                } else {
                    hsv_px::<4>(&src, &mut slow, rgb_idx(bgr), sdiv, hdiv);
                }
                assert_eq!(fast, slow, "n={n} cn={cn} bgr={bgr}");
            }
        }
    }

    #[test]
    fn gray_vector_path_matches_scalar() {
        let mut state = 11u64;
        for (n, cn) in [
            (1, 3),
            (15, 3),
            (16, 3),
            (17, 3),
            (32, 3),
            (33, 3),
            (34, 3),
            (64, 3),
            (301, 3),
            (1, 4),
            (16, 4),
            (32, 4),
            (33, 4),
            (299, 4),
        ] {
            let src: Vec<u8> = (0..n * cn)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    if i % 7 == 0 {
                        255
                    } else {
                        (state >> 56) as u8
                    }
                })
                .collect();
            for bgr in [false, true] {
                let mut fast = vec![0u8; n];
                let mut slow = vec![0u8; n];
                gray_u8(&src, &mut fast, bgr);
                if cn == 3 {
                    gray_px::<3>(&src, &mut slow, rgb_idx(bgr));
                } else {
                    gray_px::<4>(&src, &mut slow, rgb_idx(bgr));
                }
                assert_eq!(fast, slow, "n={n} cn={cn} bgr={bgr}");
            }
        }
    }

    #[test]
    fn lab_pixels_on_cbrt_rounding_edges() {
        // cv2.cvtColor(..., COLOR_RGB2Lab) of these pixels (opencv-python 5.0): they index the
        // table entries where a correctly rounded cbrt gives a different integer.
        let src = Image::<u8>::from_vec(3, 1, 3, vec![0, 98, 254, 0, 6, 98, 0, 22, 138]).unwrap();
        let lab = cvt_color(&src, ColorConversion::Rgb2Lab).unwrap();
        assert_eq!(lab.data(), &[119, 165, 45, 24, 163, 77, 45, 169, 64]);
    }
}
