//! A typed queue between two processes: the messages are a plain
//! `#[repr(C)]` struct, made shareable by `#[derive(ShmSafe)]`, with no
//! `unsafe` anywhere in this file.
//!
//! Run it with `cargo run -p shm-queue --example typed_queue`. The parent
//! creates the queue and consumes; it starts itself again as the producer.
//!
//! What it shows:
//!
//! - `TypedQueue<T>`: each message is one `T`, copied into and out of its
//!   slot; the slot size is `size_of::<T>()`;
//! - the type is checked: the queue records `T`'s fingerprint (size,
//!   alignment and the derived type id), so opening it as another type
//!   fails with `WrongMessageType` instead of misreading the bytes;
//! - disconnect: when the producer exits, the consumer drains the queue
//!   and then gets `Disconnected`.

#[path = "../../shm-core/examples/support/peer.rs"]
mod support;

use support::Error;

use std::process::ExitCode;
use std::time::Duration;

use shm_core::{SegmentId, ShmSafe};
use shm_queue::{QueueOpenError, QueueOptions, RecvTimeoutError, TypedQueue};

const TRADES: u64 = 50_000;

/// One message. Every field is `ShmSafe`, so the struct is; the derive
/// also refuses `String`, `bool`, enums, pointers and a missing
/// `#[repr(C)]` at compile time.
#[derive(Clone, Copy, Debug, PartialEq, ShmSafe)]
#[repr(C)]
struct Trade {
    seq: u64,
    price_cents: i64,
    quantity: u32,
    /// 0 buy, 1 sell (an integer: another process may write any value).
    side: u32,
}

impl Trade {
    fn nth(seq: u64) -> Trade {
        Trade {
            seq,
            price_cents: 10_000 + (seq % 97) as i64,
            quantity: (seq % 10) as u32 + 1,
            side: (seq % 2) as u32,
        }
    }
}

fn main() -> ExitCode {
    support::run("producer", consume, produce)
}

fn consume() -> Result<(), Error> {
    let name = format!("/shmrs-demo-typed-{}", std::process::id());
    let id = SegmentId::posix(&name)?;
    // Create (the name goes with the last attached handle).
    let queue = TypedQueue::<Trade>::create(&id, &QueueOptions::new().capacity(256))?;
    println!(
        "[consumer {}] created {name}: {} slots of {} bytes (Trade)",
        std::process::id(),
        queue.queue().capacity(),
        queue.queue().slot_size()
    );
    // Another type is refused at open.
    match TypedQueue::<[u64; 3]>::open(&id) {
        Err(QueueOpenError::WrongMessageType { .. }) => {
            println!("[consumer] opening it as [u64; 3] is refused, as it should be")
        }
        other => return Err(format!("expected WrongMessageType, got {other:?}").into()),
    }
    let rx = queue.receiver()?;
    let child = support::Peer::start("producer", &name)?;
    let mut next = 0;
    let mut volume = 0u64;
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(t) => {
                if t != Trade::nth(next) {
                    return Err(format!("expected trade {next}, got {t:?}").into());
                }
                volume += u64::from(t.quantity);
                next += 1;
            }
            // The producer is gone and the queue is drained.
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let status = child.wait()?;
    queue.queue().remove()?;
    println!("[consumer] {next} trades in order, volume {volume}; queue removed");
    if !status.success() {
        return Err(format!("producer failed: {status}").into());
    }
    if next != TRADES {
        return Err(format!("got {next} of {TRADES} trades").into());
    }
    Ok(())
}

fn produce(name: &str) -> Result<(), Error> {
    // Open checks that the queue carries `Trade`s.
    let queue = TypedQueue::<Trade>::open(&SegmentId::posix(name)?)?;
    let tx = queue.sender()?;
    for seq in 0..TRADES {
        tx.send(Trade::nth(seq))?;
    }
    println!("[producer {}] sent {TRADES} trades", std::process::id());
    Ok(())
}
