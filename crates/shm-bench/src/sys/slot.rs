//! In-place access to a ring slot, for the zero-copy raw ring.
//!
//! STYLE says never to form `&[u8]` over bytes another process may write.
//! These functions do form one, for the duration of a closure, and their
//! contract is the ring's ownership protocol: between the index load that
//! hands a slot to one side and the index store that hands it back, only
//! that side touches the slot. Both peers are this same binary following
//! that protocol; a hostile peer is outside what a benchmark defends
//! against (the library's queue does defend, see shm-queue).

use shm_core::Segment;

/// Calls `f` with a mutable slice over `len` bytes of `seg` at `offset`.
///
/// Returns `None` when the range is outside the segment.
///
/// # Safety
///
/// - While `f` runs, no other thread or process reads or writes
///   `offset..offset+len` of the segment (the ring protocol gives the slot
///   to the caller alone).
pub unsafe fn with_mut<R>(
    seg: &Segment,
    offset: usize,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> Option<R> {
    let p = seg.ptr_at(offset, len).ok()?;
    // SAFETY: `ptr_at` checked the range lies in the live mapping borrowed
    // for this call; the caller guarantees exclusive access while `f` runs,
    // and any bit pattern is a valid `u8`.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    Some(f(s))
}

/// Calls `f` with a shared slice over `len` bytes of `seg` at `offset`.
///
/// Returns `None` when the range is outside the segment.
///
/// # Safety
///
/// - While `f` runs, no other thread or process writes
///   `offset..offset+len` of the segment (the ring protocol gives the slot
///   to the caller alone).
pub unsafe fn with_ref<R>(
    seg: &Segment,
    offset: usize,
    len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    let p = seg.ptr_at(offset, len).ok()?;
    // SAFETY: in bounds of the live mapping (checked by `ptr_at`); no one
    // writes the range while `f` runs (caller's guarantee).
    let s = unsafe { std::slice::from_raw_parts(p.cast_const(), len) };
    Some(f(s))
}
