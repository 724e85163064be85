//! The consumer side: [`Receiver`] and its iterators.

use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use shm_core::ShmSafe;

use crate::error::{Corrupted, RecvError, RecvTimeoutError, RegisterError, TryRecvError};
use crate::kill_points::kill_point;
use crate::layout::{FULL, Registration, SKIP};
use crate::payload;
use crate::queue::{Inner, Queue};
use crate::ready::Readiness;
use crate::registry::Role;
use crate::ring::Side;
use crate::wait::{Fail, Forever, How, Patience, Try, Until};

/// A registered consumer: it owns a handle on the queue, so it can move
/// into a thread or a task on its own (`Send + 'static`). Dropping it
/// unregisters; when the last consumer is gone, senders get
/// [`SendError::Disconnected`](crate::SendError::Disconnected).
///
/// Like [`Sender`](crate::Sender), it is made again with
/// [`Receiver::try_clone`] (a new registration) rather than cloned, and it
/// is used by one thread at a time (not `Sync`). A child that inherits it
/// across `fork` must open the queue again.
///
/// ```
/// use shm_queue::{Queue, QueueOptions, SegmentId, TryRecvError};
///
/// let id = SegmentId::posix(&format!("/doc-receiver-{}", std::process::id()))?;
/// let queue = Queue::create(&id, &QueueOptions::new().capacity(8).slot_size(16))?;
/// let rx = queue.receiver()?;
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// {
///     let tx = queue.sender()?;
///     for word in ["one", "two", "three"] {
///         tx.send(word.as_bytes())?;
///     }
/// } // the only sender leaves: the iterator ends once the queue is drained
/// let words: Vec<Vec<u8>> = rx.iter().collect();
/// assert_eq!(words, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Receiver {
    queue: Queue,
    index: usize,
    patience: Patience,
    ready: Readiness,
    _one_thread: PhantomData<std::cell::Cell<()>>,
}

/// Claimed positions being read. Releases what is left if the code
/// between claim and release unwinds or fails (the messages were taken:
/// they are gone either way), and withdraws the claim.
struct RecvClaim<'a> {
    inner: &'a Inner,
    rec: &'a Registration,
    /// First position not released yet.
    next: u64,
    end: u64,
    /// Producers asleep on `head` to wake once the claim is done.
    wake: bool,
}

impl RecvClaim<'_> {
    /// The tag (FULL or SKIP) of the next position.
    fn tag(&self) -> Result<u64, Corrupted> {
        self.inner
            .ring()
            .tag(self.next)
            .map_err(|b| self.inner.bad(b))
    }

    /// Releases the next position, which held `tag`.
    fn release(&mut self, tag: u64) -> Result<(), Corrupted> {
        let pos = self.next;
        self.next += 1;
        self.inner
            .ring()
            .release(pos, tag)
            .map_err(|b| self.inner.bad(b))
    }

    fn is_done(&self) -> bool {
        self.next == self.end
    }
}

impl Drop for RecvClaim<'_> {
    fn drop(&mut self) {
        let ring = self.inner.ring();
        for pos in self.next..self.end {
            if let Ok(tag) = ring.tag(pos) {
                let _ = ring.release(pos, tag);
            }
        }
        self.rec.withdraw();
        if self.wake {
            ring.index(Side::Recv).wake_all();
        }
    }
}

type Received<R, H> = Result<R, Fail<RecvError, <H as How>::Blocked>>;

impl Receiver {
    pub(crate) fn new(queue: Queue, index: usize) -> Self {
        Receiver {
            queue,
            index,
            patience: Patience::default(),
            ready: Readiness::default(),
            _one_thread: PhantomData,
        }
    }

    #[inline]
    fn inner(&self) -> &Inner {
        &self.queue.0
    }

    fn rec(&self) -> &Registration {
        self.inner().registration(false, self.index)
    }

