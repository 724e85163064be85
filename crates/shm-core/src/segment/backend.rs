//! The backends behind [`Segment`](crate::Segment), one module each
//! ([`posix`], [`sysv`], [`memfd`]; [`fd`] is what POSIX and memfd share),
//! and [`Handle`], the one enum a segment holds. Every `match` on the
//! backend is here: a `Segment` method is written once and asks its
//! handle.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;

use crate::error::{CreateError, OpenError};
use crate::sys::map::Mapping;
use crate::{ProcessId, SegmentId};

pub(crate) mod fd;
pub(crate) mod memfd;
pub(crate) mod posix;
pub(crate) mod sysv;

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

/// What a segment that is not ready yet says about its creator (the init
/// handshake's question, answered by the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Creator {
    /// Whether the creator is still at work.
    pub(crate) alive: bool,
    /// Its PID as far as known (0: not known).
    pub(crate) pid: u32,
    /// Whether the kernel recorded the creator (System V `cpid`), so that
    /// even a segment whose header was never written names one.
    pub(crate) recorded_by_kernel: bool,
}

/// The backend half of a mapped segment: what stays open besides the
/// mapping, and the calls that differ per backend.
#[derive(Debug)]
pub(crate) enum Handle {
    /// A file in `/dev/shm`, by name.
    Posix(posix::Posix),
    /// A System V segment, by shmid.
    SysV(sysv::SysV),
    /// An anonymous file (or any descriptor received from elsewhere).
    Memfd(fd::File),
}

/// The mapped length for a size read from the kernel; 0 cannot be mapped.
pub(crate) fn mapped_len(segment: &str, size: u64) -> Result<NonZeroUsize, OpenError> {
    usize::try_from(size)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| OpenError::TooSmall {
            segment: segment.to_owned(),
            size,
            needed: 1,
        })
}

impl Handle {
    /// Creates `id` exclusively and maps it read-write (`hold_lock`: the
    /// POSIX descriptor holds the handshake's OFD lock).
    pub(crate) fn create(
        id: &SegmentId,
        size: u64,
        len: NonZeroUsize,
        mode: u32,
        hold_lock: bool,
    ) -> Result<(Handle, Mapping), CreateError> {
        let seg = id.to_string();
        match id {
            SegmentId::Posix(name) => posix::create(name, &seg, size, len, mode, hold_lock)
                .map(|(h, m)| (Handle::Posix(h), m)),
            SegmentId::SysV(key) => {
                sysv::create(*key, &seg, size, len, mode).map(|(h, m)| (Handle::SysV(h), m))
            }
            SegmentId::SysVId(_) => Err(CreateError::InvalidName(crate::NameError {
                name: seg,
                reason: "a segment is created by key (sysv:KEY); the kernel picks the shmid",
            })),
        }
    }

    /// An anonymous (memfd) segment, mapped read-write.
    pub(crate) fn anonymous(
        size: u64,
        len: NonZeroUsize,
    ) -> Result<(Handle, Mapping), CreateError> {
        memfd::create(size, len).map(|(f, m)| (Handle::Memfd(f), m))
    }

    /// Opens `id` and maps all of it.
    pub(crate) fn open(id: &SegmentId, read_only: bool) -> Result<(Handle, Mapping), OpenError> {
        let seg = id.to_string();
        match id {
            SegmentId::Posix(name) => {
                posix::open(name, &seg, read_only).map(|(h, m)| (Handle::Posix(h), m))
            }
            SegmentId::SysV(key) => {
                let shmid = sysv::lookup(*key, &seg)?;
                sysv::attach(shmid, Some(*key), &seg, read_only).map(|(h, m)| (Handle::SysV(h), m))
            }
            SegmentId::SysVId(shmid) => {
                sysv::attach(*shmid, None, &seg, read_only).map(|(h, m)| (Handle::SysV(h), m))
            }
        }
    }

