//! What a user chooses for a new queue ([`QueueOptions`], [`Lifetime`]),
//! the limits it is checked against, and what an observer reads back
//! ([`Stats`]).

use std::time::Duration;

#[cfg(doc)]
use crate::Queue;

/// Largest slot accepted: 1 GiB.
pub const MAX_SLOT_SIZE: u32 = 1 << 30;
/// Most slots accepted: 2^24.
pub const MAX_CAPACITY: u32 = 1 << 24;
/// The kind word recorded in the segment header.
pub const KIND: &str = "queue";

/// Capacity, slot size and permissions of a new queue, and how long `open`
/// waits for a creator to finish.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub(crate) capacity: u32,
    pub(crate) slot_size: u32,
    pub(crate) mode: u32,
    pub(crate) timeout: Duration,
    pub(crate) lifetime: Lifetime,
}

/// When a queue's name goes away. Chosen by the creator and recorded in
/// the segment, so every process follows the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
#[non_exhaustive]
pub enum Lifetime {
    /// The default: the name is removed when the last attached handle (a
    /// [`Queue`] and the senders and receivers made from it, in any
    /// process) is dropped, or when that process dies and a later leaver
    /// finds it dead. While any attached process lives, [`Queue::open`]
    /// and [`Queue::open_or_create`] join the queue the name carries, never
    /// a second one; a handle that opens the name just as the last one
    /// leaves either keeps the queue and its name alive or opens the name
    /// again, never ends up on a queue nobody else can find. If every
    /// attached process dies, the name stays until the next handle leaves.
    #[default]
    LastPeer,
    /// The creating handle removes the name when it is dropped, whoever
    /// still uses the queue (the behaviour of a plain
    /// [`shm_core::Segment`]). Peers already attached keep working on the
    /// unnamed queue; a later `open_or_create` makes a new one. Use it when
    /// one process owns the queue's life (a server).
    Creator,
    /// Nobody removes the name: it stays until [`Queue::remove`],
    /// `shm rm` or a reboot (a queue that outlives its processes).
    Persistent,
}

impl Lifetime {
    pub(crate) fn to_word(self) -> u32 {
        match self {
            Lifetime::LastPeer => 0,
            Lifetime::Creator => 1,
            Lifetime::Persistent => 2,
        }
    }

    pub(crate) fn from_word(w: u32) -> Option<Self> {
        match w {
            0 => Some(Lifetime::LastPeer),
            1 => Some(Lifetime::Creator),
            2 => Some(Lifetime::Persistent),
            _ => None,
        }
    }
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: 1024,
            slot_size: 256,
            mode: shm_core::DEFAULT_MODE,
            timeout: Duration::from_secs(5),
            lifetime: Lifetime::LastPeer,
        }
    }
}

impl QueueOptions {
    /// 1024 slots of 256 bytes, mode 0600, a 5 s open deadline, the name
    /// removed with the last peer ([`Lifetime::LastPeer`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages the queue holds.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// Largest message in bytes.
    pub fn slot_size(mut self, slot_size: u32) -> Self {
        self.slot_size = slot_size;
        self
    }

    /// Permission bits of the segment.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for the creator to finish initializing.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When the name goes away (used when this call creates the queue;
    /// an opener follows what the creator chose).
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }
}

/// A snapshot of a queue's counters, read without taking part in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stats {
    /// Messages in the queue (committed or being written, not yet taken).
    pub len: u64,
    /// Slots.
    pub capacity: u64,
    /// Largest message in bytes.
    pub slot_size: u64,
    /// Messages committed since creation.
    pub sent: u64,
    /// Messages received since creation.
    pub received: u64,
    /// Sends that had to sleep on a full queue.
    pub blocked_sends: u64,
    /// Receives that had to sleep on an empty queue.
    pub blocked_recvs: u64,
    /// Live registered producers.
    pub producers: u64,
    /// Live registered consumers.
    pub consumers: u64,
    /// Live attached handles (an open `Queue` and what was made from it;
    /// observers such as `shm stat` do not attach).
    pub attached: u64,
    /// When the name goes away.
    pub lifetime: Lifetime,
    /// Whether the queue was closed.
    pub closed: bool,
    /// Claims of dead processes recovered: positions a producer died
    /// writing (skipped) and slots a consumer died reading (freed).
    pub recovered: u64,
    /// Sends abandoned because their write closure panicked.
    pub abandoned: u64,
}
