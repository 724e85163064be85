//! A condition variable made of a notification counter on a [`WaitWord`].

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use shm_core::ShmSafe;

use crate::mutex::{LockError, MutexGuard};
use crate::shim;
use crate::wait_word::{MAX_WAIT_VALUE, Slept, WaitWord};

/// A condition variable for a [`crate::Mutex`], made of a notification
/// counter that is the value of a [`WaitWord`]: no state that a dead
/// process can leave half-updated, so a waiter killed mid-wait (or a
/// notifier killed mid-notify) cannot block anybody.
///
/// Same API as [`crate::Condvar`]. A wait reads the counter while still
/// holding the mutex, unlocks, and sleeps "while the counter still has that
/// value" ([`WaitWord::sleep`]); a notify increments the counter
/// ([`WaitWord::transition`]), which wakes the sleepers if any flagged the
/// word. A notification that comes between the unlock and the sleep changed
/// the counter, so the waiter does not sleep: no lost wake-up, by the one
/// ordering argument of [`WaitWord`] ("Why no wake-up is lost"). All-zero
/// memory is a valid, empty condvar; [`FutexCondvar::init`] only resets it.
///
/// # `notify_one` wakes every sleeper
///
/// The word records only *that* someone sleeps, not who or how many, so
/// both notifies wake every waiter asleep on the condvar: `notify_one` is
/// allowed to, since a condvar may wake spuriously, and its callers
/// re-check their condition anyway ([`FutexCondvar::wait_while`]). In
/// exchange, a notified waiter that is killed before it relocks cannot
/// strand the others: they were woken too. Waits sleep at most
/// [`FutexCondvar::RECHECK`] at a time and then look at the counter again,
/// so a notifier killed between its increment and its `FUTEX_WAKE` delays
/// the waiters by at most that much.
///
/// A signal delivered to the waiting thread (a handler without
/// `SA_RESTART` ends the futex wait with `EINTR`) does not end a wait: it
/// goes back to sleep, with the same absolute deadline, unless the counter
/// moved.
///
/// Limits: waits may return spuriously (as with every condvar: use
/// [`FutexCondvar::wait_while`]); the counter has 63 bits and wraps, and
/// the kernel compares only the low 32 bits of the word, see [`WaitWord`].
///
/// # Layout
///
/// Format v2 (type id `shm_sync::FutexCondvar/v2`; v1 was a 4-byte counter
/// and a 4-byte waiter count, aligned to 4).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `word`: a [`WaitWord`], `notifications << 1 \| sleepers` |
///
/// # Example
///
/// A flag under a robust mutex, waited for with the futex condvar (two
/// threads here; two processes open the same segment by name instead, as
/// the `mutex_condvar` example of this crate does).
///
/// ```
/// use shm_core::{Shared, SharedOptions, ShmSafe, ShmShared};
/// use shm_sync::{FutexCondvar, Mutex};
///
/// // The derives (shm-core feature `derive`) check the repr and the fields.
/// #[derive(ShmSafe, ShmShared)]
/// #[repr(C)]
/// struct Flag {
///     m: Mutex<u32>,
///     cv: FutexCondvar,
/// }
///
/// let s = Shared::<Flag>::create_anonymous(&SharedOptions::new(), |f| {
///     f.m.init(0)?;
///     Ok(f.cv.init()?)
/// })?;
/// std::thread::scope(|t| {
///     t.spawn(|| {
///         *s.get().m.lock().unwrap() = 1;
///         s.get().cv.notify_all();
///     });
///     let g = s.get().m.lock().unwrap();
///     // Sleeps (no CPU) until notified and the value changed.
///     let g = s.get().cv.wait_while(g, |v| *v == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct FutexCondvar {
    /// The number of notifications so far (mod 2⁶³), as the value of a
    /// [`WaitWord`].
    ///
    /// | value | meaning |
    /// |---|---|
    /// | any `s` | `s` notifications (mod 2⁶³) have been made |
    ///
    /// Transitions: `notify_*` is `transition(s, s+1)` (a CAS, **AcqRel**,
    /// retried while other notifiers race). A waiter loads it
    /// (**Acquire**) while holding the mutex and sleeps with
    /// `WaitWord::sleep(s, ..)`; what the notifier wrote is seen through
    /// the mutex, which the waiter reacquires.
    word: WaitWord,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<FutexCondvar>() == 8);
    assert!(align_of::<FutexCondvar>() == 8);
};

// SAFETY: `#[repr(C)]` of one `WaitWord` (itself one `AtomicU64`): no
// pointers, every bit pattern is a valid state (any counter, either flag),
// all mutation is atomic, and the all-zero pattern is an empty condvar.
// (Under `--cfg shm_loom` the atomic is loom's and the type is never placed
// in a segment.)
#[allow(unsafe_code)]
unsafe impl ShmSafe for FutexCondvar {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::FutexCondvar/v2");
}

