//! [`Segment`]: one shared memory segment mapped into this process, over the
//! POSIX, System V or memfd backend.

use std::ffi::CString;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;

use crate::error::{AccessError, BoundsError, CreateError, OpenError, Owner};
use crate::shim::Ordering;
use crate::shim::real::AtomicBool;
use crate::sys::map::Mapping;
use crate::sys::{posix, sysv};
use crate::{PosixName, SegmentId, ShmShared};

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

/// The kernel API behind a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Backend {
    /// `shm_open`/`mmap`: a file in `/dev/shm`.
    Posix,
    /// `shmget`/`shmat`: a kernel object named by key and shmid.
    SysV,
    /// `memfd_create`: anonymous, shared by `fork` or fd passing.
    Memfd,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Posix => "posix",
            Backend::SysV => "sysv",
            Backend::Memfd => "memfd",
        })
    }
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

/// What `stat` reports. System V fields are `None` for the other backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The backend.
    pub backend: Backend,
    /// Size in bytes.
    pub size: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// System V: the key.
    pub key: Option<i32>,
    /// System V: the shmid; POSIX: `None`.
    pub shmid: Option<i32>,
    /// System V: number of attaches, as the kernel counts them.
    pub nattch: Option<u64>,
    /// System V: creator PID.
    pub cpid: Option<i32>,
    /// System V: PID of the last `shmat`/`shmdt`.
    pub lpid: Option<i32>,
    /// Last attach (System V) or access (POSIX), seconds since the epoch.
    pub atime: i64,
    /// System V: last detach, seconds since the epoch (0: never).
    pub dtime: Option<i64>,
    /// Last change, seconds since the epoch.
    pub ctime: i64,
}

#[derive(Debug)]
enum Handle {
    /// POSIX or memfd: the descriptor stays open for `fstat` and locks.
    Fd(OwnedFd),
    /// System V: the shmid.
    SysV(i32),
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
/// [`Segment::write_at`], or reach a [`ShmShared`] type (every mutation
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
    backend: Backend,
    owner: bool,
    /// Set once the name was removed, so drop does not remove it twice.
    removed: AtomicBool,
    /// Mapped `PROT_READ` only ([`Segment::open_read_only`]).
    read_only: bool,
}

fn mapped_len(segment: &str, size: u64) -> Result<NonZeroUsize, OpenError> {
    usize::try_from(size)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| OpenError::TooSmall {
            segment: segment.to_owned(),
            size,
            needed: 1,
        })
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

