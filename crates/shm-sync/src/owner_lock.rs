//! A futex lock whose holder is named in the segment, so that a dead
//! holder is found and the lock taken over.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use shm_core::ProcessId;

use crate::futex;
use crate::shim::{self, AtomicU32, AtomicU64, Ordering, Spin};

/// Set in the lock word while someone may be asleep on it.
const CONTENDED: u32 = 1 << 31;

/// A process-shared lock on a shared futex whose holder (PID and start
/// time) is named in the segment: a waiter that finds the holder dead takes
/// the lock over and is told so ([`Locked::TakenOver`]), so it can repair
/// what the holder may have left half done.
///
/// # Why not the robust pthread [`crate::Mutex`]
///
/// glibc keeps a robust mutex on a per-thread list linked *through the
/// mutex itself*, and follows those links on every lock and unlock. A
/// process that scribbles over the segment can make a peer's glibc follow a
/// garbage pointer or abort ("The futex facility returned an unexpected
/// error code"); shm-queue's hostile-bytes test showed exactly that. The
/// state of an `OwnerLock` is plain words that nothing ever follows: every
/// byte pattern is a lock that is free, held by a live process (waited
/// for, then reported as [`Stuck`] after the caller's patience), or held by
/// no live process (taken over). No pattern leads to a crash, undefined
/// behaviour or a wait that the caller's patience does not end.
///
/// The price: a dead holder is found by looking, not told by the kernel.
/// A waiter looks at the holder's liveness ([`ProcessId::is_alive`], which
/// reads `/proc/PID/stat`) once every [`OwnerLock::LIVENESS`] of waiting,
/// measured on the clock, however its sleeps end (a wake-up, a timeout, or
/// a signal handler interrupting the futex wait again and again), and once
/// more before giving up. So a dead holder costs its successors up to
/// `LIVENESS` (100 ms), and no recovery cost at all when nobody died.
///
/// # Identity
///
/// The lock word holds the holder's PID, the identity fields its PID and
/// start time, so a recycled PID is not mistaken for the dead holder. A
/// holder whose PID runs with another start time than recorded is judged
/// dead only when two looks a slice apart see the same word and identity
/// (the word and the identity are written in two steps, and one look may
/// fall between them). All processes that use one lock must share a PID
/// namespace (a [`shm_core::Shared`] segment refuses an opener from another
/// one). The lock belongs to the process, not the thread: a second thread
/// of the holder's process waits like anyone else, and a thread that locks
/// twice waits for itself until its patience runs out.
///
/// # The lock word
///
/// | value | meaning |
/// |---|---|
/// | `0` | free |
/// | `pid` | held by process `pid`, nobody sleeps |
/// | `pid \| CONTENDED` (bit 31) | held, and someone may sleep on the word |
///
/// Transitions: lock `0 → pid` (CAS, **Acquire**); a waiter sets
/// `CONTENDED` (CAS) before sleeping on the futex, and takes a free lock as
/// `pid | CONTENDED` (it cannot know whether others still sleep); unlock
/// swaps in `0` (CAS from its own value, **Release**) and wakes one sleeper
/// if `CONTENDED` was set; a waiter that finds the holder dead swaps the
/// dead holder's value for its own (CAS, **Acquire**). A woken waiter that
/// is killed before it takes the lock delays the others by at most one
/// `LIVENESS` slice, after which they find the word free.
///
/// # Layout
///
/// | offset | size | field | |
/// |---|---|---|---|
/// | 0 | 4 | `word` | the futex word, see the table above |
/// | 4 | 4 | `holder_pid` | the PID whose start time `holder_start` is (written after taking the lock; may lag behind `word` for a moment) |
/// | 8 | 8 | `holder_start` | the holder's start time, clock ticks since boot (0: unknown) |
///
/// All-zero memory is a free lock. Type id `shm_sync::OwnerLock/v1`: the
/// layout of the lock that shm-queue's format 1 used.
///
/// # Example
///
/// ```
/// use shm_core::{Shared, SharedOptions};
/// use shm_sync::{Locked, OwnerLock};
/// use std::time::Duration;
///
/// // Zeroed memory is a free lock: the creator has nothing to initialize.
/// let shared = Shared::<OwnerLock>::create_anonymous(&SharedOptions::new(), |_| Ok(()))?;
/// let lock = shared.get();
/// let guard = match lock.lock(Duration::from_secs(5))? {
///     Locked::Clean(guard) => guard,
///     // The previous holder died holding the lock: repair what it
///     // guards before going on.
///     Locked::TakenOver { guard, dead } => {
///         eprintln!("{dead} died holding the lock; repairing");
///         guard
///     }
/// };
/// assert_eq!(lock.holder().map(|h| h.pid), Some(std::process::id()));
/// assert!(lock.try_lock().is_none());
/// drop(guard); // unlocks
/// assert!(lock.try_lock().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A guard stays with the thread that locked (it is not `Send`):
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let lock = shm_sync::OwnerLock::new();
/// send(lock.try_lock());
/// ```
#[repr(C)]
pub struct OwnerLock {
    /// See "The lock word" above.
    word: AtomicU32,
    /// The PID whose start time `holder_start` is.
    holder_pid: AtomicU32,
    /// The start time of the holder named by `holder_pid`.
    holder_start: AtomicU64,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<OwnerLock>() == 16);
    assert!(align_of::<OwnerLock>() == 8);
};