    fn claim<H: How>(&self, max: usize, how: H) -> Received<RecvClaim<'_>, H> {
        let rec = self.rec();
        let inner = self.inner();
        let (start, n, wake) = inner.acquire(Role::Consumer, rec, max, how, &self.patience)?;
        Ok(RecvClaim {
            inner,
            rec,
            next: start,
            end: start + n as u64,
            wake,
        })
    }

    /// Takes one message and hands it to `read` in place (tombstones are
    /// released and skipped on the way).
    fn recv_in_place<H: How, R>(&self, how: H, read: impl FnOnce(&[u8]) -> R) -> Received<R, H> {
        let q = self.inner();
        loop {
            let mut claim = self.claim(1, how)?;
            let tag = claim.tag()?;
            if tag == SKIP {
                claim.release(SKIP)?;
                continue;
            }
            let pos = claim.next;
            let len = q.msg_len(pos)?;
            let ptr = q.payload_ptr(pos)?;
            kill_point("recv:reading");
            // SAFETY: the payload of the slot of `pos`, in bounds for
            // `slot_size >= len` bytes (`payload_ptr` checked), under our
            // claim until `release`: no cooperating process writes it
            // meanwhile.
            let out = read(unsafe { payload::payload(ptr, len) });
            // Bytes read from pages lost to a truncation are zeros: not a
            // message.
            q.intact()?;
            kill_point("recv:read");
            claim.release(FULL)?;
            drop(claim);
            kill_point("recv:released");
            return Ok(out);
        }
    }

    /// Receives the next message, blocking while the queue is empty.
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_in_place(Forever, <[u8]>::to_vec)
            .map_err(Fail::stop)
    }

    /// Receives if a message is there now.
    pub fn try_recv(&self) -> Result<Vec<u8>, TryRecvError> {
        self.try_recv_with(<[u8]>::to_vec)
    }

    /// Receives, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        self.recv_in_place(Until::after(timeout), <[u8]>::to_vec)
            .map_err(RecvTimeoutError::from_fail)
    }

    /// Receives into `buf` without allocating, returning the message's
    /// length. `buf` must be at least [`Queue::slot_size`] long, so that no
    /// message can be cut; a shorter one is refused with
    /// [`RecvError::BufferTooSmall`] before anything is taken.
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let slot_size = self.inner().slot_size;
        if buf.len() < slot_size {
            return Err(RecvError::BufferTooSmall {
                len: slot_size,
                buf: buf.len(),
            });
        }
        self.recv_with(|m| {
            buf[..m.len()].copy_from_slice(m);
            m.len()
        })
    }

    /// Zero-copy receive: `read` sees the message in place in its slot,
    /// blocking while the queue is empty.
    pub fn recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.recv_in_place(Forever, read).map_err(Fail::stop)
    }

    /// [`recv_with`](Receiver::recv_with) if a message is there now.
    pub fn try_recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R, TryRecvError> {
        let r = self.recv_in_place(Try, read);
        self.tried(r).map_err(TryRecvError::from_fail)
    }

    /// After a `try_*`: found nothing arms the readiness helper, if any.
    #[inline]
    pub(crate) fn tried<T>(&self, r: Received<T, Try>) -> Received<T, Try> {
        self.ready.tried(r)
    }

    /// A descriptor that becomes readable when a message may be there (or
    /// the queue closed, or its producers left), for `epoll`, `mio`,
    /// `poll(2)` or any event loop: wait for it, then call
    /// [`try_recv`](Receiver::try_recv) (or another `try_*`) until it
    /// reports [`TryRecvError::Empty`], which re-arms it. It may also turn
    /// readable with nothing to take (then `try_recv` says `Empty`, and
    /// re-arms it): it is a hint, never a promise.
    ///
    /// The first call starts this receiver's readiness helper thread (the
    /// one `recv_async` uses, feature `tokio`); the descriptor lives as
    /// long as the receiver.
    pub fn ready_fd(&self) -> Result<BorrowedFd<'_>, RecvError> {
        self.ready
            .fd(&self.queue, Role::Consumer, self.index)
            .map_err(|e| RecvError::Readiness {
                reason: e.to_string(),
            })
    }

    /// Receives the next message, waiting asynchronously while the queue
    /// is empty (feature `tokio`; needs a tokio runtime with I/O enabled).
    ///
    /// Cancel-safe: dropping the future before it completes takes nothing
    /// from the queue and leaves no claim behind. It takes `&mut self` so
    /// that the future is `Send` (a `Receiver` is not `Sync`).
    ///
    /// The first call starts a helper thread for this receiver that sleeps
    /// on the queue as a blocking `recv` would, and wakes the task through
    /// an `eventfd` registered with the runtime; idle, it costs a wake-up
    /// every 10 ms of that thread only while a receive is pending.
    #[cfg(feature = "tokio")]
    pub async fn recv_async(&mut self) -> Result<Vec<u8>, RecvError> {
        self.recv_with_async(<[u8]>::to_vec).await
    }

    /// [`recv_with`](Receiver::recv_with), waiting asynchronously (see
    /// [`Receiver::recv_async`]); `read` runs synchronously once a message
    /// is there.
    #[cfg(feature = "tokio")]
    pub async fn recv_with_async<R>(
        &mut self,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvError> {
        let mut read = Some(read);
        loop {
            // `read` is taken only when a message is there to give it.
            let r = self.recv_in_place(Try, |m| read.take().map(|f| f(m)));
            match self.tried(r) {
                Ok(Some(out)) => return Ok(out),
                Ok(None) => {
                    return Err(RecvError::Readiness {
                        reason: "the reader was used up".into(),
                    });
                }
                Err(Fail::Blocked(())) => {}
                Err(Fail::Stop(e)) => return Err(e),
            }
            self.ready
                .readable(&self.queue, Role::Consumer, self.index)
                .await
                .map_err(|e| RecvError::Readiness {
                    reason: e.to_string(),
                })?;
        }
    }

    /// [`recv_with`](Receiver::recv_with), blocking at most `timeout`.
    pub fn recv_with_timeout<R>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_in_place(Until::after(timeout), read)
            .map_err(RecvTimeoutError::from_fail)
    }

    /// Receives up to `max` messages with one claim, blocking until at
    /// least one is there, and appends them to `out`. Returns how many.
    pub fn recv_batch(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, RecvError> {
        let q = self.inner();
        loop {
            let mut claim = self.claim(max.max(1), Forever).map_err(Fail::stop)?;
            let mut got = 0;
            // Each message is copied out, then its slot released, so an
            // error never leaves a message half in `out`; the ones before
            // it were taken.
            while !claim.is_done() {
                let tag = claim.tag()?;
                if tag == FULL {
                    let pos = claim.next;
                    let len = q.msg_len(pos)?;
                    let ptr = q.payload_ptr(pos)?;
                    // SAFETY: the payload of a slot under our claim, in
                    // bounds for `slot_size >= len` bytes.
                    let msg = unsafe { payload::payload(ptr, len) }.to_vec();
                    q.intact()?;
                    claim.release(FULL)?;
                    out.push(msg);
                    got += 1;
                } else {
                    claim.release(tag)?;
                }
            }
            if got > 0 {
                return Ok(got);
            }
        }
    }

    /// A blocking iterator over the messages: it ends when
    /// [`recv`](Receiver::recv) would fail (every producer gone and the
    /// queue drained, closed, or corrupted; `recv` then says which).
    pub fn iter(&self) -> Iter<'_> {
        Iter { rx: self }
    }

    /// An iterator over the messages there now: it ends when the queue is
    /// empty (or [`try_recv`](Receiver::try_recv) fails otherwise).
    pub fn try_iter(&self) -> TryIter<'_> {
        TryIter { rx: self }
    }

    pub(crate) fn recv_value<T: ShmSafe + Copy, H: How>(&self, how: H) -> Received<T, H> {
        let q = self.inner();
        let value = self.recv_in_place(how, |m| {
            (m.len() == size_of::<T>()).then(|| {
                // SAFETY: `m` is exactly `size_of::<T>()` bytes of a payload
                // under our claim; `T: ShmSafe` accepts every bit pattern.
                unsafe { payload::read_value::<T>(m.as_ptr()) }
            })
        })?;
        value.ok_or_else(|| {
            Fail::Stop(
                q.corrupted(format!(
                    "a typed message is not {} bytes long",
                    size_of::<T>()
                ))
                .into(),
            )
        })
    }

    /// Registers another consumer on the same queue, for another thread:
    /// a receiver of its own, with its own registration.
    pub fn try_clone(&self) -> Result<Receiver, RegisterError> {
        self.queue.receiver()
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.inner().unregister(Role::Consumer, self.index);
    }
}

/// Blocking iterator from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    rx: &'a Receiver,
}

impl Iterator for Iter<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator from [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a> {
    rx: &'a Receiver,
}

impl Iterator for TryIter<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator from `Receiver::into_iter`.
#[derive(Debug)]
pub struct IntoIter {
    rx: Receiver,
}

impl Iterator for IntoIter {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().ok()
    }
}

impl IntoIterator for Receiver {
    type Item = Vec<u8>;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter { rx: self }
    }
}

impl<'a> IntoIterator for &'a Receiver {
    type Item = Vec<u8>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
