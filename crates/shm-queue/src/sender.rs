//! The producer side: [`Sender`].

use std::marker::PhantomData;
use std::time::Duration;

use shm_core::ShmSafe;

use crate::error::SendError;
use crate::kill::kill_point;
use crate::layout::Registration;
use crate::queue::{Queue, Wait};
use crate::registry::Role;
use crate::ring::Side;
use crate::slots;
use crate::wait::{Outcomes, Patience};

/// A registered producer. Dropping it unregisters; when the last producer
/// is gone, receivers get [`crate::RecvError::Disconnected`] after draining.
///
/// A `Sender` belongs to the process that registered it: do not carry it
/// across `fork`. It is not `Sync`: its registration publishes one claim
/// at a time, so one thread uses it at a time (register one per thread).
#[derive(Debug)]
pub struct Sender<'q> {
    queue: &'q Queue,
    index: usize,
    patience: Patience,
    /// `!Sync` (the `Patience` cell already is; this says it on purpose).
    _one_thread: PhantomData<std::cell::Cell<()>>,
}

/// Gives claimed positions up if the code between claim and commit
/// unwinds or fails: they become tombstones, and the claim is withdrawn.
struct SendClaim<'a> {
    queue: &'a Queue,
    rec: &'a Registration,
    /// First position not committed yet.
    next: u64,
    end: u64,
    /// Consumers asleep on `tail` to wake once the claim is done.
    wake: bool,
}

impl SendClaim<'_> {
    /// Commits the next position (its payload and length written).
    fn commit(&mut self) -> Result<(), SendError> {
        let pos = self.next;
        self.queue
            .ring()
            .commit(pos)
            .map_err(|b| self.queue.bad(b))?;
        self.next += 1;
        Ok(())
    }
}

impl Drop for SendClaim<'_> {
    fn drop(&mut self) {
        let ring = self.queue.ring();
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

impl<'q> Sender<'q> {
    pub(crate) fn new(queue: &'q Queue, index: usize) -> Self {
        Sender {
            queue,
            index,
            patience: Patience::default(),
            _one_thread: PhantomData,
        }
    }

    fn rec(&self) -> &'q Registration {
        self.queue.registration(true, self.index)
    }

    /// Claims up to `max` positions, blocking per `how`.
    fn claim(&self, max: usize, how: Wait) -> Result<SendClaim<'q>, SendError> {
        let rec = self.rec();
        let (start, n, wake) = self.queue.acquire(
            Role::Producer,
            rec,
            max,
            how,
            &self.patience,
            Outcomes {
                would_block: SendError::Full,
                timed_out: SendError::Timeout,
                closed: SendError::Closed,
                disconnected: SendError::Disconnected,
            },
        )?;
        Ok(SendClaim {
            queue: self.queue,
            rec,
            next: start,
            end: start + n as u64,
            wake,
        })
    }

    fn send_inner(&self, msg: &[u8], how: Wait) -> Result<(), SendError> {
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

    fn send_in_place<R>(
        &self,
        len: usize,
        how: Wait,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        let q = self.queue;
        if len > q.slot_size {
            return Err(SendError::TooLarge {
                len,
                max: q.slot_size,
            });
        }
        let mut claim = self.claim(1, how)?;
        let pos = claim.next;
        let ptr = q.payload_ptr(pos)?;
        q.set_len(pos, len)?;
        // SAFETY: `ptr` is the payload of the slot of `pos`, in bounds for
        // `slot_size >= len` bytes (`payload_ptr` checked), and we hold the
        // claim on `pos` until `commit` below: no cooperating process reads
        // or writes these bytes meanwhile.
        let out = write(unsafe { slots::payload_mut(ptr, len) });
        kill_point("send:written");
        claim.commit()?;
        kill_point("send:committed");
        drop(claim);
        Ok(out)
    }

    /// Sends, blocking while the queue is full.
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_inner(msg, Wait::Until(None))
    }

    /// Sends if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_inner(msg, Wait::Try)
    }

    /// Sends, blocking at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_inner(msg, Wait::timeout(timeout))
    }

    /// Zero-copy send: `write` fills the slot in place with a message of
    /// exactly `len` bytes. If `write` panics the claim is abandoned (a
    /// tombstone receivers skip) and nothing is sent.
    pub fn send_with<R>(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        self.send_in_place(len, Wait::Until(None), write)
    }

    /// Sends every message of `msgs` in order, claiming as many slots at
    /// once as are free. Blocks while the queue is full. On an error, the
    /// messages before the returned count were sent.
    pub fn send_batch(&self, msgs: &[&[u8]]) -> Result<(), (usize, SendError)> {
        let q = self.queue;
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
                .claim(msgs.len() - done, Wait::Until(None))
                .map_err(|e| (done, e))?;
            let n = (claim.end - claim.next) as usize;
            for m in &msgs[done..done + n] {
                let pos = claim.next;
                let ptr = q.payload_ptr(pos).map_err(|e| (done, e.into()))?;
                q.set_len(pos, m.len()).map_err(|e| (done, e.into()))?;
                // SAFETY: the payload of a slot we hold the claim on, in
                // bounds for `slot_size >= m.len()` bytes.
                unsafe { slots::payload_mut(ptr, m.len()) }.copy_from_slice(m);
                claim.commit().map_err(|e| (done, e))?;
                done += 1;
            }
        }
        Ok(())
    }

    pub(crate) fn send_value<T: ShmSafe + Copy>(
        &self,
        value: T,
        how: Wait,
    ) -> Result<(), SendError> {
        self.send_in_place(size_of::<T>(), how, |buf| {
            // SAFETY: `buf` is the claimed payload, exactly `size_of::<T>()`
            // bytes long.
            unsafe { slots::write_value(buf.as_mut_ptr(), value) }
        })
    }

    /// The queue.
    pub fn queue(&self) -> &'q Queue {
        self.queue
    }
}

impl Drop for Sender<'_> {
    fn drop(&mut self) {
        self.queue.unregister(Role::Producer, self.index);
    }
}
