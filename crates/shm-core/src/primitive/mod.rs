//! The one place that names the real atomic types (so that the loom build
//! swaps them all at once, and none is missed).
//!
//! Everything in this crate imports atomics from here. With `--cfg shm_loom`
//! the loom versions are swapped in, so the init handshake can be
//! model-checked. Code that maps real segments is never run under loom: loom
//! atomics are not `#[repr(transparent)]` over an integer and must not be
//! placed in shared memory.
#![allow(clippy::disallowed_types)]

#[cfg(not(shm_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(shm_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;
