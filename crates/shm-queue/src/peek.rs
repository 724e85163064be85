//! Looking at the next messages of a queue without taking them, as an
//! observer: [`peek`] maps the segment read-only (`O_RDONLY` + `PROT_READ`,
//! or `SHM_RDONLY`), registers nothing and writes nothing, so read
//! permission is enough and the queue cannot be disturbed.
//!
//! **A racy snapshot.** Producers and consumers go on meanwhile: a message
//! peeked may be taken by a receiver the instant after, and a message sent
//! after the peek is not in it. What is returned is only ever a whole,
//! committed message: each slot's state word is read before and after its
//! payload is copied, and a slot whose state changed in between (taken,
//! and perhaps refilled on a later lap) ends the peek there
//! ([`Peek::raced`]).
//!
//! ```
//! use shm_queue::{Queue, QueueOptions, SegmentId};
//! use shm_queue::peek::peek;
//!
//! let id = SegmentId::posix(&format!("/doc-peek-{}", std::process::id()))?;
//! let q = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(16))?;
//! let tx = q.sender()?;
//! tx.send(b"first")?;
//! tx.send(b"second")?;
//! let seen = peek(&id, 8)?;
//! assert_eq!(seen.messages, vec![b"first".to_vec(), b"second".to_vec()]);
//! assert_eq!(q.len(), 2, "nothing was taken");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use shm_core::{Segment, SegmentId};
use shm_sync::WaitWord;

use crate::error::QueueOpenError;
use crate::inspect::{corrupted, observe};
use crate::layout::{FULL, SKIP, SLOT_HEADER, decode, slot_index};

/// What [`peek`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peek {
    /// The committed messages from the head on, in the order receivers
    /// take them (at most the number asked for).
    pub messages: Vec<Vec<u8>>,
    /// Whether the peek stopped early because the queue moved under it (a
    /// slot was taken or claimed while it was read): the messages before
    /// that point are still whole.
    pub raced: bool,
    /// Whether it stopped at a slot a producer has claimed but not
    /// committed yet (receivers wait for it, in order).
    pub pending: bool,
}

/// Up to `max` committed messages from the head of queue `id`, without
/// taking them (see the module docs: a racy snapshot).
pub fn peek(id: &SegmentId, max: usize) -> Result<Peek, QueueOpenError> {
    let (snap, cfg) = observe(id)?;
    let c = snap.get();
    let corrupted = |detail: String| corrupted(id, detail);
    let base = snap.tail_offset();
    let (cap, stride, slot_size) = (cfg.cap, cfg.stride, cfg.slot_size);
    let head = c.consumer.head.load();
    let tail = c.producer.tail.load();
    // The slots are read through a read-only handle of our own: the
    // snapshot holds a copy of the control block only.
    let mut seg = Segment::open_read_only(id)?;
    if seg.len() != snap.segment().len() {
        return Ok(Peek {
            raced: true,
            ..Peek::default()
        });
    }
    let mut out = Peek::default();
    let mut pos = head;
    // Every position between head and tail at most once (tombstones
    // included), so a hostile tail cannot make this loop long.
    let end = tail.min(head.saturating_add(cap));
    while pos < end && out.messages.len() < max {
        let (index, lap) = slot_index(pos, cap);
        let at = base + index * stride;
        let mut hdr = [0u8; SLOT_HEADER];
        seg.read_at(at, &mut hdr)
            .map_err(|e| corrupted(e.to_string()))?;
        let word = |h: &[u8; SLOT_HEADER]| {
            WaitWord::value_of_raw(u64::from_ne_bytes(h[..8].try_into().unwrap_or([0; 8])))
        };
        let before = word(&hdr);
        let (slot_lap, tag) = decode(before);
        if slot_lap != lap {
            // Not yet on this position's lap (a consumer of the previous
            // lap still holds it) or already past it (taken).
            out.raced = slot_lap > lap;
            out.pending = slot_lap < lap;
            break;
        }
        match tag {
            SKIP => {
                pos += 1;
                continue;
            }
            FULL => {}
            _ => {
                out.pending = true;
                break;
            }
        }
        let len = u32::from_ne_bytes(hdr[8..12].try_into().unwrap_or([0; 4])) as usize;
        if len > slot_size {
            return Err(corrupted(format!(
                "message length {len} at position {pos} is over the slot size {slot_size}"
            )));
        }
        let mut msg = vec![0u8; len];
        seg.read_at(at + SLOT_HEADER, &mut msg)
            .map_err(|e| corrupted(e.to_string()))?;
        seg.read_at(at, &mut hdr)
            .map_err(|e| corrupted(e.to_string()))?;
        if word(&hdr) != before {
            out.raced = true;
            break;
        }
        out.messages.push(msg);
        pos += 1;
    }
    Ok(out)
}
