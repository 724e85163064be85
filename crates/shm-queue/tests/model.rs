//! The queue against a `VecDeque` model (proptest): every sequence of
//! try_send / try_recv / batch / close gives the same answers as a bounded
//! `VecDeque`, through wrap-around, full, empty and close.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use shm_core::SegmentId;
use shm_core::shim::real::AtomicU32;
use shm_queue::{Queue, QueueOptions, RecvError, TryRecvError, TrySendError};

#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Recv,
    SendBatch(Vec<Vec<u8>>),
    RecvBatch(usize),
    Close,
}

const SLOT: usize = 16;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..=SLOT + 2).prop_map(Op::Send),
        6 => Just(Op::Recv),
        1 => proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=SLOT), 1..4).prop_map(Op::SendBatch),
        1 => (1usize..5).prop_map(Op::RecvBatch),
        1 => Just(Op::Close),
    ]
}

fn unique() -> SegmentId {
    static N: AtomicU32 = AtomicU32::new(0);
    SegmentId::posix(&format!(
        "/shmrs-test-model-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_vecdeque(cap in 1u32..6, ops in proptest::collection::vec(op(), 1..80)) {
        let id = unique();
        let q = Queue::create(&id, &QueueOptions::new().capacity(cap).slot_size(SLOT as u32)).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut closed = false;
        for op in ops {
            match op {
                Op::Send(m) => {
                    let expect = if m.len() > SLOT {
                        Err(TrySendError::TooLarge { len: m.len(), max: SLOT })
                    } else if closed {
                        Err(TrySendError::Closed)
                    } else if model.len() == cap as usize {
                        Err(TrySendError::Full)
                    } else {
                        model.push_back(m.clone());
                        Ok(())
                    };
                    prop_assert_eq!(tx.try_send(&m), expect);
                }
                Op::Recv => {
                    let expect = match model.pop_front() {
                        Some(m) => Ok(m),
                        None if closed => Err(TryRecvError::Closed),
                        None => Err(TryRecvError::Empty),
                    };
                    prop_assert_eq!(rx.try_recv(), expect);
                }
                Op::SendBatch(ms) => {
                    // Blocking batch: only when it fits, so it cannot block.
                    if !closed && model.len() + ms.len() <= cap as usize {
                        let refs: Vec<&[u8]> = ms.iter().map(Vec::as_slice).collect();
                        prop_assert_eq!(tx.send_batch(&refs), Ok(()));
                        model.extend(ms);
                    }
                }
                Op::RecvBatch(max) => {
                    if !model.is_empty() {
                        let mut out = Vec::new();
                        let n = rx.recv_batch(&mut out, max).unwrap();
                        let want: Vec<Vec<u8>> = (0..n).filter_map(|_| model.pop_front()).collect();
                        prop_assert!(n >= 1 && n <= max);
                        prop_assert_eq!(out, want);
                    }
                }
                Op::Close => {
                    q.close();
                    closed = true;
                }
            }
            prop_assert_eq!(q.len(), model.len());
            let s = q.stats();
            prop_assert_eq!(s.len as usize, model.len());
            prop_assert_eq!(s.closed, closed);
        }
        drop((tx, rx));
        q.remove().unwrap();
    }
}

#[test]
fn typed_queue_round_trip_and_wrong_type_refused() {
    let id = unique();
    let q =
        shm_queue::TypedQueue::<[u64; 3]>::create(&id, &QueueOptions::new().capacity(4)).unwrap();
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    for i in 0..10u64 {
        tx.send([i, i * 2, i * 3]).unwrap();
        assert_eq!(rx.recv().unwrap(), [i, i * 2, i * 3]);
    }
    assert!(matches!(
        shm_queue::TypedQueue::<u32>::open(&id),
        Err(shm_queue::QueueOpenError::WrongMessageType { .. })
    ));
    assert!(matches!(
        Queue::open(&id),
        Err(shm_queue::QueueOpenError::WrongMessageType { .. })
    ));
    drop((tx, rx));
    q.queue().remove().unwrap();
}

#[test]
fn recv_into_refuses_a_short_buffer_without_taking_anything() {
    let id = unique();
    let q = Queue::create(&id, &QueueOptions::new().capacity(2).slot_size(32)).unwrap();
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    tx.send(b"abc").unwrap();
    let mut small = [0u8; 8];
    assert_eq!(
        rx.recv_into(&mut small),
        Err(RecvError::BufferTooSmall { len: 32, buf: 8 })
    );
    let mut buf = [0u8; 32];
    assert_eq!(rx.recv_into(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"abc");
    drop((tx, rx));
    q.remove().unwrap();
}

#[test]
fn a_panicking_in_place_writer_sends_nothing_and_blocks_no_one() {
    let id = unique();
    let q = Queue::create(&id, &QueueOptions::new().capacity(2).slot_size(32)).unwrap();
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = tx.send_with(4, |_buf| panic!("writer fails"));
    }));
    assert!(r.is_err());
    tx.send(b"next").unwrap();
    assert_eq!(rx.recv().unwrap(), b"next");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop((tx, rx));
    q.remove().unwrap();
}

#[test]
fn a_message_sent_just_before_the_last_producer_leaves_is_never_lost() {
    // The receiver sleeps on an empty queue; the producer commits one
    // message and drops its sender at once. The receiver must get the
    // message before `Disconnected`, however the two interleave.
    let id = unique();
    let q = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(8)).unwrap();
    for round in 0..300u64 {
        let rx = q.receiver().unwrap();
        let tx = q.sender().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                tx.send(&round.to_le_bytes()).unwrap();
                drop(tx);
            });
            assert_eq!(
                rx.recv().as_deref(),
                Ok(&round.to_le_bytes()[..]),
                "round {round}"
            );
            assert_eq!(rx.recv(), Err(RecvError::Disconnected), "round {round}");
        });
    }
    q.remove().unwrap();
}
