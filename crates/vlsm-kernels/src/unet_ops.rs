//! The U-Net's glue as CPU ops with hand-written backward passes: 2x2 max-pool, nearest 2x
//! upsample + skip concatenation, and FiLM's per-channel scale and shift.
//!
//! Composed from candle ops these dominate the non-conv part of a training step: candle's
//! max-pool backward is six full-size ops (and scales the gradient of a unique maximum by 1/4),
//! the upsample backward is a grouped conv run one channel at a time, and every extra graph
//! node costs a zero-filled gradient buffer plus an add. Here each is one pass per direction,
//! parallel over images and channels. All inputs are made contiguous f32 first.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::conv::{contiguous_f32, with_f32};

/// Whether the fused ops apply: they run on CPU f32 data only.
fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// 2x2 max-pool with stride 2 on [B, C, H, W] with even H and W.
struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (b, c, h, w) = l.shape().dims4()?;
        if h % 2 != 0 || w % 2 != 0 {
            candle_core::bail!("max_pool2: odd size {h}x{w}");
        }
        let (ho, wo) = (h / 2, w / 2);
        let mut out = vec![0f32; b * c * ho * wo];
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))));
        }
        out.par_chunks_mut(ho * wo).zip(x.par_chunks(h * w)).for_each(|(o, p)| {
            for y in 0..ho {
                let (r0, r1) = (&p[2 * y * w..][..w], &p[(2 * y + 1) * w..][..w]);
                for (xo, v) in o[y * wo..(y + 1) * wo].iter_mut().enumerate() {
                    let i = 2 * xo;
                    *v = r0[i].max(r0[i + 1]).max(r1[i].max(r1[i + 1]));
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    /// The gradient goes to the window's maximum; ties share it equally (a subgradient, as
    /// PyTorch's, which picks the first maximum instead).
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = arg.dims4()?;
        let (ho, wo) = (h / 2, w / 2);
        let mut gx = vec![0f32; b * c * h * w];
        if !gx.is_empty() {
            with_f32(arg, |x| {
                with_f32(res, |m| {
                    with_f32(grad, |g| {
                        gx.par_chunks_mut(h * w).enumerate().for_each(|(pi, gp)| {
                            let xp = &x[pi * h * w..][..h * w];
                            let (mp, gop) = (&m[pi * ho * wo..][..ho * wo], &g[pi * ho * wo..][..ho * wo]);
                            for y in 0..ho {
                                for xo in 0..wo {
                                    let (mx, gv) = (mp[y * wo + xo], gop[y * wo + xo]);
                                    let r = 2 * y * w + 2 * xo;
                                    let idx = [r, r + 1, r + w, r + w + 1];
                                    let n = idx.iter().filter(|&&i| xp[i] == mx).count().max(1);
                                    let share = gv / n as f32;
                                    for i in idx {
                                        if xp[i] == mx {
                                            gp[i] = share;
                                        }
                                    }
                                }
                            }
                        });
                        Ok(())
                    })
                })
            })?;
        }
        Ok(Some(Tensor::from_vec(gx, (b, c, h, w), arg.device())?))
    }
}

/// `max_pool2d(2)`: the fused op on even-sized CPU f32 input, candle's otherwise.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if cpu_f32(x) && h % 2 == 0 && w % 2 == 0 {
        x.contiguous()?.apply_op1(MaxPool2)
    } else {
        x.max_pool2d(2)
    }
}

/// `cat([upsample_nearest(low, 2x), skip], 1)`: low [B, C1, h, w], skip [B, C2, 2h, 2w].
struct UpCat;

fn upcat_dims(l1: &Shape, l2: &Shape) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let (b, c1, h, w) = l1.dims4()?;
    let (b2, c2, hh, ww) = l2.dims4()?;
    if b2 != b || hh != 2 * h || ww != 2 * w {
        candle_core::bail!("upcat: {l1:?} does not upsample 2x to {l2:?}");
    }
    Ok((b, c1, c2, h, w, hh * ww))
}

