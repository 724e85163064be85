//! What the queue keeps in its segment.
//!
//! # Layout
//!
//! The segment is a [`shm_core::Shared`]`<Control>`: the 128-byte shm-core
//! header, then [`Control`], then `capacity` slots of `stride` bytes each in
//! the trailing region. A slot is a 32-byte [`SlotHeader`] followed by
//! `slot_size` bytes of payload; `stride` is that rounded up to 64.
//!
//! # The slot state word
//!
//! | value | state | who sets it | ordering |
//! |---|---|---|---|
//! | 0 `FREE` | empty | the consumer after copying out; a locker reclaiming a dead consumer's slot | Release |
//! | 1 `WRITING` | claimed by a producer at position `seq` | a producer, under the lock | (lock) |
//! | 2 `READY` | payload committed | the producer after copying in | Release |
//! | 3 `READING` | claimed by a consumer | a consumer, under the lock | (lock) |
//! | 4 `ABANDONED` | the producer gave up (its closure panicked) | the producer | Release |
//!
//! A consumer loads the word with Acquire before reading the payload; a
//! producer loads it with Acquire before overwriting a slot a consumer
//! freed. A claim is committed by moving `tail` (producers) or `head`
//! (consumers) under the lock: a claim whose claimer died before moving the
//! index is seen by the next locker at position `tail` (or `head`) and taken
//! over.

use shm_core::{ProcessId, ShmSafe, ShmShared, type_id};

use crate::lock::QueueLock;
use crate::primitive::{AtomicU32, AtomicU64, Ordering};

/// Slot state: empty.
pub(crate) const FREE: u32 = 0;
/// Slot state: a producer is writing it.
pub(crate) const WRITING: u32 = 1;
/// Slot state: a committed message.
pub(crate) const READY: u32 = 2;
/// Slot state: a consumer is reading it.
pub(crate) const READING: u32 = 3;
/// Slot state: the producer abandoned its claim; consumers skip it.
pub(crate) const ABANDONED: u32 = 4;

/// How many producers and how many consumers can be registered at once.
pub const MAX_PEERS: usize = 64;

/// Bytes of a slot before its payload.
pub(crate) const SLOT_HEADER: usize = 32;

/// Flag bit of [`Control::flags`]: the queue was closed.
pub(crate) const FLAG_CLOSED: u32 = 1;
/// Flag bit: a producer has registered at least once.
pub(crate) const FLAG_HAD_PRODUCER: u32 = 2;
/// Flag bit: a consumer has registered at least once.
pub(crate) const FLAG_HAD_CONSUMER: u32 = 4;

/// The header of one slot.
#[repr(C)]
pub(crate) struct SlotHeader {
    /// See the state table in the module docs.
    pub(crate) state: AtomicU32,
    /// Payload length of a READY slot.
    pub(crate) len: AtomicU32,
    /// The queue position this slot was last claimed for.
    pub(crate) seq: AtomicU64,
    /// PID of the process holding a WRITING or READING claim.
    pub(crate) owner_pid: AtomicU32,
    pub(crate) _pad: AtomicU32,
    /// Start time of that process (PID reuse guard).
    pub(crate) owner_start: AtomicU64,
}

#[cfg(not(shm_loom))]
const _: () = assert!(size_of::<SlotHeader>() == SLOT_HEADER);

impl SlotHeader {
    /// The state, with Acquire: seeing READY (or FREE) makes the payload
    /// writes (or reads) of the process that set it happen-before.
    pub(crate) fn state(&self) -> u32 {
        self.state.load(Ordering::Acquire)
    }

