//! The one loom shim of the workspace: the only place that names an atomic
//! type (and `UnsafeCell`, and the atomic `fence`), so that the loom build
//! swaps them all at once and none is missed. `clippy.toml` disallows the
//! `std` types everywhere else; the items here are type aliases, which the
//! lint does not see through, so `shim::AtomicU32` passes and
//! `std::sync::atomic::AtomicU32` fails `cargo clippy -D warnings`.
//!
//! Every crate imports from here: shm-core as `crate::shim`, shm-sync
//! re-exports it as `shm_sync::shim` and adds the futex, the spin backoff
//! and the clock (the parts that need shm-sync), and shm-queue imports
//! `shm_sync::shim`. Hidden: not part of the public API.
//!
//! Two kinds of atomic, and the choice is made at every import:
//!
//! - [`AtomicU32`], [`AtomicU64`] and [`fence`]: the atomics of a protocol
//!   that is model-checked (what lives in a segment: the init handshake, the
//!   futex words, the queue's slots). `std`'s, or loom's under
//!   `--cfg shm_loom`.
//! - [`real`]: `std`'s in every build, for state a model never touches:
//!   process-local flags and counters (statics, a signal handler's flags,
//!   a readiness flag), fields next to a pthread object (which loom cannot
//!   model either), user data behind a pthread mutex, and tests and benches
//!   that put atomics in real segments. Loom's atomics panic outside
//!   `loom::model` and have no `const` constructor, so these must not be
//!   swapped.
//!
//! Code that maps real segments is never run under loom: loom's atomics are
//! not `#[repr(transparent)]` over an integer and must not be placed in
//! shared memory.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub use std::sync::atomic::Ordering;

/// A 32-bit atomic of a model-checked protocol (loom's under `shm_loom`).
#[cfg(not(shm_loom))]
pub type AtomicU32 = std::sync::atomic::AtomicU32;
/// A 64-bit atomic of a model-checked protocol (loom's under `shm_loom`).
#[cfg(not(shm_loom))]
pub type AtomicU64 = std::sync::atomic::AtomicU64;

/// A 32-bit atomic of a model-checked protocol (loom's under `shm_loom`).
#[cfg(shm_loom)]
pub type AtomicU32 = loom::sync::atomic::AtomicU32;
/// A 64-bit atomic of a model-checked protocol (loom's under `shm_loom`).
#[cfg(shm_loom)]
pub type AtomicU64 = loom::sync::atomic::AtomicU64;

/// The memory fence of a model-checked protocol (loom's under `shm_loom`).
#[cfg(not(shm_loom))]
#[inline]
pub fn fence(order: Ordering) {
    std::sync::atomic::fence(order);
}

#[cfg(shm_loom)]
pub use loom::sync::atomic::fence;

/// `std`'s atomics and `UnsafeCell` in every build, loom or not: see the
/// module docs for when these are the right ones.
pub mod real {
    /// `std::sync::atomic::AtomicBool`.
    pub type AtomicBool = std::sync::atomic::AtomicBool;
    /// `std::sync::atomic::AtomicI8`.
    pub type AtomicI8 = std::sync::atomic::AtomicI8;
    /// `std::sync::atomic::AtomicI16`.
    pub type AtomicI16 = std::sync::atomic::AtomicI16;
    /// `std::sync::atomic::AtomicI32`.
    pub type AtomicI32 = std::sync::atomic::AtomicI32;
    /// `std::sync::atomic::AtomicI64`.
    pub type AtomicI64 = std::sync::atomic::AtomicI64;
    /// `std::sync::atomic::AtomicU8`.
    pub type AtomicU8 = std::sync::atomic::AtomicU8;
    /// `std::sync::atomic::AtomicU16`.
    pub type AtomicU16 = std::sync::atomic::AtomicU16;
    /// `std::sync::atomic::AtomicU32`.
    pub type AtomicU32 = std::sync::atomic::AtomicU32;
    /// `std::sync::atomic::AtomicU64`.
    pub type AtomicU64 = std::sync::atomic::AtomicU64;
    /// `std::sync::atomic::AtomicUsize`.
    pub type AtomicUsize = std::sync::atomic::AtomicUsize;
    /// `std::cell::UnsafeCell`.
    pub type UnsafeCell<T> = std::cell::UnsafeCell<T>;
}
