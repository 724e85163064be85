//! The workspace's loom shim as shm-sync and shm-queue see it: shm-core's
//! [`shm_core::shim`] (the atomics, `fence`, `real`: the only place that
//! names an atomic type) re-exported, plus what needs shm-sync: the spin
//! backoff, the shared futex and the monotonic clock. Every module of this
//! crate imports from `crate::shim`, shm-queue from `shm_sync::shim`.
//! Hidden: not part of the public API.
//!
//! Normal builds get `std`'s atomics, `parking_lot_core::SpinWait`, the
//! shared futex of `crate::sys` and the monotonic clock; `--cfg shm_loom`
//! swaps in loom's atomics (in shm-core), no spinning, a loom-modelled futex
//! (an address-to-waiters table behind a loom mutex and condvar, reset for
//! every model execution) and a clock that never passes a deadline by itself
//! (`slice_end` gives no re-check slices, `passed` is always false: a timed
//! sleep ends only when the modelled futex says it timed out), so that the
//! lock-free protocols of [`crate::WaitWord`], [`crate::Semaphore`],
//! [`crate::FutexCondvar`] and [`crate::OwnerLock`] are model-checked
//! deterministically.
//!
//! The pthread types are not here: loom cannot model them, so
//! [`crate::Mutex`] and [`crate::Condvar`] always use the real ones (the
//! atomics and `UnsafeCell` of `real`) and are never run under loom.

pub use shm_core::shim::*;

#[cfg(not(shm_loom))]
mod std_impl;
#[cfg(not(shm_loom))]
pub(crate) use std_impl::*;

#[cfg(shm_loom)]
mod loom_impl;
#[cfg(shm_loom)]
pub(crate) use loom_impl::*;

/// Spins with `pause` (never `sched_yield`: on a busy machine a yield
/// gives the CPU away for a whole time slice), checking `done` between
/// bursts that grow to 16 pauses, for at most `limit`; whether `done`
/// came true. Under loom it looks once: spinning only multiplies the
/// states to explore.
pub fn spin_until(limit: std::time::Duration, done: impl Fn() -> bool) -> bool {
    if cfg!(shm_loom) {
        return done();
    }
    let start = std::time::Instant::now();
    let mut burst = 1u32;
    loop {
        for _ in 0..32 {
            if done() {
                return true;
            }
            for _ in 0..burst {
                std::hint::spin_loop();
            }
            burst = (burst * 2).min(16);
        }
        if start.elapsed() >= limit {
            return false;
        }
    }
}

/// Whether process `p` still runs. Under loom every modelled "process"
/// is a thread of this one: a model makes a peer dead by clearing its
/// registration, as a reaper would.
pub fn is_alive(p: shm_core::ProcessId) -> bool {
    cfg!(shm_loom) || p.is_alive()
}
