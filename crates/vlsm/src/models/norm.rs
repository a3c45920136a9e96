//! GroupNorm followed by ReLU as one CPU op with a hand-written backward.
//!
//! candle builds GroupNorm from ~10 elementwise/reduction ops, and their backward passes
//! (broadcast sums over strided dims, fresh buffers each time) cost more than the convolutions
//! around them in a small U-Net. In NCHW layout each (image, group) is one contiguous block, so
//! forward and backward are a few passes over that block.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::conv::{contiguous_f32, with_f32};

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

/// Σd and Σd·x̂ over one channel, with d = dy·[y > 0] and x̂ = (x − mean)·rstd.
fn relu_grad_sums(x: &[f32], y: &[f32], g: &[f32], mean: f32, rstd: f32) -> (f64, f64) {
    let (mut sd, mut sdx) = ([0f64; 8], [0f64; 8]);
    let term = |xv: f32, yv: f32, gv: f32| {
        let d = if yv > 0.0 { gv } else { 0.0 };
        (d as f64, (d * ((xv - mean) * rstd)) as f64)
    };
    let n8 = x.len() / 8 * 8;
    for ((xc, yc), gc) in x[..n8].chunks_exact(8).zip(y[..n8].chunks_exact(8)).zip(g[..n8].chunks_exact(8)) {
        for l in 0..8 {
            let (a, b) = term(xc[l], yc[l], gc[l]);
            sd[l] += a;
            sdx[l] += b;
        }
    }
    let (mut td, mut tdx) = (0f64, 0f64);
    for j in n8..x.len() {
        let (a, b) = term(x[j], y[j], g[j]);
        td += a;
        tdx += b;
    }
    (sd.iter().sum::<f64>() + td, sdx.iter().sum::<f64>() + tdx)
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
        let c = dims[1];
        let hw: usize = dims[2..].iter().product();
        let cg = c / self.groups;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(cg * hw).zip(x.par_chunks(cg * hw)).enumerate().for_each(|(i, (yo, xi))| {
            let g = i % self.groups;
            let (mean, rstd) = stats(xi, self.eps);
            for k in 0..cg {
                let ch = g * cg + k;
                let (a, b) = (gamma[ch] * rstd, beta[ch] - gamma[ch] * rstd * mean);
                for (o, &v) in yo[k * hw..(k + 1) * hw].iter_mut().zip(&xi[k * hw..(k + 1) * hw]) {
                    *o = (a * v + b).max(0.0);
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let cg = c / self.groups;
        let gam = gamma.to_vec1::<f32>()?;
        let _ = beta;
        let block = cg * hw;
        // Per (image, group) block: dx written in place, and per-channel sums for dgamma/dbeta
        // (reduced afterwards; the inputs are read where they lie, no copies).
        let mut dx = vec![0f32; b * c * hw];
        let mut sums = vec![(0f32, 0f32); b * c];
        if !dx.is_empty() {
            with_f32(x, |xv| {
                with_f32(res, |yv| {
                    with_f32(g, |gv| {
                        dx.par_chunks_mut(block).zip(sums.par_chunks_mut(cg)).enumerate().for_each(|(i, (dxi, sm))| {
                            let grp = i % self.groups;
                            let xi = &xv[i * block..(i + 1) * block];
                            let yi = &yv[i * block..(i + 1) * block];
                            let gi = &gv[i * block..(i + 1) * block];
                            let (mean, rstd) = stats(xi, self.eps);
                            // dxhat = dy·[y > 0]·γ ; dx = rstd·(dxhat − mean(dxhat) − x̂·mean(dxhat·x̂)).
                            // Per channel Σd and Σd·x̂ give dbeta, dgamma and (times γ) both means.
                            let (mut s1, mut s2) = (0f64, 0f64);
                            for (k, sk) in sm.iter_mut().enumerate() {
                                let gk = gam[grp * cg + k] as f64;
                                let (xk, yk, gk_) = (&xi[k * hw..][..hw], &yi[k * hw..][..hw], &gi[k * hw..][..hw]);
                                let (db, dg) = relu_grad_sums(xk, yk, gk_, mean, rstd);
                                *sk = (dg as f32, db as f32);
                                s1 += gk * db;
                                s2 += gk * dg;
                            }
                            let n = block as f64;
                            let (m1, m2) = ((s1 / n) as f32, (s2 / n) as f32);
                            for k in 0..cg {
                                let gk = gam[grp * cg + k];
                                let r = k * hw..(k + 1) * hw;
                                for (((o, &xv), &yv), &gv) in dxi[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&yi[r.clone()]).zip(&gi[r]) {
                                    let d = if yv > 0.0 { gv } else { 0.0 };
                                    let xh = (xv - mean) * rstd;
                                    *o = rstd * (d * gk - m1 - xh * m2);
                                }
                            }
                        });
                        Ok(())
                    })
                })
            })?;
        }
        let mut dgamma = vec![0f32; c];
        let mut dbeta = vec![0f32; c];
        for (i, &(dg, db)) in sums.iter().enumerate() {
            dgamma[i % c] += dg;
            dbeta[i % c] += db;
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, dims.as_slice(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
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
        if groups == 0 || channels % groups != 0 {
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
        let ours = x
            .apply_op3(gamma.as_tensor(), beta.as_tensor(), GroupNormRelu { groups: g, eps: 1e-5 })
            .unwrap();
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
}
