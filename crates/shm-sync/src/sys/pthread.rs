//! Process-shared, robust `pthread_mutex_t` and process-shared
//! `CLOCK_MONOTONIC` `pthread_cond_t`, initialized in place.
//!
//! Every wrapper returns the raw error number (`Err(libc::EOWNERDEAD)` and
//! so on): the typed layer above decides what each one means.
//!
//! [`RawMutex`] and [`RawCond`] pair the C object with an init state word, so
//! that the preconditions of the C calls ("initialized, not being
//! initialized") are checked here and the calls can be offered as safe
//! methods; only those that need the caller to hold the mutex stay `unsafe`.
//!
//! Those arguments hold among cooperating processes. One that stores
//! `READY` into a state word, or writes over the C objects, breaks them, and
//! glibc then follows whatever it finds (including the robust-list pointers
//! inside a held `pthread_mutex_t`); no check here can catch it. See the
//! `# Trust` section of [`crate::Mutex`].

use std::io;

use super::{cvt_errno, cvt_io};
use crate::shim::Ordering;
use crate::shim::real::{AtomicU32, UnsafeCell};

/// A `pthread_mutex_t` in place.
type CMutex = UnsafeCell<libc::pthread_mutex_t>;
/// A `pthread_cond_t` in place.
type CCond = UnsafeCell<libc::pthread_cond_t>;

/// Init state: all-zero memory, never initialized.
pub(crate) const UNINIT: u32 = 0;
/// Init state: the creator is running `pthread_*_init`.
pub(crate) const INITIALIZING: u32 = 0x494e_4954; // "INIT"
/// Init state: initialized, published with Release.
pub(crate) const READY: u32 = 0x5244_5921; // "RDY!"

/// The error number [`RawMutex`] and [`RawCond`] return for an object whose
/// state word is not [`READY`] (zeroed, being initialized, or garbage). No
/// pthread call returns it.
pub(crate) const E_UNINIT: libc::c_int = -1;

/// The init state word shared by [`RawMutex`] and [`RawCond`].
///
/// | value | state | transition |
/// |---|---|---|
/// | [`UNINIT`] (0) | zeroed segment | creator CASes to `INITIALIZING` (Acquire) |
/// | [`INITIALIZING`] | creator inside `pthread_*_init` | creator stores `READY` (**Release**), or back to `UNINIT` on failure |
/// | [`READY`] | usable | none: final |
/// | anything else | corrupted | none: treated as not initialized |
///
/// Users load it with **Acquire**: seeing `READY` they see the initialized
/// C object. A waiting futex is never placed on this word.
#[repr(C)]
struct InitWord(AtomicU32);

