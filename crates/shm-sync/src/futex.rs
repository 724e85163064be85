//! Safe wrappers over the **shared** futex (no `FUTEX_PRIVATE_FLAG`), for
//! wait words that live in a segment and are waited on from several
//! processes.
//!
//! `parking_lot_core` and `atomic-wait` use private futexes, which only wake
//! threads of the same process (the kernel keys a private futex by address
//! space and virtual address). A shared futex is keyed by the backing page
//! and the offset in it, so a waker in one process finds a waiter in
//! another, even when the two map the segment at different addresses.
//!
//! Callers follow the usual protocol: load the word, decide to sleep on the
//! value seen, and call [`wait`] with it; the kernel re-checks the value
//! atomically with queueing the waiter, so a change made before the sleep is
//! reported as [`WaitResult::ValueChanged`] instead of being slept through.
//! Every result other than `TimedOut` may be spurious: re-check the
//! condition in a loop.
//!
//! Under `--cfg shm_loom` both functions are the loom model of
//! `crate::shim`.
//!
//! ```
//! # #[cfg(not(shm_loom))] {
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::{Duration, Instant};
//! use shm_sync::futex::{self, WaitResult};
//!
//! let word = AtomicU32::new(0);
//! // The value is not 1: the kernel says so instead of sleeping.
//! assert_eq!(futex::wait(&word, 1, None), WaitResult::ValueChanged);
//! // Nobody wakes us: the deadline passes.
//! let r = futex::wait(&word, 0, Some(Instant::now() + Duration::from_millis(5)));
//! assert_eq!(r, WaitResult::TimedOut);
//! word.store(1, Ordering::Release);
//! assert_eq!(futex::wake(&word, 1), 0); // nobody was waiting
//! # }
//! ```

use std::time::Instant;

use crate::shim::{self, AtomicU32};

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitResult {
    /// Woken by a [`wake`] (or spuriously: re-check the condition).
    Woken,
    /// The word did not hold `expected` when the kernel looked (`EAGAIN`).
    ValueChanged,
    /// The deadline passed (`ETIMEDOUT`).
    TimedOut,
    /// A signal handler ran (`EINTR`); wait again with the same deadline.
    Interrupted,
}

/// Sleeps while `*word == expected`, until a [`wake`] on the same word from
/// any process, or until `deadline` (absolute, `CLOCK_MONOTONIC`, the clock
/// of [`Instant`]; `None` waits without limit).
///
/// A deadline already past still checks the value first: the result is
/// `ValueChanged` or `TimedOut`. Because the deadline is absolute, calling
/// again after `Interrupted` or a spurious `Woken` keeps the original limit.
///
/// Wraps `futex(word, FUTEX_WAIT_BITSET, expected, abstime, NULL,
/// FUTEX_BITSET_MATCH_ANY)`.
#[doc(alias = "FUTEX_WAIT_BITSET")]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitResult {
    shim::futex_wait(word, expected, deadline)
}

/// Wakes up to `n` waiters sleeping on `word`, in any process; returns how
/// many were woken. Change the word **before** waking (with the ordering
/// your protocol needs), or a waiter may go back to sleep on the old value.
///
/// Wraps `futex(word, FUTEX_WAKE, n)`; `n` is capped at `i32::MAX` (use
/// `u32::MAX` for "all").
#[doc(alias = "FUTEX_WAKE")]
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    shim::futex_wake(word, n)
}

#[cfg(all(test, not(shm_loom)))]
mod tests {
    use super::*;
    use crate::shim::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wake_reaches_a_sleeping_thread() {
        let word = Arc::new(AtomicU32::new(0));
        let w = Arc::clone(&word);
        let t = std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(30);
            while w.load(Ordering::Acquire) == 0 {
                let r = wait(&w, 0, Some(limit));
                assert_ne!(r, WaitResult::TimedOut, "never woken");
            }
        });
        // Wake until the thread has seen the change and gone.
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        wake(&word, u32::MAX);
        t.join().unwrap();
    }

    #[test]
    fn timeout_is_not_early() {
        let word = AtomicU32::new(7);
        let start = Instant::now();
        let d = Duration::from_millis(30);
        let mut r;
        loop {
            r = wait(&word, 7, Some(start + d));
            if r != WaitResult::Woken && r != WaitResult::Interrupted {
                break;
            }
        }
        assert_eq!(r, WaitResult::TimedOut);
        assert!(start.elapsed() >= d);
        assert_eq!(wait(&word, 7, Some(start)), WaitResult::TimedOut);
        assert_eq!(wait(&word, 8, Some(start)), WaitResult::ValueChanged);
    }
}
