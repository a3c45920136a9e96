//! Row-band parallelism shared by the operations.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Calls `f(first_row, band)` on bands of whole rows of `data` (row length `row_len`), in parallel
/// when the image is big enough to repay the threads.
///
/// The calling thread works on the bands itself, taking the next free one until none is left,
/// beside `threads - 1` helpers in the rayon pool that do the same (as OpenCV's `parallel_for_`).
/// A caller outside the pool thus starts at once instead of waiting for pool threads to wake up,
/// which is most of the time of a sub-millisecond operation on a loaded machine, and bands a late
/// helper never reaches are done by whoever is free.
pub(crate) fn par_rows<T: Send>(data: &mut [T], row_len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if row_len == 0 || data.is_empty() {
        return;
    }
    let height = data.len() / row_len;
    let threads = rayon::current_num_threads().max(1);
    if data.len() < 1 << 15 || threads == 1 || height < 2 {
        f(0, data);
        return;
    }
    let bands = (threads * 4).min(height);
    let rows_per = height.div_ceil(bands);
    let slots: Vec<Mutex<Option<&mut [T]>>> =
        data.chunks_mut(rows_per * row_len).map(|b| Mutex::new(Some(b))).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = slots.get(i) else { break };
        // Each index is taken once, so the slot still holds its band (a poisoned lock only
        // means another band's `f` panicked; the scope re-raises that panic).
        let band = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(band) = band {
            f(i * rows_per, band);
        }
    };
    rayon::in_place_scope(|s| {
        for _ in 1..threads.min(slots.len()) {
            s.spawn(|_| work());
        }
        work();
    });
}
