//! Typed and serialized messages between real processes, with no `unsafe`
//! in the test or its helper (`#![forbid(unsafe_code)]` here). (The serde
//! form of the info types against the JSON `shm` prints is tested with the
//! CLI, in `crates/shm-cli/tests/cli.rs`.)
#![forbid(unsafe_code)]

use std::time::Duration;

use shm_core::ShmSafe;
use shm_queue::{Queue, QueueOptions, RecvTimeoutError, SerdeError, TypedQueue};
use shm_tests::helper::typed::{Event, Reading};
use shm_tests::{Cleanup, spawn, unique_posix};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn derived_struct_crosses_processes() {
    const N: u64 = 10_000;
    let id = unique_posix("typed-derive");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let q = TypedQueue::<Reading>::create(&id, &QueueOptions::new().capacity(64)).unwrap();
    let rx = q.receiver().unwrap();
    let child = spawn(&["typed-send", &id.to_string(), &N.to_string()]);
    let sender = child.pid();
    for seq in 0..N {
        let r = rx.recv_timeout(LIMIT).expect("a reading");
        assert_eq!(r, Reading::new(sender, seq));
    }
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
    child.success(LIMIT);
    // The derived id is part of the fingerprint: another type is refused.
    assert!(TypedQueue::<[u64; 5]>::open(&id).is_err());
    assert_eq!(size_of::<Reading>(), 40);
    assert_ne!(Reading::TYPE_ID, <[u64; 5]>::TYPE_ID);
}

#[test]
fn serialized_messages_cross_processes() {
    const N: u64 = 2_000;
    let id = unique_posix("typed-serde");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let q = Queue::create(&id, &QueueOptions::new().capacity(32).slot_size(64)).unwrap();
    let rx = q.receiver().unwrap();
    let child = spawn(&["serde-send", &id.to_string(), &N.to_string()]);
    for seq in 0..N {
        let e: Event = rx.recv_deserialized_timeout(LIMIT).expect("an event");
        assert_eq!(e, Event::order(seq));
    }
    // The malformed message is a typed error, not a panic.
    assert!(matches!(
        rx.recv_deserialized_timeout::<Event>(LIMIT),
        Err(SerdeError::Decode { len: 2, .. })
    ));
    assert_eq!(rx.recv_deserialized_timeout(LIMIT), Ok(Event::Done));
    child.success(LIMIT);
}
