//! Sleeping and waking on the queue's futex words.
//!
//! A waiter snapshots the word, re-checks its condition, spins briefly
//! (pause bursts without yielding, for at most [`SPIN`]),
//! then announces itself in the waiter count
//! and sleeps on the shared futex if the word is still the snapshot. A
//! notifier bumps the word, then wakes only if the waiter count is non-zero.
//! Both sides use SeqCst for the pair (count, word): either the notifier
//! sees the waiter, or the waiter sees the new word — no lost wakeup and no
//! syscall when nobody sleeps.
//!
//! Sleeps are cut into slices of [`LIVENESS`]: a crashed peer cannot wake
//! anyone, so a sleeper wakes that often to look for dead peers. That costs
//! ten futex calls a second, not a measurable share of a core.

use std::time::{Duration, Instant};

use shm_sync::futex;

use crate::primitive::{AtomicU32, Ordering};

/// How often a sleeper looks for crashed peers.
pub(crate) const LIVENESS: Duration = Duration::from_millis(100);

/// Why [`block`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The word changed (or a wakeup arrived): re-check the condition.
    Changed,
    /// A liveness slice passed: look for dead peers, then re-check.
    Liveness,
    /// The caller's deadline passed.
    Deadline,
}

/// Spins, then sleeps while `word == seen`, until `deadline` or one
/// liveness slice.
pub(crate) fn block(
    word: &AtomicU32,
    waiters: &AtomicU32,
    seen: u32,
    deadline: Option<Instant>,
) -> Woke {
    // Under loom, spinning only multiplies the states to explore.
    #[cfg(not(shm_loom))]
    if spin_until_changed(word, seen) {
        return Woke::Changed;
    }
    let now = Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return Woke::Deadline;
    }
    // Under loom the liveness slice is left out, so that a lost wakeup is a
    // deadlock the model reports instead of a 100 ms delay.
    let until = if cfg!(shm_loom) {
        deadline
    } else {
        let slice = now + LIVENESS;
        Some(deadline.map_or(slice, |d| d.min(slice)))
    };
    waiters.fetch_add(1, Ordering::SeqCst);
    let result = if seqcst_read(word) == seen {
        futex::wait(word, seen, until)
    } else {
        futex::WaitResult::ValueChanged
    };
    waiters.fetch_sub(1, Ordering::SeqCst);
    match result {
        futex::WaitResult::TimedOut if deadline.is_some_and(|d| Instant::now() >= d) => {
            Woke::Deadline
        }
        futex::WaitResult::TimedOut => Woke::Liveness,
        _ => Woke::Changed,
    }
}

/// How long a waiter spins before it sleeps: a few round trips between two
/// processes on two cores (one is about a microsecond), far less than the
/// tens of microseconds a futex wake-up costs on a virtual machine.
pub(crate) const SPIN: Duration = Duration::from_micros(30);

/// Spins on `word` with `pause` (never `sched_yield`: on a busy machine a
/// yield gives the CPU away for a whole time slice, milliseconds, which is
/// what the spin is there to avoid), checking the word between short bursts
/// that grow to 16 pauses, for at most [`SPIN`]. Whether the word changed.
#[cfg(not(shm_loom))]
fn spin_until_changed(word: &AtomicU32, seen: u32) -> bool {
    let start = Instant::now();
    let mut burst = 1u32;
    loop {
        for _ in 0..32 {
            if word.load(Ordering::Acquire) != seen {
                return true;
            }
            for _ in 0..burst {
                std::hint::spin_loop();
            }
            burst = (burst * 2).min(16);
        }
        if start.elapsed() >= SPIN {
            return false;
        }
    }
}

/// Bumps `word` and wakes one sleeper (or all), with no syscall when
/// nobody sleeps.
pub(crate) fn notify(word: &AtomicU32, waiters: &AtomicU32, all: bool) {
    word.fetch_add(1, Ordering::SeqCst);
    if seqcst_read(waiters) != 0 {
        futex::wake(word, if all { i32::MAX as u32 } else { 1 });
    }
}

/// The SeqCst load of the Dekker pair above.
///
/// loom treats SeqCst as AcqRel, under which two plain loads could both miss
/// the other side's increment; in the model the load is therefore an RMW
/// (`fetch_add(0)`), which reads the latest value in modification order and
/// so forbids that outcome under AcqRel too. Real builds use the SeqCst load
/// the C++ memory model already guarantees, without a locked instruction on
/// the hot path.
fn seqcst_read(a: &AtomicU32) -> u32 {
    if cfg!(shm_loom) {
        a.fetch_add(0, Ordering::SeqCst)
    } else {
        a.load(Ordering::SeqCst)
    }
}
