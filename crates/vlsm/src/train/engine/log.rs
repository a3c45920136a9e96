//! Per-epoch records, the metrics CSV and the progress bar.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// What one epoch produced. `epoch` counts from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_dice: f64,
    pub lr: f64,
    pub seconds: f64,
}

pub const CSV_HEADER: &str = "epoch,train_loss,val_loss,val_dice,lr,seconds";

/// The whole CSV, rewritten atomically each epoch from the history kept in the checkpoint, so a
/// resumed run never carries rows from epochs it lost.
pub fn csv_text(history: &[EpochRecord]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in history {
        s.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:e},{:.3}\n",
            r.epoch, r.train_loss, r.val_loss, r.val_dice, r.lr, r.seconds
        ));
    }
    s
}

pub fn write_csv(path: &Path, history: &[EpochRecord]) -> Result<()> {
    crate::io::write_atomic(path, csv_text(history).as_bytes())
}

/// Where there is no terminal (a log file, `nohup`), a plain progress line at most every
/// `every`, so a long epoch is not silent for its whole length.
pub struct PlainProgress {
    every: Duration,
    last: Instant,
    enabled: bool,
}

impl PlainProgress {
    pub fn new(show: bool, every: Duration) -> Self {
        Self::at(show && !std::io::stderr().is_terminal(), every, Instant::now())
    }

    fn at(enabled: bool, every: Duration, now: Instant) -> Self {
        Self { every, last: now, enabled }
    }

    /// Whether a line is due at `now` (and, if so, restarts the interval).
    fn due(&mut self, now: Instant) -> bool {
        if !self.enabled || now.duration_since(self.last) < self.every {
            return false;
        }
        self.last = now;
        true
    }

    /// After batch `done` of `total`, with the running mean loss and the epoch's start time.
    pub fn tick(&mut self, prefix: &str, done: usize, total: usize, loss: f64, started: Instant) {
        let now = Instant::now();
        if self.due(now) {
            let secs = now.duration_since(started).as_secs_f64();
            let eta = secs / done.max(1) as f64 * total.saturating_sub(done) as f64;
            eprintln!("{prefix}: batch {done}/{total}, loss {loss:.4}, {secs:.0}s elapsed, ~{eta:.0}s left");
        }
    }
}

/// A bar over one epoch's batches with loss, it/s and ETA; hidden when stderr is not a terminal.
pub fn progress_bar(len: usize, prefix: String, show: bool) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(
        "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(prefix);
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_is_rate_limited_and_can_be_off() {
        let t0 = Instant::now();
        let every = Duration::from_secs(60);
        let mut p = PlainProgress::at(true, every, t0);
        assert!(!p.due(t0 + Duration::from_secs(59)));
        assert!(p.due(t0 + Duration::from_secs(60)));
        assert!(!p.due(t0 + Duration::from_secs(100)));
        assert!(p.due(t0 + Duration::from_secs(121)));
        let mut off = PlainProgress::at(false, every, t0);
        assert!(!off.due(t0 + Duration::from_secs(1000)));
    }

    #[test]
    fn csv_has_header_and_rows() {
        let r = EpochRecord { epoch: 1, train_loss: 0.5, val_loss: 0.25, val_dice: 0.75, lr: 2e-4, seconds: 1.5 };
        assert_eq!(
            csv_text(&[r]),
            "epoch,train_loss,val_loss,val_dice,lr,seconds\n1,0.500000,0.250000,0.750000,2e-4,1.500\n"
        );
    }
}
