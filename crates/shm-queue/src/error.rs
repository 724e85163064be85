//! The queue's errors: one enum per operation (and per way of waiting),
//! with messages a person can act on.

use std::error::Error;
use std::fmt;
use std::io;

/// Why opening or creating a queue failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum QueueOpenError {
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
    /// Every entry of the table of attached processes
    /// ([`crate::MAX_ATTACHED`]) is held by a live process.
    TooManyAttached {
        /// The queue.
        queue: String,
    },
    /// The queue's last peer has been removing its name for seconds
    /// without finishing (a stopped process?).
    Retiring {
        /// The queue.
        queue: String,
        /// The leaving process.
        pid: u32,
    },
    /// The control block holds impossible values.
    Corrupted(Corrupted),
}

impl fmt::Display for QueueOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueOpenError::Create(e) => e.fmt(f),
            QueueOpenError::Open(e) => e.fmt(f),
            QueueOpenError::InvalidConfig { queue, reason } => {
                write!(f, "invalid queue {queue}: {reason}")
            }
            QueueOpenError::WrongMessageType { queue } => {
                write!(
                    f,
                    "{queue} holds another message type than the one asked for"
                )
            }
            QueueOpenError::OtherPidNamespace { queue } => write!(
                f,
                "{queue} was created in another PID namespace (another container?): peers are named by PID, so it can only be shared by processes that see the same PIDs"
            ),
            QueueOpenError::OldFormat {
                queue,
                found,
                expected,
            } => write!(
                f,
                "{queue} is a queue of format version {found}, made by an older shm-queue; this build reads only format version {expected}: remove it (`shm rm`) and create it again, or use the version that made it"
            ),
            QueueOpenError::TooManyAttached { queue } => write!(
                f,
                "{queue} already has {} live attached handles, the most it records",
                crate::MAX_ATTACHED
            ),
            QueueOpenError::Retiring { queue, pid } => write!(
                f,
                "{queue} is being removed by its last peer, pid {pid}, which has not finished for seconds (is it stopped?)"
            ),
            QueueOpenError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl Error for QueueOpenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            QueueOpenError::Create(e) => Some(e),
            QueueOpenError::Open(e) => Some(e),
            QueueOpenError::Corrupted(c) => Some(c),
            _ => None,
        }
    }
}

impl From<shm_core::CreateError> for QueueOpenError {
    fn from(e: shm_core::CreateError) -> Self {
        QueueOpenError::Create(e)
    }
}

impl From<shm_core::OpenError> for QueueOpenError {
    fn from(e: shm_core::OpenError) -> Self {
        QueueOpenError::Open(e)
    }
}

impl From<Corrupted> for QueueOpenError {
    fn from(e: Corrupted) -> Self {
        QueueOpenError::Corrupted(e)
    }
}

impl From<QueueOpenError> for io::Error {
    fn from(e: QueueOpenError) -> Self {
        let kind = match &e {
            QueueOpenError::Create(c) => c.kind(),
            QueueOpenError::Open(o) => o.kind(),
            QueueOpenError::InvalidConfig { .. } => io::ErrorKind::InvalidInput,
            QueueOpenError::TooManyAttached { .. } => io::ErrorKind::QuotaExceeded,
            QueueOpenError::Retiring { .. } => io::ErrorKind::WouldBlock,
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

/// Why a blocking send did not happen. In every case nothing was sent.
///
/// [`Sender::try_send`](crate::Sender::try_send) and
/// [`Sender::send_timeout`](crate::Sender::send_timeout) return
/// [`TrySendError`] and [`SendTimeoutError`]: the same cases plus giving
/// up on waiting, named as in `std::sync::mpsc` and crossbeam-channel.
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
    /// Every consumer that registered is gone.
    Disconnected,
    /// The queue was closed.
    Closed,
    /// The readiness helper of the async and descriptor interfaces could
    /// not be set up (no tokio runtime, no `eventfd`, no thread).
    Readiness {
        /// The system's reason.
        reason: String,
    },
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
            SendError::Disconnected => f.write_str("every consumer of the queue is gone"),
            SendError::Closed => f.write_str("the queue is closed"),
            SendError::Readiness { reason } => readiness(f, reason),
            SendError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl Error for SendError {}

/// Why a blocking receive returned no message.
///
/// [`Receiver::try_recv`](crate::Receiver::try_recv) and
/// [`Receiver::recv_timeout`](crate::Receiver::recv_timeout) return
/// [`TryRecvError`] and [`RecvTimeoutError`]: the same cases plus giving
/// up on waiting, named as in `std::sync::mpsc` and crossbeam-channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
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
    /// See [`SendError::Readiness`].
    Readiness {
        /// The system's reason.
        reason: String,
    },
    /// The control block is corrupted.
    Corrupted(Corrupted),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => {
                f.write_str("every producer of the queue is gone and it is drained")
            }
            RecvError::Closed => f.write_str("the queue is closed and drained"),
            RecvError::BufferTooSmall { len, buf } => write!(
                f,
                "the buffer of {buf} bytes is shorter than the {len}-byte slots; nothing was taken"
            ),
            RecvError::Readiness { reason } => readiness(f, reason),
            RecvError::Corrupted(c) => c.fmt(f),
        }
    }
}

