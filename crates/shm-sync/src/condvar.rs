//! The pthread condition variable, process-shared, on `CLOCK_MONOTONIC`.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use shm_core::ShmSafe;

use crate::mutex::{LockError, MutexGuard};
use crate::sys::{self, pthread::E_UNINIT, pthread::RawCond};

/// A `pthread_cond_t` with `PTHREAD_PROCESS_SHARED` and `CLOCK_MONOTONIC`,
/// living in a segment, used with a [`crate::Mutex`] in the same segment.
///
/// # Caveats: read before use
///
/// - **Not robust: do not use it where a waiter may be killed.** The glibc
///   condvar keeps waiter sequences, group sizes and per-group waiter
///   references inside the `pthread_cond_t`. A waiter killed inside a wait
///   never drops its reference. The multi-process kill test shows what
///   follows on glibc 2.36, every run: the next-but-one `notify_one` goes
///   to the dead waiter's group and wakes nobody. The one after that has to
///   switch groups, and blocks **forever** in glibc waiting for the dead
///   reference, holding the condvar's internal lock, so even other
///   waiters' timeouts stop working. Nothing outside glibc can repair
///   that. [`crate::FutexCondvar`] has the same API and no such state; use
///   it whenever processes may die. docs/sync.md has the evidence.
/// - **Lost wake-ups.** The condvar rewritten in glibc 2.25 can lose a
///   wake-up (sourceware bug 25847: a `pthread_cond_signal` is consumed
///   without waking any waiter, under a particular interleaving of waiters
///   and signallers). It was fixed upstream only years later; Debian 12's
///   glibc 2.36 does not carry the fix. As insurance, [`Condvar::wait`]
///   never sleeps longer than [`Condvar::RECHECK`] in one go: it returns
///   (a spurious wake-up, which every condvar user must tolerate anyway)
///   and [`Condvar::wait_while`] re-checks its condition, so a lost wake-up
///   costs at most that much latency instead of a hang.
///
/// The mutex error contract carries over: a wait that reacquires a mutex
/// whose holder died returns [`LockError::OwnerDied`] with the guard.
///
/// # Layout
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 48 | `pthread_cond_t` |
/// | 48 | 4 | init state: 0 zeroed, `"INIT"` initializing, `"RDY!"` ready |
/// | 52 | 4 | reserved |
///
/// # Example
///
/// ```
/// use shm_core::{Shared, SharedOptions, ShmSafe, ShmShared};
/// use shm_sync::{Condvar, Mutex};
///
/// // The derives (shm-core feature `derive`) check the repr and the fields.
/// #[derive(ShmSafe, ShmShared)]
/// #[repr(C)]
/// struct Flag { m: Mutex<u32>, cv: Condvar }
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
///     let g = s.get().cv.wait_while(g, |v| *v == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct Condvar {
    raw: RawCond,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<Condvar>() == size_of::<libc::pthread_cond_t>() + 8);
    assert!(align_of::<Condvar>() == align_of::<libc::pthread_cond_t>());
};

// SAFETY: the pthread condvar is process-shared and meant to be used from
// many threads at once; its state word is atomic.
#[allow(unsafe_code)]
unsafe impl Sync for Condvar {}

// SAFETY: `#[repr(C)]`, no pointers (a PROCESS_SHARED glibc condvar holds
// only counters and futex words); the init state word treats every value but
// READY as uninitialized, and zeroed memory is "not initialized". Garbage in
// the glibc bytes makes glibc misbehave (see docs/sync.md), outside Rust's
// model.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Condvar {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::Condvar/v1");
}

// SAFETY: every field is an atomic or sits in an `UnsafeCell`.
#[allow(unsafe_code)]
unsafe impl shm_core::ShmShared for Condvar {}

impl Condvar {
    /// The longest one [`Condvar::wait`] sleeps before returning on its own,
    /// so that a lost wake-up (glibc bug 25847) delays a
    /// [`Condvar::wait_while`] by at most this much instead of forever.
    pub const RECHECK: Duration = crate::RECHECK;

    /// Initializes the zeroed condvar in place: for the creator, once.
    /// `AlreadyExists` if it is initialized or being initialized.
    #[doc(alias = "pthread_cond_init")]
    pub fn init(&self) -> io::Result<()> {
        self.raw.init()
    }

    /// Whether the creator has initialized the condvar.
    pub fn is_initialized(&self) -> bool {
        self.raw.is_ready()
    }

