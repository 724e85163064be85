//! 1 MiB messages between two processes without copying them: the
//! producer writes each message straight into its slot in shared memory,
//! and the consumer reads it where it lies.
//!
//! Run it with `cargo run --release -p shm-queue --example zero_copy`. The
//! parent creates the queue and produces; it starts itself again as the
//! consumer.
//!
//! What it shows:
//!
//! - `Sender::send_with(len, |slot| ...)`: the closure gets the claimed
//!   slot as `&mut [u8]` and fills it in place; the message is committed
//!   when it returns (if it panics, nothing is sent);
//! - `Receiver::recv_with(|msg| ...)`: the closure reads the message in
//!   the slot; the slot is released when it returns;
//! - so a message crosses from one process to the other with no copy at
//!   all: each side touches the bytes once, in the shared mapping.

#[path = "../../shm-core/examples/support/peer.rs"]
mod support;

use support::Error;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shm_core::SegmentId;
use shm_queue::{Queue, QueueOptions, RecvTimeoutError};

const MIB: usize = 1 << 20;
const MESSAGES: u64 = 64;

fn main() -> ExitCode {
    support::run("consumer", produce, consume)
}

/// The pattern of message `n`: 8-byte words `n ^ i`.
fn fill(n: u64, buf: &mut [u8]) {
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(n ^ i as u64).to_le_bytes());
    }
}

/// Checks the pattern of message `n` in place.
fn check(n: u64, msg: &[u8]) -> bool {
    msg.len() == MIB
        && msg
            .chunks_exact(8)
            .enumerate()
            .all(|(i, w)| w == (n ^ i as u64).to_le_bytes())
}

fn produce() -> Result<(), Error> {
    let name = format!("/shmrs-demo-zerocopy-{}", std::process::id());
    let id = SegmentId::posix(&name)?;
    // Four 1 MiB slots: the segment is a little over 4 MiB.
    let queue = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(MIB as u32))?;
    println!(
        "[producer {}] created {name} ({} bytes)",
        std::process::id(),
        queue.segment().len()
    );
    let child = support::Peer::start("consumer", &name)?;
    let tx = queue.sender()?;
    let start = Instant::now();
    for n in 0..MESSAGES {
        // Written in place, in the slot.
        tx.send_with(MIB, |slot| fill(n, slot))?;
    }
    drop(tx); // the consumer sees Disconnected after the last message
    let status = child.wait()?;
    let took = start.elapsed();
    queue.remove()?;
    println!(
        "[producer] {MESSAGES} MiB handed over in {took:.2?} ({:.0} MiB/s); queue removed",
        MESSAGES as f64 / took.as_secs_f64()
    );
    if !status.success() {
        return Err(format!("consumer failed: {status}").into());
    }
    Ok(())
}

fn consume(name: &str) -> Result<(), Error> {
    let queue = Queue::open(&SegmentId::posix(name)?)?;
    let rx = queue.receiver()?;
    let mut n = 0;
    loop {
        // Read in place, in the slot.
        match rx.recv_with_timeout(Duration::from_secs(30), |msg| check(n, msg)) {
            Ok(true) => n += 1,
            Ok(false) => return Err(format!("message {n} is not what was sent").into()),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "[consumer {}] checked {n} messages of 1 MiB in place",
        std::process::id()
    );
    if n != MESSAGES {
        return Err(format!("got {n} of {MESSAGES} messages").into());
    }
    Ok(())
}
