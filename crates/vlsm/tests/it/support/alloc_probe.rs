//! The test binary's allocator: the system's, noting the largest single allocation each thread
//! makes, so that properties can check that hostile input never makes a decoder ask for more
//! than the limits allow (a `Vec::with_capacity` from an untrusted length, say).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Probe;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Smaller allocations are not noted (keeps the common path to one comparison).
const WATCH: usize = 1 << 20;

fn note(size: usize) {
    if size > WATCH {
        // `try_with`: an allocation during thread teardown is not noted.
        let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; `note` only
// reads the size and touches a const-initialised thread-local (no allocation).
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Forgets this thread's largest allocation so far.
pub fn reset() {
    LARGEST.with(|c| c.set(0));
}

/// The largest single allocation this thread asked for since [`reset`] (0 if none over 1 MiB).
pub fn largest() -> usize {
    LARGEST.with(|c| c.get())
}
