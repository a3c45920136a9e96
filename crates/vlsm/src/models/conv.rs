//! Same-padded, stride-1 2-D convolution for training on the CPU.
//!
//! candle's CPU conv backward goes through a direct convolution with a kernel the size of the
//! image (for the weight gradient) and a naive transposed convolution (for the input gradient);
//! on a 160 px U-Net that is tens of times slower than PyTorch. Here both directions are
//! im2col + one GEMM per image (the input gradient as a convolution of the output gradient with
//! the flipped kernel), with images spread over the rayon pool. Weights keep PyTorch's
//! `[out, in, k, k]` layout.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use gemm::Parallelism;
use rayon::prelude::*;

/// Columns x with 0 <= x + dx < w, as a range clamped to 0..w.
fn valid_range(w: usize, dx: isize) -> (usize, usize) {
    let x0 = (-dx).clamp(0, w as isize) as usize;
    let x1 = (w as isize - dx).clamp(0, w as isize) as usize;
    (x0, x1.max(x0))
}

/// `cols[(c·k + ky)·k + kx, (y − y0)·w + x] = x[c, y + ky − p, x + kx − p]` (0 outside), for
/// the output rows `y0..y1` only.
fn im2col(x: &[f32], c: usize, h: usize, w: usize, k: usize, (y0, y1): (usize, usize), cols: &mut [f32]) {
    let p = (k / 2) as isize;
    let hw = h * w;
    let n = (y1 - y0) * w;
    for ci in 0..c {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((ci * k + ky) * k + kx) * n..][..n];
                let dx = kx as isize - p;
                for y in y0..y1 {
                    let sy = y as isize + ky as isize - p;
                    let out = &mut row[(y - y0) * w..(y - y0 + 1) * w];
                    if sy < 0 || sy >= h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[sy as usize * w..(sy as usize + 1) * w];
                    let (x0, x1) = valid_range(w, dx);
                    out[..x0].fill(0.0);
                    if x0 < x1 {
                        // (empty when the kernel is wider than the image)
                        out[x0..x1].copy_from_slice(&src[(x0 as isize + dx) as usize..(x1 as isize + dx) as usize]);
                    }
                    out[x1..].fill(0.0);
                }
            }
        }
    }
}

/// Floats of unfolded columns per tile: small enough to stay in cache between im2col writing
/// it and the GEMM reading it (whole-image columns are tens of MB and go through DRAM twice).
const TILE_FLOATS: usize = 1 << 18;

