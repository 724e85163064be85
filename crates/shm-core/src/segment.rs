//! [`Segment`]: one shared memory segment mapped into this process, over the
//! POSIX, System V or memfd backend.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{CreateError, OpenError};
use crate::shim::Ordering;
use crate::shim::real::AtomicBool;
use crate::sys::map::Mapping;
use crate::{ProcessId, SegmentId};

mod access;
mod backend;
#[cfg(test)]
mod tests;

use backend::Handle;
pub use backend::{Backend, Stat};
pub(crate) use backend::{Creator, creator_holds};

/// Default permission bits of a new segment: owner read and write only.
pub const DEFAULT_MODE: u32 = 0o600;

/// Largest segment this library creates: 1 TiB. Anything larger is taken
/// for a mistake (a negative number cast to unsigned, say).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// How long `open_or_create` waits for a POSIX name that exists but has no
/// size yet: the moment between a creator's `shm_open` and its
/// `posix_fallocate`, normally microseconds.
const EMPTY_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Keeps shm-core's process-wide `SIGBUS` handler from being installed in
/// this process, and says whether that worked: `false` if a segment was
/// already mapped and the handler is in place (it stays; it cannot be
/// taken out safely while mappings rely on it).
///
/// Call it first thing in `main`, before any segment is mapped, if your
/// program installs its own `SIGBUS` handler or must keep the default
/// action. Without the guard, a POSIX or memfd segment truncated by another
/// process kills this one with `SIGBUS` at the first touch of a lost page,
/// and [`Segment::is_truncated`] stays `false`. Setting the environment
/// variable `SHM_SIGBUS_GUARD=0` does the same without code.
///
/// See the crate docs, "The `SIGBUS` guard".
pub fn disable_sigbus_guard() -> bool {
    crate::sys::sigbus::disable()
}

/// Whether shm-core's `SIGBUS` handler is installed in this process (it is
/// from the first POSIX or memfd mapping on, unless disabled).
pub fn sigbus_guard_installed() -> bool {
    crate::sys::sigbus::installed()
}

/// How [`Segment::open_with`] treats an existing or missing segment (one
/// enum rather than two booleans, so a call site says what it means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Create; fail with `AlreadyExists` if it exists (`O_EXCL`/`IPC_EXCL`).
    CreateExclusive,
    /// Open; fail with `NotFound` if it does not exist.
    OpenExisting,
    /// Open if it exists, else create. Race-free among many processes:
    /// exactly one of them creates.
    OpenOrCreate,
}

