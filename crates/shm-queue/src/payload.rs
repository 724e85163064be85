//! The queue's only `unsafe`: placing the slot headers, viewing a claimed
//! slot's payload in place and moving typed values in and out of it.
//!
//! The slot protocol (see [`crate::layout`]) gives the holder of a WRITING
//! or READING claim the payload bytes to itself: no cooperating process
//! touches them until the claim is released. A hostile process can still
//! write them; that can change the bytes the caller sees, never the bounds.
#![allow(unsafe_code)]

use shm_core::{AccessError, Segment, ShmSafe};

use crate::layout::SlotHeader;

/// The header of the slot at `offset` of the queue's segment (checked for
/// bounds and alignment, like [`Segment::view`]).
///
/// Safe to call because of what this crate does with its segment, not of
/// what `offset` is: `offset` must be a slot's start (`slots_offset +
/// index * stride` of the validated layout), the one place in the crate
/// that computes it is `Inner::header` in `queue.rs`, and nothing else in
/// the crate forms a reference over a slot header.
#[inline]
pub(crate) fn header(segment: &Segment, offset: usize) -> Result<&SlotHeader, AccessError> {
    // SAFETY: within this process, the `SLOT_HEADER` bytes at a slot's
    // start are reached only through a `&SlotHeader` at that offset (here):
    // the payload pointers and slices of this module start `SLOT_HEADER`
    // bytes further on (`Inner::payload_ptr`), and the control block
    // (`Shared::get`) and the segment header lie before the slots. Code
    // outside the crate that holds the segment (`Queue::segment`) needs the
    // `unsafe` `Segment::view` or raw pointers to reach these bytes, under
    // a contract that keeps it off them while this reference lives.
    unsafe { segment.view::<SlotHeader>(offset) }
}

/// The payload of a slot this process has claimed for writing.
///
/// # Safety
///
/// - `ptr..ptr+len` lies inside a live mapping of the queue's segment;
/// - the caller holds the WRITING claim on that slot for all of `'a`, so no
///   cooperating process reads or writes the bytes meanwhile.
pub(crate) unsafe fn payload_mut<'a>(ptr: *mut u8, len: usize) -> &'a mut [u8] {
    // SAFETY: mapped for `len` bytes and exclusively ours by the claim (the
    // caller's contract); `u8` has no invalid bit patterns.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }
}

/// The payload of a slot this process has claimed for reading.
///
/// # Safety
///
/// - `ptr..ptr+len` lies inside a live mapping of the queue's segment;
/// - the caller holds the READING claim on that slot for all of `'a`, so no
///   cooperating process writes the bytes meanwhile.
pub(crate) unsafe fn payload<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: as for `payload_mut`, for shared access.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Writes `value` at `dst` (unaligned).
///
/// # Safety
///
/// - `dst..dst+size_of::<T>()` lies inside a live mapping and is claimed for
///   writing by the caller.
pub(crate) unsafe fn write_value<T: ShmSafe + Copy>(dst: *mut u8, value: T) {
    // SAFETY: in bounds and claimed (the caller's contract); an unaligned
    // write has no alignment requirement.
    unsafe { dst.cast::<T>().write_unaligned(value) }
}

/// Reads a `T` from `src` (unaligned).
///
/// # Safety
///
/// - `src..src+size_of::<T>()` lies inside a live mapping and is claimed for
///   reading by the caller.
pub(crate) unsafe fn read_value<T: ShmSafe + Copy>(src: *const u8) -> T {
    // SAFETY: in bounds and claimed (the caller's contract); `T: ShmSafe`
    // accepts every bit pattern, so whatever the bytes are, the value is
    // valid.
    unsafe { src.cast::<T>().read_unaligned() }
}
