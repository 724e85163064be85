//! What the queue keeps in its segment (format version 3).
//!
//! # Layout
//!
//! The segment is a [`shm_core::Shared`]`<Control>`: the 128-byte shm-core
//! header, then [`Control`], then `capacity` slots of `stride` bytes each in
//! the trailing region. A slot is a 16-byte [`SlotHeader`] followed by
//! `slot_size` bytes of payload; `stride` is that rounded up to 64.
//!
//! # The slot state word
//!
//! Every slot has one state word, a [`WaitWord`] whose value is
//! `lap << 2 | tag`: `lap` is the first position of the lap the slot is on
//! now (the position minus the slot's index, a multiple of the capacity),
//! so that the all-zero word of a fresh segment means "slot `i` is free for
//! position `i`", and `tag` says what the slot holds for that position `p`.
//!
//! | tag | state | set by | from |
//! |---|---|---|---|
//! | 0 `EMPTY` | free for the producer of position `p` | creation (zero); the consumer of `p - capacity` releasing it; a producer freeing a dead consumer's claim | `FULL`/`SKIP` of `p - capacity` |
//! | 1 `FULL` | the message of position `p` is committed | the producer that claimed `p`, after writing the payload and length | `EMPTY` of `p` |
//! | 2 `SKIP` | a tombstone: position `p` carries no message | a consumer recovering a dead producer's claim; a producer whose write closure panicked | `EMPTY` of `p` |
//!
//! Every change is a compare-and-swap from the exact value the changer
//! expects (AcqRel), so a stale or dead process can never move a slot that
//! has moved on, and what a producer wrote before `FULL(p)` is seen by the
//! consumer that loads `FULL(p)` (Acquire).
//!
//! # Claims
//!
//! Positions are claimed, never locked: a producer claims `tail..tail+n`
//! by a CAS on `tail` after seeing `EMPTY(tail+i)` in each slot; a consumer
//! claims `head..head+n` by a CAS on `head` after seeing `FULL` or `SKIP`
//! for each. Before its CAS, a claimer publishes the range in its own
//! [`Registration`] (`claim_start`, `claim_len`), and clears it only after
//! its last commit or release. The CAS is a Release on an index that is
//! changed by RMWs only, so whoever loads the index past `p` (Acquire) also
//! sees the record of the process that claimed `p`: a claim nobody live has
//! published is the claim of a dead process, and a survivor turns it into
//! a tombstone (dead producer) or frees the slot (dead consumer), each with
//! the CAS of the table above.

use shm_core::{ProcessId, ShmSafe, ShmShared, type_id};
use shm_sync::WaitWord;

use shm_sync::shim::{AtomicU32, AtomicU64, Ordering};

/// Format version of the queue's segment layout (the `Control` type id
/// carries it). Version 1 had one lock for both sides; version 2 had no
/// table of attached processes, so its name could not follow its peers.
pub const FORMAT_VERSION: u32 = 3;

/// The `Control` type ids of earlier formats, oldest first: a segment made
/// with one of them is refused with [`crate::QueueOpenError::OldFormat`].
pub(crate) const OLD_FORMATS: [(u32, &str); 2] =
    [(1, "shm_queue::Control/v1"), (2, "shm_queue::Control/v2")];

/// Tag of a slot free for the producer of its position.
pub(crate) const EMPTY: u64 = 0;
/// Tag of a committed message.
pub(crate) const FULL: u64 = 1;
/// Tag of a tombstone.
pub(crate) const SKIP: u64 = 2;

/// Largest position: `lap << 2 | tag` must fit a [`WaitWord`] value (63
/// bits). At 10⁹ messages a second that is 36 years of traffic.
pub(crate) const MAX_POS: u64 = shm_sync::MAX_WAIT_VALUE >> 2;

/// The state value of the lap starting at position `lap` with `tag`.
#[inline]
pub(crate) fn state(lap: u64, tag: u64) -> u64 {
    lap << 2 | tag
}

/// The slot index of position `pos` in a ring of `capacity` slots, and the
/// first position of its lap (a mask for a power-of-two capacity, the
/// usual case: no division on the message path).
#[inline]
pub(crate) fn slot_index(pos: u64, capacity: u64) -> (usize, u64) {
    let index = if capacity.is_power_of_two() {
        pos & (capacity - 1)
    } else {
        pos % capacity
    };
    (index as usize, pos - index)
}

