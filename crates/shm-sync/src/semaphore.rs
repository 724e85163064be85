//! A counting semaphore on a [`WaitWord`].

use std::fmt;
use std::time::{Duration, Instant};

use crate::shim::{self, Spin};
use crate::wait_word::{Slept, WaitWord};

/// A counting semaphore that lives in a segment and works across processes.
///
/// `post` adds one; `wait` takes one, sleeping while the count is zero.
/// The count is the value of a [`WaitWord`], so the semaphore's wake-up
/// handshake is the `WaitWord`'s, whose ordering argument is written once
/// (see "Why no wake-up is lost" there) and model-checked. `post` makes no
/// system call when nobody sleeps. A waiter first spins briefly
/// (`parking_lot_core::SpinWait`), then sleeps in the kernel, costing no
/// CPU; timed waits use an absolute `CLOCK_MONOTONIC` deadline, so spurious
/// wake-ups and `EINTR` neither shorten nor extend them.
///
/// The all-zero bit pattern is a valid semaphore with count 0; the creator
/// sets another start value with [`Semaphore::init`].
///
/// # Wake all, not wake one
///
/// A `post` that finds sleepers wakes **all** of them: one takes the token,
/// the others find the count at 0 again and go back to sleep. That costs
/// extra wake-ups when many processes wait at once, and buys this: no
/// waiter can be stranded by another that was woken and then died before
/// it took its token. (The previous design, format v1, woke one sleeper;
/// if that process was killed between the wake-up and its
/// compare-and-swap, the token sat in the count while the others slept on
/// until their next [`Semaphore::RECHECK`].) A waiter still sleeps at most
/// `RECHECK` at a time and then looks at the count, which bounds the cost
/// of a poster killed between its increment and its wake-up.
///
/// # Layout
///
/// Format v2 (type id `shm_sync::Semaphore/v2`; v1 was a 4-byte count and
/// a 4-byte waiter count, aligned to 4).
///
/// | offset | size | field | |
/// |---|---|---|---|
/// | 0 | 8 | `word` | a [`WaitWord`]: `count << 1 \| sleepers` |
///
/// # Owner death
///
/// A semaphore has no owner: a process killed after `wait` returned simply
/// never posts its token back (as with any semaphore). One killed while
/// sleeping can leave the sleepers flag set, which only costs the next
/// `post` a needless `FUTEX_WAKE`; the count stays exact.
///
/// # Example
///
/// At most two workers at a time, counted in a segment (threads here; any
/// process that opens the segment by name takes part the same way).
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use shm_core::{SegmentId, Shared, SharedOptions};
/// use shm_sync::Semaphore;
///
/// let id = SegmentId::posix(&format!("/doc-sem-{}", std::process::id()))?;
/// let slots = Shared::<Semaphore>::create(&id, &SharedOptions::new(), |s| {
///     s.init(2);
///     Ok(())
/// })?;
/// let busy = AtomicU32::new(0);
/// std::thread::scope(|t| {
///     for _ in 0..4 {
///         t.spawn(|| {
///             // Another process: Shared::<Semaphore>::open(&id, ..).
///             assert!(slots.get().wait_timeout(Duration::from_secs(10)));
///             assert!(busy.fetch_add(1, Ordering::SeqCst) < 2);
///             std::thread::sleep(Duration::from_millis(5));
///             busy.fetch_sub(1, Ordering::SeqCst);
///             slots.get().post().unwrap();
///         });
///     }
/// });
/// assert_eq!(slots.get().value(), 2);
/// slots.segment().remove()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct Semaphore {
    /// The count, as the value of a [`WaitWord`] (the flag is the
    /// `WaitWord`'s own).
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `0` | empty: `wait` flags the word and sleeps on it |
    /// | `0 < n < u32::MAX` | `n` tokens: `try_wait` takes one by `transition(n, n-1)` |
    /// | `n >= u32::MAX` | full: `post` fails with [`SemError::Overflow`] (more than `u32::MAX` only in a corrupted segment; `try_wait` still counts down) |
    ///
    /// Transitions: `post` is `transition(n, n+1)` and `try_wait`
    /// `transition(n, n-1)`, compare-and-swaps with **AcqRel**: what the
    /// poster wrote before its post is visible to the waiter that takes its
    /// token. A waiter sleeps only with `WaitWord::sleep(0, ..)`, so the
    /// flag is set only while the count is 0, and the next `post` clears it
    /// and wakes every sleeper.
    word: WaitWord,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<Semaphore>() == 8);
    assert!(align_of::<Semaphore>() == 8);
};

