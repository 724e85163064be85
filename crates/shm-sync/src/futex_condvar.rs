//! A condition variable made of a sequence counter and the shared futex.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use shm_core::ShmSafe;

use crate::futex::{self, WaitResult};
use crate::mutex::{LockError, MutexGuard};
use crate::primitive::{AtomicU32, Ordering};

/// A condition variable for a [`crate::Mutex`], made of a sequence counter
/// and a waiter hint on the shared futex: no state that a dead process can
/// leave half-updated, so a waiter killed mid-wait (or a notifier killed
/// mid-notify) cannot block anybody.
///
/// Same API as [`crate::Condvar`]. A wait reads the counter while still
/// holding the mutex, unlocks, and sleeps on the futex "while the counter
/// still has that value"; a notify increments the counter and wakes. A
/// notification that comes between the unlock and the sleep changed the
/// counter, so the kernel refuses the sleep: no lost wake-up. All-zero
/// memory is a valid, empty condvar; [`FutexCondvar::init`] only resets it.
///
/// Limits: waits may return spuriously (as with every condvar: use
/// [`FutexCondvar::wait_while`]); `notify_one` may wake a waiter that
/// arrived after it instead of an older one; after exactly 2³² notifications
/// between a waiter's read and its sleep (not a practical case) the waiter
/// would sleep through them.
///
/// # Layout
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `seq`, the futex word |
/// | 4 | 4 | `waiters`, a hint |
#[repr(C)]
pub struct FutexCondvar {
    /// The futex word: the number of notifications so far, wrapping.
    ///
    /// | state | meaning |
    /// |---|---|
    /// | any `s` | `s` notifications (mod 2³²) have been made |
    ///
    /// Transitions: `notify_*` does `s -> s+1` (`fetch_add`, **Release**).
    /// A waiter loads it (**Acquire**) while holding the mutex and sleeps
    /// with `FUTEX_WAIT` expecting that value; what the notifier wrote is
    /// seen through the mutex, which the waiter reacquires.
    seq: AtomicU32,
    /// How many waiters may be asleep on `seq` (a hint, wrapping).
    ///
    /// | state | meaning |
    /// |---|---|
    /// | `0` | no waiter: notifies skip `FUTEX_WAKE` |
    /// | `k > 0` | up to `k` waiters (or dead ones): notifies call `FUTEX_WAKE` |
    ///
    /// Transitions: a waiter does `fetch_add(1)` (**AcqRel**) *before*
    /// loading `seq`, and `fetch_sub(1)` after waking; a notifier reads it
    /// with `fetch_add(0)` (**AcqRel**, an RMW) *after* incrementing `seq`.
    /// The two RMWs are ordered: either the notifier sees the waiter and
    /// wakes it, or the waiter's RMW synchronizes with the notifier's and
    /// its load of `seq` sees the new value, so it does not sleep on the old
    /// one. (When the notifier changed the condition under the mutex, the
    /// mutex alone already orders the waiter's increment before the
    /// notifier's read; the RMW keeps the argument independent of that, for
    /// one locked instruction per notify.) A waiter killed mid-wait leaves
    /// the hint one too high: later notifies then make a needless
    /// `FUTEX_WAKE`, nothing worse.
    waiters: AtomicU32,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<FutexCondvar>() == 8);
    assert!(align_of::<FutexCondvar>() == 4);
};

// SAFETY: `#[repr(C)]` of two `AtomicU32`s: no pointers, every bit pattern
// is a valid state (any counter, any hint), all mutation is atomic, and the
// all-zero pattern is an empty condvar. (Under `--cfg shm_loom` the atomics
// are loom's and the type is never placed in a segment.)
#[allow(unsafe_code)]
unsafe impl ShmSafe for FutexCondvar {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::FutexCondvar/v1");
}

// SAFETY: every field is an atomic or sits in an `UnsafeCell`.
#[allow(unsafe_code)]
unsafe impl shm_core::ShmShared for FutexCondvar {}

impl Default for FutexCondvar {
    fn default() -> Self {
        Self::new()
    }
}

impl FutexCondvar {
    /// A condvar outside any segment (for one process, or for tests).
    pub fn new() -> Self {
        FutexCondvar {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Resets the condvar; for the creator, before anyone uses it. Zeroed
    /// memory is already a valid condvar, so this cannot fail; it returns a
    /// `Result` to match [`crate::Condvar::init`].
    pub fn init(&self) -> io::Result<()> {
        self.waiters.store(0, Ordering::Relaxed);
        self.seq.store(0, Ordering::Release);
        Ok(())
    }

    /// Unlocks the guard's mutex, sleeps until notified (or spuriously),
    /// and locks it again.
    pub fn wait<'a, T: ShmSafe>(
        &self,
        guard: MutexGuard<'a, T>,
    ) -> Result<MutexGuard<'a, T>, LockError<'a, T>> {
        let mutex = guard.mutex();
        let (relocked, _) = self.wait_raw(guard, None, || mutex.lock());
        relocked
    }

    /// Like [`FutexCondvar::wait`], for at most `timeout` (absolute
    /// `CLOCK_MONOTONIC` deadline); the flag says whether it timed out.
    pub fn wait_timeout<'a, T: ShmSafe>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError<'a, T>> {
        self.wait_deadline(guard, Instant::now().checked_add(timeout))
    }

    /// Like [`FutexCondvar::wait`], until `deadline` (`None`: no limit).
    pub fn wait_deadline<'a, T: ShmSafe>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError<'a, T>> {
        let mutex = guard.mutex();
        let (relocked, timed_out) = self.wait_raw(guard, deadline, || mutex.lock());
        relocked.map(|g| (g, timed_out))
    }

    /// Waits while `condition` holds, re-checking it after every wake-up.
    pub fn wait_while<'a, T: ShmSafe, F: FnMut(&mut T) -> bool>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> Result<MutexGuard<'a, T>, LockError<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, for at most `timeout` in total; the
    /// flag says whether it gave up with the condition still true.
    pub fn wait_timeout_while<'a, T: ShmSafe, F: FnMut(&mut T) -> bool>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError<'a, T>> {
        let deadline = Instant::now().checked_add(timeout);
        while condition(&mut *guard) {
            let (g, timed_out) = self.wait_deadline(guard, deadline)?;
            guard = g;
            if timed_out {
                let still = condition(&mut *guard);
                return Ok((guard, still));
            }
        }
        Ok((guard, false))
    }

    /// Wakes one waiter, in any process (no system call if nobody waits).
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes every waiter, in every process (no system call if nobody
    /// waits).
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::Release);
        // An RMW, not a load: see the `waiters` state table.
        if self.waiters.fetch_add(0, Ordering::AcqRel) != 0 {
            futex::wake(&self.seq, n);
        }
    }