    /// Producer, after writing the payload of position `pos`: commits the
    /// message. `false` if the claim is no longer ours (taken over, or the
    /// slot overwritten), in which case nothing is changed.
    pub(crate) fn commit(&self, pos: u64, len: u32) -> bool {
        if self.seq.load(Ordering::Relaxed) != pos {
            return false;
        }
        self.len.store(len, Ordering::Relaxed);
        self.state
            .compare_exchange(WRITING, READY, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Consumer, after reading the payload of position `pos`: the slot may
    /// be written again. `false` if the claim is no longer ours.
    pub(crate) fn release(&self, pos: u64) -> bool {
        self.seq.load(Ordering::Relaxed) == pos
            && self
                .state
                .compare_exchange(READING, FREE, Ordering::Release, Ordering::Relaxed)
                .is_ok()
    }

    /// A locker skipping a dead producer's claim: the slot is free again.
    pub(crate) fn reclaim(&self) {
        self.state.store(FREE, Ordering::Release);
    }

    /// Under the lock: records this process's claim of position `pos`.
    pub(crate) fn claim(&self, me: ProcessId, pos: u64, state: u32) {
        self.owner_start.store(me.start, Ordering::Relaxed);
        self.owner_pid.store(me.pid, Ordering::Relaxed);
        self.seq.store(pos, Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
    }

    /// The process holding the claim.
    pub(crate) fn owner(&self) -> ProcessId {
        ProcessId {
            pid: self.owner_pid.load(Ordering::Relaxed),
            start: self.owner_start.load(Ordering::Relaxed),
        }
    }
}

// SAFETY: `#[repr(C)]` of atomics only: no pointers, any bit pattern valid,
// all mutation atomic.
unsafe impl ShmSafe for SlotHeader {
    const TYPE_ID: u64 = type_id("shm_queue::SlotHeader/v1");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for SlotHeader {}

/// One registered producer or consumer. `pid == 0` means the entry is free.
/// `start` is written before `pid`, so a registration cut short by death has
/// `pid == 0` (free) or a full identity.
#[repr(C)]
pub(crate) struct Registration {
    pub(crate) pid: AtomicU32,
    pub(crate) _pad: AtomicU32,
    pub(crate) start: AtomicU64,
}

impl Registration {
    /// Takes the entry for `me`: `start` first, then `pid` with Release, so
    /// a reader that sees the pid (Acquire) sees the start too.
    pub(crate) fn take(&self, me: ProcessId) {
        self.start.store(me.start, Ordering::Relaxed);
        self.pid.store(me.pid, Ordering::Release);
    }

    /// Frees the entry. `start` is left as it was, so an observer that
    /// read the old `pid` still pairs it with the right start time.
    pub(crate) fn clear(&self) {
        self.pid.store(0, Ordering::Release);
    }

    /// Who holds the entry, if anyone. Writers change entries under the
    /// queue lock; an observer without it reads `pid`, `start`, `pid` and
    /// takes an entry that changed meanwhile as free.
    pub(crate) fn holder(&self) -> Option<ProcessId> {
        let pid = self.pid.load(Ordering::Acquire);
        if pid == 0 {
            return None;
        }
        let start = self.start.load(Ordering::Acquire);
        (self.pid.load(Ordering::Acquire) == pid).then_some(ProcessId { pid, start })
    }
}

// SAFETY: as for `SlotHeader`.
unsafe impl ShmSafe for Registration {
    const TYPE_ID: u64 = type_id("shm_queue::Registration/v1");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for Registration {}

/// Fields written by producers, on a cache line of their own.
#[repr(C, align(64))]
pub(crate) struct ProducerLine {
    /// Next position to claim; moved under the lock only.
    pub(crate) tail: AtomicU64,
    /// Futex word consumers sleep on; bumped after every commit.
    pub(crate) not_empty: AtomicU32,
    /// Consumers asleep on `not_empty` (SeqCst, see `wait.rs`).
    pub(crate) recv_waiters: AtomicU32,
    /// Messages committed.
    pub(crate) sent: AtomicU64,
    /// Sends that had to sleep.
    pub(crate) blocked_sends: AtomicU64,
}

/// Fields written by consumers, on a cache line of their own.
#[repr(C, align(64))]
pub(crate) struct ConsumerLine {
    /// Next position to take; moved under the lock only.
    pub(crate) head: AtomicU64,
    /// Futex word producers sleep on; bumped after every slot freed.
    pub(crate) not_full: AtomicU32,
    /// Producers asleep on `not_full`.
    pub(crate) send_waiters: AtomicU32,
    /// Messages taken.
    pub(crate) received: AtomicU64,
    /// Receives that had to sleep.
    pub(crate) blocked_recvs: AtomicU64,
    /// Claims of dead processes taken over (slots skipped or freed).
    pub(crate) recovered: AtomicU64,
    /// Times the lock was repaired after its holder died.
    pub(crate) lock_repairs: AtomicU64,
}

// SAFETY: as for `SlotHeader` (`align(64)` only adds padding).
unsafe impl ShmSafe for ProducerLine {
    const TYPE_ID: u64 = type_id("shm_queue::ProducerLine/v1");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for ProducerLine {}
// SAFETY: as for `SlotHeader`.
unsafe impl ShmSafe for ConsumerLine {
    const TYPE_ID: u64 = type_id("shm_queue::ConsumerLine/v1");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for ConsumerLine {}

/// The queue's control block.
#[repr(C)]
pub(crate) struct Control {
    /// Guards `head`, `tail`, slot claims and registrations (all atomics,
    /// so observers read them without the lock). See [`crate::lock`].
    pub(crate) lock: QueueLock,
    /// Number of slots (read-only after init).
    pub(crate) capacity: AtomicU32,
    /// Largest payload (read-only after init).
    pub(crate) slot_size: AtomicU32,
    /// Bytes from one slot to the next (read-only after init).
    pub(crate) stride: AtomicU32,
    /// `FLAG_*` bits.
    pub(crate) flags: AtomicU32,
    /// Type id of the messages of a typed queue, 0 for bytes.
    pub(crate) message_type: AtomicU64,
    /// Inode of the creator's PID namespace (0 if unknown): PIDs name
    /// peers, so every user must see the same PIDs.
    pub(crate) pid_ns: AtomicU64,
    pub(crate) producer: ProducerLine,
    pub(crate) consumer: ConsumerLine,
    pub(crate) producers: [Registration; MAX_PEERS],
    pub(crate) consumers: [Registration; MAX_PEERS],
}

// SAFETY: `#[repr(C)]` of atomics only (the lock is two atomic words): no
// pointers, any bit pattern valid, all mutation atomic.
unsafe impl ShmSafe for Control {
    const TYPE_ID: u64 = type_id("shm_queue::Control/v1");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for Control {}

/// Bytes from one slot to the next for a payload size.
pub(crate) fn stride_for(slot_size: u32) -> Option<u32> {
    (SLOT_HEADER as u32)
        .checked_add(slot_size)?
        .checked_next_multiple_of(64)
}

// The offsets docs/layout.md documents (format version 1).
#[cfg(not(shm_loom))]
const _: () = {
    use std::mem::offset_of;
    assert!(size_of::<Control>() == 2240 && align_of::<Control>() == 64);
    assert!(size_of::<QueueLock>() == 16);
    assert!(offset_of!(Control, lock) == 0);
    assert!(offset_of!(Control, capacity) == 16);
    assert!(offset_of!(Control, slot_size) == 20);
    assert!(offset_of!(Control, stride) == 24);
    assert!(offset_of!(Control, flags) == 28);
    assert!(offset_of!(Control, message_type) == 32);
    assert!(offset_of!(Control, pid_ns) == 40);
    assert!(offset_of!(Control, producer) == 64);
    assert!(offset_of!(Control, consumer) == 128);
    assert!(offset_of!(Control, producers) == 192);
    assert!(offset_of!(Control, consumers) == 192 + 16 * MAX_PEERS);
    assert!(offset_of!(ProducerLine, not_empty) == 8 && offset_of!(ProducerLine, sent) == 16);
    assert!(
        offset_of!(ConsumerLine, not_full) == 8 && offset_of!(ConsumerLine, lock_repairs) == 40
    );
    assert!(offset_of!(SlotHeader, seq) == 8 && offset_of!(SlotHeader, owner_start) == 24);
};

/// The inode of this process's PID namespace (`/proc/self/ns/pid` reads
/// `pid:[INODE]`), or 0 if it cannot be read.
pub(crate) fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}
