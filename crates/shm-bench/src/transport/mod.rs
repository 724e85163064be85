//! The contenders: one sending and one receiving endpoint per transport,
//! behind the same two traits, plus the parent-side objects that create and
//! remove what the endpoints attach to.
//!
//! Every endpoint is handed a closure: the sender's `fill` writes the
//! message, the receiver's `f` checks it. Copying transports fill a private
//! buffer and copy it in, and copy out before checking; in-place transports
//! run the same closures directly on the slot. The work per message is the
//! same everywhere except for the copies, which is the difference measured.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde_json::{Value, json};

pub mod channel;
// Calls the `unsafe fn`s of `sys::pthread` (init and attach) and
// `Segment::view` (the ring's words).
#[allow(unsafe_code)]
pub mod condvar;
pub mod fd;
#[cfg(feature = "iceoryx2")]
pub mod iceoryx;
pub mod mq;
pub mod queue;
// Calls the `unsafe fn`s of `sys::slot` (in-place slot access) and
// `Segment::view` (the ring's words).
#[allow(unsafe_code)]
pub mod spin;

/// A sending endpoint.
pub trait Tx {
    /// Called once the participant has opened all its endpoints, before it
    /// reports ready: waits until the other end exists and connects to it.
    /// Only transports that connect lazily need it (iceoryx2).
    fn connect(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Sends one message of `len` bytes whose contents `fill` writes.
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()>;

    /// Sends `n` messages of `len` bytes, each written by `fill`. Batching
    /// transports override this; the others send one at a time.
    fn send_many(
        &mut self,
        n: usize,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        for _ in 0..n {
            self.send(len, fill)?;
        }
        Ok(())
    }
}

/// The checking closure a receiver runs on each message.
pub type Check<'a> = dyn FnMut(&[u8]) -> io::Result<()> + 'a;

/// A receiving endpoint.
pub trait Rx {
    /// As [`Tx::connect`].
    fn connect(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Blocks for one message and runs `f` on it.
    fn recv(&mut self, f: &mut Check<'_>) -> io::Result<()>;

    /// Blocks for at least one and at most `max` messages, runs `f` on each
    /// and returns how many. Batching transports override this.
    fn recv_many(&mut self, max: usize, f: &mut Check<'_>) -> io::Result<usize> {
        let _ = max;
        self.recv(f)?;
        Ok(1)
    }
}

/// Everything a benchmark can run between two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contender {
    /// `pipe(2)`.
    Pipe,
    /// `socketpair(AF_UNIX, SOCK_STREAM)`.
    UnixStream,
    /// `socketpair(AF_UNIX, SOCK_SEQPACKET)`.
    UnixSeqpacket,
    /// `mq_open`/`mq_send`/`mq_receive`.
    PosixMq,
    /// A ring under a process-shared pthread mutex and two condvars.
    CondvarRing,
    /// Busy-spinning SPSC ring, copying in and out.
    SpinRing,
    /// Busy-spinning SPSC ring, filled and checked in place.
    SpinRingInPlace,
    /// shm-queue, `send` / `recv_into` with the default blocking wait.
    ShmQueue,
    /// shm-queue, `send_with` / `recv_with` (in place).
    ShmQueueZeroCopy,
    /// shm-queue, `send_batch` / `recv_batch`.
    ShmQueueBatch,
    /// shm-queue, `send` / `recv_async` in a tokio runtime.
    ShmQueueAsync,
    /// iceoryx2 publish-subscribe, the subscriber busy-polling (feature
    /// `iceoryx2`).
    Iceoryx2,
    /// iceoryx2 publish-subscribe plus an event service: the subscriber
    /// blocks on a listener (feature `iceoryx2`).
    Iceoryx2Event,
    /// crossbeam-channel between two threads of one process.
    Crossbeam,
}

impl Contender {
    /// All contenders, in report order.
    pub const ALL: [Contender; 14] = [
        Contender::Pipe,
        Contender::UnixStream,
        Contender::UnixSeqpacket,
        Contender::PosixMq,
        Contender::CondvarRing,
        Contender::SpinRing,
        Contender::SpinRingInPlace,
        Contender::ShmQueue,
        Contender::ShmQueueZeroCopy,
        Contender::ShmQueueBatch,
        Contender::ShmQueueAsync,
        Contender::Iceoryx2,
        Contender::Iceoryx2Event,
        Contender::Crossbeam,
    ];

