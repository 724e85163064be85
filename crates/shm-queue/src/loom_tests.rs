//! loom models of the slot protocol, run on the shipped [`Ring`] code
//! (a model of a copy would prove the copy, not what ships): `claim_send`, `claim_recv`, `commit`, `tag`,
//! `release`, the recovery of dead claims, and shm-sync's [`WaitWord`]
//! with its loom-modelled futex. Only the segment is replaced: the slot
//! headers are a `Vec` behind the [`Slots`] trait, the control block is
//! built in memory, and each slot's payload is one loom [`UnsafeCell`]
//! holding a `u64`, written between claim and commit and read between
//! claim and release, so loom reports any access the protocol does not
//! order (a torn or early read, a write over a slot still being read).
//!
//! The blocking loop ([`acquire`] here) is the essential part of
//! `Queue::acquire`, which needs a whole segment-backed `Queue`: claim;
//! on `Wait { on: Index, seen }` look once more (what `spin_until_changed`
//! does under loom), then sleep on the other side's index; on
//! `Wait { on: Held { pos }, seen }` take a short nap (see below); retry.
//! The ends of a
//! claim follow `SendClaim`/`RecvClaim`: commit (or release), withdraw the
//! record, then `wake_all` if the claim's index CAS found sleepers.
//!
//! | model | proves |
//! |---|---|
//! | [`loom_ring_spsc_handoff_wraps_a_capacity_one_ring`] | two messages through one slot arrive once each, in order, with their bytes and length: commit (Release) → claim (Acquire) publishes the payload, and release → next lap's claim orders the consumer's read before the producer's next write |
//! | [`loom_ring_blocked_consumer_is_woken_by_the_commit`] | a consumer asleep on `tail` (no deadline) is never left asleep: the producer's claim CAS takes its flag and the producer wakes it after the commit |
//! | [`loom_ring_probe_is_woken_by_the_commit_and_claims_nothing`] | the readiness helper's wait (a claim with `max == 0`, asleep on `tail` with no deadline) is woken by the producer's commit, and takes nothing: the receive after it gets the message |
//! | [`loom_ring_blocked_producer_is_woken_by_the_release`] | the same for a producer asleep on `head` of a full ring, woken by the consumer after its release |
//! | [`loom_ring_mpsc_two_producers_capacity_two`] | two producers (one sending two messages) and one consumer, all blocking without deadlines, over a ring that wraps: every message once, each producer's in order, no lost wake-up |
//! | [`loom_ring_dead_producer_claim_becomes_a_tombstone`] | a producer that dies after its claim (and is reaped) leaves a tombstone a recovering consumer makes and takes; the live producer's message arrives once; recovery never tombstones a live claim (its record is seen through the index CAS) |
//! | [`loom_ring_dead_consumer_slot_is_freed`] | a producer that recovers on every claim never frees the slot of a live consumer still reading (its record is seen through the `head` CAS); it frees the slot a dead consumer held, and sends on; the dead consumer's message is lost, no other, none twice |
//!
//! Liveness under loom: `alive()` is `true`, so a "dead" peer is one whose
//! registration identity was cleared. The dying thread does that itself as
//! its last step, with the reaper's CAS (`id → 0`, AcqRel): a real reaper
//! acts only after the kernel saw the process gone, so everything the dead
//! process did happens before the clearing either way. Where a dead peer
//! may have taken a sleeper's flag, that side sleeps with a deadline, as
//! the shipped loop always does (`Sleep::Slice`); everywhere else sleeps on
//! an index have none, so a lost wake-up is a deadlock loom reports.
//!
//! Two departures from the shipped loop, both for loom's sake:
//!
//! - A `Held` nap is a yield and a retry (the nap timing out), not a
//!   flagged sleep on the slot word. loom orders a word's modifications by
//!   causality only, so a napper's flag CAS and the holder's concurrent
//!   plain Release store (`store_exclusive`'s fast path) stay unordered,
//!   and the napper may re-read its own flag forever: a livelock of the
//!   checker, not of the protocol. The flagged nap against
//!   `store_exclusive` is checked in shm-sync
//!   (`loom_wait_word_store_exclusive_never_strands_a_timed_sleeper`).
//! - Where the loop goes round without sleeping it yields, so that loom
//!   runs the other threads and stops returning values already seen.
//!
//! loom's scheduler is not fair: two threads spinning at once can starve a
//! third forever, so each model has at most one thread that spins while
//! another must make progress (hence one thread for both consumers of the
//! dead-consumer model).

