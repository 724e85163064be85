//! POSIX shared memory: `shm_open`, `ftruncate`/`posix_fallocate`, `fstat`,
//! `shm_unlink`, `memfd_create`, and the OFD lock of the init handshake.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::cvt;

fn nix_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// `shm_open(name, oflag, mode)`: opens or creates `/dev/shm/<name>`.
///
/// `O_CLOEXEC` is always added (glibc adds it too).
pub(crate) fn shm_open(name: &CStr, oflag: OFlag, mode: u32) -> io::Result<OwnedFd> {
    nix::sys::mman::shm_open(
        name,
        oflag | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(nix_err)
}

/// `shm_unlink(name)`: removes the name; mappings stay valid.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    nix::sys::mman::shm_unlink(name).map_err(nix_err)
}

/// `memfd_create(name, MFD_CLOEXEC)`: an anonymous shared file.
pub(crate) fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the call has no other
    // memory arguments.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What `fstat` says about a shared memory file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileStat {
    pub(crate) size: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    pub(crate) atime: i64,
    pub(crate) ctime: i64,
    /// Device and inode: which file this descriptor is, whatever its name
    /// now points to.
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    let st = nix::sys::stat::fstat(fd).map_err(nix_err)?;
    Ok(FileStat {
        size: st.st_size as u64,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        atime: st.st_atime,
        ctime: st.st_ctime,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// `fchmod(fd, mode)`: sets the exact mode, since `shm_open` applies the umask.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode)).map_err(nix_err)
}

/// `posix_fallocate(fd, 0, len)`: reserves the pages now, so a full
/// `/dev/shm` fails here with `ENOSPC` instead of a `SIGBUS` on first touch.
#[doc(alias = "posix_fallocate")]
pub(crate) fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    nix::fcntl::posix_fallocate(fd, 0, len).map_err(nix_err)
}

/// `ftruncate(fd, len)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    nix::unistd::ftruncate(fd, len).map_err(nix_err)
}

fn whole_file_lock(kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is plain C data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl
}

/// `fcntl(fd, F_OFD_SETLK, {F_WRLCK, whole file})`: takes an open file
/// description lock that the kernel drops when the holder dies.
#[doc(alias = "F_OFD_SETLK")]
pub(crate) fn ofd_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = whole_file_lock(libc::F_WRLCK as libc::c_short);
    // SAFETY: `fl` is a valid `flock` that outlives the call.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) }).map(drop)
}

/// `fcntl(fd, F_OFD_SETLK, {F_UNLCK, whole file})`.
pub(crate) fn ofd_unlock(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = whole_file_lock(libc::F_UNLCK as libc::c_short);
    // SAFETY: `fl` is a valid `flock` that outlives the call.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) }).map(drop)
}

/// `fcntl(fd, F_OFD_GETLK, {F_RDLCK, whole file})`: is an exclusive lock
/// held by another open file description?
#[doc(alias = "F_OFD_GETLK")]
pub(crate) fn ofd_locked_by_other(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fl = whole_file_lock(libc::F_RDLCK as libc::c_short);
    // SAFETY: `fl` is a valid `flock` the kernel may overwrite; it outlives
    // the call.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
