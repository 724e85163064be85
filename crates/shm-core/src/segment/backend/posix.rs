//! The POSIX backend: `shm_open`, `fchmod`, `posix_fallocate`, `mmap`,
//! `shm_unlink`: a file in `/dev/shm`, named `/NAME`.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use nix::fcntl::OFlag;

use super::fd::File;
use crate::PosixName;
use crate::error::{CreateError, OpenError, Owner};
use crate::sys::map::Mapping;
use crate::sys::posix;

/// A mapped POSIX segment: its descriptor and the name it was made or
/// opened under.
#[derive(Debug)]
pub(crate) struct Posix {
    pub(crate) file: File,
    name: PosixName,
}

/// `/dev/shm/NAME`.
fn path(name: &PosixName) -> String {
    format!("/dev/shm/{}", name.file_name())
}

/// Creates `name` exclusively and maps it read-write: `shm_open(O_CREAT |
/// O_EXCL)`, the OFD write lock if `hold_lock`, `fchmod(mode)`,
/// `posix_fallocate(size)` (`ftruncate` where the filesystem has no
/// fallocate), `mmap`. A failure after `shm_open` removes the name again.
pub(crate) fn create(
    name: &PosixName,
    seg: &str,
    size: u64,
    len: NonZeroUsize,
    mode: u32,
    hold_lock: bool,
) -> Result<(Posix, Mapping), CreateError> {
    let io_err = |op, source| CreateError::Io {
        op,
        segment: seg.to_owned(),
        source,
    };
    let fd = posix::shm_open(
        name.as_c_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        mode,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => CreateError::AlreadyExists {
            segment: seg.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => CreateError::PermissionDenied {
            segment: seg.to_owned(),
            owner: owner(name),
        },
        Some(libc::ENOSPC) => CreateError::NoSpace {
            segment: seg.to_owned(),
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
            segment: seg.to_owned(),
            size,
            detail: dev_shm_space(),
        })),
        // A filesystem without fallocate: size it the old way.
        Some(libc::EOPNOTSUPP) => {
            posix::ftruncate(fd.as_fd(), size).map_err(|e| unlink(io_err("ftruncate", e)))
        }
        _ => Err(unlink(io_err("posix_fallocate", e))),
    })?;
    let map = Mapping::mmap(fd.as_fd(), len, true).map_err(|e| unlink(io_err("mmap", e)))?;
    Ok((
        Posix {
            file: File::new(fd),
            name: name.clone(),
        },
        map,
    ))
}

/// Opens `name` (`O_RDWR`, or `O_RDONLY` when `read_only`) and maps all of
/// it, its size read with `fstat` first.
pub(crate) fn open(
    name: &PosixName,
    seg: &str,
    read_only: bool,
) -> Result<(Posix, Mapping), OpenError> {
    let oflag = if read_only {
        OFlag::O_RDONLY
    } else {
        OFlag::O_RDWR
    };
    let fd = posix::shm_open(name.as_c_str(), oflag, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound {
            segment: seg.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            segment: seg.to_owned(),
            owner: owner(name),
        },
        _ => OpenError::Io {
            op: "shm_open",
            segment: seg.to_owned(),
            source: e,
        },
    })?;
    let (file, map) = File::map(fd, seg, read_only)?;
    Ok((
        Posix {
            file,
            name: name.clone(),
        },
        map,
    ))
}

/// `shm_unlink(name)`, by name, without opening it.
pub(crate) fn remove(name: &PosixName) -> io::Result<()> {
    posix::shm_unlink(name.as_c_str())
}

/// Owner and mode of a POSIX segment, read with `stat` (which needs no
/// permission on the file itself).
pub(crate) fn owner(name: &PosixName) -> Option<Owner> {
    let md = std::fs::metadata(path(name)).ok()?;
    Some(Owner {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

/// Whether a creator is at work on `name`, which exists but has no size
/// yet: it holds the OFD lock of the handshake from `shm_open` on.
pub(crate) fn creator_holds(name: &PosixName) -> bool {
    posix::shm_open(name.as_c_str(), OFlag::O_RDONLY, 0)
        .and_then(|fd| posix::ofd_locked_by_other(fd.as_fd()))
        .unwrap_or(false)
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

impl Posix {
    /// The descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.fd()
    }

    /// Whether `/dev/shm/NAME` is still the file this descriptor has open:
    /// `Err` when that cannot be told (`fstat` failed, or the name is
    /// unreadable), with the error of the look at the name if there was
    /// one.
    fn names_this_file(&self) -> Result<bool, Option<io::Error>> {
        let mine = posix::fstat(self.fd()).map_err(|_| None)?;
        match std::fs::metadata(path(&self.name)) {
            Ok(md) => Ok(md.dev() == mine.dev && md.ino() == mine.ino),
            Err(e) => Err(Some(e)),
        }
    }

    /// Whether the name still refers to this file (errors count as `true`,
    /// except that a missing name is `false`).
    pub(crate) fn is_named(&self) -> bool {
        match self.names_this_file() {
            Ok(same) => same,
            Err(Some(e)) => e.kind() != io::ErrorKind::NotFound,
            Err(None) => true,
        }
    }

    /// `shm_unlink` of the name, if it still names this file. The name may
    /// have been removed and given to a new segment since (`shm rm`, then
    /// another creator): that one is not ours to remove (`ENOENT`).
    pub(crate) fn remove(&self) -> io::Result<()> {
        // Cannot tell, gone already or unreadable: remove by name and let
        // `shm_unlink` say which.
        if self.names_this_file().unwrap_or(true) {
            remove(&self.name)
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        }
    }
}
