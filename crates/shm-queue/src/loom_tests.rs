//! loom models of the queue's lock-free protocol: the commit of a slot
//! (payload, then READY with Release; a consumer's Acquire, then FREE), the
//! wait/notify pair on the futex words, and registration entries read by
//! observers without the lock. Run by `cargo xtask loom`
//! (`RUSTFLAGS="--cfg shm_loom"`); the futex is shm-sync's loom model, in
//! which a lost wakeup is a deadlock loom reports.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use shm_core::ProcessId;

use crate::layout::{FREE, READING, READY, Registration, SlotHeader, WRITING};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, Woke};

fn slot() -> SlotHeader {
    SlotHeader {
        state: AtomicU32::new(FREE),
        len: AtomicU32::new(0),
        seq: AtomicU64::new(0),
        owner_pid: AtomicU32::new(0),
        _pad: AtomicU32::new(0),
        owner_start: AtomicU64::new(0),
    }
}

/// The futex word, its waiter count, and a slot with its payload.
struct Ring {
    slot: SlotHeader,
    payload: UnsafeCell<u64>,
    not_empty: AtomicU32,
    recv_waiters: AtomicU32,
    not_full: AtomicU32,
    send_waiters: AtomicU32,
}

// SAFETY: model only; the payload cell is accessed per the slot protocol
// under test; loom reports any access that protocol fails to order.
unsafe impl Sync for Ring {}

impl Ring {
    fn new() -> Self {
        Ring {
            slot: slot(),
            payload: UnsafeCell::new(0),
            not_empty: AtomicU32::new(0),
            recv_waiters: AtomicU32::new(0),
            not_full: AtomicU32::new(0),
            send_waiters: AtomicU32::new(0),
        }
    }

    /// A producer: waits for FREE, claims, writes, commits, notifies.
    fn send(&self, value: u64) {
        loop {
            let seen = self.not_full.load(Ordering::Acquire);
            if self.slot.state() == FREE {
                break;
            }
            assert_eq!(
                wait::block(&self.not_full, &self.send_waiters, seen, None, || self
                    .slot
                    .state()
                    == FREE),
                Woke::Changed
            );
        }
        // (In the queue the claim is made under the lock; one producer here.)
        self.slot
            .claim(ProcessId { pid: 1, start: 1 }, value, WRITING);
        // SAFETY: FREE seen with Acquire: the consumer is done.
        self.payload.with_mut(|p| unsafe { *p = value });
        assert!(self.slot.commit(value, 8));
        wait::notify_changed(&self.not_empty, &self.recv_waiters, false);
    }

    /// A consumer: waits for READY, reads, frees, notifies.
    fn recv(&self) -> u64 {
        loop {
            let seen = self.not_empty.load(Ordering::Acquire);
            if self.slot.state() == READY {
                break;
            }
            assert_eq!(
                wait::block(&self.not_empty, &self.recv_waiters, seen, None, || self
                    .slot
                    .state()
                    == READY),
                Woke::Changed
            );
        }
        let pos = self.slot.seq.load(Ordering::Relaxed);
        self.slot
            .claim(ProcessId { pid: 2, start: 2 }, pos, READING);
        // SAFETY: READY seen with Acquire: the producer is done.
        let v = self.payload.with(|p| unsafe { *p });
        assert!(self.slot.release(pos));
        wait::notify_changed(&self.not_full, &self.send_waiters, false);
        v
    }
}

#[test]
fn loom_slot_commit_and_reuse_hand_over_the_payload_without_a_race() {
    loom::model(|| {
        let ring = Arc::new(Ring::new());
        let r = ring.clone();
        let producer = thread::spawn(move || {
            r.send(1);
            r.send(2);
        });
        assert_eq!(ring.recv(), 1);
        assert_eq!(ring.recv(), 2);
        producer.join().unwrap();
    });
}

#[test]
fn loom_notify_never_loses_a_sleeping_waiter() {
    loom::model(|| {
        let word = Arc::new(AtomicU32::new(0));
        let waiters = Arc::new(AtomicU32::new(0));
        let flag = Arc::new(AtomicU32::new(0));
        let (w, n, f) = (word.clone(), waiters.clone(), flag.clone());
        let notifier = thread::spawn(move || {
            f.store(1, Ordering::Release);
            wait::notify(&w, &n, false);
        });
        loop {
            let seen = word.load(Ordering::Acquire);
            if flag.load(Ordering::Acquire) == 1 {
                break;
            }
            wait::block(&word, &waiters, seen, None, || false);
        }
        notifier.join().unwrap();
    });
}

#[test]
fn loom_an_observer_sees_a_registration_whole() {
    loom::model(|| {
        let entry = Arc::new(Registration {
            pid: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            start: AtomicU64::new(0),
        });
        let e = entry.clone();
        let me = ProcessId { pid: 42, start: 7 };
        let writer = thread::spawn(move || {
            e.take(me);
            e.clear();
        });
        // Whatever the interleaving, an observer sees nobody or the whole
        // identity, never a PID with a missing start time.
        if let Some(who) = entry.holder() {
            assert_eq!(who, me, "torn registration");
        }
        writer.join().unwrap();
    });
}

#[test]
fn loom_a_change_seen_by_the_recheck_needs_no_bump_and_loses_no_waiter() {
    loom::model(|| {
        let word = Arc::new(AtomicU32::new(0));
        let waiters = Arc::new(AtomicU32::new(0));
        let flag = Arc::new(AtomicU32::new(0));
        let (w, n, f) = (word.clone(), waiters.clone(), flag.clone());
        let notifier = thread::spawn(move || {
            // The hot path: the change is what the waiter re-checks.
            f.store(1, Ordering::Release);
            wait::notify_changed(&w, &n, false);
        });
        loop {
            let seen = word.load(Ordering::Acquire);
            if flag.load(Ordering::Acquire) == 1 {
                break;
            }
            wait::block(&word, &waiters, seen, None, || {
                flag.load(Ordering::Acquire) == 1
            });
        }
        notifier.join().unwrap();
    });
}
