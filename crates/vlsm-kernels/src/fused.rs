//! Fused CPU kernels for transformer inference on frozen f32 weights: linear with bias,
//! residual and activation in one pass, multi-head attention reading q/k/v in place with a
//! vectorised softmax, a row-parallel LayerNorm, and CLIP's QuickGELU.
//!
//! candle builds each of these from several ops, each allocating and sweeping its output once
//! more (bias add, transposes to [B, heads, N, hd] and back, a one-thread softmax with libm
//! `exp`). These kernels call the same `gemm` crate candle uses, with strides instead of copies.
//! They are taken only when nothing needs a gradient ([`usable`]); training composes the
//! ordinary candle ops.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::parallel::SendPtr;
use crate::simd::multiversion;

/// True when every tensor is f32 on the CPU and none is tracked for backprop.
pub fn usable(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op())
}

/// Activation applied in the linear's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    QuickGelu,
    Relu,
}

/// Runs `f` on the f32 contents of `t` (made contiguous first), from its start offset.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*s else { candle_core::bail!("fused kernels: f32 CPU tensors only") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("fused kernels: not contiguous") };
    f(&v[a..b])
}

/// Like [`with_slice`] but without copying: the slice from the start offset and the layout, for
/// reading a broadcast tensor through its strides.
fn with_strided<R>(t: &Tensor, f: impl FnOnce(&[f32], &Layout) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*s else { candle_core::bail!("fused kernels: f32 CPU tensors only") };
    f(&v[l.start_offset()..], l)
}

fn parallelism() -> Parallelism {
    let n = candle_core::utils::get_num_threads();
    if n > 1 {
        Parallelism::Rayon(n)
    } else {
        Parallelism::None
    }
}

/// An output buffer of `n` floats that the caller overwrites completely. Zeroed: handing out
/// uninitialised memory as `[f32]` is undefined behaviour, and the fill costs ≈ 1 % here.
fn output_vec(n: usize) -> Vec<f32> {
    vec![0f32; n]
}

/// `dst[i, j] (+)= Σ_c x[i, c] · w[j, c]` for x [m, k] row-major, w [n, k] read through its
/// layout, dst rows `dst_rs` apart (so a product can fill a column block of a wider matrix).
fn gemm_xwt(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    xs: &[f32],
    m: usize,
    k: usize,
    w: &Tensor,
) -> Result<()> {
    let (n, wk) = w.dims2()?;
    if wk != k || xs.len() != m * k || (m > 0 && dst.len() < (m - 1) * dst_rs + n) || dst_rs < n {
        candle_core::bail!("gemm_xwt: inconsistent shapes");
    }
    with_strided(w, |ws, wl| {
        let [w_rs, w_cs] = wl.stride() else { candle_core::bail!("linear: weight is not 2-D") };
        // SAFETY: checked above: xs is [m, k] row-major and dst holds m rows of n, dst_rs apart;
        // ws is read through w's own layout as the k×n rhs wᵀ (element (c, j) at j·w_rs + c·w_cs).
        unsafe {
            gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                dst_rs as isize,
                accumulate,
                xs.as_ptr(),
                1,
                k as isize,
                ws.as_ptr(),
                *w_rs as isize,
                *w_cs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism(),
            )
        };
        Ok(())
    })
}

fn out_dims(x: &Tensor, k: usize, n: usize) -> Result<Vec<usize>> {
    let mut dims = x.dims().to_vec();
    match dims.last_mut() {
        Some(last) if *last == k => *last = n,
        _ => candle_core::bail!("linear: input {:?} does not end in the weight's {k} features", x.dims()),
    }
    Ok(dims)
}