    /// The name used on the command line, in tables and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Pipe => "pipe",
            Contender::UnixStream => "unix-stream",
            Contender::UnixSeqpacket => "unix-seqpacket",
            Contender::PosixMq => "posix-mq",
            Contender::CondvarRing => "condvar-ring",
            Contender::SpinRing => "spin-ring",
            Contender::SpinRingInPlace => "spin-ring-inplace",
            Contender::ShmQueue => "shm-queue",
            Contender::ShmQueueZeroCopy => "shm-queue-zerocopy",
            Contender::ShmQueueBatch => "shm-queue-batch",
            Contender::ShmQueueAsync => "shm-queue-async",
            Contender::Iceoryx2 => "iceoryx2",
            Contender::Iceoryx2Event => "iceoryx2-event",
            Contender::Crossbeam => "crossbeam",
        }
    }

    /// One line saying what it is.
    pub fn describe(self) -> &'static str {
        match self {
            Contender::Pipe => "pipe(2), default 64 KiB buffer",
            Contender::UnixStream => "AF_UNIX SOCK_STREAM socketpair",
            Contender::UnixSeqpacket => "AF_UNIX SOCK_SEQPACKET socketpair",
            Contender::PosixMq => "POSIX message queue, default limits",
            Contender::CondvarRing => {
                "ring under a pthread mutex and two condvars (written by hand)"
            }
            Contender::SpinRing => "busy-spinning SPSC shm ring, copy in and out (hardware limit)",
            Contender::SpinRingInPlace => "busy-spinning SPSC shm ring, written and read in place",
            Contender::ShmQueue => "shm-queue send / recv_into, default blocking wait",
            Contender::ShmQueueZeroCopy => "shm-queue send_with / recv_with (in place)",
            Contender::ShmQueueBatch => "shm-queue send_batch / recv_batch",
            Contender::ShmQueueAsync => "shm-queue send / recv_async on tokio (readiness helper)",
            Contender::Iceoryx2 => "iceoryx2 publish-subscribe, subscriber busy-polls",
            Contender::Iceoryx2Event => {
                "iceoryx2 publish-subscribe + event service, subscriber blocks on a listener"
            }
            Contender::Crossbeam => "crossbeam-channel bounded, two threads of one process",
        }
    }

    /// Parses [`Contender::name`].
    pub fn from_name(name: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether this build can run it: the iceoryx2 contenders need the
    /// `iceoryx2` feature.
    pub fn available(self) -> bool {
        !self.is_iceoryx2() || cfg!(feature = "iceoryx2")
    }

    /// Whether it is one of the iceoryx2 contenders.
    pub fn is_iceoryx2(self) -> bool {
        matches!(self, Contender::Iceoryx2 | Contender::Iceoryx2Event)
    }

    /// Whether it runs as threads of one child process instead of two
    /// processes.
    pub fn in_process(self) -> bool {
        self == Contender::Crossbeam
    }

    /// Whether it is one of the library's own contenders.
    pub fn is_shm_queue(self) -> bool {
        matches!(
            self,
            Contender::ShmQueue
                | Contender::ShmQueueZeroCopy
                | Contender::ShmQueueBatch
                | Contender::ShmQueueAsync
        )
    }
}

/// Why the iceoryx2 contenders cannot run in a build without the feature.
pub const NO_ICEORYX2: &str = "built without the `iceoryx2` feature \
     (cargo run --release -p shm-bench --features iceoryx2 -- ...)";

/// Size and depth of one channel.
#[derive(Debug, Clone, Copy)]
pub struct ChanSpec {
    /// Every message of the run has exactly this many bytes.
    pub size: usize,
    /// Messages the channel holds (where the transport lets us choose).
    pub capacity: usize,
}

/// Where a participant runs, as far as its endpoint's waiting cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    /// Pinned to a CPU of its own: its affinity mask is that one CPU and
    /// no other participant of the run is pinned there, so every peer
    /// runs on another CPU. A spinning endpoint then never yields (a
    /// yield could only hand the CPU to unrelated work); without it, it
    /// yields after a short spin so that a peer sharing the CPU can run.
    pub dedicated_cpu: bool,
}

/// Which end of a channel a participant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The sending end.
    Send,
    /// The receiving end.
    Recv,
}