// SAFETY: `#[repr(C)]` of one `WaitWord` (itself one `AtomicU64`): no
// pointers, every bit pattern is a valid state (any count, either flag), all
// mutation is atomic, and the all-zero pattern is a semaphore with count 0.
// (Under `--cfg shm_loom` the atomic is loom's and the type is never placed
// in a segment.)
#[allow(unsafe_code)]
unsafe impl shm_core::ShmSafe for Semaphore {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::Semaphore/v2");
}

// SAFETY: its only field is a `WaitWord`, whose only field is an atomic.
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

/// The largest count.
const MAX: u64 = u32::MAX as u64;

impl Semaphore {
    /// A semaphore outside any segment (for one process, or for tests).
    pub fn new(initial: u32) -> Self {
        Semaphore {
            word: WaitWord::new(u64::from(initial)),
        }
    }

    /// Sets the count; for the creator, before anyone else uses it.
    pub fn init(&self, initial: u32) {
        self.word.init(u64::from(initial));
    }

    /// Adds a token and wakes every sleeping waiter, if any (no system call
    /// when there is none). See "Wake all, not wake one" above.
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<(), SemError> {
        let mut c = self.word.load();
        loop {
            if c >= MAX {
                return Err(SemError::Overflow);
            }
            match self.word.transition(c, c + 1) {
                Ok(()) => return Ok(()),
                Err(now) => c = now,
            }
        }
    }

    /// Takes a token if one is available, without blocking.
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> bool {
        let mut c = self.word.load();
        while c != 0 {
            match self.word.transition(c, c - 1) {
                Ok(()) => return true,
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

    /// The count now (racy by nature: a snapshot for stats and tests;
    /// `u32::MAX` for a corrupted word holding more).
    pub fn value(&self) -> u32 {
        u32::try_from(self.word.load()).unwrap_or(u32::MAX)
    }

    /// 1 if a waiter has flagged the word as sleeping (or about to), else
    /// 0: a snapshot for stats and tests.
    ///
    /// Since format v2 this is a flag, not a count: several sleepers show
    /// as 1. A wait that returns without a token clears a flag left behind,
    /// so the value reads 0 once no wait is in progress, unless a waiter
    /// was killed while it slept.
    pub fn waiters(&self) -> u32 {
        u32::from(self.word.has_sleepers())
    }

    /// How long one sleep of a wait lasts at most before it looks at the
    /// count again. A `post` wakes every sleeper, but a poster killed
    /// between its increment and its `FUTEX_WAKE` wakes nobody: re-checking
    /// every slice turns that into a delay of at most this long instead of
    /// a wait until the next post.
    pub const RECHECK: Duration = crate::RECHECK;

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
        loop {
            if self.try_wait() {
                return true;
            }
            if deadline.is_some_and(shim::passed) {
                break;
            }
            let until = shim::slice_end(deadline, Self::RECHECK);
            match self.word.sleep(0, until, || false) {
                // The sleep ended at the caller's deadline, not at a slice.
                Slept::TimedOut if until == deadline => break,
                Slept::TimedOut | Slept::Changed | Slept::Woken => {}
            }
        }
        // A last look, then leave no flag behind for the next `post` to
        // wake needlessly (waking any other sleeper, which flags again).
        if self.try_wait() {
            return true;
        }
        if self.word.has_sleepers() {
            self.word.nudge();
        }
        false
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("sleepers", &self.word.has_sleepers())
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
    use crate::shim::real::{AtomicBool, AtomicUsize};
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::Arc;

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
            if let Some(after) = post_after
                && !posted
                && start.elapsed() >= after
            {
                s.post().unwrap();
                posted = true;
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

    /// A wait that times out leaves no sleepers flag behind (so `post`
    /// makes no needless system call), and the nudge it uses to clear it
    /// strands no other sleeper: the untimed waiter still gets the post.
    #[test]
    fn loom_timed_out_wait_leaves_no_flag_and_strands_nobody() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(0));
            assert!(!s.wait_timeout(Duration::from_millis(1)));
            assert_eq!(s.waiters(), 0);
            let s1 = Arc::clone(&s);
            let sleeper = thread::spawn(move || s1.wait());
            let taken = s.wait_timeout(Duration::from_millis(1));
            assert!(!taken, "nobody posted yet");
            s.post().unwrap();
            sleeper.join().unwrap();
            assert_eq!(s.value(), 0);
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
