//! Linear and rank filters: `filter_2d`, `sep_filter_2d`, box, Gaussian and median blur.
use crate::border::{border_interpolate, BorderType};
use crate::error::{bad, Result};
use crate::image::{Image, Pixel};
use crate::kernels8;
use crate::parallel::par_rows;
use crate::simd::multiversion;

/// Horizontal neighbourhood of one source row, with borders filled in: `(width + kw - 1) * cn`
/// values, so a row kernel can index `pad[x + i * cn]` without checks.
pub(crate) struct RowPadder {
    cn: usize,
    w: usize,
    ax: usize,
    right: usize,
    left_src: Vec<Option<usize>>,
    right_src: Vec<Option<usize>>,
}

impl RowPadder {
    pub(crate) fn new(w: usize, cn: usize, kw: usize, ax: usize, border: BorderType) -> Self {
        let right = kw - 1 - ax;
        let left_src = (0..ax).map(|i| border_interpolate(i as isize - ax as isize, w, border)).collect();
        let right_src = (0..right).map(|i| border_interpolate((w + i) as isize, w, border)).collect();
        Self { cn, w, ax, right, left_src, right_src }
    }
    pub(crate) fn len(&self) -> usize {
        (self.w + self.ax + self.right) * self.cn
    }
    /// Pixels of padding left and right of the row.
    pub(crate) fn span(&self) -> (usize, usize) {
        (self.ax, self.right)
    }
    /// Where the row itself starts in a padded row.
    pub(crate) fn interior_start(&self) -> usize {
        self.ax * self.cn
    }
    /// Fills the border values of `pad` whose interior (from [`Self::interior_start`]) is
    /// already in place.
    pub(crate) fn fill_borders<T: Copy>(&self, bval: T, pad: &mut [T]) {
        let (cn, base) = (self.cn, self.ax * self.cn);
        for (i, s) in self.left_src.iter().enumerate() {
            for c in 0..cn {
                pad[i * cn + c] = s.map_or(bval, |x| pad[base + x * cn + c]);
            }
        }
        let end = (self.ax + self.w) * cn;
        for (i, s) in self.right_src.iter().enumerate() {
            for c in 0..cn {
                pad[end + i * cn + c] = s.map_or(bval, |x| pad[base + x * cn + c]);
            }
        }
    }
    /// Fills `pad` from `row` (or with `bval` when the row itself is outside the image).
    pub(crate) fn fill<T: Copy>(&self, row: Option<&[T]>, bval: T, pad: &mut [T]) {
        let cn = self.cn;
        let Some(row) = row else {
            pad.fill(bval);
            return;
        };
        pad[self.ax * cn..self.ax * cn + row.len()].copy_from_slice(row);
        for (i, s) in self.left_src.iter().enumerate() {
            for c in 0..cn {
                pad[i * cn + c] = s.map_or(bval, |x| row[x * cn + c]);
            }
        }
        let base = (self.ax + self.w) * cn;
        for (i, s) in self.right_src.iter().enumerate() {
            for c in 0..cn {
                pad[base + i * cn + c] = s.map_or(bval, |x| row[x * cn + c]);
            }
        }
    }
}

/// The separable filter engine: `row_f` turns a padded source row into an intermediate row,
/// `col_f` combines `kh` intermediate rows into an output row. Each band of output rows keeps a
/// ring of `kh` intermediate rows, so memory traffic stays in cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn separable<S, W, D, RF, CF>(
    src: &Image<S>,
    out_cn: usize,
    (kw, ax): (usize, usize),
    (kh, ay): (usize, usize),
    border: BorderType,
    bval: S,
    row_f: RF,
    col_f: CF,
) -> Image<D>
where
    S: Pixel,
    W: Copy + Default + Send + Sync,
    D: Pixel,
    RF: Fn(&[S], &mut [W]) + Sync + Send,
    CF: Fn(&[&[W]], &mut [D]) + Sync + Send,
{
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let mut dst = Image::<D>::new(w, h, out_cn).expect("valid channel count");
    let padder = RowPadder::new(w, cn, kw, ax, border);
    let rl = w * cn;
    let orl = w * out_cn;
    par_rows(dst.data_mut(), orl, |y0, band| {
        let rows_out = band.len() / orl;
        let mut pad = vec![bval; padder.len()];
        let mut ring: Vec<Vec<W>> = (0..kh).map(|_| vec![W::default(); rl]).collect();
        let first = y0 as isize - ay as isize;
        for r in 0..rows_out + kh - 1 {
            let sy = border_interpolate(first + r as isize, h, border);
            padder.fill(sy.map(|y| src.row(y)), bval, &mut pad);
            row_f(&pad, &mut ring[r % kh]);
            if r + 1 >= kh {
                let y = r + 1 - kh;
                let rows: Vec<&[W]> = (0..kh).map(|i| ring[(y + i) % kh].as_slice()).collect();
                col_f(&rows, &mut band[y * orl..(y + 1) * orl]);
            }
        }
    });
    dst
}

