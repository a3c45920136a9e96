//! Segmentation losses on logits [B,H,W] against {0,1} targets of the same shape.

use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// MONAI DiceLoss defaults (`smooth_nr = smooth_dr = 1e-5`).
pub const DICE_SMOOTH: f64 = 1e-5;

/// Which loss to train with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossKind {
    /// MONAI DiceLoss on sigmoid probabilities: what medvlsm effectively trains with.
    Dice,
    /// Binary cross-entropy with logits, mean over pixels.
    Bce,
    /// `dice_weight * Dice + bce_weight * BCE` (medvlsm's DiceCELoss with a BCE that is not zero).
    DiceBce { dice_weight: f64, bce_weight: f64 },
}

impl Default for LossKind {
    fn default() -> Self {
        LossKind::DiceBce { dice_weight: 1.0, bce_weight: 0.2 }
    }
}

impl LossKind {
    /// The scalar loss for a batch.
    pub fn compute(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        match *self {
            LossKind::Dice => dice_loss(logits, targets),
            LossKind::Bce => bce_with_logits(logits, targets),
            LossKind::DiceBce { dice_weight, bce_weight } => {
                let d = (dice_loss(logits, targets)? * dice_weight)?;
                let b = (bce_with_logits(logits, targets)? * bce_weight)?;
                d + b
            }
        }
    }
}

fn check(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        candle_core::bail!("loss: logits {:?} and targets {:?} differ in shape", logits.dims(), targets.dims());
    }
    targets.to_dtype(logits.dtype())
}

/// Soft Dice per sample over all non-batch dims, `1 - (2Σpg + s)/(Σp + Σg + s)`, mean over the batch.
pub fn dice_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let g = check(logits, targets)?;
    let b = logits.dim(0)?;
    let p = candle_nn::ops::sigmoid(logits)?.reshape((b, ()))?;
    let g = g.reshape((b, ()))?;
    let inter = (&p * &g)?.sum(D::Minus1)?;
    let denom = (p.sum(D::Minus1)? + g.sum(D::Minus1)?)?;
    let ratio = ((inter * 2.0)? + DICE_SMOOTH)?.div(&(denom + DICE_SMOOTH)?)?;
    (1.0 - ratio)?.mean_all()
}

/// `max(x,0) - x·y + log(1 + exp(-|x|))`, mean over all elements (torch's stable form).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let y = check(logits, targets)?;
    let x = logits;
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (x.relu()? - (x * &y)?)?.add(&soft)?.mean_all()
}

/// Per-image Dice of `logits > 0` (sigmoid > 0.5) against targets, MONAI `ignore_empty=False`:
/// an empty target scores 1 when the prediction is empty too, else 0.
pub fn dice_per_image(logits: &Tensor, targets: &Tensor) -> Result<Vec<f64>> {
    dice_per_image_at(logits, targets, 0.5)
}

/// [`dice_per_image`] with the prediction `sigmoid(logits) > threshold` (CRIS: 0.35).
pub fn dice_per_image_at(logits: &Tensor, targets: &Tensor, threshold: f64) -> Result<Vec<f64>> {
    let g = check(logits, targets)?;
    let b = logits.dim(0)?;
    let t = threshold.clamp(1e-7, 1.0 - 1e-7);
    let p = logits.gt((t / (1.0 - t)).ln())?.to_dtype(DType::F32)?.reshape((b, ()))?;
    let g = g.to_dtype(DType::F32)?.gt(0.5)?.to_dtype(DType::F32)?.reshape((b, ()))?;
    let inter = (&p * &g)?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let sp = p.sum(D::Minus1)?.to_vec1::<f32>()?;
    let sg = g.sum(D::Minus1)?.to_vec1::<f32>()?;
    Ok((0..b)
        .map(|i| {
            if sg[i] == 0.0 {
                if sp[i] == 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                2.0 * inter[i] as f64 / (sp[i] as f64 + sg[i] as f64)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(v: &[f32], shape: (usize, usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn dice_and_bce_match_hand_values() {
        // One sample, logits [0, 2, -1, 3], target [0, 1, 1, 0].
        let x = t(&[0.0, 2.0, -1.0, 3.0], (1, 2, 2));
        let y = t(&[0.0, 1.0, 1.0, 0.0], (1, 2, 2));
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let p = [s(0.0), s(2.0), s(-1.0), s(3.0)];
        let inter = p[1] + p[2];
        let want = 1.0 - (2.0 * inter + 1e-5) / (p.iter().sum::<f64>() + 2.0 + 1e-5);
        let got = dice_loss(&x, &y).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let bce: f64 = [(0.0, 0.0), (2.0, 1.0), (-1.0, 1.0), (3.0, 0.0)]
            .iter()
            .map(|&(x, y): &(f64, f64)| -(y * s(x).ln() + (1.0 - y) * (1.0 - s(x)).ln()))
            .sum::<f64>()
            / 4.0;
        let got = bce_with_logits(&x, &y).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((got - bce).abs() < 1e-6, "{got} vs {bce}");
        let both = LossKind::DiceBce { dice_weight: 1.0, bce_weight: 0.5 }.compute(&x, &y).unwrap();
        assert!((both.to_scalar::<f32>().unwrap() as f64 - (want + 0.5 * bce)).abs() < 1e-6);
    }

    #[test]
    fn bce_is_finite_for_huge_logits() {
        let x = t(&[1000.0, -1000.0], (1, 1, 2));
        let y = t(&[0.0, 1.0], (1, 1, 2));
        let v = bce_with_logits(&x, &y).unwrap().to_scalar::<f32>().unwrap();
        assert!((v - 1000.0).abs() < 1e-3, "{v}");
    }

    #[test]
    fn losses_have_gradients() {
        let x = Var::from_tensor(&t(&[0.5, -0.5, 1.0, 0.0], (2, 1, 2))).unwrap();
        let y = t(&[1.0, 0.0, 0.0, 0.0], (2, 1, 2));
        let loss = LossKind::default().compute(&x, &y).unwrap();
        let g = loss.backward().unwrap();
        let g = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn dice_per_image_monai_semantics() {
        let x = t(&[1.0, -1.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0], (5, 1, 2));
        let y = t(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0], (5, 1, 2));
        // perfect; both empty; FP on empty target; half overlap; FN only.
        assert_eq!(dice_per_image(&x, &y).unwrap(), vec![1.0, 1.0, 0.0, 2.0 / 3.0, 0.0]);
    }
}
