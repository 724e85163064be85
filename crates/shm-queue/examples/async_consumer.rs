//! An async consumer on tokio, fed by a producer in another process.
//!
//! Run it with `cargo run -p shm-queue --features tokio --example
//! async_consumer`. The parent creates the queue and consumes with
//! `recv_async`; it starts itself again as a plain blocking producer.
//!
//! What it shows:
//!
//! - `Receiver::recv_async`: waits without blocking the runtime's thread
//!   (a single-threaded runtime here), so other tasks keep running; the
//!   ticker task below proves it;
//! - it is cancel-safe: the `select!` with a deadline may drop a pending
//!   receive without losing a message;
//! - disconnect arrives as `RecvError::Disconnected` after draining.

// An example is user code: it names std's atomics (its ticker counter), not
// the workspace's internal loom shim.
#![allow(clippy::disallowed_types)]

#[path = "../../shm-core/examples/support/peer.rs"]
mod support;

use support::Error;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shm_core::SegmentId;
use shm_queue::{Queue, QueueOptions, RecvError};

const MESSAGES: u64 = 2_000;

fn main() -> ExitCode {
    support::run(
        "producer",
        || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::from)
                .and_then(|rt| rt.block_on(consume()))
        },
        produce,
    )
}

async fn consume() -> Result<(), Error> {
    let name = format!("/shmrs-demo-async-{}", std::process::id());
    let id = SegmentId::posix(&name)?;
    let queue = Queue::create(&id, &QueueOptions::new().capacity(16).slot_size(64))?;
    let mut rx = queue.receiver()?;
    println!("[consumer {}] created {name}", std::process::id());
    let child = support::Peer::start("producer", &name)?;

    // Another task on the same thread: it runs while we wait for messages.
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let mut expected = 0u64;
    let mut timeouts = 0u64;
    loop {
        tokio::select! {
            msg = rx.recv_async() => match msg {
                Ok(m) => {
                    let v = u64::from_le_bytes(m.as_slice().try_into()?);
                    if v != expected {
                        return Err(format!("expected {expected}, got {v}").into());
                    }
                    expected += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(e.into()),
            },
            // Dropping the pending receive here loses nothing.
            _ = tokio::time::sleep(Duration::from_millis(20)) => timeouts += 1,
        }
        if timeouts > 3_000 {
            return Err("no progress for a minute".into());
        }
    }
    ticker.abort();
    // The producer has exited (it disconnected): this wait is short.
    let status = child.wait()?;
    queue.remove()?;
    println!(
        "[consumer] {expected} messages in order; the ticker ran {} times meanwhile, \
         {timeouts} receives were cancelled by the deadline; queue removed",
        ticks.load(Ordering::Relaxed)
    );
    if !status.success() {
        return Err(format!("producer failed: {status}").into());
    }
    if expected != MESSAGES {
        return Err(format!("got {expected} of {MESSAGES}").into());
    }
    Ok(())
}

fn produce(name: &str) -> Result<(), Error> {
    let queue = Queue::open(&SegmentId::posix(name)?)?;
    let tx = queue.sender()?;
    for i in 0..MESSAGES {
        tx.send(&i.to_le_bytes())?;
        if i % 500 == 0 {
            // Pauses, so the consumer really waits now and then.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("[producer {}] sent {MESSAGES}", std::process::id());
    Ok(())
}
