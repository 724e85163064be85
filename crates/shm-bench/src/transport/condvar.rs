//! The ring a user writes by hand: a bounded buffer in a segment under one
//! process-shared pthread mutex, with a "not empty" and a "not full"
//! condition variable, signalled on every message.
//!
//! # Layout
//!
//! | offset | contents                                                     |
//! |--------|--------------------------------------------------------------|
//! | 0      | mutex and condition variables ([`crate::sys::pthread`])      |
//! | 256    | `head`, `tail` (`AtomicU64`, only touched under the mutex)   |
//! | 272    | capacity, stride, slot size (`AtomicU64`, set by the creator) |
//! | 384    | slots: length word, then data                                |
//!
//! In this process `head`, `tail` and each slot's length word are reached
//! only as `&AtomicU64` at their own offsets ([`word`]), the pthread
//! objects only through [`PthreadSync`], the payloads (`slot + 8..`) only
//! through the `_shared` copies, and the geometry words only by copies
//! before the mapping is shared: no two references ever overlap.
//!
//! The wait is `pthread_cond_timedwait` with a 100 ms timeout around a
//! predicate loop, so that a lost wakeup (glibc bug 25847) delays instead of
//! hanging; a user who read the glibc bug tracker would do the same.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shm_core::Segment;
use shm_core::shim::real::AtomicU64;

use super::{
    ChanSpec, Check, CreateError, RingGeometry, Rx, Tx, checked_len, create_segment,
    open_ring_static, ring_stride,
};
use crate::sys::pthread::{self, Cond, PthreadSync, SYNC_BYTES};

const HEAD: usize = 256;
const TAIL: usize = 264;
/// The ring's geometry words (`RingGeometry`): capacity, stride, slot size.
const CAP: usize = 272;
const SLOTS: usize = 384;
const WAIT: Duration = Duration::from_millis(100);

const _: () = assert!(SYNC_BYTES <= HEAD);

/// Creates and initializes the ring segment `name` for `spec`.
pub fn create(name: &str, spec: ChanSpec) -> Result<Segment, CreateError> {
    let stride = ring_stride(spec.size);
    let mut seg = create_segment(name, SLOTS + spec.capacity * stride)?;
    // SAFETY: the segment was just created exclusively by this process and
    // no child has been started yet, so no one else uses its bytes; it is
    // initialized once, here.
    unsafe { pthread::init(&seg)? };
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
/// - `off` is `HEAD`, `TAIL` or the start of a slot: the words that this
///   module reaches only as `&AtomicU64` at that offset (see the module
///   docs), so no other reference of this process ever overlaps them.
unsafe fn word(seg: &Segment, off: usize) -> io::Result<&AtomicU64> {
    // SAFETY: `off` is one of the ring's words (the caller's contract),
    // which this process touches only through this view.
    unsafe { seg.view::<AtomicU64>(off) }.map_err(io::Error::other)
}

#[derive(Debug)]
struct Ring {
    seg: &'static Segment,
    sync: PthreadSync<'static>,
    head: &'static AtomicU64,
    tail: &'static AtomicU64,
    cap: u64,
    stride: usize,
    slot_size: usize,
    buf: Vec<u8>,
}

impl Ring {
    fn open(name: &str, spec: ChanSpec) -> io::Result<Ring> {
        let (
            seg,
            RingGeometry {
                cap,
                stride,
                slot_size,
            },
        ) = open_ring_static(name, CAP, SLOTS)?;
        // SAFETY: the parent ran `pthread::init` on this segment before it
        // started this process (see `create`), and only `PthreadSync` writes
        // the first SYNC_BYTES bytes.
        let sync = unsafe { PthreadSync::attach(seg)? };
        Ok(Ring {
            seg,
            sync,
            // SAFETY: `HEAD` and `TAIL` are words of the ring.
            head: unsafe { word(seg, HEAD) }?,
            // SAFETY: as above.
            tail: unsafe { word(seg, TAIL) }?,
            cap,
            stride,
            slot_size,
            buf: vec![0; spec.size],
        })
    }
}

/// Producer end.
#[derive(Debug)]
pub struct CondTx(Ring);

impl CondTx {
    /// Attaches to ring `name`.
    pub fn open(name: &str, spec: ChanSpec) -> io::Result<Self> {
        Ring::open(name, spec).map(CondTx)
    }
}

impl Tx for CondTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let r = &mut self.0;
        if len > r.slot_size {
            return Err(io::Error::other(format!("{len} B exceeds the slot size")));
        }
        fill(&mut r.buf[..len]);
        let mut g = r.sync.lock()?;
        loop {
            let head = r.head.load(Ordering::Relaxed);
            let tail = r.tail.load(Ordering::Relaxed);
            if head.wrapping_sub(tail) < r.cap {
                break;
            }
            g.wait(Cond::NotFull, WAIT)?;
        }
        let head = r.head.load(Ordering::Relaxed);
        let off = SLOTS + (head % r.cap) as usize * r.stride;
        // SAFETY: `off` is a slot's start, its length word.
        unsafe { word(r.seg, off) }?.store(len as u64, Ordering::Relaxed);
        // SAFETY: this process holds no reference into a slot's payload
        // (its views cover the index and length words only), and the lock
        // gives this slot to us alone.
        unsafe { r.seg.write_at_shared(off + 8, &r.buf[..len]) }.map_err(io::Error::other)?;
        r.head.store(head.wrapping_add(1), Ordering::Relaxed);
        g.signal(Cond::NotEmpty)?;
        Ok(())
    }
}

/// Consumer end.
#[derive(Debug)]
pub struct CondRx(Ring);

impl CondRx {
    /// Attaches to ring `name`.
    pub fn open(name: &str, spec: ChanSpec) -> io::Result<Self> {
        Ring::open(name, spec).map(CondRx)
    }
}

impl Rx for CondRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        let r = &mut self.0;
        let len = {
            let mut g = r.sync.lock()?;
            loop {
                let head = r.head.load(Ordering::Relaxed);
                let tail = r.tail.load(Ordering::Relaxed);
                if head.wrapping_sub(tail) > r.cap {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("head {head} is beyond tail {tail} + capacity"),
                    ));
                }
                if head != tail {
                    break;
                }
                g.wait(Cond::NotEmpty, WAIT)?;
            }
            let tail = r.tail.load(Ordering::Relaxed);
            let off = SLOTS + (tail % r.cap) as usize * r.stride;
            // SAFETY: `off` is a slot's start, its length word.
            let raw = unsafe { word(r.seg, off) }?.load(Ordering::Relaxed);
            let len = checked_len(raw, r.slot_size.min(r.buf.len()))?;
            // SAFETY: as in `send`: no reference into the payload, and the
            // lock gives this slot to us alone.
            unsafe { r.seg.read_at_shared(off + 8, &mut r.buf[..len]) }
                .map_err(io::Error::other)?;
            r.tail.store(tail.wrapping_add(1), Ordering::Relaxed);
            g.signal(Cond::NotFull)?;
            len
        };
        f(&r.buf[..len])
    }
}
