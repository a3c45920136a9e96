//! Morphology: structuring elements, erode/dilate and the compound operations.
use crate::border::border_interpolate;
use crate::border::BorderType;
use crate::error::{bad, Result};
use crate::filter::{as_u8, from_u8, separable, RowPadder};
use crate::image::{Image, Pixel};
use crate::kernels8;
use crate::parallel::par_rows;

/// `cv::MorphShapes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MorphShape {
    Rect,
    Cross,
    Ellipse,
}

/// `cv::MorphTypes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MorphOp {
    Erode,
    Dilate,
    Open,
    Close,
    Gradient,
    TopHat,
    BlackHat,
}

/// `cv::getStructuringElement` with the anchor at the centre: a `kw x kh` single-channel mask
/// of 0/1 values.
pub fn get_structuring_element(shape: MorphShape, (kw, kh): (usize, usize)) -> Result<Image<u8>> {
    if kw == 0 || kh == 0 {
        return Err(bad("get_structuring_element", "kernel size must be positive"));
    }
    crate::limits::check_kernel_limit("get_structuring_element", kw, kh)?;
    let shape = if (kw, kh) == (1, 1) { MorphShape::Rect } else { shape };
    let (ax, ay) = (kw / 2, kh / 2);
    let r = (kh / 2) as i64;
    let c = (kw / 2) as i64;
    let inv_r2 = if r > 0 { 1.0 / (r * r) as f64 } else { 0.0 };
    let mut k = Image::new(kw, kh, 1)?;
    for i in 0..kh {
        let (j1, j2) = match shape {
            MorphShape::Rect => (0, kw),
            MorphShape::Cross if i == ay => (0, kw),
            MorphShape::Cross => (ax, ax + 1),
            MorphShape::Ellipse => {
                let dy = i as i64 - r;
                if dy.abs() <= r {
                    let dx = (c as f64 * (((r * r - dy * dy) as f64) * inv_r2).sqrt()).round_ties_even() as i64;
                    ((c - dx).max(0) as usize, ((c + dx + 1).min(kw as i64)) as usize)
                } else {
                    (0, 0)
                }
            }
        };
        for j in j1..j2 {
            k.set(j, i, 0, 1);
        }
    }
    Ok(k)
}

/// Contiguous runs `(start, len)` of each kernel row.
fn kernel_runs(kernel: &Image<u8>) -> Vec<Vec<(usize, usize)>> {
    (0..kernel.height())
        .map(|i| {
            let row = kernel.row(i);
            let mut runs = Vec::new();
            let mut j = 0;
            while j < row.len() {
                if row[j] != 0 {
                    let s = j;
                    while j < row.len() && row[j] != 0 {
                        j += 1;
                    }
                    runs.push((s, j - s));
                } else {
                    j += 1;
                }
            }
            runs
        })
        .collect()
}

/// 8-bit erode/dilate: rect kernels as a separable min/max (rows then columns), other shapes
/// row by row over the runs of the kernel, with vectorised kernels.
fn morph_u8(src: &Image<u8>, kernel: &Image<u8>, dilate: bool) -> Image<u8> {
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let (kw, kh) = (kernel.width(), kernel.height());
    let (ax, ay) = (kw / 2, kh / 2);
    let ident = if dilate { 0u8 } else { 255 };
    let runs = kernel_runs(kernel);
    if runs.iter().all(|r| r.len() == 1 && r[0] == (0, kw)) {
        let row = move |pad: &[u8], out: &mut [u8]| kernels8::minmax_row(pad, out, kw, cn, dilate);
        let col = move |rows: &[&[u8]], out: &mut [u8]| {
            out.copy_from_slice(rows[0]);
            for r in &rows[1..] {
                kernels8::minmax_into(out, r, dilate);
            }
        };
        return separable(src, cn, (kw, ax), (kh, ay), BorderType::Constant, ident, row, col);
    }
    // Each distinct run's horizontal min/max of a source row is computed once and kept in a
    // ring of `kh` source rows; an output row combines the runs of its `kh` source rows.
    let mut uniq: Vec<(usize, usize)> = runs.iter().flatten().copied().collect();
    uniq.sort_unstable();
    uniq.dedup();
    let row_runs: Vec<Vec<usize>> =
        runs.iter().map(|r| r.iter().map(|run| uniq.binary_search(run).expect("listed")).collect()).collect();
    let padder = RowPadder::new(w, cn, kw, ax, BorderType::Constant);
    let rl = w * cn;
    let mut dst = Image::<u8>::new(w, h, cn).expect("channels");
    par_rows(dst.data_mut(), rl, |y0, band| {
        let rows_out = band.len() / rl;
        let mut pad = vec![ident; padder.len()];
        // ring[r % kh][u]: run `u` over source row `y0 - ay + r`; None outside the image.
        let mut ring: Vec<Option<Vec<Vec<u8>>>> = vec![None; kh];
        let mut spare: Vec<Vec<Vec<u8>>> = (0..kh).map(|_| vec![vec![ident; rl]; uniq.len()]).collect();
        for r in 0..rows_out + kh - 1 {
            let slot = r % kh;
            if let Some(old) = ring[slot].take() {
                spare.push(old);
            }
            if let Some(sy) = border_interpolate((y0 + r) as isize - ay as isize, h, BorderType::Constant) {
                let mut bufs = spare.pop().expect("one spare per slot");
                padder.fill(Some(src.row(sy)), ident, &mut pad);
                for (&(s, len), buf) in uniq.iter().zip(bufs.iter_mut()) {
                    kernels8::minmax_row(&pad[s * cn..], buf, len, cn, dilate);
                }
                ring[slot] = Some(bufs);
            }
            if r + 1 < kh {
                continue;
            }
            let y = r + 1 - kh;
            let out = &mut band[y * rl..(y + 1) * rl];
            out.fill(ident);
            for (i, us) in row_runs.iter().enumerate() {
                if let Some(bufs) = &ring[(y + i) % kh] {
                    for &u in us {
                        kernels8::minmax_into(out, &bufs[u], dilate);
                    }
                }
            }
        }
    });
    dst
}