/// Kernel size and anchor checks shared by the filters.
pub(crate) fn check_ksize(op: &'static str, kw: usize, kh: usize, odd: bool) -> Result<()> {
    if kw == 0 || kh == 0 {
        return Err(bad(op, format!("kernel size {kw}x{kh} must be positive")));
    }
    if odd && (kw.is_multiple_of(2) || kh.is_multiple_of(2)) {
        return Err(bad(op, format!("kernel size {kw}x{kh} must be odd")));
    }
    crate::limits::check_kernel_limit(op, kw, kh)
}

// ------------------------------------------------------------------------------------------
// generic float kernels

fn row_conv_f32<S: Pixel>(k: &[f32], cn: usize) -> impl Fn(&[S], &mut [f32]) + Sync + Send + '_ {
    move |pad: &[S], out: &mut [f32]| {
        let n = out.len();
        out.fill(0.0);
        for (i, &ki) in k.iter().enumerate() {
            if ki == 0.0 {
                continue;
            }
            for (o, &p) in out.iter_mut().zip(&pad[i * cn..i * cn + n]) {
                *o += p.to_f32() * ki;
            }
        }
    }
}

fn col_conv_f32<D: Pixel>(k: &[f32], delta: f32) -> impl Fn(&[&[f32]], &mut [D]) + Sync + Send + '_ {
    move |rows: &[&[f32]], out: &mut [D]| {
        let mut acc = [0f32; 256];
        for x0 in (0..out.len()).step_by(256) {
            let len = (out.len() - x0).min(256);
            let acc = &mut acc[..len];
            acc.fill(delta);
            for (r, &ki) in rows.iter().zip(k) {
                for (a, &v) in acc.iter_mut().zip(&r[x0..x0 + len]) {
                    *a += v * ki;
                }
            }
            for (o, &a) in out[x0..x0 + len].iter_mut().zip(acc.iter()) {
                *o = D::from_f32(a);
            }
        }
    }
}

/// `cv::sepFilter2D` with float kernels: row kernel `kx`, column kernel `ky`, anchor at the
/// centre, result `+ delta`, saturated into `D`.
pub fn sep_filter_2d<S: Pixel, D: Pixel>(
    src: &Image<S>,
    kx: &[f32],
    ky: &[f32],
    delta: f32,
    border: BorderType,
) -> Result<Image<D>> {
    src.check("sep_filter_2d")?;
    check_ksize("sep_filter_2d", kx.len(), ky.len(), false)?;
    let cn = src.channels();
    Ok(separable(
        src,
        cn,
        (kx.len(), kx.len() / 2),
        (ky.len(), ky.len() / 2),
        border,
        S::default(),
        row_conv_f32::<S>(kx, cn),
        col_conv_f32::<D>(ky, delta),
    ))
}

/// `cv::filter2D` with the anchor at the kernel centre and the same depth out (`ddepth = -1`).
/// `kernel` is `kh` rows of `kw` values. Accumulates in f32 as OpenCV's direct (non-DFT) path.
pub fn filter_2d<T: Pixel>(
    src: &Image<T>,
    kernel: &[f32],
    kw: usize,
    kh: usize,
    delta: f32,
    border: BorderType,
) -> Result<Image<T>> {
    src.check("filter_2d")?;
    check_ksize("filter_2d", kw, kh, false)?;
    if kernel.len() != kw * kh || kernel.iter().any(|v| !v.is_finite()) {
        return Err(bad("filter_2d", format!("kernel must hold {kw}x{kh} finite values")));
    }
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let (ax, ay) = (kw / 2, kh / 2);
    let padder = RowPadder::new(w, cn, kw, ax, border);
    let taps: Vec<(usize, usize, f32)> = (0..kh)
        .flat_map(|i| (0..kw).map(move |j| (i, j)))
        .filter_map(|(i, j)| (kernel[i * kw + j] != 0.0).then_some((i, j, kernel[i * kw + j])))
        .collect();
    if let Some(s8) = as_u8(src) {
        return Ok(from_u8(crate::filter2d8::filter_2d_u8(s8, &taps, kh, ay, delta, border, &padder, true)));
    }
    let mut dst = Image::<T>::new(w, h, cn)?;
    let rl = w * cn;
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut pads: Vec<Vec<f32>> = (0..kh).map(|_| vec![0f32; padder.len()]).collect();
        let mut tmp = vec![T::default(); padder.len()];
        let mut acc = vec![0f32; rl];
        for (yy, out) in band.chunks_mut(rl).enumerate() {
            let y = y0 + yy;
            for (i, p) in pads.iter_mut().enumerate() {
                let sy = border_interpolate(y as isize + i as isize - ay as isize, h, border);
                padder.fill(sy.map(|s| src.row(s)), T::default(), &mut tmp);
                for (d, s) in p.iter_mut().zip(&tmp) {
                    *d = s.to_f32();
                }
            }
            acc.fill(delta);
            for &(i, j, k) in &taps {
                for (a, &v) in acc.iter_mut().zip(&pads[i][j * cn..j * cn + rl]) {
                    *a += v * k;
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = T::from_f32(a);
            }
        }
    });
    Ok(dst)
}