/// `act(x · wᵀ + b) (+ residual)`: x [.., K], w [N, K] (PyTorch layout), b [N], residual like
/// the output [.., N]. The residual is added after the activation, as in `h + mlp(h)`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, residual: Option<&Tensor>, act: Act) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let dims = out_dims(x, k, n)?;
    let m = x.elem_count() / k;
    if let Some(r) = residual {
        if r.dims() != dims.as_slice() {
            candle_core::bail!("linear: residual {:?} does not match output {:?}", r.dims(), dims);
        }
    }
    let mut out = output_vec(m * n);
    // Seed the destination with bias + residual (before the activation there is no residual).
    let seeded = match (b, residual, act) {
        (Some(b), Some(r), Act::None) => with_slice(b, |b| {
            with_slice(r, |r| {
                out.par_chunks_mut(n).zip(r.par_chunks(n)).for_each(|(o, r)| {
                    for ((o, r), b) in o.iter_mut().zip(r).zip(b) {
                        *o = r + b;
                    }
                });
                Ok(true)
            })
        })?,
        (None, Some(r), Act::None) => with_slice(r, |r| {
            out.copy_from_slice(r);
            Ok(true)
        })?,
        (Some(b), _, _) => with_slice(b, |b| {
            out.par_chunks_mut(n).for_each(|o| o.copy_from_slice(b));
            Ok(true)
        })?,
        (None, _, _) => false,
    };
    with_slice(x, |xs| gemm_xwt(&mut out, n, seeded, xs, m, k, w))?;
    let res_after = match (residual, act) {
        (Some(r), Act::QuickGelu | Act::Relu) => Some(r.contiguous()?),
        _ => None,
    };
    let epilogue = |o: &mut [f32], r: Option<&[f32]>| {
        match act {
            Act::None => {}
            Act::QuickGelu => quick_gelu_inplace(o),
            Act::Relu => o.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
        if let Some(r) = r {
            o.iter_mut().zip(r).for_each(|(o, r)| *o += r);
        }
    };
    const CHUNK: usize = 1 << 14;
    match &res_after {
        Some(r) => with_slice(r, |r| {
            out.par_chunks_mut(CHUNK).zip(r.par_chunks(CHUNK)).for_each(|(o, r)| epilogue(o, Some(r)));
            Ok(())
        })?,
        None if act != Act::None => out.par_chunks_mut(CHUNK).for_each(|o| epilogue(o, None)),
        None => {}
    }
    Tensor::from_vec(out, dims, x.device())
}

/// q, k and v projections of x [.., K] side by side, [.., 3D], for [`attention`]: three
/// products written into column blocks of one buffer, so the weights stay as loaded.
pub fn qkv(x: &Tensor, q: &candle_nn::Linear, k: &candle_nn::Linear, v: &candle_nn::Linear) -> Result<Tensor> {
    let (d, kk) = q.weight().dims2()?;
    let projs = [q, k, v];
    if projs.iter().any(|p| p.weight().dims() != [d, kk]) {
        candle_core::bail!("qkv: q/k/v weights differ in shape");
    }
    let dims = out_dims(x, kk, 3 * d)?;
    let m = x.elem_count() / kk;
    let mut out = output_vec(m * 3 * d);
    for (i, p) in projs.iter().enumerate() {
        match p.bias() {
            Some(b) => with_slice(b, |b| {
                out.par_chunks_mut(3 * d).for_each(|o| o[i * d..(i + 1) * d].copy_from_slice(b));
                Ok(())
            })?,
            None => out.par_chunks_mut(3 * d).for_each(|o| o[i * d..(i + 1) * d].fill(0.0)),
        }
    }
    with_slice(x, |xs| {
        for (i, p) in projs.iter().enumerate() {
            gemm_xwt(&mut out[i * d..], 3 * d, true, xs, m, kk, p.weight())?;
        }
        Ok(())
    })?;
    Tensor::from_vec(out, dims, x.device())
}

/// `candle_nn::LayerNorm::forward`, through [`layer_norm`] when nothing needs a gradient.
pub fn ln(m: &candle_nn::LayerNorm, x: &Tensor) -> Result<Tensor> {
    use candle_core::Module;
    match m.bias() {
        Some(b) if m.remove_mean() && usable(&[x, m.weight(), b]) => layer_norm(x, m.weight(), b, m.eps()),
        _ => m.forward(x),
    }
}

