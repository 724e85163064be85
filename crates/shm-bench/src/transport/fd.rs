//! Descriptor transports: a pipe, a Unix stream socket pair, a Unix
//! seqpacket socket pair. The parent creates the pair; each child inherits
//! one end.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, getsockopt, setsockopt, socketpair, sockopt,
};

use super::{Chan, ChanSpec, Check, CreateError, Rx, Tx};

/// `pipe2(O_CLOEXEC)`.
pub fn pipe() -> Result<Chan, CreateError> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok(Chan::Fds { rx, tx })
}

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
pub fn stream_pair() -> Result<Chan, CreateError> {
    let (rx, tx) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    Ok(Chan::Fds { rx, tx })
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`, with `SO_SNDBUF`
/// raised when a message would not fit the default (a datagram must fit the
/// sender's buffer whole).
pub fn seqpacket_pair(size: usize) -> Result<Chan, CreateError> {
    let (rx, tx) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    // Room for the message plus the kernel's per-skb overhead.
    let need = size + 4096;
    let have = getsockopt(&tx, sockopt::SndBuf).map_err(io::Error::from)?;
    if have < need {
        let wmem_max = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let want = (4 * size).min(wmem_max.max(need));
        for s in [&tx, &rx] {
            setsockopt(s, sockopt::SndBuf, &want).map_err(io::Error::from)?;
        }
        let got = getsockopt(&tx, sockopt::SndBuf).map_err(io::Error::from)?;
        if got < need {
            return Err(CreateError::Unsupported(format!(
                "a {size}-byte datagram needs SO_SNDBUF >= {need}, net.core.wmem_max allows {got}"
            )));
        }
    }
    Ok(Chan::Fds { rx, tx })
}

/// Sends on a byte stream (pipe or stream socket): `write_all`.
#[derive(Debug)]
pub struct StreamTx {
    file: File,
    buf: Vec<u8>,
}

impl StreamTx {
    /// Over an inherited descriptor.
    pub fn new(fd: OwnedFd, spec: ChanSpec) -> Self {
        StreamTx {
            file: File::from(fd),
            buf: vec![0; spec.size],
        }
    }
}

impl Tx for StreamTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let buf = &mut self.buf[..len];
        fill(buf);
        self.file.write_all(buf)
    }
}

/// Receives from a byte stream: `read_exact` of the run's message size
/// (every message of a run has the same size).
#[derive(Debug)]
pub struct StreamRx {
    file: File,
    buf: Vec<u8>,
}

impl StreamRx {
    /// Over an inherited descriptor.
    pub fn new(fd: OwnedFd, spec: ChanSpec) -> Self {
        StreamRx {
            file: File::from(fd),
            buf: vec![0; spec.size],
        }
    }
}

impl Rx for StreamRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        self.file.read_exact(&mut self.buf)?;
        f(&self.buf)
    }
}

/// Sends one datagram per message on a seqpacket socket.
#[derive(Debug)]
pub struct PacketTx {
    sock: UnixDatagram,
    buf: Vec<u8>,
}

impl PacketTx {
    /// Over an inherited descriptor.
    pub fn new(fd: OwnedFd, spec: ChanSpec) -> Self {
        PacketTx {
            sock: UnixDatagram::from(fd),
            buf: vec![0; spec.size],
        }
    }
}

impl Tx for PacketTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let buf = &mut self.buf[..len];
        fill(buf);
        let n = self.sock.send(buf)?;
        if n != len {
            return Err(io::Error::other(format!(
                "seqpacket sent {n} of {len} bytes"
            )));
        }
        Ok(())
    }
}

/// Receives one datagram per message; the buffer is a word larger than the
/// message so that a longer datagram shows up as a wrong length instead of
/// being truncated silently.
#[derive(Debug)]
pub struct PacketRx {
    sock: UnixDatagram,
    buf: Vec<u8>,
}

impl PacketRx {
    /// Over an inherited descriptor.
    pub fn new(fd: OwnedFd, spec: ChanSpec) -> Self {
        PacketRx {
            sock: UnixDatagram::from(fd),
            buf: vec![0; spec.size + 8],
        }
    }
}

impl Rx for PacketRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        let n = self.sock.recv(&mut self.buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        f(&self.buf[..n])
    }
}
