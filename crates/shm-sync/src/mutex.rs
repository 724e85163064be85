//! A robust, process-shared mutex that owns the data it guards.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use shm_core::ShmSafe;

use crate::shim::real::UnsafeCell;
use crate::sys::{self, pthread::E_UNINIT, pthread::RawMutex};

/// A mutual-exclusion lock over a `T`, living in a segment and used from
/// every process that maps it.
///
/// Underneath is a `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED`,
/// `PTHREAD_MUTEX_ROBUST` and `PTHREAD_MUTEX_ERRORCHECK`, initialized in
/// place by the creator ([`Mutex::init`]); openers never initialize it.
/// Zeroed memory reads as not initialized ([`LockError::Uninitialized`]),
/// never as a usable lock.
///
/// # Owner death
///
/// When a process (or thread) dies holding the lock, the kernel marks the
/// lock word and the next locker gets [`LockError::OwnerDied`] carrying the
/// guard: the lock *is* held, and `T` may be half-updated. Repair `T`, then
/// call [`MutexGuard::make_consistent`]. If the guard is dropped without
/// that, the mutex becomes not recoverable for good: every later `lock`
/// returns [`LockError::NotRecoverable`] at once (it never hangs), and the
/// segment has to be rebuilt.
///
/// # Layout
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 40 | `pthread_mutex_t` |
/// | 40 | 4 | init state: 0 zeroed, `"INIT"` initializing, `"RDY!"` ready |
/// | 44 | 4 | reserved |
/// | 48 | `size_of::<T>()` | the data (aligned for `T`) |
///
/// The lock word is glibc's, inside `pthread_mutex_t` (owner TID,
/// `FUTEX_WAITERS`, `FUTEX_OWNER_DIED`): its state machine is the kernel's
/// robust-futex protocol, see `Documentation/locking/robust-futex-ABI.rst`
/// and docs/sync.md.
///
/// # Trust
///
/// Only for processes that trust each other: glibc follows pointers stored
/// inside a robust `pthread_mutex_t`, so a process that scribbles over the
/// mutex can crash the holder (see docs/sync.md, "Untrusted memory"). With
/// untrusted writers use the futex types ([`crate::Semaphore`],
/// [`crate::FutexCondvar`]) or a lock that names its holder.
///
/// # Example
///
/// ```
/// use shm_core::{Shared, SharedOptions};
/// use shm_sync::Mutex;
///
/// let shared = Shared::<Mutex<u64>>::create_anonymous(&SharedOptions::new(), |m| {
///     Ok(m.init(0)?)
/// })?;
/// let mut n = shared.get().lock().map_err(|e| e.to_string())?;
/// *n += 1;
/// assert_eq!(*n, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct Mutex<T: ShmSafe> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

#[cfg(not(shm_loom))]
const _: () = {
    assert!(size_of::<Mutex<u64>>() == size_of::<libc::pthread_mutex_t>() + 8 + 8);
    assert!(align_of::<Mutex<u8>>() == align_of::<libc::pthread_mutex_t>());
    assert!(std::mem::offset_of!(Mutex<u8>, data) == 48);
};

// SAFETY: the pthread mutex is process-shared and meant to be used from many
// threads at once; `data` is only reached through a guard, i.e. while holding
// the lock, so at most one thread has `&mut T` at a time. `T: Send` because
// a guard in one thread hands out `&mut T` to a value another thread wrote.
#[allow(unsafe_code)]
unsafe impl<T: ShmSafe + Send> Sync for Mutex<T> {}

// SAFETY: `#[repr(C)]`; the pthread mutex is made for shared memory
// (PTHREAD_PROCESS_SHARED); the state word is atomic and any value other
// than READY is treated as uninitialized; `T: ShmSafe` accepts any bit
// pattern, including a torn update after owner death; the all-zero pattern
// is "not initialized"; it is `Sync` (above).
// The glibc bytes are not pointer-free: a robust mutex held by a thread is
// linked into that thread's robust list through its own `__list` field,
// which holds addresses in the *holder's* process. Only the holder's glibc
// (on lock and unlock) and the kernel (at the holder's death, with checked
// user accesses) follow them, so cooperating processes never dereference
// another process's address. A process that writes those bytes can make the
// holder's glibc follow a garbage pointer (abort, crash or a stray write in
// the holder): this type is sound only among processes that trust each
// other, as docs/sync.md ("Untrusted memory") and docs/reliability.md say;
// among others, use `OwnerLock`, which follows no pointer at all.
#[allow(unsafe_code)]
unsafe impl<T: ShmSafe + Send> ShmSafe for Mutex<T> {
    const TYPE_ID: u64 =
        shm_core::combine_type_ids(shm_core::type_id("shm_sync::Mutex/v1"), T::TYPE_ID);
}

