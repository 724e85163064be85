//! A 64-bit state word that processes can sleep on until it changes.

use std::fmt;
use std::time::Instant;

use crate::futex::WaitResult;
use crate::shim::{self, AtomicU64, Ordering};

/// Bit 0 of the raw word: someone may be asleep on it.
const SLEEPERS: u64 = 1;

/// A state word in a segment that processes wait on until it changes: the
/// wake handshake of the queue's slots, written once and model-checked.
///
/// The word holds a 63-bit *value* (bits 1–63) and a *sleepers* flag (bit
/// 0). A waiter sets the flag before it sleeps; whoever changes the value
/// clears the flag in the same atomic step and, only if it was set, wakes
/// every sleeper. While nobody sleeps, a change is one compare-and-swap and
/// no system call, and nothing but the word itself is touched.
///
/// # Why no wake-up is lost
///
/// Every change of the raw word after [`WaitWord::init`] is a
/// read-modify-write (`compare_exchange` or `fetch_and`, **AcqRel**), so
/// all of them are ordered in the word's modification order:
///
/// - a changer ([`WaitWord::transition`]) that comes after a waiter's flag
///   in that order sees the flag and wakes; the waiter's `FUTEX_WAIT`
///   expects the flagged value, so if the change lands before the waiter is
///   in the kernel, the kernel refuses the sleep (`EAGAIN`);
/// - a changer that comes before the flag makes the waiter's
///   compare-and-swap fail (the value is no longer the one it saw), so it
///   does not sleep.
///
/// Events outside the value (a queue closed, a peer gone) use
/// [`WaitWord::nudge`], an RMW that clears the flag: a waiter re-checks
/// such conditions in the `recheck` closure of [`WaitWord::sleep`], *after*
/// its flag is in the word, so either its flag comes first (the nudge sees
/// it and wakes) or the nudge comes first and the waiter's flag RMW, or its
/// acquire load of a later flag, synchronizes with it (the re-check sees
/// the event). The loom models in this module check both arguments on the
/// instructions that ship.
///
/// The kernel compares only the low 32 bits (`FUTEX_WAIT` on the low half
/// of the word). A sleeper's flag is one of them, and every change clears
/// it, so a change is always visible there; only a value that moves by an
/// exact multiple of 2³¹ *and* gets a new sleeper's flag between a waiter's
/// look and its sleep could be missed, and then only until the sleep's
/// deadline.
///
/// # Layout
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `value << 1 \| sleepers` |
///
/// # Example
///
/// ```
/// # #[cfg(not(shm_loom))] {
/// use shm_sync::{Slept, WaitWord};
/// use std::time::{Duration, Instant};
///
/// let w = WaitWord::new(4);
/// // Nobody changes it: the sleep ends at the deadline.
/// let soon = Instant::now() + Duration::from_millis(5);
/// assert_eq!(w.sleep(4, Some(soon), || false), Slept::TimedOut);
/// // Only the holder of the value it expects changes it.
/// assert_eq!(w.transition(5, 6), Err(4));
/// assert_eq!(w.transition(4, 8), Ok(()));
/// // A waiter that saw the old value does not sleep.
/// assert_eq!(w.sleep(4, None, || false), Slept::Changed);
/// # }
/// ```
#[repr(C)]
pub struct WaitWord {
    /// `value << 1 | SLEEPERS`.
    ///
    /// | state | meaning |
    /// |---|---|
    /// | `v << 1` | value `v`, nobody asleep |
    /// | `v << 1 \| 1` | value `v`, a waiter may be asleep or about to sleep |
    ///
    /// Transitions: `transition` swaps `v` for `w` and clears the flag
    /// (CAS, **AcqRel**: what the changer wrote before is seen by whoever
    /// acquires the new value); `sleep` sets the flag (CAS, **AcqRel**);
    /// `nudge` clears it (`fetch_and`, **AcqRel**). Loads are **Acquire**.
    raw: AtomicU64,
}

/// The largest value a [`WaitWord`] holds.
pub const MAX_WAIT_VALUE: u64 = u64::MAX >> 1;

