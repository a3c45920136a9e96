//! Geometric transforms: `resize`, `get_rotation_matrix_2d`, `warp_affine`.
use crate::border::BorderType;
use crate::error::{bad, Result};
use crate::filter::{as_u8, from_u8};
use crate::image::{Image, Pixel};
use crate::parallel::par_rows;
use crate::resize8;
use crate::warp8::{warp_linear_band_u8, WarpSrc};

/// `cv::InterpolationFlags` used by resize and warps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Interpolation {
    Nearest,
    #[default]
    Linear,
    Cubic,
    Area,
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// `cv::resize` to `(width, height)`. 8-bit images use OpenCV's fixed-point arithmetic
/// (11-bit coefficients for linear and cubic), float images its float paths.
pub fn resize<T: Pixel>(src: &Image<T>, (dw, dh): (usize, usize), interp: Interpolation) -> Result<Image<T>> {
    src.check("resize")?;
    if dw == 0 || dh == 0 {
        return Err(bad("resize", format!("destination size {dw}x{dh} must be positive")));
    }
    crate::limits::check_output_size("resize", dw, dh)?;
    let (sw, sh) = (src.width(), src.height());
    if (sw, sh) == (dw, dh) {
        return Ok(src.clone());
    }
    let inv_sx = dw as f64 / sw as f64;
    let inv_sy = dh as f64 / sh as f64;
    let (scale_x, scale_y) = (1.0 / inv_sx, 1.0 / inv_sy);
    let mut interp = interp;
    let (isx, isy) = (scale_x.round_ties_even() as i64, scale_y.round_ties_even() as i64);
    let area_fast = (scale_x - isx as f64).abs() < f64::EPSILON && (scale_y - isy as f64).abs() < f64::EPSILON;
    if interp == Interpolation::Linear && area_fast && isx == 2 && isy == 2 {
        interp = Interpolation::Area;
    }
    if let Some(s8) = as_u8(src) {
        let exact2x = area_fast && isx == 2 && isy == 2 && src.channels() != 2;
        let up = scale_x < 1.0 || scale_y < 1.0;
        let fast = match interp {
            Interpolation::Nearest => Some(resize_nearest_u8(s8, dw, dh)),
            Interpolation::Area if exact2x => Some(resize8::area_2x(s8, dw, dh)),
            Interpolation::Linear => Some(resize_linear_u8(s8, dw, dh, scale_x, scale_y, inv_sx, inv_sy, false)),
            // OpenCV emulates area upscaling with bilinear weights of the covered fractions.
            Interpolation::Area if up => Some(resize_linear_u8(s8, dw, dh, scale_x, scale_y, inv_sx, inv_sy, true)),
            Interpolation::Area if !area_fast => {
                let xa = resize8::area_axis(sw, dw, scale_x);
                let ya = resize8::area_axis(sh, dh, scale_y);
                (xa.taps <= sw && ya.taps <= sh).then(|| resize8::resize_area(s8, dw, dh, &xa, &ya))
            }
            Interpolation::Cubic => Some(resize_cubic_u8(s8, dw, dh, scale_x, scale_y)),
            Interpolation::Area => None,
        };
        if let Some(img) = fast {
            return Ok(from_u8(img));
        }
    }
    match interp {
        Interpolation::Nearest => Ok(resize_nearest(src, dw, dh)),
        Interpolation::Area if scale_x >= 1.0 && scale_y >= 1.0 => {
            if area_fast {
                Ok(resize_area_fast(src, dw, dh, isx as usize, isy as usize))
            } else {
                Ok(resize_area(src, dw, dh, scale_x, scale_y))
            }
        }
        Interpolation::Area | Interpolation::Linear => {
            Ok(resize_generic(src, dw, dh, scale_x, scale_y, inv_sx, inv_sy, 2, interp == Interpolation::Area))
        }
        Interpolation::Cubic => Ok(resize_generic(src, dw, dh, scale_x, scale_y, inv_sx, inv_sy, 4, false)),
    }
}

fn resize_nearest<T: Pixel>(src: &Image<T>, dw: usize, dh: usize) -> Image<T> {
    let (sw, sh, cn) = (src.width(), src.height(), src.channels());
    let ifx = 1.0 / (dw as f64 / sw as f64);
    let ify = 1.0 / (dh as f64 / sh as f64);
    let xofs: Vec<usize> = (0..dw).map(|x| ((x as f64 * ifx).floor() as usize).min(sw - 1) * cn).collect();
    let mut dst = Image::new(dw, dh, cn).expect("channels");
    let rl = dw * cn;
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let sy = (((y0 + i) as f64 * ify).floor() as usize).min(sh - 1);
            let row = src.row(sy);
            for (o, &xo) in out.chunks_exact_mut(cn).zip(&xofs) {
                o.copy_from_slice(&row[xo..xo + cn]);
            }
        }
    });
    dst
}

