//! The producer side: [`Sender`].

use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use shm_core::ShmSafe;

use crate::error::{Corrupted, RegisterError, SendError, SendTimeoutError, TrySendError};
use crate::kill_points::kill_point;
use crate::layout::Registration;
use crate::payload;
use crate::queue::{Inner, Queue};
use crate::ready::Readiness;
use crate::registry::Role;
use crate::ring::Side;
use crate::wait::{Fail, Forever, How, Patience, Try, Until};

/// A registered producer: it owns a handle on the queue, so it can move
/// into a thread or a task on its own (`Send + 'static`). Dropping it
/// unregisters; when the last producer is gone, receivers get
/// [`RecvError::Disconnected`](crate::RecvError::Disconnected) after
/// draining.
///
/// It is not `Clone`: a second sender is a second registration, which can
/// fail (the table holds [`MAX_PEERS`](crate::MAX_PEERS)), so it is made
/// by [`Sender::try_clone`] (or [`Queue::sender`]), as `File::try_clone`
/// duplicates a descriptor. It is not `Sync` either: its registration
/// publishes one claim at a time, so one thread uses it at a time.
///
/// A `Sender` belongs to the process that registered it: a child that
/// inherits it across `fork` must open the queue again.
///
/// ```
/// use shm_queue::{Queue, QueueOptions, SegmentId, TrySendError};
///
/// let id = SegmentId::posix(&format!("/doc-sender-{}", std::process::id()))?;
/// let queue = Queue::create(&id, &QueueOptions::new().capacity(1).slot_size(16))?;
/// let tx = queue.sender()?;
/// tx.send(b"first")?;
/// assert_eq!(tx.try_send(b"second"), Err(TrySendError::Full));
/// // A serializer writes straight into the slot and says how much it wrote.
/// let rx = queue.receiver()?;
/// rx.recv()?;
/// let n = tx.send_filled(|slot| {
///     slot[..3].copy_from_slice(b"abc");
///     Ok::<_, std::convert::Infallible>(3)
/// })??;
/// assert_eq!((n, rx.recv()?), (3, b"abc".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Sender {
    queue: Queue,
    index: usize,
    patience: Patience,
    ready: Readiness,
    /// `!Sync` (the `Patience` cell already is; this says it on purpose).
    _one_thread: PhantomData<std::cell::Cell<()>>,
}

/// Gives claimed positions up if the code between claim and commit
/// unwinds or fails: they become tombstones, and the claim is withdrawn.
struct SendClaim<'a> {
    inner: &'a Inner,
    rec: &'a Registration,
    /// First position not committed yet.
    next: u64,
    end: u64,
    /// Consumers asleep on `tail` to wake once the claim is done.
    wake: bool,
}

impl SendClaim<'_> {
    /// Commits the next position (its payload and length written).
    fn commit(&mut self) -> Result<(), Corrupted> {
        let pos = self.next;
        self.inner
            .ring()
            .commit(pos)
            .map_err(|b| self.inner.bad(b))?;
        self.next += 1;
        Ok(())
    }
}

impl Drop for SendClaim<'_> {
    fn drop(&mut self) {
        let ring = self.inner.ring();
        for pos in self.next..self.end {
            // A claim taken over meanwhile is someone else's now.
            let _ = ring.abandon(pos);
        }
        self.rec.withdraw();
        if self.wake {
            ring.index(Side::Send).wake_all();
        }
    }
}

type Sent<R, H> = Result<R, Fail<SendError, <H as How>::Blocked>>;

impl Sender {
    pub(crate) fn new(queue: Queue, index: usize) -> Self {
        Sender {
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
        self.inner().registration(true, self.index)
    }

    /// Claims up to `max` positions (0: only waits until one is free),
    /// blocking per `how`.
    fn claim<H: How>(&self, max: usize, how: H) -> Sent<SendClaim<'_>, H> {
        let rec = self.rec();
        let inner = self.inner();
        let (start, n, wake) = inner.acquire(Role::Producer, rec, max, how, &self.patience)?;
        Ok(SendClaim {
            inner,
            rec,
            next: start,
            end: start + n as u64,
            wake,
        })
    }