/// A shared memory segment mapped into this process: read-write, or
/// read-only when opened with [`Segment::open_read_only`].
///
/// # Ownership
///
/// The process that creates a named segment owns it: dropping the owner
/// removes the name (`shm_unlink` or `IPC_RMID`), while processes that have
/// it mapped keep their mapping. Openers are not owners. Hand the duty over
/// with [`Segment::set_owner`]: `set_owner(false)` in the creator to leave the
/// segment behind for others, `set_owner(true)` in the process that will
/// clean up. [`Segment::remove`] removes it at once.
///
/// # Access
///
/// Other processes may write the bytes at any moment, so the segment never
/// hands out `&[u8]` over them: copy with [`Segment::read_at`] and
/// [`Segment::write_at`], or reach a [`ShmShared`](crate::ShmShared) type (every mutation
/// through atomics or `UnsafeCell`) through [`crate::Shared`], or place one
/// at an offset of your choosing with the `unsafe` [`Segment::view`].
///
/// The copies take `&mut self`, so safe code cannot copy over (or out of)
/// bytes that a reference from this handle covers at that moment: a `&T`
/// from [`crate::Shared::get`] or `view`, a `&mut T` from a mutex guard
/// built on one, a `&[u8]` a queue hands to a closure. This does not
/// compile:
///
/// ```compile_fail,E0502
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shm_core::{Shared, SharedOptions};
/// let mut shared = Shared::<AtomicU64>::create_anonymous(&SharedOptions::new(), |_| Ok(()))?;
/// let counter = shared.get();                       // borrows `shared`
/// shared.segment_mut().write_at(128, &[0xff; 8])?;  // refused: borrowed
/// counter.load(Ordering::Relaxed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Nor can safe code place a second reference over bytes a reference
/// already covers: [`Segment::view`] is `unsafe`, so taking an
/// `AtomicU32` over a `Shared<AtomicU64>`'s value (a mixed-size access, or
/// over a `Mutex<u64>`'s data, a race with its guard's `&mut u64`) does
/// not compile without an `unsafe` block whose contract it would break:
///
/// ```compile_fail,E0133
/// use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
/// use shm_core::{Shared, SharedOptions};
/// let shared = Shared::<AtomicU64>::create_anonymous(&SharedOptions::new(), |_| Ok(()))?;
/// let data = shared.header()?.data_offset as usize;
/// let half = shared.segment().view::<AtomicU32>(data)?; // refused: `unsafe fn`
/// half.store(1, Ordering::Relaxed);
/// shared.get().fetch_add(1, Ordering::Relaxed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With only `&self` (the handle shared between threads, or leaked),
/// [`Segment::read_at_shared`] and [`Segment::write_at_shared`] do the same
/// copies under an `unsafe` contract. docs/architecture.md ("Trust") says
/// which calls are safe against a hostile process and which trust their
/// peers.
///
/// # Example
///
/// ```
/// use shm_core::{Segment, SegmentId};
/// let id = SegmentId::posix(&format!("/doc-segment-{}", std::process::id()))?;
/// let mut seg = Segment::create(&id, 4096, 0o600)?;      // create + map
/// seg.write_at(0, b"hello")?;                           // write
/// let mut other = Segment::open_read_only(&id)?;        // attach again
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf)?;                          // read
/// assert_eq!(&buf, b"hello");
/// assert_ne!(seg.as_ptr(), other.as_ptr());             // two mappings
/// drop(other);                                          // detach
/// seg.remove()?;                                        // remove the name
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    map: Mapping,
    handle: Handle,
    id: Option<SegmentId>,
    owner: bool,
    /// Set once the name was removed, so drop does not remove it twice.
    removed: AtomicBool,
    /// Mapped `PROT_READ` only ([`Segment::open_read_only`]).
    read_only: bool,
}

pub(crate) fn check_size(segment: &str, size: u64) -> Result<NonZeroUsize, CreateError> {
    let invalid = |reason: String| CreateError::InvalidSize {
        segment: segment.to_owned(),
        size,
        reason,
    };
    if size == 0 {
        return Err(invalid("a segment cannot be empty".into()));
    }
    if size > MAX_SEGMENT_SIZE {
        return Err(invalid(format!(
            "larger than the {} byte limit of this library",
            MAX_SEGMENT_SIZE
        )));
    }
    usize::try_from(size)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| invalid("does not fit in this address space".into()))
}

impl Segment {
    /// Creates a segment exclusively and maps it. POSIX: `shm_open(O_CREAT |
    /// O_EXCL)`, `fchmod(mode)`, `posix_fallocate(size)`, `mmap`. System V:
    /// `shmget(IPC_CREAT | IPC_EXCL | mode)`, `shmat`. The caller owns it.
    ///
    /// `mode` is applied exactly (the umask does not narrow it), and the
    /// creator maps the segment read-write whatever the mode says, on both
    /// backends.
    #[doc(alias = "shm_open")]
    #[doc(alias = "shmget")]
    pub fn create(id: &SegmentId, size: u64, mode: u32) -> Result<Segment, CreateError> {
        Self::create_inner(id, size, mode, false)
    }

    /// Creates with the POSIX descriptor holding an OFD write lock (released
    /// by the header handshake once the segment is ready).
    pub(crate) fn create_inner(
        id: &SegmentId,
        size: u64,
        mode: u32,
        hold_lock: bool,
    ) -> Result<Segment, CreateError> {
        let len = check_size(&id.to_string(), size)?;
        let (handle, map) = Handle::create(id, size, len, mode & 0o777, hold_lock)?;
        Ok(Self::assemble(map, handle, Some(id.clone()), true, false))
    }

