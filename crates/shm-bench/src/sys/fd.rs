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
/// Accepts only a descriptor that is open and has `FD_CLOEXEC` clear, and
/// sets the flag once it owns it. Everything this program opens itself
/// (through std or nix) is opened with `O_CLOEXEC`, so a descriptor without
/// the flag can only have come across `exec` from the parent, and a second
/// `adopt` of the same number is refused: no two `OwnedFd` ever own one
/// descriptor.
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
    let flags = FdFlag::from_bits_truncate(fcntl(probe, FcntlArg::F_GETFD)?);
    if flags.contains(FdFlag::FD_CLOEXEC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} was not inherited (FD_CLOEXEC is set) or is adopted already"),
        ));
    }
    // SAFETY: the descriptor is open and was inherited across exec (checked
    // above: this program opens nothing without FD_CLOEXEC), and it has not
    // been adopted before (adopting sets FD_CLOEXEC, right below), so no
    // other object in this process owns it and the new `OwnedFd` is its only
    // owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_cloexec(fd.as_fd(), true)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn adopts_only_inherited_descriptors_once() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        // Opened by this process (close-on-exec): refused.
        assert!(adopt(r.as_raw_fd()).is_err());
        // As the parent leaves it for a child: accepted, once.
        set_cloexec(w.as_fd(), false).expect("fcntl");
        let raw = w.as_raw_fd();
        std::mem::forget(w);
        let owned = adopt(raw).expect("adopt");
        assert!(adopt(raw).is_err());
        drop(owned);
        assert!(adopt(1).is_err());
    }
}
