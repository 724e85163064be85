//! The real types.

use std::time::Instant;

pub use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::futex::WaitResult;
use crate::sys;

/// Bounded adaptive spinning before sleeping.
pub(crate) struct Spin(parking_lot_core::SpinWait);

impl Spin {
    pub(crate) fn new() -> Self {
        Spin(parking_lot_core::SpinWait::new())
    }

    /// Spins a little; `false` once spinning is no longer worth it.
    pub(crate) fn spin(&mut self) -> bool {
        self.0.spin()
    }
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
