//! crossbeam-channel between two threads of one process, for reference.
//!
//! Messages are `Vec<u8>` moved through a bounded channel; the receiver
//! hands each buffer back through a second channel so that the sender
//! reuses it instead of allocating (and page-faulting 1 MiB buffers) per
//! message, which is what a careful user does.

use std::io;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{Check, Rx, Tx};

/// A connected pair holding up to `capacity` messages.
pub fn pair(capacity: usize) -> (ChannelTx, ChannelRx) {
    let (tx, rx) = bounded(capacity);
    let (free_tx, free_rx) = bounded(capacity + 2);
    (
        ChannelTx { tx, free: free_rx },
        ChannelRx { rx, free: free_tx },
    )
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the other thread is gone")
}

/// Sending end.
#[derive(Debug, Clone)]
pub struct ChannelTx {
    tx: Sender<Vec<u8>>,
    free: Receiver<Vec<u8>>,
}

impl Tx for ChannelTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let mut v = self.free.try_recv().unwrap_or_default();
        v.resize(len, 0);
        fill(&mut v);
        self.tx.send(v).map_err(|_| gone())
    }
}

/// Receiving end.
#[derive(Debug, Clone)]
pub struct ChannelRx {
    rx: Receiver<Vec<u8>>,
    free: Sender<Vec<u8>>,
}

impl Rx for ChannelRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        let v = self.rx.recv().map_err(|_| gone())?;
        let r = f(&v);
        // A full free list just drops the buffer.
        let _ = self.free.try_send(v);
        r
    }
}
