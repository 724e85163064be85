//! A mapping of a segment into this process: `mmap`/`munmap` or
//! `shmat`/`shmdt`.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags};

use super::cvt;

/// How the pages were mapped, so that drop uses the matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// `mmap(MAP_SHARED)` of a descriptor.
    Mmap,
    /// `shmat` of a System V segment.
    Shmat,
}

/// Pages of a segment mapped into this process.
///
/// Invariant: `ptr..ptr+len` is mapped shared, `PROT_READ|PROT_WRITE` when
/// `writable` and `PROT_READ` otherwise, for as long as the value lives.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    kind: MapKind,
    /// Whether the pages may be written (else `PROT_READ` / `SHM_RDONLY`).
    writable: bool,
    /// Entry in the SIGBUS guard's table (file mappings only: a System V
    /// segment cannot be truncated).
    guard: Option<usize>,
}

// SAFETY: the mapping is plain memory shared with other processes anyway;
// moving the handle between threads changes nothing about who may write it.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out the raw pointer and the length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)`, or
    /// `PROT_READ` alone when not `writable` (a descriptor opened
    /// `O_RDONLY` can be mapped no other way).
    pub(crate) fn mmap(fd: BorrowedFd<'_>, len: NonZeroUsize, writable: bool) -> io::Result<Self> {
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a fresh shared mapping at an address the kernel picks
        // overlaps no Rust object; `fd` is a valid open descriptor.
        let ptr = unsafe { nix::sys::mman::mmap(None, len, prot, MapFlags::MAP_SHARED, fd, 0) }?;
        let guard = super::sigbus::register(ptr.as_ptr() as usize, len.get());
        Ok(Mapping {
            ptr: ptr.cast(),
            len: len.get(),
            kind: MapKind::Mmap,
            writable,
            guard,
        })
    }

    /// `shmat(shmid, NULL, 0)`: attaches a System V segment read-write, or
    /// with `SHM_RDONLY` when not `writable`.
    #[doc(alias = "SHM_RDONLY")]
    pub(crate) fn shmat(shmid: i32, len: NonZeroUsize, writable: bool) -> io::Result<Self> {
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: with a null address the kernel picks a free range, which
        // overlaps no Rust object.
        let ptr = unsafe { libc::shmat(shmid, std::ptr::null(), flags) };
        if ptr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("shmat returned NULL"))?;
        Ok(Mapping {
            ptr,
            len: len.get(),
            kind: MapKind::Shmat,
            writable,
            guard: None,
        })
    }

    /// Whether a touch found the file cut short under the mapping (another
    /// process truncated it); the pages past its end now read zeros that no
    /// one else sees.
    #[inline]
    pub(crate) fn is_truncated(&self) -> bool {
        self.guard.is_some_and(super::sigbus::is_truncated)
    }

    /// Records that the file was found cut short under the mapping without
    /// a touch (nothing to do when the `SIGBUS` guard is off).
    pub(crate) fn mark_truncated(&self) {
        if let Some(g) = self.guard {
            super::sigbus::mark_truncated(g);
        }
    }

    /// The first byte of the mapping.
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `madvise(MADV_POPULATE_READ)` over the whole mapping: the kernel
    /// faults every page in as a read would, without any load by this
    /// process (Linux 5.14 and later; older kernels say `EINVAL`). A page
    /// lost to a truncation is `EFAULT`, not a `SIGBUS`.
    pub(crate) fn populate(&self) -> io::Result<()> {
        // SAFETY: `ptr..ptr+len` is this live mapping (invariant);
        // `MADV_POPULATE_READ` only populates page tables as a read would
        // and never changes what the pages hold, so no Rust object (and no
        // reference into the mapping) is affected.
        unsafe {
            nix::sys::mman::madvise(
                self.ptr.cast(),
                self.len,
                nix::sys::mman::MmapAdvise::MADV_POPULATE_READ,
            )
        }
        .map_err(io::Error::from)
    }

    /// Whether `offset..offset+len` lies inside the mapping and its address
    /// is a multiple of `align`.
    #[inline]
    pub(crate) fn contains(&self, offset: usize, len: usize, align: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
            && (self.ptr.as_ptr() as usize)
                .wrapping_add(offset)
                .is_multiple_of(align)
    }

    /// Copies bytes out at `offset`; `false` (and nothing copied) if out of
    /// bounds.
    #[inline]
    pub(crate) fn read_at(&self, offset: usize, buf: &mut [u8]) -> bool {
        if !self.contains(offset, buf.len(), 1) {
            return false;
        }
        // SAFETY: `contains` proved the range lies inside this live mapping.
        unsafe { copy_from_shared(self.ptr.as_ptr().add(offset), buf) };
        true
    }

    /// Copies `data` in at `offset`; `false` (and nothing written) if out of
    /// bounds or the mapping is read-only.
    #[inline]
    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> bool {
        if !self.writable || !self.contains(offset, data.len(), 1) {
            return false;
        }
        // SAFETY: `contains` proved the range lies inside this live
        // mapping, which is writable (checked above).
        unsafe { copy_to_shared(data, self.ptr.as_ptr().add(offset)) };
        true
    }

    /// A private copy of the `T` at `offset`, if in bounds. Needs no
    /// alignment and no writable mapping: the bytes are copied into a new
    /// box, which holds a valid `T` whatever they were (`T: ShmSafe`).
    pub(crate) fn read_boxed<T: crate::ShmSafe>(&self, offset: usize) -> Option<Box<T>> {
        if !self.contains(offset, size_of::<T>(), 1) {
            return None;
        }
        let mut b = Box::<T>::new_uninit();
        // SAFETY: `contains` proved the source range lies inside this live
        // mapping; the box is private memory of `size_of::<T>()` bytes, so
        // the ranges cannot overlap.
        // The destination is uninitialized, so it is written through a raw
        // pointer, never a `&mut [u8]`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                b.as_mut_ptr().cast::<u8>(),
                size_of::<T>(),
            )
        };
        // SAFETY: every byte was written just above, and `T: ShmSafe` makes
        // every bit pattern a valid `T`.
        Some(unsafe { b.assume_init() })
    }

    /// A `&T` at `offset`, if in bounds and aligned and the mapping is
    /// writable (an atomic store through a `&T` over `PROT_READ` pages
    /// would fault).
    #[inline]
    pub(crate) fn view<T: crate::ShmShared>(&self, offset: usize) -> Option<&T> {
        if !self.writable || !self.contains(offset, size_of::<T>(), align_of::<T>()) {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the mapping lives as
        // long as `&self`; `T: ShmSafe` makes every bit pattern valid, and
        // `T: ShmShared` puts every byte inside an atomic or `UnsafeCell`, so
        // a shared reference is sound even while other processes write them.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Errors are ignored: `munmap`/`shmdt` fail only for an address that
        // is not a mapping, which the invariant rules out, and a destructor
        // has no one to report to.
        if let Some(g) = self.guard {
            super::sigbus::unregister(g);
        }
        match self.kind {
            MapKind::Mmap => {
                // SAFETY: `ptr..ptr+len` is our own mapping (invariant) and
                // no reference into it outlives `self`: every view borrows
                // the owning segment.
                let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
            }
            MapKind::Shmat => {
                // SAFETY: as above, for the address `shmat` returned.
                let _ = cvt(unsafe { libc::shmdt(self.ptr.as_ptr().cast()) });
            }
        }
    }
}

/// Copies `dst.len()` bytes out of shared memory at `src`.
///
/// Uses a plain byte copy through raw pointers: no `&[u8]` is ever formed
/// over bytes another process may be writing (STYLE: no references to
/// shared bytes). A concurrent writer can make the copy see a mix of old and
/// new bytes, which callers guard against with their own protocol.
///
/// # Safety
///
/// - `src..src+dst.len()` lies inside a live mapping.
#[inline]
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the caller guarantees `src` is mapped for `dst.len()` bytes;
    // `dst` is private memory, so the ranges cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) }
}

/// Copies `src` into shared memory at `dst`.
///
/// # Safety
///
/// - `dst..dst+src.len()` lies inside a live, writable mapping.
#[inline]
pub(crate) unsafe fn copy_to_shared(src: &[u8], dst: *mut u8) {
    // SAFETY: the caller guarantees `dst` is mapped for `src.len()` bytes;
    // `src` is private memory, so the ranges cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
}
