//! Reaching the bytes of a [`Segment`]: copies in and out, views, raw
//! pointers, `populate`, and the checks they share (bounds, alignment,
//! read-only). docs/architecture.md ("Trust") says which of these are safe
//! against a hostile process and which trust their peers.

use std::io;

use super::Segment;
use crate::ShmShared;
use crate::error::{AccessError, BoundsError};

impl Segment {
    #[cold]
    fn bounds(&self, offset: usize, len: usize, align: usize) -> BoundsError {
        BoundsError {
            offset,
            len,
            segment_len: self.len(),
            align,
        }
    }

    /// Copies `buf.len()` bytes out of the segment at `offset`.
    ///
    /// Takes `&mut self`: while it runs, no reference this handle gave out
    /// ([`Segment::view`], [`crate::Shared::get`] and whatever was built on
    /// them, such as a mutex guard's `&mut T`) is alive, so the copy cannot
    /// race one of them. Writes by *other processes* (or other mappings)
    /// may land during the copy: it is a byte copy through raw pointers, it
    /// may see a mix of old and new bytes, and it is sound whatever they
    /// write (see "Trust" in docs/architecture.md). With only `&self`, use
    /// [`Segment::read_at_shared`].
    #[inline]
    pub fn read_at(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), BoundsError> {
        // `&mut self` proves that no reference obtained from this handle is
        // alive (every one borrows it).
        self.copy_out(offset, buf)
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// Takes `&mut self` for the same reason as [`Segment::read_at`]: safe
    /// code cannot write bytes that a `&T`, `&[u8]` or `&mut T` handed out
    /// by this handle covers at the same moment. On a handle opened
    /// read-only it is refused with [`AccessError::ReadOnly`]. With only
    /// `&self`, use [`Segment::write_at_shared`].
    #[inline]
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        // As in `read_at`.
        self.copy_in(offset, data)
    }

    #[inline]
    fn copy_out(&self, offset: usize, buf: &mut [u8]) -> Result<(), BoundsError> {
        if self.map.read_at(offset, buf) {
            Ok(())
        } else {
            Err(self.bounds(offset, buf.len(), 1))
        }
    }

    #[inline]
    fn copy_in(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        self.writable(offset, data.len())?;
        if self.map.write_at(offset, data) {
            Ok(())
        } else {
            Err(self.bounds(offset, data.len(), 1).into())
        }
    }

    /// [`Segment::read_at`] through a shared borrow.
    ///
    /// # Safety
    ///
    /// - No reference into `offset..offset + buf.len()` obtained in this
    ///   process, through this handle or another, is used by another thread
    ///   while the copy runs unless every byte it covers is an atomic, and no
    ///   `&mut` reference to those bytes is alive at all (a copy racing the
    ///   holder of a mutex guard is a data race, undefined behaviour).
    // An unsafe contract only: the body performs no unsafe operation.
    #[allow(unsafe_code)]
    #[inline]
    pub unsafe fn read_at_shared(&self, offset: usize, buf: &mut [u8]) -> Result<(), BoundsError> {
        self.copy_out(offset, buf)
    }

    /// [`Segment::write_at`] through a shared borrow.
    ///
    /// # Safety
    ///
    /// - No reference into `offset..offset + data.len()` obtained in this
    ///   process, through this handle or another, is alive while the copy
    ///   runs (a `&T` over an atomic included: a plain write racing an
    ///   atomic access is a data race).
    // An unsafe contract only: the body performs no unsafe operation.
    #[allow(unsafe_code)]
    #[inline]
    pub unsafe fn write_at_shared(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        self.copy_in(offset, data)
    }

