//! An anonymous segment (a memfd) handed to another process over a Unix
//! socket, with `SCM_RIGHTS`.
//!
//! Run it with `cargo run -p shm-core --example memfd_pass`. The parent
//! creates the segment and listens on an abstract Unix socket; it starts
//! itself again as the peer, which connects, receives the descriptor and
//! maps the same memory.
//!
//! What it shows:
//!
//! - `Segment::anonymous`: shared memory with no name at all, so nothing
//!   is ever left in `/dev/shm`, even after `kill -9`: the memory goes
//!   away with the last descriptor and mapping;
//! - `fdpass::send_segment` / `fdpass::recv_fd`: the descriptor crosses
//!   the socket, the receiver gets its own descriptor for the same memory;
//! - `Segment::from_fd`: maps it, with the size read by `fstat`.
//!
//! The abstract socket name (Linux only) is not a file either.

#[path = "support/peer.rs"]
mod support;

use support::Error;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::ExitCode;
use std::time::Duration;

use shm_core::{Segment, fdpass};

const SIZE: u64 = 1 << 20;
const GREETING: &[u8] = b"hello from the parent";
const REPLY: &[u8] = b"hello back from the peer";
/// Where the peer writes its reply.
const REPLY_AT: usize = 4096;

fn main() -> ExitCode {
    support::run("peer", parent, peer)
}

fn parent() -> Result<(), Error> {
    let mut seg = Segment::anonymous(SIZE)?;
    seg.write_at(0, GREETING)?;
    let name = format!("shmrs-demo-memfd-{}", std::process::id());
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
    println!(
        "[parent {}] made a {SIZE}-byte memfd segment; listening on @{name}",
        std::process::id()
    );
    let child = support::Peer::start("peer", &name)?;
    let (mut sock, _) = listener.accept()?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    fdpass::send_segment(&sock, &seg)?;
    // The peer writes its reply into the shared memory, then says so.
    let mut done = [0u8; 1];
    sock.read_exact(&mut done)?;
    let mut reply = vec![0u8; REPLY.len()];
    seg.read_at(REPLY_AT, &mut reply)?;
    let status = child.wait()?;
    println!(
        "[parent] read from the shared memory: {:?}",
        String::from_utf8_lossy(&reply)
    );
    if !status.success() {
        return Err(format!("peer failed: {status}").into());
    }
    if reply != REPLY {
        return Err("the reply is not in the shared memory".into());
    }
    Ok(())
}

fn peer(name: &str) -> Result<(), Error> {
    let mut sock = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    // Our own descriptor for the parent's memory, and our own mapping.
    let mut seg = Segment::from_fd(fdpass::recv_fd(&sock)?)?;
    let mut greeting = vec![0u8; GREETING.len()];
    seg.read_at(0, &mut greeting)?;
    println!(
        "[peer {}] mapped {} bytes; read {:?}",
        std::process::id(),
        seg.len(),
        String::from_utf8_lossy(&greeting)
    );
    if greeting != GREETING {
        return Err("the greeting is not in the shared memory".into());
    }
    seg.write_at(REPLY_AT, REPLY)?;
    sock.write_all(b"k")?;
    Ok(())
}
