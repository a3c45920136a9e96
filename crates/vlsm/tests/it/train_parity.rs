//! Losses, AdamW + clip_grad_norm_ and ReduceLROnPlateau against PyTorch/MONAI numbers
//! (fixture from tools/train_reference.py).

use candle_core::{Device, Tensor, Var};
use serde_json::Value;
use vlsm::train::engine::loss::{bce_with_logits, dice_loss};
use vlsm::train::{clip_grad_norm, AdamW, AdamWParams, LossKind, ReduceLrOnPlateau};

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/train_reference.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs torch {y}");
    }
}

#[test]
fn train_losses_match_monai_and_torch() {
    let f = fixture();
    let l = &f["loss"];
    let shape: Vec<usize> = l["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let x = Tensor::from_vec(floats(&l["logits"]), shape.clone(), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(floats(&l["target"]), shape, &Device::Cpu).unwrap();
    let d = dice_loss(&x, &y).unwrap().to_scalar::<f32>().unwrap();
    let b = bce_with_logits(&x, &y).unwrap().to_scalar::<f32>().unwrap();
    close(&[d], &[l["dice"].as_f64().unwrap() as f32], 1e-6, "dice");
    close(&[b], &[l["bce"].as_f64().unwrap() as f32], 1e-6, "bce");
}

#[test]
fn train_adamw_with_clipping_matches_torch() {
    let f = fixture();
    let a = &f["adamw"];
    let init = &a["init"];
    let dev = Device::Cpu;
    let x = Tensor::from_vec(floats(&init["X"]), (2, 4), &dev).unwrap();
    let y = Tensor::from_vec(floats(&init["Y"]), (2, 2, 3), &dev).unwrap();
    let w = Var::from_tensor(&Tensor::from_vec(floats(&init["W"]), (4, 6), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::from_vec(floats(&init["b"]), 6, &dev).unwrap()).unwrap();
    let params = AdamWParams {
        lr: a["lr"].as_f64().unwrap(),
        weight_decay: a["weight_decay"].as_f64().unwrap(),
        ..AdamWParams::default()
    };
    let mut opt = AdamW::new(vec![("W".into(), w.clone()), ("b".into(), b.clone())], params).unwrap();
    let loss_kind = LossKind::DiceBce { dice_weight: 1.0, bce_weight: 0.2 };
    let max_norm = a["max_norm"].as_f64().unwrap();
    for (i, s) in a["steps"].as_array().unwrap().iter().enumerate() {
        let logits = x.matmul(w.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap().reshape((2, 2, 3)).unwrap();
        let loss = loss_kind.compute(&logits, &y).unwrap();
        close(&[loss.to_scalar::<f32>().unwrap()], &[s["loss"].as_f64().unwrap() as f32], 2e-6, &format!("loss {i}"));
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&mut grads, &[w.clone(), b.clone()], max_norm).unwrap();
        close(&[norm as f32], &[s["norm"].as_f64().unwrap() as f32], 2e-6, &format!("norm {i}"));
        opt.step(&grads).unwrap();
        let wv = w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.as_tensor().to_vec1::<f32>().unwrap();
        close(&wv, &floats(&s["W"]), 2e-6, &format!("W after step {i}"));
        close(&bv, &floats(&s["b"]), 2e-6, &format!("b after step {i}"));
    }
}

#[test]
fn train_plateau_matches_torch() {
    let f = fixture();
    let p = &f["plateau"];
    let mut s = ReduceLrOnPlateau::new(0.1, 2, 1e-4, 1, 1e-3);
    let mut lr = 1.0;
    for (l, want) in p["losses"].as_array().unwrap().iter().zip(p["lrs"].as_array().unwrap()) {
        lr = s.step(l.as_f64().unwrap(), lr);
        assert_eq!(lr, want.as_f64().unwrap());
    }
}