// ------------------------------------------------------------------------------------------
// box filter

/// `cv::boxFilter` into the source depth. With `normalize` the sum is divided by the area and
/// rounded half-to-even, as OpenCV's `saturate_cast` of `sum * (1.0 / area)`.
pub fn box_filter<T: Pixel>(
    src: &Image<T>,
    (kw, kh): (usize, usize),
    normalize: bool,
    border: BorderType,
) -> Result<Image<T>> {
    src.check("box_filter")?;
    check_ksize("box_filter", kw, kh, false)?;
    if border == BorderType::Wrap {
        return Err(bad("box_filter", "BORDER_WRAP is not supported by box filters"));
    }
    let cn = src.channels();
    let scale = if normalize { 1.0 / (kw * kh) as f64 } else { 1.0 };
    if !T::IS_FLOAT {
        let row = move |pad: &[T], out: &mut [i64]| {
            let n = out.len();
            for (x, o) in out.iter_mut().enumerate() {
                *o = pad[x].to_f64() as i64;
            }
            for i in 1..kw {
                for (o, &p) in out.iter_mut().zip(&pad[i * cn..i * cn + n]) {
                    *o += p.to_f64() as i64;
                }
            }
        };
        let col = move |rows: &[&[i64]], out: &mut [T]| {
            for (x, o) in out.iter_mut().enumerate() {
                let s: i64 = rows.iter().map(|r| r[x]).sum();
                *o = T::from_f64(s as f64 * scale);
            }
        };
        return Ok(separable(src, cn, (kw, kw / 2), (kh, kh / 2), border, T::default(), row, col));
    }
    let row = move |pad: &[T], out: &mut [f64]| {
        let n = out.len();
        out.fill(0.0);
        for i in 0..kw {
            for (o, &p) in out.iter_mut().zip(&pad[i * cn..i * cn + n]) {
                *o += p.to_f64();
            }
        }
    };
    let col = move |rows: &[&[f64]], out: &mut [T]| {
        for (x, o) in out.iter_mut().enumerate() {
            let s: f64 = rows.iter().map(|r| r[x]).sum();
            *o = T::from_f64(s * scale);
        }
    };
    Ok(separable(src, cn, (kw, kw / 2), (kh, kh / 2), border, T::default(), row, col))
}

/// `cv::blur`: normalised box filter.
pub fn blur<T: Pixel>(src: &Image<T>, ksize: (usize, usize), border: BorderType) -> Result<Image<T>> {
    crate::limits::check_kernel_limit("blur", ksize.0, ksize.1)?;
    if let Some(u8img) = as_u8(src) {
        if !src.is_empty() && ksize.0 > 0 && ksize.1 > 0 && ksize.0 * ksize.1 <= 1 << 16 && border != BorderType::Wrap {
            return Ok(from_u8(blur_u8(u8img, ksize, border)));
        }
    }
    box_filter(src, ksize, true, border)
}

