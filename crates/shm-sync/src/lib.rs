//! Robust process-shared synchronization that lives inside a shared memory
//! segment: a [`Mutex<T>`] that survives its holder's death, a pthread
//! [`Condvar`], a futex-based [`FutexCondvar`], a counting [`Semaphore`], an
//! [`OwnerLock`] that names its holder, the [`WaitWord`] wake handshake, and
//! the shared [`futex`] wrappers they are built on.
//!
//! Everything here is `#[repr(C)]`, implements [`shm_core::ShmSafe`], has
//! all-zero memory as its "not initialized" state, and is initialized in
//! place by the segment's creator only (openers never re-initialize).
//! Timeouts are on `CLOCK_MONOTONIC`, never on the wall clock.
//!
//! | type | underneath | owner death | blocking waits |
//! |---|---|---|---|
//! | [`Mutex<T>`] | `pthread_mutex_t`, `PROCESS_SHARED`, `ROBUST` | [`LockError::OwnerDied`] carries the guard | `lock`, `lock_timeout` |
//! | [`Condvar`] | `pthread_cond_t`, `PROCESS_SHARED`, `CLOCK_MONOTONIC` | **not robust**: a waiter killed mid-wait can hang later notifiers (glibc 2.36, shown by the kill tests) | waits re-check at least every [`Condvar::RECHECK`] |
//! | [`FutexCondvar`] | notification counter in a [`WaitWord`] | a dead waiter or notifier harms nobody: use this one when processes may be killed | `wait`, `wait_timeout`, `wait_while`; sleeps re-check at least every [`FutexCondvar::RECHECK`] |
//! | [`Semaphore`] | count in a [`WaitWord`] | no owner; a killed waiter loses no token | `wait`, `wait_timeout`, `wait_deadline`; sleeps re-check at least every [`Semaphore::RECHECK`] |
//! | [`OwnerLock`] | futex lock word holding the holder's PID, plus its start time | [`Locked::TakenOver`] carries the guard; found by looking at the holder every [`OwnerLock::LIVENESS`] | `lock(patience)`, [`Stuck`] after it |
//! | [`WaitWord`] | a 63-bit state value + sleepers flag, shared futex | no owner: a dead sleeper leaves at most a flag, costing one needless wake | `sleep` until the value changes |
//!
//! The futex primitives share one wake handshake: [`Semaphore`] and
//! [`FutexCondvar`] are a value in a [`WaitWord`], so there is one
//! memory-ordering argument (in [`WaitWord`]'s docs, "Why no wake-up is
//! lost"), and the loom models check it on the code that ships.
//!
//! See docs/sync.md for the owner-death contract, the clock, and the
//! condvar caveats with the evidence from the kill tests.
//!
//! # The whole life of a mutex in a segment
//!
//! ```
//! use shm_core::{SegmentId, Shared, SharedOptions};
//! use shm_sync::{LockError, Mutex};
//!
//! let id = SegmentId::posix(&format!("/doc-sync-life-{}", std::process::id()))?;
//! // Create: only the creator initializes the mutex, in place, before the
//! // segment is published as ready.
//! let created = Shared::<Mutex<u64>>::create(&id, &SharedOptions::new(), |m| {
//!     Ok(m.init(41)?)
//! })?;
//! // A `LockError` borrows the mutex (it may carry the guard), so turn it
//! // into an owned error before `?` takes it out of this scope.
//! *created.get().lock().map_err(|e| e.to_string())? += 1;
//!
//! // Attach (another process would do exactly this): the header is
//! // validated, the mutex is used as it is, never re-initialized.
//! let opened = Shared::<Mutex<u64>>::open(&id, &SharedOptions::new())?;
//! match opened.get().lock() {
//!     Ok(n) => assert_eq!(*n, 42),
//!     // The previous holder died holding the lock: repair, then mark the
//!     // mutex consistent, or it becomes not recoverable.
//!     Err(LockError::OwnerDied(mut n)) => {
//!         *n = 0;
//!         n.make_consistent()?;
//!     }
//!     Err(e) => return Err(e.to_string().into()),
//! }
//!
//! // Detach, then remove: the creator owns the name.
//! drop(opened);
//! created.segment().remove()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod condvar;
pub mod futex;
mod futex_condvar;
mod mutex;
mod owner_lock;
mod semaphore;
#[doc(hidden)]
pub mod shim;
mod sys;
mod wait_word;

pub use condvar::Condvar;
pub use futex_condvar::FutexCondvar;
pub use mutex::{LockError, Mutex, MutexGuard, TryLockError};
pub use owner_lock::{Locked, OwnerGuard, OwnerLock, Stuck};
pub use semaphore::{SemError, Semaphore};
pub use wait_word::{MAX_WAIT_VALUE, Slept, WaitWord};

/// The longest any blocking call of this workspace sleeps before it looks
/// again on its own: at a count, a counter or a holder's liveness (a
/// crashed peer's missing wake-up, or a dead holder, costs at most this
/// long), and, in shm-queue, at the liveness of the peers it waits on.
/// Every type's `RECHECK` (and `OwnerLock::LIVENESS`) is this one value.
pub const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The version of the running glibc (`gnu_get_libc_version`), e.g. `"2.36"`:
/// whether the [`Condvar`] caveats apply depends on it.
pub fn glibc_version() -> String {
    sys::pthread::glibc_version()
}