/// Owner and mode of a POSIX segment, read with `stat` (which needs no
/// permission on the file itself).
fn posix_owner(name: &PosixName) -> Option<Owner> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(format!("/dev/shm/{}", name.file_name())).ok()?;
    Some(Owner {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

/// Owner and mode of a System V segment by key, from `/proc/sysvipc/shm`
/// (readable without permission on the segment).
fn sysv_owner(key: i32) -> Option<Owner> {
    crate::list::sysv_entries()
        .ok()?
        .into_iter()
        .find(|e| e.key == key)
        .map(|e| Owner {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
        })
}

/// Whether `/dev/shm/NAME` is still the file `fd` has open.
fn names_this_file(name: &PosixName, fd: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(mine) = posix::fstat(fd) else {
        // Cannot tell: keep the old behaviour and remove by name.
        return true;
    };
    match std::fs::metadata(format!("/dev/shm/{}", name.file_name())) {
        Ok(md) => md.dev() == mine.dev && md.ino() == mine.ino,
        // Gone already, or unreadable: let `shm_unlink` say which.
        Err(_) => true,
    }
}

/// Which System V limit an `ENOSPC` from `shmget` hit: the kernel gives the
/// same error for the segment count (`shmmni`) and the page total
/// (`shmall`), so count the segments to tell them apart.
fn sysv_enospc_detail() -> String {
    let shmmni = read_sysctl("shmmni");
    let count = crate::list::sysv_entries().map(|v| v.len()).ok();
    match (count, shmmni.parse::<usize>()) {
        (Some(n), Ok(max)) if n >= max => format!(
            "the System V segment limit kernel.shmmni = {max} is reached ({n} segments exist; remove some with `shm gc` or raise it)"
        ),
        _ => format!(
            "the System V page limit kernel.shmall = {} pages is reached (or kernel.shmmni = {shmmni} segments)",
            read_sysctl("shmall")
        ),
    }
}

fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn dev_shm_space() -> String {
    match nix::sys::statvfs::statvfs("/dev/shm") {
        Ok(v) => format!(
            "/dev/shm has {} bytes free of {} (enlarge it, e.g. `mount -o remount,size=1G /dev/shm`, or docker --shm-size)",
            v.blocks_available().saturating_mul(v.fragment_size()),
            v.blocks().saturating_mul(v.fragment_size())
        ),
        Err(_) => "/dev/shm is full".into(),
    }
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
        let seg = id.to_string();
        let len = check_size(&seg, size)?;
        let mode = mode & 0o777;
        match id {
            SegmentId::Posix(name) => {
                let io_err = |op, source| CreateError::Io {
                    op,
                    segment: seg.clone(),
                    source,
                };
                let fd = posix::shm_open(
                    name.as_c_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
                    mode,
                )
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EEXIST) => CreateError::AlreadyExists {
                        segment: seg.clone(),
                    },
                    Some(libc::EACCES) | Some(libc::EPERM) => CreateError::PermissionDenied {
                        segment: seg.clone(),
                        owner: posix_owner(name),
                    },
                    Some(libc::ENOSPC) => CreateError::NoSpace {
                        segment: seg.clone(),
                        size,
                        detail: dev_shm_space(),
                    },
                    _ => io_err("shm_open", e),
                })?;
                // From here on a failure must remove the name again.
                let unlink = |e| {
                    let _ = posix::shm_unlink(name.as_c_str());
                    e
                };
                if hold_lock {
                    posix::ofd_lock_exclusive(fd.as_fd())
                        .map_err(|e| unlink(io_err("fcntl(F_OFD_SETLK)", e)))?;
                }
                posix::fchmod(fd.as_fd(), mode).map_err(|e| unlink(io_err("fchmod", e)))?;
                posix::fallocate(fd.as_fd(), size).or_else(|e| match e.raw_os_error() {
                    Some(libc::ENOSPC) | Some(libc::EFBIG) => Err(unlink(CreateError::NoSpace {
                        segment: seg.clone(),
                        size,
                        detail: dev_shm_space(),
                    })),
                    // A filesystem without fallocate: size it the old way.
                    Some(libc::EOPNOTSUPP) => posix::ftruncate(fd.as_fd(), size)
                        .map_err(|e| unlink(io_err("ftruncate", e))),
                    _ => Err(unlink(io_err("posix_fallocate", e))),
                })?;
                let map =
                    Mapping::mmap(fd.as_fd(), len, true).map_err(|e| unlink(io_err("mmap", e)))?;
                Ok(Segment {
                    map,
                    handle: Handle::Fd(fd),
                    id: Some(id.clone()),
                    backend: Backend::Posix,
                    owner: true,
                    removed: AtomicBool::new(false),
                    read_only: false,
                })
            }
            SegmentId::SysV(key) => {
                // `shmat` checks the mode even for the creator (unlike
                // `open` of a file it just created), so a mode without owner
                // read and write is set only after the attach.
                let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode | 0o600) as i32;
                let shmid =
                    sysv::shmget(*key, len.get(), flags).map_err(|e| match e.raw_os_error() {
                        Some(libc::EEXIST) => CreateError::AlreadyExists {
                            segment: seg.clone(),
                        },
                        Some(libc::EACCES) | Some(libc::EPERM) => CreateError::PermissionDenied {
                            segment: seg.clone(),
                            owner: sysv_owner(*key),
                        },
                        Some(libc::EINVAL) => CreateError::Limit {
                            segment: seg.clone(),
                            detail: format!(
                                "{size} bytes is outside the System V limits (kernel.shmmax = {})",
                                read_sysctl("shmmax")
                            ),
                        },
                        Some(libc::ENOSPC) => CreateError::Limit {
                            segment: seg.clone(),
                            detail: sysv_enospc_detail(),
                        },
                        Some(libc::ENOMEM) => CreateError::NoSpace {
                            segment: seg.clone(),
                            size,
                            detail: "the kernel has no memory for it".into(),
                        },
                        _ => CreateError::Io {
                            op: "shmget",
                            segment: seg.clone(),
                            source: e,
                        },
                    })?;
                let map = Mapping::shmat(shmid, len, true).map_err(|e| {
                    let _ = sysv::ipc_rmid(shmid);
                    CreateError::Io {
                        op: "shmat",
                        segment: seg.clone(),
                        source: e,
                    }
                })?;
                if mode & 0o600 != 0o600 {
                    sysv::ipc_set_mode(shmid, mode).map_err(|e| {
                        let _ = sysv::ipc_rmid(shmid);
                        CreateError::Io {
                            op: "shmctl(IPC_SET)",
                            segment: seg.clone(),
                            source: e,
                        }
                    })?;
                }
                Ok(Segment {
                    map,
                    handle: Handle::SysV(shmid),
                    id: Some(id.clone()),
                    backend: Backend::SysV,
                    owner: true,
                    removed: AtomicBool::new(false),
                    read_only: false,
                })
            }
            SegmentId::SysVId(_) => Err(CreateError::InvalidName(crate::NameError {
                name: seg.clone(),
                reason: "a segment is created by key (sysv:KEY); the kernel picks the shmid",
            })),
        }
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
    /// returns [`AccessError::ReadOnly`], and [`Segment::view`] and
    /// [`Segment::ptr_at`] refuse too (an atomic store through a view would
    /// otherwise fault with `SIGSEGV`). Read with [`Segment::read_at`], or
    /// decode the header with [`crate::HeaderInfo::read`].
    #[doc(alias = "O_RDONLY")]
    #[doc(alias = "SHM_RDONLY")]
    pub fn open_read_only(id: &SegmentId) -> Result<Segment, OpenError> {
        Self::open_inner(id, true)
    }

    fn open_inner(id: &SegmentId, read_only: bool) -> Result<Segment, OpenError> {
        let seg = id.to_string();
        let io_err = |op, source| OpenError::Io {
            op,
            segment: seg.clone(),
            source,
        };
        match id {
            SegmentId::Posix(name) => {
                let oflag = if read_only {
                    OFlag::O_RDONLY
                } else {
                    OFlag::O_RDWR
                };
                let fd = posix::shm_open(name.as_c_str(), oflag, 0).map_err(|e| {
                    match e.raw_os_error() {
                        Some(libc::ENOENT) => OpenError::NotFound {
                            segment: seg.clone(),
                        },
                        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
                            segment: seg.clone(),
                            owner: posix_owner(name),
                        },
                        _ => io_err("shm_open", e),
                    }
                })?;
                Self::from_fd_inner(fd, Some(id.clone()), Backend::Posix, read_only)
            }
            SegmentId::SysV(key) => {
                let shmid = sysv::shmget(*key, 0, 0).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOENT) => OpenError::NotFound {
                        segment: seg.clone(),
                    },
                    Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
                        segment: seg.clone(),
                        owner: sysv_owner(*key),
                    },
                    _ => io_err("shmget", e),
                })?;
                Self::attach_sysv(id, shmid, read_only)
            }
            SegmentId::SysVId(shmid) => Self::attach_sysv(id, *shmid, read_only),
        }
    }

    fn attach_sysv(id: &SegmentId, shmid: i32, read_only: bool) -> Result<Segment, OpenError> {
        let seg = id.to_string();
        let st = sysv::ipc_stat(shmid).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EIDRM) => OpenError::NotFound {
                segment: seg.clone(),
            },
            Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
                segment: seg.clone(),
                owner: crate::list::sysv_entries()
                    .ok()
                    .and_then(|v| v.into_iter().find(|e| e.shmid == shmid))
                    .map(|e| Owner {
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                    }),
            },
            _ => OpenError::Io {
                op: "shmctl(IPC_STAT)",
                segment: seg.clone(),
                source: e,
            },
        })?;
        let len = mapped_len(&seg, st.size)?;
        let map = Mapping::shmat(shmid, len, !read_only).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) => OpenError::PermissionDenied {
                segment: seg.clone(),
                owner: Some(Owner {
                    mode: st.mode,
                    uid: st.uid,
                    gid: st.gid,
                }),
            },
            Some(libc::EINVAL) | Some(libc::EIDRM) => OpenError::NotFound {
                segment: seg.clone(),
            },
            _ => OpenError::Io {
                op: "shmat",
                segment: seg.clone(),
                source: e,
            },
        })?;
        Ok(Segment {
            map,
            handle: Handle::SysV(shmid),
            id: Some(id.clone()),
            backend: Backend::SysV,
            owner: false,
            removed: AtomicBool::new(false),
            read_only,
        })
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
        let seg = "memfd";
        let len = check_size(seg, size)?;
        let io_err = |op, source| CreateError::Io {
            op,
            segment: seg.to_owned(),
            source,
        };
        let name = CString::new("shm-rs").unwrap_or_default();
        let fd = posix::memfd_create(&name).map_err(|e| io_err("memfd_create", e))?;
        posix::fallocate(fd.as_fd(), size).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) => CreateError::NoSpace {
                segment: seg.to_owned(),
                size,
                detail: "no memory for the memfd".into(),
            },
            _ => io_err("posix_fallocate", e),
        })?;
        let map = Mapping::mmap(fd.as_fd(), len, true).map_err(|e| io_err("mmap", e))?;
        let read_only = false;
        Ok(Segment {
            map,
            handle: Handle::Fd(fd),
            id: None,
            backend: Backend::Memfd,
            owner: false,
            removed: AtomicBool::new(false),
            read_only,
        })
    }

    /// Maps a shared memory descriptor received from another process (a
    /// memfd, or a `/dev/shm` file). Its size is read with `fstat`.
    pub fn from_fd(fd: OwnedFd) -> Result<Segment, OpenError> {
        Self::from_fd_inner(fd, None, Backend::Memfd, false)
    }

    fn from_fd_inner(
        fd: OwnedFd,
        id: Option<SegmentId>,
        backend: Backend,
        read_only: bool,
    ) -> Result<Segment, OpenError> {
        let seg = id
            .as_ref()
            .map_or_else(|| "memfd".to_owned(), |i| i.to_string());
        let st = posix::fstat(fd.as_fd()).map_err(|e| OpenError::Io {
            op: "fstat",
            segment: seg.clone(),
            source: e,
        })?;
        let len = mapped_len(&seg, st.size)?;
        let map = Mapping::mmap(fd.as_fd(), len, !read_only).map_err(|e| OpenError::Io {
            op: "mmap",
            segment: seg.clone(),
            source: e,
        })?;
        Ok(Segment {
            map,
            handle: Handle::Fd(fd),
            id,
            backend,
            owner: false,
            removed: AtomicBool::new(false),
            read_only,
        })
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
        self.backend
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
        match &self.handle {
            Handle::Fd(fd) => Some(fd.as_fd()),
            Handle::SysV(_) => None,
        }
    }

    /// The System V shmid (`None` for the other backends).
    pub fn shmid(&self) -> Option<i32> {
        match self.handle {
            Handle::SysV(id) => Some(id),
            Handle::Fd(_) => None,
        }
    }

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
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        // As in `read_at`.
        self.copy_in(offset, data)
    }

    fn copy_out(&self, offset: usize, buf: &mut [u8]) -> Result<(), BoundsError> {
        if self.map.read_at(offset, buf) {
            Ok(())
        } else {
            Err(self.bounds(offset, buf.len(), 1))
        }
    }

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
        self.view_fits::<T>(offset)?;
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
        if let (Err(e), Handle::Fd(fd)) = (&r, &self.handle)
            && e.raw_os_error() == Some(libc::EFAULT)
            && posix::fstat(fd.as_fd()).is_ok_and(|st| st.size < self.len() as u64)
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

    fn writable(&self, offset: usize, len: usize) -> Result<(), AccessError> {
        if self.read_only {
            Err(AccessError::ReadOnly {
                segment: self.describe(),
                offset,
                len,
            })
        } else {
            Ok(())
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

    /// Size, owner, mode and, for System V, the kernel's attach count and
    /// PIDs: `fstat` or `shmctl(IPC_STAT)`.
    #[doc(alias = "IPC_STAT")]
    pub fn stat(&self) -> io::Result<Stat> {
        match &self.handle {
            Handle::Fd(fd) => {
                let st = posix::fstat(fd.as_fd())?;
                Ok(Stat {
                    backend: self.backend,
                    size: st.size,
                    uid: st.uid,
                    gid: st.gid,
                    mode: st.mode,
                    key: None,
                    shmid: None,
                    nattch: None,
                    cpid: None,
                    lpid: None,
                    atime: st.atime,
                    dtime: None,
                    ctime: st.ctime,
                })
            }
            Handle::SysV(shmid) => {
                let st = match sysv::ipc_stat(*shmid) {
                    Ok(st) => st,
                    // IPC_STAT needs read permission, which a mode such as
                    // 0200 or 0000 denies even the creator; the kernel's
                    // table in /proc says the same to everyone.
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        let entry = crate::list::sysv_entries()?
                            .into_iter()
                            .find(|x| x.shmid == *shmid)
                            .ok_or(e)?;
                        sysv::SysvStat {
                            key: entry.key,
                            size: entry.size,
                            uid: entry.uid,
                            gid: entry.gid,
                            mode: entry.mode & 0o777,
                            nattch: entry.nattch,
                            cpid: entry.cpid,
                            lpid: entry.lpid,
                            atime: entry.atime,
                            dtime: entry.dtime,
                            ctime: entry.ctime,
                        }
                    }
                    Err(e) => return Err(e),
                };
                Ok(Stat {
                    backend: Backend::SysV,
                    size: st.size,
                    uid: st.uid,
                    gid: st.gid,
                    mode: st.mode,
                    key: Some(st.key),
                    shmid: Some(*shmid),
                    nattch: Some(st.nattch),
                    cpid: Some(st.cpid),
                    lpid: Some(st.lpid),
                    atime: st.atime,
                    dtime: Some(st.dtime),
                    ctime: st.ctime,
                })
            }
        }
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
        match (&self.handle, &self.id) {
            (Handle::Fd(fd), Some(SegmentId::Posix(name))) => {
                use std::os::unix::fs::MetadataExt;
                let Ok(mine) = posix::fstat(fd.as_fd()) else {
                    return true;
                };
                match std::fs::metadata(format!("/dev/shm/{}", name.file_name())) {
                    Ok(md) => md.dev() == mine.dev && md.ino() == mine.ino,
                    Err(e) => e.kind() != io::ErrorKind::NotFound,
                }
            }
            // `IPC_RMID` on an attached segment makes its key private (0).
            (Handle::SysV(shmid), Some(SegmentId::SysV(key))) => {
                match crate::list::sysv_entries() {
                    Ok(entries) => entries
                        .iter()
                        .any(|e| e.shmid == *shmid && e.key == *key && e.key != 0),
                    Err(_) => true,
                }
            }
            _ => false,
        }
    }

    /// Removes the segment's name now (`shm_unlink` / `IPC_RMID`). Mappings,
    /// this one included, stay valid until dropped; System V memory is freed
    /// after the last detach. Afterwards this handle is no longer the owner.
    #[doc(alias = "shm_unlink")]
    #[doc(alias = "IPC_RMID")]
    pub fn remove(&self) -> io::Result<()> {
        let result = match (&self.handle, &self.id) {
            (Handle::Fd(fd), Some(SegmentId::Posix(name))) => {
                // The name may have been removed and given to a new segment
                // since (`shm rm`, then another creator): that one is not
                // ours to remove. (A System V shmid names one segment only.)
                if names_this_file(name, fd.as_fd()) {
                    posix::shm_unlink(name.as_c_str())
                } else {
                    Err(io::Error::from_raw_os_error(libc::ENOENT))
                }
            }
            (Handle::SysV(shmid), _) => sysv::ipc_rmid(*shmid),
            _ => Ok(()),
        };
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
    let seg = id.to_string();
    let map_err = |op, e: io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EINVAL) | Some(libc::EIDRM) => OpenError::NotFound {
            segment: seg.clone(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            segment: seg.clone(),
            owner: match id {
                SegmentId::Posix(n) => posix_owner(n),
                SegmentId::SysV(k) => sysv_owner(*k),
                SegmentId::SysVId(_) => None,
            },
        },
        _ => OpenError::Io {
            op,
            segment: seg.clone(),
            source: e,
        },
    };
    match id {
        SegmentId::Posix(name) => {
            posix::shm_unlink(name.as_c_str()).map_err(|e| map_err("shm_unlink", e))
        }
        SegmentId::SysV(key) => {
            let shmid = sysv::shmget(*key, 0, 0).map_err(|e| map_err("shmget", e))?;
            sysv::ipc_rmid(shmid).map_err(|e| map_err("shmctl(IPC_RMID)", e))
        }
        SegmentId::SysVId(shmid) => {
            sysv::ipc_rmid(*shmid).map_err(|e| map_err("shmctl(IPC_RMID)", e))
        }
    }
}

