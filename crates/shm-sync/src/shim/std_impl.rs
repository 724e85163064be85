//! The real types.

use std::time::{Duration, Instant};

use super::{AtomicU32, AtomicU64};
use crate::futex::WaitResult;
use crate::sys;

/// Bounded adaptive spinning before sleeping.
pub(crate) struct Spin(parking_lot_core::SpinWait, u32);

/// How many rounds [`Spin::pause`] spins (about 60 pauses in all with
/// `SpinWait`'s backoff).
const PAUSES: u32 = 6;

impl Spin {
    pub(crate) fn new() -> Self {
        Spin(parking_lot_core::SpinWait::new(), 0)
    }

    /// Spins a little; `false` once spinning is no longer worth it.
    pub(crate) fn spin(&mut self) -> bool {
        self.0.spin()
    }

    /// Spins a little without ever yielding the CPU (for locks whose
    /// critical sections are a few dozen instructions: a yield on a busy
    /// machine costs a time slice); `false`, without spinning, after a few
    /// rounds.
    pub(crate) fn pause(&mut self) -> bool {
        if self.1 >= PAUSES {
            return false;
        }
        self.1 += 1;
        self.0.spin_no_yield();
        true
    }
}

/// The end of the next sleep of a wait that must look around at least every
/// `every` (for a dead peer, a wake-up that a killed process never made):
/// `deadline`, or `every` from now if that is sooner.
pub(crate) fn slice_end(deadline: Option<Instant>, every: Duration) -> Option<Instant> {
    let next = Instant::now() + every;
    Some(deadline.map_or(next, |d| d.min(next)))
}

/// Whether `at` has passed (`CLOCK_MONOTONIC`).
pub(crate) fn passed(at: Instant) -> bool {
    Instant::now() >= at
}

/// The shared futex wait, absolute `CLOCK_MONOTONIC` deadline.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitResult {
    let ts = deadline.map(sys::time::monotonic_at);
    result(sys::futex::wait(word, expected, ts.as_ref()))
}

/// The shared futex wait on the low half of a 64-bit word.
pub(crate) fn futex_wait_low(
    word: &AtomicU64,
    expected: u32,
    deadline: Option<Instant>,
) -> WaitResult {
    let ts = deadline.map(sys::time::monotonic_at);
    result(sys::futex::wait_low(word, expected, ts.as_ref()))
}

/// The shared futex wake of sleepers on the low half of a 64-bit word.
pub(crate) fn futex_wake_low(word: &AtomicU64, n: u32) -> usize {
    sys::futex::wake_low(word, n)
}

fn result(w: sys::futex::Wait) -> WaitResult {
    match w {
        sys::futex::Wait::Woken => WaitResult::Woken,
        sys::futex::Wait::ValueChanged => WaitResult::ValueChanged,
        sys::futex::Wait::TimedOut => WaitResult::TimedOut,
        sys::futex::Wait::Interrupted => WaitResult::Interrupted,
    }
}

/// The shared futex wake.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    sys::futex::wake(word, n)
}