/// What a channel needs from the parent: created before the children start,
/// removed when the run ends (and early, once every child has attached).
#[derive(Debug)]
pub enum Chan {
    /// A pair of descriptors; each child inherits the one of its end.
    Fds {
        /// The receiving end (pipe read end, or one socket).
        rx: OwnedFd,
        /// The sending end.
        tx: OwnedFd,
    },
    /// A segment the children open by name (the raw and the naive ring).
    Segment(shm_core::Segment),
    /// A POSIX message queue the children open by name.
    Mq(mq::MqName),
    /// An shm-queue the children open by name.
    Queue(shm_queue::Queue),
    /// iceoryx2 services the children open by name.
    #[cfg(feature = "iceoryx2")]
    Iceoryx(
        #[expect(dead_code, reason = "held for its Drop, which removes the services")]
        iceoryx::IceChan,
    ),
    /// Nothing: the in-process contender makes its channels itself.
    InProcess,
}

/// A contender that cannot run a measure or size, with the reason.
#[derive(Debug)]
pub enum CreateError {
    /// Not applicable here, and why (reported as "n/a").
    Unsupported(String),
    /// Failed.
    Io(io::Error),
}

impl From<io::Error> for CreateError {
    fn from(e: io::Error) -> Self {
        CreateError::Io(e)
    }
}

impl Chan {
    /// Creates the channel `name` (a `/shmrs-bench-...` name, used by the
    /// named transports) for `contender`.
    pub fn create(contender: Contender, name: &str, spec: ChanSpec) -> Result<Chan, CreateError> {
        match contender {
            Contender::Pipe => fd::pipe(),
            Contender::UnixStream => fd::stream_pair(),
            Contender::UnixSeqpacket => fd::seqpacket_pair(spec.size),
            Contender::PosixMq => mq::create(name, spec).map(Chan::Mq),
            Contender::CondvarRing => condvar::create(name, spec).map(Chan::Segment),
            Contender::SpinRing | Contender::SpinRingInPlace => {
                spin::create(name, spec).map(Chan::Segment)
            }
            Contender::ShmQueue
            | Contender::ShmQueueZeroCopy
            | Contender::ShmQueueBatch
            | Contender::ShmQueueAsync => queue::create(name, spec).map(Chan::Queue),
            #[cfg(feature = "iceoryx2")]
            Contender::Iceoryx2 | Contender::Iceoryx2Event => {
                iceoryx::create(name, spec, contender == Contender::Iceoryx2Event)
                    .map(Chan::Iceoryx)
            }
            #[cfg(not(feature = "iceoryx2"))]
            Contender::Iceoryx2 | Contender::Iceoryx2Event => {
                Err(CreateError::Unsupported(NO_ICEORYX2.into()))
            }
            Contender::Crossbeam => Ok(Chan::InProcess),
        }
    }

    /// Whether the parent keeps it until the children are reaped (to read
    /// its counters, or to clean up after a child that died) rather than
    /// closing it once the run has started.
    pub fn keep_until_end(&self) -> bool {
        match self {
            Chan::Queue(_) => true,
            #[cfg(feature = "iceoryx2")]
            Chan::Iceoryx(_) => true,
            _ => false,
        }
    }

    /// The command-line description of `end` for a child, and the
    /// descriptor it must inherit, if any.
    pub fn endpoint(&self, end: End, name: &str) -> (Value, Option<BorrowedFd<'_>>) {
        match self {
            Chan::Fds { rx, tx } => {
                let fd = match end {
                    End::Send => tx.as_fd(),
                    End::Recv => rx.as_fd(),
                };
                (
                    json!({ "fd": std::os::fd::AsRawFd::as_raw_fd(&fd) }),
                    Some(fd),
                )
            }
            Chan::Segment(_) | Chan::Mq(_) | Chan::Queue(_) => (json!({ "name": name }), None),
            #[cfg(feature = "iceoryx2")]
            Chan::Iceoryx(_) => (json!({ "name": name }), None),
            Chan::InProcess => (Value::Null, None),
        }
    }

    /// Removes the name now that every child has attached; what is mapped
    /// or open keeps working. Errors are ignored: the drop tries again.
    pub fn unlink_early(&self) {
        match self {
            Chan::Segment(seg) => {
                let _ = seg.remove();
            }
            Chan::Mq(mq) => mq.unlink(),
            Chan::Queue(q) => {
                let _ = q.remove();
            }
            Chan::Fds { .. } | Chan::InProcess => {}
            // The services live until the parent drops them at the end.
            #[cfg(feature = "iceoryx2")]
            Chan::Iceoryx(_) => {}
        }
    }
}