/// Fast u8 box blur: u16 row sums over a sliding window, u32 column sums.
fn blur_u8(src: &Image<u8>, (kw, kh): (usize, usize), border: BorderType) -> Image<u8> {
    let cn = src.channels();
    let area = (kw * kh) as u32;
    // Odd areas have no ties: round(s / area) == (s + (area - 1) / 2) / area, a magic multiply.
    if area % 2 == 1 && area * 255 < 65536 {
        let add = (area - 1) / 2;
        if let Some((m, sh)) = kernels8::magic_div(area, area * 255 + add) {
            return blur_u8_sliding(src, (kw, kh), border, (add, m, sh));
        }
    }
    let scale = 1.0 / (kw * kh) as f64;
    let area = (kw * kh) as u32;
    // Exact rounding table-free: round(s / area) half-even equals OpenCV's double product except
    // at ties, which only even areas have; we evaluate the double product there.
    let row = move |pad: &[u8], out: &mut [u32]| {
        let n = out.len();
        let mut s: Vec<u32> = pad[..cn].iter().map(|_| 0).collect();
        for i in 0..kw {
            for c in 0..cn {
                s[c] += pad[i * cn + c] as u32;
            }
        }
        for x in (0..n).step_by(cn) {
            for c in 0..cn {
                out[x + c] = s[c];
                let add = pad.get(x + kw * cn + c).copied().unwrap_or(0) as u32;
                s[c] = s[c] + add - pad[x + c] as u32;
            }
        }
    };
    let col = move |rows: &[&[u32]], out: &mut [u8]| {
        let mut acc = [0u32; 256];
        for x0 in (0..out.len()).step_by(256) {
            let len = (out.len() - x0).min(256);
            let acc = &mut acc[..len];
            acc.copy_from_slice(&rows[0][x0..x0 + len]);
            for r in &rows[1..] {
                for (a, &v) in acc.iter_mut().zip(&r[x0..x0 + len]) {
                    *a += v;
                }
            }
            if area % 2 == 1 {
                for (o, &a) in out[x0..x0 + len].iter_mut().zip(acc.iter()) {
                    *o = ((2 * a + area) / (2 * area)).min(255) as u8;
                }
            } else {
                for (o, &a) in out[x0..x0 + len].iter_mut().zip(acc.iter()) {
                    *o = (a as f64 * scale).round_ties_even().min(255.0) as u8;
                }
            }
        }
    };
    separable(src, cn, (kw, kw / 2), (kh, kh / 2), border, 0u8, row, col)
}

/// Box blur with u16 sums (`kw * kh * 255 < 2^16`): row sums of each source row once, and a
/// running column sum per band that adds the entering row and drops the leaving one.
fn blur_u8_sliding(src: &Image<u8>, (kw, kh): (usize, usize), border: BorderType, div: (u32, u32, u32)) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let padder = RowPadder::new(w, cn, kw, kw / 2, border);
    let rl = w * cn;
    let ay = (kh / 2) as isize;
    let mut dst = Image::<u8>::new(w, h, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut pad = vec![0u8; padder.len()];
        // Row sums of source rows y - ay ..= y + (kh - 1 - ay), a ring indexed by source offset.
        let mut ring: Vec<Vec<u16>> = (0..kh).map(|_| vec![0u16; rl]).collect();
        let mut row_sum = |i: isize, out: &mut [u16]| {
            let sy = border_interpolate(i, h, border);
            padder.fill(sy.map(|y| src.row(y)), 0, &mut pad);
            kernels8::box_row_u16(&pad, out, kw, cn);
        };
        let first = y0 as isize - ay;
        let mut col = vec![0u16; rl];
        for (k, rs) in ring.iter_mut().enumerate() {
            row_sum(first + k as isize, rs);
            kernels8::add_u16(&mut col, rs);
        }
        let rows = band.len() / rl;
        let mut entering = vec![0u16; rl];
        for (r, out) in band.chunks_mut(rl).enumerate() {
            if r + 1 == rows {
                kernels8::box_div_u16(&col, out, div);
                break;
            }
            let slot = r % kh;
            row_sum(first + (r + kh) as isize, &mut entering);
            kernels8::box_div_slide_u16(&mut col, &entering, &ring[slot], out, div);
            std::mem::swap(&mut ring[slot], &mut entering);
        }
    });
    dst
}

// ------------------------------------------------------------------------------------------
// Gaussian

/// `cv::getGaussianKernel(n, sigma, CV_64F)`: OpenCV's bit-exact kernel (fixed tables for
/// `n <= 9` when `sigma <= 0`, otherwise `exp(-x^2 / (2 sigma^2))` normalised).
pub fn get_gaussian_kernel(n: usize, sigma: f64) -> Result<Vec<f64>> {
    if n == 0 || n.is_multiple_of(2) {
        return Err(bad("get_gaussian_kernel", format!("size {n} must be odd and positive")));
    }
    crate::limits::check_kernel_limit("get_gaussian_kernel", n, 1)?;
    if sigma.is_nan() {
        return Err(bad("get_gaussian_kernel", "sigma is NaN"));
    }
    if sigma <= 0.0 {
        let tab: Option<&[f64]> = match n {
            1 => Some(&[1.0]),
            3 => Some(&[0.25, 0.5, 0.25]),
            5 => Some(&[0.0625, 0.25, 0.375, 0.25, 0.0625]),
            7 => Some(&[0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]),
            9 => Some(&[4.0, 13.0, 30.0, 51.0, 60.0, 51.0, 30.0, 13.0, 4.0]),
            _ => None,
        };
        if let Some(t) = tab {
            let div = if n == 9 { 256.0 } else { 1.0 };
            return Ok(t.iter().map(|v| v / div).collect());
        }
    }
    let sigma = if sigma > 0.0 { sigma } else { (n as f64).mul_add(0.15, 0.35) };
    let scale2x = -0.125 / (sigma * sigma);
    let half = (n - 1) / 2;
    let mut values = Vec::with_capacity(half);
    let mut sum = 0.0;
    for i in 0..half {
        let x = 1 - n as i64 + 2 * i as i64;
        let t = ((x * x) as f64 * scale2x).exp();
        values.push(t);
        sum += t;
    }
    sum = sum * 2.0 + 1.0;
    let mul = 1.0 / sum;
    let mut k = vec![0.0; n];
    for (i, v) in values.iter().enumerate() {
        k[i] = v * mul;
        k[n - 1 - i] = k[i];
    }
    k[half] = mul;
    Ok(k)
}

