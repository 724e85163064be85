//! What the POSIX and memfd backends share: a descriptor of a shared
//! memory file, kept open for `fstat` and the OFD lock of the init
//! handshake, and mapped with `mmap`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Backend, Creator, Stat};
use crate::ProcessId;
use crate::error::OpenError;
use crate::sys::map::Mapping;
use crate::sys::posix;

/// An open shared memory file (`/dev/shm/NAME` or a memfd).
#[derive(Debug)]
pub(crate) struct File {
    fd: OwnedFd,
}

impl File {
    /// Wraps a descriptor that is not mapped yet.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        File { fd }
    }

    /// Reads the size with `fstat` and maps all of it (`PROT_READ` only
    /// when `read_only`).
    pub(crate) fn map(
        fd: OwnedFd,
        seg: &str,
        read_only: bool,
    ) -> Result<(Self, Mapping), OpenError> {
        let io_err = |op, source| OpenError::Io {
            op,
            segment: seg.to_owned(),
            source,
        };
        let st = posix::fstat(fd.as_fd()).map_err(|e| io_err("fstat", e))?;
        let len = super::mapped_len(seg, st.size)?;
        let map = Mapping::mmap(fd.as_fd(), len, !read_only).map_err(|e| io_err("mmap", e))?;
        Ok((File { fd }, map))
    }

    /// The descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `fstat`, as a [`Stat`] of `backend`.
    pub(crate) fn stat(&self, backend: Backend) -> io::Result<Stat> {
        let st = posix::fstat(self.fd())?;
        Ok(Stat {
            backend,
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

    /// Whether the file is now shorter than `len` bytes (another process
    /// truncated it); `false` if `fstat` fails.
    pub(crate) fn shorter_than(&self, len: usize) -> bool {
        posix::fstat(self.fd()).is_ok_and(|st| st.size < len as u64)
    }

    /// The creator holds an OFD write lock from `shm_open` to ready; the
    /// kernel drops it when the creator dies, so "locked by another open
    /// file description" means alive. The PID is the header's.
    pub(crate) fn creator(&self, header_pid: Option<ProcessId>) -> Creator {
        Creator {
            alive: posix::ofd_locked_by_other(self.fd()).unwrap_or(false),
            pid: header_pid.map_or(0, |p| p.pid),
            recorded_by_kernel: false,
        }
    }

    /// Drops the creator's OFD lock (errors ignored: the lock only matters
    /// while the segment is not ready, and an opener that sees ready never
    /// looks at it).
    pub(crate) fn end_creation(&self) {
        let _ = posix::ofd_unlock(self.fd());
    }
}
