//! A counting semaphore on a shared futex.

use std::fmt;
use std::time::{Duration, Instant};

use crate::futex::{self, WaitResult};
use crate::primitive::{AtomicU32, Ordering, Spin};

/// A counting semaphore that lives in a segment and works across processes.
///
/// `post` adds one; `wait` takes one, sleeping on the shared futex while the
/// count is zero. `post` makes no system call when nobody waits. A waiter
/// first spins briefly (`parking_lot_core::SpinWait`), then sleeps in the
/// kernel, costing no CPU; timed waits use an absolute `CLOCK_MONOTONIC`
/// deadline, so spurious wake-ups and `EINTR` neither shorten nor extend
/// them.
///
/// The all-zero bit pattern is a valid semaphore with count 0; the creator
/// sets another start value with [`Semaphore::init`].
///
/// # Layout
///
/// | offset | size | field | |
/// |---|---|---|---|
/// | 0 | 4 | `count` | the futex word, tokens available |
/// | 4 | 4 | `waiters` | a hint: threads between "about to sleep" and "done" |
///
/// # Owner death
///
/// A semaphore has no owner: a process killed after `wait` returned simply
/// never posts its token back (as with any semaphore). One killed while
/// sleeping leaves `waiters` one too high, which only costs later `post`s a
/// needless `FUTEX_WAKE`; the count stays exact.
#[repr(C)]
pub struct Semaphore {
    /// The futex word: how many tokens are available.
    ///
    /// | state | meaning |
    /// |---|---|
    /// | `0` | empty: `wait` sleeps on the futex with expected value 0 |
    /// | `n > 0` | `n` tokens: `try_wait` takes one by CAS `n -> n-1` |
    /// | `u32::MAX` | full: `post` fails with [`SemError::Overflow`] |
    ///
    /// Transitions: `post` CASes `n -> n+1` with **Release** (publishing
    /// what the poster wrote before); `wait`/`try_wait` CAS `n -> n-1` with
    /// **Acquire** (so the taker sees it). Sleeping happens only on the value
    /// 0, and the kernel compares the word with 0 atomically with queueing
    /// the sleeper.
    count: AtomicU32,
    /// How many waiters may be asleep on `count` (a hint, wrapping).
    ///
    /// | state | meaning |
    /// |---|---|
    /// | `0` | nobody is between "about to sleep" and "done": `post` skips `FUTEX_WAKE` |
    /// | `k > 0` | up to `k` sleepers (or dead ones, see below): `post` calls `FUTEX_WAKE(1)` |
    ///
    /// Transitions: a waiter does `fetch_add(1)` (**AcqRel**) *before* its
    /// last look at `count`, and `fetch_sub(1)` when done; `post`, *after*
    /// its increment of `count`, reads it with `fetch_add(0)` (**AcqRel**),
    /// an RMW rather than a load. Both sides' RMWs on this word are ordered
    /// in its modification order: if the poster's comes first, the waiter's
    /// RMW reads from it and synchronizes with it, so the waiter's next look
    /// at `count` sees the token and it does not sleep; if the waiter's
    /// comes first, the poster reads `k > 0` and wakes. This needs only
    /// acquire/release reasoning (no SeqCst store-buffer argument, which
    /// loom does not model), and the loom models in this module check that
    /// no wake-up is lost.
    waiters: AtomicU32,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<Semaphore>() == 8);
    assert!(align_of::<Semaphore>() == 4);
};

// SAFETY: `#[repr(C)]` of two `AtomicU32`s: no pointers, every bit pattern is
// a valid state (any count, any waiter hint), all mutation is atomic, and the
// all-zero pattern is a semaphore with count 0. (Under `--cfg shm_loom` the
// atomics are loom's and the type is never placed in a segment.)
#[allow(unsafe_code)]
unsafe impl shm_core::ShmSafe for Semaphore {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::Semaphore/v1");
}

// SAFETY: every field is an atomic or sits in an `UnsafeCell`.
#[allow(unsafe_code)]
unsafe impl shm_core::ShmShared for Semaphore {}

/// Why a [`Semaphore::post`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemError {
    /// The count is already `u32::MAX`.
    Overflow,
}

impl fmt::Display for SemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemError::Overflow => write!(
                f,
                "semaphore count is at its maximum ({}); a post would overflow it",
                u32::MAX
            ),
        }
    }
}

impl std::error::Error for SemError {}

