//! Sharing one output buffer between rayon tasks.

/// A raw pointer that rayon tasks may share, for kernels whose tasks write disjoint parts of
/// one buffer that interleave (column blocks of the same rows), so that no task can hold a
/// `&mut` slice of its own part. Whoever writes through it must say why the parts are disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(*mut T);

// SAFETY: a SendPtr only carries the address; every write through it is an `unsafe` operation
// whose caller guarantees that no two threads touch the same element (see `SendPtr`'s uses).
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as for `Send`: shared references hand out nothing but the address.
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    pub(crate) fn new(p: *mut T) -> Self {
        Self(p)
    }

    /// The pointer. A method rather than the field, so closures capture the whole `SendPtr`
    /// (edition 2021 would capture the bare, non-`Send` field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