    /// Unlocks the guard's mutex, sleeps until notified (or spuriously, at
    /// the latest after [`Condvar::RECHECK`]), and locks it again.
    ///
    /// On an uninitialized condvar, returns [`LockError::Uninitialized`]
    /// after unlocking the mutex (dropping the guard).
    #[doc(alias = "pthread_cond_wait")]
    pub fn wait<'a, T: ShmSafe>(
        &self,
        guard: MutexGuard<'a, T>,
    ) -> Result<MutexGuard<'a, T>, LockError<'a, T>> {
        self.wait_until(guard, sys::time::monotonic_after(Self::RECHECK))
            .map(|(g, _)| g)
    }

    /// Like [`Condvar::wait`], for at most `timeout` (on `CLOCK_MONOTONIC`);
    /// the flag says whether it timed out. The mutex is held again either
    /// way.
    #[doc(alias = "pthread_cond_timedwait")]
    pub fn wait_timeout<'a, T: ShmSafe>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError<'a, T>> {
        self.wait_until(guard, sys::time::monotonic_after(timeout))
    }

    /// Waits while `condition` holds, re-checking it after every wake-up
    /// (and at least every [`Condvar::RECHECK`]).
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
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Self::RECHECK,
            };
            if left.is_zero() {
                return Ok((guard, true));
            }
            guard = self.wait_timeout(guard, left.min(Self::RECHECK))?.0;
        }
        Ok((guard, false))
    }

    /// Wakes one waiter, in any process (`pthread_cond_signal`). Does
    /// nothing on an uninitialized condvar.
    #[doc(alias = "pthread_cond_signal")]
    pub fn notify_one(&self) {
        // Ignored: fails only on an uninitialized (or corrupted) condvar,
        // which has nobody to wake.
        let _ = self.raw.signal();
    }

    /// Wakes every waiter, in every process (`pthread_cond_broadcast`).
    /// Does nothing on an uninitialized condvar.
    #[doc(alias = "pthread_cond_broadcast")]
    pub fn notify_all(&self) {
        // Ignored, as in `notify_one`.
        let _ = self.raw.broadcast();
    }

    fn wait_until<'a, T: ShmSafe>(
        &self,
        guard: MutexGuard<'a, T>,
        abstime: libc::timespec,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError<'a, T>> {
        let mutex = guard.mutex();
        #[allow(unsafe_code)]
        // SAFETY: the guard proves this thread holds the mutex.
        let r = unsafe { self.raw.wait_until(mutex.raw(), &abstime) };
        match r {
            // The mutex was released and is held again (or, for
            // ENOTRECOVERABLE, not held): the old guard must not unlock it.
            Ok(()) | Err(libc::ETIMEDOUT | libc::EOWNERDEAD | libc::ENOTRECOVERABLE) => {
                guard.forget();
                let timed_out = r == Err(libc::ETIMEDOUT);
                let r = if timed_out { Ok(()) } else { r };
                mutex.lock_result(r).map(|g| (g, timed_out))
            }
            // The call failed before releasing the mutex: still held, and
            // the old guard unlocks it as it drops.
            Err(e) => {
                drop(guard);
                Err(if e == E_UNINIT {
                    LockError::Uninitialized
                } else {
                    LockError::Os(io::Error::from_raw_os_error(e))
                })
            }
        }
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("initialized", &self.is_initialized())
            .finish_non_exhaustive()
    }
}

// Miri cannot run process-shared pthread objects or map segments.
#[cfg(all(test, not(shm_loom), not(miri)))]
mod tests {
    use super::*;
    use crate::{FutexCondvar, Mutex};
    use shm_core::{Shared, SharedOptions};

    #[repr(C)]
    struct Pair {
        m: Mutex<u64>,
        cv: Condvar,
        fcv: FutexCondvar,
    }

    // SAFETY: repr(C) of ShmSafe fields.
    #[allow(unsafe_code)]
    unsafe impl ShmSafe for Pair {
        const TYPE_ID: u64 = shm_core::type_id("shm_sync::tests::Pair");
    }

    // SAFETY: repr(C) of ShmShared fields.
    #[allow(unsafe_code)]
    unsafe impl shm_core::ShmShared for Pair {}

    fn pair() -> Shared<Pair> {
        Shared::create_anonymous(&SharedOptions::new(), |p: &Pair| {
            p.m.init(0)?;
            p.cv.init()?;
            Ok(p.fcv.init()?)
        })
        .expect("anonymous segment")
    }

    #[test]
    fn uninitialized_condvar_reports_and_unlocks() {
        // Zeroed and left so: the initializer does nothing.
        let s = Shared::<Pair>::create_anonymous(&SharedOptions::new(), |_| Ok(())).unwrap();
        let p = s.get();
        p.m.init(1).unwrap();
        assert!(!p.cv.is_initialized());
        let g = p.m.lock().unwrap();
        assert!(matches!(p.cv.wait(g), Err(LockError::Uninitialized)));
        // The mutex was unlocked on the way out.
        assert!(p.m.try_lock().is_ok());
        p.cv.notify_one();
        p.cv.notify_all();
        p.cv.init().unwrap();
        assert!(p.cv.init().is_err());
    }