use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shm_sync::{Slept, WaitWord};

use crate::layout::{
    ConsumerLine, Control, FULL, LifeLine, ProducerLine, Registration, SKIP, SlotHeader,
};
use crate::ring::{Bad, Claim, Ring, Side, Slots, WaitOn};
use shm_sync::shim::{AtomicU32, AtomicU64, Ordering};

/// The slot headers, in memory instead of a segment.
struct Headers(Vec<SlotHeader>);

impl Slots for Headers {
    fn header(&self, index: usize) -> Result<&SlotHeader, Bad> {
        self.0
            .get(index)
            .ok_or_else(|| Bad(format!("slot {index} out of bounds")))
    }
}

/// One slot's payload bytes, standing for the segment's.
struct Payload(UnsafeCell<u64>);

// SAFETY: the cell is only reached through `Model::write` and
// `Model::read`, by the holder of a claim on the slot; whether the
// protocol really makes those accesses exclusive is what loom checks
// (it tracks every access to a loom `UnsafeCell` and fails the model on
// one that is not ordered by happens-before).
unsafe impl Sync for Payload {}

/// A queue without a segment.
struct Model {
    ctl: Control,
    slots: Headers,
    payload: Vec<Payload>,
    cap: u64,
}

/// Identity words (any non-zero value names a live process under loom).
const PRODUCER: [u64; 2] = [0x11, 0x12];
const CONSUMER: [u64; 2] = [0x21, 0x22];

fn registration(ident: u64) -> Registration {
    Registration {
        ident: AtomicU64::new(ident),
        claim_start: AtomicU64::new(0),
        claim_len: AtomicU32::new(0),
        _pad: AtomicU32::new(0),
    }
}

impl Model {
    /// A fresh queue of `cap` slots (all-zero state words: slot `i` free
    /// for position `i`), producers and consumers of [`PRODUCER`] and
    /// [`CONSUMER`] registered.
    fn new(cap: u32) -> Arc<Model> {
        Arc::new(Model {
            ctl: Control {
                capacity: AtomicU32::new(cap),
                slot_size: AtomicU32::new(8),
                stride: AtomicU32::new(64),
                flags: AtomicU32::new(0),
                message_type: AtomicU64::new(0),
                pid_ns: AtomicU64::new(0),
                blocked_sends: AtomicU64::new(0),
                blocked_recvs: AtomicU64::new(0),
                recovered: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
                producer: ProducerLine {
                    tail: WaitWord::new(0),
                },
                consumer: ConsumerLine {
                    head: WaitWord::new(0),
                    tombstones_taken: AtomicU64::new(0),
                },
                producers: std::array::from_fn(|i| {
                    registration(PRODUCER.get(i).copied().unwrap_or(0))
                }),
                consumers: std::array::from_fn(|i| {
                    registration(CONSUMER.get(i).copied().unwrap_or(0))
                }),
                life: LifeLine {
                    lifetime: AtomicU32::new(0),
                    _pad: AtomicU32::new(0),
                    retire: AtomicU64::new(0),
                },
                attached: std::array::from_fn(|_| AtomicU64::new(0)),
            },
            slots: Headers(
                (0..cap)
                    .map(|_| SlotHeader {
                        state: WaitWord::new(0),
                        len: AtomicU32::new(0),
                        _pad: AtomicU32::new(0),
                    })
                    .collect(),
            ),
            payload: (0..cap).map(|_| Payload(UnsafeCell::new(0))).collect(),
            cap: u64::from(cap),
        })
    }