fn nearest_xofs(sw: usize, dw: usize, cn: usize) -> Vec<usize> {
    let ifx = 1.0 / (dw as f64 / sw as f64);
    (0..dw).map(|x| ((x as f64 * ifx).floor() as usize).min(sw - 1) * cn).collect()
}

fn resize_nearest_u8(src: &Image<u8>, dw: usize, dh: usize) -> Image<u8> {
    let (sw, sh, cn) = (src.width(), src.height(), src.channels());
    let ify = 1.0 / (dh as f64 / sh as f64);
    let xofs = nearest_xofs(sw, dw, cn);
    let mut dst = Image::new(dw, dh, cn).expect("channels");
    let rl = dw * cn;
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let sy = (((y0 + i) as f64 * ify).floor() as usize).min(sh - 1);
            resize8::nearest_row(src.row(sy), &xofs, out, cn);
        }
    });
    dst
}

fn q(v: f32) -> i32 {
    (v * COEF_SCALE).round_ties_even() as i32
}

#[allow(clippy::too_many_arguments)]
fn resize_linear_u8(
    src: &Image<u8>,
    dw: usize,
    dh: usize,
    sx: f64,
    sy: f64,
    isx: f64,
    isy: f64,
    area: bool,
) -> Image<u8> {
    let (sw, sh, cn) = (src.width(), src.height(), src.channels());
    let (xo, xw) = axis_taps(sw, dw, sx, isx, 2, area, true);
    let (yo, yw) = axis_taps(sh, dh, sy, isy, 2, area, false);
    let at = |o: isize| (o.clamp(0, sw as isize - 1) as usize * cn) as u32;
    let taps = resize8::Taps::<2> {
        ofs: xo.iter().map(|&o| [at(o), at(o + 1)]).collect(),
        w: xw.iter().map(|w| [q(w[0]), q(w[1])]).collect(),
    };
    let yw: Vec<[i32; 2]> = yw.iter().map(|w| [q(w[0]), q(w[1])]).collect();
    resize8::resize_linear(src, dw, dh, &taps, &yo, &yw)
}

fn resize_cubic_u8(src: &Image<u8>, dw: usize, dh: usize, sx: f64, sy: f64) -> Image<u8> {
    let (sw, sh, cn) = (src.width(), src.height(), src.channels());
    let (xo, xw) = axis_taps(sw, dw, sx, 1.0 / sx, 4, false, true);
    let (yo, yw) = axis_taps(sh, dh, sy, 1.0 / sy, 4, false, false);
    let taps = resize8::Taps::<4> {
        ofs: xo
            .iter()
            .map(|&o| std::array::from_fn(|k| ((o + k as isize).clamp(0, sw as isize - 1) as usize * cn) as u32))
            .collect(),
        w: xw.iter().map(|w| w.map(q)).collect(),
    };
    let yw: Vec<[i32; 4]> = yw.iter().map(|w| w.map(q)).collect();
    resize8::resize_cubic(src, dw, dh, &taps, &yo, &yw)
}

