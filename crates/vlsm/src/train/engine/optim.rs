//! AdamW with the update of `torch.optim.AdamW` (single-tensor path) and state that can be saved,
//! plus `clip_grad_norm_`. candle's own AdamW keeps its moments private, so resuming needs this.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

/// AdamW hyper-parameters; defaults are torch's except `weight_decay` (medvlsm's 1e-3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-3 }
    }
}

/// Named parameters with their first/second moments and per-parameter step counts
/// (torch skips parameters without a gradient, so counts can differ).
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: Vec<u64>,
    pub params: AdamWParams,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for (n, v) in &vars {
            if !seen.insert(n.as_str()) {
                bail!("optimizer: parameter name '{n}' appears twice");
            }
            if v.dtype() != DType::F32 {
                bail!("optimizer: parameter '{n}' is {:?}; training needs f32", v.dtype());
            }
        }
        let m = vars.iter().map(|(_, v)| v.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v2 = m.clone();
        let steps = vec![0; vars.len()];
        Ok(AdamW { vars, m, v: v2, steps, params })
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    pub fn lr(&self) -> f64 {
        self.params.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One update from `grads`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let p = self.params;
        for i in 0..self.vars.len() {
            let var = &self.vars[i].1;
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            // Same operation order as torch's _single_tensor_adamw.
            let theta = (var.as_tensor() * (1.0 - p.lr * p.weight_decay))?;
            let m = (&self.m[i] + ((g - &self.m[i])? * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + ((g * (1.0 - p.beta2))? * g)?)?;
            let bc1 = 1.0 - p.beta1.powi(t);
            let bc2_sqrt = (1.0 - p.beta2.powi(t)).sqrt();
            let scalar = |x: f64| Tensor::new(x as f32, var.device());
            let denom = (v.sqrt()?.broadcast_div(&scalar(bc2_sqrt)?)? + p.eps)?;
            let upd = (m.div(&denom)? * (p.lr / bc1))?;
            var.set(&(theta - upd)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as `m.<name>`, `v.<name>` and steps as `step.<name>` (i64 scalars).
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (n, var)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{n}"), self.m[i].clone());
            out.insert(format!("v.{n}"), self.v[i].clone());
            out.insert(format!("step.{n}"), Tensor::new(self.steps[i] as i64, var.device())?);
        }
        Ok(out)
    }

    /// Restores the state written by `state_tensors`; every parameter must be present with its shape.
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>, what: &str) -> Result<()> {
        for (i, (n, var)) in self.vars.iter().enumerate() {
            let get = |k: String| t.get(&k).ok_or_else(|| anyhow!("{what}: missing '{k}'"));
            let m = get(format!("m.{n}"))?;
            let v = get(format!("v.{n}"))?;
            for (k, x) in [("m", m), ("v", v)] {
                if x.dims() != var.dims() {
                    bail!("{what}: '{k}.{n}' has shape {:?}, parameter has {:?}", x.dims(), var.dims());
                }
            }
            let s = get(format!("step.{n}"))?.to_dtype(DType::I64)?.to_scalar::<i64>()?;
            self.m[i] = m.to_device(var.device())?.to_dtype(DType::F32)?;
            self.v[i] = v.to_device(var.device())?.to_dtype(DType::F32)?;
            self.steps[i] = s.max(0) as u64;
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state_tensors()?, path)
            .map_err(|e| anyhow!("{}: cannot write optimizer state: {e}", path.display()))
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self.vars.first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let t = candle_core::safetensors::load(path, &dev)
            .map_err(|e| anyhow!("{}: cannot read optimizer state: {e}", path.display()))?;
        self.load_state(&t, &path.display().to_string())
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` (L2): scales every gradient by
/// `min(1, max_norm / (total + 1e-6))`, where `total` is the L2 norm of all gradients together.
/// Returns `total` (before clipping).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut norms = Vec::new();
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            norms.push(g.sqr()?.sum_all()?.to_dtype(DType::F32)?.sqrt()?.to_scalar::<f32>()?);
        }
    }
    // The norm of the per-parameter norms, in f32 like torch.
    let total = norms.iter().map(|n| n * n).sum::<f32>().sqrt();
    let coef = (max_norm as f32 / (total + 1e-6)) as f64;
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let g = (g * coef)?;
                grads.insert(v.as_tensor(), g);
            }
        }
    }
    Ok(total as f64)
}