// SAFETY: the pthread bytes and the data sit in `UnsafeCell`s, the init
// word and the padding are atomics; the data is touched only under the lock.
#[allow(unsafe_code)]
unsafe impl<T: ShmSafe + Send> shm_core::ShmShared for Mutex<T> {}

/// Why [`Mutex::lock`] (or a condvar wait) did not give a plain guard.
pub enum LockError<'a, T: ShmSafe> {
    /// The previous holder died holding the lock. The lock is held now, by
    /// this guard; repair the data and call
    /// [`MutexGuard::make_consistent`], or the mutex becomes not
    /// recoverable when the guard drops.
    OwnerDied(MutexGuard<'a, T>),
    /// A holder died and the next one unlocked without repairing: the mutex
    /// can never be locked again (`ENOTRECOVERABLE`).
    NotRecoverable,
    /// The mutex (or condvar) was never initialized: its memory reads as
    /// zeroed (or garbage).
    Uninitialized,
    /// Any other error from the pthread call (`EDEADLK`: this thread already
    /// holds it; `EAGAIN`, ...).
    Os(io::Error),
}

/// Why [`Mutex::try_lock`] or [`Mutex::lock_timeout`] did not give a plain
/// guard.
pub enum TryLockError<'a, T: ShmSafe> {
    /// `try_lock`: someone holds the lock.
    WouldBlock,
    /// `lock_timeout`: the timeout passed.
    TimedOut,
    /// As [`LockError::OwnerDied`].
    OwnerDied(MutexGuard<'a, T>),
    /// As [`LockError::NotRecoverable`].
    NotRecoverable,
    /// As [`LockError::Uninitialized`].
    Uninitialized,
    /// As [`LockError::Os`].
    Os(io::Error),
}