    /// Maps a descriptor received from elsewhere.
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd) -> Result<(Handle, Mapping), OpenError> {
        fd::File::map(fd, "memfd", false).map(|(f, m)| (Handle::Memfd(f), m))
    }

    /// Which backend.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Handle::Posix(_) => Backend::Posix,
            Handle::SysV(_) => Backend::SysV,
            Handle::Memfd(_) => Backend::Memfd,
        }
    }

    /// The descriptor of a POSIX or memfd segment.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.file().map(fd::File::fd)
    }

    fn file(&self) -> Option<&fd::File> {
        match self {
            Handle::Posix(p) => Some(&p.file),
            Handle::Memfd(f) => Some(f),
            Handle::SysV(_) => None,
        }
    }

    /// The System V shmid.
    pub(crate) fn shmid(&self) -> Option<i32> {
        match self {
            Handle::SysV(s) => Some(s.shmid()),
            Handle::Posix(_) | Handle::Memfd(_) => None,
        }
    }

    /// `fstat` or `shmctl(IPC_STAT)`.
    pub(crate) fn stat(&self) -> io::Result<Stat> {
        match self {
            Handle::Posix(p) => p.file.stat(Backend::Posix),
            Handle::Memfd(f) => f.stat(Backend::Memfd),
            Handle::SysV(s) => s.stat(),
        }
    }

    /// Whether the file is now shorter than `len` (System V segments
    /// cannot shrink).
    pub(crate) fn shorter_than(&self, len: usize) -> bool {
        self.file().is_some_and(|f| f.shorter_than(len))
    }

    /// Whether the creator of a segment not ready yet is still at work.
    pub(crate) fn creator(&self, header_pid: Option<ProcessId>) -> Creator {
        match self {
            Handle::Posix(p) => p.file.creator(header_pid),
            Handle::Memfd(f) => f.creator(header_pid),
            Handle::SysV(s) => s.creator(header_pid),
        }
    }

    /// The creator is done: drops what told openers it was at work.
    pub(crate) fn end_creation(&self) {
        if let Some(f) = self.file() {
            f.end_creation();
        }
    }

    /// Whether the name still refers to this segment.
    pub(crate) fn is_named(&self) -> bool {
        match self {
            Handle::Posix(p) => p.is_named(),
            Handle::SysV(s) => s.is_named(),
            Handle::Memfd(_) => false,
        }
    }

    /// Removes the name (nothing for memfd).
    pub(crate) fn remove(&self) -> io::Result<()> {
        match self {
            Handle::Posix(p) => p.remove(),
            Handle::SysV(s) => s.remove(),
            Handle::Memfd(_) => Ok(()),
        }
    }
}

/// Whether a creator is at work on `id`, a name that exists but has no
/// size yet (POSIX only: a System V segment is sized when it is made).
pub(crate) fn creator_holds(id: &SegmentId) -> bool {
    match id {
        SegmentId::Posix(name) => posix::creator_holds(name),
        SegmentId::SysV(_) | SegmentId::SysVId(_) => false,
    }
}

/// Removes a segment by id without mapping it.
pub(crate) fn remove(id: &SegmentId) -> Result<(), OpenError> {
    let seg = id.to_string();
    let map_err = |op, e: io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EINVAL) | Some(libc::EIDRM) => OpenError::NotFound {
            segment: seg.clone(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            segment: seg.clone(),
            owner: match id {
                SegmentId::Posix(n) => posix::owner(n),
                SegmentId::SysV(k) => sysv::owner(*k),
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
        SegmentId::Posix(name) => posix::remove(name).map_err(|e| map_err("shm_unlink", e)),
        SegmentId::SysV(key) => {
            let shmid = sysv::shmid_of(*key).map_err(|e| map_err("shmget", e))?;
            sysv::remove(shmid).map_err(|e| map_err("shmctl(IPC_RMID)", e))
        }
        SegmentId::SysVId(shmid) => {
            sysv::remove(*shmid).map_err(|e| map_err("shmctl(IPC_RMID)", e))
        }
    }
}