fn morph<T: Pixel>(src: &Image<T>, kernel: &Image<u8>, dilate: bool) -> Image<T> {
    if let Some(s8) = as_u8(src) {
        return from_u8(morph_u8(s8, kernel, dilate));
    }
    let (w, h, cn) = (src.width(), src.height(), src.channels());
    let (kw, kh) = (kernel.width(), kernel.height());
    let (ax, ay) = (kw / 2, kh / 2);
    // Outside pixels take the identity value, so they never win (OpenCV's default border).
    let ident = if dilate { T::MIN } else { T::MAX };
    let pick = move |a: T, b: T| {
        if dilate {
            if b > a {
                b
            } else {
                a
            }
        } else if b < a {
            b
        } else {
            a
        }
    };
    let runs = kernel_runs(kernel);
    let padder = RowPadder::new(w, cn, kw, ax, BorderType::Constant);
    let rl = w * cn;
    let mut dst = Image::<T>::new(w, h, cn).expect("channels");
    let full_rect = runs.iter().all(|r| r.len() == 1 && r[0] == (0, kw));
    par_rows(dst.data_mut(), rl, |y0, band| {
        let mut pad = vec![ident; padder.len()];
        let mut hbuf = vec![ident; rl];
        for (yy, out) in band.chunks_mut(rl).enumerate() {
            let y = y0 + yy;
            out.fill(ident);
            for (i, row_runs) in runs.iter().enumerate() {
                let Some(sy) = border_interpolate(y as isize + i as isize - ay as isize, h, BorderType::Constant)
                else {
                    continue;
                };
                if row_runs.is_empty() {
                    continue;
                }
                padder.fill(Some(src.row(sy)), ident, &mut pad);
                for &(s, len) in row_runs {
                    if full_rect || len > 1 {
                        hbuf.copy_from_slice(&pad[s * cn..s * cn + rl]);
                        for t in 1..len {
                            for (a, &b) in hbuf.iter_mut().zip(&pad[(s + t) * cn..(s + t) * cn + rl]) {
                                *a = pick(*a, b);
                            }
                        }
                        for (o, &b) in out.iter_mut().zip(&hbuf) {
                            *o = pick(*o, b);
                        }
                    } else {
                        for (o, &b) in out.iter_mut().zip(&pad[s * cn..s * cn + rl]) {
                            *o = pick(*o, b);
                        }
                    }
                }
            }
        }
    });
    dst
}

fn check_kernel(op: &'static str, kernel: &Image<u8>) -> Result<()> {
    if kernel.is_empty() || kernel.channels() != 1 {
        return Err(bad(op, "kernel must be a non-empty single-channel mask"));
    }
    crate::limits::check_kernel_limit(op, kernel.width(), kernel.height())
}

fn repeat<T: Pixel>(src: &Image<T>, kernel: &Image<u8>, iterations: usize, dilate: bool) -> Image<T> {
    let mut cur = morph(src, kernel, dilate);
    for _ in 1..iterations {
        cur = morph(&cur, kernel, dilate);
    }
    cur
}

/// `cv::erode` (minimum over the kernel's nonzero cells, anchor at the centre), `iterations`
/// times. Pixels outside the image are ignored, as OpenCV's default border value.
pub fn erode<T: Pixel>(src: &Image<T>, kernel: &Image<u8>, iterations: usize) -> Result<Image<T>> {
    src.check("erode")?;
    check_kernel("erode", kernel)?;
    if iterations == 0 {
        return Ok(src.clone());
    }
    Ok(repeat(src, kernel, iterations, false))
}

/// `cv::dilate`; see [`erode`].
pub fn dilate<T: Pixel>(src: &Image<T>, kernel: &Image<u8>, iterations: usize) -> Result<Image<T>> {
    src.check("dilate")?;
    check_kernel("dilate", kernel)?;
    if iterations == 0 {
        return Ok(src.clone());
    }
    Ok(repeat(src, kernel, iterations, true))
}

fn sub<T: Pixel>(a: &Image<T>, b: &Image<T>) -> Image<T> {
    let data = a.data().iter().zip(b.data()).map(|(&x, &y)| T::from_f64(x.to_f64() - y.to_f64())).collect();
    Image::from_vec(a.width(), a.height(), a.channels(), data).expect("same shape")
}

/// `cv::morphologyEx`.
pub fn morphology_ex<T: Pixel>(src: &Image<T>, op: MorphOp, kernel: &Image<u8>, iterations: usize) -> Result<Image<T>> {
    src.check("morphology_ex")?;
    check_kernel("morphology_ex", kernel)?;
    let it = iterations.max(1);
    Ok(match op {
        MorphOp::Erode => repeat(src, kernel, it, false),
        MorphOp::Dilate => repeat(src, kernel, it, true),
        MorphOp::Open => repeat(&repeat(src, kernel, it, false), kernel, it, true),
        MorphOp::Close => repeat(&repeat(src, kernel, it, true), kernel, it, false),
        MorphOp::Gradient => sub(&repeat(src, kernel, it, true), &repeat(src, kernel, it, false)),
        MorphOp::TopHat => sub(src, &repeat(&repeat(src, kernel, it, false), kernel, it, true)),
        MorphOp::BlackHat => sub(&repeat(&repeat(src, kernel, it, true), kernel, it, false), src),
    })
}