    /// A `&T` placed at `offset`, checked for bounds and alignment.
    ///
    /// `T: ShmShared` accepts every bit pattern and keeps every byte inside
    /// an atomic or `UnsafeCell`, so the reference stays valid whatever
    /// *other processes* (or other mappings) write. What it cannot rule out
    /// is a reference this process already holds over the same bytes: a
    /// mutex guard's `&mut T`, a queue slot lent to a closure as `&[u8]`, or
    /// a `&U` of another type or offset (mixed-size or mixed atomic and
    /// plain access). Placing a type at an arbitrary offset is a cast, so
    /// it is `unsafe`; [`crate::Shared::get`] is the safe path, for the one
    /// `T` a `Shared<T>` owns. Refused with [`AccessError::ReadOnly`] on a
    /// handle opened read-only: an atomic store through the `&T` would
    /// fault.
    ///
    /// # Safety
    ///
    /// For as long as the returned `&T` lives, every access this process
    /// makes to the bytes `offset..offset + size_of::<T>()` of this mapping
    /// goes through a `&T` at the same `offset` (this one, another
    /// `view::<T>(offset)` of this handle, or [`crate::Shared::get`] when
    /// that is where its `T` lives), that is through `T`'s own atomics and
    /// `UnsafeCell` protocol (a guard that a `&Mutex<U>` hands out counts).
    /// In particular, while it lives, nothing in this process:
    ///
    /// - holds a reference over any of those bytes of another type, or of
    ///   `T` at another offset (say an `AtomicU64` over the data of a
    ///   `Mutex<u64>`, or over a `Shared<T>`'s `T`);
    /// - holds a reference over them obtained another way: a slot payload
    ///   (`&[u8]`, `&mut [u8]`) the queue lends to a closure, a slice made
    ///   from [`Segment::ptr_at`] or [`Segment::as_ptr`];
    /// - reads or writes them through a raw pointer, or with
    ///   [`Segment::read_at_shared`] / [`Segment::write_at_shared`];
    /// - runs [`crate::HeaderInfo::read`] or [`crate::Shared::header`] on
    ///   this handle if the range overlaps its first [`crate::HEADER_SIZE`]
    ///   bytes (they read the header through a reference of their own).
    ///
    /// Other processes and other mappings of the segment are not covered
    /// here: they are the peers of docs/architecture.md, "Trust".
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use shm_core::Segment;
    /// let seg = Segment::anonymous(4096)?;
    /// // SAFETY: this process touches bytes 0..8 of `seg` only through
    /// // `&AtomicU64` views at offset 0.
    /// let word = unsafe { seg.view::<AtomicU64>(0)? };
    /// word.store(7, Ordering::Release);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // An unsafe contract only: the body performs no unsafe operation.
    #[allow(unsafe_code)]
    #[inline]
    pub unsafe fn view<T: ShmShared>(&self, offset: usize) -> Result<&T, AccessError> {
        // One check of each kind: this is on every message's path.
        self.writable(offset, size_of::<T>())?;
        self.map
            .view::<T>(offset)
            .ok_or_else(|| self.bounds(offset, size_of::<T>(), align_of::<T>()).into())
    }

    /// Whether [`Segment::view`] of a `T` at `offset` would be given (in
    /// bounds, aligned, writable), without forming the reference.
    pub(crate) fn view_fits<T: ShmShared>(&self, offset: usize) -> Result<(), AccessError> {
        self.writable(offset, size_of::<T>())?;
        if self.map.contains(offset, size_of::<T>(), align_of::<T>()) {
            Ok(())
        } else {
            Err(self.bounds(offset, size_of::<T>(), align_of::<T>()).into())
        }
    }

    /// Faults every page of this mapping in, as a read of each would:
    /// `madvise(MADV_POPULATE_READ)`, so that later accesses do not pay the
    /// first-touch page faults. The kernel does it; this process reads
    /// nothing, so it races no reference and is safe through `&self`.
    ///
    /// Needs Linux 5.14 or later (older kernels: an `EINVAL` error). Pages
    /// lost to a truncation by another process give `EFAULT`; if the file
    /// is then shorter than the mapping, the truncation is recorded as a
    /// touch would record it ([`Segment::is_truncated`]).
    #[doc(alias = "MADV_POPULATE_READ")]
    #[doc(alias = "madvise")]
    pub fn populate(&self) -> io::Result<()> {
        let r = self.map.populate();
        if let Err(e) = &r
            && e.raw_os_error() == Some(libc::EFAULT)
            && self.handle.shorter_than(self.len())
        {
            self.map.mark_truncated();
        }
        r
    }

    /// A raw pointer to `len` bytes at `offset`, checked for bounds;
    /// refused on a handle opened read-only.
    ///
    /// Safe to obtain, like [`Segment::as_ptr`]: reading or writing through
    /// it takes an `unsafe` block, whose `// SAFETY:` must name the
    /// protocol that says who may touch those bytes meanwhile (no reference
    /// this process holds may cover them).
    #[inline]
    pub fn ptr_at(&self, offset: usize, len: usize) -> Result<*mut u8, AccessError> {
        self.writable(offset, len)?;
        if !self.map.contains(offset, len, 1) {
            return Err(self.bounds(offset, len, 1).into());
        }
        // In bounds: the addition stays inside the mapping.
        Ok(self.as_ptr().wrapping_add(offset))
    }

    /// Whether this handle was opened with [`Segment::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    #[inline]
    fn writable(&self, offset: usize, len: usize) -> Result<(), AccessError> {
        if self.read_only {
            Err(self.read_only_error(offset, len))
        } else {
            Ok(())
        }
    }

    #[cold]
    fn read_only_error(&self, offset: usize, len: usize) -> AccessError {
        AccessError::ReadOnly {
            segment: self.describe(),
            offset,
            len,
        }
    }

    /// A private copy of the `T` at `offset` (see [`crate::Snapshot`]).
    pub(crate) fn read_boxed<T: crate::ShmSafe>(&self, offset: usize) -> Option<Box<T>> {
        self.map.read_boxed::<T>(offset)
    }

    /// Copies out through `&self` on a handle opened read-only, which never
    /// hands out a reference into the mapping; `None` on a read-write one.
    pub(crate) fn read_at_if_read_only(
        &self,
        offset: usize,
        buf: &mut [u8],
    ) -> Option<Result<(), BoundsError>> {
        // A read-only handle never gives out a reference into its mapping
        // (`view` and `ptr_at` refuse), so no copy through it can race one.
        self.read_only.then(|| self.copy_out(offset, buf))
    }
}