/// The 8-fraction-bit kernel of OpenCV's bit-exact 8-bit path: error diffusion over the
/// left half, the centre tap takes what is left so the taps sum to exactly 256.
fn gaussian_kernel_q8(k: &[f64]) -> Vec<u16> {
    let n = k.len();
    let mut out = vec![0u16; n];
    let mut err = 0.0;
    let mut sum = 0i64;
    for i in 0..n / 2 {
        let adj = k[i] * 256.0 + err;
        let v = adj.round_ties_even() as i64;
        err = adj - v as f64;
        out[i] = v as u16;
        out[n - 1 - i] = v as u16;
        sum += v;
    }
    out[n / 2] = (256 - 2 * sum) as u16;
    out
}

fn gaussian_ksize(sigma: f64, u8_depth: bool) -> usize {
    let per = if u8_depth { 3.0 } else { 4.0 };
    ((sigma * per * 2.0 + 1.0).round_ties_even() as i64 | 1) as usize
}

/// `cv::GaussianBlur`. A zero `ksize` component is derived from the sigma; `sigma_y <= 0` means
/// `sigma_x`. 8-bit images use OpenCV's bit-exact fixed-point path (8-bit kernel, 16-bit rows).
pub fn gaussian_blur<T: Pixel>(
    src: &Image<T>,
    ksize: (usize, usize),
    sigma_x: f64,
    sigma_y: f64,
    border: BorderType,
) -> Result<Image<T>> {
    src.check("gaussian_blur")?;
    let size = (src.width(), src.height());
    let Some((kx, ky)) = gaussian_kernels(size, as_u8(src).is_some(), ksize, (sigma_x, sigma_y), border)? else {
        return Ok(src.clone());
    };
    if let Some(s8) = as_u8(src) {
        let (kx, ky) = (gaussian_kernel_q8(&kx), gaussian_kernel_q8(&ky));
        return Ok(from_u8(crate::gauss8::gaussian_u8(s8, &kx, &ky, border, true)));
    }
    let kx: Vec<f32> = kx.iter().map(|&v| v as f32).collect();
    let ky: Vec<f32> = ky.iter().map(|&v| v as f32).collect();
    sep_filter_2d(src, &kx, &ky, 0.0, border)
}

/// The row and column kernels `cv::GaussianBlur` uses for an image of `(width, height)` (8-bit
/// or not), or `None` when the filter is the identity (1x1 after OpenCV drops the axes a
/// 1-pixel image cannot blur along).
pub(crate) fn gaussian_kernels(
    (width, height): (usize, usize),
    u8_depth: bool,
    ksize: (usize, usize),
    (sigma_x, sigma_y): (f64, f64),
    border: BorderType,
) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
    if !sigma_x.is_finite() || !sigma_y.is_finite() {
        return Err(bad("gaussian_blur", "sigma must be finite"));
    }
    let sigma_y = if sigma_y <= 0.0 { sigma_x } else { sigma_y };
    let (mut kw, mut kh) = ksize;
    if kw == 0 && sigma_x > 0.0 {
        kw = gaussian_ksize(sigma_x, u8_depth);
    }
    if kh == 0 && sigma_y > 0.0 {
        kh = gaussian_ksize(sigma_y, u8_depth);
    }
    check_ksize("gaussian_blur", kw, kh, true)?;
    if border == BorderType::Wrap {
        return Err(bad("gaussian_blur", "BORDER_WRAP is not supported"));
    }
    if border != BorderType::Constant {
        if height == 1 {
            kh = 1;
        }
        if width == 1 {
            kw = 1;
        }
    }
    if kw == 1 && kh == 1 {
        return Ok(None);
    }
    let sx = sigma_x.max(0.0);
    let sy = sigma_y.max(0.0);
    let kx = get_gaussian_kernel(kw, sx)?;
    let ky = if kh == kw && (sx - sy).abs() < f64::EPSILON { kx.clone() } else { get_gaussian_kernel(kh, sy)? };
    Ok(Some((kx, ky)))
}

