//! Same-padded, stride-1 2-D convolution for training on the CPU.
//!
//! candle's CPU conv backward goes through a direct convolution with a kernel the size of the
//! image (for the weight gradient) and a naive transposed convolution (for the input gradient);
//! on a 160 px U-Net that is tens of times slower than PyTorch. Here k x k kernels run as direct
//! convolutions on a padded copy of each image (`conv_direct`; the input gradient is the
//! convolution of the output gradient with the flipped kernel) and 1x1 kernels as one GEMM, with
//! images spread over the rayon pool. Weights keep PyTorch's `[out, in, k, k]` layout.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::conv_direct;

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` with explicit (row, column) strides (dst's columns are
/// contiguous, its rows `dst_rs` apart); with `acc` the product is added to what `dst` holds.
/// Panics when a slice is too short for the shape and strides.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    acc: bool,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
    par: Parallelism,
) {
    /// Floats a rows × cols matrix with these strides spans.
    fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    }
    if m == 0 || n == 0 {
        return;
    }
    let k_used = if k == 0 { 0 } else { 1 };
    assert!(
        dst_rs >= n
            && dst.len() >= span(m, n, dst_rs, 1)
            && lhs.len() >= span(m * k_used, k, lhs_rs, lhs_cs)
            && rhs.len() >= span(k, n * k_used, rhs_rs, rhs_cs),
        "gemm_into: a slice is too short for its shape"
    );
    // SAFETY: asserted just above: dst holds m rows of n floats, dst_rs >= n apart (so no two
    // elements alias), lhs every (i, c) at i·lhs_rs + c·lhs_cs and rhs every (c, j) at
    // c·rhs_rs + j·rhs_cs; the three slices are distinct borrows.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Per-thread buffers of the direct convolution, reused so their pages are not faulted in
/// again on every call.
#[derive(Default)]
struct Scratch {
    /// A padded image (input or output gradient).
    xp: Vec<f32>,
    /// The output gradient on the padded grid.
    gg: Vec<f32>,
    /// The convolution output on the padded grid.
    tmp: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers. They are taken out for the call, not borrowed: `f` may
/// run parallel work, and a rayon thread waiting on it may run another job that calls this
/// again; that call then starts from empty buffers instead of finding them borrowed (a panic).
/// (Not reproduced in a test: 48 convolutions inside a 6-thread pool never interleaved so.)
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut sc = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = f(&mut sc);
    SCRATCH.with(|s| *s.borrow_mut() = sc);
    r
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
        let (c, h, w, co, b) = dims(l1, l2, self.k)?;
        let out = forward_f32(contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, (b, c, h, w), co, self.k);
        Ok((CpuStorage::F32(out), Shape::from((b, co, h, w))))
    }

    fn bwd(&self, x: &Tensor, wt: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let co = wt.dim(0)?;
        // The network's input (an image, not a variable) needs no gradient: skip its GEMMs.
        let need_gx = x.track_op();
        let (gx, gw) = with_f32(x, |xv| {
            with_f32(wt, |wv| with_f32(g, |gv| Ok(backward_f32(xv, wv, gv, (b, c, h, w), co, self.k, need_gx))))
        })?;
        let dev = x.device();
        Ok((
            gx.map(|gx| Tensor::from_vec(gx, (b, c, h, w), dev)).transpose()?,
            Some(Tensor::from_vec(gw, (co, c, self.k, self.k), dev)?),
        ))
    }
}

/// Same-padded convolution of `x` [b, c, h, w] with `wt` [co, c, k, k] → [b, co, h, w].
pub(crate) fn forward_f32(
    x: &[f32],
    wt: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    co: usize,
    k: usize,
) -> Vec<f32> {
    let (hw, ckk) = (h * w, c * k * k);
    let mut out = vec![0f32; b * co * hw];
    if out.is_empty() {
        return out;
    }
    let par = inner_par(b);
    if k == 1 {
        out.par_chunks_mut(co * hw).enumerate().for_each(|(i, o)| {
            let xi = &x[i * c * hw..(i + 1) * c * hw];
            gemm_into(false, co, hw, c, o, hw, wt, c, 1, xi, hw, 1, par);
        });
        return out;
    }
    // The weights are packed once; each image is padded once and convolved directly.
    let wpk = conv_direct::pack_weights(wt, co, ckk);
    let grid = conv_direct::Grid::new(h, w, k);
    let par = !matches!(par, Parallelism::None);
    out.par_chunks_mut(co * hw).enumerate().for_each(|(i, o)| {
        with_scratch(|sc| {
            sc.xp.resize(grid.padded_len(c), 0.0);
            grid.pad(&x[i * c * hw..(i + 1) * c * hw], c, &mut sc.xp);
            conv_direct::forward(&grid, &sc.xp, c, &wpk, co, o, par, &mut sc.tmp);
        })
    });
    out
}

/// Gradients of [`forward_f32`] for the output gradient `g`: (input gradient if `need_gx`,
/// weight gradient).
pub(crate) fn backward_f32(
    x: &[f32],
    wt: &[f32],
    g: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    co: usize,
    k: usize,
    need_gx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (hw, kk) = (h * w, k * k);
    let (ckk, cokk) = (c * kk, co * kk);
    // The input gradient is the same-padded convolution of g with the kernel flipped and its
    // in/out channels swapped: one GEMM straight into gx (no col2im scatter), with the
    // longer reduction (co·k²) that keeps the GEMM busy.
    let mut wflip = vec![0f32; c * cokk];
    for o in 0..co {
        for i in 0..c {
            for t in 0..kk {
                wflip[(i * co + o) * kk + (kk - 1 - t)] = wt[(o * c + i) * kk + t];
            }
        }
    }
    let par = inner_par(b);
    let wfp = if k > 1 && need_gx { conv_direct::pack_weights(&wflip, c, cokk) } else { Vec::new() };
    let grid = conv_direct::Grid::new(h, w, k);
    let mut gx_all = if need_gx { vec![0f32; b * c * hw] } else { Vec::new() };
    let gx_slots: Vec<Option<&mut [f32]>> =
        if need_gx { gx_all.chunks_mut((c * hw).max(1)).map(Some).collect() } else { (0..b).map(|_| None).collect() };
    // Each rayon job sums the weight gradient of its images in its own buffer.
    let gw = gx_slots
        .into_par_iter()
        .enumerate()
        .fold(
            || vec![0f32; co * ckk],
            |mut gw, (i, gx)| {
                let xi = &x[i * c * hw..(i + 1) * c * hw];
                let gi = &g[i * co * hw..(i + 1) * co * hw];
                if k == 1 {
                    // gW += g · xᵀ ; gx = Wᵀ · g
                    gemm_into(true, co, c, hw, &mut gw, c, gi, hw, 1, xi, 1, hw, par);
                    if let Some(gx) = gx {
                        gemm_into(false, c, hw, co, gx, hw, &wflip, co, 1, gi, hw, 1, par);
                    }
                    return gw;
                }
                with_scratch(|sc| {
                    sc.xp.resize(grid.padded_len(c), 0.0);
                    grid.pad(xi, c, &mut sc.xp);
                    grid.grid_of(gi, co, &mut sc.gg);
                    conv_direct::weight_grad(&grid, &sc.xp, c, &sc.gg, co, &mut gw);
                    if let Some(gx) = gx {
                        sc.xp.resize(grid.padded_len(co), 0.0);
                        grid.pad(gi, co, &mut sc.xp);
                        conv_direct::forward(
                            &grid,
                            &sc.xp,
                            co,
                            &wfp,
                            c,
                            gx,
                            !matches!(par, Parallelism::None),
                            &mut sc.tmp,
                        );
                    }
                });
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
    (need_gx.then_some(gx_all), gw)
}

/// A `k×k` convolution, stride 1, zero padding `k/2` (k odd), with PyTorch's parameter names.
#[derive(Debug, Clone)]
pub struct ConvSame2d {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
    pub(crate) k: usize,
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
        // Kernels wider than the image, and a large image.
        matches_candle(&[
            (2, 3, 5, 7, 9, 3),
            (3, 4, 2, 5, 4, 1),
            (1, 2, 3, 3, 6, 5),
            (2, 1, 1, 1, 1, 3),
            (1, 2, 2, 4, 1, 5),
            (1, 1, 1, 1, 2, 5),
            (2, 3, 2, 2, 3, 7),
            (2, 8, 4, 130, 64, 3),
        ]);
    }

    fn matches_candle(cases: &[(usize, usize, usize, usize, usize, usize)]) {
        let dev = Device::Cpu;
        for &(b, c, co, h, w, k) in cases {
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