impl From<SemError> for std::io::Error {
    fn from(e: SemError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

impl Semaphore {
    /// A semaphore outside any segment (for one process, or for tests).
    pub fn new(initial: u32) -> Self {
        Semaphore {
            count: AtomicU32::new(initial),
            waiters: AtomicU32::new(0),
        }
    }

    /// Sets the count; for the creator, before anyone else uses it.
    pub fn init(&self, initial: u32) {
        self.waiters.store(0, Ordering::Relaxed);
        self.count.store(initial, Ordering::Release);
    }

    /// Adds a token and wakes one sleeping waiter, if any (no system call
    /// when there is none).
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<(), SemError> {
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if c == u32::MAX {
                return Err(SemError::Overflow);
            }
            match self
                .count
                .compare_exchange(c, c + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        // An RMW, not a load: see the `waiters` state table.
        if self.waiters.fetch_add(0, Ordering::AcqRel) != 0 {
            futex::wake(&self.count, 1);
        }
        Ok(())
    }

    /// Takes a token if one is available, without blocking.
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        while c != 0 {
            match self
                .count
                .compare_exchange(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Takes a token, sleeping until one is posted.
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) {
        let taken = self.wait_until(None);
        debug_assert!(taken, "an unbounded wait only returns with a token");
    }

    /// Takes a token, waiting at most `timeout`; `false` if none came.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Takes a token, waiting until `deadline` (`CLOCK_MONOTONIC`); `false`
    /// if none came by then.
    #[doc(alias = "sem_clockwait")]
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_until(Some(deadline))
    }

    /// The count now (racy by nature: a snapshot for stats and tests).
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The waiter hint now (for stats and tests).
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// How long one sleep of a wait lasts before it looks at the count
    /// again. `post` wakes one sleeper; if that process is killed before it
    /// takes the token, the token stays in the count while the others
    /// sleep on: re-checking every slice turns that into a delay of at most
    /// this long instead of a wait until the next post.
    pub const RECHECK: Duration = Duration::from_millis(100);

    /// The end of the next sleep: the deadline, or one [`Self::RECHECK`]
    /// from now if that is sooner. (Under loom: the deadline, so that a lost
    /// wake-up is a deadlock the model reports.)
    fn slice(deadline: Option<Instant>) -> Option<Instant> {
        if cfg!(shm_loom) {
            return deadline;
        }
        let next = Instant::now() + Self::RECHECK;
        Some(deadline.map_or(next, |d| d.min(next)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.try_wait() {
            return true;
        }
        let mut spin = Spin::new();
        while spin.spin() {
            if self.try_wait() {
                return true;
            }
        }
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let taken = loop {
            if self.try_wait() {
                break true;
            }
            match futex::wait(&self.count, 0, Self::slice(deadline)) {
                WaitResult::TimedOut if deadline.is_none_or(|d| Instant::now() < d) => {}
                WaitResult::TimedOut => break self.try_wait(),
                WaitResult::Woken | WaitResult::ValueChanged | WaitResult::Interrupted => {}
            }
        };
        self.waiters.fetch_sub(1, Ordering::Release);
        taken
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("waiters", &self.waiters())
            .finish()
    }
}

#[cfg(all(test, not(shm_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_and_overflows() {
        let s = Semaphore::new(2);
        assert!(s.try_wait());
        assert!(s.try_wait());
        assert!(!s.try_wait());
        s.post().unwrap();
        assert_eq!(s.value(), 1);
        s.init(u32::MAX);
        assert_eq!(s.post(), Err(SemError::Overflow));
        assert!(SemError::Overflow.to_string().contains("maximum"));
    }

    #[test]
    #[cfg(not(miri))] // maps a memfd segment
    fn zeroed_memory_is_an_empty_semaphore_and_timeouts_expire() {
        use shm_core::{Shared, SharedOptions};
        let shared = Shared::<Semaphore>::create_anonymous(&SharedOptions::new(), |_| Ok(()))
            .expect("anonymous segment");
        let s = shared.get();
        assert_eq!(s.value(), 0);
        let d = Duration::from_millis(30);
        let start = Instant::now();
        assert!(!s.wait_timeout(d));
        assert!(start.elapsed() >= d);
        assert!(!s.wait_deadline(Instant::now() - Duration::from_millis(1)));
        assert_eq!(s.waiters(), 0);
    }

    #[test]
    fn threads_hand_tokens_through() {
        const N: u32 = 20_000;
        let s = Arc::new(Semaphore::new(0));
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let mut got = 0;
                    while s.wait_timeout(Duration::from_millis(500)) {
                        got += 1;
                    }
                    got
                })
            })
            .collect();
        for _ in 0..N {
            s.post().unwrap();
        }
        let total: u32 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(total, N);
        assert_eq!(s.value(), 0);
        assert_eq!(s.waiters(), 0);
    }
}