impl CustomOp2 for UpCat {
    fn name(&self) -> &'static str {
        "upsample2-cat"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c1, c2, h, w, hw2) = upcat_dims(l1.shape(), l2.shape())?;
        let (lo, sk) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let c = c1 + c2;
        let mut out = vec![0f32; b * c * hw2];
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), Shape::from((b, c, 2 * h, 2 * w))));
        }
        // One job per output plane: channels below c1 are upsampled, the rest copied.
        out.par_chunks_mut(hw2).enumerate().for_each(|(pi, o)| {
            let (i, ch) = (pi / c, pi % c);
            if ch < c1 {
                let p = &lo[(i * c1 + ch) * h * w..][..h * w];
                for y in 0..h {
                    let src = &p[y * w..(y + 1) * w];
                    let (r0, r1) = o[2 * y * 2 * w..(2 * y + 2) * 2 * w].split_at_mut(2 * w);
                    for (d, &v) in r0.chunks_exact_mut(2).zip(src) {
                        d[0] = v;
                        d[1] = v;
                    }
                    r1.copy_from_slice(r0);
                }
            } else {
                o.copy_from_slice(&sk[(i * c2 + ch - c1) * hw2..][..hw2]);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, 2 * h, 2 * w))))
    }

    fn bwd(
        &self,
        low: &Tensor,
        skip: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c1, c2, h, w, hw2) = upcat_dims(low.shape(), skip.shape())?;
        let c = c1 + c2;
        let mut gl = vec![0f32; b * c1 * h * w];
        let mut gs = vec![0f32; b * c2 * hw2];
        with_f32(grad, |g| {
            // The upsampled half: each low pixel collects its 2x2 block.
            gl.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(pi, o)| {
                let (i, ch) = (pi / c1.max(1), pi % c1.max(1));
                let p = &g[(i * c + ch) * hw2..][..hw2];
                for y in 0..h {
                    let (r0, r1) = (&p[2 * y * 2 * w..][..2 * w], &p[(2 * y + 1) * 2 * w..][..2 * w]);
                    for (xo, v) in o[y * w..(y + 1) * w].iter_mut().enumerate() {
                        *v = (r0[2 * xo] + r0[2 * xo + 1]) + (r1[2 * xo] + r1[2 * xo + 1]);
                    }
                }
            });
            gs.par_chunks_mut(hw2.max(1)).enumerate().for_each(|(pi, o)| {
                let (i, ch) = (pi / c2.max(1), pi % c2.max(1));
                o.copy_from_slice(&g[(i * c + c1 + ch) * hw2..][..hw2]);
            });
            Ok(())
        })?;
        let dev = low.device();
        Ok((Some(Tensor::from_vec(gl, (b, c1, h, w), dev)?), Some(Tensor::from_vec(gs, (b, c2, 2 * h, 2 * w), dev)?)))
    }
}

/// `cat([low.upsample_nearest2d(H, W), skip], 1)` for skip [B, C2, H, W]: one fused op when
/// (H, W) is exactly twice low's size on the CPU in f32, candle's ops otherwise.
pub fn upsample_cat(low: &Tensor, skip: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = low.dims4()?;
    let (_, _, sh, sw) = skip.dims4()?;
    if sh == 2 * h && sw == 2 * w && cpu_f32(low) && cpu_f32(skip) {
        return low.contiguous()?.apply_op2(&skip.contiguous()?, UpCat);
    }
    let up = low.upsample_nearest2d(sh, sw)?;
    Tensor::cat(&[&up, skip], 1)
}

/// `x · scale + shift` with x [B, C, H, W] and per-image, per-channel scale and shift [B, C].
struct Film;

fn film_dims(x: &Shape, s: &Shape, t: &Shape) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = x.dims4()?;
    if s.dims() != [b, c] || t.dims() != [b, c] {
        candle_core::bail!("film: scale {s:?} / shift {t:?} do not fit {x:?}");
    }
    Ok((b, c, h * w))
}

impl CustomOp3 for Film {
    fn name(&self) -> &'static str {
        "film"
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
        let (_, _, hw) = film_dims(l1.shape(), l2.shape(), l3.shape())?;
        let x = contiguous_f32(s1, l1)?;
        let (sc, sh) = (contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let mut y = vec![0f32; x.len()];
        if !y.is_empty() {
            y.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(p, (o, xi))| {
                let (a, t) = (sc[p], sh[p]);
                for (o, &v) in o.iter_mut().zip(xi) {
                    *o = v * a + t;
                }
            });
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, hw) = film_dims(x.shape(), scale.shape(), shift.shape())?;
        let sc = scale.flatten_all()?.to_vec1::<f32>()?;
        let mut gx = vec![0f32; b * c * hw];
        let mut sums = vec![(0f32, 0f32); b * c];
        if !gx.is_empty() {
            with_f32(x, |xv| {
                with_f32(grad, |g| {
                    gx.par_chunks_mut(hw).zip(sums.par_iter_mut()).enumerate().for_each(|(p, (o, s))| {
                        let (xi, gi) = (&xv[p * hw..][..hw], &g[p * hw..][..hw]);
                        let a = sc[p];
                        let (mut ds, mut dt) = (0f64, 0f64);
                        for ((o, &gv), &xv) in o.iter_mut().zip(gi).zip(xi) {
                            *o = gv * a;
                            ds += (gv * xv) as f64;
                            dt += gv as f64;
                        }
                        *s = (ds as f32, dt as f32);
                    });
                    Ok(())
                })
            })?;
        }
        let dev = x.device();
        let (ds, dt): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        Ok((
            Some(Tensor::from_vec(gx, x.shape(), dev)?),
            Some(Tensor::from_vec(ds, (b, c), dev)?),
            Some(Tensor::from_vec(dt, (b, c), dev)?),
        ))
    }
}

