//! The hardware limit: a single-producer single-consumer ring in a segment,
//! with busy spinning instead of sleeping, in a copying and an in-place
//! variant.
//!
//! # Layout
//!
//! | offset | contents                                                   |
//! |--------|------------------------------------------------------------|
//! | 0      | `head: AtomicU64`, messages published (producer writes)    |
//! | 128    | `tail: AtomicU64`, messages consumed (consumer writes)     |
//! | 256    | capacity, slot stride, slot size (`AtomicU64`, set once by the creator) |
//! | 384    | `capacity` slots of `stride` bytes: length word, then data |
//!
//! Head and tail each own two cache lines (adjacent-line prefetch), and
//! each side keeps a private copy of the other's index, reloading it only
//! when the ring looks full (producer) or empty (consumer): the classic
//! fast SPSC design. The producer publishes a slot by storing `head` with
//! Release after writing it; the consumer takes it by loading `head` with
//! Acquire and gives it back by storing `tail` with Release after reading
//! it, which the producer loads with Acquire before reusing the slot.
//!
//! The spin depends on where the two sides run ([`Placement`]). Pinned to
//! two different CPUs, each alone on its own, a side spins on `spin_loop`
//! hints and never yields: that is the hardware limit this ring stands
//! for, and a yield could only hand the CPU to unrelated work. Otherwise
//! (not pinned, or sharing a CPU with another participant) it yields with
//! `sched_yield` after about a thousand spins, so that the ring still makes
//! progress when both sides share a core.
//!
//! In this process the index words and each slot's length word are
//! reached only as `&AtomicU64` at their own offsets ([`word`]), the
//! payloads (`slot + 8..`) only through `slot::with_mut`/`with_ref` and
//! the `_shared` copies, and the geometry words only by copies before the
//! mapping is shared: no two references ever overlap.
//!
//! Nothing else runs per message: the indices are plain counters (no
//! modulo on a shared word, no read-modify-write), each side reads the
//! other's index line only when its cached copy says full or empty, and
//! the per-slot work is one length word plus the payload.

use std::io;
use std::sync::atomic::Ordering;

use shm_core::Segment;
use shm_core::shim::real::AtomicU64;

use super::{
    ChanSpec, Check, CreateError, Placement, RingGeometry, Rx, Tx, checked_len, create_segment,
    open_ring_static, ring_stride,
};
use crate::sys::slot;

const HEAD: usize = 0;
const TAIL: usize = 128;
/// The ring's geometry words (`RingGeometry`): capacity, stride, slot size.
const CAP: usize = 256;
const SLOTS: usize = 384;

/// Spins before the first `sched_yield` when the CPU may be shared.
const SPINS_BEFORE_YIELD: u32 = 1024;

/// One wait of one side: spins, and yields only when the CPU may be shared.
#[derive(Debug)]
pub struct Backoff {
    spins: u32,
    dedicated: bool,
}

impl Backoff {
    /// A fresh wait for a side placed at `place`.
    pub fn new(place: Placement) -> Self {
        Backoff {
            spins: 0,
            dedicated: place.dedicated_cpu,
        }
    }