// SAFETY: `#[repr(C)]` of three atomics: no pointers, every bit pattern is a
// valid state (free, held by a live process, or held by a dead one: see the
// type's docs), all mutation is atomic, and the all-zero pattern is a free
// lock. (Under `--cfg shm_loom` the atomics are loom's and the type is
// never placed in a segment.)
#[allow(unsafe_code)]
unsafe impl shm_core::ShmSafe for OwnerLock {
    const TYPE_ID: u64 = shm_core::type_id("shm_sync::OwnerLock/v1");
}

// SAFETY: every field is an atomic.
#[allow(unsafe_code)]
unsafe impl shm_core::ShmShared for OwnerLock {}

/// How a [`OwnerLock::lock`] got the lock.
#[must_use = "a lock taken over from a dead holder may guard half-updated data"]
#[derive(Debug)]
pub enum Locked<'a> {
    /// The lock was free, or released by a live holder.
    Clean(OwnerGuard<'a>),
    /// The holder died holding the lock, and it was taken over: what the
    /// lock guards may be half updated. Repair it before going on.
    TakenOver {
        /// The lock, now held by this process.
        guard: OwnerGuard<'a>,
        /// The dead holder, as the lock named it (start time 0 if its
        /// identity was not recorded yet when it died).
        dead: ProcessId,
    },
}

impl<'a> Locked<'a> {
    /// The guard, whichever way the lock was taken.
    pub fn into_guard(self) -> OwnerGuard<'a> {
        match self {
            Locked::Clean(guard) | Locked::TakenOver { guard, .. } => guard,
        }
    }

    /// The dead holder, if the lock was taken over.
    pub fn taken_over(&self) -> Option<ProcessId> {
        match self {
            Locked::Clean(_) => None,
            Locked::TakenOver { dead, .. } => Some(*dead),
        }
    }
}

/// A live process held the lock for longer than the caller's patience (or
/// it is stopped, or the lock word was overwritten with the PID of an
/// unrelated live process). Returned by [`OwnerLock::lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stuck {
    /// The holder, as the lock names it.
    pub holder: ProcessId,
    /// How long the caller was willing to wait.
    pub patience: Duration,
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the lock has been held by pid {} for over {:?} and that process is alive \
             (stopped, or holding the lock for too long), or the lock word was overwritten",
            self.holder.pid, self.patience
        )
    }
}

impl std::error::Error for Stuck {}