/// Row ranges covering `0..h`, each unfolding to at most about `TILE_FLOATS` (at least a row).
fn row_tiles(h: usize, w: usize, rows_len: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = (TILE_FLOATS / (rows_len * w).max(1)).clamp(1, h.max(1));
    (0..h).step_by(step).map(move |y0| (y0, (y0 + step).min(h)))
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` with explicit (row, column) strides (dst's columns are
/// contiguous, its rows `dst_rs` apart); with `acc` the product is added to what `dst` holds.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    acc: bool,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[f32],
    rhs_rs: isize,
    rhs_cs: isize,
    par: Parallelism,
) {
    debug_assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: the slices cover every index the strides address (checked by the callers' shapes).
    unsafe {
        gemm::gemm(
            m, n, k, dst.as_mut_ptr(), 1, dst_rs as isize, acc, lhs.as_ptr(), lhs_cs, lhs_rs, rhs.as_ptr(), rhs_cs,
            rhs_rs, 1.0, 1.0, false, false, false, par,
        );
    }
}

thread_local! {
    /// im2col scratch, reused so its pages are not faulted in again on every call.
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch buffer of `n` floats (contents unspecified).
fn with_cols<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < n {
            c.resize(n, 0.0);
        }
        f(&mut c[..n])
    })
}

/// Borrows a contiguous f32 tensor's data without copying it out.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(cpu) => f(contiguous_f32(cpu, l)?),
        _ => candle_core::bail!("conv: only the CPU is supported"),
    }
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Inner GEMMs run single-threaded when there are enough images to go round the pool.
fn inner_par(batch: usize) -> Parallelism {
    if batch >= threads() {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads())
    }
}

struct ConvSame {
    k: usize,
}

fn dims(l1: &Layout, l2: &Layout, k: usize) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, c, h, w) = l1.shape().dims4()?;
    let (co, ci, kh, kw) = l2.shape().dims4()?;
    if ci != c || kh != k || kw != k {
        candle_core::bail!("conv: input {:?} does not fit kernel {:?}", l1.shape(), l2.shape());
    }
    let _ = b;
    Ok((c, h, w, co, b))
}

/// The data of a contiguous f32 CPU storage (the custom ops of conv, norm and unet_ops).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("custom op: only f32 is supported"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("custom op: input is not contiguous"),
    }
}

impl CustomOp2 for ConvSame {
    fn name(&self) -> &'static str {
        "conv2d-same"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let k = self.k;
        let (c, h, w, co, b) = dims(l1, l2, k)?;
        let x = contiguous_f32(s1, l1)?;
        let wt = contiguous_f32(s2, l2)?;
        let (hw, ckk) = (h * w, c * k * k);
        let mut out = vec![0f32; b * co * hw];
        let par = inner_par(b);
        out.par_chunks_mut(co * hw).enumerate().for_each(|(i, o)| {
            let xi = &x[i * c * hw..(i + 1) * c * hw];
            if k == 1 {
                gemm_into(false, co, hw, c, o, hw, wt, c as isize, 1, xi, hw as isize, 1, par);
            } else {
                for (y0, y1) in row_tiles(h, w, ckk) {
                    let n = (y1 - y0) * w;
                    with_cols(ckk * n, |cols| {
                        im2col(xi, c, h, w, k, (y0, y1), cols);
                        let dst = &mut o[y0 * w..];
                        gemm_into(false, co, n, ckk, dst, hw, wt, ckk as isize, 1, cols, n as isize, 1, par);
                    });
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, co, h, w))))
    }

    fn bwd(&self, x: &Tensor, wt: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let k = self.k;
        let (b, c, h, w) = x.dims4()?;
        let co = wt.dim(0)?;
        let (hw, kk) = (h * w, k * k);
        let (ckk, cokk) = (c * kk, co * kk);
        // The input gradient is the same-padded convolution of g with the kernel flipped and its
        // in/out channels swapped: one GEMM straight into gx (no col2im scatter), with the
        // longer reduction (co·k²) that keeps the GEMM busy.
        let wflip: Vec<f32> = with_f32(wt, |wv| {
            let mut f = vec![0f32; c * cokk];
            for o in 0..co {
                for i in 0..c {
                    for t in 0..kk {
                        f[(i * co + o) * kk + (kk - 1 - t)] = wv[(o * c + i) * kk + t];
                    }
                }
            }
            Ok(f)
        })?;
        let par = inner_par(b);
        // The network's input (an image, not a variable) needs no gradient: skip its GEMMs.
        let need_gx = x.track_op();
        let mut gx_all = if need_gx { vec![0f32; b * c * hw] } else { Vec::new() };
        let gx_slots: Vec<Option<&mut [f32]>> = if need_gx {
            gx_all.chunks_mut(c * hw).map(Some).collect()
        } else {
            (0..b).map(|_| None).collect()
        };
        let gw_sum = with_f32(x, |xv| {
            with_f32(g, |gv| {
                // Each rayon job sums the weight gradient of its images in its own buffer.
                let gw = gx_slots
                    .into_par_iter()
                    .enumerate()
                    .fold(
                        || vec![0f32; co * ckk],
                        |mut gw, (i, gx)| {
                            let xi = &xv[i * c * hw..(i + 1) * c * hw];
                            let gi = &gv[i * co * hw..(i + 1) * co * hw];
                            if k == 1 {
                                // gW += g · xᵀ ; gx = Wᵀ · g
                                gemm_into(true, co, c, hw, &mut gw, c, gi, hw as isize, 1, xi, 1, hw as isize, par);
                                if let Some(gx) = gx {
                                    gemm_into(false, c, hw, co, gx, hw, &wflip, co as isize, 1, gi, hw as isize, 1, par);
                                }
                            } else {
                                // Row tiles, so each unfolded block is still in cache for its GEMM.
                                for (y0, y1) in row_tiles(h, w, ckk) {
                                    let n = (y1 - y0) * w;
                                    with_cols(ckk * n, |xcols| {
                                        im2col(xi, c, h, w, k, (y0, y1), xcols);
                                        let gt = &gi[y0 * w..];
                                        gemm_into(true, co, ckk, n, &mut gw, ckk, gt, hw as isize, 1, xcols, 1, n as isize, par);
                                    });
                                }
                                let Some(gx) = gx else { return gw };
                                for (y0, y1) in row_tiles(h, w, cokk) {
                                    let n = (y1 - y0) * w;
                                    with_cols(cokk * n, |gcols| {
                                        im2col(gi, co, h, w, k, (y0, y1), gcols);
                                        let dst = &mut gx[y0 * w..];
                                        gemm_into(false, c, n, cokk, dst, hw, &wflip, cokk as isize, 1, gcols, n as isize, 1, par);
                                    });
                                }
                            }
                            gw
                        },
                    )
                    .reduce(
                        || vec![0f32; co * ckk],
                        |mut a, b| {
                            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                            a
                        },
                    );
                Ok(gw)
            })
        })?;
        let dev = x.device();
        Ok((
            if need_gx { Some(Tensor::from_vec(gx_all, (b, c, h, w), dev)?) } else { None },
            Some(Tensor::from_vec(gw_sum, (co, c, k, k), dev)?),
        ))
    }
}

/// A `k×k` convolution, stride 1, zero padding `k/2` (k odd), with PyTorch's parameter names.
#[derive(Debug, Clone)]
pub struct ConvSame2d {
    weight: Tensor,
    bias: Option<Tensor>,
    k: usize,
}

impl ConvSame2d {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (_, _, kh, kw) = weight.dims4()?;
        if kh != kw || kh % 2 == 0 {
            candle_core::bail!("ConvSame2d needs an odd square kernel, got {kh}x{kw}");
        }
        Ok(Self { weight, bias, k: kh })
    }

    /// `conv.weight` [out, in, k, k] and `conv.bias` [out], initialised as PyTorch does.
    pub fn load(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
        let fan_in = (cin * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let init = candle_nn::Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", init)?;
        let bias = vb.get_with_hints(cout, "bias", init)?;
        Self::new(weight, Some(bias))
    }

    /// The same without a bias (before a normalisation that re-centres anyway).
    pub fn load_no_bias(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -bound, up: bound };
        Self::new(vb.get_with_hints((cout, cin, k, k), "weight", init)?, None)
    }
}

impl Module for ConvSame2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if x.dtype() == DType::F32 { x.contiguous()? } else { x.to_dtype(DType::F32)?.contiguous()? };
        let y = x.apply_op2(&self.weight, ConvSame { k: self.k })?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn im2col_matches_its_definition() {
        for (c, h, w, k) in [(2usize, 5usize, 7usize, 3usize), (1, 4, 1, 5), (2, 1, 2, 5), (1, 3, 3, 7), (3, 6, 4, 1)] {
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let p = (k / 2) as isize;
            for (y0, y1) in [(0, h), (h / 2, h), (0, h.div_ceil(2))] {
                let n = (y1 - y0) * w;
                let mut cols = vec![f32::NAN; c * k * k * n];
                im2col(&x, c, h, w, k, (y0, y1), &mut cols);
                for ci in 0..c {
                    for t in 0..k * k {
                        for y in y0..y1 {
                            for xx in 0..w {
                                let (sy, sx) = (y as isize + (t / k) as isize - p, xx as isize + (t % k) as isize - p);
                                let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                                let want = if inside { x[(ci * h + sy as usize) * w + sx as usize] } else { 0.0 };
                                assert_eq!(cols[(ci * k * k + t) * n + (y - y0) * w + xx], want, "{c},{h},{w},{k} rows {y0}..{y1}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn weight_gradient_without_input_gradient() {
        // A plain input tensor (no variable upstream) gets no gradient; the weight's still flows.
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 2, 6, 5), &dev).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 2, 3, 3), &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 4, 6, 5), &dev).unwrap();
        let g1 = (x.apply_op2(&wt, ConvSame { k: 3 }).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (x.conv2d(&wt, 1, 1, 1, 1).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g1.get(&x).is_none());
        let d = (g1.get(&wt).unwrap() - g2.get(&wt).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn matches_candle_conv_forward_and_backward() {
        let dev = Device::Cpu;
        // Kernels wider than the image, and a last case spanning several row tiles.
        for (b, c, co, h, w, k) in [(2, 3, 5, 7, 9, 3), (3, 4, 2, 5, 4, 1), (1, 2, 3, 3, 6, 5), (2, 1, 1, 1, 1, 3), (1, 2, 2, 4, 1, 5), (1, 1, 1, 1, 2, 5), (2, 3, 2, 2, 3, 7), (2, 8, 4, 130, 64, 3)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (co, c, k, k), &dev).unwrap()).unwrap();
            let r = Tensor::randn(0f32, 1.0, (b, co, h, w), &dev).unwrap();
            let ours = x.apply_op2(&wt, ConvSame { k }).unwrap();
            let theirs = x.conv2d(&wt, k / 2, 1, 1, 1).unwrap();
            let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "forward differs by {d}");
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt] {
                let a = g1.get(v).unwrap();
                let bb = g2.get(v).unwrap();
                let d = (a - bb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let scale = bb.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
                assert!(d / scale < 1e-4, "gradient differs by {d} (of {scale}) for case {b},{c},{co},{h},{w},{k}");
            }
        }
    }
}
