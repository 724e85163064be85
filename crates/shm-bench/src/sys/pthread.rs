//! A process-shared `pthread_mutex_t` and two `pthread_cond_t` placed at the
//! start of a segment: the synchronization a user writes by hand.
//!
//! # Layout
//!
//! | offset | contents                                              |
//! |--------|-------------------------------------------------------|
//! | 0      | `pthread_mutex_t`, `PTHREAD_PROCESS_SHARED`           |
//! | 64     | `pthread_cond_t` "not empty", shared, `CLOCK_MONOTONIC` |
//! | 128    | `pthread_cond_t` "not full", shared, `CLOCK_MONOTONIC`  |
//!
//! Deliberately plain: not robust (a holder that dies leaves the peer
//! blocked, which the parent's watchdog turns into a failure), and every
//! wait is a timed wait so that a lost wakeup (glibc bug 25847, present in
//! Debian 12's glibc 2.36) costs at most one timeout instead of a hang.

use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

use shm_core::Segment;

const MUTEX_OFF: usize = 0;
const NOT_EMPTY_OFF: usize = 64;
const NOT_FULL_OFF: usize = 128;
/// Bytes the three objects take at the start of the segment.
pub const SYNC_BYTES: usize = 192;

const _: () = assert!(size_of::<libc::pthread_mutex_t>() <= NOT_EMPTY_OFF);
const _: () = assert!(size_of::<libc::pthread_cond_t>() <= NOT_FULL_OFF - NOT_EMPTY_OFF);
const _: () = assert!(size_of::<libc::pthread_cond_t>() <= SYNC_BYTES - NOT_FULL_OFF);
const _: () = assert!(align_of::<libc::pthread_mutex_t>() <= 64);
const _: () = assert!(align_of::<libc::pthread_cond_t>() <= 64);

/// Which condition variable.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    /// Signalled by the producer after it adds a message.
    NotEmpty,
    /// Signalled by the consumer after it takes one.
    NotFull,
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(rc);
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// The three objects of a segment, attached in this process.
#[derive(Debug)]
pub struct PthreadSync<'a> {
    mutex: *mut libc::pthread_mutex_t,
    not_empty: *mut libc::pthread_cond_t,
    not_full: *mut libc::pthread_cond_t,
    _segment: PhantomData<&'a Segment>,
}

fn pointers(seg: &Segment) -> io::Result<PthreadSync<'_>> {
    let base = seg.ptr_at(0, SYNC_BYTES).map_err(io::Error::other)?;
    if !(base as usize).is_multiple_of(64) {
        return Err(io::Error::other("segment is not 64-byte aligned"));
    }
    Ok(PthreadSync {
        mutex: base.wrapping_add(MUTEX_OFF).cast(),
        not_empty: base.wrapping_add(NOT_EMPTY_OFF).cast(),
        not_full: base.wrapping_add(NOT_FULL_OFF).cast(),
        _segment: PhantomData,
    })
}

/// Initializes the mutex and both condition variables in place, process
/// shared, the condition variables on `CLOCK_MONOTONIC`.
///
/// # Safety
///
/// - No other thread or process uses the first [`SYNC_BYTES`] bytes of
///   `seg` until this returns (the creator calls it before it starts the
///   processes that attach).
/// - It is called once per segment.
pub unsafe fn init(seg: &Segment) -> io::Result<()> {
    let p = pointers(seg)?;
    let mut mattr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `mattr` is a local attribute object, initialized by the first
    // call before any other use; `p.mutex` points to 64 writable, aligned
    // bytes in the mapping (checked by `pointers`) that no one else touches
    // yet (caller's guarantee).
    unsafe {
        check(
            libc::pthread_mutexattr_init(mattr.as_mut_ptr()),
            "pthread_mutexattr_init",
        )?;
        check(
            libc::pthread_mutexattr_setpshared(mattr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED),
            "pthread_mutexattr_setpshared",
        )?;
        let rc = libc::pthread_mutex_init(p.mutex, mattr.as_ptr());
        libc::pthread_mutexattr_destroy(mattr.as_mut_ptr());
        check(rc, "pthread_mutex_init")?;
    }
    let mut cattr = MaybeUninit::<libc::pthread_condattr_t>::uninit();
    // SAFETY: as above, for the attribute object and the two condition
    // variables, each in its own 64-byte aligned range of the mapping.
    unsafe {
        check(
            libc::pthread_condattr_init(cattr.as_mut_ptr()),
            "pthread_condattr_init",
        )?;
        check(
            libc::pthread_condattr_setpshared(cattr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED),
            "pthread_condattr_setpshared",
        )?;
        check(
            libc::pthread_condattr_setclock(cattr.as_mut_ptr(), libc::CLOCK_MONOTONIC),
            "pthread_condattr_setclock",
        )?;
        let a = libc::pthread_cond_init(p.not_empty, cattr.as_ptr());
        let b = libc::pthread_cond_init(p.not_full, cattr.as_ptr());
        libc::pthread_condattr_destroy(cattr.as_mut_ptr());
        check(a, "pthread_cond_init")?;
        check(b, "pthread_cond_init")?;
    }
    Ok(())
}