impl From<Stuck> for io::Error {
    fn from(e: Stuck) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Holds an [`OwnerLock`]; unlocks on drop.
///
/// Not `Send`: the lock belongs to the process that took it, and the guard
/// to the code that took it. Do not drop it in a child after `fork` (the
/// child would release its parent's lock): `mem::forget` it there.
#[must_use = "dropping the guard unlocks at once"]
pub struct OwnerGuard<'a> {
    lock: &'a OwnerLock,
    /// Our value in the lock word (without `CONTENDED`).
    pid: u32,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for OwnerGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerGuard")
            .field("pid", &self.pid)
            .finish()
    }
}

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        // Release only our own lock: if someone took it over (they judged
        // us dead, or the word was overwritten), the word is theirs now.
        let mut cur = self.lock.word.load(Ordering::Relaxed);
        while cur & !CONTENDED == self.pid {
            match self
                .lock
                .word
                .compare_exchange(cur, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if cur & CONTENDED != 0 {
                        futex::wake(&self.lock.word, 1);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }
}

impl Default for OwnerLock {
    fn default() -> Self {
        Self::new()
    }
}

impl OwnerLock {
    /// How often, at least, a waiter looks at whether the holder still
    /// lives.
    pub const LIVENESS: Duration = crate::RECHECK;

    /// A free lock outside any segment (for one process, or for tests).
    pub fn new() -> Self {
        OwnerLock {
            word: AtomicU32::new(0),
            holder_pid: AtomicU32::new(0),
            holder_start: AtomicU64::new(0),
        }
    }

    /// Makes the lock free; for the creator, before anyone else uses it
    /// (zeroed memory is already a free lock).
    pub fn init(&self) {
        self.holder_start.store(0, Ordering::Relaxed);
        self.holder_pid.store(0, Ordering::Relaxed);
        self.word.store(0, Ordering::Release);
    }

    /// Takes the lock if it is free, without waiting (and without looking
    /// for a dead holder: [`OwnerLock::lock`] with a zero patience does,
    /// once).
    pub fn try_lock(&self) -> Option<OwnerGuard<'_>> {
        let me = me();
        self.word
            .compare_exchange(0, me.pid & !CONTENDED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| self.acquired(me))
    }

    /// Takes the lock, waiting while a live process holds it, for at most
    /// `patience` (`Duration::MAX`: no limit).
    ///
    /// A holder found dead is replaced: the result is then
    /// [`Locked::TakenOver`], and the caller must repair what the lock
    /// guards. A waiter looks at the holder's liveness once per
    /// [`OwnerLock::LIVENESS`] of waiting and once more before it gives up
    /// with [`Stuck`], so with a zero patience a held lock is looked at
    /// once: taken over if its holder is dead, else `Stuck`.
    pub fn lock(&self, patience: Duration) -> Result<Locked<'_>, Stuck> {
        let me = me();
        self.lock_as(me, patience, |p| p == me || p.is_alive())
    }

    /// The holder now, if the lock is held (a snapshot, for stats and
    /// tools; start time 0 if not recorded yet).
    pub fn holder(&self) -> Option<ProcessId> {
        match self.word.load(Ordering::Relaxed) {
            0 => None,
            w => Some(self.identity(w)),
        }
    }

    /// The holder named by a lock word, with its start time if recorded
    /// (0 if the identity fields name someone else: not written yet).
    fn identity(&self, word: u32) -> ProcessId {
        let pid = word & !CONTENDED;
        // Acquire on the pid pairs with the Release in `acquired`: seeing
        // the holder's pid, we see the start time it wrote before.
        let start = if self.holder_pid.load(Ordering::Acquire) == pid {
            self.holder_start.load(Ordering::Relaxed)
        } else {
            0
        };
        ProcessId { pid, start }
    }

    fn acquired(&self, me: ProcessId) -> OwnerGuard<'_> {
        self.holder_start.store(me.start, Ordering::Relaxed);
        self.holder_pid.store(me.pid, Ordering::Release);
        OwnerGuard {
            lock: self,
            pid: me.pid & !CONTENDED,
            _not_send: PhantomData,
        }
    }

    /// [`OwnerLock::lock`] for the process `me`, with `alive` saying
    /// whether a holder still runs.
    fn lock_as(
        &self,
        me: ProcessId,
        patience: Duration,
        alive: impl Fn(ProcessId) -> bool,
    ) -> Result<Locked<'_>, Stuck> {
        let mine = me.pid & !CONTENDED;
        let take = |from: u32, to: u32| {
            self.word
                .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        if take(0, mine) {
            return Ok(Locked::Clean(self.acquired(me)));
        }
        // Critical sections are short: spin a little, without yielding.
        let mut spin = Spin::new();
        while spin.pause() {
            if self.word.load(Ordering::Relaxed) == 0 && take(0, mine) {
                return Ok(Locked::Clean(self.acquired(me)));
            }
        }
        let start = Instant::now();
        let give_up = start.checked_add(patience);
        // The next liveness look: decided by the clock, not by how the
        // sleeps end, so that a stream of signals (`EINTR`) or wake-ups
        // cannot postpone it. (Under loom the clock never passes: no look.)
        let mut next_look = start + Self::LIVENESS;
        // A holder whose PID runs with another start time than recorded is
        // taken for dead only if two looks in a row see the same word and
        // identity: one look may catch the word and the identity between
        // the two steps of `acquired`.
        let mut suspect: Option<(u32, ProcessId)> = None;
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Others may still sleep: keep the bit so our unlock wakes.
                if take(0, mine | CONTENDED) {
                    return Ok(Locked::Clean(self.acquired(me)));
                }
                continue;
            }
            let out_of_patience = give_up.is_some_and(shim::passed);
            if out_of_patience || shim::passed(next_look) {
                next_look = Instant::now() + Self::LIVENESS;
                let holder = self.identity(w);
                let dead = if alive(holder) {
                    false
                } else if holder.start == 0 || !alive(ProcessId { start: 0, ..holder }) {
                    // No such process at all.
                    true
                } else {
                    // The PID runs, the start time differs: a recycled PID,
                    // or a torn look at the identity.
                    let seen_before = suspect == Some((w, holder));
                    suspect = Some((w, holder));
                    seen_before
                };
                if dead {
                    if take(w, mine | CONTENDED) {
                        let guard = self.acquired(me);
                        return Ok(Locked::TakenOver {
                            guard,
                            dead: holder,
                        });
                    }
                    continue;
                }
                if out_of_patience {
                    return Err(Stuck { holder, patience });
                }
            }
            if w & CONTENDED == 0
                && self
                    .word
                    .compare_exchange(w, w | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // Sleep until the next look at the latest; whatever ends the
            // sleep, the loop looks at the word and the clock again.
            let until =
                shim::slice_end(give_up, next_look.saturating_duration_since(Instant::now()));
            futex::wait(&self.word, w | CONTENDED, until);
        }
    }

    /// Test and tool support: writes a holder into the words as a process
    /// would that took the lock and then died (`pid` in the word, `pid`
    /// and `start` in the identity fields).
    #[cfg(all(test, not(shm_loom)))]
    fn forge_holder(&self, pid: u32, start: u64) {
        self.holder_start.store(start, Ordering::Relaxed);
        self.holder_pid.store(pid, Ordering::Release);
        self.word.store(pid, Ordering::Release);
    }
}

