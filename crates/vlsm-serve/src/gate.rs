//! A bounded queue in front of the model: `workers` run at once, at most `max_waiting` wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Gate {
    sem: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    workers: usize,
}

/// Held while the model runs; moved into the blocking task so that a request that timed out
/// still occupies the model until its computation really ends.
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl Gate {
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        Gate { sem: Arc::new(Semaphore::new(workers)), waiting: AtomicUsize::new(0), max_waiting, workers }
    }

    /// A ticket, or `None` when `max_waiting` requests already wait.
    pub async fn enter(&self) -> Option<Ticket> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Some(Ticket { _permit: p });
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        // Decrement even if this future is dropped (request timed out or client left).
        let _guard = Waiting(&self.waiting);
        let p = self.sem.clone().acquire_owned().await.ok()?;
        Some(Ticket { _permit: p })
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn running(&self) -> usize {
        self.workers - self.sem.available_permits()
    }

    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    pub fn workers(&self) -> usize {
        self.workers
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