impl<'a> PthreadSync<'a> {
    /// Attaches to the objects [`init`] placed in `seg`.
    ///
    /// # Safety
    ///
    /// - [`init`] completed on this segment before this process started
    ///   using it (the creator initializes before spawning the peers).
    /// - Nothing but [`PthreadSync`] writes the first [`SYNC_BYTES`] bytes
    ///   of the segment while it is attached.
    pub unsafe fn attach(seg: &'a Segment) -> io::Result<Self> {
        pointers(seg)
    }

    /// `pthread_mutex_lock`; the guard unlocks on drop.
    pub fn lock(&self) -> io::Result<Locked<'_, 'a>> {
        // SAFETY: the mutex was initialized process-shared (`attach`'s
        // contract) and lives in a mapping borrowed for 'a.
        let rc = unsafe { libc::pthread_mutex_lock(self.mutex) };
        check(rc, "pthread_mutex_lock")?;
        Ok(Locked { sync: self })
    }
}

/// The mutex, held.
#[derive(Debug)]
pub struct Locked<'s, 'a> {
    sync: &'s PthreadSync<'a>,
}

impl Locked<'_, '_> {
    fn cond(&self, which: Cond) -> *mut libc::pthread_cond_t {
        match which {
            Cond::NotEmpty => self.sync.not_empty,
            Cond::NotFull => self.sync.not_full,
        }
    }

    /// `pthread_cond_timedwait` on `which` for at most `timeout`; returns
    /// false when it timed out. The mutex is held again on return.
    pub fn wait(&mut self, which: Cond, timeout: Duration) -> io::Result<bool> {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
        let total = now.tv_nsec() as u64 + timeout.subsec_nanos() as u64;
        let deadline = libc::timespec {
            tv_sec: now.tv_sec()
                + timeout.as_secs() as libc::time_t
                + (total / 1_000_000_000) as libc::time_t,
            tv_nsec: (total % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: the condition variable and the mutex were initialized
        // process shared (`attach`'s contract), the mutex is held by this
        // thread (we are its guard), and `deadline` is a valid timespec on
        // the condition variable's clock (CLOCK_MONOTONIC).
        let rc =
            unsafe { libc::pthread_cond_timedwait(self.cond(which), self.sync.mutex, &deadline) };
        match rc {
            0 => Ok(true),
            libc::ETIMEDOUT => Ok(false),
            rc => check(rc, "pthread_cond_timedwait").map(|()| false),
        }
    }

    /// `pthread_cond_signal` on `which`.
    pub fn signal(&self, which: Cond) -> io::Result<()> {
        // SAFETY: the condition variable was initialized process shared
        // (`attach`'s contract).
        let rc = unsafe { libc::pthread_cond_signal(self.cond(which)) };
        check(rc, "pthread_cond_signal")
    }
}

impl Drop for Locked<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the mutex, which this thread locked.
        // Unlocking a mutex we hold cannot fail for a normal mutex; there is
        // nothing to report to from a destructor.
        let _ = unsafe { libc::pthread_mutex_unlock(self.sync.mutex) };
    }
}