impl fmt::Debug for OwnerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load(Ordering::Relaxed);
        f.debug_struct("OwnerLock")
            .field("holder", &self.holder())
            .field("contended", &(w & CONTENDED != 0))
            .finish()
    }
}

/// This process, read from `/proc` once per process (and again in a child
/// after `fork`, whose PID differs).
fn me() -> ProcessId {
    use crate::shim::real;
    static PID: real::AtomicU32 = real::AtomicU32::new(0);
    static START: real::AtomicU64 = real::AtomicU64::new(0);
    let pid = std::process::id();
    // Acquire pairs with the Release below: the start time stored before
    // the PID is seen with it.
    if PID.load(Ordering::Acquire) == pid {
        return ProcessId {
            pid,
            start: START.load(Ordering::Relaxed),
        };
    }
    let me = ProcessId::current();
    START.store(me.start, Ordering::Relaxed);
    PID.store(me.pid, Ordering::Release);
    me
}

#[cfg(all(test, not(shm_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A PID no process has (above the kernel's largest `pid_max`, 2²²).
    const NO_SUCH_PID: u32 = 0x3fff_0001;
    /// Watchdog for waits that must end (never a timing assertion).
    const PATIENCE: Duration = Duration::from_secs(60);

    fn clean(l: Result<Locked<'_>, Stuck>) -> OwnerGuard<'_> {
        match l {
            Ok(Locked::Clean(g)) => g,
            other => panic!("expected a clean lock, got {other:?}"),
        }
    }

    #[test]
    fn locks_unlocks_and_names_its_holder() {
        let l = OwnerLock::new();
        assert_eq!(l.holder(), None);
        let g = clean(l.lock(PATIENCE));
        assert_eq!(l.holder(), Some(ProcessId::current()));
        assert!(l.try_lock().is_none());
        drop(g);
        assert_eq!(l.holder(), None);
        let g = l.try_lock().expect("free");
        drop(g);
        assert!(format!("{l:?}").contains("holder: None"));
    }

    #[test]
    fn a_thread_holding_it_makes_others_wait_then_hands_it_on() {
        const EACH: u64 = 2_000;
        let l = Arc::new(OwnerLock::new());
        // A counter updated in two non-atomic steps under the lock.
        let n = Arc::new(crate::shim::real::AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, n) = (Arc::clone(&l), Arc::clone(&n));
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        let _g = clean(l.lock(PATIENCE));
                        let v = n.load(std::sync::atomic::Ordering::Relaxed);
                        std::hint::spin_loop();
                        n.store(v + 1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 4 * EACH);
        assert_eq!(l.holder(), None);

        // A long hold: the waiter sleeps, and is woken by the unlock.
        let g = clean(l.lock(PATIENCE));
        let l2 = Arc::clone(&l);
        let waiter = std::thread::spawn(move || drop(clean(l2.lock(PATIENCE))));
        std::thread::sleep(Duration::from_millis(250));
        drop(g);
        waiter.join().unwrap();
    }

    #[test]
    fn a_live_holder_makes_a_waiter_give_up_with_stuck() {
        let l = OwnerLock::new();
        let _g = clean(l.lock(PATIENCE));
        // The holder is this very process: alive.
        for patience in [Duration::ZERO, Duration::from_millis(150)] {
            let start = Instant::now();
            match l.lock(patience) {
                Err(e) => {
                    assert_eq!(e.holder.pid, std::process::id());
                    assert!(start.elapsed() >= patience);
                    assert!(e.to_string().contains("is alive"), "{e}");
                    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::TimedOut);
                }
                Ok(l) => panic!("took a lock held by a live process: {l:?}"),
            }
        }
    }

    #[test]
    fn a_dead_holder_is_taken_over() {
        let l = OwnerLock::new();
        l.forge_holder(NO_SUCH_PID, 12345);
        assert!(l.try_lock().is_none(), "try_lock does not look at liveness");
        let start = Instant::now();
        let locked = l.lock(PATIENCE).expect("taken over, not stuck");
        assert_eq!(
            locked.taken_over(),
            Some(ProcessId {
                pid: NO_SUCH_PID,
                start: 12345
            })
        );
        // Found at the first look, after one slice of waiting.
        assert!(start.elapsed() >= OwnerLock::LIVENESS);
        let g = locked.into_guard();
        assert_eq!(l.holder().map(|h| h.pid), Some(std::process::id()));
        drop(g);
        assert_eq!(l.holder(), None);

        // With zero patience: one look, at once.
        l.forge_holder(NO_SUCH_PID, 0);
        assert!(l.lock(Duration::ZERO).unwrap().taken_over().is_some());
    }

    #[test]
    fn a_recycled_pid_is_taken_over_after_two_looks() {
        // This process's PID with another start time: the PID runs, but
        // it is not the holder recorded. (Two ticks off: starts one tick
        // apart count as the same, `shm_core::process::same_start`.)
        let me = ProcessId::current();
        let l = OwnerLock::new();
        l.forge_holder(me.pid, me.start + 2);
        let start = Instant::now();
        let locked = l.lock_as(
            ProcessId {
                pid: 0x3fff_0002,
                start: 1,
            },
            PATIENCE,
            |p: ProcessId| p.is_alive(),
        );
        assert!(locked.expect("taken over").taken_over().is_some());
        assert!(start.elapsed() >= 2 * OwnerLock::LIVENESS);
    }

    #[test]
    fn every_byte_pattern_is_free_held_or_taken_over() {
        // A garbage word naming no live process, or only the flag: taken
        // over; the identity fields are never trusted beyond a compare.
        for word in [u32::MAX, CONTENDED, NO_SUCH_PID | CONTENDED, 0x7fff_ffff] {
            let l = OwnerLock::new();
            l.word.store(word, Ordering::Relaxed);
            l.holder_pid.store(u32::MAX, Ordering::Relaxed);
            l.holder_start.store(u64::MAX, Ordering::Relaxed);
            let locked = l.lock(Duration::ZERO).expect("taken over");
            assert!(locked.taken_over().is_some(), "word {word:#x}");
        }
    }
}

