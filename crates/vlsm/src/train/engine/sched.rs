//! `torch.optim.lr_scheduler.ReduceLROnPlateau` (mode min, relative threshold) and Lightning's
//! `EarlyStopping` (mode max). Both are plain serde structs so checkpoints can hold them.

use serde::{Deserialize, Serialize};

/// Reduces the learning rate by `factor` after `patience` epochs without a relative improvement
/// of `threshold` in the monitored value (lower is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    pub factor: f64,
    pub patience: usize,
    pub threshold: f64,
    pub cooldown: usize,
    pub min_lr: f64,
    /// Best value seen; `None` until the first step (torch starts at +inf).
    pub best: Option<f64>,
    pub num_bad_epochs: usize,
    pub cooldown_counter: usize,
}

impl ReduceLrOnPlateau {
    pub fn new(factor: f64, patience: usize, threshold: f64, cooldown: usize, min_lr: f64) -> Self {
        ReduceLrOnPlateau {
            factor,
            patience,
            threshold,
            cooldown,
            min_lr,
            best: None,
            num_bad_epochs: 0,
            cooldown_counter: 0,
        }
    }

    /// Feeds one epoch's metric; returns the learning rate to use next.
    pub fn step(&mut self, metric: f64, lr: f64) -> f64 {
        let better = match self.best {
            None => !metric.is_nan(),
            Some(b) => metric < b * (1.0 - self.threshold),
        };
        if better {
            self.best = Some(metric);
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.patience {
            self.cooldown_counter = self.cooldown;
            self.num_bad_epochs = 0;
            let new_lr = (lr * self.factor).max(self.min_lr);
            // torch ignores changes smaller than eps = 1e-8.
            if lr - new_lr > 1e-8 {
                return new_lr;
            }
        }
        lr
    }
}

/// Stops when the monitored value (higher is better) has not beaten the best by more than
/// `min_delta` for `patience` epochs in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: usize,
    pub min_delta: f64,
    pub best: Option<f64>,
    pub wait: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize, min_delta: f64) -> Self {
        EarlyStopping { patience, min_delta, best: None, wait: 0 }
    }

    /// Feeds one epoch's metric; returns true when training should stop.
    pub fn step(&mut self, metric: f64) -> bool {
        let improved = match self.best {
            None => !metric.is_nan(),
            Some(b) => metric - self.min_delta > b,
        };
        if improved {
            self.best = Some(metric);
            self.wait = 0;
        } else {
            self.wait += 1;
        }
        self.patience > 0 && self.wait >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_matches_torch_trace() {
        // torch: ReduceLROnPlateau(opt(lr=1), factor=0.1, patience=2, threshold=1e-4, cooldown=1,
        // min_lr=1e-3) fed these losses gives these lrs after each step.
        let losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9];
        let want = [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001];
        let mut s = ReduceLrOnPlateau::new(0.1, 2, 1e-4, 1, 1e-3);
        let mut lr = 1.0;
        for (i, (&l, &w)) in losses.iter().zip(&want).enumerate() {
            lr = s.step(l, lr);
            assert!((lr - w).abs() < 1e-12, "step {i}: lr {lr}, want {w}");
        }
    }

    #[test]
    fn plateau_relative_threshold() {
        let mut s = ReduceLrOnPlateau::new(0.5, 0, 0.1, 0, 0.0);
        assert_eq!(s.step(1.0, 1.0), 1.0);
        // 0.95 is not below 1.0 * 0.9: a bad epoch, patience 0 -> reduce.
        assert_eq!(s.step(0.95, 1.0), 0.5);
        assert_eq!(s.step(0.85, 0.5), 0.5);
    }

    #[test]
    fn early_stopping_min_delta_and_patience() {
        let mut e = EarlyStopping::new(2, 0.01);
        assert!(!e.step(0.5));
        assert!(!e.step(0.505)); // not > 0.5 + 0.01
        assert!(e.step(0.509));
        let mut e = EarlyStopping::new(2, 0.0);
        assert!(!e.step(0.5));
        assert!(!e.step(0.6));
        assert!(!e.step(0.6));
        assert!(!e.step(0.7));
    }
}
