//! The queue's errors (STYLE habit 7): one enum per operation, messages a
//! person can act on.

use std::error::Error;
use std::fmt;
use std::io;

/// Why opening or creating a queue failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The segment could not be created.
    Create(shm_core::CreateError),
    /// The segment could not be opened or its header is not valid.
    Open(shm_core::OpenError),
    /// Capacity or slot size out of range.
    InvalidConfig {
        /// The queue.
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// The queue holds another message type than the one asked for.
    WrongMessageType {
        /// The queue.
        queue: String,
    },
    /// The queue was created in another PID namespace. Peers are named by
    /// PID, so processes that see different PIDs could not tell a crashed
    /// peer from a live one.
    OtherPidNamespace {
        /// The queue.
        queue: String,
    },
    /// The queue was made by an earlier format of this library, which this
    /// build does not read (the two would not understand each other's
    /// slots). Recreate it, or open it with the version that made it.
    OldFormat {
        /// The queue.
        queue: String,
        /// Its format version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The control block holds impossible values.
    Corrupted(Corrupted),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Create(e) => e.fmt(f),
            OpenError::Open(e) => e.fmt(f),
            OpenError::InvalidConfig { queue, reason } => {
                write!(f, "invalid queue {queue}: {reason}")
            }
            OpenError::WrongMessageType { queue } => {
                write!(
                    f,
                    "{queue} holds another message type than the one asked for"
                )
            }
            OpenError::OtherPidNamespace { queue } => write!(
                f,
                "{queue} was created in another PID namespace (another container?): peers are named by PID, so it can only be shared by processes that see the same PIDs"
            ),
            OpenError::OldFormat {
                queue,
                found,
                expected,
            } => write!(
                f,
                "{queue} is a queue of format version {found}, made by an older shm-queue; this build reads only format version {expected}: remove it (`shm rm`) and create it again, or use the version that made it"
            ),
            OpenError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl Error for OpenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OpenError::Create(e) => Some(e),
            OpenError::Open(e) => Some(e),
            OpenError::Corrupted(c) => Some(c),
            _ => None,
        }
    }
}

impl From<shm_core::CreateError> for OpenError {
    fn from(e: shm_core::CreateError) -> Self {
        OpenError::Create(e)
    }
}

impl From<shm_core::OpenError> for OpenError {
    fn from(e: shm_core::OpenError) -> Self {
        OpenError::Open(e)
    }
}

impl From<Corrupted> for OpenError {
    fn from(e: Corrupted) -> Self {
        OpenError::Corrupted(e)
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> Self {
        let kind = match &e {
            OpenError::Create(c) => c.kind(),
            OpenError::Open(o) => o.kind(),
            OpenError::InvalidConfig { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// A value read from the queue's segment is impossible: another process
/// wrote garbage into it. The operation did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupted {
    /// The queue.
    pub queue: String,
    /// What was impossible.
    pub detail: String,
}

impl fmt::Display for Corrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {} is corrupted: {}", self.queue, self.detail)
    }
}

impl Error for Corrupted {}

/// Why registering a sender or receiver failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RegisterError {
    /// All [`crate::MAX_PEERS`] entries are taken by live processes.
    TooMany {
        /// The queue.
        queue: String,
        /// `"producers"` or `"consumers"`.
        role: &'static str,
    },
    /// The queue was closed.
    Closed,
    /// The control block is corrupted.
    Corrupted(Corrupted),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::TooMany { queue, role } => write!(
                f,
                "{queue} already has {} live {role}, the most it can register",
                crate::MAX_PEERS
            ),
            RegisterError::Closed => f.write_str("the queue is closed"),
            RegisterError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl Error for RegisterError {}

impl From<Corrupted> for RegisterError {
    fn from(e: Corrupted) -> Self {
        RegisterError::Corrupted(e)
    }
}

/// Why a send did not happen. In every case nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The message is longer than a slot.
    TooLarge {
        /// Its length.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// `try_send`: the queue is full.
    Full,
    /// The deadline passed while the queue stayed full.
    Timeout,
    /// Every consumer that registered is gone.
    Disconnected,
    /// The queue was closed.
    Closed,
    /// The control block is corrupted.
    Corrupted(Corrupted),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes is larger than the queue's {max}-byte slots; nothing was sent"
            ),
            SendError::Full => f.write_str("the queue is full"),
            SendError::Timeout => f.write_str("timed out: the queue stayed full"),
            SendError::Disconnected => f.write_str("every consumer of the queue is gone"),
            SendError::Closed => f.write_str("the queue is closed"),
            SendError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl Error for SendError {}

impl From<Corrupted> for SendError {
    fn from(e: Corrupted) -> Self {
        SendError::Corrupted(e)
    }
}

/// Why a receive returned no message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// `try_recv`: the queue is empty.
    Empty,
    /// The deadline passed while the queue stayed empty.
    Timeout,
    /// Every producer that registered is gone and the queue is drained.
    Disconnected,
    /// The queue was closed and is drained.
    Closed,
    /// The buffer given to `recv_into` is shorter than the slot size;
    /// nothing was taken.
    BufferTooSmall {
        /// The slot size (the longest message possible).
        len: usize,
        /// The buffer's length.
        buf: usize,
    },
    /// The control block is corrupted.
    Corrupted(Corrupted),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("the queue is empty"),
            RecvError::Timeout => f.write_str("timed out: no message arrived"),
            RecvError::Disconnected => {
                f.write_str("every producer of the queue is gone and it is drained")
            }
            RecvError::Closed => f.write_str("the queue is closed and drained"),
            RecvError::BufferTooSmall { len, buf } => write!(
                f,
                "the buffer of {buf} bytes is shorter than the {len}-byte slots; nothing was taken"
            ),
            RecvError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl Error for RecvError {}

impl From<Corrupted> for RecvError {
    fn from(e: Corrupted) -> Self {
        RecvError::Corrupted(e)
    }
}

macro_rules! into_io {
    ($t:ty, $($pat:pat => $kind:expr),* $(,)?) => {
        impl From<$t> for io::Error {
            fn from(e: $t) -> Self {
                let kind = match &e { $($pat => $kind),* };
                io::Error::new(kind, e)
            }
        }
    };
}

into_io!(SendError,
    SendError::TooLarge { .. } => io::ErrorKind::InvalidInput,
    SendError::Full => io::ErrorKind::WouldBlock,
    SendError::Timeout => io::ErrorKind::TimedOut,
    SendError::Disconnected | SendError::Closed => io::ErrorKind::BrokenPipe,
    SendError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(RecvError,
    RecvError::Empty => io::ErrorKind::WouldBlock,
    RecvError::Timeout => io::ErrorKind::TimedOut,
    RecvError::Disconnected | RecvError::Closed => io::ErrorKind::UnexpectedEof,
    RecvError::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
    RecvError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(RegisterError,
    RegisterError::TooMany { .. } => io::ErrorKind::QuotaExceeded,
    RegisterError::Closed => io::ErrorKind::BrokenPipe,
    RegisterError::Corrupted(_) => io::ErrorKind::InvalidData,
);
