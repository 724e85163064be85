//! The only `unsafe` code of the benchmark, in three named places:
//!
//! - [`fd`]: adopting a descriptor number inherited from the parent;
//! - [`pthread`]: a process-shared `pthread_mutex_t` and two
//!   `pthread_cond_t` placed in a segment, for the naive ring;
//! - [`slot`]: handing a closure a slice over a ring slot in place, for the
//!   zero-copy raw ring;
//! - [`pad`]: the `unsafe impl ShmSafe`/`ShmShared` of the hand-off
//!   benchmark's segment.
//!
//! The callers of `pthread` and `slot` are `transport::condvar` and
//! `transport::spin`, the two other modules allowed `unsafe` (for the call
//! sites alone, each with its `// SAFETY:` argument); `pad` holds only
//! marker-trait impls. Everything else (affinity, CPU time, clocks,
//! sockets, message queues) goes through safe nix and std calls.

pub mod fd;
pub mod pad;
pub mod pthread;
pub mod slot;