    /// Waits a little: a `spin_loop` hint; on a CPU that may be shared,
    /// `sched_yield` once the spin has gone on for a while.
    #[inline]
    pub fn snooze(&mut self) {
        if self.dedicated || self.spins < SPINS_BEFORE_YIELD {
            std::hint::spin_loop();
            self.spins = self.spins.saturating_add(1);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Creates the ring segment `name` for `spec`.
pub fn create(name: &str, spec: ChanSpec) -> Result<Segment, CreateError> {
    let stride = ring_stride(spec.size);
    let mut seg = create_segment(name, SLOTS + spec.capacity * stride)?;
    RingGeometry {
        cap: spec.capacity as u64,
        stride,
        slot_size: spec.size,
    }
    .write(&mut seg, CAP)?;
    Ok(seg)
}

/// The index or length word at `off`.
///
/// # Safety
///
/// - `off` is `HEAD`, `TAIL` or the start of a slot (`Ring::slot`): the
///   words that this module reaches only as `&AtomicU64` at that offset
///   (see the module docs), so no other reference of this process ever
///   overlaps them.
unsafe fn word(seg: &Segment, off: usize) -> io::Result<&AtomicU64> {
    // SAFETY: `off` is one of the ring's words (the caller's contract),
    // which this process touches only through this view.
    unsafe { seg.view::<AtomicU64>(off) }.map_err(io::Error::other)
}

/// What both ends read when they attach.
#[derive(Debug)]
struct Ring {
    seg: &'static Segment,
    head: &'static AtomicU64,
    tail: &'static AtomicU64,
    cap: u64,
    stride: usize,
    slot_size: usize,
}

impl Ring {
    fn open(name: &str) -> io::Result<Ring> {
        let (
            seg,
            RingGeometry {
                cap,
                stride,
                slot_size,
            },
        ) = open_ring_static(name, CAP, SLOTS)?;
        Ok(Ring {
            seg,
            // SAFETY: `HEAD` and `TAIL` are words of the ring.
            head: unsafe { word(seg, HEAD) }?,
            // SAFETY: as above.
            tail: unsafe { word(seg, TAIL) }?,
            cap,
            stride,
            slot_size,
        })
    }

    fn slot(&self, pos: u64) -> usize {
        SLOTS + (pos % self.cap) as usize * self.stride
    }

    /// The length word of the slot of `pos`.
    fn len_word(&self, pos: u64) -> io::Result<&'static AtomicU64> {
        // SAFETY: `Ring::slot` gives a slot's start, its length word.
        unsafe { word(self.seg, self.slot(pos)) }
    }
}

/// Producer end.
#[derive(Debug)]
pub struct SpinTx {
    ring: Ring,
    pos: u64,
    cached_tail: u64,
    in_place: bool,
    place: Placement,
    buf: Vec<u8>,
}

impl SpinTx {
    /// Attaches to ring `name`; `in_place` fills the slot directly, `place`
    /// says whether it may spin without yielding.
    pub fn open(name: &str, spec: ChanSpec, in_place: bool, place: Placement) -> io::Result<Self> {
        let ring = Ring::open(name)?;
        let pos = ring.head.load(Ordering::Acquire);
        Ok(SpinTx {
            cached_tail: ring.tail.load(Ordering::Acquire),
            ring,
            pos,
            in_place,
            place,
            buf: vec![0; spec.size],
        })
    }
}

impl Tx for SpinTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        if len > self.ring.slot_size {
            return Err(io::Error::other(format!("{len} B exceeds the slot size")));
        }
        if !self.in_place {
            fill(&mut self.buf[..len]);
        }
        let mut backoff = Backoff::new(self.place);
        while self.pos.wrapping_sub(self.cached_tail) >= self.ring.cap {
            self.cached_tail = self.ring.tail.load(Ordering::Acquire);
            if self.pos.wrapping_sub(self.cached_tail) >= self.ring.cap {
                backoff.snooze();
            }
        }
        let off = self.ring.slot(self.pos);
        self.ring
            .len_word(self.pos)?
            .store(len as u64, Ordering::Relaxed);
        if self.in_place {
            // SAFETY: slot `pos` is free (tail loaded with Acquire shows the
            // consumer is done with it) and the consumer will not touch it
            // until `head` passes `pos`, which happens below, after `fill`.
            unsafe { slot::with_mut(self.ring.seg, off + 8, len, |s| fill(s)) }
                .ok_or_else(|| io::Error::other("slot outside the segment"))?;
        } else {
            // SAFETY: this process holds no reference into a slot's payload
            // outside `slot::with_mut`/`with_ref` (not running now; its
            // views cover the index and length words only), and slot `pos`
            // is ours until `head` passes it (see the in-place branch).
            unsafe { self.ring.seg.write_at_shared(off + 8, &self.buf[..len]) }
                .map_err(io::Error::other)?;
        }
        self.pos = self.pos.wrapping_add(1);
        self.ring.head.store(self.pos, Ordering::Release);
        Ok(())
    }
}

/// Consumer end.
#[derive(Debug)]
pub struct SpinRx {
    ring: Ring,
    pos: u64,
    cached_head: u64,
    in_place: bool,
    place: Placement,
    buf: Vec<u8>,
}

impl SpinRx {
    /// Attaches to ring `name`; `in_place` checks the slot directly, `place`
    /// says whether it may spin without yielding.
    pub fn open(name: &str, spec: ChanSpec, in_place: bool, place: Placement) -> io::Result<Self> {
        let ring = Ring::open(name)?;
        let pos = ring.tail.load(Ordering::Acquire);
        Ok(SpinRx {
            cached_head: ring.head.load(Ordering::Acquire),
            ring,
            pos,
            in_place,
            place,
            buf: vec![0; spec.size],
        })
    }
}

impl Rx for SpinRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        let mut backoff = Backoff::new(self.place);
        while self.cached_head == self.pos {
            self.cached_head = self.ring.head.load(Ordering::Acquire);
            if self.cached_head == self.pos {
                backoff.snooze();
            }
        }
        if self.cached_head.wrapping_sub(self.pos) > self.ring.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "head {} is beyond tail {} + capacity",
                    self.cached_head, self.pos
                ),
            ));
        }
        let off = self.ring.slot(self.pos);
        let len = checked_len(
            self.ring.len_word(self.pos)?.load(Ordering::Relaxed),
            self.ring.slot_size,
        )?;
        if self.in_place {
            // SAFETY: slot `pos` was published (head loaded with Acquire is
            // past it) and the producer will not write it again until
            // `tail` passes `pos`, which happens below, after `f`.
            let r = unsafe { slot::with_ref(self.ring.seg, off + 8, len, |s| f(s)) }
                .ok_or_else(|| io::Error::other("slot outside the segment"))?;
            self.pos = self.pos.wrapping_add(1);
            self.ring.tail.store(self.pos, Ordering::Release);
            r
        } else {
            // SAFETY: as in `send`: no reference into the payload here, and
            // slot `pos` is ours until `tail` passes it.
            unsafe { self.ring.seg.read_at_shared(off + 8, &mut self.buf[..len]) }
                .map_err(io::Error::other)?;
            self.pos = self.pos.wrapping_add(1);
            self.ring.tail.store(self.pos, Ordering::Release);
            f(&self.buf[..len])
        }
    }
}