/// `(lap, tag)` of a state value.
#[inline]
pub(crate) fn decode(value: u64) -> (u64, u64) {
    (value >> 2, value & 3)
}

/// How many producers and how many consumers can be registered at once.
/// (2 in the loom models, where every registration a recovery scan reads
/// is one more step to explore.)
pub const MAX_PEERS: usize = if cfg!(shm_loom) { 2 } else { 64 };

/// How many handles can be attached to a queue at once (an open
/// [`crate::Queue`] takes one entry, shared by the senders and receivers
/// made from it).
pub const MAX_ATTACHED: usize = if cfg!(shm_loom) { 2 } else { 128 };

/// [`LifeLine::retire`]: nobody is removing the name.
pub(crate) const RETIRE_NONE: u64 = 0;
/// [`LifeLine::retire`]: the name was removed; nobody may join any more.
pub(crate) const RETIRE_DONE: u64 = u64::MAX;

/// Bytes of a slot before its payload.
pub(crate) const SLOT_HEADER: usize = 16;

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
    pub(crate) state: WaitWord,
    /// Payload length of a `FULL` slot, written before `FULL`.
    pub(crate) len: AtomicU32,
    pub(crate) _pad: AtomicU32,
}

#[cfg(not(shm_loom))]
const _: () = assert!(size_of::<SlotHeader>() == SLOT_HEADER);

// SAFETY: `#[repr(C)]` of atomics only: no pointers, any bit pattern valid,
// all mutation atomic.
unsafe impl ShmSafe for SlotHeader {
    const TYPE_ID: u64 = type_id("shm_queue::SlotHeader/v2");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for SlotHeader {}

/// Bits of a registration's identity word that hold the PID (Linux's
/// `PID_MAX_LIMIT` is 2²²).
const PID_BITS: u32 = 22;

/// One registered producer or consumer, on a cache line of its own (only
/// its holder writes it on the message path).
#[repr(C, align(64))]
pub(crate) struct Registration {
    /// Who holds the entry: `pid | start_time << 22`, 0 when free. One
    /// word, so that taking and clearing an entry are single CASes and an
    /// observer never pairs one process's PID with another's start time.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | 0 | free |
    /// | `id` | held by that process |
    ///
    /// Transitions: `0 → id` by the registering process (CAS, AcqRel),
    /// `id → 0` by the holder leaving or by a survivor that found the
    /// holder dead (CAS, AcqRel).
    pub(crate) ident: AtomicU64,
    /// First position of the holder's current claim.
    pub(crate) claim_start: AtomicU64,
    /// Positions claimed from `claim_start`; 0 when the holder claims
    /// nothing. Written by the holder only (and reset by the next holder).
    pub(crate) claim_len: AtomicU32,
    pub(crate) _pad: AtomicU32,
}

/// A registration's identity word for `p` (0 never names a process).
pub(crate) fn ident_of(p: ProcessId) -> u64 {
    u64::from(p.pid & ((1 << PID_BITS) - 1)) | p.start << PID_BITS
}

/// The process an identity word names.
pub(crate) fn process_of(ident: u64) -> ProcessId {
    ProcessId {
        pid: (ident & ((1 << PID_BITS) - 1)) as u32,
        start: ident >> PID_BITS,
    }
}

impl Registration {
    /// The holder's identity word (Acquire: its claim record is visible).
    pub(crate) fn ident(&self) -> u64 {
        self.ident.load(Ordering::Acquire)
    }

    /// Whether the holder's published claim covers `pos`.
    pub(crate) fn covers(&self, pos: u64) -> bool {
        let len = u64::from(self.claim_len.load(Ordering::Acquire));
        let start = self.claim_start.load(Ordering::Acquire);
        len != 0 && pos >= start && pos - start < len
    }

    /// Publishes a claim of `start..start+len` (before the index CAS, whose
    /// Release publishes it).
    #[inline]
    pub(crate) fn publish(&self, start: u64, len: u32) {
        self.claim_start.store(start, Ordering::Relaxed);
        self.claim_len.store(len, Ordering::Relaxed);
    }