/// How a [`WaitWord::sleep`] ended. Every outcome but `TimedOut` means
/// "look again"; none promises that the value changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slept {
    /// The value was no longer the one expected, or `recheck` said so: no
    /// sleep happened.
    Changed,
    /// The sleep ended: a wake-up, a signal, or a change the kernel saw.
    Woken,
    /// The deadline passed.
    TimedOut,
}

impl WaitWord {
    /// A word holding `value` (masked to [`MAX_WAIT_VALUE`]), nobody asleep.
    pub fn new(value: u64) -> Self {
        WaitWord {
            raw: AtomicU64::new((value & MAX_WAIT_VALUE) << 1),
        }
    }

    /// Sets the value, for the creator of a segment before anyone else
    /// uses the word (the one plain store: the handshake assumes every
    /// later change is an RMW).
    pub fn init(&self, value: u64) {
        self.raw
            .store((value & MAX_WAIT_VALUE) << 1, Ordering::Release);
    }

    /// The value a word whose 8 bytes were copied out as `raw` (native
    /// byte order) held: for observers that read a segment through a
    /// private copy rather than a `&WaitWord`.
    pub fn value_of_raw(raw: u64) -> u64 {
        raw >> 1
    }

    /// The value (Acquire: what the process that set it wrote before is
    /// visible).
    #[inline]
    pub fn load(&self) -> u64 {
        self.raw.load(Ordering::Acquire) >> 1
    }

    /// Whether a waiter has announced itself (a snapshot, for stats).
    pub fn has_sleepers(&self) -> bool {
        self.raw.load(Ordering::Relaxed) & SLEEPERS != 0
    }

    /// Replaces `from` by `to` if the word holds `from`, waking every
    /// sleeper if one had announced itself; else returns the value it
    /// holds. `to` is masked to [`MAX_WAIT_VALUE`].
    #[inline]
    pub fn transition(&self, from: u64, to: u64) -> Result<(), u64> {
        if self.transition_deferred(from, to)? {
            self.wake_all();
        }
        Ok(())
    }

    /// Like [`WaitWord::transition`], but does not wake: returns whether a
    /// sleeper had announced itself, so that the caller can wake them with
    /// [`WaitWord::wake_all`] once what they wait for is visible (a queue
    /// producer claims a position here and wakes consumers after writing
    /// the message).
    #[inline]
    pub fn transition_deferred(&self, from: u64, to: u64) -> Result<bool, u64> {
        let want = (to & MAX_WAIT_VALUE) << 1;
        let mut expected = (from & MAX_WAIT_VALUE) << 1;
        loop {
            match self
                .raw
                .compare_exchange(expected, want, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(old) => return Ok(old & SLEEPERS != 0),
                Err(now) if now >> 1 == from & MAX_WAIT_VALUE => expected = now,
                Err(now) => return Err(now >> 1),
            }
        }
    }

    /// Wakes every sleeper (after a [`WaitWord::transition_deferred`] that
    /// found one).
    pub fn wake_all(&self) {
        shim::futex_wake_low(&self.raw, u32::MAX);
    }

    /// Replaces `from` by `to` for a caller that alone may make this change
    /// (it holds a claim that excludes every other writer but sleepers and
    /// recoverers): a plain Release store when no sleeper has announced
    /// itself, no read-modify-write; else a [`WaitWord::transition`] that
    /// wakes them. Returns the value found if it is not `from` (nothing is
    /// written then).
    ///
    /// The look and the store are two steps: a sleeper that announces
    /// itself between them is not woken (its flag is overwritten, and the
    /// kernel still sleeps it if it got there first). Waiters on such a
    /// word must therefore sleep with a short deadline; in exchange the
    /// common case costs one plain store, which on x86 never stalls the
    /// writer the way a locked instruction on a contended line does.
    #[inline]
    pub fn store_exclusive(&self, from: u64, to: u64) -> Result<(), u64> {
        let raw = self.raw.load(Ordering::Relaxed);
        if raw >> 1 != from & MAX_WAIT_VALUE {
            return Err(raw >> 1);
        }
        if raw & SLEEPERS == 0 {
            self.raw
                .store((to & MAX_WAIT_VALUE) << 1, Ordering::Release);
            Ok(())
        } else {
            self.transition(from, to)
        }
    }

