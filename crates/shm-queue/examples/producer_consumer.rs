//! The classic producer/consumer pipeline through a shared buffer, between
//! two processes, in the five steps of the textbook:
//!
//! 1. create the shared segment (here: a queue in a POSIX segment);
//! 2. attach to it from a second process;
//! 3. produce and consume through it;
//! 4. synchronize: the queue does it (claims by compare-and-swap, futex
//!    waits, crash recovery);
//! 5. detach and clean up.
//!
//! Run it with `cargo run --release -p shm-queue --example producer_consumer`.
//! The parent is the producer; it starts itself again as the consumer.

#[path = "../../shm-core/examples/support/peer.rs"]
mod support;

use std::process::ExitCode;

use shm_core::SegmentId;
use shm_queue::{Queue, QueueOptions, RecvError};

const MESSAGES: u64 = 100_000;

fn main() -> ExitCode {
    support::run("consumer", producer, consumer)
}

fn producer() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("/shmrs-demo-example-{}", std::process::id());
    let id = SegmentId::posix(&name)?;
    // 1. Create. By default the name goes with the last attached handle.
    let queue = Queue::create(&id, &QueueOptions::new().capacity(256).slot_size(64))?;
    println!("[producer {}] created queue {name}", std::process::id());
    // 2. The consumer process attaches.
    let child = support::Peer::start("consumer", &name)?;
    // 3. Produce.
    let tx = queue.sender()?;
    for i in 0..MESSAGES {
        tx.send(&i.to_le_bytes())?;
    }
    println!("[producer] sent {MESSAGES} messages");
    // 4. Leaving tells the consumer no more will come (it sees Disconnected
    //    after draining).
    drop(tx);
    let status = child.wait()?;
    // 5. Detach and clean up (explicitly; drop would do it too).
    queue.remove()?;
    println!("[producer] consumer exited with {status}; queue removed");
    if status.success() {
        Ok(())
    } else {
        Err("consumer failed".into())
    }
}

fn consumer(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    // 2. Attach: validates the header and waits for the creator's init.
    let queue = Queue::open(&SegmentId::posix(name)?)?;
    let rx = queue.receiver()?;
    let mut expected = 0u64;
    // 3. Consume until every producer is gone and the queue is drained.
    loop {
        match rx.recv() {
            Ok(msg) => {
                let value = u64::from_le_bytes(msg.as_slice().try_into()?);
                if value != expected {
                    return Err(format!("expected {expected}, got {value}").into());
                }
                expected += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "[consumer {}] received {expected} messages in order",
        std::process::id()
    );
    // 5. Detach: dropping the handles unregisters and unmaps.
    Ok(())
}