fn arg_fd(arg: &Value) -> io::Result<OwnedFd> {
    let raw = arg
        .get("fd")
        .and_then(Value::as_i64)
        .ok_or_else(|| io::Error::other(format!("endpoint {arg} has no fd")))?;
    crate::sys::fd::adopt(raw as i32)
}

fn arg_name(arg: &Value) -> io::Result<&str> {
    arg.get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| io::Error::other(format!("endpoint {arg} has no name")))
}

/// Opens the sending end described by `arg` (from [`Chan::endpoint`]).
pub fn open_tx(
    contender: Contender,
    arg: &Value,
    spec: ChanSpec,
    place: Placement,
) -> io::Result<Box<dyn Tx>> {
    Ok(match contender {
        Contender::Pipe => Box::new(fd::StreamTx::new(arg_fd(arg)?, spec)),
        Contender::UnixStream => Box::new(fd::StreamTx::new(arg_fd(arg)?, spec)),
        Contender::UnixSeqpacket => Box::new(fd::PacketTx::new(arg_fd(arg)?, spec)),
        Contender::PosixMq => Box::new(mq::MqTx::open(arg_name(arg)?, spec)?),
        Contender::CondvarRing => Box::new(condvar::CondTx::open(arg_name(arg)?, spec)?),
        Contender::SpinRing => Box::new(spin::SpinTx::open(arg_name(arg)?, spec, false, place)?),
        Contender::SpinRingInPlace => {
            Box::new(spin::SpinTx::open(arg_name(arg)?, spec, true, place)?)
        }
        Contender::ShmQueue => Box::new(queue::QueueTx::open(
            arg_name(arg)?,
            spec,
            queue::Api::Copy,
        )?),
        Contender::ShmQueueZeroCopy => Box::new(queue::QueueTx::open(
            arg_name(arg)?,
            spec,
            queue::Api::ZeroCopy,
        )?),
        Contender::ShmQueueBatch => Box::new(queue::QueueTx::open(
            arg_name(arg)?,
            spec,
            queue::Api::Batch,
        )?),
        Contender::ShmQueueAsync => Box::new(queue::QueueTx::open(
            arg_name(arg)?,
            spec,
            queue::Api::Async,
        )?),
        #[cfg(feature = "iceoryx2")]
        Contender::Iceoryx2 | Contender::Iceoryx2Event => Box::new(iceoryx::IceTx::open(
            arg_name(arg)?,
            spec,
            contender == Contender::Iceoryx2Event,
        )?),
        other => {
            return Err(io::Error::other(format!(
                "{} has no cross-process sender",
                other.name()
            )));
        }
    })
}

/// Opens the receiving end described by `arg` (from [`Chan::endpoint`]).
pub fn open_rx(
    contender: Contender,
    arg: &Value,
    spec: ChanSpec,
    place: Placement,
) -> io::Result<Box<dyn Rx>> {
    Ok(match contender {
        Contender::Pipe => Box::new(fd::StreamRx::new(arg_fd(arg)?, spec)),
        Contender::UnixStream => Box::new(fd::StreamRx::new(arg_fd(arg)?, spec)),
        Contender::UnixSeqpacket => Box::new(fd::PacketRx::new(arg_fd(arg)?, spec)),
        Contender::PosixMq => Box::new(mq::MqRx::open(arg_name(arg)?, spec)?),
        Contender::CondvarRing => Box::new(condvar::CondRx::open(arg_name(arg)?, spec)?),
        Contender::SpinRing => Box::new(spin::SpinRx::open(arg_name(arg)?, spec, false, place)?),
        Contender::SpinRingInPlace => {
            Box::new(spin::SpinRx::open(arg_name(arg)?, spec, true, place)?)
        }
        Contender::ShmQueue => Box::new(queue::QueueRx::open(arg_name(arg)?, queue::Api::Copy)?),
        Contender::ShmQueueZeroCopy => {
            Box::new(queue::QueueRx::open(arg_name(arg)?, queue::Api::ZeroCopy)?)
        }
        Contender::ShmQueueBatch => {
            Box::new(queue::QueueRx::open(arg_name(arg)?, queue::Api::Batch)?)
        }
        Contender::ShmQueueAsync => {
            Box::new(queue::QueueRx::open(arg_name(arg)?, queue::Api::Async)?)
        }
        #[cfg(feature = "iceoryx2")]
        Contender::Iceoryx2 | Contender::Iceoryx2Event => Box::new(iceoryx::IceRx::open(
            arg_name(arg)?,
            spec,
            contender == Contender::Iceoryx2Event,
            place,
        )?),
        other => {
            return Err(io::Error::other(format!(
                "{} has no cross-process receiver",
                other.name()
            )));
        }
    })
}

