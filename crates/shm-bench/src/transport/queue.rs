//! shm-queue, through each of its three APIs:
//!
//! - copying: `send(&[u8])` from a private buffer the fill closure wrote,
//!   `recv_into(&mut buf)` before the check closure runs;
//! - zero-copy: `send_with(len, fill)` and `recv_with(check)`, the closures
//!   running on the slot in place;
//! - batch: `send_batch(&[&[u8]])` of up to the case's batch size from
//!   private buffers, `recv_batch(&mut Vec<Vec<u8>>, max)`.
//!
//! All three use the queue's default blocking wait (short spin, then the
//! shared futex).

use std::io;

use shm_queue::{Queue, QueueOptions, Receiver, Sender};

use super::{ChanSpec, Check, CreateError, Rx, Tx};

/// Which API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `send` / `recv_into`.
    Copy,
    /// `send_with` / `recv_with`.
    ZeroCopy,
    /// `send_batch` / `recv_batch`.
    Batch,
}

fn id(name: &str) -> io::Result<shm_core::SegmentId> {
    shm_core::SegmentId::posix(name).map_err(io::Error::other)
}

/// Creates queue `name` with `spec.capacity` slots of `spec.size` bytes;
/// the returned handle owns (and on drop removes) the segment.
pub fn create(name: &str, spec: ChanSpec) -> Result<Queue, CreateError> {
    let opts = QueueOptions::new()
        .capacity(spec.capacity as u32)
        .slot_size(spec.size as u32);
    Queue::create(&id(name)?, &opts).map_err(|e| CreateError::Io(io::Error::other(e)))
}

/// Opens queue `name` for the rest of the child's life (see
/// [`super::open_segment_static`]: the handles borrow it, and the child
/// exits when the run ends; it does not own the segment).
fn open_static(name: &str) -> io::Result<&'static Queue> {
    let mut q = Queue::open(&id(name)?).map_err(io::Error::other)?;
    super::prefault(q.segment_mut());
    Ok(Box::leak(Box::new(q)))
}

/// A registered producer.
#[derive(Debug)]
pub struct QueueTx {
    tx: Sender<'static>,
    api: Api,
    buf: Vec<u8>,
    batch: Vec<Vec<u8>>,
}

impl QueueTx {
    /// Opens `name` and registers a producer.
    pub fn open(name: &str, spec: ChanSpec, api: Api) -> io::Result<Self> {
        let q = open_static(name)?;
        Ok(QueueTx {
            tx: q.sender().map_err(io::Error::other)?,
            api,
            buf: vec![0; spec.size],
            batch: Vec::new(),
        })
    }
}

impl Tx for QueueTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        match self.api {
            Api::ZeroCopy => self
                .tx
                .send_with(len, |b| fill(b))
                .map_err(io::Error::other),
            Api::Copy | Api::Batch => {
                let buf = &mut self.buf[..len];
                fill(buf);
                self.tx.send(buf).map_err(io::Error::other)
            }
        }
    }

    fn send_many(
        &mut self,
        n: usize,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        if self.api != Api::Batch {
            for _ in 0..n {
                self.send(len, fill)?;
            }
            return Ok(());
        }
        if self.batch.len() < n {
            self.batch.resize_with(n, Vec::new);
        }
        for b in &mut self.batch[..n] {
            b.resize(len, 0);
            fill(b);
        }
        let msgs: Vec<&[u8]> = self.batch[..n].iter().map(Vec::as_slice).collect();
        self.tx
            .send_batch(&msgs)
            .map_err(|(sent, e)| io::Error::other(format!("send_batch after {sent}: {e}")))
    }
}

/// A registered consumer.
#[derive(Debug)]
pub struct QueueRx {
    rx: Receiver<'static>,
    api: Api,
    buf: Vec<u8>,
    batch: Vec<Vec<u8>>,
}

impl QueueRx {
    /// Opens `name` and registers a consumer.
    pub fn open(name: &str, api: Api) -> io::Result<Self> {
        let q = open_static(name)?;
        Ok(QueueRx {
            rx: q.receiver().map_err(io::Error::other)?,
            api,
            buf: vec![0; q.slot_size()],
            batch: Vec::new(),
        })
    }
}

impl Rx for QueueRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        match self.api {
            Api::ZeroCopy => self.rx.recv_with(|m| f(m)).map_err(io::Error::other)?,
            Api::Copy | Api::Batch => {
                let n = self.rx.recv_into(&mut self.buf).map_err(io::Error::other)?;
                f(&self.buf[..n])
            }
        }
    }

    fn recv_many(&mut self, max: usize, f: &mut Check<'_>) -> io::Result<usize> {
        if self.api != Api::Batch {
            self.recv(f)?;
            return Ok(1);
        }
        self.batch.clear();
        let n = self
            .rx
            .recv_batch(&mut self.batch, max)
            .map_err(io::Error::other)?;
        for m in &self.batch {
            f(m)?;
        }
        Ok(n)
    }
}