/// A dead holder is found by the clock, not by how the futex wait ends:
/// a waiter whose sleeps are interrupted by a signal every 20 ms (handler
/// installed without `SA_RESTART`, so each one ends the wait with `EINTR`)
/// still takes over.
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

    #[test]
    fn signals_every_20_ms_do_not_postpone_the_takeover() {
        // SAFETY: `sa` is fully initialized (zeroed, then the handler and
        // an empty mask); the handler only touches an atomic, which is
        // async-signal-safe; SIGUSR2 is used by no other test (the
        // semaphore's use SIGUSR1).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
        let l = Arc::new(OwnerLock::new());
        l.forge_holder(0x3fff_0003, 7);
        let done = Arc::new(AtomicBool::new(false));
        let (l2, d2) = (Arc::clone(&l), Arc::clone(&done));
        let t = std::thread::spawn(move || {
            let r = l2
                .lock(Duration::from_secs(60))
                .map(|l| l.taken_over().is_some());
            d2.store(true, std::sync::atomic::Ordering::Release);
            r
        });
        let pt = t.as_pthread_t();
        let before = HANDLED.load(std::sync::atomic::Ordering::Relaxed);
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            // SAFETY: `pt` names a thread that has not been joined yet (we
            // join it below, after `done`), so it is valid; SIGUSR2 has a
            // handler installed.
            unsafe { libc::pthread_kill(pt, libc::SIGUSR2) };
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(t.join().unwrap(), Ok(true));
        // The signals really arrived (every 20 ms for at least 100 ms).
        assert!(HANDLED.load(std::sync::atomic::Ordering::Relaxed) > before + 2);
    }
}

