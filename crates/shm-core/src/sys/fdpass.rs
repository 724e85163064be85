//! `sendmsg(2)`/`recvmsg(2)` with one `SCM_RIGHTS` descriptor, over a
//! connected Unix stream socket. The safe, documented surface is
//! [`crate::fdpass`].

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, sendmsg};

/// The one data byte that carries the descriptor (a stream socket needs
/// at least one byte of data for its ancillary data to be delivered).
const TAG: u8 = b'F';

/// `sendmsg(sock, {TAG}, SCM_RIGHTS [fd])`.
#[doc(alias = "sendmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(&[TAG])];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "sendmsg sent nothing",
                ));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `recvmsg(sock, 1 byte, SCM_RIGHTS, MSG_CMSG_CLOEXEC)`: the descriptor
/// that came with the next byte.
#[doc(alias = "recvmsg")]
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut byte)];
        let msg = match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let bytes = msg.bytes;
        let mut got: Vec<OwnedFd> = Vec::new();
        // `cmsgs` refuses a truncated control buffer (a peer that sent more
        // than four descriptors at once); nix gives no way to reach those
        // that did arrive, so they stay open: a hostile peer can waste
        // descriptors, never confuse us.
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel has just installed `raw` in this
                    // process's descriptor table for this message
                    // (SCM_RIGHTS): nothing else owns it, and it is wrapped
                    // exactly once, here.
                    got.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        if bytes == 0 && got.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the socket before sending a descriptor",
            ));
        }
        if byte[0] != TAG || got.len() != 1 {
            // Extra or missing descriptors: `got` closes what came.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected one descriptor with byte {TAG:#x}, got {} with byte {:#x}",
                    got.len(),
                    byte[0]
                ),
            ));
        }
        return Ok(got.pop().expect("one descriptor"));
    }
}