/// Multi-head self-attention core on a packed projection `qkv` [B, N, 3D] (q, k, v side by
/// side, q not yet scaled): `softmax(q kᵀ / √hd + mask) v`, heads merged back to [B, N, D].
/// `mask` is additive and broadcastable to [B, heads, N, N].
pub fn attention(qkv: &Tensor, heads: usize, mask: Option<&Tensor>) -> Result<Tensor> {
    let (b, n, d3) = qkv.dims3()?;
    if d3 % (3 * heads) != 0 {
        candle_core::bail!("attention: width {d3} is not 3 × heads ({heads}) × head_dim");
    }
    let d = d3 / 3;
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    let mask = mask.map(|m| m.broadcast_as((b, heads, n, n))).transpose()?;
    let mut out = output_vec(b * n * d);
    let dst = SendPtr::new(out.as_mut_ptr());
    with_slice(qkv, |qkv| {
        let run = |mask: Option<(&[f32], &[usize])>| {
            (0..b * heads).into_par_iter().for_each(|task| {
                let (bi, hi) = (task / heads, task % heads);
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    s.resize(n * n, 0.0);
                    let s = &mut s[..n * n];
                    let base = bi * n * d3 + hi * hd;
                    let q = qkv[base..].as_ptr();
                    let k = qkv[base + d..].as_ptr();
                    let v = qkv[base + 2 * d..].as_ptr();
                    // SAFETY: q/k/v rows are d3 apart within this batch item's [n, d3] block;
                    // s is n×n. The rhs kᵀ (hd×n) reads k[j, c] at c·1 + j·d3.
                    unsafe {
                        gemm(
                            n,
                            n,
                            hd,
                            s.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            q,
                            1,
                            d3 as isize,
                            k,
                            d3 as isize,
                            1,
                            0.0,
                            scale,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        )
                    };
                    if let Some((m, st)) = mask {
                        let off = bi * st[0] + hi * st[1];
                        for i in 0..n {
                            let row = &mut s[i * n..(i + 1) * n];
                            for (j, x) in row.iter_mut().enumerate() {
                                *x += m[off + i * st[2] + j * st[3]];
                            }
                        }
                    }
                    softmax_rows(s, n);
                    // SAFETY: this task alone writes columns hi·hd..(hi+1)·hd of batch item bi's
                    // [n, d] output rows, so tasks never overlap; out outlives the parallel loop.
                    unsafe {
                        gemm(
                            n,
                            hd,
                            n,
                            dst.get().add(bi * n * d + hi * hd),
                            1,
                            d as isize,
                            false,
                            s.as_ptr(),
                            1,
                            n as isize,
                            v,
                            1,
                            d3 as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        )
                    };
                });
            });
        };
        match &mask {
            Some(m) => with_strided(m, |ms, ml| {
                run(Some((ms, ml.stride())));
                Ok(())
            }),
            None => {
                run(None);
                Ok(())
            }
        }
    })?;
    Tensor::from_vec(out, (b, n, d), qkv.device())
}

