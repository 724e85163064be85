//! The channel-style API within one process: owned handles across
//! threads, `try_clone`, the iterators, the per-wait errors, the in-place
//! sends whose writer reports the length, and the name's lifetime modes.
//! (The same behaviour between processes is in the `tests` package.)

use std::time::Duration;

use shm_queue::{
    Lifetime, Queue, QueueOptions, RecvError, RecvTimeoutError, SegmentId, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};

fn id(tag: &str) -> SegmentId {
    SegmentId::posix(&format!("/shmrs-test-api-{tag}-{}", std::process::id())).expect("name")
}

fn queue(tag: &str, capacity: u32, slot: u32) -> Queue {
    Queue::create(
        &id(tag),
        &QueueOptions::new()
            .capacity(capacity)
            .slot_size(slot)
            .lifetime(Lifetime::Creator),
    )
    .expect("create")
}

#[test]
fn handles_move_into_threads_and_clones_register_anew() {
    let q = queue("threads", 8, 16);
    let tx = q.sender().unwrap();
    let tx2 = tx.try_clone().unwrap();
    assert_eq!(q.stats().producers, 2);
    let rx = q.receiver().unwrap();
    let a = std::thread::spawn(move || {
        for i in 0..100u32 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
    });
    let b = std::thread::spawn(move || {
        for i in 100..200u32 {
            tx2.send(&i.to_le_bytes()).unwrap();
        }
    });
    // The iterator ends once both senders are gone and the queue drained.
    let mut got: Vec<u32> = rx
        .iter()
        .map(|m| u32::from_le_bytes(m.try_into().unwrap()))
        .collect();
    a.join().unwrap();
    b.join().unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn errors_per_way_of_waiting_read_like_mpsc() {
    let q = queue("errors", 1, 8);
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(b"x").unwrap();
    assert_eq!(tx.try_send(b"y"), Err(TrySendError::Full));
    assert!(tx.try_send(b"y").unwrap_err().gave_up());
    assert_eq!(
        tx.send_timeout(b"y", Duration::from_millis(10)),
        Err(SendTimeoutError::Timeout)
    );
    assert_eq!(
        tx.try_send(b"123456789"),
        Err(TrySendError::TooLarge { len: 9, max: 8 })
    );
    // A blocking call's error converts into the waiting one's.
    let e: TrySendError = SendError::Closed.into();
    assert_eq!(e.into_stop(), Some(SendError::Closed));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [b"x".to_vec()]);
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn a_writer_reports_the_length_and_a_failed_write_sends_nothing() {
    let q = queue("filled", 4, 16);
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    // The writer sees the whole slot and says how much is the message.
    let n = tx
        .send_filled(|slot| {
            assert_eq!(slot.len(), 16);
            slot[..5].copy_from_slice(b"hello");
            Ok::<_, ()>(5)
        })
        .unwrap()
        .unwrap();
    assert_eq!(n, 5);
    // A failing writer: the slot becomes a tombstone, nothing is sent.
    let failed = tx.send_filled(|slot| {
        slot[0] = 1;
        Err::<usize, _>("serializer failed")
    });
    assert_eq!(failed, Ok(Err("serializer failed")));
    // A length over the slot is refused, nothing is sent.
    assert_eq!(
        tx.send_filled(|_| Ok::<_, ()>(17)),
        Err(SendError::TooLarge { len: 17, max: 16 })
    );
    tx.try_send_with(3, |b| b.copy_from_slice(b"end")).unwrap();
    drop(tx);
    let got: Vec<Vec<u8>> = rx.into_iter().collect();
    assert_eq!(got, [b"hello".to_vec(), b"end".to_vec()]);
    let s = q.stats();
    assert_eq!((s.sent, s.received, s.abandoned), (2, 2, 2), "{s:?}");
}

#[test]
fn the_last_attached_handle_removes_the_name_by_default() {
    let id = id("lastpeer");
    let created = Queue::create(&id, &QueueOptions::new().capacity(2).slot_size(8)).unwrap();
    assert_eq!(created.lifetime(), Lifetime::LastPeer);
    let opened = Queue::open(&id).unwrap();
    let rx = opened.receiver().unwrap();
    assert_eq!(created.stats().attached, 2);
    drop(created);
    drop(opened);
    // The receiver still holds the attachment: the name stays.
    let (again, made) = Queue::open_or_create(&id, &QueueOptions::new()).unwrap();
    assert!(!made, "a second queue was made while a peer lived");
    drop(again);
    drop(rx);
    assert!(Queue::open(&id).is_err(), "the name outlived its peers");
}

#[test]
fn persistent_and_creator_lifetimes() {
    let id = id("persistent");
    let q = Queue::create(&id, &QueueOptions::new().lifetime(Lifetime::Persistent)).unwrap();
    drop(q);
    let q = Queue::open(&id).expect("a persistent queue outlives its handles");
    assert_eq!(q.lifetime(), Lifetime::Persistent);
    q.remove().unwrap();
    drop(q);

    let id = self::id("creator");
    let creator = Queue::create(&id, &QueueOptions::new().lifetime(Lifetime::Creator)).unwrap();
    let other = Queue::open(&id).unwrap();
    drop(creator);
    assert!(
        Queue::open(&id).is_err(),
        "the creator's handle removes the name"
    );
    drop(other);
}
