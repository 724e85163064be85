//! Handing a segment's descriptor to another process over a Unix socket
//! (`SCM_RIGHTS`).
//!
//! An anonymous segment ([`Segment::anonymous`](crate::Segment::anonymous),
//! a memfd) has no name another process could open: it is shared by
//! `fork`, or by sending its descriptor. The receiver maps it with
//! [`Segment::from_fd`](crate::Segment::from_fd), which reads the size
//! with `fstat`. Nothing is left in `/dev/shm`: the memory goes away with
//! the last descriptor and mapping.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use shm_core::{Segment, fdpass};
//!
//! let (a, b) = UnixStream::pair()?;
//! let mut seg = Segment::anonymous(4096)?;
//! seg.write_at(0, b"hello")?;
//! // Sender side (another process in real use).
//! fdpass::send_segment(&a, &seg)?;
//! // Receiver side: its own descriptor and mapping of the same memory.
//! let mut theirs = Segment::from_fd(fdpass::recv_fd(&b)?)?;
//! let mut buf = [0u8; 5];
//! theirs.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each call moves one descriptor with one data byte, so the two sides
//! must pair their calls; other traffic on the same socket must not
//! interleave with them. Received descriptors are close-on-exec.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::Segment;
use crate::sys;

/// Sends `fd` over the connected socket `sock` (`sendmsg` with
/// `SCM_RIGHTS`). The receiving process gets its own descriptor for the
/// same open file; this one stays open here.
#[doc(alias = "SCM_RIGHTS")]
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::fdpass::send_fd(sock.as_fd(), fd)
}

/// Receives one descriptor sent by [`send_fd`] (`recvmsg`), blocking per
/// the socket's mode. Fails with `UnexpectedEof` if the peer closed the
/// socket first, and `InvalidData` if the message carried no descriptor or
/// more than one (any that came are closed).
#[doc(alias = "SCM_RIGHTS")]
pub fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    sys::fdpass::recv_fd(sock.as_fd())
}

/// Sends the descriptor of `seg` (a memfd or POSIX segment); the receiver
/// maps it with `Segment::from_fd(recv_fd(&sock)?)`. A System V segment
/// has no descriptor: `Unsupported`.
pub fn send_segment(sock: &UnixStream, seg: &Segment) -> io::Result<()> {
    let fd = seg.fd().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "a System V segment has no descriptor to pass",
        )
    })?;
    send_fd(sock, fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eof_and_missing_descriptor_are_errors() {
        let (a, b) = UnixStream::pair().unwrap();
        io::Write::write_all(&mut &a, b"x").unwrap();
        assert_eq!(recv_fd(&b).unwrap_err().kind(), io::ErrorKind::InvalidData);
        drop(a);
        assert_eq!(
            recv_fd(&b).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
