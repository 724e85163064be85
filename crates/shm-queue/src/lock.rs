//! The queue's lock: a futex mutex whose holder is named in the segment, so
//! a dead holder is found and the lock taken over, and whose state is two
//! plain words that no byte pattern can turn into a crash.
//!
//! Why not the robust `pthread_mutex_t` of shm-sync: glibc keeps a robust
//! mutex on a per-thread list linked *through the mutex itself*, and follows
//! those links on every unlock. A process that scribbles over the segment
//! can make a peer's glibc follow a garbage pointer or abort ("The futex
//! facility returned an unexpected error code"); the hostile-bytes test
//! showed exactly that. Here nothing read from the segment is ever used as
//! a pointer.
//!
//! # The lock word
//!
//! | value | meaning |
//! |---|---|
//! | 0 | free |
//! | `pid` | held by process `pid`, nobody sleeps |
//! | `pid \| CONTENDED` | held, and someone may sleep on the word |
//!
//! Transitions: lock `0 → pid` (CAS, Acquire); a waiter sets `CONTENDED`
//! (CAS) before sleeping on the futex; unlock swaps in 0 (Release) and wakes
//! one sleeper if `CONTENDED` was set; a waiter that finds the holder dead
//! swaps the dead holder's value for its own (CAS, Acquire) and reports the
//! lock as taken over, so the caller repairs what the holder may have left
//! half done. The holder's start time is recorded next to the word, so a
//! recycled PID is not mistaken for the dead holder.
//!
//! Sleepers wake at least every [`crate::wait::LIVENESS`] to look for a dead
//! holder, and give up after the caller's patience with [`Stuck`].

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use shm_core::ProcessId;
use shm_sync::futex;

use crate::primitive::{AtomicU32, AtomicU64, Ordering};

/// Set in the lock word while someone may be asleep on it.
pub(crate) const CONTENDED: u32 = 1 << 31;

/// The lock as it lies in the segment.
#[repr(C)]
pub(crate) struct QueueLock {
    /// See the table in the module docs.
    word: AtomicU32,
    /// The PID whose start time `holder_start` is (written after taking the
    /// lock; may lag behind `word` for a moment).
    holder_pid: AtomicU32,
    /// Start time of the holder.
    holder_start: AtomicU64,
}

/// The holder did not let go within the caller's patience, and is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stuck {
    /// Who holds it.
    pub(crate) pid: u32,
}

/// Holds the lock; unlocks on drop. Not `Send`: the lock belongs to the
/// thread's process, and the guard to the code that took it.
pub(crate) struct LockGuard<'a> {
    lock: &'a QueueLock,
    /// Our value in the lock word (without `CONTENDED`).
    pid: u32,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Release only our own lock: if someone took it over (they judged
        // us dead, or the word was overwritten), the word is theirs now.
        let mut cur = self.lock.word.load(Ordering::Relaxed);
        while cur & !CONTENDED == self.pid {
            match self
                .lock
                .word
                .compare_exchange_weak(cur, 0, Ordering::Release, Ordering::Relaxed)
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

impl QueueLock {
    /// A free lock (all zeros, as in a fresh segment).
    #[cfg(shm_loom)]
    pub(crate) fn new() -> Self {
        QueueLock {
            word: AtomicU32::new(0),
            holder_pid: AtomicU32::new(0),
            holder_start: AtomicU64::new(0),
        }
    }

    /// The holder named by a lock word, with its start time if recorded
    /// (0 if the identity fields name someone else: not written yet).
    fn holder(&self, word: u32) -> ProcessId {
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

    fn acquired(&self, me: ProcessId) -> LockGuard<'_> {
        self.holder_start.store(me.start, Ordering::Relaxed);
        self.holder_pid.store(me.pid, Ordering::Release);
        LockGuard {
            lock: self,
            pid: me.pid & !CONTENDED,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock for `me`. `Ok((guard, true))` means the previous
    /// holder died holding it: the caller must repair before going on.
    /// `alive` says whether a holder still runs.
    pub(crate) fn lock(
        &self,
        me: ProcessId,
        patience: Duration,
        alive: impl Fn(ProcessId) -> bool,
    ) -> Result<(LockGuard<'_>, bool), Stuck> {
        let me_word = me.pid & !CONTENDED;
        if self
            .word
            .compare_exchange(0, me_word, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok((self.acquired(me), false));
        }
        #[cfg(not(shm_loom))]
        {
            // Critical sections are short: spin a little (about 60 pauses
            // in all, `SpinWait`'s backoff), without yielding (a yield on a
            // busy machine costs a time slice).
            let mut spin = parking_lot_core::SpinWait::new();
            for _ in 0..6 {
                spin.spin_no_yield();
                if self.word.load(Ordering::Relaxed) == 0
                    && self
                        .word
                        .compare_exchange(0, me_word, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok((self.acquired(me), false));
                }
            }
        }
        let give_up = Instant::now().checked_add(patience);
        let mut check_holder = cfg!(shm_loom);
        // A holder whose PID runs but with another start time than recorded
        // is taken for dead only if two liveness checks in a row see the
        // same word and identity: the word and the identity fields cannot
        // change in one step, so one look may catch them between.
        let mut suspect: Option<(u32, ProcessId)> = None;
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Others may still sleep: keep the bit so our unlock wakes.
                if self
                    .word
                    .compare_exchange(0, me_word | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok((self.acquired(me), false));
                }
                continue;
            }
            if check_holder {
                let holder = self.holder(w);
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
                    if self
                        .word
                        .compare_exchange(
                            w,
                            me_word | CONTENDED,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        return Ok((self.acquired(me), true));
                    }
                    continue;
                }
                if give_up.is_some_and(|g| Instant::now() >= g) {
                    return Err(Stuck { pid: holder.pid });
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
            let slice = if cfg!(shm_loom) {
                None
            } else {
                let s = Instant::now() + crate::wait::LIVENESS;
                Some(give_up.map_or(s, |g| g.min(s)))
            };
            check_holder = matches!(
                futex::wait(&self.word, w | CONTENDED, slice),
                futex::WaitResult::TimedOut
            ) || cfg!(shm_loom);
        }
    }
}