fn readiness(f: &mut fmt::Formatter<'_>, reason: &str) -> fmt::Result {
    write!(
        f,
        "the queue's readiness helper could not be set up: {reason}"
    )
}

impl Error for RecvError {}

/// Declares a send-side error for one way of waiting: the cases of
/// [`SendError`], plus `$gave_up`.
macro_rules! send_waiting_error {
    ($(#[$doc:meta])* $name:ident, $(#[$gdoc:meta])* $gave_up:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            $(#[$gdoc])*
            $gave_up,
            /// See [`SendError::TooLarge`].
            TooLarge {
                /// Its length.
                len: usize,
                /// The slot size.
                max: usize,
            },
            /// See [`SendError::Disconnected`].
            Disconnected,
            /// See [`SendError::Closed`].
            Closed,
            /// See [`SendError::Readiness`].
            Readiness {
                /// The system's reason.
                reason: String,
            },
            /// See [`SendError::Corrupted`].
            Corrupted(Corrupted),
        }
    };
}

/// Declares a receive-side error for one way of waiting: the cases of
/// [`RecvError`], plus `$gave_up`.
macro_rules! recv_waiting_error {
    ($(#[$doc:meta])* $name:ident, $(#[$gdoc:meta])* $gave_up:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            $(#[$gdoc])*
            $gave_up,
            /// See [`RecvError::Disconnected`].
            Disconnected,
            /// See [`RecvError::Closed`].
            Closed,
            /// See [`RecvError::BufferTooSmall`].
            BufferTooSmall {
                /// The slot size (the longest message possible).
                len: usize,
                /// The buffer's length.
                buf: usize,
            },
            /// See [`RecvError::Readiness`].
            Readiness {
                /// The system's reason.
                reason: String,
            },
            /// See [`RecvError::Corrupted`].
            Corrupted(Corrupted),
        }
    };
}

send_waiting_error!(
    /// Why a [`try_send`](crate::Sender::try_send) did not happen: the queue
    /// was full, or one of the [`SendError`] cases. Nothing was sent.
    TrySendError,
    /// The queue is full.
    Full
);
send_waiting_error!(
    /// Why a [`send_timeout`](crate::Sender::send_timeout) did not happen:
    /// the deadline passed while the queue stayed full, or one of the
    /// [`SendError`] cases. Nothing was sent.
    SendTimeoutError,
    /// The deadline passed while the queue stayed full.
    Timeout
);
recv_waiting_error!(
    /// Why a [`try_recv`](crate::Receiver::try_recv) returned no message:
    /// the queue was empty, or one of the [`RecvError`] cases.
    TryRecvError,
    /// The queue is empty.
    Empty
);
recv_waiting_error!(
    /// Why a [`recv_timeout`](crate::Receiver::recv_timeout) returned no
    /// message: the deadline passed while the queue stayed empty, or one of
    /// the [`RecvError`] cases.
    RecvTimeoutError,
    /// The deadline passed while the queue stayed empty.
    Timeout
);