    /// The protocol as seen by `me`.
    fn ring(&self, me: u64) -> Ring<'_, Headers> {
        Ring {
            ctl: &self.ctl,
            slots: &self.slots,
            cap: self.cap,
            me,
        }
    }

    /// The registration entry of `me`.
    fn rec(&self, me: u64) -> &Registration {
        match (
            PRODUCER.iter().position(|&p| p == me),
            CONSUMER.iter().position(|&c| c == me),
        ) {
            (Some(i), _) => &self.ctl.producers[i],
            (_, Some(i)) => &self.ctl.consumers[i],
            _ => unreachable!("not a modelled peer"),
        }
    }

    /// Clears `me`'s registration as a reaper does once `me` is dead.
    fn reap(&self, me: u64) {
        let r = self.rec(me);
        assert!(
            r.ident
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        );
    }

    fn index(&self, pos: u64) -> usize {
        (pos % self.cap) as usize
    }

    /// The producer's writes between claim and commit: the length
    /// (Relaxed, as `Queue::set_len`) and the payload.
    fn write(&self, pos: u64, value: u64) {
        let i = self.index(pos);
        self.slots.0[i].len.store(value as u32, Ordering::Relaxed);
        // SAFETY: the caller holds the claim on `pos` (loom checks that the
        // claim makes this access exclusive).
        self.payload[i].0.with_mut(|p| unsafe { *p = value });
    }

    /// The consumer's reads between claim and release (the length as
    /// `Queue::msg_len` reads it); both must agree.
    fn read(&self, pos: u64) -> u64 {
        let i = self.index(pos);
        let len = self.slots.0[i].len.load(Ordering::Relaxed);
        // SAFETY: as for `write`, for reading.
        let value = self.payload[i].0.with(|p| unsafe { *p });
        assert_eq!(
            u64::from(len),
            value,
            "length and payload of {pos} disagree"
        );
        value
    }
}

/// How the waits of one side end when nothing wakes them.
#[derive(Clone, Copy)]
enum Sleep {
    /// No deadline: a lost wake-up deadlocks the model.
    Forever,
    /// A `LIVENESS` slice (under loom: yield once, then time out), as the
    /// shipped loop always has: needed where a dead peer took a sleeper's
    /// flag and will never wake it.
    Slice,
}

/// The essential part of `Queue::acquire`: claims `max` (1) positions for
/// `side`, or with `max == 0` only waits until a claim would get one (the
/// readiness helper's probe), sleeping as the shipped loop does. Returns
/// `(pos, wake)`.
fn acquire(
    ring: &Ring<'_, Headers>,
    side: Side,
    rec: &Registration,
    recover: bool,
    sleep: Sleep,
    max: usize,
) -> (u64, bool) {
    loop {
        let claim = match side {
            Side::Send => ring.claim_send(rec, max, recover),
            Side::Recv => ring.claim_recv(rec, max, recover),
        }
        .unwrap_or_else(|b| panic!("impossible state: {}", b.0));
        let seen = match claim {
            Claim::Got { start, n, wake } => {
                assert_eq!(n, max);
                return (start, wake);
            }
            Claim::Wait {
                on: WaitOn::Index,
                seen,
            } => seen,
            // A short nap on a slot another claim holds, in the shipped
            // loop; here a yield and a retry, as if the nap timed out (see
            // the module docs for why it does not flag the word).
            Claim::Wait {
                on: WaitOn::Held { .. },
                ..
            } => {
                thread::yield_now();
                continue;
            }
        };
        // A consumer waits for a producer's claim, a producer for a
        // consumer's.
        let word = match side {
            Side::Send => ring.index(Side::Recv),
            Side::Recv => ring.index(Side::Send),
        };
        let deadline = match sleep {
            Sleep::Forever => None,
            Sleep::Slice => Some(Instant::now()),
        };
        // `spin_until_changed` under loom: one look. Where the loop goes
        // round without sleeping, a yield tells loom this thread is
        // spinning: it then runs the others and stops returning values this
        // thread already saw.
        if word.load() != seen {
            thread::yield_now();
            continue;
        }
        if word.sleep(seen, deadline, || false) == Slept::Changed {
            thread::yield_now();
        }
    }
}

/// `Sender::send_in_place` for one `u64`: claim, write, commit, withdraw,
/// wake. Returns the position.
fn send(m: &Model, me: u64, value: u64, recover: bool, sleep: Sleep) -> u64 {
    let ring = m.ring(me);
    let rec = m.rec(me);
    let (pos, wake) = acquire(&ring, Side::Send, rec, recover, sleep, 1);
    m.write(pos, value);
    ring.commit(pos).unwrap_or_else(|b| panic!("{}", b.0));
    rec.withdraw();
    if wake {
        ring.index(Side::Send).wake_all();
    }
    pos
}