    /// Opens an existing segment and maps all of it read-write. Its size is
    /// read with `fstat`/`IPC_STAT` before mapping. The caller does not own
    /// it. Needs read and write permission; to inspect a segment one may
    /// only read, use [`Segment::open_read_only`].
    pub fn open(id: &SegmentId) -> Result<Segment, OpenError> {
        Self::open_inner(id, false)
    }

    /// Opens an existing segment and maps it read-only: POSIX
    /// `shm_open(O_RDONLY)` and `mmap(PROT_READ)`, System V `shmat` with
    /// `SHM_RDONLY`. Needs only read permission, so a user who may read a
    /// segment but not write it can inspect it.
    ///
    /// Nothing can be written through the handle: [`Segment::write_at`]
    /// returns [`AccessError::ReadOnly`](crate::AccessError::ReadOnly), and [`Segment::view`] and
    /// [`Segment::ptr_at`] refuse too (an atomic store through a view would
    /// otherwise fault with `SIGSEGV`). Read with [`Segment::read_at`], or
    /// decode the header with [`crate::HeaderInfo::read`].
    #[doc(alias = "O_RDONLY")]
    #[doc(alias = "SHM_RDONLY")]
    pub fn open_read_only(id: &SegmentId) -> Result<Segment, OpenError> {
        Self::open_inner(id, true)
    }

    fn open_inner(id: &SegmentId, read_only: bool) -> Result<Segment, OpenError> {
        let (handle, map) = Handle::open(id, read_only)?;
        Ok(Self::assemble(
            map,
            handle,
            Some(id.clone()),
            false,
            read_only,
        ))
    }

    /// The one place a `Segment` is made: a mapping, the backend's handle,
    /// the id (`None`: anonymous), whether this handle owns the name.
    fn assemble(
        map: Mapping,
        handle: Handle,
        id: Option<SegmentId>,
        owner: bool,
        read_only: bool,
    ) -> Segment {
        Segment {
            map,
            handle,
            id,
            owner,
            removed: AtomicBool::new(false),
            read_only,
        }
    }

