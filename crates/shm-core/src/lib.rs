//! Shared memory segments for Linux over both kernel APIs, System V
//! (`shmget`/`shmat`/`shmdt`/`shmctl`) and POSIX
//! (`shm_open`/`posix_fallocate`/`mmap`/`munmap`/`shm_unlink`), plus anonymous
//! `memfd` segments.
//!
//! - [`Segment`] creates, opens, maps, reads, writes, stats and removes raw
//!   segments, with ownership said explicitly.
//! - [`Shared<T>`] puts a [`ShmSafe`] value behind a validated header with an
//!   init handshake: only the creator initializes, openers wait for ready
//!   with a deadline, and a creator that dies during init is reported.
//! - [`list`] reads which segments exist and which processes map them.
//!
//! # The whole life of a segment
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use shm_core::{SegmentId, Shared, SharedOptions};
//!
//! let id = SegmentId::posix(&format!("/doc-life-{}", std::process::id()))?;
//! // Create: only the creator runs the initializer; the segment is
//! // published as ready afterwards.
//! let counter = Shared::<AtomicU64>::create(&id, &SharedOptions::new(), |c| {
//!     c.store(41, Ordering::Relaxed);
//!     Ok(())
//! })?;
//! // Attach (another process would do exactly this): validated header,
//! // waits for ready.
//! let other = Shared::<AtomicU64>::open(&id, &SharedOptions::new())?;
//! other.get().fetch_add(1, Ordering::SeqCst);
//! assert_eq!(counter.get().load(Ordering::SeqCst), 42);
//! // Detach.
//! drop(other);
//! // Remove: the creator owns the segment and removes it on drop; this says
//! // so explicitly.
//! counter.segment().remove()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The `SIGBUS` guard
//!
//! Mapping a POSIX or memfd segment installs, once, a **process-wide
//! `SIGBUS` handler**. Another process that may write a segment's file may
//! also `ftruncate` it; touching a page past the new end raises `SIGBUS`,
//! which would kill this process. The handler checks whether the faulting
//! address lies in one of this library's mappings; if so it maps a private
//! zero page there and marks the mapping ([`Segment::is_truncated`]), and
//! the access completes. Every other fault, and every `SIGBUS` sent with
//! `kill`, goes to the handler that was installed before (Rust's own, or
//! yours if you installed one first) or to the default action; the guard
//! stays installed afterwards. System V segments cannot be truncated and
//! install nothing.
//!
//! To opt out, call [`disable_sigbus_guard`] before the first mapping, or
//! set `SHM_SIGBUS_GUARD=0` in the environment; a truncation then kills the
//! process as it would without this library.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
pub mod fdpass;
// Its tests name std atomics inline as the payload types of test segments
// (`Shared::<AtomicI64>`); the library code stays checked.
#[cfg_attr(test, allow(clippy::disallowed_types))]
mod header;
mod kill_points;
pub mod list;
mod name;
pub mod process;
mod segment;
#[allow(unsafe_code)]
mod shareable;
mod shared;
#[doc(hidden)]
pub mod shim;
mod sys;
#[cfg(test)]
mod test_util;

pub use error::{AccessError, BoundsError, CreateError, NameError, OpenError, Owner};
pub use header::{FORMAT_VERSION, HEADER_SIZE, HeaderError, HeaderInfo, InitState, MAGIC};
pub use name::{MAX_POSIX_NAME, PosixName, SegmentId};
pub use process::ProcessId;
pub use segment::{
    Backend, CreateMode, DEFAULT_MODE, MAX_SEGMENT_SIZE, Segment, Stat, disable_sigbus_guard,
    remove, sigbus_guard_installed,
};
pub use shareable::{Fingerprint, ShmSafe, ShmShared, combine_type_ids, type_id};
pub use shared::{InitError, Shared, SharedOptions, Snapshot};
/// `#[derive(ShmSafe)]` and `#[derive(ShmShared)]` (feature `derive`): see
/// the [`shm_derive`] crate for what they check.
#[cfg(feature = "derive")]
pub use shm_derive::{ShmSafe, ShmShared};
