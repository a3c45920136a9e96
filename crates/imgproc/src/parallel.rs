//! Row-band parallelism shared by the operations.
use rayon::prelude::*;

/// Calls `f(first_row, band)` on bands of whole rows of `data` (row length `row_len`), in parallel
/// when the image is big enough to repay the threads.
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
    data.par_chunks_mut(rows_per * row_len).enumerate().for_each(|(i, band)| f(i * rows_per, band));
}
