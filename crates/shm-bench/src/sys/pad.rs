//! The segment of the cross-process hand-off benchmark: one of each
//! shm-sync primitive.

use shm_core::shim::real::AtomicU32;
use shm_core::{ShmSafe, ShmShared};
use shm_sync::{Condvar, FutexCondvar, Mutex, Semaphore};

/// One of each primitive, for [`crate::handoff`].
#[repr(C)]
pub struct Pad {
    /// Guards the turn counter for the mutex and condvar hand-offs.
    pub mutex: Mutex<u64>,
    /// The pthread condvar.
    pub condvar: Condvar,
    /// The futex condvar.
    pub futex_condvar: FutexCondvar,
    /// Posted by the parent, waited on by the child.
    pub ping: Semaphore,
    /// Posted by the child, waited on by the parent.
    pub pong: Semaphore,
    /// Set by the child once it has opened the segment.
    pub attached: AtomicU32,
}

// SAFETY: `#[repr(C)]` of shm-sync primitives and an atomic, each of them
// `ShmSafe`: no pointers, every bit pattern valid, mutation interior.
unsafe impl ShmSafe for Pad {
    const TYPE_ID: u64 = shm_core::type_id("shm_bench::Pad/v2");
}

// SAFETY: every field is `ShmShared` (atomics or `UnsafeCell`s only).
unsafe impl ShmShared for Pad {}
