//! A bounded queue in front of the model: `workers` run at once, at most `max_waiting` wait;
//! and a second bound of `workers` on the post-processing after the model (upsampling, PNG
//! encoding), whose memory grows with the image size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Gate {
    sem: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    workers: usize,
    post: Arc<Semaphore>,
    post_now: Arc<AtomicUsize>,
    post_peak: Arc<AtomicUsize>,
}

/// Held while the model runs; moved into the blocking task so that a request that timed out
/// still occupies the model until its computation really ends.
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl Gate {
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        Gate {
            sem: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            workers,
            post: Arc::new(Semaphore::new(workers)),
            post_now: Arc::new(AtomicUsize::new(0)),
            post_peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A post-processing slot, waited for on a blocking thread (call it from `spawn_blocking`,
    /// still holding the model's [`Ticket`], so that requests never pile up between the two).
    pub fn post_processing_blocking(&self) -> Option<PostTicket> {
        let permit = tokio::runtime::Handle::current().block_on(self.post.clone().acquire_owned()).ok()?;
        let n = self.post_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.post_peak.fetch_max(n, Ordering::SeqCst);
        Some(PostTicket { _permit: permit, now: self.post_now.clone() })
    }

    /// Requests in post-processing now.
    pub fn post_processing(&self) -> usize {
        self.post_now.load(Ordering::SeqCst)
    }

    /// The most requests in post-processing at once so far.
    pub fn post_processing_peak(&self) -> usize {
        self.post_peak.load(Ordering::SeqCst)
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

/// Held while a request post-processes the model's output.
pub struct PostTicket {
    _permit: OwnedSemaphorePermit,
    now: Arc<AtomicUsize>,
}

impl Drop for PostTicket {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