    #[test]
    fn timeouts_expire_and_keep_the_lock() {
        let s = pair();
        let p = s.get();
        let d = Duration::from_millis(30);
        let start = Instant::now();
        let (g, timed_out) = p.cv.wait_timeout(p.m.lock().unwrap(), d).unwrap();
        assert!(timed_out);
        assert!(start.elapsed() >= d);
        let start = Instant::now();
        let (g, timed_out) = p.fcv.wait_timeout(g, d).unwrap();
        assert!(timed_out);
        assert!(start.elapsed() >= d);
        let (g, still) = p.cv.wait_timeout_while(g, d, |v| *v == 0).unwrap();
        assert!(still);
        let (g, still) = p.fcv.wait_timeout_while(g, d, |v| *v == 0).unwrap();
        assert!(still);
        // The guard still holds the lock.
        std::thread::scope(|t| {
            t.spawn(|| assert!(p.m.try_lock().is_err()));
        });
        drop(g);
    }

    /// Two threads alternate through the counter: odd values belong to one,
    /// even to the other.
    fn ping_pong(p: &Pair, futex: bool) {
        const ROUNDS: u64 = 2_000;
        let player = |parity: u64| {
            let mut g = p.m.lock().unwrap();
            loop {
                let turn = |v: &mut u64| *v % 2 != parity && *v < 2 * ROUNDS;
                g = if futex {
                    p.fcv.wait_while(g, turn).unwrap()
                } else {
                    p.cv.wait_while(g, turn).unwrap()
                };
                if *g >= 2 * ROUNDS {
                    break;
                }
                *g += 1;
                if futex {
                    p.fcv.notify_one();
                } else {
                    p.cv.notify_one();
                }
            }
        };
        std::thread::scope(|t| {
            t.spawn(|| player(0));
            t.spawn(|| player(1));
        });
        assert_eq!(*p.m.lock().unwrap(), 2 * ROUNDS);
    }

    #[test]
    fn pthread_condvar_ping_pong_between_threads() {
        ping_pong(pair().get(), false);
    }

    #[test]
    fn futex_condvar_ping_pong_between_threads() {
        ping_pong(pair().get(), true);
    }

    #[test]
    fn notify_all_wakes_every_waiter() {
        for futex in [false, true] {
            let s = pair();
            let p = s.get();
            std::thread::scope(|t| {
                for _ in 0..4 {
                    t.spawn(|| {
                        let g = p.m.lock().unwrap();
                        let g = if futex {
                            p.fcv.wait_while(g, |v| *v == 0).unwrap()
                        } else {
                            p.cv.wait_while(g, |v| *v == 0).unwrap()
                        };
                        drop(g);
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
                *p.m.lock().unwrap() = 1;
                if futex {
                    p.fcv.notify_all();
                } else {
                    p.cv.notify_all();
                }
            });
            assert_eq!(p.fcv.waiters(), 0);
        }
    }

    /// The lost-wake-up insurance: a change made without any notify (what a
    /// lost wake-up looks like to the waiter) still ends `wait_while`,
    /// because `wait` re-checks after at most `RECHECK`. Watchdog: 30 s.
    #[test]
    fn pthread_wait_while_survives_a_missing_notify() {
        let s = std::sync::Arc::new(pair());
        let s2 = std::sync::Arc::clone(&s);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let p = s2.get();
            let mut g = p.m.lock().unwrap();
            // 1: "waiting"; the lock is released only inside the wait.
            *g = 1;
            let g = p.cv.wait_while(g, |v| *v == 1).unwrap();
            tx.send(*g).unwrap();
        });
        // Once the lock shows 1, the waiter is inside the condvar wait.
        loop {
            let mut g = s.get().m.lock().unwrap();
            if *g == 1 {
                // Changed under the lock, never notified.
                *g = 5;
                break;
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(1));
        }
        let seen = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("watchdog: wait_while never re-checked without a notify");
        assert_eq!(seen, 5);
        waiter.join().unwrap();
    }

    #[test]
    fn wait_returns_owner_died_from_the_relock() {
        let s = pair();
        let p = s.get();
        std::thread::scope(|t| {
            let waiter = t.spawn(|| {
                let g = p.m.lock().unwrap();
                match p.fcv.wait_while(g, |v| *v == 0) {
                    Err(LockError::OwnerDied(g)) => {
                        assert_eq!(*g, 1);
                        g.make_consistent().unwrap();
                    }
                    other => panic!("expected OwnerDied, got {other:?}"),
                }
            });
            t.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                let mut g = p.m.lock().unwrap();
                *g = 1;
                p.fcv.notify_all();
                // The thread ends holding the lock: an owner death.
                std::mem::forget(g);
            })
            .join()
            .unwrap();
            waiter.join().unwrap();
        });
        assert!(p.m.lock().is_ok());
    }
}