/// Holds the lock of a [`Mutex`] and gives access to its data; unlocks on
/// drop. Not `Send`: a pthread mutex must be unlocked by the thread that
/// locked it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ShmSafe> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe> Mutex<T> {
    /// Initializes the zeroed mutex in place with `value`: for the creator,
    /// once, before anyone else uses it (typically inside the initializer
    /// of `shm_core::Shared::create`). Fails with `AlreadyExists` if the
    /// mutex is initialized or being initialized.
    #[doc(alias = "pthread_mutex_init")]
    pub fn init(&self, value: T) -> io::Result<()> {
        self.raw.init(|| self.write_data(value))
    }

    /// Whether the creator has initialized the mutex.
    pub fn is_initialized(&self) -> bool {
        self.raw.is_ready()
    }

    /// How long one sleep of [`Mutex::lock`] lasts before it tries again.
    ///
    /// glibc's robust mutex can lose a wake-up when a process dies at the
    /// wrong moment: an unlock wakes one sleeper, that sleeper is killed
    /// before it retakes the lock, and a newcomer takes the free lock
    /// without marking it contended, so nobody ever wakes the remaining
    /// sleepers (the sync chaos suite hit this within a few hundred rounds).
    /// `lock` therefore sleeps in slices of this length on
    /// `pthread_mutex_clocklock`: such a lost wake-up costs at most this
    /// long instead of a hang.
    pub const RECHECK: Duration = crate::RECHECK;

    /// Blocks until the lock is acquired (in [`Mutex::RECHECK`] slices; see
    /// there why).
    #[doc(alias = "pthread_mutex_lock")]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<'_, T>> {
        // A free mutex is taken without reading the clock.
        match self.raw.try_lock() {
            Err(libc::EBUSY) => {}
            r => return self.lock_result(r),
        }
        loop {
            let abstime = sys::time::monotonic_after(Self::RECHECK);
            match self.raw.lock_until(&abstime) {
                Err(libc::ETIMEDOUT) => continue,
                r => return self.lock_result(r),
            }
        }
    }

    /// Acquires the lock if nobody holds it. (Implemented with
    /// `pthread_mutex_clocklock` and a past deadline, because glibc's
    /// `pthread_mutex_trylock` mishandles a not-recoverable robust mutex;
    /// see docs/sync.md.)
    #[doc(alias = "pthread_mutex_trylock")]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<'_, T>> {
        self.raw.try_lock().map_or_else(
            |e| Err(self.try_error(e, libc::EBUSY)),
            |()| Ok(self.guard()),
        )
    }

    /// Blocks until the lock is acquired or `timeout` passes on
    /// `CLOCK_MONOTONIC` (`pthread_mutex_clocklock`): wall-clock jumps do
    /// not shorten or extend the wait.
    #[doc(alias = "pthread_mutex_clocklock")]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, TryLockError<'_, T>> {
        let abstime = sys::time::monotonic_after(timeout);
        self.raw.lock_until(&abstime).map_or_else(
            |e| Err(self.try_error(e, libc::ETIMEDOUT)),
            |()| Ok(self.guard()),
        )
    }

    pub(crate) fn raw(&self) -> &RawMutex {
        &self.raw
    }

    /// A guard for a lock this thread just acquired.
    pub(crate) fn guard(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// Maps the outcome of a blocking acquire (lock, condvar wait).
    pub(crate) fn lock_result(
        &self,
        r: Result<(), libc::c_int>,
    ) -> Result<MutexGuard<'_, T>, LockError<'_, T>> {
        match r {
            Ok(()) => Ok(self.guard()),
            Err(libc::EOWNERDEAD) => Err(LockError::OwnerDied(self.guard())),
            Err(libc::ENOTRECOVERABLE) => Err(LockError::NotRecoverable),
            Err(E_UNINIT) => Err(LockError::Uninitialized),
            Err(e) => Err(LockError::Os(io::Error::from_raw_os_error(e))),
        }
    }

    fn try_error(&self, e: libc::c_int, busy: libc::c_int) -> TryLockError<'_, T> {
        match e {
            libc::EBUSY if busy == libc::EBUSY => TryLockError::WouldBlock,
            libc::ETIMEDOUT => TryLockError::TimedOut,
            libc::EOWNERDEAD => TryLockError::OwnerDied(self.guard()),
            libc::ENOTRECOVERABLE => TryLockError::NotRecoverable,
            E_UNINIT => TryLockError::Uninitialized,
            e => TryLockError::Os(io::Error::from_raw_os_error(e)),
        }
    }

    #[allow(unsafe_code)]
    fn write_data(&self, value: T) {
        // SAFETY: called only from `init` while the state word is
        // INITIALIZING and owned by this call: nobody else reads or writes
        // the data (every access goes through a guard, and no guard can
        // exist before READY). `T` has no drop obligations worth keeping for
        // the zeroed bytes being overwritten.
        unsafe { self.data.get().write(value) }
    }
}

impl<T: ShmSafe> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("initialized", &self.is_initialized())
            .finish_non_exhaustive()
    }
}

impl<'a, T: ShmSafe> MutexGuard<'a, T> {
    /// Marks a mutex whose previous owner died as consistent again
    /// (`pthread_mutex_consistent`), after the data was repaired. `EINVAL`
    /// if the mutex was not in that state.
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn make_consistent(&self) -> io::Result<()> {
        #[allow(unsafe_code)]
        // SAFETY: a guard exists only while this thread holds the lock.
        let r = unsafe { self.mutex.raw.consistent() };
        r.map_err(io::Error::from_raw_os_error)
    }

    /// The mutex this guard holds.
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }

    /// Gives up the guard without unlocking: for a condvar wait that
    /// returned with the mutex not held (`ENOTRECOVERABLE`).
    pub(crate) fn forget(self) {
        std::mem::forget(self);
    }
}

impl<T: ShmSafe> Deref for MutexGuard<'_, T> {
    type Target = T;

    #[allow(unsafe_code)]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock, so no other
        // thread or process that follows the protocol touches the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ShmSafe> DerefMut for MutexGuard<'_, T> {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access
        // through this guard, and there is one guard per held lock.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ShmSafe> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: a guard exists only while this thread holds the lock, and
        // this is its only unlock.
        let r = unsafe { self.mutex.raw.unlock() };
        // Ignored: an errorcheck mutex fails an unlock only for a non-owner
        // (EPERM), and a guard is always the owner, unless another process
        // scribbled over the lock word. A drop has nobody to report to, and
        // panicking here could abort an unwinding thread.
        let _ = r;
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MutexGuard").field(&**self).finish()
    }
}