#[cfg(test)]
// The tests call `Segment::view`, an `unsafe fn`.
#[allow(unsafe_code)]
mod tests {
    //! One test body per behaviour, run for POSIX and System V alike (so
    //! the two backends cannot drift apart unnoticed), plus the few things
    //! only one backend has.

    use super::*;
    use crate::shim::real::AtomicU64;
    use crate::test_util::{Guard, assert_names, exists, posix_id, sysv_id};

    /// Effective uid and gid, field 2 of `Uid:` and `Gid:` in
    /// `/proc/self/status`.
    fn effective(field: &str) -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn euid() -> u32 {
        effective("Uid:")
    }

    /// Create, refuse a second create, open twice at different addresses
    /// that show each other's writes, bounds, stat, remove.
    fn conformance(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let mut seg = Segment::create(&id, 8192, DEFAULT_MODE).expect("create");
        assert_eq!(seg.id(), Some(&id));
        assert_eq!(seg.describe(), id.to_string());
        assert_eq!(seg.backend(), id.backend());
        assert_eq!(seg.len(), 8192);
        assert!(!seg.is_empty());
        assert!(seg.is_owner());

        // A second exclusive create is refused and leaves the first alone.
        match Segment::create(&id, 8192, DEFAULT_MODE) {
            Err(e @ CreateError::AlreadyExists { .. }) => {
                assert_names(&e, &id);
                assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AlreadyExists);
            }
            other => panic!("second create: {other:?}"),
        }

