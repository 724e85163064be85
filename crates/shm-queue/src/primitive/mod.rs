//! The one place that names the real atomic types (STYLE habit 1); under
//! `--cfg shm_loom` the loom versions are swapped in.

#[cfg(not(shm_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(shm_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;