fn interpolate_cubic(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// Source index (first tap) and float weights along one axis, as `cv::resize` computes them
/// (`clamp`: the horizontal axis, where OpenCV moves bilinear taps inside the image).
fn axis_taps(
    ssize: usize,
    dsize: usize,
    scale: f64,
    inv_scale: f64,
    ksize: usize,
    area_mode: bool,
    clamp: bool,
) -> (Vec<isize>, Vec<[f32; 4]>) {
    let mut ofs = Vec::with_capacity(dsize);
    let mut w = Vec::with_capacity(dsize);
    for d in 0..dsize {
        let (mut s, mut f);
        if !area_mode {
            f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            s = f.floor() as isize;
            f -= s as f32;
        } else {
            s = (d as f64 * scale).floor() as isize;
            f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
            f = if f <= 0.0 { 0.0 } else { f - f.floor() };
        }
        if ksize == 2 {
            if clamp && s < 0 {
                f = 0.0;
                s = 0;
            }
            if clamp && s >= ssize as isize - 1 {
                f = 0.0;
                s = ssize as isize - 1;
            }
            ofs.push(s);
            w.push([1.0 - f, f, 0.0, 0.0]);
        } else {
            ofs.push(s - 1);
            w.push(interpolate_cubic(f));
        }
    }
    (ofs, w)
}

#[allow(clippy::too_many_arguments)]
fn resize_generic<T: Pixel>(
    src: &Image<T>,
    dw: usize,
    dh: usize,
    sx: f64,
    sy: f64,
    isx: f64,
    isy: f64,
    ksize: usize,
    area_mode: bool,
) -> Image<T> {
    let (sw, sh, cn) = (src.width(), src.height(), src.channels());
    let (xo, xw) = axis_taps(sw, dw, sx, isx, ksize, area_mode, true);
    let (yo, yw) = axis_taps(sh, dh, sy, isy, ksize, area_mode, false);
    let clampx = |v: isize| v.clamp(0, sw as isize - 1) as usize;
    let clampy = |v: isize| v.clamp(0, sh as isize - 1) as usize;
    // Per destination element: source element offsets of the taps.
    let mut tap_idx = vec![0usize; dw * cn * ksize];
    for dx in 0..dw {
        for c in 0..cn {
            for k in 0..ksize {
                tap_idx[(dx * cn + c) * ksize + k] = clampx(xo[dx] + k as isize) * cn + c;
            }
        }
    }
    let rl = dw * cn;
    let mut dst = Image::<T>::new(dw, dh, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut bufs: Vec<Vec<f32>> = (0..ksize).map(|_| vec![0.0; rl]).collect();
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            for (k, buf) in bufs.iter_mut().enumerate() {
                let row = src.row(clampy(yo[dy] + k as isize));
                for (dx, a) in xw.iter().enumerate() {
                    for c in 0..cn {
                        let e = dx * cn + c;
                        let t = &tap_idx[e * ksize..(e + 1) * ksize];
                        buf[e] = t.iter().zip(a).map(|(&i, &w)| row[i].to_f32() * w).sum();
                    }
                }
            }
            let b = &yw[dy];
            for (x, o) in out.iter_mut().enumerate() {
                let s: f32 = (0..ksize).map(|k| bufs[k][x] * b[k]).sum();
                *o = T::from_f32(s);
            }
        }
    });
    dst
}

fn resize_area_fast<T: Pixel>(src: &Image<T>, dw: usize, dh: usize, sx: usize, sy: usize) -> Image<T> {
    let cn = src.channels();
    let area = (sx * sy) as f32;
    let scale = 1.0f32 / area;
    let is_u8 = as_u8(src).is_some();
    let mut dst = Image::<T>::new(dw, dh, cn).expect("channels");
    let rl = dw * cn;
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            for dx in 0..dw {
                for c in 0..cn {
                    let mut s = 0f64;
                    for yy in 0..sy {
                        let row = src.row(dy * sy + yy);
                        for xx in 0..sx {
                            s += row[(dx * sx + xx) * cn + c].to_f64();
                        }
                    }
                    out[dx * cn + c] = if is_u8 && sx == 2 && sy == 2 && cn != 2 {
                        T::from_f64(((s as i64 + 2) >> 2) as f64)
                    } else {
                        T::from_f32(s as f32 * scale)
                    };
                }
            }
        }
    });
    dst
}

fn area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let mut tab = Vec::new();
    for d in 0..dsize {
        let f1 = d as f64 * scale;
        let f2 = f1 + scale;
        let cell = scale.min(ssize as f64 - f1);
        let mut s2 = (f2.floor() as isize).min(ssize as isize - 1);
        let s1 = (f1.ceil() as isize).min(s2);
        if s1 as f64 - f1 > 1e-3 {
            tab.push((d, (s1 - 1) as usize, ((s1 as f64 - f1) / cell) as f32));
        }
        for s in s1..s2 {
            tab.push((d, s as usize, (1.0 / cell) as f32));
        }
        if f2 - s2 as f64 > 1e-3 {
            tab.push((d, s2 as usize, ((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32));
        }
        s2 += 0;
    }
    tab
}

fn resize_area<T: Pixel>(src: &Image<T>, dw: usize, dh: usize, sx: f64, sy: f64) -> Image<T> {
    let cn = src.channels();
    let xtab = area_tab(src.width(), dw, sx);
    let ytab = area_tab(src.height(), dh, sy);
    let mut dst = Image::<T>::new(dw, dh, cn).expect("channels");
    let rl = dw * cn;
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut buf = vec![0f32; rl];
        let mut sum = vec![0f32; rl];
        for (i, out) in band.chunks_mut(rl).enumerate() {
            let dy = y0 + i;
            sum.fill(0.0);
            for &(_, syy, beta) in ytab.iter().filter(|t| t.0 == dy) {
                buf.fill(0.0);
                let row = src.row(syy);
                for &(dx, sxx, alpha) in &xtab {
                    for c in 0..cn {
                        buf[dx * cn + c] += row[sxx * cn + c].to_f32() * alpha;
                    }
                }
                for (s, &b) in sum.iter_mut().zip(&buf) {
                    *s += beta * b;
                }
            }
            for (o, &s) in out.iter_mut().zip(&sum) {
                *o = T::from_f32(s);
            }
        }
    });
    dst
}

