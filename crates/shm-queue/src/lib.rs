//! A blocking, bounded, multi-producer multi-consumer queue between
//! processes, in one shared memory segment, that survives `kill -9`.
//!
//! Built on [`shm_core`] (the segment, its header and init handshake) and
//! [`shm_sync`] (the shared futex). Its lock is a futex mutex of its own
//! whose holder is named in the segment (PID and start time), rather than
//! shm-sync's robust `pthread_mutex_t`: glibc follows pointers stored inside
//! a robust mutex, so a process that scribbles over the segment could crash
//! its peers through it; see `src/lock.rs`.
//!
//! # Example: the whole life of a queue
//!
//! ```
//! use shm_core::SegmentId;
//! use shm_queue::{Queue, QueueOptions, RecvError};
//!
//! let id = SegmentId::posix(&format!("/doc-queue-{}", std::process::id()))?;
//! // Create (this handle owns the segment and removes it on drop).
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
//! // Detach, then remove.
//! drop(rx);
//! drop(other);
//! queue.remove()?;
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
//! - **Registration.** [`Queue::sender`] and [`Queue::receiver`] register
//!   the calling process (at most [`MAX_PEERS`] of each at once).
//! - **Disconnect.** A receiver gets [`RecvError::Disconnected`] once at
//!   least one producer has registered, every registered producer is gone
//!   (dropped its `Sender`, or died), and the queue is drained. On a queue
//!   no producer has joined yet, it waits for the first. A sender gets
//!   [`SendError::Disconnected`] once at least one consumer has registered
//!   and every one of them is gone, if it would have to wait for room.
//! - **Close.** [`Queue::close`] makes sends fail with `Closed`; receivers
//!   drain what is left, then get `Closed`.
//! - **Blocking.** A blocked sender or receiver spins briefly, then sleeps
//!   on a shared futex and uses no CPU; it wakes every 100 ms to look for
//!   crashed peers, so a peer killed with `SIGKILL` is noticed within about
//!   that long.
//!
//! # When a process dies
//!
//! A process killed at any instruction leaves the queue usable:
//!
//! - a message is *committed* when its slot turns READY; a receiver never
//!   sees a slot that is not committed, so no torn message is delivered;
//! - a producer killed while writing leaves a claim that consumers skip
//!   once they see its owner is dead (the send never returned, so nothing
//!   promised is lost);
//! - a consumer killed while reading frees nothing; producers take the slot
//!   back once they see its owner is dead — that one message is lost, since
//!   the receiver that took it died;
//! - a process killed holding the lock: a waiter finds the holder named
//!   next to the lock word dead, takes the lock over and validates the
//!   indices; claims are committed by a single index store, so a half-done
//!   claim is simply taken over;
//! - registrations of dead processes (PID plus start time, so a recycled PID
//!   is not mistaken for the dead one) are cleared, so disconnect still
//!   arrives.
//!
//! # Untrusted contents
//!
//! Capacity, slot size and stride are read and validated once at open and
//! kept in the handle. Every index, length, sequence and state read from the
//! segment afterwards is checked; an impossible value gives a
//! [`Corrupted`] error, never an out-of-bounds access or a panic.
//!
//! # Layout
//!
//! The shm-core header (kind `queue`), then the control block: the lock
//! (word, holder PID, holder start time), capacity, slot size, stride,
//! flags, message type, the producer line (tail, `not_empty` futex word,
//! sleeping receivers, sent, blocked sends), the consumer line (head,
//! `not_full` futex word, sleeping senders, received, blocked receives,
//! recovered claims, lock repairs), and two registration tables of
//! [`MAX_PEERS`] entries (PID, start time). Then `capacity` slots: a 32-byte
//! header (state, length, sequence, owner PID and start time) and the
//! payload, padded to 64 bytes. docs/layout.md has the offsets.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod kill;
// `unsafe impl ShmSafe` for the on-segment structs.
#[allow(unsafe_code)]
mod layout;
mod primitive;
mod queue;
// Only calls into `slots`, each with its SAFETY argument.
#[allow(unsafe_code)]
mod receiver;
mod registry;
mod ring;
// Only calls into `slots`, each with its SAFETY argument.
#[allow(unsafe_code)]
mod sender;
mod slots;
mod typed;
mod wait;

pub use error::{Corrupted, OpenError, RecvError, RegisterError, SendError};
pub use layout::{FORMAT_VERSION, MAX_PEERS};
pub use queue::{KIND, MAX_CAPACITY, MAX_SLOT_SIZE, Queue, QueueOptions, Stats};
pub use receiver::Receiver;
pub use sender::Sender;
pub use typed::{TypedQueue, TypedReceiver, TypedSender};
