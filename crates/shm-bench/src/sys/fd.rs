//! Passing descriptors to a child across `exec`.
//!
//! The parent clears `FD_CLOEXEC` on exactly the descriptors one child needs,
//! spawns it, and sets the flag again before the next spawn, so no other
//! child inherits them; the child gets their numbers on its command line and
//! adopts them with [`adopt`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Sets or clears `FD_CLOEXEC`: `fcntl(fd, F_SETFD, ...)`.
pub fn set_cloexec(fd: BorrowedFd<'_>, cloexec: bool) -> io::Result<()> {
    let flag = if cloexec {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flag))?;
    Ok(())
}

/// Takes ownership of descriptor `raw`, inherited from the parent.
///
/// Refuses a number that is not an open descriptor (`fcntl(F_GETFD)` fails
/// with `EBADF`) and the standard streams. Call it at most once per number:
/// the parent passes each inherited descriptor exactly once on the command
/// line, and nothing else in the child opens it.
pub fn adopt(raw: RawFd) -> io::Result<OwnedFd> {
    if raw <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to adopt descriptor {raw}"),
        ));
    }
    // SAFETY: borrowing only for the duration of the probe; `fcntl` on a
    // closed number fails with EBADF rather than misbehaving.
    let probe = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl(probe, FcntlArg::F_GETFD)?;
    // SAFETY: the descriptor is open (checked above), was passed to this
    // process by the parent for this purpose, and no other object in this
    // process owns it (the command line names it once and it is adopted
    // once), so the new `OwnedFd` is its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_cloexec(fd.as_fd(), true)?;
    Ok(fd)
}