thread_local! {
    /// Per-thread attention scores, reused across heads, layers and calls.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// LayerNorm over the last dimension with weight and bias, rows in parallel.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(candle_core::D::Minus1)?;
    let mut out = output_vec(x.elem_count());
    with_slice(x, |xs| {
        with_slice(w, |w| {
            with_slice(b, |bias| {
                if w.len() != d || bias.len() != d {
                    candle_core::bail!("layer_norm: weight {} / bias {} for {d} features", w.len(), bias.len());
                }
                let rows = (16384 / d).max(1) * d;
                out.par_chunks_mut(rows).zip(xs.par_chunks(rows)).for_each(|(o, x)| {
                    for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                        layer_norm_row(x, w, bias, eps as f32, o);
                    }
                });
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// `x * sigmoid(1.702 x)`, the activation of OpenAI's CLIP ("quick_gelu"). Frozen encoders
/// take a fused, multi-threaded CPU path (candle's sigmoid is one thread and three passes);
/// anything that needs a gradient takes the composed ops.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op() {
        return x.contiguous()?.apply_op1_no_bwd(&QuickGelu);
    }
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

struct QuickGelu;

impl candle_core::CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "quick-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, candle_core::Shape)> {
        let CpuStorage::F32(v) = s else { candle_core::bail!("quick_gelu: f32 only") };
        let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("quick_gelu: not contiguous") };
        let mut out = vec![0f32; b - a];
        out.par_chunks_mut(1 << 14).zip(v[a..b].par_chunks(1 << 14)).for_each(|(o, i)| {
            for (o, &x) in o.iter_mut().zip(i) {
                *o = x / (1.0 + (-1.702 * x).exp());
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

// The loops below are written so LLVM vectorises them; each entry point also has a copy
// compiled for AVX2+FMA, picked when the CPU has it (`multiversion!`).

multiversion! {
    /// Softmax of each length-`n` row of `s`, in place.
    fn softmax_rows(s: &mut [f32], n: usize) {
        softmax_rows_impl(s, n)
    }
}

multiversion! {
    /// `x · sigmoid(1.702 x)` in place.
    fn quick_gelu_inplace(o: &mut [f32]) {
        quick_gelu_impl(o)
    }
}

multiversion! {
    fn layer_norm_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, o: &mut [f32]) {
        layer_norm_row_impl(x, w, b, eps, o)
    }
}

const LANES: usize = 8;

#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = it.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// `e^x` for f32, branch-free so it vectorises: x = n ln2 + r with |r| ≤ ln2/2, e^r by a
/// degree-6 polynomial (Cephes `expf` coefficients), 2^n through the exponent bits. Relative
/// error ≈ 2 ulp; 0 below -87.3 (true underflow is gradual from -87.3), +inf above 88 (true
/// overflow at 88.72, unreachable from softmax or quick_gelu arguments), NaN stays NaN.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to the nearest integer in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.0);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let er = p * r * r + r + 1.0;
    let bits = (t.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) << 23;
    let y = er * f32::from_bits(bits as u32);
    if x < -87.3 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
fn softmax_rows_impl(s: &mut [f32], n: usize) {
    for row in s.chunks_exact_mut(n) {
        let m = lane_max(row);
        if m == f32::NEG_INFINITY {
            // A fully masked row: PyTorch gives NaN (0/0); keep that.
            row.iter_mut().for_each(|v| *v = f32::NAN);
            continue;
        }
        row.iter_mut().for_each(|v| *v = fast_exp(*v - m));
        let inv = 1.0 / lane_sum(row);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

#[inline(always)]
fn quick_gelu_impl(o: &mut [f32]) {
    o.iter_mut().for_each(|v| *v /= 1.0 + fast_exp(-1.702 * *v));
}

#[inline(always)]
fn layer_norm_row_impl(x: &[f32], w: &[f32], b: &[f32], eps: f32, o: &mut [f32]) {
    let d = x.len() as f32;
    let mean = lane_sum(x) / d;
    for (o, &x) in o.iter_mut().zip(x) {
        *o = x - mean;
    }
    let mut acc = [0f32; LANES];
    let mut it = o.chunks_exact(LANES);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let var = (acc.iter().sum::<f32>() + it.remainder().iter().map(|v| v * v).sum::<f32>()) / d;
    let inv = 1.0 / (var + eps).sqrt();
    for ((o, &w), &b) in o.iter_mut().zip(w).zip(b) {
        *o = *o * inv * w + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        d / s
    }

    #[test]
    fn fast_exp_accuracy() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (fast_exp(x), (x as f64).exp());
            worst = worst.max(((a as f64 - b) / b).abs() as f32);
            x += 0.001;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(-1000.0), 0.0);
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(1000.0), f32::INFINITY);
        assert!(fast_exp(f32::NAN).is_nan());
        // The dispatched (vectorised) copy agrees with the scalar one.
        let mut v: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.05).collect();
        let want: Vec<f32> = v.iter().map(|&x| x / (1.0 + fast_exp(-1.702 * x))).collect();
        quick_gelu_inplace(&mut v);
        assert_eq!(v, want);
    }

    #[test]
    fn linear_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 7, 24), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (40, 24), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 40, &dev)?;
        let r = Tensor::randn(0f32, 1.0, (2, 7, 40), &dev)?;
        let y = x.broadcast_matmul(&w.t()?)?.broadcast_add(&b)?;
        assert!(max_rel(&linear(&x, &w, Some(&b), None, Act::None)?, &y) < 1e-6);
        assert!(max_rel(&linear(&x, &w, None, None, Act::None)?, &x.broadcast_matmul(&w.t()?)?) < 1e-6);
        assert!(max_rel(&linear(&x, &w, Some(&b), Some(&r), Act::None)?, &(&y + &r)?) < 1e-6);
        assert!(max_rel(&linear(&x, &w, Some(&b), None, Act::Relu)?, &y.relu()?) < 1e-6);
        let qg = (&y * candle_nn::ops::sigmoid(&(&y * 1.702)?)?)?;
        assert!(max_rel(&linear(&x, &w, Some(&b), None, Act::QuickGelu)?, &qg) < 1e-6);
        assert!(max_rel(&linear(&x, &w, Some(&b), Some(&r), Act::QuickGelu)?, &(&qg + &r)?) < 1e-6);
        // A transposed (strided) weight is read in place.
        let wt = Tensor::randn(0f32, 1.0, (24, 40), &dev)?;
        assert!(max_rel(&linear(&x, &wt.t()?, None, None, Act::None)?, &x.broadcast_matmul(&wt)?) < 1e-6);
        Ok(())
    }

    #[test]
    fn attention_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let (b, n, heads, hd) = (2, 13, 3, 8);
        let d = heads * hd;
        let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * d), &dev)?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * d, d)?.reshape((b, n, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = ((split(0)? * (hd as f64).powf(-0.5))?, split(1)?, split(2)?);
        let reference = |mask: Option<&Tensor>| -> Result<Tensor> {
            let mut att = q.matmul(&k.t()?)?;
            if let Some(m) = mask {
                att = att.broadcast_add(m)?;
            }
            candle_nn::ops::softmax_last_dim(&att)?.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))
        };
        assert!(max_rel(&attention(&qkv, heads, None)?, &reference(None)?) < 1e-5);
        let causal: Vec<f32> =
            (0..n).flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        let causal = Tensor::from_vec(causal, (1, 1, n, n), &dev)?;
        assert!(max_rel(&attention(&qkv, heads, Some(&causal))?, &reference(Some(&causal))?) < 1e-5);
        let bias = Tensor::randn(0f32, 1.0, (1, heads, n, n), &dev)?;
        assert!(max_rel(&attention(&qkv, heads, Some(&bias))?, &reference(Some(&bias))?) < 1e-5);
        Ok(())
    }

    #[test]
    fn layer_norm_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1.0, (3, 5, 100), &dev)? + 3.0)?;
        let w = Tensor::randn(0f32, 1.0, 100, &dev)?;
        let b = Tensor::randn(0f32, 1.0, 100, &dev)?;
        let want = candle_nn::LayerNorm::new(w.clone(), b.clone(), 1e-5);
        use candle_core::Module;
        assert!(max_rel(&layer_norm(&x, &w, &b, 1e-5)?, &want.forward(&x)?) < 1e-5);
        Ok(())
    }

    #[test]
    fn usable_only_without_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let t = Tensor::zeros(3, DType::F32, &dev)?;
        let v = candle_core::Var::zeros(3, DType::F32, &dev)?;
        assert!(usable(&[&t]));
        assert!(!usable(&[&t, v.as_tensor()]));
        assert!(!usable(&[&(v.as_tensor() + 1.0)?]));
        assert!(!usable(&[&t.to_dtype(DType::F64)?]));
        Ok(())
    }
}