    /// Withdraws the claim record (after the last commit or release, or a
    /// lost CAS).
    #[inline]
    pub(crate) fn withdraw(&self) {
        self.claim_len.store(0, Ordering::Release);
    }
}

// SAFETY: as for `SlotHeader` (`align(64)` only adds padding).
unsafe impl ShmSafe for Registration {
    const TYPE_ID: u64 = type_id("shm_queue::Registration/v2");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for Registration {}

/// Written by producers only, on a cache line of its own.
#[repr(C, align(64))]
pub(crate) struct ProducerLine {
    /// Next position to claim; changed by CAS only (see the module docs).
    /// Consumers with nothing to wait for but a new claim sleep on it: a
    /// producer whose claim finds their flag wakes them after committing.
    pub(crate) tail: WaitWord,
}

/// Written by consumers only, on a cache line of its own.
#[repr(C, align(64))]
pub(crate) struct ConsumerLine {
    /// Next position to take; changed by CAS only. Producers waiting for
    /// room sleep on it: a consumer whose claim finds their flag wakes them
    /// after releasing.
    pub(crate) head: WaitWord,
    /// Tombstones taken (so `received = head - tombstones_taken`).
    pub(crate) tombstones_taken: AtomicU64,
}

// SAFETY: as for `SlotHeader`.
unsafe impl ShmSafe for ProducerLine {
    const TYPE_ID: u64 = type_id("shm_queue::ProducerLine/v2");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for ProducerLine {}
// SAFETY: as for `SlotHeader`.
unsafe impl ShmSafe for ConsumerLine {
    const TYPE_ID: u64 = type_id("shm_queue::ConsumerLine/v2");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for ConsumerLine {}

/// Who the name belongs to, on a line of its own (touched only when a
/// handle opens or closes).
#[repr(C, align(64))]
pub(crate) struct LifeLine {
    /// The [`crate::Lifetime`] the creator chose (read-only after init):
    /// 0 `LastPeer`, 1 `Creator`, 2 `Persistent`.
    pub(crate) lifetime: AtomicU32,
    pub(crate) _pad: AtomicU32,
    /// Removal of the name in `LastPeer` mode:
    ///
    /// | value | meaning |
    /// |---|---|
    /// | [`RETIRE_NONE`] | nobody is removing the name |
    /// | `id` | that process found no other attached process and is about to remove the name |
    /// | [`RETIRE_DONE`] | the name was removed: open it again to join the queue it names now |
    ///
    /// Transitions: `0 → id` (CAS) by the last handle leaving; `id → 0`
    /// when it then sees a newcomer, or by anyone who finds `id` dead with
    /// the name still there; `id → DONE` after the name is removed (by `id`,
    /// or by anyone who finds `id` dead and the name gone).
    pub(crate) retire: AtomicU64,
}

// SAFETY: as for `SlotHeader`.
unsafe impl ShmSafe for LifeLine {
    const TYPE_ID: u64 = type_id("shm_queue::LifeLine/v3");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for LifeLine {}

/// The queue's control block.
#[repr(C)]
pub(crate) struct Control {
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
    /// Sends that had to sleep (written only on the slow path).
    pub(crate) blocked_sends: AtomicU64,
    /// Receives that had to sleep.
    pub(crate) blocked_recvs: AtomicU64,
    /// Claims of dead processes recovered (tombstones made, slots freed).
    pub(crate) recovered: AtomicU64,
    /// Sends abandoned because the write closure panicked (tombstones).
    pub(crate) abandoned: AtomicU64,
    pub(crate) producer: ProducerLine,
    pub(crate) consumer: ConsumerLine,
    pub(crate) producers: [Registration; MAX_PEERS],
    pub(crate) consumers: [Registration; MAX_PEERS],
    pub(crate) life: LifeLine,
    /// Identity words of the attached handles (0: free), each taken and
    /// cleared by one CAS, like a registration's.
    pub(crate) attached: [AtomicU64; MAX_ATTACHED],
}

// SAFETY: `#[repr(C)]` of atomics only: no pointers, any bit pattern
// valid, all mutation atomic.
unsafe impl ShmSafe for Control {
    const TYPE_ID: u64 = type_id("shm_queue::Control/v3");
}
// SAFETY: every field is an atomic (padding aside).
unsafe impl ShmShared for Control {}

/// Bytes from one slot to the next for a payload size.
pub(crate) fn stride_for(slot_size: u32) -> Option<u32> {
    (SLOT_HEADER as u32)
        .checked_add(slot_size)?
        .checked_next_multiple_of(64)
}

// The offsets docs/layout.md documents (format version 3).
#[cfg(not(shm_loom))]
const _: () = {
    use std::mem::offset_of;
    assert!(
        size_of::<Control>() == 192 + 2 * 64 * MAX_PEERS + 64 + 8 * MAX_ATTACHED
            && align_of::<Control>() == 64
    );
    assert!(offset_of!(Control, life) == 192 + 2 * 64 * MAX_PEERS);
    assert!(offset_of!(Control, attached) == 256 + 2 * 64 * MAX_PEERS);
    assert!(offset_of!(LifeLine, retire) == 8);
    assert!(offset_of!(Control, capacity) == 0);
    assert!(offset_of!(Control, slot_size) == 4);
    assert!(offset_of!(Control, stride) == 8);
    assert!(offset_of!(Control, flags) == 12);
    assert!(offset_of!(Control, message_type) == 16);
    assert!(offset_of!(Control, pid_ns) == 24);
    assert!(offset_of!(Control, blocked_sends) == 32);
    assert!(offset_of!(Control, blocked_recvs) == 40);
    assert!(offset_of!(Control, recovered) == 48);
    assert!(offset_of!(Control, abandoned) == 56);
    assert!(offset_of!(Control, producer) == 64);
    assert!(offset_of!(Control, consumer) == 128);
    assert!(offset_of!(Control, producers) == 192);
    assert!(offset_of!(Control, consumers) == 192 + 64 * MAX_PEERS);
    assert!(offset_of!(ConsumerLine, tombstones_taken) == 8);
    assert!(size_of::<Registration>() == 64);
    assert!(offset_of!(Registration, claim_start) == 8);
    assert!(offset_of!(Registration, claim_len) == 16);
    assert!(offset_of!(SlotHeader, len) == 8);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the format-1 control block: same size, alignment and
    /// type id as `shm_queue::Control/v1` (its bytes do not matter: the
    /// opener must refuse it before reading any).
    #[repr(C, align(64))]
    struct ControlV1([AtomicU64; 280]);

    // SAFETY: atomics only; it reproduces the fingerprint of format 1.
    unsafe impl ShmSafe for ControlV1 {
        const TYPE_ID: u64 = type_id(OLD_FORMATS[0].1);
    }
    // SAFETY: every byte is inside an atomic.
    unsafe impl ShmShared for ControlV1 {}

    #[test]
    #[cfg(not(shm_loom))]
    fn queues_of_older_formats_are_refused_with_a_message_that_says_so() {
        refuses_old_format::<ControlV1>(1);
        refuses_old_format::<ControlV2>(2);
    }

    /// A stand-in for the format-2 control block (type id and size).
    #[repr(C, align(64))]
    struct ControlV2([AtomicU64; 24 + 2 * 8 * 64]);

    // SAFETY: atomics only; it reproduces the fingerprint of format 2.
    unsafe impl ShmSafe for ControlV2 {
        const TYPE_ID: u64 = type_id(OLD_FORMATS[1].1);
    }
    // SAFETY: every byte is inside an atomic.
    unsafe impl ShmShared for ControlV2 {}

    #[cfg(not(shm_loom))]
    fn refuses_old_format<C: ShmShared>(version: u32) {
        let id = shm_core::SegmentId::posix(&format!(
            "/shmrs-test-oldformat{version}-{}",
            std::process::id()
        ))
        .expect("name");
        // The creating handle removes the segment when dropped.
        let _old = shm_core::Shared::<C>::create(
            &id,
            &shm_core::SharedOptions::new()
                .kind(crate::KIND)
                .extra(4 * 96),
            |_| Ok(()),
        )
        .expect("create an old-format lookalike");
        let e = crate::Queue::open(&id).expect_err("an old-format queue must be refused");
        assert!(
            matches!(
                e,
                crate::QueueOpenError::OldFormat {
                    found,
                    expected: FORMAT_VERSION,
                    ..
                } if found == version
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("format version {version}"))
                && msg.contains(&format!("format version {FORMAT_VERSION}")),
            "{msg}"
        );
    }

    #[test]
    fn identity_words_round_trip_and_never_are_zero() {
        let p = ProcessId {
            pid: 4_194_303,
            start: 123_456_789,
        };
        assert_eq!(process_of(ident_of(p)), p);
        let me = ProcessId::current();
        assert_ne!(ident_of(me), 0);
        assert_eq!(process_of(ident_of(me)), me);
    }

    #[test]
    fn states_round_trip() {
        for (pos, tag) in [(0, EMPTY), (5, FULL), (MAX_POS, SKIP)] {
            assert_eq!(decode(state(pos, tag)), (pos, tag));
        }
        assert!(state(MAX_POS, SKIP) <= shm_sync::MAX_WAIT_VALUE);
    }
}
