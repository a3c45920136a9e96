//! GroupNorm followed by ReLU as one CPU op with a hand-written backward.
//!
//! candle builds GroupNorm from ~10 elementwise/reduction ops, and their backward passes
//! (broadcast sums over strided dims, fresh buffers each time) cost more than the convolutions
//! around them in a small U-Net. In NCHW layout each (image, group) is one contiguous block, so
//! forward and backward are a few passes over that block.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::conv::{self, contiguous_f32, with_f32, ConvSame2d};

struct GroupNormRelu {
    groups: usize,
    eps: f64,
}

/// Sum of `f(x)` over a slice in f64, in eight interleaved partial sums: one running f64 sum
/// is a serial chain of adds; eight of them vectorise and overlap.
#[inline(always)]
fn sum8(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Mean and 1/std of a block, in f64 for a stable variance.
fn stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = sum8(x, |v| v as f64) / n;
    let var = sum8(x, |v| (v as f64 - mean).powi(2)) / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// Σd and Σd·x̂ over one channel, with d = dy·[y > 0] and x̂ = (x − mean)·rstd. Eight f32 lanes
/// over runs of 256 values, each run's sums then added in f64.
fn relu_grad_sums(x: &[f32], y: &[f32], g: &[f32], mean: f32, rstd: f32) -> (f64, f64) {
    let (mut sd, mut sdx) = (0f64, 0f64);
    let n = x.len().min(y.len()).min(g.len());
    let term = |xv: f32, yv: f32, gv: f32| {
        let d = if yv > 0.0 { gv } else { 0.0 };
        (d, d * ((xv - mean) * rstd))
    };
    for r0 in (0..n).step_by(256) {
        let r1 = (r0 + 256).min(n);
        let (xr, yr, gr) = (&x[r0..r1], &y[r0..r1], &g[r0..r1]);
        let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
        let n8 = xr.len() / 8 * 8;
        for ((xc, yc), gc) in xr[..n8].chunks_exact(8).zip(yr[..n8].chunks_exact(8)).zip(gr[..n8].chunks_exact(8)) {
            for l in 0..8 {
                let (u, v) = term(xc[l], yc[l], gc[l]);
                a[l] += u;
                b[l] += v;
            }
        }
        for j in n8..xr.len() {
            let (u, v) = term(xr[j], yr[j], gr[j]);
            a[0] += u;
            b[0] += v;
        }
        sd += a.iter().map(|&v| v as f64).sum::<f64>();
        sdx += b.iter().map(|&v| v as f64).sum::<f64>();
    }
    (sd, sdx)
}

impl CustomOp3 for GroupNormRelu {
    fn name(&self) -> &'static str {
        "group-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1)?;
        let (gamma, beta) = (contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let dims = l1.shape().dims();
        let hw: usize = dims[2..].iter().product();
        let y = forward_f32(x, (dims[0], dims[1], hw), gamma, beta, self.groups, self.eps);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let gam = gamma.to_vec1::<f32>()?;
        let (dx, dgamma, dbeta) = with_f32(x, |xv| {
            with_f32(res, |yv| with_f32(g, |gv| Ok(backward_f32(xv, yv, gv, (b, c, hw), &gam, self.groups, self.eps))))
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, dims.as_slice(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// `relu(GroupNorm(x))` of `x` [b, c, hw].
pub(crate) fn forward_f32(
    x: &[f32],
    (_b, c, hw): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    groups: usize,
    eps: f64,
) -> Vec<f32> {
    let cg = c / groups;
    let mut y = vec![0f32; x.len()];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(cg * hw).zip(x.par_chunks(cg * hw)).enumerate().for_each(|(i, (yo, xi))| {
        let g = i % groups;
        let (mean, rstd) = stats(xi, eps);
        for k in 0..cg {
            let ch = g * cg + k;
            let (a, b) = (gamma[ch] * rstd, beta[ch] - gamma[ch] * rstd * mean);
            for (o, &v) in yo[k * hw..(k + 1) * hw].iter_mut().zip(&xi[k * hw..(k + 1) * hw]) {
                *o = (a * v + b).max(0.0);
            }
        }
    });
    y
}

/// Gradients of [`forward_f32`] (output `y`, output gradient `g`): (dx, dgamma, dbeta).
pub(crate) fn backward_f32(
    x: &[f32],
    y: &[f32],
    g: &[f32],
    (b, c, hw): (usize, usize, usize),
    gamma: &[f32],
    groups: usize,
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cg = c / groups;
    let block = cg * hw;
    // Per (image, group) block: dx written in place, and per-channel sums for dgamma/dbeta
    // (reduced afterwards; the inputs are read where they lie, no copies).
    let mut dx = vec![0f32; b * c * hw];
    let mut sums = vec![(0f32, 0f32); b * c];
    if !dx.is_empty() {
        dx.par_chunks_mut(block).zip(sums.par_chunks_mut(cg)).enumerate().for_each(|(i, (dxi, sm))| {
            let grp = i % groups;
            let xi = &x[i * block..(i + 1) * block];
            let yi = &y[i * block..(i + 1) * block];
            let gi = &g[i * block..(i + 1) * block];
            let (mean, rstd) = stats(xi, eps);
            // dxhat = dy·[y > 0]·γ ; dx = rstd·(dxhat − mean(dxhat) − x̂·mean(dxhat·x̂)).
            // Per channel Σd and Σd·x̂ give dbeta, dgamma and (times γ) both means.
            let (mut s1, mut s2) = (0f64, 0f64);
            for (k, sk) in sm.iter_mut().enumerate() {
                let gk = gamma[grp * cg + k] as f64;
                let (xk, yk, gk_) = (&xi[k * hw..][..hw], &yi[k * hw..][..hw], &gi[k * hw..][..hw]);
                let (db, dg) = relu_grad_sums(xk, yk, gk_, mean, rstd);
                *sk = (dg as f32, db as f32);
                s1 += gk * db;
                s2 += gk * dg;
            }
            let n = block as f64;
            let (m1, m2) = ((s1 / n) as f32, (s2 / n) as f32);
            for k in 0..cg {
                let gk = gamma[grp * cg + k];
                let r = k * hw..(k + 1) * hw;
                for (((o, &xv), &yv), &gv) in
                    dxi[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&yi[r.clone()]).zip(&gi[r])
                {
                    let d = if yv > 0.0 { gv } else { 0.0 };
                    let xh = (xv - mean) * rstd;
                    *o = rstd * (d * gk - m1 - xh * m2);
                }
            }
        });
    }
    let mut dgamma = vec![0f32; c];
    let mut dbeta = vec![0f32; c];
    for (i, &(dg, db)) in sums.iter().enumerate() {
        dgamma[i % c] += dg;
        dbeta[i % c] += db;
    }
    (dx, dgamma, dbeta)
}

/// Same-padded conv (no bias) → GroupNorm → ReLU as one op. The conv output never becomes a
/// graph node, so its gradient skips candle's zero-filled buffer and add, and the norm's input
/// gradient goes straight into the conv's backward. Inputs: x, conv weight, [γ; β] as [2, C].
struct ConvNormRelu {
    k: usize,
    groups: usize,
    eps: f64,
    /// The conv output, kept for the backward pass (freed with the graph).
    conv_out: Mutex<Vec<f32>>,
}

impl CustomOp3 for ConvNormRelu {
    fn name(&self) -> &'static str {
        "conv-group-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let (co, ci, kh, kw) = l2.shape().dims4()?;
        if ci != c || kh != self.k || kw != self.k || l3.shape().dims() != [2, co] {
            candle_core::bail!(
                "conv-norm: input {:?}, kernel {:?}, norm {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let gb = contiguous_f32(s3, l3)?;
        let y = conv::forward_f32(contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, (b, c, h, w), co, self.k);
        let out = forward_f32(&y, (b, co, h * w), &gb[..co], &gb[co..], self.groups, self.eps);
        *self.conv_out.lock().map_err(|_| candle_core::Error::Msg("conv-norm: poisoned".into()))? = y;
        Ok((CpuStorage::F32(out), Shape::from((b, co, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wt: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let co = wt.dim(0)?;
        let gam = gb.get(0)?.to_vec1::<f32>()?;
        let y = self.conv_out.lock().map_err(|_| candle_core::Error::Msg("conv-norm: poisoned".into()))?;
        if y.len() != b * co * h * w {
            candle_core::bail!("conv-norm: backward without its forward");
        }
        let (gy, mut dgamma, dbeta) = with_f32(res, |rv| {
            with_f32(g, |gv| Ok(backward_f32(&y, rv, gv, (b, co, h * w), &gam, self.groups, self.eps)))
        })?;
        let need_gx = x.track_op();
        let (gx, gw) = with_f32(x, |xv| {
            with_f32(wt, |wv| Ok(conv::backward_f32(xv, wv, &gy, (b, c, h, w), co, self.k, need_gx)))
        })?;
        dgamma.extend_from_slice(&dbeta);
        let dev = x.device();
        Ok((
            gx.map(|gx| Tensor::from_vec(gx, (b, c, h, w), dev)).transpose()?,
            Some(Tensor::from_vec(gw, (co, c, self.k, self.k), dev)?),
            Some(Tensor::from_vec(dgamma, (2, co), dev)?),
        ))
    }
}

/// `relu(norm(conv(x)))` for a bias-free conv, as one op on the CPU.
pub fn conv_norm_relu(conv: &ConvSame2d, norm: &GroupNormRelu2d, x: &Tensor) -> Result<Tensor> {
    if conv.bias.is_some() || !x.device().is_cpu() {
        return norm.forward(&conv.forward(x)?);
    }
    let x = if x.dtype() == DType::F32 { x.contiguous()? } else { x.to_dtype(DType::F32)?.contiguous()? };
    let gb = Tensor::stack(&[&norm.weight, &norm.bias], 0)?;
    let op = ConvNormRelu { k: conv.k, groups: norm.groups, eps: norm.eps, conv_out: Mutex::new(Vec::new()) };
    x.apply_op3(&conv.weight, &gb, op)
}

/// `relu(GroupNorm(x))` with PyTorch's parameter names (`weight`, `bias`).
#[derive(Debug, Clone)]
pub struct GroupNormRelu2d {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNormRelu2d {
    pub fn load(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!("GroupNorm: {groups} groups do not divide {channels} channels");
        }
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, groups, eps })
    }
}

impl Module for GroupNormRelu2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if x.dtype() == DType::F32 { x.contiguous()? } else { x.to_dtype(DType::F32)?.contiguous()? };
        x.apply_op3(&self.weight, &self.bias, GroupNormRelu { groups: self.groups, eps: self.eps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_group_norm_then_relu() {
        for (b, c, h, w, g) in [(2, 6, 5, 4, 3), (3, 8, 19, 23, 2)] {
            check_group_norm_relu(b, c, h, w, g);
        }
    }

    fn check_group_norm_relu(b: usize, c: usize, h: usize, w: usize, g: usize) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (b, c, h, w), &dev).unwrap() + 0.3).unwrap()).unwrap();
        let gamma = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev).unwrap()).unwrap();
        let beta = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
        let ours = x.apply_op3(gamma.as_tensor(), beta.as_tensor(), GroupNormRelu { groups: g, eps: 1e-5 }).unwrap();
        let gn = candle_nn::GroupNorm::new(gamma.as_tensor().clone(), beta.as_tensor().clone(), c, g, 1e-5).unwrap();
        let theirs = gn.forward(&x).unwrap().relu().unwrap();
        let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "forward differs by {d}");
        let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &gamma, &beta] {
            let d = (g1.get(v).unwrap() - g2.get(v).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            let scale = g2.get(v).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
            assert!(d / scale < 1e-4, "gradient differs by {d} (of {scale})");
        }
    }

    #[test]
    fn fused_conv_norm_relu_matches_the_two_ops() {
        let dev = Device::Cpu;
        for (b, c, co, h, w, g, k) in [(2, 3, 4, 6, 5, 2, 3), (3, 2, 6, 9, 7, 3, 3), (1, 4, 8, 4, 4, 8, 1)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap()).unwrap();
            let vm = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let conv = ConvSame2d::load_no_bias(vb.pp("conv"), c, co, k).unwrap();
            let norm = GroupNormRelu2d::load(vb.pp("norm"), g, co, 1e-5).unwrap();
            // Non-trivial γ and β, so their gradients and the ReLU mask both matter.
            vm.data()
                .lock()
                .unwrap()
                .get("norm.weight")
                .unwrap()
                .set(&Tensor::randn(1f32, 0.5, co, &dev).unwrap())
                .unwrap();
            vm.data()
                .lock()
                .unwrap()
                .get("norm.bias")
                .unwrap()
                .set(&Tensor::randn(0f32, 0.5, co, &dev).unwrap())
                .unwrap();
            let r = Tensor::randn(0f32, 1.0, (b, co, h, w), &dev).unwrap();
            let fused = conv_norm_relu(&conv, &norm, &x).unwrap();
            let plain = norm.forward(&conv.forward(&x).unwrap()).unwrap();
            let d = (&fused - &plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "forward differs by {d}");
            let g1 = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let vars = vm.all_vars();
            assert_eq!(vars.len(), 3);
            for v in vars.iter().chain([&x]) {
                let (a, bb) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                let d = (a - bb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let scale = bb.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
                assert!(d / scale < 1e-4, "gradient differs by {d} (of {scale}) for {:?}", v.shape());
            }
        }
    }
}