// SAFETY: its only field is a `WaitWord`, whose only field is an atomic.
#[allow(unsafe_code)]
unsafe impl shm_core::ShmShared for FutexCondvar {}

impl Default for FutexCondvar {
    fn default() -> Self {
        Self::new()
    }
}

impl FutexCondvar {
    /// How long one sleep of a wait lasts at most before it looks at the
    /// counter again (see "`notify_one` wakes every sleeper" above).
    pub const RECHECK: Duration = crate::RECHECK;

    /// A condvar outside any segment (for one process, or for tests).
    pub fn new() -> Self {
        FutexCondvar {
            word: WaitWord::new(0),
        }
    }

    /// Resets the condvar; for the creator, before anyone uses it. Zeroed
    /// memory is already a valid condvar, so this cannot fail; it returns a
    /// `Result` to match [`crate::Condvar::init`].
    pub fn init(&self) -> io::Result<()> {
        self.word.init(0);
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

    /// Wakes at least one waiter, in any process (no system call if nobody
    /// sleeps). It wakes every sleeping waiter: see "`notify_one` wakes
    /// every sleeper" above.
    pub fn notify_one(&self) {
        self.notify();
    }

    /// Wakes every waiter, in every process (no system call if nobody
    /// sleeps).
    pub fn notify_all(&self) {
        self.notify();
    }

    fn notify(&self) {
        let mut s = self.word.load();
        while let Err(now) = self.word.transition(s, s.wrapping_add(1) & MAX_WAIT_VALUE) {
            s = now;
        }
    }

    /// The protocol, independent of the mutex type (the loom models use a
    /// loom mutex): with the lock held by `guard`, read the counter, unlock
    /// by dropping `guard`, sleep while the counter is unchanged (in slices
    /// of at most [`Self::RECHECK`]), then `relock`. Returns `relock`'s
    /// result and whether the deadline passed.
    pub(crate) fn wait_raw<G, R>(
        &self,
        guard: G,
        deadline: Option<Instant>,
        relock: impl FnOnce() -> R,
    ) -> (R, bool) {
        let seen = self.word.load();
        drop(guard);
        let timed_out = loop {
            if deadline.is_some_and(shim::passed) {
                break true;
            }
            let until = shim::slice_end(deadline, Self::RECHECK);
            match self.word.sleep(seen, until, || false) {
                Slept::Changed => break false,
                // Only a notify changes the counter. A wake-up that left it
                // alone is a signal handler interrupting the sleep
                // (`EINTR`), or a timed-out waiter's nudge: no reason to
                // return, so sleep on (a process interrupted every few
                // milliseconds would otherwise return that often).
                Slept::Woken if self.word.load() != seen => break false,
                Slept::Woken => {}
                // The sleep ended at the caller's deadline, not at a slice.
                Slept::TimedOut if until == deadline => break true,
                Slept::TimedOut => {}
            }
        };
        if timed_out && self.word.has_sleepers() {
            // Leave no flag behind for the next notify to wake needlessly
            // (any other sleeper is woken: a spurious wake-up).
            self.word.nudge();
        }
        (relock(), timed_out)
    }

    /// 1 if a waiter has flagged the counter as slept on (or about to be),
    /// else 0: a snapshot for stats and tests.
    ///
    /// Since format v2 this is a flag, not a count: several sleepers show
    /// as 1. A notify clears it, and so does a wait that times out, so the
    /// value reads 0 once no wait is in progress, unless a waiter was
    /// killed while it slept.
    pub fn waiters(&self) -> u32 {
        u32::from(self.word.has_sleepers())
    }
}

impl fmt::Debug for FutexCondvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutexCondvar")
            .field("notifications", &self.word.load())
            .field("sleepers", &self.word.has_sleepers())
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

    /// A wait that times out with nobody notifying leaves no sleepers flag
    /// behind, and its nudge strands no untimed waiter.
    #[test]
    fn loom_futex_condvar_timed_out_wait_leaves_no_flag() {
        loom::model(|| {
            let s = shared();
            let g = s.flag.lock().unwrap();
            let (g, timed_out) =
                s.cv.wait_raw(g, Some(Instant::now()), || s.flag.lock().unwrap());
            assert!(timed_out);
            drop(g);
            assert_eq!(s.cv.waiters(), 0);
            let s2 = Arc::clone(&s);
            let waiter = thread::spawn(move || wait_for(&s2, 1));
            let g = s.flag.lock().unwrap();
            let (g, _) =
                s.cv.wait_raw(g, Some(Instant::now()), || s.flag.lock().unwrap());
            drop(g);
            *s.flag.lock().unwrap() = 1;
            s.cv.notify_one();
            waiter.join().unwrap();
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