    fn send_inner<H: How>(&self, msg: &[u8], how: H) -> Sent<(), H> {
        self.send_in_place(msg.len(), how, |buf| {
            // With kill points, in two halves, so a kill point can stop a
            // send mid-copy.
            let half = if cfg!(feature = "kill-points") {
                msg.len() / 2
            } else {
                0
            };
            buf[..half].copy_from_slice(&msg[..half]);
            kill_point("send:writing");
            buf[half..].copy_from_slice(&msg[half..]);
        })
    }

    fn check_len(&self, len: usize) -> Result<(), SendError> {
        let max = self.inner().slot_size;
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Claims one slot, lets `write` fill its whole payload and say how
    /// long the message is, and commits it; a `None` length gives the slot
    /// up (a tombstone) and sends nothing.
    fn send_filling<H: How, R>(
        &self,
        how: H,
        write: impl FnOnce(&mut [u8]) -> (Option<usize>, R),
    ) -> Sent<R, H> {
        let q = self.inner();
        let mut claim = self.claim(1, how)?;
        let pos = claim.next;
        let ptr = q.payload_ptr(pos)?;
        // SAFETY: `ptr` is the payload of the slot of `pos`, in bounds for
        // `slot_size` bytes (`payload_ptr` checked), and we hold the claim
        // on `pos` until `commit` below (or the claim's drop): no
        // cooperating process reads or writes these bytes meanwhile.
        let (len, out) = write(unsafe { payload::payload_mut(ptr, q.slot_size) });
        let Some(len) = len else {
            // Dropping the claim turns the position into a tombstone.
            return Ok(out);
        };
        if len > q.slot_size {
            return Err(Fail::Stop(SendError::TooLarge {
                len,
                max: q.slot_size,
            }));
        }
        q.set_len(pos, len)?;
        kill_point("send:written");
        claim.commit()?;
        kill_point("send:committed");
        drop(claim);
        Ok(out)
    }

    fn send_in_place<H: How, R>(
        &self,
        len: usize,
        how: H,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Sent<R, H> {
        self.check_len(len).map_err(Fail::Stop)?;
        self.send_filling(how, |buf| (Some(len), write(&mut buf[..len])))
    }

    /// Sends, blocking while the queue is full.
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_inner(msg, Forever).map_err(Fail::stop)
    }

    /// Sends if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), TrySendError> {
        let r = self.send_inner(msg, Try);
        self.tried(r).map_err(TrySendError::from_fail)
    }

    /// After a `try_*`: finding no room arms the readiness helper, if any.
    #[inline]
    pub(crate) fn tried<T>(&self, r: Sent<T, Try>) -> Sent<T, Try> {
        self.ready.tried(r)
    }

