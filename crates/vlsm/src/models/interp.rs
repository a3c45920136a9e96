//! Interpolation as matrices: PyTorch's `F.interpolate` (bicubic and bilinear,
//! `align_corners=False`) is separable, so `out = A_h · x · A_wᵀ`. That is exact up to float
//! summation order, works for any size and is differentiable through plain matmuls.

use candle_core::{Result, Tensor};

/// PyTorch's cubic convolution kernel with A = -0.75.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let c1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [c2(t + 1.0), c1(t), c1(1.0 - t), c2(2.0 - t)]
}

/// `[out, in]` matrix of `upsample_bicubic2d` along one axis (size given, align_corners=False).
pub fn bicubic_matrix(in_size: usize, out_size: usize) -> Vec<f32> {
    let scale = in_size as f64 / out_size as f64;
    let mut m = vec![0f64; out_size * in_size];
    for o in 0..out_size {
        // No clamping of the source coordinate for cubic, only of the taps.
        let real = scale * (o as f64 + 0.5) - 0.5;
        let i0 = real.floor();
        let w = cubic_weights(real - i0);
        for (k, wk) in w.iter().enumerate() {
            let idx = (i0 as i64 - 1 + k as i64).clamp(0, in_size as i64 - 1) as usize;
            m[o * in_size + idx] += wk;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// `[out, in]` matrix of `upsample_bilinear2d` along one axis (align_corners=False).
pub fn bilinear_matrix(in_size: usize, out_size: usize) -> Vec<f32> {
    let scale = in_size as f64 / out_size as f64;
    let mut m = vec![0f64; out_size * in_size];
    for o in 0..out_size {
        let real = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
        let i0 = (real.floor() as usize).min(in_size - 1);
        let i1 = (i0 + 1).min(in_size - 1);
        let l1 = real - i0 as f64;
        m[o * in_size + i0] += 1.0 - l1;
        m[o * in_size + i1] += l1;
    }
    m.into_iter().map(|v| v as f32).collect()
}

fn apply_separable(x: &Tensor, ah: Vec<f32>, aw: Vec<f32>, oh: usize, ow: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let dev = x.device();
    let ah = Tensor::from_vec(ah, (oh, h), dev)?.to_dtype(x.dtype())?;
    let aw = Tensor::from_vec(aw, (ow, w), dev)?.to_dtype(x.dtype())?;
    // [b*c*h, w] · A_wᵀ → [b*c, h, ow]; then A_h · (.) per plane.
    let y = x.reshape((b * c * h, w))?.matmul(&aw.t()?)?;
    let y = y.reshape((b * c, h, ow))?;
    let y = ah.broadcast_left(b * c)?.matmul(&y)?;
    y.reshape((b, c, oh, ow))
}

/// `F.interpolate(x, (oh, ow), mode="bicubic", align_corners=False)` for x: [B, C, H, W].
pub fn bicubic(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    apply_separable(x, bicubic_matrix(h, oh), bicubic_matrix(w, ow), oh, ow)
}

/// `F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False)` for x: [B, C, H, W].
pub fn bilinear(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    apply_separable(x, bilinear_matrix(h, oh), bilinear_matrix(w, ow), oh, ow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one() {
        for (i, o) in [(14, 22), (22, 14), (4, 6), (1, 5), (7, 7)] {
            for m in [bicubic_matrix(i, o), bilinear_matrix(i, o)] {
                for r in 0..o {
                    let s: f32 = m[r * i..(r + 1) * i].iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{i}->{o} row {r} sums to {s}");
                }
            }
        }
    }

    #[test]
    fn identity_when_same_size() {
        let m = bicubic_matrix(5, 5);
        for r in 0..5 {
            for c in 0..5 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((m[r * 5 + c] - want).abs() < 1e-6);
            }
        }
    }

    fn apply(m: &[f32], x: &[f32], o: usize) -> Vec<f32> {
        let i = x.len();
        (0..o).map(|r| (0..i).map(|c| m[r * i + c] * x[c]).sum()).collect()
    }

    #[test]
    fn matches_torch_interpolate() {
        // Values printed by torch.nn.functional.interpolate(..., align_corners=False) in float64.
        let up = apply(&bicubic_matrix(4, 8), &[0.0, 1.0, 2.0, 3.0], 8);
        let want = [-0.10546875, 0.19140625, 0.66796875, 1.296875, 1.703125, 2.33203125, 2.80859375, 3.10546875];
        let x5 = [0.0, 3.0, 1.0, 7.0, 2.0];
        let down_lin = apply(&bilinear_matrix(5, 3), &x5, 3);
        let down_cub = apply(&bicubic_matrix(5, 3), &x5, 3);
        for (got, want) in [
            (up, want.to_vec()),
            (down_lin, vec![1.0, 1.0, 3.666666666666665]),
            (down_cub, vec![1.0555555555555556, 1.0, 3.9074074074074057]),
        ] {
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        }
    }
}
