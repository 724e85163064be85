//! A blocking, bounded, multi-producer multi-consumer queue between
//! processes, in one shared memory segment, that survives `kill -9`.
//!
//! Built on [`shm_core`] (the segment, its header and init handshake) and
//! [`shm_sync`] (its [`WaitWord`](shm_sync::WaitWord), the one wake
//! handshake the queue sleeps and wakes through). The message path takes no
//! lock: a producer and a consumer meet only at the slot they hand over,
//! and same-side peers at one CAS on `tail` or `head`.
//!
//! # Example: the whole life of a queue
//!
//! ```
//! use shm_queue::{Queue, QueueOptions, RecvError, SegmentId};
//!
//! let id = SegmentId::posix(&format!("/doc-queue-{}", std::process::id()))?;
//! // Create. By default the name goes away with the last attached handle,
//! // in whichever process that is.
//! let queue = Queue::create(&id, &QueueOptions::new().capacity(8).slot_size(64))?;
//! // Attach: another process would call `Queue::open(&id)`.
//! let other = Queue::open(&id)?;
//! let rx = other.receiver()?;
//! {
//!     let tx = queue.sender()?;
//!     tx.send(b"hello")?;
//!     tx.send_with(5, |buf| buf.copy_from_slice(b"world"))?; // in place
//! } // the only producer leaves
//! assert_eq!(rx.recv()?, b"hello");
//! assert_eq!(rx.recv_with(|m| m.to_vec())?, b"world");
//! // Every producer is gone and the queue is drained.
//! assert_eq!(rx.recv(), Err(RecvError::Disconnected));
//! // Detach: the last handle to go removes the name.
//! drop(rx);
//! drop(other);
//! drop(queue);
//! assert!(Queue::open(&id).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! - **Order.** Messages of one producer arrive in the order it sent them.
//!   With several producers, messages are taken in the order their slots
//!   were claimed.
//! - **Size.** A message longer than the slot size is refused with
//!   [`SendError::TooLarge`] and nothing is sent. Nothing is ever truncated.
//! - **Handles.** A [`Queue`] is a cheap, cloneable, `Send + Sync` handle;
//!   [`Queue::sender`] and [`Queue::receiver`] register the calling process
//!   (at most [`MAX_PEERS`] of each at once) and return a [`Sender`] or
//!   [`Receiver`] that owns a clone of it (`Send + 'static`), so it can
//!   move into a thread or task on its own.
//! - **Names.** [`Lifetime`] says when the name goes away: by default with
//!   the last attached handle in any process, so that
//!   [`Queue::open_or_create`] never makes a second queue while a peer of
//!   the first lives.
//! - **Errors.** Named as in `std::sync::mpsc` and crossbeam-channel:
//!   [`TrySendError::Full`], [`SendTimeoutError::Timeout`],
//!   [`TryRecvError::Empty`], [`RecvTimeoutError::Timeout`], and
//!   `Disconnected` everywhere it applies.
//! - **Disconnect.** A receiver gets [`RecvError::Disconnected`] once at
//!   least one producer has registered, every registered producer is gone
//!   (dropped its `Sender`, or died), and the queue is drained. On a queue
//!   no producer has joined yet, it waits for the first. A sender gets
//!   [`SendError::Disconnected`] once at least one consumer has registered
//!   and every one of them is gone, if it would have to wait for room.
//! - **Close.** [`Queue::close`] makes sends fail with `Closed`; receivers
//!   drain what is left, then get `Closed`.
//! - **Blocking.** A blocked sender or receiver spins briefly (at most
//!   30 µs), then sleeps on a shared futex and uses no CPU; it wakes every
//!   100 ms to look for crashed peers, so a peer killed with `SIGKILL` is
//!   noticed within about that long. `try_*` calls never block; timeout
//!   calls never block past their deadline.
//! - **Threads.** A [`Sender`] or [`Receiver`] is used by one thread at a
//!   time (it is not `Sync`): register one per thread
//!   ([`Sender::try_clone`]).
//! - **Event loops.** [`Receiver::ready_fd`] and [`Sender::ready_fd`] give a
//!   descriptor for `epoll`/`mio`; with the `tokio` feature,
//!   `Receiver::recv_async` and `Sender::send_async` are cancel-safe
//!   futures (nothing is taken on a dropped future's behalf).
//!
//! # When a process dies
//!
//! A process killed at any instruction leaves the queue usable:
//!
//! - a message is *committed* when its slot turns FULL; a receiver never
//!   takes a slot that is not committed, so no torn message is delivered;
//! - every process publishes its open claim in its registration record
//!   before it claims, so a claim no live process covers is a dead one;
//! - a producer killed between claim and commit leaves a claim that a
//!   consumer turns into a tombstone once it has waited a liveness slice
//!   for it and finds no live claimer (the send never returned, so nothing
//!   promised is lost);
//! - a consumer killed between claim and release leaves a slot that a
//!   producer frees the same way — that one message is lost, since the
//!   receiver that took it died;
//! - every recovery is one CAS from the exact state seen, so a survivor
//!   killed while recovering leaves either the old state (the next survivor
//!   recovers it) or the new one, and a slow claimer that finishes first
//!   wins;
//! - registrations of dead processes (PID plus start time in one word, so
//!   a recycled PID is not mistaken for the dead one) are cleared, so
//!   disconnect still arrives.
//!
//! # Untrusted contents
//!
//! Capacity, slot size and stride are read and validated once at open and
//! kept in the handle. Every index, length and state read from the segment
//! afterwards is checked; an impossible value gives a [`Corrupted`] error,
//! never an out-of-bounds access, a panic or a wait on an impossible state.
//! A segment of an older format ([`FORMAT_VERSION`]) is refused with
//! [`QueueOpenError::OldFormat`].
//!
//! # Layout
//!
//! The shm-core header (kind `queue`), then the control block:
//! configuration, flags and slow-path counters on one line, `tail` and
//! `head` on lines of their own, two tables of [`MAX_PEERS`]
//! registration records of 64 bytes (identity word, open claim), the
//! lifetime line and the table of [`MAX_ATTACHED`] attached handles. Then
//! `capacity` slots: a 16-byte header (state word, length) and the payload,
//! padded to 64 bytes. docs/layout.md has the offsets and the format
//! history.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod inspect;
mod kill_points;
pub mod peek;
// Who is attached, and when the name goes away.
mod life;
// `unsafe impl ShmSafe` for the on-segment structs.
#[allow(unsafe_code)]
mod layout;
mod options;
mod queue;
// The readiness helper; (feature `tokio`) its submodule `reactor` holds one
// `unsafe` call that registers the descriptor with the reactor.
mod ready;
// Only calls into `payload`, each with its SAFETY argument.
#[allow(unsafe_code)]
mod receiver;
mod registry;
mod ring;
// Only calls into `payload`, each with its SAFETY argument.
mod payload;
#[allow(unsafe_code)]
mod sender;
#[cfg(feature = "serde")]
pub mod serde_msg;
mod typed;
mod wait;

pub use error::{
    Corrupted, QueueOpenError, RecvError, RecvTimeoutError, RegisterError, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
pub use layout::{FORMAT_VERSION, MAX_ATTACHED, MAX_PEERS};
pub use queue::{KIND, Lifetime, MAX_CAPACITY, MAX_SLOT_SIZE, Queue, QueueOptions, Stats};
pub use receiver::{IntoIter, Iter, Receiver, TryIter};
pub use sender::Sender;
#[cfg(feature = "serde")]
pub use serde_msg::SerdeError;
/// shm-core itself, for a user who depends only on shm-queue (write
/// `#[shm(crate = "shm_queue::shm_core")]` on a derived message type).
pub use shm_core;
/// The segment types a queue user needs, from [`shm_core`] (with feature
/// `derive`, `ShmSafe` is the derive macro too).
pub use shm_core::{SegmentId, ShmSafe};
pub use typed::{TypedQueue, TypedReceiver, TypedSender};
#[cfg(all(test, shm_loom))]
#[allow(unsafe_code)]
mod loom_tests;