    /// A descriptor that becomes readable when the queue may have room
    /// (or closed, or lost its consumers): wait for it, then call
    /// [`try_send`](Sender::try_send) until it reports
    /// [`TrySendError::Full`], which re-arms it. A hint, never a promise;
    /// see [`Receiver::ready_fd`](crate::Receiver::ready_fd).
    pub fn ready_fd(&self) -> Result<BorrowedFd<'_>, SendError> {
        self.ready
            .fd(&self.queue, Role::Producer, self.index)
            .map_err(|e| SendError::Readiness {
                reason: e.to_string(),
            })
    }

    /// Sends, waiting asynchronously while the queue is full (feature
    /// `tokio`; see [`Receiver::recv_async`](crate::Receiver::recv_async)
    /// for how it waits). Cancel-safe: a dropped future sent nothing and
    /// leaves no claim behind.
    #[cfg(feature = "tokio")]
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.check_len(msg.len())?;
        loop {
            let r = self.send_inner(msg, Try);
            match self.tried(r) {
                Ok(()) => return Ok(()),
                Err(Fail::Blocked(())) => {}
                Err(Fail::Stop(e)) => return Err(e),
            }
            self.ready
                .readable(&self.queue, Role::Producer, self.index)
                .await
                .map_err(|e| SendError::Readiness {
                    reason: e.to_string(),
                })?;
        }
    }

    /// Sends, blocking at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.send_inner(msg, Until::after(timeout))
            .map_err(SendTimeoutError::from_fail)
    }

    /// Zero-copy send: `write` fills the slot in place with a message of
    /// exactly `len` bytes, blocking while the queue is full. If `write`
    /// panics the claim is abandoned (a tombstone receivers skip) and
    /// nothing is sent.
    pub fn send_with<R>(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        self.send_in_place(len, Forever, write).map_err(Fail::stop)
    }

    /// [`send_with`](Sender::send_with) if there is room now.
    pub fn try_send_with<R>(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, TrySendError> {
        let r = self.send_in_place(len, Try, write);
        self.tried(r).map_err(TrySendError::from_fail)
    }

    /// [`send_with`](Sender::send_with), blocking at most `timeout`.
    pub fn send_with_timeout<R>(
        &self,
        len: usize,
        timeout: Duration,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendTimeoutError> {
        self.send_in_place(len, Until::after(timeout), write)
            .map_err(SendTimeoutError::from_fail)
    }

    /// Zero-copy send of a message whose length the writer learns as it
    /// writes (a serializer): `fill` gets the whole slot
    /// ([`Queue::slot_size`] bytes, holding whatever an earlier message
    /// left) and returns how many bytes of it make the message. Blocks
    /// while the queue is full.
    ///
    /// If `fill` fails, or panics, the slot is given up (a tombstone
    /// receivers skip), nothing is sent, and its error is returned inside
    /// `Ok`; a length over the slot size is refused with
    /// [`SendError::TooLarge`]. On success, the inner `Ok` holds the length
    /// sent.
    pub fn send_filled<E>(
        &self,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, SendError> {
        self.send_filling(Forever, |buf| match fill(buf) {
            Ok(len) => (Some(len), Ok(len)),
            Err(e) => (None, Err(e)),
        })
        .map_err(Fail::stop)
    }

    /// [`send_filled`](Sender::send_filled) if there is room now.
    pub fn try_send_filled<E>(
        &self,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, TrySendError> {
        let r = self.send_filling(Try, |buf| match fill(buf) {
            Ok(len) => (Some(len), Ok(len)),
            Err(e) => (None, Err(e)),
        });
        self.tried(r).map_err(TrySendError::from_fail)
    }

    /// Sends every message of `msgs` in order, claiming as many slots at
    /// once as are free. Blocks while the queue is full. On an error, the
    /// messages before the returned count were sent.
    pub fn send_batch(&self, msgs: &[&[u8]]) -> Result<(), (usize, SendError)> {
        let q = self.inner();
        if let Some(m) = msgs.iter().find(|m| m.len() > q.slot_size) {
            return Err((
                0,
                SendError::TooLarge {
                    len: m.len(),
                    max: q.slot_size,
                },
            ));
        }
        let mut done = 0;
        while done < msgs.len() {
            let mut claim = self
                .claim(msgs.len() - done, Forever)
                .map_err(|e| (done, e.stop()))?;
            let n = (claim.end - claim.next) as usize;
            for m in &msgs[done..done + n] {
                let pos = claim.next;
                let ptr = q.payload_ptr(pos).map_err(|e| (done, e.into()))?;
                q.set_len(pos, m.len()).map_err(|e| (done, e.into()))?;
                // SAFETY: the payload of a slot we hold the claim on, in
                // bounds for `slot_size >= m.len()` bytes.
                unsafe { payload::payload_mut(ptr, m.len()) }.copy_from_slice(m);
                claim.commit().map_err(|e| (done, e.into()))?;
                done += 1;
            }
        }
        Ok(())
    }

    pub(crate) fn send_value<T: ShmSafe + Copy, H: How>(&self, value: T, how: H) -> Sent<(), H> {
        self.send_in_place(size_of::<T>(), how, |buf| {
            // SAFETY: `buf` is the claimed payload, exactly `size_of::<T>()`
            // bytes long.
            unsafe { payload::write_value(buf.as_mut_ptr(), value) }
        })
    }

    /// Registers another producer on the same queue, for another thread:
    /// a sender of its own, with its own registration.
    pub fn try_clone(&self) -> Result<Sender, RegisterError> {
        self.queue.sender()
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.inner().unregister(Role::Producer, self.index);
    }
}