/// One claim of `Receiver::recv_in_place`: claim, read (a message) or
/// not (a tombstone), release, withdraw, wake. `None` for a tombstone.
fn recv(m: &Model, me: u64, recover: bool, sleep: Sleep) -> Option<u64> {
    let ring = m.ring(me);
    let rec = m.rec(me);
    let (pos, wake) = acquire(&ring, Side::Recv, rec, recover, sleep, 1);
    let tag = ring.tag(pos).unwrap_or_else(|b| panic!("{}", b.0));
    let got = match tag {
        FULL => Some(m.read(pos)),
        SKIP => None,
        _ => unreachable!("`tag` returns FULL or SKIP"),
    };
    ring.release(pos, tag).unwrap_or_else(|b| panic!("{}", b.0));
    rec.withdraw();
    if wake {
        ring.index(Side::Recv).wake_all();
    }
    got
}

/// Nothing is left to take: a further claim finds the ring empty.
fn assert_drained(m: &Model) {
    let ring = m.ring(CONSUMER[0]);
    let (head, tail) = ring.positions();
    assert_eq!(head, tail);
    assert!(matches!(
        ring.claim_recv(m.rec(CONSUMER[0]), 1, false),
        Ok(Claim::Wait {
            on: WaitOn::Index,
            ..
        })
    ));
    m.rec(CONSUMER[0]).withdraw();
}

/// Waits that end by a yielding retry instead of the futex, so this model
/// checks data hand-off alone (the wake path has its own models).
fn try_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        thread::yield_now();
    }
}

#[test]
fn loom_ring_spsc_handoff_wraps_a_capacity_one_ring() {
    loom::model(|| {
        let m = Model::new(1);
        let p = Arc::clone(&m);
        let producer = thread::spawn(move || {
            let ring = p.ring(PRODUCER[0]);
            let rec = p.rec(PRODUCER[0]);
            for value in [11, 22] {
                let pos = try_until(|| match ring.claim_send(rec, 1, false).unwrap() {
                    Claim::Got { start, .. } => Some(start),
                    Claim::Wait { .. } => None,
                });
                p.write(pos, value);
                ring.commit(pos).unwrap();
                rec.withdraw();
            }
        });
        let ring = m.ring(CONSUMER[0]);
        let rec = m.rec(CONSUMER[0]);
        let mut got = Vec::new();
        for _ in 0..2 {
            let pos = try_until(|| match ring.claim_recv(rec, 1, false).unwrap() {
                Claim::Got { start, .. } => Some(start),
                Claim::Wait { .. } => None,
            });
            assert_eq!(ring.tag(pos).unwrap(), FULL);
            got.push(m.read(pos));
            ring.release(pos, FULL).unwrap();
            rec.withdraw();
        }
        producer.join().unwrap();
        assert_eq!(got, [11, 22]);
        assert_drained(&m);
    });
}

#[test]
fn loom_ring_blocked_consumer_is_woken_by_the_commit() {
    loom::model(|| {
        let m = Model::new(1);
        let c = Arc::clone(&m);
        let consumer = thread::spawn(move || recv(&c, CONSUMER[0], false, Sleep::Forever));
        send(&m, PRODUCER[0], 7, false, Sleep::Forever);
        assert_eq!(consumer.join().unwrap(), Some(7));
        assert_drained(&m);
    });
}

#[test]
fn loom_ring_probe_is_woken_by_the_commit_and_claims_nothing() {
    loom::model(|| {
        let m = Model::new(1);
        let c = Arc::clone(&m);
        let consumer = thread::spawn(move || {
            // The readiness helper's wait: probe (`max == 0`) asleep on
            // `tail` with no deadline, so a lost wake-up deadlocks.
            let ring = c.ring(CONSUMER[0]);
            let (pos, wake) = acquire(
                &ring,
                Side::Recv,
                c.rec(CONSUMER[0]),
                false,
                Sleep::Forever,
                0,
            );
            assert_eq!((pos, wake), (0, false));
            // The probe took nothing: the receive that follows gets it.
            recv(&c, CONSUMER[0], false, Sleep::Forever)
        });
        send(&m, PRODUCER[0], 7, false, Sleep::Forever);
        assert_eq!(consumer.join().unwrap(), Some(7));
        assert_drained(&m);
    });
}

