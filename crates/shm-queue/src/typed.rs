//! [`TypedQueue<T>`]: the same queue carrying fixed-size `Copy` values.

use std::marker::PhantomData;
use std::time::Duration;

use shm_core::{SegmentId, ShmSafe};

use crate::error::{OpenError, RecvError, RegisterError, SendError};
use crate::queue::{Queue, QueueOptions, Stats, Wait};
use crate::{Receiver, Sender};

/// A queue of `T` values. The message type's [`ShmSafe::TYPE_ID`] is
/// recorded in the segment; opening with another `T` fails with
/// [`OpenError::WrongMessageType`].
#[derive(Debug)]
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
    pub fn create(id: &SegmentId, opts: &QueueOptions) -> Result<Self, OpenError> {
        Ok(Self::wrap(Queue::create_typed(
            id,
            &slot_opts::<T>(opts),
            T::TYPE_ID,
        )?))
    }

    /// Opens a queue of `T`.
    pub fn open(id: &SegmentId) -> Result<Self, OpenError> {
        Ok(Self::wrap(Queue::open_typed(
            id,
            &QueueOptions::new(),
            T::TYPE_ID,
        )?))
    }

    /// Opens or creates a queue of `T`; says whether this call created it.
    pub fn open_or_create(id: &SegmentId, opts: &QueueOptions) -> Result<(Self, bool), OpenError> {
        let (q, created) = Queue::open_or_create_typed(id, &slot_opts::<T>(opts), T::TYPE_ID)?;
        Ok((Self::wrap(q), created))
    }

    fn wrap(inner: Queue) -> Self {
        TypedQueue {
            inner,
            _t: PhantomData,
        }
    }

    /// Registers a producer.
    pub fn sender(&self) -> Result<TypedSender<'_, T>, RegisterError> {
        Ok(TypedSender {
            inner: self.inner.sender()?,
            _t: PhantomData,
        })
    }

    /// Registers a consumer.
    pub fn receiver(&self) -> Result<TypedReceiver<'_, T>, RegisterError> {
        Ok(TypedReceiver {
            inner: self.inner.receiver()?,
            _t: PhantomData,
        })
    }

    /// The untyped queue underneath (for stats, close, the segment).
    pub fn queue(&self) -> &Queue {
        &self.inner
    }

    /// The untyped queue underneath, mutably (to change ownership).
    pub fn queue_mut(&mut self) -> &mut Queue {
        &mut self.inner
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// A registered producer of `T`.
#[derive(Debug)]
pub struct TypedSender<'q, T> {
    inner: Sender<'q>,
    _t: PhantomData<fn(T)>,
}

impl<T: ShmSafe + Copy> TypedSender<'_, T> {
    /// Sends, blocking while full.
    pub fn send(&self, value: T) -> Result<(), SendError> {
        self.inner.send_value(value, Wait::Until(None))
    }

    /// Sends if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), SendError> {
        self.inner.send_value(value, Wait::Try)
    }

    /// Sends, blocking at most `timeout`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError> {
        self.inner.send_value(value, Wait::timeout(timeout))
    }
}

/// A registered consumer of `T`.
#[derive(Debug)]
pub struct TypedReceiver<'q, T> {
    inner: Receiver<'q>,
    _t: PhantomData<fn() -> T>,
}

impl<T: ShmSafe + Copy> TypedReceiver<'_, T> {
    /// Receives, blocking while empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.inner.recv_value(Wait::Until(None))
    }

    /// Receives if a value is there now.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        self.inner.recv_value(Wait::Try)
    }

    /// Receives, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        self.inner.recv_value(Wait::timeout(timeout))
    }
}