/// `cv::getRotationMatrix2D`: rotation by `angle` degrees (counter-clockwise) about `center`,
/// scaled by `scale`; row-major 2x3.
pub fn get_rotation_matrix_2d(center: (f64, f64), angle: f64, scale: f64) -> [f64; 6] {
    let a = angle.to_radians();
    let alpha = a.cos() * scale;
    let beta = a.sin() * scale;
    [alpha, beta, (1.0 - alpha) * center.0 - beta * center.1, -beta, alpha, beta * center.0 + (1.0 - alpha) * center.1]
}

fn invert_affine(m: &[f64; 6]) -> Option<[f64; 6]> {
    let d = m[0] * m[4] - m[1] * m[3];
    if d == 0.0 || !d.is_finite() {
        return None;
    }
    let d = 1.0 / d;
    let (a11, a22) = (m[4] * d, m[0] * d);
    let (a12, a21) = (-m[1] * d, -m[3] * d);
    let b1 = -a11 * m[2] - a12 * m[5];
    let b2 = -a21 * m[2] - a22 * m[5];
    Some([a11, a12, b1, a21, a22, b2])
}

/// `cv::warpAffine` with matrix `m` (source to destination, as OpenCV without
/// `WARP_INVERSE_MAP`), output size `(width, height)`, constant (`border_value`) or replicated
/// border. 8-bit linear interpolation uses OpenCV's 5-bit sub-pixel tables and 15-bit weights.
pub fn warp_affine<T: Pixel>(
    src: &Image<T>,
    m: &[f64; 6],
    (dw, dh): (usize, usize),
    interp: Interpolation,
    border: BorderType,
    border_value: f64,
) -> Result<Image<T>> {
    src.check("warp_affine")?;
    if dw == 0 || dh == 0 {
        return Err(bad("warp_affine", "destination size must be positive"));
    }
    if dw > i32::MAX as usize / 4 || dh > i32::MAX as usize / 4 {
        return Err(bad("warp_affine", "destination size too large"));
    }
    crate::limits::check_output_size("warp_affine", dw, dh)?;
    if m.iter().any(|v| !v.is_finite()) {
        return Err(bad("warp_affine", "matrix must be finite"));
    }
    if !matches!(border, BorderType::Constant | BorderType::Replicate) {
        return Err(bad("warp_affine", "only constant and replicate borders are supported"));
    }
    let inv = invert_affine(m).ok_or_else(|| bad("warp_affine", "matrix is singular"))?;
    let (sw, sh, cn) = (src.width() as isize, src.height() as isize, src.channels());
    let bval = T::from_f64(border_value);
    // Allocated only by the paths that fill it (the 8-bit ones make their own).
    let new_dst = || Image::<T>::new(dw, dh, cn);
    let rl = dw * cn;
    let fetch = |x: isize, y: isize, c: usize| -> T {
        if x >= 0 && y >= 0 && x < sw && y < sh {
            src.row(y as usize)[x as usize * cn + c]
        } else if border == BorderType::Replicate {
            src.row(y.clamp(0, sh - 1) as usize)[x.clamp(0, sw - 1) as usize * cn + c]
        } else {
            bval
        }
    };
    match interp {
        Interpolation::Nearest if cn != 2 => {
            // OpenCV 5 (1, 3, 4 channels): the bilinear kernels' float coordinates, rounded half
            // to even.
            let invf = inv.map(|v| v as f32);
            let mut dst = new_dst()?;
            par_rows(dst.data_mut(), rl, |y0, band| {
                let mut sx = vec![0f32; dw];
                let mut sy = vec![0f32; dw];
                for (i, out) in band.chunks_mut(rl).enumerate() {
                    crate::warp8::warp_coords(&invf, y0 + i, dw, &mut sx, &mut sy);
                    for (x, o) in out.chunks_exact_mut(cn).enumerate() {
                        let (ix, iy) = (sx[x].round_ties_even() as isize, sy[x].round_ties_even() as isize);
                        for (c, v) in o.iter_mut().enumerate() {
                            *v = fetch(ix, iy, c);
                        }
                    }
                }
            });
            Ok(dst)
        }
        Interpolation::Nearest => {
            // OpenCV (2 channels): coordinates in 10-bit fixed point, rounded.
            const AB: f64 = 1024.0;
            let adelta: Vec<i64> = (0..dw).map(|x| (inv[0] * x as f64 * AB).round_ties_even() as i64).collect();
            let bdelta: Vec<i64> = (0..dw).map(|x| (inv[3] * x as f64 * AB).round_ties_even() as i64).collect();
            let mut dst = new_dst()?;
            par_rows(dst.data_mut(), rl, |y0, band| {
                for (i, out) in band.chunks_mut(rl).enumerate() {
                    let y = (y0 + i) as f64;
                    let x0 = ((inv[1] * y + inv[2]) * AB).round_ties_even() as i64 + 512;
                    let yy0 = ((inv[4] * y + inv[5]) * AB).round_ties_even() as i64 + 512;
                    for x in 0..dw {
                        let sx = ((x0 + adelta[x]) >> 10) as isize;
                        let sy = ((yy0 + bdelta[x]) >> 10) as isize;
                        for c in 0..cn {
                            out[x * cn + c] = fetch(sx, sy, c);
                        }
                    }
                }
            });
            Ok(dst)
        }
        Interpolation::Linear | Interpolation::Area if as_u8(src).is_some() && cn != 2 => {
            let s8 = as_u8(src).expect("checked");
            let invf = inv.map(|v| v as f32);
            let geom = WarpSrc { data: s8.data(), w: sw as usize, h: sh as usize };
            let replicate = border == BorderType::Replicate;
            let bval = u8::from_f64(border_value);
            let mut d8 = Image::<u8>::new(dw, dh, cn)?;
            // Whole rows: consecutive rows read neighbouring source lines, which stay in L2
            // (column strips measured slower with the 8-pixel kernel).
            par_rows(d8.data_mut(), rl, |y0, band| {
                warp_linear_band_u8(&geom, &invf, y0, band, rl, 0, dw, dw, cn, replicate, bval);
            });
            Ok(from_u8(d8))
        }
        Interpolation::Linear | Interpolation::Area if as_u8(src).is_some() => {
            // 2 channels: OpenCV's fixed-point remap.
            let s8 = as_u8(src).expect("checked");
            let d8 = crate::remap8::warp_linear_remap_u8(
                s8,
                &inv,
                (dw, dh),
                border == BorderType::Replicate,
                u8::from_f64(border_value),
            );
            Ok(from_u8(d8))
        }
        _ => {
            // Bicubic (and the non-8-bit types): float coordinates as the bilinear kernels
            // compute them, float weights of the exact fraction (OpenCV 5's path).
            let cubic = interp == Interpolation::Cubic;
            let invf = inv.map(|v| v as f32);
            let mut dst = new_dst()?;
            par_rows(dst.data_mut(), rl, |y0, band| {
                let (mut sxs, mut sys) = (vec![0f32; dw], vec![0f32; dw]);
                for (i, out) in band.chunks_mut(rl).enumerate() {
                    crate::warp8::warp_coords(&invf, y0 + i, dw, &mut sxs, &mut sys);
                    for x in 0..dw {
                        let (sx, sy) = (sxs[x], sys[x]);
                        let (ix, iy) = (sx.floor(), sy.floor());
                        let (fx, fy) = (sx - ix, sy - iy);
                        let (ix, iy) = (ix as isize, iy as isize);
                        for c in 0..cn {
                            let v = if cubic {
                                let wx = interpolate_cubic(fx);
                                let wy = interpolate_cubic(fy);
                                let mut s = 0f32;
                                for (j, wyj) in wy.iter().enumerate() {
                                    let mut r = 0f32;
                                    for (k, wxk) in wx.iter().enumerate() {
                                        r += fetch(ix - 1 + k as isize, iy - 1 + j as isize, c).to_f32() * wxk;
                                    }
                                    s += r * wyj;
                                }
                                s
                            } else {
                                let p00 = fetch(ix, iy, c).to_f32();
                                let p01 = fetch(ix + 1, iy, c).to_f32();
                                let p10 = fetch(ix, iy + 1, c).to_f32();
                                let p11 = fetch(ix + 1, iy + 1, c).to_f32();
                                let top = fx.mul_add(p01 - p00, p00);
                                let bot = fx.mul_add(p11 - p10, p10);
                                fy.mul_add(bot - top, top)
                            };
                            out[x * cn + c] = T::from_f32(v);
                        }
                    }
                }
            });
            Ok(dst)
        }
    }
}
