//! Sleeping and waking on the queue's futex words.
//!
//! A waiter snapshots the word, re-checks the queue, spins briefly (pause
//! bursts without yielding, for at most [`SPIN`]) watching the word and the
//! queue itself, then announces itself in the waiter count and sleeps on the
//! shared futex if, after announcing, neither the word nor the queue has
//! changed.
//!
//! Two kinds of notification:
//!
//! - [`notify_changed`], on every commit and every freed slot (the hot
//!   path): the change itself is visible to a waiter's re-check, so the
//!   word is bumped, and a wake-up made, only if a waiter has announced
//!   itself. Nothing is written to a shared line when nobody sleeps;
//! - [`notify`], for rare events a re-check of the slots cannot see
//!   (producers leaving, close, claims of dead processes skipped): the word
//!   is always bumped.
//!
//! The pair (announce, re-check) against (change, look at the count) is a
//! Dekker handshake: the waiter increments the count then fences (SeqCst)
//! then re-checks; the notifier makes its change then fences then loads the
//! count. Either the notifier sees the waiter, or the waiter sees the
//! change — no lost wakeup, and no syscall when nobody sleeps.
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

/// Spins, then sleeps while `word == seen` and `ready()` is false, until
/// `deadline` or one liveness slice. `ready` looks at the queue itself (is
/// there something to claim?), without the lock.
pub(crate) fn block(
    word: &AtomicU32,
    waiters: &AtomicU32,
    seen: u32,
    deadline: Option<Instant>,
    ready: impl Fn() -> bool,
) -> Woke {
    // Under loom, spinning only multiplies the states to explore.
    #[cfg(not(shm_loom))]
    if spin_until(|| word.load(Ordering::Acquire) != seen || ready()) {
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
    announce(waiters);
    let result = if word.load(Ordering::SeqCst) == seen && !ready() {
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

/// Spins with `pause` (never `sched_yield`: on a busy machine a yield
/// gives the CPU away for a whole time slice, milliseconds, which is what
/// the spin is there to avoid), checking `done` between short bursts that
/// grow to 16 pauses, for at most [`SPIN`]. Whether `done` came true.
#[cfg(not(shm_loom))]
fn spin_until(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut burst = 1u32;
    loop {
        for _ in 0..32 {
            if done() {
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
/// nobody sleeps: for events a waiter's re-check of the slots cannot see.
pub(crate) fn notify(word: &AtomicU32, waiters: &AtomicU32, all: bool) {
    word.fetch_add(1, Ordering::SeqCst);
    if look_at_waiters(waiters) != 0 {
        futex::wake(word, if all { i32::MAX as u32 } else { 1 });
    }
}

/// After a change a waiter's `ready()` re-check can see (a commit, a freed
/// slot): bumps `word` and wakes one sleeper (or all) only if a waiter has
/// announced itself; otherwise writes nothing shared at all.
pub(crate) fn notify_changed(word: &AtomicU32, waiters: &AtomicU32, all: bool) {
    if look_at_waiters(waiters) != 0 {
        word.fetch_add(1, Ordering::SeqCst);
        futex::wake(word, if all { i32::MAX as u32 } else { 1 });
    }
}

/// The waiter's half of the handshake: count itself, then fence, before
/// re-checking the word and the queue.
fn announce(waiters: &AtomicU32) {
    waiters.fetch_add(1, Ordering::SeqCst);
    #[cfg(not(shm_loom))]
    std::sync::atomic::fence(Ordering::SeqCst);
}

/// The notifier's half: after its change, fence, then look at the count.
///
/// loom treats SeqCst as AcqRel, under which two fenced store-then-load
/// sequences could both miss the other's store; in the model the look is
/// therefore an RMW on the count (`fetch_add(0)`), which orders itself with
/// the waiter's increment in the count's modification order and so forbids
/// that outcome under AcqRel too. Real builds use the fence the C++ memory
/// model guarantees, and a plain load: nothing shared is written on the hot
/// path.
fn look_at_waiters(waiters: &AtomicU32) -> u32 {
    if cfg!(shm_loom) {
        waiters.fetch_add(0, Ordering::SeqCst)
    } else {
        std::sync::atomic::fence(Ordering::SeqCst);
        waiters.load(Ordering::Relaxed)
    }
}
