//! The memfd backend: an anonymous shared file (`memfd_create`), shared by
//! `fork` or by passing its descriptor. It has no name, so nothing to open
//! by id and nothing to remove.

use std::ffi::CString;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;

use super::fd::File;
use crate::error::CreateError;
use crate::sys::map::Mapping;
use crate::sys::posix;

/// `memfd_create`, `posix_fallocate(size)`, `mmap`.
pub(crate) fn create(size: u64, len: NonZeroUsize) -> Result<(File, Mapping), CreateError> {
    let seg = "memfd";
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
    Ok((File::new(fd), map))
}