    /// The protocol, independent of the mutex type (the loom models use a
    /// loom mutex): with the lock held by `guard`, announce the waiter, read
    /// the counter, unlock by dropping `guard`, sleep while the counter is
    /// unchanged, then `relock`. Returns `relock`'s result and whether the
    /// deadline passed.
    pub(crate) fn wait_raw<G, R>(
        &self,
        guard: G,
        deadline: Option<Instant>,
        relock: impl FnOnce() -> R,
    ) -> (R, bool) {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let seen = self.seq.load(Ordering::Acquire);
        drop(guard);
        let timed_out = loop {
            match futex::wait(&self.seq, seen, deadline) {
                WaitResult::Woken | WaitResult::ValueChanged => break false,
                WaitResult::TimedOut => break true,
                WaitResult::Interrupted => {}
            }
        };
        self.waiters.fetch_sub(1, Ordering::Release);
        (relock(), timed_out)
    }

    /// The waiter hint now (for stats and tests).
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for FutexCondvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutexCondvar")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("waiters", &self.waiters())
            .finish()
    }
}

#[cfg(all(test, shm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    struct Shared {
        flag: Mutex<u32>,
        cv: FutexCondvar,
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            flag: Mutex::new(0),
            cv: FutexCondvar::new(),
        })
    }

    /// `wait_while(flag < want)` with the loom mutex.
    fn wait_for(s: &Shared, want: u32) {
        let mut g = s.flag.lock().unwrap();
        while *g < want {
            let (g2, _) = s.cv.wait_raw(g, None, || s.flag.lock().unwrap());
            g = g2;
        }
    }

    #[test]
    fn loom_futex_condvar_notify_after_unlock_is_not_lost() {
        loom::model(|| {
            let s = shared();
            let s2 = Arc::clone(&s);
            let waiter = thread::spawn(move || wait_for(&s2, 1));
            *s.flag.lock().unwrap() = 1;
            s.cv.notify_one();
            waiter.join().unwrap();
            assert_eq!(s.cv.waiters(), 0);
        });
    }

    #[test]
    fn loom_futex_condvar_notify_under_lock_is_not_lost() {
        loom::model(|| {
            let s = shared();
            let s2 = Arc::clone(&s);
            let waiter = thread::spawn(move || wait_for(&s2, 1));
            {
                let mut g = s.flag.lock().unwrap();
                *g = 1;
                s.cv.notify_one();
            }
            waiter.join().unwrap();
        });
    }

    #[test]
    fn loom_futex_condvar_notify_all_wakes_both() {
        loom::model(|| {
            let s = shared();
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    thread::spawn(move || wait_for(&s, 1))
                })
                .collect();
            *s.flag.lock().unwrap() = 1;
            s.cv.notify_all();
            for w in waiters {
                w.join().unwrap();
            }
        });
    }

    /// Two consumers, two `notify_one`s, one token each: every notify is
    /// useful to whichever waiter it wakes, so none may be lost. (Waiters
    /// with *different* conditions on one condvar need `notify_all`, with
    /// this condvar as with any other.)
    #[test]
    fn loom_futex_condvar_two_notify_one_for_two_consumers() {
        loom::model(|| {
            let s = shared();
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    thread::spawn(move || {
                        let mut g = s.flag.lock().unwrap();
                        while *g == 0 {
                            g = s.cv.wait_raw(g, None, || s.flag.lock().unwrap()).0;
                        }
                        *g -= 1;
                    })
                })
                .collect();
            for _ in 0..2 {
                *s.flag.lock().unwrap() += 1;
                s.cv.notify_one();
            }
            for c in consumers {
                c.join().unwrap();
            }
            assert_eq!(*s.flag.lock().unwrap(), 0);
        });
    }

    #[test]
    fn loom_futex_condvar_timed_wait_cleans_up() {
        loom::model(|| {
            let s = shared();
            let s2 = Arc::clone(&s);
            let waiter = thread::spawn(move || {
                let g = s2.flag.lock().unwrap();
                if *g == 0 {
                    let (g, _timed_out) = s2
                        .cv
                        .wait_raw(g, Some(Instant::now()), || s2.flag.lock().unwrap());
                    drop(g);
                }
            });
            *s.flag.lock().unwrap() = 1;
            s.cv.notify_one();
            waiter.join().unwrap();
            assert_eq!(s.cv.waiters(), 0);
        });
    }
}
