//! A queue's counters as an observer sees them: [`crate::Queue::inspect`]
//! maps the segment read-only (`O_RDONLY` + `PROT_READ`, or `SHM_RDONLY`),
//! copies the control block out ([`shm_core::Snapshot`]) and counts from
//! the copy, so a user who may read the queue but not write it can inspect
//! it, and the inspection can disturb nothing. [`crate::Queue::stats`]
//! counts the same way from the live control block.

use shm_core::{SegmentId, Snapshot};

use crate::error::{Corrupted, QueueOpenError};
use crate::layout::{Control, FLAG_CLOSED, Registration, ident_of, process_of};
use crate::queue::{Config, Inner, Lifetime, Stats};
use shm_sync::shim::Ordering;

/// The counters of `c`, a queue of `cap` slots of `slot_size` bytes with
/// `lifetime`, seen by the process whose registration identity is `me`
/// (0 for none).
pub(crate) fn stats_of(
    c: &Control,
    cap: u64,
    slot_size: usize,
    me: u64,
    lifetime: Lifetime,
) -> Stats {
    let (head, tail) = (c.consumer.head.load(), c.producer.tail.load());
    let taken = c.consumer.tombstones_taken.load(Ordering::Relaxed);
    let alive = |who: u64| who != 0 && (who == me || process_of(who).is_alive());
    let live = |table: &[Registration]| table.iter().filter(|r| alive(r.ident())).count() as u64;
    Stats {
        len: tail.saturating_sub(head).min(cap),
        capacity: cap,
        slot_size: slot_size as u64,
        sent: tail.saturating_sub(taken),
        received: head.saturating_sub(taken),
        blocked_sends: c.blocked_sends.load(Ordering::Relaxed),
        blocked_recvs: c.blocked_recvs.load(Ordering::Relaxed),
        producers: live(&c.producers),
        consumers: live(&c.consumers),
        attached: c
            .attached
            .iter()
            .filter(|e| alive(e.load(Ordering::Acquire)))
            .count() as u64,
        lifetime,
        closed: c.flags.load(Ordering::Acquire) & FLAG_CLOSED != 0,
        recovered: c.recovered.load(Ordering::Relaxed),
        abandoned: c.abandoned.load(Ordering::Relaxed),
    }
}

/// [`crate::Queue::inspect`]: validates the copied control block as
/// `Queue::open` does (capacity, slot size, stride, the slots' length),
/// for a queue of bytes or of any message type.
pub(crate) fn inspect(id: &SegmentId) -> Result<Stats, QueueOpenError> {
    let (snap, cfg) = observe(id)?;
    let me = ident_of(shm_core::ProcessId::current());
    Ok(stats_of(
        snap.get(),
        cfg.cap,
        cfg.slot_size,
        me,
        cfg.lifetime,
    ))
}

/// A private copy of queue `id`'s control block, read through a read-only
/// mapping, and its configuration checked as `Queue::open` checks it: what
/// every observer ([`inspect`], [`crate::peek::peek`]) starts from.
pub(crate) fn observe(id: &SegmentId) -> Result<(Snapshot<Control>, Config), QueueOpenError> {
    let snap = Snapshot::<Control>::open(id).map_err(|e| Inner::old_format(id, e))?;
    let cfg = Config::check(snap.get(), snap.tail_len()).map_err(|detail| corrupted(id, detail))?;
    Ok((snap, cfg))
}

/// A [`Corrupted`] error of queue `id`, as an open error.
pub(crate) fn corrupted(id: &SegmentId, detail: String) -> QueueOpenError {
    Corrupted {
        queue: id.to_string(),
        detail,
    }
    .into()
}