    /// Opens the segment if it exists, else creates it; returns whether this
    /// call created it. Race-free when many processes call it at once: an
    /// exclusive create is tried first, and a segment removed between a
    /// failed create and the open is retried.
    pub fn open_or_create(
        id: &SegmentId,
        size: u64,
        mode: u32,
    ) -> Result<(Segment, bool), OpenError> {
        let mut empty_since: Option<std::time::Instant> = None;
        loop {
            match Self::create(id, size, mode) {
                Ok(s) => return Ok((s, true)),
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match Self::open(id) {
                Ok(s) => return Ok((s, false)),
                // Removed in between: try creating again.
                Err(OpenError::NotFound { .. }) => continue,
                // Created but not yet sized by its creator, which takes
                // microseconds; a name left empty by a creator that died in
                // between stays so forever and must not be waited on.
                Err(e @ OpenError::TooSmall { size: 0, .. }) => {
                    let first = *empty_since.get_or_insert_with(std::time::Instant::now);
                    if first.elapsed() >= EMPTY_GRACE {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_micros(50));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens, creates, or either, by `mode`.
    pub fn open_with(
        id: &SegmentId,
        how: CreateMode,
        size: u64,
        mode: u32,
    ) -> Result<(Segment, bool), OpenError> {
        match how {
            CreateMode::CreateExclusive => Ok((Self::create(id, size, mode)?, true)),
            CreateMode::OpenExisting => Ok((Self::open(id)?, false)),
            CreateMode::OpenOrCreate => Self::open_or_create(id, size, mode),
        }
    }

    /// An anonymous segment (`memfd_create`), shared with children across
    /// `fork` or with other processes by passing [`Segment::fd`].
    #[doc(alias = "memfd_create")]
    pub fn anonymous(size: u64) -> Result<Segment, CreateError> {
        let len = check_size("memfd", size)?;
        let (handle, map) = Handle::anonymous(size, len)?;
        Ok(Self::assemble(map, handle, None, false, false))
    }

    /// Maps a shared memory descriptor received from another process (a
    /// memfd, or a `/dev/shm` file). Its size is read with `fstat`.
    pub fn from_fd(fd: OwnedFd) -> Result<Segment, OpenError> {
        let (handle, map) = Handle::from_fd(fd)?;
        Ok(Self::assemble(map, handle, None, false, false))
    }

    /// The segment's id; `None` for an anonymous segment.
    pub fn id(&self) -> Option<&SegmentId> {
        self.id.as_ref()
    }

    /// The id as text, for messages (`memfd` for anonymous segments).
    pub fn describe(&self) -> String {
        self.id
            .as_ref()
            .map_or_else(|| "memfd".to_owned(), |i| i.to_string())
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.handle.backend()
    }

    /// The mapped length in bytes (the segment's size when it was mapped).
    #[inline]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first mapped byte. Other processes may write through their own
    /// mappings at any time: dereference only under a protocol that says who
    /// writes what.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr().as_ptr()
    }

    /// Whether this mapping found its file cut short: another process
    /// truncated the segment after it was mapped. Touching the lost pages
    /// does not raise `SIGBUS` here (a handler patches them with private
    /// zeros), but the bytes are no longer shared: treat the segment as
    /// broken.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        self.map.is_truncated()
    }

    /// The descriptor of a POSIX or memfd segment (`None` for System V).
    /// Pass it to another process to share an anonymous segment.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.handle.fd()
    }

    /// The System V shmid (`None` for the other backends).
    pub fn shmid(&self) -> Option<i32> {
        self.handle.shmid()
    }

    /// Size, owner, mode and, for System V, the kernel's attach count and
    /// PIDs: `fstat` or `shmctl(IPC_STAT)`.
    #[doc(alias = "IPC_STAT")]
    pub fn stat(&self) -> io::Result<Stat> {
        self.handle.stat()
    }

    /// What this segment, not ready yet, says about its creator: whether it
    /// is still at work (POSIX and memfd: it holds the OFD lock; System V:
    /// the kernel's `cpid` lives, with the header's start time when its PID
    /// matches) and its PID. For the init handshake ([`crate::Shared`]).
    pub(crate) fn creator(&self, header_pid: Option<ProcessId>) -> Creator {
        self.handle.creator(header_pid)
    }

    /// The creator published ready: drops the handshake's OFD lock, if the
    /// backend has one.
    pub(crate) fn end_creation(&self) {
        self.handle.end_creation();
    }

    /// Whether dropping this handle removes the segment.
    pub fn is_owner(&self) -> bool {
        self.owner && !self.removed.load(Ordering::Relaxed)
    }

    /// Takes on (`true`) or gives up (`false`) the duty of removing the
    /// segment on drop. Has no effect on anonymous segments, which vanish
    /// with their last descriptor and mapping.
    pub fn set_owner(&mut self, owner: bool) {
        self.owner = owner && self.id.is_some();
    }

    /// Whether the segment's name still refers to this segment: `false`
    /// once it was removed (and perhaps given to a new segment since), and
    /// for an anonymous segment. Errors reading the name count as `true`
    /// (it cannot be shown to be gone).
    pub fn is_named(&self) -> bool {
        self.handle.is_named()
    }

    /// Removes the segment's name now (`shm_unlink` / `IPC_RMID`). Mappings,
    /// this one included, stay valid until dropped; System V memory is freed
    /// after the last detach. Afterwards this handle is no longer the owner.
    #[doc(alias = "shm_unlink")]
    #[doc(alias = "IPC_RMID")]
    pub fn remove(&self) -> io::Result<()> {
        let result = self.handle.remove();
        // Ownership ends with the name, whether or not the call succeeded
        // (it fails when someone else removed it first).
        self.removed.store(true, Ordering::Relaxed);
        result
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner && !self.removed.load(Ordering::Relaxed) {
            // Nothing to report to from a destructor; a segment already
            // removed by someone else is fine.
            let _ = self.remove();
        }
        // The mapping is unmapped by `Mapping`'s own drop.
    }
}

/// Removes a segment by id without mapping it.
pub fn remove(id: &SegmentId) -> Result<(), OpenError> {
    backend::remove(id)
}