/// Float separable filter of a 1-channel 8-bit image with a rounded, saturated 8-bit result:
/// what `sep_filter_2d::<f32, f32>` of the image as f32 and a conversion back give, without the
/// two float images (OpenCV's Gaussian `adaptiveThreshold` mean).
pub(crate) fn sep_filter_u8_via_f32(src: &Image<u8>, kx: &[f32], ky: &[f32], border: BorderType) -> Image<u8> {
    let row = move |pad: &[u8], out: &mut [f32]| row_u8_f32(pad, kx, out);
    let col = move |rows: &[&[f32]], out: &mut [u8]| col_f32_u8(rows, ky, out);
    separable(src, 1, (kx.len(), kx.len() / 2), (ky.len(), ky.len() / 2), border, 0u8, row, col)
}

multiversion! {
    // Same operation order as `row_conv_f32` (no FMA contraction), so the results are identical.
    fn row_u8_f32(pad: &[u8], k: &[f32], out: &mut [f32]) {
        let n = out.len();
        out.fill(0.0);
        for (i, &ki) in k.iter().enumerate() {
            if ki == 0.0 {
                continue;
            }
            for (o, &p) in out.iter_mut().zip(&pad[i..i + n]) {
                *o += p as f32 * ki;
            }
        }
    }
}