#[test]
fn loom_ring_blocked_producer_is_woken_by_the_release() {
    loom::model(|| {
        let m = Model::new(1);
        // The ring starts full.
        send(&m, PRODUCER[0], 5, false, Sleep::Forever);
        let p = Arc::clone(&m);
        let producer = thread::spawn(move || send(&p, PRODUCER[0], 6, false, Sleep::Forever));
        assert_eq!(recv(&m, CONSUMER[0], false, Sleep::Forever), Some(5));
        assert_eq!(producer.join().unwrap(), 1);
        assert_eq!(recv(&m, CONSUMER[0], false, Sleep::Forever), Some(6));
        assert_drained(&m);
    });
}

#[test]
fn loom_ring_mpsc_two_producers_capacity_two() {
    loom::model(|| {
        let m = Model::new(2);
        let a = Arc::clone(&m);
        let pa = thread::spawn(move || {
            send(&a, PRODUCER[0], 101, false, Sleep::Forever);
            send(&a, PRODUCER[0], 102, false, Sleep::Forever);
        });
        let b = Arc::clone(&m);
        let pb = thread::spawn(move || {
            send(&b, PRODUCER[1], 201, false, Sleep::Forever);
        });
        let got: Vec<u64> = (0..3)
            .map(|_| recv(&m, CONSUMER[0], false, Sleep::Forever).expect("no tombstones"))
            .collect();
        pa.join().unwrap();
        pb.join().unwrap();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [101, 102, 201], "each once: {got:?}");
        let at = |v| got.iter().position(|&g| g == v).unwrap();
        assert!(at(101) < at(102), "producer order: {got:?}");
        assert_drained(&m);
    });
}

#[test]
fn loom_ring_dead_producer_claim_becomes_a_tombstone() {
    loom::model(|| {
        let m = Model::new(1);
        let d = Arc::clone(&m);
        let dying = thread::spawn(move || {
            // Claims, writes half a message, and is killed before its
            // commit ("send:writing").
            let ring = d.ring(PRODUCER[1]);
            let rec = d.rec(PRODUCER[1]);
            let (pos, _wake) = acquire(&ring, Side::Send, rec, false, Sleep::Forever, 1);
            d.write(pos, 666);
            d.reap(PRODUCER[1]);
        });
        let p = Arc::clone(&m);
        let live = thread::spawn(move || send(&p, PRODUCER[0], 42, false, Sleep::Forever));
        let (mut messages, mut tombstones) = (Vec::new(), 0);
        while messages.len() + tombstones < 2 {
            match recv(&m, CONSUMER[0], true, Sleep::Slice) {
                Some(v) => messages.push(v),
                None => tombstones += 1,
            }
        }
        dying.join().unwrap();
        live.join().unwrap();
        assert_eq!((messages, tombstones), (vec![42], 1));
        assert_eq!(m.ctl.recovered.load(Ordering::Relaxed), 1);
        assert_eq!(m.ctl.consumer.tombstones_taken.load(Ordering::Relaxed), 1);
        assert_drained(&m);
    });
}

#[test]
fn loom_ring_dead_consumer_slot_is_freed() {
    loom::model(|| {
        let m = Model::new(1);
        let c = Arc::clone(&m);
        // One consumer thread, so that two spinning consumers cannot starve
        // the producer (loom's scheduler is not fair).
        let consumers = thread::spawn(move || {
            // A live consumer reads the first message while the producer,
            // recovering, looks at its slot.
            let first = recv(&c, CONSUMER[0], false, Sleep::Forever);
            // Another consumer claims the second and is killed before it
            // reads it ("recv:claimed"): the message is lost with it.
            let ring = c.ring(CONSUMER[1]);
            let rec = c.rec(CONSUMER[1]);
            let (lost, _wake) = acquire(&ring, Side::Recv, rec, false, Sleep::Forever, 1);
            c.reap(CONSUMER[1]);
            (first, lost)
        });
        for value in [1, 2, 3] {
            send(&m, PRODUCER[0], value, true, Sleep::Slice);
        }
        assert_eq!(consumers.join().unwrap(), (Some(1), 1));
        // The producer freed the dead consumer's slot for the third.
        assert_eq!(m.ctl.recovered.load(Ordering::Relaxed), 1);
        assert_eq!(recv(&m, CONSUMER[0], false, Sleep::Forever), Some(3));
        assert_drained(&m);
    });
}