/// The conversions between a side's blocking error and its error for one
/// way of waiting: the shared cases map one to one; the extra case is the
/// one for giving up.
macro_rules! waiting_error {
    ($name:ident, $base:ident, $gave_up:ident, $msg:literal,
     [$($v:ident),*], $($fields:ident { $($f:ident),* }),*) => {
        impl From<$base> for $name {
            fn from(e: $base) -> Self {
                match e {
                    $( $base::$v => $name::$v, )*
                    $( $base::$fields { $($f),* } => $name::$fields { $($f),* }, )*
                    $base::Corrupted(c) => $name::Corrupted(c),
                }
            }
        }

        impl From<Corrupted> for $name {
            fn from(e: Corrupted) -> Self {
                $name::Corrupted(e)
            }
        }

        impl $name {
            /// The blocking call's error for the same case, or `None` for
            #[doc = concat!("[`", stringify!($name), "::", stringify!($gave_up), "`].")]
            pub fn into_stop(self) -> Option<$base> {
                match self {
                    $name::$gave_up => None,
                    $( $name::$v => Some($base::$v), )*
                    $( $name::$fields { $($f),* } => Some($base::$fields { $($f),* }), )*
                    $name::Corrupted(c) => Some($base::Corrupted(c)),
                }
            }

            #[doc = concat!("Whether this is [`", stringify!($name), "::", stringify!($gave_up), "`].")]
            pub fn gave_up(&self) -> bool {
                matches!(self, $name::$gave_up)
            }

            pub(crate) fn from_fail(f: crate::wait::Fail<$base, ()>) -> Self {
                match f {
                    crate::wait::Fail::Blocked(()) => $name::$gave_up,
                    crate::wait::Fail::Stop(e) => e.into(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.clone().into_stop() {
                    None => f.write_str($msg),
                    Some(e) => e.fmt(f),
                }
            }
        }

        impl Error for $name {}
    };
}

waiting_error!(
    TrySendError,
    SendError,
    Full,
    "the queue is full",
    [Disconnected, Closed],
    TooLarge { len, max },
    Readiness { reason }
);
waiting_error!(
    SendTimeoutError,
    SendError,
    Timeout,
    "timed out: the queue stayed full",
    [Disconnected, Closed],
    TooLarge { len, max },
    Readiness { reason }
);
waiting_error!(
    TryRecvError,
    RecvError,
    Empty,
    "the queue is empty",
    [Disconnected, Closed],
    BufferTooSmall { len, buf },
    Readiness { reason }
);
waiting_error!(
    RecvTimeoutError,
    RecvError,
    Timeout,
    "timed out: no message arrived",
    [Disconnected, Closed],
    BufferTooSmall { len, buf },
    Readiness { reason }
);

impl From<Corrupted> for SendError {
    fn from(e: Corrupted) -> Self {
        SendError::Corrupted(e)
    }
}

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
    SendError::Disconnected | SendError::Closed => io::ErrorKind::BrokenPipe,
    SendError::Readiness { .. } => io::ErrorKind::Other,
    SendError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(TrySendError,
    TrySendError::Full => io::ErrorKind::WouldBlock,
    TrySendError::TooLarge { .. } => io::ErrorKind::InvalidInput,
    TrySendError::Disconnected | TrySendError::Closed => io::ErrorKind::BrokenPipe,
    TrySendError::Readiness { .. } => io::ErrorKind::Other,
    TrySendError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(SendTimeoutError,
    SendTimeoutError::Timeout => io::ErrorKind::TimedOut,
    SendTimeoutError::TooLarge { .. } => io::ErrorKind::InvalidInput,
    SendTimeoutError::Disconnected | SendTimeoutError::Closed => io::ErrorKind::BrokenPipe,
    SendTimeoutError::Readiness { .. } => io::ErrorKind::Other,
    SendTimeoutError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(RecvError,
    RecvError::Disconnected | RecvError::Closed => io::ErrorKind::UnexpectedEof,
    RecvError::Readiness { .. } => io::ErrorKind::Other,
    RecvError::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
    RecvError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(TryRecvError,
    TryRecvError::Empty => io::ErrorKind::WouldBlock,
    TryRecvError::Disconnected | TryRecvError::Closed => io::ErrorKind::UnexpectedEof,
    TryRecvError::Readiness { .. } => io::ErrorKind::Other,
    TryRecvError::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
    TryRecvError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(RecvTimeoutError,
    RecvTimeoutError::Timeout => io::ErrorKind::TimedOut,
    RecvTimeoutError::Disconnected | RecvTimeoutError::Closed => io::ErrorKind::UnexpectedEof,
    RecvTimeoutError::Readiness { .. } => io::ErrorKind::Other,
    RecvTimeoutError::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
    RecvTimeoutError::Corrupted(_) => io::ErrorKind::InvalidData,
);
into_io!(RegisterError,
    RegisterError::TooMany { .. } => io::ErrorKind::QuotaExceeded,
    RegisterError::Closed => io::ErrorKind::BrokenPipe,
    RegisterError::Corrupted(_) => io::ErrorKind::InvalidData,
);