        // Fresh pages are zero.
        let mut buf = [0xffu8; 64];
        seg.read_at(8192 - 64, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 64]);

        // Mapped twice in one process: different addresses, same bytes.
        let mut a = Segment::open(&id).expect("open a");
        let mut b = Segment::open(&id).expect("open b");
        assert!(!a.is_owner() && !b.is_owner());
        assert_eq!(a.len(), 8192);
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_ne!(a.as_ptr(), seg.as_ptr());
        a.write_at(100, b"through a").unwrap();
        let mut got = [0u8; 9];
        b.read_at(100, &mut got).unwrap();
        assert_eq!(&got, b"through a");
        seg.read_at(100, &mut got).unwrap();
        assert_eq!(&got, b"through a");
        b.write_at(8192 - 3, b"end").unwrap();
        let mut end = [0u8; 3];
        a.read_at(8192 - 3, &mut end).unwrap();
        assert_eq!(&end, b"end");
        // A value placed with `view` is shared too.
        // SAFETY: bytes 4096..4104 are touched only through these two
        // views, one per mapping, while they live.
        let (x, y) = unsafe {
            (
                a.view::<AtomicU64>(4096).unwrap(),
                b.view::<AtomicU64>(4096).unwrap(),
            )
        };
        x.store(0xdead_beef, Ordering::SeqCst);
        assert_eq!(y.load(Ordering::SeqCst), 0xdead_beef);
        assert_ne!(std::ptr::from_ref(x), std::ptr::from_ref(y));

        // Out of bounds and misaligned accesses are refused, not performed.
        let e = a.write_at(8190, b"abc").unwrap_err();
        assert_eq!(
            e,
            AccessError::OutOfBounds(BoundsError {
                offset: 8190,
                len: 3,
                segment_len: 8192,
                align: 1
            })
        );
        assert!(e.to_string().contains("8192-byte segment"), "{e}");
        assert!(a.read_at(usize::MAX, &mut [0u8; 2]).is_err());
        assert!(a.read_at(8193, &mut []).is_err());
        assert!(a.read_at(8192, &mut []).is_ok());
        // SAFETY: no other reference of this process covers the last
        // eight bytes of `a` or its bytes 4..12 (`x` is dead).
        unsafe {
            match a.view::<AtomicU64>(8188) {
                Err(AccessError::OutOfBounds(b)) => assert_eq!(b.align, 8),
                other => panic!("view at 8188: {other:?}"),
            }
            assert!(a.view::<AtomicU64>(8192 - 8).is_ok());
            assert!(a.view::<AtomicU64>(4).is_err(), "misaligned view");
        }
        assert!(a.ptr_at(8192, 1).is_err());
        assert_eq!(a.ptr_at(10, 1).unwrap(), a.as_ptr().wrapping_add(10));
        let mut after = [0u8; 2];
        a.read_at(8190, &mut after).unwrap();
        assert_eq!(after, [b'n', b'd'], "a refused write wrote nothing");

        let st = seg.stat().expect("stat");
        assert_eq!(st.backend, id.backend());
        assert_eq!(st.size, 8192);
        assert_eq!(st.mode, DEFAULT_MODE);
        assert_eq!(st.uid, euid());

        // Remove: the name goes, the mappings stay usable until dropped.
        seg.remove().expect("remove");
        assert!(!seg.is_owner());
        assert!(!exists(&id));
        a.write_at(0, b"still mapped").unwrap();
        let mut still = [0u8; 12];
        b.read_at(0, &mut still).unwrap();
        assert_eq!(&still, b"still mapped");
        match Segment::open(&id) {
            Err(e @ OpenError::NotFound { .. }) => {
                assert_names(&e, &id);
                assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
            }
            other => panic!("open after remove: {other:?}"),
        }
        match crate::remove(&id) {
            Err(e @ OpenError::NotFound { .. }) => assert_names(&e, &id),
            other => panic!("second remove: {other:?}"),
        }
        drop((seg, a, b));
        // The name is free again.
        let mut again = Segment::create(&id, 4096, DEFAULT_MODE).expect("re-create");
        let mut zero = [0xffu8; 12];
        again.read_at(0, &mut zero).unwrap();
        assert_eq!(zero, [0u8; 12], "a new segment, not the old bytes");
    }

    fn bad_sizes(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        for size in [0, MAX_SEGMENT_SIZE + 1, u64::MAX] {
            match Segment::create(&id, size, DEFAULT_MODE) {
                Err(e @ CreateError::InvalidSize { .. }) => {
                    assert_names(&e, &id);
                    assert!(e.to_string().contains(&size.to_string()), "{e}");
                    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
                }
                other => panic!("size {size}: {other:?}"),
            }
            match Segment::open_or_create(&id, size, DEFAULT_MODE) {
                Err(OpenError::Create(CreateError::InvalidSize { .. })) => {}
                other => panic!("open_or_create size {size}: {other:?}"),
            }
            assert!(!exists(&id), "a refused size left a segment behind");
        }
        // The smallest size works.
        let one = Segment::create(&id, 1, DEFAULT_MODE).expect("1 byte");
        assert_eq!(one.len(), 1);
        assert_eq!(one.stat().unwrap().size, 1);
    }

    fn open_missing(id: SegmentId) {
        match Segment::open(&id) {
            Err(e @ OpenError::NotFound { .. }) => {
                assert_names(&e, &id);
                assert!(e.to_string().contains("shm ls"), "{e}");
            }
            other => panic!("open of a missing segment: {other:?}"),
        }
        match Segment::open_with(&id, CreateMode::OpenExisting, 64, DEFAULT_MODE) {
            Err(OpenError::NotFound { .. }) => {}
            other => panic!("OpenExisting of a missing segment: {other:?}"),
        }
        match crate::remove(&id) {
            Err(e @ OpenError::NotFound { .. }) => assert_names(&e, &id),
            other => panic!("remove of a missing segment: {other:?}"),
        }
    }

    fn open_or_create_says_who_created(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let (mut first, created) = Segment::open_or_create(&id, 4096, DEFAULT_MODE).unwrap();
        assert!(created);
        assert!(first.is_owner());
        first.write_at(0, b"first").unwrap();
        // A second call opens what is there, whatever size it asks for.
        let (mut second, created) = Segment::open_or_create(&id, 999, DEFAULT_MODE).unwrap();
        assert!(!created);
        assert!(!second.is_owner());
        assert_eq!(second.len(), 4096);
        let mut got = [0u8; 5];
        second.read_at(0, &mut got).unwrap();
        assert_eq!(&got, b"first");
        let (third, created) =
            Segment::open_with(&id, CreateMode::OpenOrCreate, 4096, DEFAULT_MODE).unwrap();
        assert!(!created && !third.is_owner());
        let (fourth, created) =
            Segment::open_with(&id, CreateMode::OpenExisting, 1, DEFAULT_MODE).unwrap();
        assert!(!created && !fourth.is_owner());
        match Segment::open_with(&id, CreateMode::CreateExclusive, 4096, DEFAULT_MODE) {
            Err(OpenError::Create(CreateError::AlreadyExists { .. })) => {}
            other => panic!("CreateExclusive of an existing segment: {other:?}"),
        }
    }

    fn owner_drop_removes(new_id: fn() -> SegmentId) {
        // The owner's drop removes the name, even while others map it.
        let id = new_id();
        let _g = Guard::new(&[&id]);
        let seg = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
        let other = Segment::open(&id).unwrap();
        drop(other);
        drop(seg);
        assert!(!exists(&id), "the owner's drop removes the segment");

        // An opener's drop does not.
        let seg = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
        drop(Segment::open(&id).unwrap());
        assert!(exists(&id), "an opener's drop removes nothing");

        // Giving the duty up leaves it behind.
        let mut seg = seg;
        seg.set_owner(false);
        assert!(!seg.is_owner());
        seg.write_at(0, b"left").unwrap();
        drop(seg);
        assert!(exists(&id), "set_owner(false) leaves the segment");

        // Another process (here: handle) takes the duty over.
        let mut heir = Segment::open(&id).unwrap();
        let mut got = [0u8; 4];
        heir.read_at(0, &mut got).unwrap();
        assert_eq!(&got, b"left");
        heir.set_owner(true);
        assert!(heir.is_owner());
        drop(heir);
        assert!(!exists(&id), "the heir's drop removes it");

        // The free function removes by id without mapping.
        let mut seg = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
        seg.set_owner(false);
        drop(seg);
        crate::remove(&id).expect("remove by id");
        assert!(!exists(&id));
    }

    fn mode_is_exact(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        for mode in [0o600, 0o640, 0o644, 0o660, 0o666, 0o400, 0o040, 0o000] {
            let mut seg = Segment::create(&id, 4096, mode)
                .unwrap_or_else(|e| panic!("create with mode {mode:o}: {e}"));
            assert_eq!(seg.stat().unwrap().mode, mode, "mode {mode:o}");
            // The creator maps it read-write whatever the mode.
            seg.write_at(0, b"rw").unwrap();
            if let SegmentId::Posix(name) = &id {
                use std::os::unix::fs::MetadataExt;
                let md = std::fs::metadata(format!("/dev/shm/{}", name.file_name())).unwrap();
                assert_eq!(md.mode() & 0o7777, mode, "file mode {mode:o}");
            }
            seg.remove().unwrap();
        }
        // Bits beyond the permissions are not passed on.
        let seg = Segment::create(&id, 4096, 0o7640).unwrap();
        assert_eq!(seg.stat().unwrap().mode, 0o640);
    }

    /// A read-only handle reads what the writer wrote, and refuses every
    /// write with a typed error (never a `SIGSEGV` on the `PROT_READ`
    /// pages): `write_at`, `view` (an atomic store through it would fault)
    /// and `ptr_at`.
    fn read_only_handles(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let mut seg = Segment::create(&id, 8192, 0o644).unwrap();
        seg.write_at(100, b"seen").unwrap();
        let mut ro = Segment::open_read_only(&id).expect("open read-only");
        assert!(ro.is_read_only() && !seg.is_read_only() && !ro.is_owner());
        assert_eq!(ro.len(), 8192);
        let mut got = [0u8; 4];
        ro.read_at(100, &mut got).unwrap();
        assert_eq!(&got, b"seen");
        match ro.write_at(100, b"nope") {
            Err(e @ AccessError::ReadOnly { .. }) => {
                assert!(e.to_string().contains("opened read-only"), "{e}");
                assert!(e.to_string().contains(&id.to_string()), "{e}");
                assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);
            }
            other => panic!("write through a read-only handle: {other:?}"),
        }
        assert!(matches!(
            // SAFETY: refused before any reference is formed (and `ro`
            // gives out none).
            unsafe { ro.view::<AtomicU64>(0) },
            Err(AccessError::ReadOnly { .. })
        ));
        assert!(matches!(ro.ptr_at(0, 1), Err(AccessError::ReadOnly { .. })));
        // Populating reads nothing: allowed on either handle.
        ro.populate().expect("populate a read-only mapping");
        seg.populate().expect("populate a read-write mapping");
        assert!(
            ro.read_at(8190, &mut [0u8; 3]).is_err(),
            "bounds still hold"
        );
        // Later writes are seen through the read-only mapping.
        seg.write_at(100, b"more").unwrap();
        ro.read_at(100, &mut got).unwrap();
        assert_eq!(&got, b"more");
        assert_eq!(ro.stat().unwrap().size, 8192);
        drop(ro);
        match Segment::open_read_only(&crate::test_util::posix_id("ro-missing")) {
            Err(OpenError::NotFound { .. }) => {}
            other => panic!("read-only open of a missing segment: {other:?}"),
        }
    }

    macro_rules! for_both_backends {
        ($($test:ident => $body:expr;)*) => {
            mod on_posix {
                use super::*;
                $(#[test] fn $test() { ($body)(|| posix_id(stringify!($test))) })*
            }
            mod on_sysv {
                use super::*;
                $(#[test] fn $test() { ($body)(sysv_id) })*
            }
        };
    }

    for_both_backends! {
        conformance_suite => |new_id: fn() -> SegmentId| conformance(new_id());
        zero_and_absurd_sizes_are_refused => |new_id: fn() -> SegmentId| bad_sizes(new_id());
        opening_a_missing_segment_is_not_found => |new_id: fn() -> SegmentId| open_missing(new_id());
        open_or_create_says_whether_it_created =>
            |new_id: fn() -> SegmentId| open_or_create_says_who_created(new_id());
        ownership_is_explicit => owner_drop_removes;
        the_mode_is_applied_exactly => |new_id: fn() -> SegmentId| mode_is_exact(new_id());
        read_only_handles_refuse_writes_with_a_typed_error =>
            |new_id: fn() -> SegmentId| read_only_handles(new_id());
    }

    #[test]
    fn the_umask_does_not_narrow_the_mode() {
        use nix::sys::stat::{Mode, umask};
        use std::os::unix::fs::MetadataExt;
        let id = posix_id("umask");
        let _g = Guard::new(&[&id]);
        let SegmentId::Posix(name) = &id else {
            unreachable!()
        };
        let path = format!("/dev/shm/{}", name.file_name());
        // Every create in this crate sets the mode with fchmod, so changing
        // the process-wide umask cannot disturb the tests running beside.
        let old = umask(Mode::from_bits_truncate(0o022));
        let r022 = Segment::create(&id, 4096, 0o640).map(|s| {
            let m = (
                s.stat().map(|s| s.mode),
                std::fs::metadata(&path).map(|m| m.mode()),
            );
            drop(s);
            m
        });
        umask(Mode::from_bits_truncate(0o077));
        let r077 = Segment::create(&id, 4096, 0o666).map(|s| {
            let m = (
                s.stat().map(|s| s.mode),
                std::fs::metadata(&path).map(|m| m.mode()),
            );
            drop(s);
            m
        });
        let r_default = Segment::create(&id, 4096, DEFAULT_MODE).map(|s| {
            let m = std::fs::metadata(&path).map(|m| m.mode());
            drop(s);
            m
        });
        umask(old);
        let (st, md) = r022.unwrap();
        assert_eq!(st.unwrap(), 0o640);
        assert_eq!(md.unwrap() & 0o7777, 0o640);
        let (st, md) = r077.unwrap();
        assert_eq!(st.unwrap(), 0o666, "umask 077 must not narrow 0666");
        assert_eq!(md.unwrap() & 0o7777, 0o666);
        assert_eq!(r_default.unwrap().unwrap() & 0o7777, 0o600);
        assert_eq!(DEFAULT_MODE, 0o600);
    }

    #[test]
    fn an_owner_does_not_remove_a_new_segment_under_its_old_name() {
        let id = posix_id("reused");
        let _g = Guard::new(&[&id]);
        let old = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
        // Someone removes it (`shm rm`) and creates another under the name.
        crate::remove(&id).unwrap();
        let mut new = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
        new.set_owner(false);
        new.write_at(0, b"new").unwrap();
        assert!(old.is_owner());
        match old.remove() {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            Ok(()) => panic!("removed a segment that is not its own"),
        }
        drop(old);
        let mut reopened = Segment::open(&id).expect("the new segment survives the old owner");
        let mut got = [0u8; 3];
        reopened.read_at(0, &mut got).unwrap();
        assert_eq!(&got, b"new");
        // Its own handle still removes it.
        drop(reopened);
        new.remove().expect("the new segment's handle removes it");
        assert!(!exists(&id));
    }

    #[test]
    fn sysv_stat_reports_the_kernel_fields() {
        let id = sysv_id();
        let _g = Guard::new(&[&id]);
        let SegmentId::SysV(key) = id else {
            unreachable!()
        };
        let mut seg = Segment::create(&id, 10_000, 0o640).unwrap();
        let st = seg.stat().unwrap();
        assert_eq!(st.key, Some(key));
        assert_eq!(st.shmid, seg.shmid());
        assert!(seg.shmid().is_some());
        assert!(seg.fd().is_none());
        assert_eq!(st.size, 10_000);
        assert_eq!(st.mode, 0o640);
        assert_eq!(st.nattch, Some(1));
        assert_eq!(st.cpid, Some(std::process::id() as i32));
        assert_eq!(st.lpid, Some(std::process::id() as i32));
        assert_eq!(st.dtime, Some(0));
        assert!(st.ctime > 0 && st.atime > 0);
        {
            let other = Segment::open(&id).unwrap();
            assert_eq!(other.stat().unwrap().nattch, Some(2));
            assert_eq!(other.shmid(), seg.shmid());
        }
        let st = seg.stat().unwrap();
        assert_eq!(st.nattch, Some(1), "the drop detached");
        assert!(st.dtime.unwrap() > 0);

        // The same segment by shmid.
        let by_id = SegmentId::SysVId(seg.shmid().unwrap());
        let mut third = Segment::open(&by_id).unwrap();
        assert_eq!(third.len(), 10_000);
        assert_eq!(third.describe(), by_id.to_string());
        seg.write_at(5, b"key").unwrap();
        let mut got = [0u8; 3];
        third.read_at(5, &mut got).unwrap();
        assert_eq!(&got, b"key");
        match Segment::create(&by_id, 10, DEFAULT_MODE) {
            Err(e @ CreateError::InvalidName(_)) => assert_names(&e, &by_id),
            other => panic!("create by shmid: {other:?}"),
        }
        drop(third);
        // Removed by key, attachments survive; the key no longer finds it.
        crate::remove(&id).unwrap();
        assert!(!exists(&id));
        match Segment::open(&by_id) {
            // Marked for removal but still attached by `seg`: the kernel
            // may still let a shmid attach; after the last detach it is gone.
            Ok(s) => drop(s),
            Err(OpenError::NotFound { .. }) => {}
            Err(e) => panic!("open by shmid after remove: {e}"),
        }
        let shmid = seg.shmid().unwrap();
        drop(seg);
        match Segment::open(&SegmentId::SysVId(shmid)) {
            Err(OpenError::NotFound { .. }) => {}
            other => panic!("open by shmid after the last detach: {other:?}"),
        }
    }

    #[test]
    fn posix_stat_and_fd() {
        let id = posix_id("stat");
        let _g = Guard::new(&[&id]);
        let seg = Segment::create(&id, 12_345, 0o600).unwrap();
        assert!(seg.fd().is_some() && seg.shmid().is_none());
        let st = seg.stat().unwrap();
        assert_eq!(
            (st.backend, st.size, st.mode, st.uid),
            (Backend::Posix, 12_345, 0o600, euid())
        );
        assert_eq!(st.gid, effective("Gid:"));
        assert_eq!(
            (st.key, st.shmid, st.nattch, st.cpid, st.lpid, st.dtime),
            (None, None, None, None, None, None)
        );
        // `posix_fallocate` reserved the pages: the blocks are there.
        use std::os::unix::fs::MetadataExt;
        let SegmentId::Posix(name) = &id else {
            unreachable!()
        };
        let md = std::fs::metadata(format!("/dev/shm/{}", name.file_name())).unwrap();
        assert_eq!(md.len(), 12_345);
        assert!(md.blocks() * 512 >= 12_345, "blocks {}", md.blocks());
    }

    #[test]
    fn populate_faults_pages_in_and_notices_a_truncation() {
        let id = posix_id("populate");
        let _g = Guard::new(&[&id]);
        let mut seg = Segment::create(&id, 64 * 1024, DEFAULT_MODE).unwrap();
        seg.populate().expect("populate a whole segment");
        assert!(!seg.is_truncated());
        let SegmentId::Posix(name) = &id else {
            unreachable!()
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{}", name.file_name()))
            .and_then(|f| f.set_len(4096))
            .unwrap();
        // The kernel finds the lost pages; nothing was touched.
        let e = seg.populate().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT), "{e}");
        assert!(seg.is_truncated(), "populate records the truncation");
        // The guard still turns a touch of a lost page into private zeros.
        let mut got = [0xffu8; 4];
        seg.read_at(60_000, &mut got).unwrap();
        assert_eq!(got, [0; 4]);
    }

    #[test]
    fn anonymous_segments_share_through_their_descriptor() {
        for size in [0, MAX_SEGMENT_SIZE + 1] {
            match Segment::anonymous(size) {
                Err(CreateError::InvalidSize { segment, .. }) => assert_eq!(segment, "memfd"),
                other => panic!("anonymous({size}): {other:?}"),
            }
        }
        let mut seg = Segment::anonymous(4096).unwrap();
        assert_eq!(seg.backend(), Backend::Memfd);
        assert_eq!(seg.id(), None);
        assert_eq!(seg.describe(), "memfd");
        assert!(!seg.is_owner());
        seg.set_owner(true);
        assert!(
            !seg.is_owner(),
            "an anonymous segment has no name to remove"
        );
        let fd = seg.fd().unwrap().try_clone_to_owned().unwrap();
        let mut other = Segment::from_fd(fd).unwrap();
        assert_eq!(other.len(), 4096);
        assert_ne!(other.as_ptr(), seg.as_ptr());
        seg.write_at(4000, b"memfd").unwrap();
        let mut got = [0u8; 5];
        other.read_at(4000, &mut got).unwrap();
        assert_eq!(&got, b"memfd");
        assert_eq!(seg.stat().unwrap().size, 4096);
        seg.remove().unwrap();
    }

    #[test]
    fn open_or_create_gives_up_on_a_name_left_empty() {
        // A creator that died between `shm_open` and `posix_fallocate`
        // leaves an empty name; open_or_create must report it, not spin.
        let id = posix_id("empty");
        let _g = Guard::new(&[&id]);
        let SegmentId::Posix(name) = &id else {
            unreachable!()
        };
        let fd = posix::shm_open(
            name.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            0o600,
        )
        .unwrap();
        drop(fd);
        match Segment::open(&id) {
            Err(e @ OpenError::TooSmall { size: 0, .. }) => assert_names(&e, &id),
            other => panic!("open of an empty name: {other:?}"),
        }
        match Segment::open_or_create(&id, 4096, DEFAULT_MODE) {
            Err(e @ OpenError::TooSmall { size: 0, .. }) => assert_names(&e, &id),
            other => panic!("open_or_create of an empty name: {other:?}"),
        }
    }
}
