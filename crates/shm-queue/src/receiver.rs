//! The consumer side: [`Receiver`].

use std::marker::PhantomData;
use std::time::Duration;

use shm_core::ShmSafe;

use crate::error::RecvError;
use crate::kill::kill_point;
use crate::layout::{FULL, Registration, SKIP};
use crate::queue::{Queue, Wait};
use crate::registry::Role;
use crate::ring::Side;
use crate::slots;
use crate::wait::{Outcomes, Patience};

/// A registered consumer. Dropping it unregisters; when the last consumer
/// is gone, senders get [`crate::SendError::Disconnected`].
///
/// A `Receiver` belongs to the process that registered it: do not carry it
/// across `fork`. It is not `Sync`: its registration publishes one claim
/// at a time, so one thread uses it at a time (register one per thread).
#[derive(Debug)]
pub struct Receiver<'q> {
    queue: &'q Queue,
    index: usize,
    patience: Patience,
    _one_thread: PhantomData<std::cell::Cell<()>>,
}

/// Claimed positions being read. Releases what is left if the code
/// between claim and release unwinds or fails (the messages were taken:
/// they are gone either way), and withdraws the claim.
struct RecvClaim<'a> {
    queue: &'a Queue,
    rec: &'a Registration,
    /// First position not released yet.
    next: u64,
    end: u64,
    /// Producers asleep on `head` to wake once the claim is done.
    wake: bool,
}

impl RecvClaim<'_> {
    /// The tag (FULL or SKIP) of the next position.
    fn tag(&self) -> Result<u64, RecvError> {
        self.queue
            .ring()
            .tag(self.next)
            .map_err(|b| self.queue.bad(b).into())
    }

    /// Releases the next position, which held `tag`.
    fn release(&mut self, tag: u64) -> Result<(), RecvError> {
        let pos = self.next;
        self.next += 1;
        self.queue
            .ring()
            .release(pos, tag)
            .map_err(|b| self.queue.bad(b).into())
    }

    fn is_done(&self) -> bool {
        self.next == self.end
    }
}

impl Drop for RecvClaim<'_> {
    fn drop(&mut self) {
        let ring = self.queue.ring();
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

impl<'q> Receiver<'q> {
    pub(crate) fn new(queue: &'q Queue, index: usize) -> Self {
        Receiver {
            queue,
            index,
            patience: Patience::default(),
            _one_thread: PhantomData,
        }
    }

    fn rec(&self) -> &'q Registration {
        self.queue.registration(false, self.index)
    }

    fn claim(&self, max: usize, how: Wait) -> Result<RecvClaim<'q>, RecvError> {
        let rec = self.rec();
        let (start, n, wake) = self.queue.acquire(
            Role::Consumer,
            rec,
            max,
            how,
            &self.patience,
            Outcomes {
                would_block: RecvError::Empty,
                timed_out: RecvError::Timeout,
                closed: RecvError::Closed,
                disconnected: RecvError::Disconnected,
            },
        )?;
        Ok(RecvClaim {
            queue: self.queue,
            rec,
            next: start,
            end: start + n as u64,
            wake,
        })
    }

    /// Takes one message and hands it to `read` in place (tombstones are
    /// released and skipped on the way).
    fn recv_in_place<R>(&self, how: Wait, read: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        let q = self.queue;
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
            let out = read(unsafe { slots::payload(ptr, len) });
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
        self.recv_in_place(Wait::Until(None), <[u8]>::to_vec)
    }

    /// Receives if a message is there now.
    pub fn try_recv(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_in_place(Wait::Try, <[u8]>::to_vec)
    }

    /// Receives, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.recv_in_place(Wait::timeout(timeout), <[u8]>::to_vec)
    }

    /// Receives into `buf`, returning the message's length. `buf` must be
    /// at least [`Queue::slot_size`] long, so that no message can be cut;
    /// a shorter one is refused with [`RecvError::BufferTooSmall`] before
    /// anything is taken.
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if buf.len() < self.queue.slot_size {
            return Err(RecvError::BufferTooSmall {
                len: self.queue.slot_size,
                buf: buf.len(),
            });
        }
        self.recv_in_place(Wait::Until(None), |m| {
            buf[..m.len()].copy_from_slice(m);
            m.len()
        })
    }

    /// Zero-copy receive: `read` sees the message in place in its slot.
    pub fn recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.recv_in_place(Wait::Until(None), read)
    }

    /// Zero-copy receive with a deadline.
    pub fn recv_with_timeout<R>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvError> {
        self.recv_in_place(Wait::timeout(timeout), read)
    }

    /// Receives up to `max` messages with one claim, blocking until at
    /// least one is there, and appends them to `out`. Returns how many.
    pub fn recv_batch(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, RecvError> {
        let q = self.queue;
        loop {
            let mut claim = self.claim(max.max(1), Wait::Until(None))?;
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
                    let msg = unsafe { slots::payload(ptr, len) }.to_vec();
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

    pub(crate) fn recv_value<T: ShmSafe + Copy>(&self, how: Wait) -> Result<T, RecvError> {
        let q = self.queue;
        let value = self.recv_in_place(how, |m| {
            (m.len() == size_of::<T>()).then(|| {
                // SAFETY: `m` is exactly `size_of::<T>()` bytes of a payload
                // under our claim; `T: ShmSafe` accepts every bit pattern.
                unsafe { slots::read_value::<T>(m.as_ptr()) }
            })
        })?;
        value.ok_or_else(|| {
            q.corrupted(format!(
                "a typed message is not {} bytes long",
                size_of::<T>()
            ))
            .into()
        })
    }

    /// The queue.
    pub fn queue(&self) -> &'q Queue {
        self.queue
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        self.queue.unregister(Role::Consumer, self.index);
    }
}
