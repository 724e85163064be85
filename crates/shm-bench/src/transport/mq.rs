//! POSIX message queues (`mq_open`, `mq_send`, `mq_receive`) at the limits
//! an unprivileged user gets: at most `/proc/sys/fs/mqueue/msg_max`
//! messages (default 10) of at most `/proc/sys/fs/mqueue/msgsize_max` bytes
//! (default 8192). Larger messages are reported as not applicable.

use std::io;

use nix::mqueue::{MQ_OFlag, MqAttr, MqdT, mq_close, mq_open, mq_receive, mq_send, mq_unlink};
use nix::sys::stat::Mode;

use super::{ChanSpec, Check, CreateError, Rx, Tx};

fn proc_limit(name: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A queue name the parent created; unlinked on drop.
#[derive(Debug)]
pub struct MqName {
    name: String,
    /// Depth the queue was created with.
    pub capacity: usize,
}

impl MqName {
    /// `mq_unlink`; a queue already gone is fine.
    pub fn unlink(&self) {
        let _ = mq_unlink(self.name.as_str());
    }
}

impl Drop for MqName {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// Creates queue `name` with messages of `spec.size` bytes, as deep as
/// `spec.capacity` or `msg_max`, whichever is smaller.
pub fn create(name: &str, spec: ChanSpec) -> Result<MqName, CreateError> {
    let msgsize_max = proc_limit("msgsize_max").unwrap_or(8192);
    let msg_max = proc_limit("msg_max").unwrap_or(10);
    if spec.size > msgsize_max {
        return Err(CreateError::Unsupported(format!(
            "{} B exceeds /proc/sys/fs/mqueue/msgsize_max ({msgsize_max} B)",
            spec.size
        )));
    }
    let capacity = spec.capacity.min(msg_max).max(1);
    let attr = MqAttr::new(0, capacity as _, spec.size as _, 0);
    let fd = mq_open(
        name,
        MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
        Some(&attr),
    )
    .map_err(io::Error::from)?;
    let owned = MqName {
        name: name.to_owned(),
        capacity,
    };
    mq_close(fd).map_err(io::Error::from)?;
    Ok(owned)
}

/// An open queue descriptor, closed on drop.
#[derive(Debug)]
struct Mq(Option<MqdT>);

impl Mq {
    fn open(name: &str, flag: MQ_OFlag) -> io::Result<Self> {
        let fd = mq_open(name, flag | MQ_OFlag::O_CLOEXEC, Mode::empty(), None)?;
        Ok(Mq(Some(fd)))
    }

    fn fd(&self) -> &MqdT {
        self.0.as_ref().expect("descriptor present until drop")
    }
}

impl Drop for Mq {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            // Nothing to report to from a destructor.
            let _ = mq_close(fd);
        }
    }
}

/// Sending end.
#[derive(Debug)]
pub struct MqTx {
    mq: Mq,
    buf: Vec<u8>,
}

impl MqTx {
    /// Opens `name` write-only.
    pub fn open(name: &str, spec: ChanSpec) -> io::Result<Self> {
        Ok(MqTx {
            mq: Mq::open(name, MQ_OFlag::O_WRONLY)?,
            buf: vec![0; spec.size],
        })
    }
}

impl Tx for MqTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let buf = &mut self.buf[..len];
        fill(buf);
        loop {
            match mq_send(self.mq.fd(), buf, 0) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }
}

/// Receiving end.
#[derive(Debug)]
pub struct MqRx {
    mq: Mq,
    buf: Vec<u8>,
}

impl MqRx {
    /// Opens `name` read-only; the buffer is the queue's message size, as
    /// `mq_receive` requires.
    pub fn open(name: &str, spec: ChanSpec) -> io::Result<Self> {
        let mq = Mq::open(name, MQ_OFlag::O_RDONLY)?;
        let size = nix::mqueue::mq_getattr(mq.fd())?.msgsize() as usize;
        Ok(MqRx {
            mq,
            buf: vec![0; size.max(spec.size)],
        })
    }
}

impl Rx for MqRx {
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()> {
        let mut prio = 0;
        let n = loop {
            match mq_receive(self.mq.fd(), &mut self.buf, &mut prio) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r?,
            }
        };
        f(&self.buf[..n])
    }
}