/// `x · scale[:, :, None, None] + shift[:, :, None, None]`, fused on the CPU in f32.
pub fn film(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    if cpu_f32(x) && cpu_f32(scale) && cpu_f32(shift) {
        return x.contiguous()?.apply_op3(&scale.contiguous()?, &shift.contiguous()?, Film);
    }
    x.broadcast_mul(&scale.unsqueeze(2)?.unsqueeze(3)?)?.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn max_pool_matches_reference() {
        let dev = Device::Cpu;
        // Quantised values so that windows hold ties.
        let x0 = (Tensor::randn(0f32, 2.0, (2, 3, 6, 4), &dev).unwrap().round().unwrap()).relu().unwrap();
        let x = Var::from_tensor(&x0).unwrap();
        let r = Tensor::randn(0f32, 1.0, (2, 3, 3, 2), &dev).unwrap();
        let ours = max_pool2(&x).unwrap();
        assert_eq!(max_diff(&ours, &x.max_pool2d(2).unwrap()), 0.0);
        let g = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(&x).unwrap();
        // Reference: each window's gradient split equally among its maxima.
        let up = |t: &Tensor| t.upsample_nearest2d(6, 4).unwrap();
        let pooled = x0.max_pool2d(2).unwrap();
        let mask = x0.eq(&up(&pooled)).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let count = (mask.avg_pool2d(2).unwrap() * 4.0).unwrap();
        let want = (up(&(r / count).unwrap()) * mask).unwrap();
        assert!(max_diff(gx, &want) < 1e-6);
        // Every window passes on exactly its gradient.
        let back = (gx.avg_pool2d(2).unwrap() * 4.0).unwrap();
        let r = Tensor::randn(0f32, 1.0, (2, 3, 3, 2), &dev).unwrap();
        let g = (max_pool2(&x).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let back2 = (g.get(&x).unwrap().avg_pool2d(2).unwrap() * 4.0).unwrap();
        assert!(max_diff(&back2, &r) < 1e-5, "{back:?}");
    }

    #[test]
    fn upsample_cat_matches_candle() {
        let dev = Device::Cpu;
        let low = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev).unwrap()).unwrap();
        let skip = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 2, 8, 10), &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (2, 5, 8, 10), &dev).unwrap();
        let ours = upsample_cat(&low, &skip).unwrap();
        let theirs = Tensor::cat(&[&low.upsample_nearest2d(8, 10).unwrap(), skip.as_tensor()], 1).unwrap();
        assert_eq!(max_diff(&ours, &theirs), 0.0);
        let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&low, &skip] {
            let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(d < 1e-5, "gradient differs by {d}");
        }
    }

    #[test]
    fn film_matches_candle() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &dev).unwrap()).unwrap();
        let s = Var::from_tensor(&Tensor::randn(1f32, 0.5, (3, 4), &dev).unwrap()).unwrap();
        let t = Var::from_tensor(&Tensor::randn(0f32, 0.5, (3, 4), &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &dev).unwrap();
        let ours = film(&x, &s, &t).unwrap();
        let theirs = x
            .broadcast_mul(&s.unsqueeze(2).unwrap().unsqueeze(3).unwrap())
            .unwrap()
            .broadcast_add(&t.unsqueeze(2).unwrap().unsqueeze(3).unwrap())
            .unwrap();
        assert_eq!(max_diff(&ours, &theirs), 0.0);
        let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &s, &t] {
            let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
            let d = max_diff(a, b) / scale;
            assert!(d < 1e-4, "gradient differs by {d}");
        }
    }

    #[test]
    fn candle_max_pool_gradient_is_scaled() {
        // Documents why max-pool has its own backward: candle 0.11 hands a unique maximum a
        // quarter of the gradient.
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &dev).unwrap()).unwrap();
        let g = x.max_pool2d(2).unwrap().sum_all().unwrap().backward().unwrap();
        let v: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let ours = max_pool2(&x).unwrap().sum_all().unwrap().backward().unwrap();
        let w: Vec<f32> = ours.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(w, vec![0., 0., 0., 1.]);
        eprintln!("candle max_pool2d gradient of a unique max: {v:?}");
    }
}