macro_rules! common_error_impls {
    ($name:ident, $($extra:pat => $msg:expr),*) => {
        impl<T: ShmSafe> fmt::Debug for $name<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $extra => f.write_str(stringify!($extra)), )*
                    $name::OwnerDied(_) => f.write_str("OwnerDied(..)"),
                    $name::NotRecoverable => f.write_str("NotRecoverable"),
                    $name::Uninitialized => f.write_str("Uninitialized"),
                    $name::Os(e) => f.debug_tuple("Os").field(e).finish(),
                }
            }
        }

        impl<T: ShmSafe> fmt::Display for $name<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $extra => f.write_str($msg), )*
                    $name::OwnerDied(_) => f.write_str(
                        "the previous holder of the mutex died holding it; the lock is held \
                         now: repair the data and call make_consistent",
                    ),
                    $name::NotRecoverable => f.write_str(
                        "the mutex is not recoverable: a holder died and the next one unlocked \
                         it without make_consistent; rebuild the segment",
                    ),
                    $name::Uninitialized => f.write_str(
                        "the mutex or condvar is not initialized (zeroed memory): only its \
                         creator initializes it",
                    ),
                    $name::Os(e) => write!(f, "mutex operation failed: {e}"),
                }
            }
        }

        impl<T: ShmSafe> std::error::Error for $name<'_, T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Os(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl<'a, T: ShmSafe> $name<'a, T> {
            /// The guard of an [`OwnerDied`](Self::OwnerDied) error, if this is one.
            pub fn into_owner_died(self) -> Option<MutexGuard<'a, T>> {
                match self {
                    $name::OwnerDied(g) => Some(g),
                    _ => None,
                }
            }
        }
    };
}

common_error_impls!(LockError,);
common_error_impls!(
    TryLockError,
    TryLockError::WouldBlock => "the mutex is held by someone else",
    TryLockError::TimedOut => "timed out waiting for the mutex"
);

impl<'a, T: ShmSafe> From<LockError<'a, T>> for TryLockError<'a, T> {
    fn from(e: LockError<'a, T>) -> Self {
        match e {
            LockError::OwnerDied(g) => TryLockError::OwnerDied(g),
            LockError::NotRecoverable => TryLockError::NotRecoverable,
            LockError::Uninitialized => TryLockError::Uninitialized,
            LockError::Os(e) => TryLockError::Os(e),
        }
    }
}

// Miri cannot run robust process-shared pthread mutexes or map segments.
#[cfg(all(test, not(shm_loom), not(miri)))]
mod tests {
    use super::*;
    use shm_core::{Shared, SharedOptions};
    use std::sync::Arc;

    fn new_mutex(v: u64) -> Shared<Mutex<u64>> {
        Shared::create_anonymous(&SharedOptions::new(), |m: &Mutex<u64>| Ok(m.init(v)?))
            .expect("anonymous segment")
    }