/// `EINTR`: a signal handler interrupts the futex wait again and again; the
/// wait neither returns early nor loses its absolute deadline.
#[cfg(all(test, not(shm_loom), not(miri)))]
#[allow(unsafe_code)]
mod eintr_tests {
    use super::*;
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    static HANDLED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_signal(_: libc::c_int) {
        HANDLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Installs a SIGUSR1 handler without `SA_RESTART`, so that a futex
    /// wait in the signalled thread returns `EINTR`.
    fn install() {
        // SAFETY: `sa` is fully initialized (zeroed, then the handler and
        // an empty mask); the handler only touches an atomic, which is
        // async-signal-safe; SIGUSR1 is used by no other test.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
    }

    /// Runs `body` in a thread while this one sends it SIGUSR1 every
    /// millisecond, `post_after` ms in (if any) posting once.
    fn bombard<R: Send + 'static>(
        s: Arc<Semaphore>,
        post_after: Option<Duration>,
        body: impl FnOnce(&Semaphore) -> R + Send + 'static,
    ) -> R {
        install();
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let s2 = Arc::clone(&s);
        let t = std::thread::spawn(move || {
            let r = body(&s2);
            d.store(true, std::sync::atomic::Ordering::Release);
            r
        });
        let pt = t.as_pthread_t();
        let start = Instant::now();
        let mut posted = false;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            // SAFETY: `pt` names a thread that has not been joined yet (we
            // join it below, after `done`), so it is valid; SIGUSR1 has a
            // handler installed.
            unsafe { libc::pthread_kill(pt, libc::SIGUSR1) };
            if let Some(after) = post_after {
                if !posted && start.elapsed() >= after {
                    s.post().unwrap();
                    posted = true;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        t.join().unwrap()
    }

    #[test]
    fn interrupted_timed_wait_keeps_its_deadline() {
        let before = HANDLED.load(std::sync::atomic::Ordering::Relaxed);
        let d = Duration::from_millis(300);
        let (got, elapsed) = bombard(Arc::new(Semaphore::new(0)), None, move |s| {
            let start = Instant::now();
            (s.wait_timeout(d), start.elapsed())
        });
        assert!(!got);
        assert!(elapsed >= d, "{elapsed:?}");
        // The signals really arrived (and so interrupted the futex wait).
        assert!(HANDLED.load(std::sync::atomic::Ordering::Relaxed) > before + 10);
    }

    #[test]
    fn interrupted_wait_still_gets_the_token() {
        let s = Arc::new(Semaphore::new(0));
        bombard(Arc::clone(&s), Some(Duration::from_millis(100)), |s| {
            s.wait()
        });
        assert_eq!(s.value(), 0);
        assert_eq!(s.waiters(), 0);
    }
}

#[cfg(all(test, shm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn loom_post_wakes_a_blocked_waiter() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(0));
            let s2 = Arc::clone(&s);
            let t = thread::spawn(move || s2.wait());
            s.post().unwrap();
            t.join().unwrap();
            assert_eq!(s.value(), 0);
            assert_eq!(s.waiters(), 0);
        });
    }

    #[test]
    fn loom_two_waiters_two_posts_no_lost_wakeup() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(0));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    thread::spawn(move || s.wait())
                })
                .collect();
            let s2 = Arc::clone(&s);
            let poster = thread::spawn(move || s2.post().unwrap());
            s.post().unwrap();
            poster.join().unwrap();
            for w in waiters {
                w.join().unwrap();
            }
            assert_eq!(s.value(), 0);
        });
    }

    #[test]
    fn loom_try_wait_races_a_sleeper() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(0));
            let s1 = Arc::clone(&s);
            let sleeper = thread::spawn(move || s1.wait());
            let s2 = Arc::clone(&s);
            let poster = thread::spawn(move || {
                s2.post().unwrap();
                s2.post().unwrap();
            });
            let stolen = s.try_wait();
            poster.join().unwrap();
            sleeper.join().unwrap();
            // Two tokens: the sleeper took one, the thief at most one.
            assert_eq!(s.value(), if stolen { 0 } else { 1 });
        });
    }

    #[test]
    fn loom_timed_wait_either_takes_or_leaves_the_token() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(0));
            let s1 = Arc::clone(&s);
            let waiter = thread::spawn(move || s1.wait_timeout(Duration::from_millis(1)));
            s.post().unwrap();
            let taken = waiter.join().unwrap();
            assert_eq!(s.value(), if taken { 0 } else { 1 });
            assert_eq!(s.waiters(), 0);
        });
    }
}