multiversion! {
    // Same operation order as `col_conv_f32` with `delta` 0.
    fn col_f32_u8(rows: &[&[f32]], k: &[f32], out: &mut [u8]) {
        let mut acc = [0f32; 256];
        for x0 in (0..out.len()).step_by(256) {
            let len = (out.len() - x0).min(256);
            let acc = &mut acc[..len];
            acc.fill(0.0);
            for (r, &ki) in rows.iter().zip(k) {
                for (a, &v) in acc.iter_mut().zip(&r[x0..x0 + len]) {
                    *a += v * ki;
                }
            }
            // `u8::from_f32` (round half to even, saturate, NaN to 0) in vector registers:
            // adding 1.5 * 2^23 leaves the rounded value in the low mantissa bits. (`max`
            // returns 0 for NaN, unlike `clamp`.)
            #[allow(clippy::manual_clamp)]
            for (o, &a) in out[x0..x0 + len].iter_mut().zip(acc.iter()) {
                *o = (a.max(0.0).min(255.0) + 12_582_912.0).to_bits() as u8;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// median

/// `cv::medianBlur` (replicated border). `ksize` must be odd and > 1; as OpenCV, 16-bit and float
/// images are limited to `ksize` 3 and 5.
pub fn median_blur<T: Pixel>(src: &Image<T>, ksize: usize) -> Result<Image<T>> {
    src.check("median_blur")?;
    if ksize < 3 || ksize.is_multiple_of(2) {
        return Err(bad("median_blur", format!("ksize {ksize} must be odd and > 1")));
    }
    crate::limits::check_kernel_limit("median_blur", ksize, ksize)?;
    if as_u8(src).is_none() && ksize > 5 {
        return Err(bad("median_blur", "ksize > 5 needs an 8-bit image"));
    }
    if let Some(s8) = as_u8(src) {
        if ksize > 5 {
            return Ok(from_u8(median_hist_u8(s8, ksize)));
        }
        return Ok(from_u8(median_network_u8(s8, ksize)));
    }
    Ok(median_network(src, ksize))
}

/// Compare-exchange network for the middle element of `n` values: Batcher's odd-even merge sort
/// on the next power of two, pruned to the comparators the median depends on.
fn median_network_pairs(n: usize) -> Vec<(usize, usize)> {
    let m = n.next_power_of_two();
    let mut pairs = Vec::new();
    let mut p = 1;
    while p < m {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < m {
                for i in 0..k.min(m - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        pairs.push((i + j, i + j + k));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    // Padding slots (>= n) hold +inf: comparators touching them never move real values down,
    // so we drop them; then keep only comparators the median output depends on.
    let pairs: Vec<_> = pairs.into_iter().filter(|&(a, b)| a < n && b < n).collect();
    let mut need = vec![false; n];
    need[n / 2] = true;
    let mut kept = Vec::new();
    for &(a, b) in pairs.iter().rev() {
        if need[a] || need[b] {
            need[a] = true;
            need[b] = true;
            kept.push((a, b));
        }
    }
    kept.reverse();
    kept
}

fn median_network_u8(src: &Image<u8>, ksize: usize) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let rl = w * cn;
    if ksize == 3 && kernels8::median3_direct(rl, cn) {
        let fill = |data: &mut [std::mem::MaybeUninit<u8>]| {
            par_rows(data, rl, |y0, band| {
                for (yy, out) in band.chunks_mut(rl).enumerate() {
                    let y = y0 + yy;
                    let row = |i: usize| src.row((y + i).saturating_sub(1).min(h - 1));
                    // SAFETY: the kernel only writes `out` (all of it) and never reads it;
                    // `MaybeUninit<u8>` has the layout of `u8`.
                    let out = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len()) };
                    kernels8::median3_row_direct([row(0), row(1), row(2)], out, cn);
                }
            })
        };
        // SAFETY: `fill` writes every value: each row is one `out` above, all of which
        // `median3_row_direct` writes when `median3_direct` holds (checked).
        return unsafe { Image::<u8>::from_fn_uninit(w, h, cn, fill) }.expect("valid channel count");
    }
    // Small rows take the generic path (the kernels process whole blocks of lanes).
    if rl < if ksize == 5 { kernels8::M5 } else { kernels8::MB } {
        return median_network(src, ksize);
    }
    let r = ksize / 2;
    let mut dst = Image::<u8>::new(w, h, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        // Sorted columns with `r` replicated pixels on each side.
        let mut cols: Vec<Vec<u8>> = (0..ksize).map(|_| vec![0; rl + 2 * r * cn]).collect();
        for (yy, out) in band.chunks_mut(rl).enumerate() {
            let y = y0 + yy;
            let row = |i: usize| src.row((y + i).saturating_sub(r).min(h - 1));
            if ksize == 3 {
                let [lo, mid, hi] = &mut cols[..] else { unreachable!() };
                kernels8::median3_row([row(0), row(1), row(2)], out, cn, lo, mid, hi);
            } else {
                kernels8::median5_row([row(0), row(1), row(2), row(3), row(4)], out, cn, &mut cols);
            }
        }
    });
    dst
}

fn median_network<T: Pixel>(src: &Image<T>, ksize: usize) -> Image<T> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let r = ksize / 2;
    let n = ksize * ksize;
    let pairs = median_network_pairs(n);
    let padder = RowPadder::new(w, cn, ksize, r, BorderType::Replicate);
    let rl = w * cn;
    let mut dst = Image::<T>::new(w, h, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut pads: Vec<Vec<T>> = (0..ksize).map(|_| vec![T::default(); padder.len()]).collect();
        const B: usize = 64;
        let mut vals = vec![[T::default(); B]; n];
        for (yy, out) in band.chunks_mut(rl).enumerate() {
            let y = y0 + yy;
            for (i, p) in pads.iter_mut().enumerate() {
                let sy = border_interpolate(y as isize + i as isize - r as isize, h, BorderType::Replicate);
                padder.fill(sy.map(|s| src.row(s)), T::default(), p);
            }
            for x0 in (0..rl).step_by(B) {
                let len = (rl - x0).min(B);
                for i in 0..ksize {
                    for j in 0..ksize {
                        let s = &pads[i][x0 + j * cn..x0 + j * cn + len];
                        vals[i * ksize + j][..len].copy_from_slice(s);
                    }
                }
                for &(a, b) in &pairs {
                    let (lo, hi) = vals.split_at_mut(b);
                    let (va, vb) = (&mut lo[a], &mut hi[0]);
                    for t in 0..B {
                        let (p, q) = (va[t], vb[t]);
                        let (mn, mx) = if q < p { (q, p) } else { (p, q) };
                        va[t] = mn;
                        vb[t] = mx;
                    }
                }
                out[x0..x0 + len].copy_from_slice(&vals[n / 2][..len]);
            }
        }
    });
    dst
}

/// Large-kernel 8-bit median: a sliding 256-bin histogram per row (Huang), per channel.
fn median_hist_u8(src: &Image<u8>, ksize: usize) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let r = ksize as isize / 2;
    let half = (ksize * ksize / 2) as u32;
    let mut dst = Image::<u8>::new(w, h, cn).expect("channels");
    let rl = w * cn;
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    par_rows(dst.data_mut(), rl, |y0, band| {
        for (yy, out) in band.chunks_mut(rl).enumerate() {
            let y = (y0 + yy) as isize;
            let rows: Vec<&[u8]> = (-r..=r).map(|d| src.row(clamp(y + d, h))).collect();
            for c in 0..cn {
                let mut hist = [0u32; 256];
                for row in &rows {
                    for dx in -r..=r {
                        hist[row[clamp(dx, w) * cn + c] as usize] += 1;
                    }
                }
                // `med` is the median bin and `below` the count of values below it.
                let (mut med, mut below) = (0usize, 0u32);
                let find = |hist: &[u32; 256], med: &mut usize, below: &mut u32| {
                    while *below > half {
                        *med -= 1;
                        *below -= hist[*med];
                    }
                    while *below + hist[*med] <= half {
                        *below += hist[*med];
                        *med += 1;
                    }
                };
                find(&hist, &mut med, &mut below);
                out[c] = med as u8;
                for x in 1..w as isize {
                    let xo = clamp(x - r - 1, w) * cn + c;
                    let xi = clamp(x + r, w) * cn + c;
                    for row in &rows {
                        let (vo, vi) = (row[xo] as usize, row[xi] as usize);
                        hist[vo] -= 1;
                        if vo < med {
                            below -= 1;
                        }
                        hist[vi] += 1;
                        if vi < med {
                            below += 1;
                        }
                    }
                    find(&hist, &mut med, &mut below);
                    out[x as usize * cn + c] = med as u8;
                }
            }
        }
    });
    dst
}