/// Opens a ring segment by name in a child, for the rest of the child's
/// life, and reads its geometry (words at `base`, slots from `slots`).
///
/// The mapping is leaked on purpose: the endpoints keep `&'static`
/// references to the indices in it (no bounds check per access), and the
/// child exits when the run ends. The child is not the owner, so nothing is
/// left behind: the parent removes the name. The geometry is copied out
/// through `&mut` before the leak, while no reference into the mapping
/// exists yet.
pub fn open_ring_static(
    name: &str,
    base: usize,
    slots: usize,
) -> io::Result<(&'static shm_core::Segment, RingGeometry)> {
    let id = shm_core::SegmentId::posix(name).map_err(io::Error::other)?;
    let mut seg = shm_core::Segment::open(&id).map_err(io::Error::other)?;
    prefault(&seg);
    let geometry = RingGeometry::read(&mut seg, base, slots)?;
    Ok((Box::leak(Box::new(seg)), geometry))
}

/// Faults every page of `seg` in (`Segment::populate`) so that the timed
/// part of a run does not pay this process's first-touch page faults,
/// which a long-running user pays once. The kernel does it, this process
/// reads nothing, so it races nothing. An error (a kernel before 5.14) only
/// means the faults come later.
pub fn prefault(seg: &shm_core::Segment) {
    let _ = seg.populate();
}

/// Creates a segment of `size` bytes owned by the caller (removed on drop).
pub fn create_segment(name: &str, size: usize) -> io::Result<shm_core::Segment> {
    let id = shm_core::SegmentId::posix(name).map_err(io::Error::other)?;
    shm_core::Segment::create(&id, size as u64, 0o600).map_err(io::Error::other)
}

/// Bytes from one ring slot to the next: an 8-byte length, then the
/// payload, rounded up to 8.
pub fn ring_stride(size: usize) -> usize {
    (8 + size).div_ceil(8) * 8
}

/// The geometry both ring contenders keep in three words of their segment
/// (capacity at `base`, stride at `base + 8`, slot size at `base + 16`).
#[derive(Debug, Clone, Copy)]
pub struct RingGeometry {
    /// Slots.
    pub cap: u64,
    /// Bytes from slot to slot.
    pub stride: usize,
    /// Largest payload.
    pub slot_size: usize,
}

impl RingGeometry {
    /// The creator's side: writes the three words, before any child starts
    /// (the start is what makes them visible to the child).
    pub fn write(self, seg: &mut shm_core::Segment, base: usize) -> io::Result<()> {
        for (off, v) in [
            (base, self.cap),
            (base + 8, self.stride as u64),
            (base + 16, self.slot_size as u64),
        ] {
            seg.write_at(off, &v.to_ne_bytes())
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// The opener's side: reads the words and checks that `cap` slots of
    /// `stride` bytes from `slots` fit in the segment (the bytes are
    /// untrusted).
    pub fn read(seg: &mut shm_core::Segment, base: usize, slots: usize) -> io::Result<Self> {
        let mut word = |off: usize| -> io::Result<u64> {
            let mut b = [0u8; 8];
            seg.read_at(off, &mut b).map_err(io::Error::other)?;
            Ok(u64::from_ne_bytes(b))
        };
        let cap = word(base)?;
        let stride = word(base + 8)? as usize;
        let slot_size = word(base + 16)? as usize;
        let fits = (cap as usize)
            .checked_mul(stride)
            .and_then(|b| b.checked_add(slots))
            .is_some_and(|end| end <= seg.len());
        if cap == 0 || stride < 8 + slot_size || !stride.is_multiple_of(8) || !fits {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad ring geometry: capacity {cap}, stride {stride}, slot {slot_size}"),
            ));
        }
        Ok(RingGeometry {
            cap,
            stride,
            slot_size,
        })
    }
}

/// Reads a length word from shared memory and checks it against the slot.
pub fn checked_len(raw: u64, slot_size: usize) -> io::Result<usize> {
    if raw as usize > slot_size || raw > u32::MAX as u64 {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("slot length {raw} exceeds the slot size {slot_size}"),
        ))
    } else {
        Ok(raw as usize)
    }
}