    /// Clears the sleepers flag and wakes every sleeper if it was set, for
    /// an event that waiters look for in their `recheck` rather than in the
    /// value. An RMW even when no flag is set, so that a waiter whose flag
    /// comes later synchronizes with it.
    pub fn nudge(&self) {
        if self.raw.fetch_and(!SLEEPERS, Ordering::AcqRel) & SLEEPERS != 0 {
            self.wake_all();
        }
    }

    /// Sleeps while the value is `seen`, until a change, a nudge, or
    /// `deadline` (absolute, `CLOCK_MONOTONIC`; `None` waits without
    /// limit). First announces the sleeper in the word, then calls
    /// `recheck`, which looks at whatever else the caller waits for: if it
    /// returns `true`, no sleep happens.
    ///
    /// The deadline is absolute, so a signal handler (`EINTR`) or a
    /// spurious wake-up never stretches a loop of sleeps past it.
    pub fn sleep(
        &self,
        seen: u64,
        deadline: Option<Instant>,
        recheck: impl FnOnce() -> bool,
    ) -> Slept {
        let seen = seen & MAX_WAIT_VALUE;
        let mut raw = self.raw.load(Ordering::Acquire);
        let flagged = loop {
            if raw >> 1 != seen {
                return Slept::Changed;
            }
            if raw & SLEEPERS != 0 {
                break raw;
            }
            match self.raw.compare_exchange(
                raw,
                raw | SLEEPERS,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break raw | SLEEPERS,
                Err(now) => raw = now,
            }
        };
        if recheck() {
            return Slept::Changed;
        }
        match shim::futex_wait_low(&self.raw, flagged as u32, deadline) {
            WaitResult::TimedOut => Slept::TimedOut,
            WaitResult::ValueChanged => Slept::Changed,
            WaitResult::Woken | WaitResult::Interrupted => Slept::Woken,
        }
    }
}

impl fmt::Debug for WaitWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw.load(Ordering::Relaxed);
        f.debug_struct("WaitWord")
            .field("value", &(raw >> 1))
            .field("sleepers", &(raw & SLEEPERS != 0))
            .finish()
    }
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<WaitWord>() == 8);
    assert!(align_of::<WaitWord>() == 8);
};

// SAFETY: `#[repr(C)]` of one `AtomicU64`: no pointers, every bit pattern
// is a valid state (any value, either flag), all mutation is atomic. (Under
// `--cfg shm_loom` the atomic is loom's and the type is never placed in a
// segment.)
#[allow(unsafe_code)]
unsafe impl shm_core::ShmSafe for WaitWord {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::WaitWord/v1");
}

// SAFETY: its only field is an atomic.
#[allow(unsafe_code)]
unsafe impl shm_core::ShmShared for WaitWord {}

#[cfg(all(test, not(shm_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_transition_wakes_a_sleeping_thread() {
        let w = Arc::new(WaitWord::new(10));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(30);
            while w2.load() == 10 {
                assert_ne!(w2.sleep(10, Some(limit), || false), Slept::TimedOut);
            }
        });
        while !w.has_sleepers() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(w.transition(10, 11), Ok(()));
        assert!(!w.has_sleepers(), "the change clears the flag");
        t.join().unwrap();
    }

    #[test]
    fn a_nudge_wakes_and_the_recheck_sees_the_event() {
        let w = Arc::new(WaitWord::new(3));
        let flag = Arc::new(crate::shim::real::AtomicBool::new(false));
        let (w2, f2) = (Arc::clone(&w), Arc::clone(&flag));
        let t = std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(30);
            while !f2.load(Ordering::Acquire) {
                let r = w2.sleep(3, Some(limit), || f2.load(Ordering::Acquire));
                assert_ne!(r, Slept::TimedOut);
            }
        });
        while !w.has_sleepers() {
            std::thread::sleep(Duration::from_millis(1));
        }
        flag.store(true, Ordering::Release);
        w.nudge();
        t.join().unwrap();
        assert_eq!(w.load(), 3, "a nudge leaves the value alone");
    }

    #[test]
    fn transitions_compare_the_value_only() {
        let w = WaitWord::new(MAX_WAIT_VALUE);
        assert_eq!(w.load(), MAX_WAIT_VALUE);
        assert_eq!(w.transition(1, 2), Err(MAX_WAIT_VALUE));
        assert_eq!(w.transition(MAX_WAIT_VALUE, 0), Ok(()));
        // A flag set by a waiter that then left is taken along.
        let past = Instant::now();
        assert_eq!(w.sleep(0, Some(past), || false), Slept::TimedOut);
        assert!(w.has_sleepers());
        assert_eq!(w.transition(0, 7), Ok(()));
        assert!(!w.has_sleepers());
        assert_eq!(w.sleep(0, Some(past), || true), Slept::Changed);
        assert_eq!(w.sleep(7, Some(past), || true), Slept::Changed);
    }
}