// ------------------------------------------------------------------------------------------
// helpers to specialise generic code on u8

pub(crate) fn as_u8<T: Pixel>(img: &Image<T>) -> Option<&Image<u8>> {
    (img as &dyn std::any::Any).downcast_ref::<Image<u8>>()
}

pub(crate) fn from_u8<T: Pixel>(img: Image<u8>) -> Image<T> {
    let boxed: Box<dyn std::any::Any> = Box::new(img);
    *boxed.downcast::<Image<T>>().expect("called only when T is u8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_2d_u8_path_equals_float_path() {
        let k: Vec<f32> = (0..15).map(|i| (i as f32 - 6.0) / 11.0).collect();
        for (w, h) in [(1, 1), (2, 7), (37, 29), (600, 5)] {
            for cn in 1..=4 {
                let data: Vec<u8> = (0..w * h * cn).map(|i| ((i * 2654435761usize) >> 9) as u8).collect();
                let img = Image::from_vec(w, h, cn, data).unwrap();
                let f = img.map(|v| v as f32);
                for border in [BorderType::Reflect101, BorderType::Constant, BorderType::Replicate] {
                    for (kw, kh) in [(5, 3), (3, 5), (1, 1)] {
                        let got = filter_2d(&img, &k[..kw * kh], kw, kh, 0.5, border).unwrap();
                        let want = filter_2d(&f, &k[..kw * kh], kw, kh, 0.5, border).unwrap().map(u8::from_f32);
                        assert_eq!(got.data(), want.data(), "{w}x{h}x{cn} {border:?} {kw}x{kh}");
                    }
                }
            }
        }
    }
    fn noise(w: usize, h: usize, cn: usize, seed: u64) -> Image<u8> {
        let mut state = seed;
        let data = (0..w * h * cn)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Runs of equal values (ties) mixed with noise.
                if i % 7 < 3 {
                    100
                } else {
                    (state >> 56) as u8
                }
            })
            .collect();
        Image::from_vec(w, h, cn, data).unwrap()
    }

    #[test]
    fn median_row_kernels_match_generic_network() {
        for (w, h, cn) in [
            (70, 9, 1),
            (33, 7, 3),
            (40, 6, 4),
            (32, 3, 1),
            (150, 4, 1),
            (34, 5, 1),
            (35, 4, 1),
            (22, 6, 3),
            (47, 6, 3),
            (100, 5, 4),
        ] {
            let img = noise(w, h, cn, (w * h * cn) as u64);
            for k in [3, 5] {
                assert!(median_network_u8(&img, k) == median_network(&img, k), "{w}x{h}x{cn} k={k}");
            }
        }
    }

    #[test]
    fn sliding_box_blur_matches_direct_sums() {
        // Several bands (more than 2^15 values) and every border that blur accepts.
        let img = noise(301, 117, 3, 5);
        for border in [BorderType::Reflect101, BorderType::Replicate, BorderType::Constant, BorderType::Reflect] {
            for k in [(5, 5), (3, 7), (1, 9), (11, 3)] {
                let fast = blur(&img, k, border).unwrap();
                let direct = box_filter(&img, k, true, border).unwrap();
                assert!(fast == direct, "{k:?} {border:?}");
            }
        }
    }

    #[test]
    fn median_network_sorts_middle() {
        for n in [9usize, 25] {
            let pairs = median_network_pairs(n);
            let mut state = 12345u64;
            for _ in 0..2000 {
                let mut v: Vec<u32> = (0..n)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (state >> 33) as u32 % 50
                    })
                    .collect();
                let mut s = v.clone();
                s.sort();
                for &(a, b) in &pairs {
                    if v[b] < v[a] {
                        v.swap(a, b);
                    }
                }
                assert_eq!(v[n / 2], s[n / 2]);
            }
        }
    }
}