impl InitWord {
    fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }

    /// Runs `init` if this call wins `UNINIT -> INITIALIZING`.
    fn init_with(&self, init: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        if let Err(state) =
            self.0
                .compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire)
        {
            let what = if state == READY {
                "already initialized"
            } else if state == INITIALIZING {
                "being initialized by another thread"
            } else {
                "not zeroed memory (corrupted state word)"
            };
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "cannot initialize: the object is {what}; only the creator initializes, once"
                ),
            ));
        }
        match init() {
            Ok(()) => {
                self.0.store(READY, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.0.store(UNINIT, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// A process-shared robust errorcheck `pthread_mutex_t` and its init state.
///
/// # Layout
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 40 | `pthread_mutex_t` (glibc, x86_64/aarch64) |
/// | 40 | 4 | init state word (see [`InitWord`]) |
/// | 44 | 4 | reserved, 0 |
#[repr(C)]
pub(crate) struct RawMutex {
    mutex: CMutex,
    state: InitWord,
    /// Padding to 8 bytes, atomic so that every byte is interior-mutable
    /// (`ShmShared`).
    _reserved: AtomicU32,
}

const _: () = {
    assert!(size_of::<RawMutex>() == size_of::<libc::pthread_mutex_t>() + 8);
    assert!(align_of::<RawMutex>() == align_of::<libc::pthread_mutex_t>());
    assert!(align_of::<libc::pthread_mutex_t>() >= 4);
    assert!(size_of::<libc::pthread_mutex_t>().is_multiple_of(8));
};

impl RawMutex {
    /// Whether the creator finished [`RawMutex::init`].
    pub(crate) fn is_ready(&self) -> bool {
        self.state.is_ready()
    }

    /// Initializes the zeroed mutex in place, once; the state word keeps
    /// everyone else away from it meanwhile. `before` runs first, while
    /// nobody else can touch the mutex or what it guards.
    pub(crate) fn init(&self, before: impl FnOnce()) -> io::Result<()> {
        self.state.init_with(|| {
            before();
            // SAFETY: the state word is INITIALIZING, set by us: no other
            // thread or process uses the mutex until we publish READY
            // (nobody may hold or wait on it, all of them check READY first).
            unsafe { mutex_init(&self.mutex) }
        })
    }

    /// Acquires the mutex if it is free: `Err(EBUSY)` if it is held, or as
    /// [`RawMutex::lock_until`].
    ///
    /// This is `pthread_mutex_clocklock` with a deadline in the past, not
    /// `pthread_mutex_trylock`: on glibc 2.36, `pthread_mutex_trylock` of a
    /// robust mutex that is not recoverable returns `ENOTRECOVERABLE` but
    /// leaves the lock word holding the caller's TID (and the mutex on its
    /// robust list), so every later locker in other threads blocks for as
    /// long as the caller lives, and the caller's own next lock says
    /// `EDEADLK`. The unit test `not_recoverable_never_hangs_other_lockers`
    /// shows it. `pthread_mutex_lock` and `pthread_mutex_clocklock` release
    /// the word before returning `ENOTRECOVERABLE`. The price is a system
    /// call when the mutex is contended (the kernel returns `ETIMEDOUT` at
    /// once, and glibc has set `FUTEX_WAITERS`, so the holder's unlock makes
    /// one `FUTEX_WAKE`); a free mutex is still taken by one CAS in user
    /// space.
    pub(crate) fn try_lock(&self) -> Result<(), libc::c_int> {
        let past = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match self.lock_until(&past) {
            Err(libc::ETIMEDOUT) => Err(libc::EBUSY),
            r => r,
        }
    }

    /// [`mutex_clocklock`] until the absolute monotonic time, or
    /// `Err(E_UNINIT)`.
    pub(crate) fn lock_until(&self, abstime: &libc::timespec) -> Result<(), libc::c_int> {
        if !self.is_ready() {
            return Err(E_UNINIT);
        }
        // SAFETY: READY seen with Acquire: initialized, never re-initialized.
        unsafe { mutex_clocklock(&self.mutex, abstime) }
    }

    /// [`mutex_unlock`].
    ///
    /// # Safety
    ///
    /// - the calling thread holds the mutex (a `lock` of this `RawMutex`
    ///   succeeded or returned `EOWNERDEAD`, and it was not unlocked since).
    pub(crate) unsafe fn unlock(&self) -> Result<(), libc::c_int> {
        // SAFETY: holding it implies it is READY, so initialized; the caller
        // guarantees we hold it.
        unsafe { mutex_unlock(&self.mutex) }
    }

    /// [`mutex_consistent`].
    ///
    /// # Safety
    ///
    /// - the calling thread holds the mutex.
    pub(crate) unsafe fn consistent(&self) -> Result<(), libc::c_int> {
        // SAFETY: holding it implies it is initialized; the caller
        // guarantees we hold it.
        unsafe { mutex_consistent(&self.mutex) }
    }
}

/// A process-shared `CLOCK_MONOTONIC` `pthread_cond_t` and its init state.
///
/// # Layout
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 48 | `pthread_cond_t` (glibc) |
/// | 48 | 4 | init state word (see [`InitWord`]) |
/// | 52 | 4 | reserved, 0 |
#[repr(C)]
pub(crate) struct RawCond {
    cond: CCond,
    state: InitWord,
    /// Padding to 8 bytes, atomic so that every byte is interior-mutable
    /// (`ShmShared`).
    _reserved: AtomicU32,
}

const _: () = {
    assert!(size_of::<RawCond>() == size_of::<libc::pthread_cond_t>() + 8);
    assert!(align_of::<RawCond>() == align_of::<libc::pthread_cond_t>());
    assert!(size_of::<libc::pthread_cond_t>().is_multiple_of(8));
};

impl RawCond {
    /// Whether the creator finished [`RawCond::init`].
    pub(crate) fn is_ready(&self) -> bool {
        self.state.is_ready()
    }

    /// Initializes the zeroed condvar in place, once.
    pub(crate) fn init(&self) -> io::Result<()> {
        self.state.init_with(|| {
            // SAFETY: the state word is INITIALIZING, set by us: nobody uses
            // or waits on the condvar until we publish READY.
            unsafe { cond_init(&self.cond) }
        })
    }

    /// [`cond_timedwait`] until the absolute monotonic time, or
    /// `Err(E_UNINIT)` (mutex still held).
    ///
    /// # Safety
    ///
    /// - the calling thread holds `m`.
    pub(crate) unsafe fn wait_until(
        &self,
        m: &RawMutex,
        abstime: &libc::timespec,
    ) -> Result<(), libc::c_int> {
        if !self.is_ready() {
            return Err(E_UNINIT);
        }
        // SAFETY: the condvar is READY; `m` is held by us, so initialized.
        unsafe { cond_timedwait(&self.cond, &m.mutex, abstime) }
    }

    /// [`cond_signal`], or `Err(E_UNINIT)`.
    pub(crate) fn signal(&self) -> Result<(), libc::c_int> {
        if !self.is_ready() {
            return Err(E_UNINIT);
        }
        // SAFETY: READY seen with Acquire: initialized, never re-initialized.
        unsafe { cond_signal(&self.cond) }
    }

    /// [`cond_broadcast`], or `Err(E_UNINIT)`.
    pub(crate) fn broadcast(&self) -> Result<(), libc::c_int> {
        if !self.is_ready() {
            return Err(E_UNINIT);
        }
        // SAFETY: READY seen with Acquire: initialized, never re-initialized.
        unsafe { cond_broadcast(&self.cond) }
    }
}

unsafe extern "C" {
    /// `pthread_mutex_clocklock(3)`, glibc 2.30 and later; not bound by the
    /// libc crate for every target, so declared here.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clockid: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;

    /// `gnu_get_libc_version(3)`.
    fn gnu_get_libc_version() -> *const libc::c_char;
}

/// `pthread_mutexattr_init` + `settype(PTHREAD_MUTEX_ERRORCHECK)` +
/// `setpshared(PTHREAD_PROCESS_SHARED)` + `setrobust(PTHREAD_MUTEX_ROBUST)`,
/// then `pthread_mutex_init(m, &attr)`.
///
/// `ERRORCHECK` turns a relock by the owning thread into `EDEADLK` instead
/// of a silent deadlock, and an unlock by a non-owner into `EPERM`.
///
/// # Safety
///
/// - nobody (no thread, no process) uses `*m` during the call;
/// - `*m` is not an initialized mutex that someone holds or waits on.
///
/// # References
/// pthread_mutex_init(3), pthread_mutexattr_setrobust(3),
/// pthread_mutexattr_setpshared(3).
#[doc(alias = "pthread_mutex_init")]
unsafe fn mutex_init(m: &CMutex) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is writable storage for a `pthread_mutexattr_t`.
    cvt_io(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
    let a = attr.as_mut_ptr();
    // SAFETY: `a` was initialized just above; each setter only writes it.
    let set = unsafe {
        cvt_io(libc::pthread_mutexattr_settype(
            a,
            libc::PTHREAD_MUTEX_ERRORCHECK,
        ))
        .and_then(|()| {
            cvt_io(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))
        })
        .and_then(|()| {
            cvt_io(libc::pthread_mutexattr_setrobust(
                a,
                libc::PTHREAD_MUTEX_ROBUST,
            ))
        })
    };
    // SAFETY: `a` is initialized; the caller guarantees nobody uses `*m`.
    let init = set.and_then(|()| cvt_io(unsafe { libc::pthread_mutex_init(m.get(), a) }));
    // SAFETY: `a` is initialized and no longer needed (glibc copies the
    // attributes into the mutex).
    unsafe { libc::pthread_mutexattr_destroy(a) };
    init
}

/// `pthread_mutex_clocklock(m, CLOCK_MONOTONIC, abstime)`: `Ok`, or
/// `EOWNERDEAD` (locked, previous owner died), `ENOTRECOVERABLE`,
/// `EDEADLK`, ..., or `ETIMEDOUT` once the absolute monotonic time passes.
/// (`pthread_mutex_lock` is not used: see [`crate::Mutex::RECHECK`].)
///
/// # Safety
///
/// - `*m` was initialized by [`mutex_init`] and is not being initialized.
///
/// # References
/// pthread_mutex_clocklock(3) (glibc 2.30).
#[doc(alias = "pthread_mutex_clocklock")]
unsafe fn mutex_clocklock(m: &CMutex, abstime: &libc::timespec) -> Result<(), libc::c_int> {
    // SAFETY: the caller guarantees `*m` is an initialized mutex; `abstime`
    // is a valid normalized `timespec`.
    cvt_errno(unsafe { pthread_mutex_clocklock(m.get(), libc::CLOCK_MONOTONIC, abstime) })
}

/// `pthread_mutex_unlock(m)`. Unlocking a robust mutex whose owner died
/// without [`mutex_consistent`] makes it `ENOTRECOVERABLE` for good.
///
/// # Safety
///
/// - `*m` was initialized by [`mutex_init`];
/// - the calling thread holds it.
///
/// # References
/// pthread_mutex_unlock(3).
#[doc(alias = "pthread_mutex_unlock")]
unsafe fn mutex_unlock(m: &CMutex) -> Result<(), libc::c_int> {
    // SAFETY: the caller guarantees `*m` is initialized and held by us.
    cvt_errno(unsafe { libc::pthread_mutex_unlock(m.get()) })
}

/// `pthread_mutex_consistent(m)`: marks a robust mutex whose owner died as
/// consistent again; `EINVAL` if it was not in that state.
///
/// # Safety
///
/// - `*m` was initialized by [`mutex_init`];
/// - the calling thread holds it.
///
/// # References
/// pthread_mutex_consistent(3).
#[doc(alias = "pthread_mutex_consistent")]
unsafe fn mutex_consistent(m: &CMutex) -> Result<(), libc::c_int> {
    // SAFETY: the caller guarantees `*m` is initialized and held by us.
    cvt_errno(unsafe { libc::pthread_mutex_consistent(m.get()) })
}

/// `pthread_condattr_init` + `setpshared(PTHREAD_PROCESS_SHARED)` +
/// `setclock(CLOCK_MONOTONIC)`, then `pthread_cond_init(c, &attr)`.
///
/// # Safety
///
/// - nobody (no thread, no process) uses `*c` during the call, nor waits on
///   it.
///
/// # References
/// pthread_cond_init(3), pthread_condattr_setclock(3).
#[doc(alias = "pthread_cond_init")]
unsafe fn cond_init(c: &CCond) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_condattr_t>::uninit();
    // SAFETY: `attr` is writable storage for a `pthread_condattr_t`.
    cvt_io(unsafe { libc::pthread_condattr_init(attr.as_mut_ptr()) })?;
    let a = attr.as_mut_ptr();
    // SAFETY: `a` was initialized just above; each setter only writes it.
    let set = unsafe {
        cvt_io(libc::pthread_condattr_setpshared(
            a,
            libc::PTHREAD_PROCESS_SHARED,
        ))
        .and_then(|()| cvt_io(libc::pthread_condattr_setclock(a, libc::CLOCK_MONOTONIC)))
    };
    // SAFETY: `a` is initialized; the caller guarantees nobody uses `*c`.
    let init = set.and_then(|()| cvt_io(unsafe { libc::pthread_cond_init(c.get(), a) }));
    // SAFETY: `a` is initialized and no longer needed.
    unsafe { libc::pthread_condattr_destroy(a) };
    init
}

/// `pthread_cond_timedwait(c, m, abstime)` with `abstime` on the condvar's
/// clock, `CLOCK_MONOTONIC`: `Ok`, or `ETIMEDOUT` (mutex reacquired),
/// `EOWNERDEAD` (mutex reacquired, its previous owner died),
/// `ENOTRECOVERABLE` (mutex not held), ... Every wait is timed: the untimed
/// `pthread_cond_wait` is not used (see [`crate::Condvar::RECHECK`]).
///
/// # Safety
///
/// - `*c` was initialized by [`cond_init`], `*m` by [`mutex_init`];
/// - the calling thread holds `*m`.
///
/// # References
/// pthread_cond_timedwait(3).
#[doc(alias = "pthread_cond_timedwait")]
unsafe fn cond_timedwait(
    c: &CCond,
    m: &CMutex,
    abstime: &libc::timespec,
) -> Result<(), libc::c_int> {
    // SAFETY: the caller guarantees both are initialized and `*m` is held;
    // `abstime` is a valid normalized `timespec`.
    cvt_errno(unsafe { libc::pthread_cond_timedwait(c.get(), m.get(), abstime) })
}

/// `pthread_cond_signal(c)`.
///
/// # Safety
///
/// - `*c` was initialized by [`cond_init`].
///
/// # References
/// pthread_cond_signal(3).
#[doc(alias = "pthread_cond_signal")]
unsafe fn cond_signal(c: &CCond) -> Result<(), libc::c_int> {
    // SAFETY: the caller guarantees `*c` is initialized.
    cvt_errno(unsafe { libc::pthread_cond_signal(c.get()) })
}

/// `pthread_cond_broadcast(c)`.
///
/// # Safety
///
/// - `*c` was initialized by [`cond_init`].
///
/// # References
/// pthread_cond_broadcast(3).
#[doc(alias = "pthread_cond_broadcast")]
unsafe fn cond_broadcast(c: &CCond) -> Result<(), libc::c_int> {
    // SAFETY: the caller guarantees `*c` is initialized.
    cvt_errno(unsafe { libc::pthread_cond_broadcast(c.get()) })
}

/// `gnu_get_libc_version()`: the running glibc, e.g. `"2.36"`.
///
/// # References
/// gnu_get_libc_version(3).
#[doc(alias = "gnu_get_libc_version")]
pub(crate) fn glibc_version() -> String {
    // SAFETY: glibc returns a pointer to a static NUL-terminated string.
    let p = unsafe { gnu_get_libc_version() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: `p` is non-null and points to a static C string.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}
