//! [`TypedQueue<T>`]: the same queue carrying fixed-size `Copy` values.

use std::marker::PhantomData;
use std::time::Duration;

use shm_core::{SegmentId, ShmSafe};

use crate::error::{
    QueueOpenError, RecvError, RecvTimeoutError, RegisterError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::queue::{Inner, Queue, QueueOptions, Stats};
use crate::wait::{Fail, Forever, Try, Until};
use crate::{Receiver, Sender};

/// A queue of `T` values. The message type's [`ShmSafe::TYPE_ID`] is
/// recorded in the segment; opening with another `T` fails with
/// [`QueueOpenError::WrongMessageType`]. Like [`Queue`], it is a cheap
/// handle to clone, and its senders and receivers own their handle.
///
/// The message type is plain `#[repr(C)]` data: derive [`ShmSafe`] for it
/// (feature `derive`), no `unsafe` needed.
///
/// ```
/// use shm_queue::{QueueOptions, RecvError, SegmentId, ShmSafe, TypedQueue};
///
/// #[derive(Clone, Copy, Debug, PartialEq, ShmSafe)]
/// #[repr(C)]
/// struct Point {
///     x: i32,
///     y: i32,
/// }
///
/// let id = SegmentId::posix(&format!("/doc-typed-{}", std::process::id()))?;
/// // The slot size is `size_of::<Point>()`; the type id is recorded.
/// let queue = TypedQueue::<Point>::create(&id, &QueueOptions::new().capacity(8))?;
/// // Another process opens it as `TypedQueue::<Point>::open(&id)`; another
/// // type is refused.
/// assert!(TypedQueue::<[u32; 2]>::open(&id).is_err());
/// let rx = queue.receiver()?;
/// {
///     let tx = queue.sender()?;
///     tx.send(Point { x: 1, y: 2 })?;
/// }
/// assert_eq!(rx.recv()?, Point { x: 1, y: 2 });
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TypedQueue<T: ShmSafe + Copy> {
    inner: Queue,
    _t: PhantomData<fn() -> T>,
}

fn slot_opts<T>(opts: &QueueOptions) -> QueueOptions {
    // A type over 4 GiB gets a slot size `create` refuses, not a wrapped one.
    let size = u32::try_from(size_of::<T>().max(1)).unwrap_or(u32::MAX);
    opts.clone().slot_size(size)
}

impl<T: ShmSafe + Copy> TypedQueue<T> {
    /// Creates a queue of `T` exclusively; the slot size of `opts` is
    /// replaced by `size_of::<T>()`.
    pub fn create(id: &SegmentId, opts: &QueueOptions) -> Result<Self, QueueOpenError> {
        Ok(Self::wrap(Queue::wrap(Inner::create(
            id,
            &slot_opts::<T>(opts),
            T::TYPE_ID,
        )?)))
    }

    /// Opens a queue of `T`.
    pub fn open(id: &SegmentId) -> Result<Self, QueueOpenError> {
        Ok(Self::wrap(Queue::wrap(Inner::open(
            id,
            &QueueOptions::new(),
            T::TYPE_ID,
            true,
        )?)))
    }

    /// Opens or creates a queue of `T`; says whether this call created it.
    pub fn open_or_create(
        id: &SegmentId,
        opts: &QueueOptions,
    ) -> Result<(Self, bool), QueueOpenError> {
        let (q, created) = Inner::open_or_create(id, &slot_opts::<T>(opts), T::TYPE_ID)?;
        Ok((Self::wrap(Queue::wrap(q)), created))
    }

    fn wrap(inner: Queue) -> Self {
        TypedQueue {
            inner,
            _t: PhantomData,
        }
    }

    /// Registers a producer.
    pub fn sender(&self) -> Result<TypedSender<T>, RegisterError> {
        Ok(TypedSender {
            inner: self.inner.sender()?,
            _t: PhantomData,
        })
    }

    /// Registers a consumer.
    pub fn receiver(&self) -> Result<TypedReceiver<T>, RegisterError> {
        Ok(TypedReceiver {
            inner: self.inner.receiver()?,
            _t: PhantomData,
        })
    }

    /// The untyped queue underneath (for stats, close, the segment).
    pub fn queue(&self) -> &Queue {
        &self.inner
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// A registered producer of `T` (see [`Sender`]).
#[derive(Debug)]
pub struct TypedSender<T> {
    inner: Sender,
    _t: PhantomData<fn(T)>,
}

impl<T: ShmSafe + Copy> TypedSender<T> {
    /// Sends, blocking while full.
    pub fn send(&self, value: T) -> Result<(), SendError> {
        self.inner.send_value(value, Forever).map_err(Fail::stop)
    }

    /// Sends if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError> {
        let r = self.inner.send_value(value, Try);
        self.inner.tried(r).map_err(TrySendError::from_fail)
    }

    /// Sends, blocking at most `timeout`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError> {
        self.inner
            .send_value(value, Until::after(timeout))
            .map_err(SendTimeoutError::from_fail)
    }

    /// Registers another producer of `T` on the same queue.
    pub fn try_clone(&self) -> Result<Self, RegisterError> {
        Ok(TypedSender {
            inner: self.inner.try_clone()?,
            _t: PhantomData,
        })
    }

    /// The untyped sender underneath.
    pub fn as_bytes(&self) -> &Sender {
        &self.inner
    }
}

/// A registered consumer of `T` (see [`Receiver`]).
#[derive(Debug)]
pub struct TypedReceiver<T> {
    inner: Receiver,
    _t: PhantomData<fn() -> T>,
}

impl<T: ShmSafe + Copy> TypedReceiver<T> {
    /// Receives, blocking while empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.inner.recv_value(Forever).map_err(Fail::stop)
    }

    /// Receives if a value is there now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let r = self.inner.recv_value(Try);
        self.inner.tried(r).map_err(TryRecvError::from_fail)
    }

    /// Receives, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.inner
            .recv_value(Until::after(timeout))
            .map_err(RecvTimeoutError::from_fail)
    }

    /// A blocking iterator over the values: it ends when
    /// [`recv`](TypedReceiver::recv) would fail.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// An iterator over the values there now.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// Registers another consumer of `T` on the same queue.
    pub fn try_clone(&self) -> Result<Self, RegisterError> {
        Ok(TypedReceiver {
            inner: self.inner.try_clone()?,
            _t: PhantomData,
        })
    }

    /// The untyped receiver underneath.
    pub fn as_bytes(&self) -> &Receiver {
        &self.inner
    }
}