#[cfg(all(test, shm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two lockers of one process (the holder is alive, so no takeover):
    /// mutual exclusion (a read-then-write increment under the lock loses
    /// no update) and no lost wake-up (the unlock wakes a sleeper, or the
    /// model deadlocks).
    #[test]
    fn loom_owner_lock_excludes_and_wakes() {
        loom::model(|| {
            let me = ProcessId { pid: 42, start: 1 };
            let l = Arc::new(OwnerLock::new());
            let n = Arc::new(AtomicU32::new(0));
            let lockers: Vec<_> = (0..2)
                .map(|_| {
                    let (l, n) = (Arc::clone(&l), Arc::clone(&n));
                    thread::spawn(move || {
                        let locked = l.lock_as(me, Duration::MAX, |p| p == me);
                        let g = match locked {
                            Ok(Locked::Clean(g)) => g,
                            _ => panic!("a clean lock"),
                        };
                        let v = n.load(Ordering::Relaxed);
                        n.store(v + 1, Ordering::Relaxed);
                        drop(g);
                    })
                })
                .collect();
            for t in lockers {
                t.join().unwrap();
            }
            assert_eq!(n.load(Ordering::Relaxed), 2);
            assert_eq!(l.word.load(Ordering::Relaxed), 0);
        });
    }
}