    #[test]
    fn zeroed_memory_is_uninitialized_and_init_runs_once() {
        // Zeroed and left so: the initializer does nothing.
        let s = Shared::<Mutex<u64>>::create_anonymous(&SharedOptions::new(), |_| Ok(())).unwrap();
        let m = s.get();
        assert!(!m.is_initialized());
        assert!(matches!(m.lock(), Err(LockError::Uninitialized)));
        assert!(matches!(m.try_lock(), Err(TryLockError::Uninitialized)));
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(1)),
            Err(TryLockError::Uninitialized)
        ));
        m.init(5).unwrap();
        let again = m.init(6).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(*m.lock().unwrap(), 5);
    }

    #[test]
    fn try_lock_and_timeout_see_a_held_lock() {
        let shared = Arc::new(new_mutex(1));
        let g = shared.get().lock().unwrap();
        // Same thread: errorcheck says EDEADLK instead of hanging.
        assert!(
            matches!(shared.get().lock(), Err(LockError::Os(e)) if e.raw_os_error() == Some(libc::EDEADLK))
        );
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            assert!(matches!(s.get().try_lock(), Err(TryLockError::WouldBlock)));
            let d = Duration::from_millis(30);
            let start = std::time::Instant::now();
            assert!(matches!(
                s.get().lock_timeout(d),
                Err(TryLockError::TimedOut)
            ));
            assert!(start.elapsed() >= d);
        })
        .join()
        .unwrap();
        drop(g);
        assert!(shared.get().try_lock().is_ok());
        assert!(shared.get().lock_timeout(Duration::from_millis(1)).is_ok());
    }

    #[test]
    fn threads_count_exactly() {
        let shared = Arc::new(new_mutex(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *s.get().lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*shared.get().lock().unwrap(), 40_000);
    }

    #[test]
    fn dead_thread_owner_is_reported_and_repair_works() {
        let shared = Arc::new(new_mutex(0));
        let s = Arc::clone(&shared);
        // A thread that exits holding the lock is an owner death too.
        std::thread::spawn(move || {
            let mut g = s.get().lock().unwrap();
            *g = 99;
            std::mem::forget(g);
        })
        .join()
        .unwrap();
        match shared.get().lock() {
            Err(LockError::OwnerDied(mut g)) => {
                assert_eq!(*g, 99);
                *g = 7;
                g.make_consistent().unwrap();
            }
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        let g = shared.get().lock().unwrap();
        assert_eq!(*g, 7);
        assert_eq!(
            g.make_consistent().unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn unrepaired_owner_death_is_not_recoverable() {
        let shared = Arc::new(new_mutex(0));
        let s = Arc::clone(&shared);
        std::thread::spawn(move || std::mem::forget(s.get().lock().unwrap()))
            .join()
            .unwrap();
        let e = shared.get().try_lock().unwrap_err();
        assert!(matches!(e, TryLockError::OwnerDied(_)));
        assert!(e.to_string().contains("make_consistent"));
        drop(e); // unlocks without repairing
        assert!(matches!(
            shared.get().lock(),
            Err(LockError::NotRecoverable)
        ));
        assert!(matches!(
            shared.get().try_lock(),
            Err(TryLockError::NotRecoverable)
        ));
        let r = shared.get().lock_timeout(Duration::from_millis(1));
        assert!(matches!(r, Err(TryLockError::NotRecoverable)), "{r:?}");
    }

    #[test]
    fn not_recoverable_never_hangs_other_lockers() {
        // With glibc's pthread_mutex_trylock, a try_lock here would leave the
        // lock word held and the other thread's timed lock would time out.
        let shared = Arc::new(new_mutex(0));
        let s = Arc::clone(&shared);
        std::thread::spawn(move || std::mem::forget(s.get().lock().unwrap()))
            .join()
            .unwrap();
        drop(shared.get().lock().unwrap_err());
        for _ in 0..3 {
            assert!(matches!(
                shared.get().try_lock(),
                Err(TryLockError::NotRecoverable)
            ));
        }
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let r = s.get().lock_timeout(Duration::from_secs(10));
            assert!(matches!(r, Err(TryLockError::NotRecoverable)), "{r:?}");
            assert!(matches!(s.get().lock(), Err(LockError::NotRecoverable)));
        })
        .join()
        .unwrap();
        let r = shared.get().lock_timeout(Duration::from_millis(1));
        assert!(matches!(r, Err(TryLockError::NotRecoverable)), "{r:?}");
    }

    #[test]
    fn two_mappings_of_one_segment_share_the_lock() {
        // Same segment mapped twice: the addresses differ, the lock is one.
        let id =
            shm_core::SegmentId::posix(&format!("/shmrs-test-sync-unit-{}", std::process::id()))
                .unwrap();
        let _ = shm_core::remove(&id);
        let a =
            Shared::<Mutex<u64>>::create(&id, &SharedOptions::new(), |m| Ok(m.init(3)?)).unwrap();
        let b = Shared::<Mutex<u64>>::open(&id, &SharedOptions::new()).unwrap();
        a.segment().remove().unwrap();
        assert_ne!(a.get() as *const _ as usize, b.get() as *const _ as usize);
        let g = a.get().lock().unwrap();
        let b = Arc::new(b);
        let b2 = Arc::clone(&b);
        std::thread::spawn(move || {
            assert!(matches!(b2.get().try_lock(), Err(TryLockError::WouldBlock)));
        })
        .join()
        .unwrap();
        drop(g);
        assert_eq!(*b.get().lock().unwrap(), 3);
    }
}