#[cfg(all(test, shm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    /// A waiter sleeps until the value leaves 0; a changer moves it to 1.
    /// Without the flag handshake the waiter could sleep forever (no
    /// deadline under loom): the model would report a deadlock.
    #[test]
    fn loom_wait_word_transition_is_never_slept_through() {
        loom::model(|| {
            let w = Arc::new(WaitWord::new(0));
            let w2 = Arc::clone(&w);
            let waiter = thread::spawn(move || {
                while w2.load() == 0 {
                    w2.sleep(0, None, || false);
                }
            });
            assert_eq!(w.transition(0, 1), Ok(()));
            waiter.join().unwrap();
        });
    }

    /// Two waiters and one change: both must wake (a change wakes all).
    #[test]
    fn loom_wait_word_wakes_every_sleeper() {
        loom::model(|| {
            let w = Arc::new(WaitWord::new(0));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let w = Arc::clone(&w);
                    thread::spawn(move || {
                        while w.load() == 0 {
                            w.sleep(0, None, || false);
                        }
                    })
                })
                .collect();
            assert_eq!(w.transition(0, 1), Ok(()));
            for t in waiters {
                t.join().unwrap();
            }
        });
    }

    /// A deferred transition (a claim) and the wake after the data is
    /// written: the waiter either sees the claim and then the data, or is
    /// woken after the data.
    #[test]
    fn loom_wait_word_deferred_wake_comes_after_the_data() {
        loom::model(|| {
            let w = Arc::new(WaitWord::new(0));
            let data = Arc::new(AtomicBool::new(false));
            let (w2, d2) = (Arc::clone(&w), Arc::clone(&data));
            let waiter = thread::spawn(move || {
                while !d2.load(Ordering::Acquire) {
                    if w2.load() == 0 {
                        w2.sleep(0, None, || false);
                    } else {
                        loom::thread::yield_now();
                    }
                }
            });
            let sleepers = w.transition_deferred(0, 1).unwrap();
            data.store(true, Ordering::Release);
            if sleepers {
                w.wake_all();
            }
            waiter.join().unwrap();
        });
    }

    /// `store_exclusive` against a sleeper with a deadline: every
    /// interleaving ends (the sleeper sees the change, is woken, or its
    /// deadline passes).
    #[test]
    fn loom_wait_word_store_exclusive_never_strands_a_timed_sleeper() {
        loom::model(|| {
            let w = Arc::new(WaitWord::new(2));
            let w2 = Arc::clone(&w);
            let waiter = thread::spawn(move || {
                if w2.load() == 2 {
                    w2.sleep(2, Some(std::time::Instant::now()), || false);
                }
            });
            assert_eq!(w.store_exclusive(2, 3), Ok(()));
            waiter.join().unwrap();
        });
    }

    /// An event outside the value (a flag elsewhere) plus a nudge: the
    /// waiter either sees the event in its re-check or is woken.
    #[test]
    fn loom_wait_word_nudge_reaches_a_waiter_that_rechecks() {
        loom::model(|| {
            let w = Arc::new(WaitWord::new(5));
            let event = Arc::new(AtomicBool::new(false));
            let (w2, e2) = (Arc::clone(&w), Arc::clone(&event));
            let waiter = thread::spawn(move || {
                while !e2.load(Ordering::Relaxed) {
                    w2.sleep(5, None, || e2.load(Ordering::Relaxed));
                }
            });
            event.store(true, Ordering::Relaxed);
            w.nudge();
            waiter.join().unwrap();
        });
    }
}
