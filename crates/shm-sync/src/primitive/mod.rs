//! The one place that names the real atomics, the spin backoff and the futex
//! (so that the loom build swaps them all at once, and none is missed).
//!
//! Everything in this crate imports them from here. Normal builds get
//! `std`'s atomics, `parking_lot_core::SpinWait`, the shared futex of
//! [`crate::sys`] and the monotonic clock; `--cfg shm_loom` swaps in loom's
//! atomics, no spinning, a loom-modelled futex (an address-to-waiters table
//! behind a loom mutex and condvar, reset for every model execution) and a
//! clock that never passes a deadline by itself (`slice_end` gives no
//! re-check slices, `passed` is always false: a timed sleep ends only when
//! the modelled futex says it timed out), so that the lock-free protocols
//! of [`crate::WaitWord`], [`crate::Semaphore`], [`crate::FutexCondvar`] and
//! [`crate::OwnerLock`] are model-checked deterministically.
//!
//! The pthread types are not here: loom cannot model them, so
//! [`crate::Mutex`] and [`crate::Condvar`] always use the real ones and are
//! never run under loom.
#![allow(clippy::disallowed_types)]

pub(crate) use std::sync::atomic::Ordering;

/// The real atomic and cell types, in every build: the fields that sit next
/// to a pthread object (which loom cannot model either) and user data behind
/// a pthread mutex.
pub(crate) mod real {
    pub(crate) use std::cell::UnsafeCell;
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
}

#[cfg(not(shm_loom))]
mod std_impl;
#[cfg(not(shm_loom))]
pub(crate) use std_impl::*;

#[cfg(shm_loom)]
mod loom_impl;
#[cfg(shm_loom)]
pub(crate) use loom_impl::*;
