//! [`Queue`]: creating, opening and validating a queue, its counters, and
//! closing it. The message path lives in [`crate::ring`] (the slot
//! protocol), [`crate::wait`] (blocking), [`crate::registry`] (who takes
//! part) and the two sides, [`crate::sender`] and [`crate::receiver`].

use std::sync::Arc;

use shm_core::{ProcessId, SegmentId, Shared, SharedOptions};

use crate::error::{Corrupted, QueueOpenError};
use crate::layout::{
    Control, FLAG_CLOSED, FORMAT_VERSION, MAX_PEERS, OLD_FORMATS, Registration, SLOT_HEADER,
    SlotHeader, ident_of, pid_namespace, slot_index, stride_for,
};
pub use crate::options::{KIND, Lifetime, MAX_CAPACITY, MAX_SLOT_SIZE, QueueOptions, Stats};
use crate::ring::{Bad, Ring, Side, Slots};
use shm_sync::shim::Ordering;

/// A blocking bounded queue of byte messages between processes.
///
/// A `Queue` is a handle on the segment, attached to it: it is cheap to
/// clone (the clones share one attachment), `Send` and `Sync`, and the
/// [`Sender`](crate::Sender)s and [`Receiver`](crate::Receiver)s made from
/// it keep it alive, so they can move into threads and tasks on their own.
/// When the name goes away is the queue's [`Lifetime`] (by default, with
/// the last attached handle). See the crate docs for the exact semantics.
///
/// ```
/// use shm_queue::{Queue, QueueOptions, SegmentId};
///
/// let id = SegmentId::posix(&format!("/doc-queue-handle-{}", std::process::id()))?;
/// let queue = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(32))?;
/// let tx = queue.sender()?;
/// let rx = queue.receiver()?;
/// let t = std::thread::spawn(move || tx.send(b"from a thread"));
/// assert_eq!(rx.recv()?, b"from a thread");
/// t.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Queue(pub(crate) Arc<Inner>);

/// One attachment of this process to a queue: the mapping, the validated
/// configuration, and our entry in the table of attached handles.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) shared: Shared<Control>,
    // Validated copies of the configuration: never re-read from the segment.
    pub(crate) cap: u64,
    pub(crate) slot_size: usize,
    stride: usize,
    slots_offset: usize,
    pub(crate) lifetime: Lifetime,
    pub(crate) name: String,
    pub(crate) me: ProcessId,
    /// `me` as a registration identity word.
    pub(crate) me_ident: u64,
    /// Our entry in the table of attached handles (`None` for an observer
    /// that only reads counters).
    pub(crate) attached: Option<usize>,
}

/// The configuration read from a control block, checked against itself
/// and against the slot region's real length: what both an attached handle
/// and an observer keep (never re-read from the segment).
pub(crate) struct Config {
    pub(crate) cap: u64,
    pub(crate) slot_size: usize,
    pub(crate) stride: usize,
    pub(crate) lifetime: Lifetime,
}

impl Config {
    /// Checks `c`, whose slot region is `tail_len` bytes long; the error
    /// says what is impossible.
    pub(crate) fn check(c: &Control, tail_len: usize) -> Result<Config, String> {
        let cap = c.capacity.load(Ordering::Relaxed);
        let slot_size = c.slot_size.load(Ordering::Relaxed);
        let stride = c.stride.load(Ordering::Relaxed);
        if cap == 0 || cap > MAX_CAPACITY || slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(format!(
                "capacity {cap} / slot size {slot_size} out of range"
            ));
        }
        if stride_for(slot_size) != Some(stride) {
            return Err(format!(
                "slot stride {stride} does not match slot size {slot_size}"
            ));
        }
        let need = u64::from(cap) * u64::from(stride);
        if need != tail_len as u64 {
            return Err(format!(
                "{cap} slots of stride {stride} need {need} bytes, the segment has {tail_len}"
            ));
        }
        let life = c.life.lifetime.load(Ordering::Relaxed);
        let lifetime = Lifetime::from_word(life)
            .ok_or_else(|| format!("lifetime mode {life} is not 0, 1 or 2"))?;
        Ok(Config {
            cap: u64::from(cap),
            slot_size: slot_size as usize,
            stride: stride as usize,
            lifetime,
        })
    }
}

impl Slots for Inner {
    #[inline]
    fn header(&self, index: usize) -> Result<&SlotHeader, Bad> {
        // In bounds by construction (validated at open); the check stays as
        // a guard against a mapping shorter than validated.
        crate::payload::header(
            self.shared.segment(),
            self.slots_offset + index * self.stride,
        )
        .map_err(|e| Bad(e.to_string()))
    }
}

impl Queue {
    /// Creates a queue exclusively.
    pub fn create(id: &SegmentId, opts: &QueueOptions) -> Result<Queue, QueueOpenError> {
        Inner::create(id, opts, 0).map(Queue::wrap)
    }

    /// Opens an existing queue, waiting up to 5 s for its creator.
    pub fn open(id: &SegmentId) -> Result<Queue, QueueOpenError> {
        Self::open_with(id, &QueueOptions::new())
    }

    /// Opens with the open deadline of `opts`.
    pub fn open_with(id: &SegmentId, opts: &QueueOptions) -> Result<Queue, QueueOpenError> {
        Inner::open(id, opts, 0, true).map(Queue::wrap)
    }

    /// Opens the queue if it exists, else creates it; says whether this call
    /// created it. Race-free among many processes, and with the default
    /// [`Lifetime::LastPeer`] it never makes a second queue while a process
    /// attached to the first one lives.
    pub fn open_or_create(
        id: &SegmentId,
        opts: &QueueOptions,
    ) -> Result<(Queue, bool), QueueOpenError> {
        Inner::open_or_create(id, opts, 0).map(|(i, c)| (Queue::wrap(i), c))
    }

    /// Reads a queue's counters without attaching or registering and
    /// without writing anything: the control block is copied out through a
    /// read-only mapping ([`shm_core::Snapshot`]), so read permission on
    /// the segment is enough. Works for queues of bytes and of any message
    /// type.
    pub fn inspect(id: &SegmentId) -> Result<Stats, QueueOpenError> {
        crate::inspect::inspect(id)
    }

    pub(crate) fn wrap(inner: Inner) -> Queue {
        Queue(Arc::new(inner))
    }

    /// Whether the queue was closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Closes the queue: sends fail with `Closed`, receivers drain what is
    /// left and then get `Closed`, and no one can register.
    pub fn close(&self) {
        self.0.close();
    }

    /// Messages in the queue now (claimed by producers, not yet taken).
    pub fn len(&self) -> usize {
        let (head, tail) = self.0.ring().positions();
        tail.saturating_sub(head).min(self.0.cap) as usize
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots.
    pub fn capacity(&self) -> usize {
        self.0.cap as usize
    }

    /// Largest message in bytes.
    pub fn slot_size(&self) -> usize {
        self.0.slot_size
    }

    /// When the queue's name goes away (the creator's choice).
    pub fn lifetime(&self) -> Lifetime {
        self.0.lifetime
    }

    /// The counters, read without taking part: an observer writes nothing
    /// to the segment.
    ///
    /// The message path keeps no counter of its own (a shared counter
    /// would be one more cache line both sides write): `sent` and
    /// `received` are the positions `tail` and `head` less the tombstones
    /// among them, and a send in progress counts as sent.
    pub fn stats(&self) -> Stats {
        self.0.stats()
    }

    /// The segment underneath.
    pub fn segment(&self) -> &shm_core::Segment {
        self.0.shared.segment()
    }

    /// Removes the queue's name now, whatever its [`Lifetime`] (mappings
    /// stay valid until dropped; peers attached keep working on it, and a
    /// later `open_or_create` makes a new queue).
    pub fn remove(&self) -> std::io::Result<()> {
        self.0.shared.segment().remove()
    }
}

impl Inner {
    pub(crate) fn create(
        id: &SegmentId,
        opts: &QueueOptions,
        message_type: u64,
    ) -> Result<Inner, QueueOpenError> {
        let (stride, extra) = Self::check_config(id, opts)?;
        let sopts = Self::shared_options(opts).extra(extra);
        // Indices, flags, tables and slots start as zeros: every slot is
        // free for the first lap (see the layout docs).
        let mut shared = Shared::<Control>::create(id, &sopts, |c| {
            c.capacity.store(opts.capacity, Ordering::Relaxed);
            c.slot_size.store(opts.slot_size, Ordering::Relaxed);
            c.stride.store(stride, Ordering::Relaxed);
            c.message_type.store(message_type, Ordering::Relaxed);
            c.pid_ns.store(pid_namespace(), Ordering::Relaxed);
            c.life
                .lifetime
                .store(opts.lifetime.to_word(), Ordering::Relaxed);
            Ok(())
        })?;
        // Only `Creator` leaves the name to the creating handle's drop.
        shared
            .segment_mut()
            .set_owner(opts.lifetime == Lifetime::Creator);
        let mut inner = Self::from_shared(shared, message_type)?;
        // A fresh queue: nobody retires it yet, but its table may be full
        // only if the segment is hostile.
        inner.attached =
            Some(inner.attach()?.ok_or_else(|| {
                inner.corrupted("it was marked removed while it was being created")
            })?);
        Ok(inner)
    }

    /// Opens the queue `id`; `attach`: as a handle that takes part (else an
    /// observer that writes nothing).
    pub(crate) fn open(
        id: &SegmentId,
        opts: &QueueOptions,
        message_type: u64,
        attach: bool,
    ) -> Result<Inner, QueueOpenError> {
        loop {
            let shared = Shared::<Control>::open(id, &Self::shared_options(opts))
                .map_err(|e| Self::old_format(id, e))?;
            let mut inner = Self::from_shared(shared, message_type)?;
            if !attach {
                return Ok(inner);
            }
            if let Some(index) = inner.attach()? {
                inner.attached = Some(index);
                return Ok(inner);
            }
            // Its last peer removed the name as we opened it: the name is
            // gone or carries a new queue now; look again.
        }
    }

    /// A queue of an earlier format is refused with a message that says so,
    /// rather than as "another type".
    pub(crate) fn old_format(id: &SegmentId, e: shm_core::OpenError) -> QueueOpenError {
        if let shm_core::OpenError::LayoutMismatch { found, .. } = &e
            && let Some((version, _)) = OLD_FORMATS
                .iter()
                .find(|(_, name)| found.type_id == shm_core::type_id(name))
        {
            return QueueOpenError::OldFormat {
                queue: id.to_string(),
                found: *version,
                expected: FORMAT_VERSION,
            };
        }
        QueueOpenError::Open(e)
    }

    pub(crate) fn open_or_create(
        id: &SegmentId,
        opts: &QueueOptions,
        message_type: u64,
    ) -> Result<(Inner, bool), QueueOpenError> {
        loop {
            match Self::create(id, opts, message_type) {
                Ok(q) => return Ok((q, true)),
                Err(QueueOpenError::Create(shm_core::CreateError::AlreadyExists { .. })) => {}
                Err(e) => return Err(e),
            }
            match Self::open(id, opts, message_type, true) {
                Ok(q) => return Ok((q, false)),
                // Removed between our create and open: the name is free.
                Err(QueueOpenError::Open(shm_core::OpenError::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn shared_options(opts: &QueueOptions) -> SharedOptions {
        SharedOptions::new()
            .mode(opts.mode)
            .timeout(opts.timeout)
            .kind(KIND)
    }

    fn check_config(id: &SegmentId, opts: &QueueOptions) -> Result<(u32, u64), QueueOpenError> {
        let invalid = |reason: String| QueueOpenError::InvalidConfig {
            queue: id.to_string(),
            reason,
        };
        if opts.capacity == 0 || opts.capacity > MAX_CAPACITY {
            return Err(invalid(format!(
                "capacity {} is not between 1 and {MAX_CAPACITY}",
                opts.capacity
            )));
        }
        if opts.slot_size == 0 || opts.slot_size > MAX_SLOT_SIZE {
            return Err(invalid(format!(
                "slot size {} is not between 1 and {MAX_SLOT_SIZE}",
                opts.slot_size
            )));
        }
        let stride =
            stride_for(opts.slot_size).ok_or_else(|| invalid("slot size overflows".into()))?;
        let extra = u64::from(stride) * u64::from(opts.capacity);
        if extra > shm_core::MAX_SEGMENT_SIZE {
            return Err(invalid(format!(
                "{} slots of {} bytes need {extra} bytes, more than the {} byte limit",
                opts.capacity,
                opts.slot_size,
                shm_core::MAX_SEGMENT_SIZE
            )));
        }
        Ok((stride, extra))
    }

    /// Validates the configuration read from the segment and keeps copies.
    fn from_shared(shared: Shared<Control>, message_type: u64) -> Result<Inner, QueueOpenError> {
        let name = shared.segment().describe();
        let c = shared.get();
        let corrupted = |detail: String| Corrupted {
            queue: name.clone(),
            detail,
        };
        let Config {
            cap,
            slot_size,
            stride,
            lifetime,
        } = Config::check(c, shared.tail_len()).map_err(corrupted)?;
        if c.message_type.load(Ordering::Relaxed) != message_type {
            return Err(QueueOpenError::WrongMessageType { queue: name });
        }
        let (theirs, ours) = (c.pid_ns.load(Ordering::Relaxed), pid_namespace());
        if theirs != 0 && ours != 0 && theirs != ours {
            return Err(QueueOpenError::OtherPidNamespace { queue: name });
        }
        let me = ProcessId::current();
        Ok(Inner {
            cap,
            slot_size,
            stride,
            slots_offset: shared.tail_offset(),
            shared,
            lifetime,
            name,
            me,
            me_ident: ident_of(me),
            attached: None,
        })
    }

    #[inline]
    pub(crate) fn ctl(&self) -> &Control {
        self.shared.get()
    }

    /// The slot protocol, from this process.
    #[inline]
    pub(crate) fn ring(&self) -> Ring<'_, Inner> {
        Ring {
            ctl: self.ctl(),
            slots: self,
            cap: self.cap,
            me: self.me_ident,
        }
    }

    pub(crate) fn corrupted(&self, detail: impl Into<String>) -> Corrupted {
        Corrupted {
            queue: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// A [`Bad`] from the slot protocol, named.
    pub(crate) fn bad(&self, bad: Bad) -> Corrupted {
        self.corrupted(bad.0)
    }

    /// Entry `index` of the producers' or the consumers' table.
    #[inline]
    pub(crate) fn registration(&self, producer: bool, index: usize) -> &Registration {
        let c = self.ctl();
        let table = if producer { &c.producers } else { &c.consumers };
        &table[index % MAX_PEERS]
    }

    /// The slot index of `pos`.
    #[inline]
    pub(crate) fn index_of(&self, pos: u64) -> usize {
        slot_index(pos, self.cap).0
    }

    #[inline]
    fn slot_of(&self, pos: u64) -> Result<&SlotHeader, Corrupted> {
        self.header(self.index_of(pos)).map_err(|b| self.bad(b))
    }

    /// The payload of the slot of `pos`, `slot_size` bytes.
    #[inline]
    pub(crate) fn payload_ptr(&self, pos: u64) -> Result<*mut u8, Corrupted> {
        let index = self.index_of(pos);
        self.shared
            .segment()
            .ptr_at(
                self.slots_offset + index * self.stride + SLOT_HEADER,
                self.slot_size,
            )
            .map_err(|e| self.corrupted(e.to_string()))
    }

    /// Stores the length of the message being written for `pos`.
    #[inline]
    pub(crate) fn set_len(&self, pos: u64, len: usize) -> Result<(), Corrupted> {
        self.slot_of(pos)?.len.store(len as u32, Ordering::Relaxed);
        Ok(())
    }

    /// The length of the committed message of claimed `pos`, checked.
    #[inline]
    pub(crate) fn msg_len(&self, pos: u64) -> Result<usize, Corrupted> {
        let len = self.slot_of(pos)?.len.load(Ordering::Relaxed) as usize;
        if len > self.slot_size {
            return Err(self.corrupted(format!(
                "message length {len} at position {pos} exceeds the slot size {}",
                self.slot_size
            )));
        }
        Ok(len)
    }

    /// Fails in a child that inherited this handle across `fork`: it would
    /// act under the parent's identity. (Checked where a syscall is cheap
    /// next to what surrounds it: registering and sleeping.)
    pub(crate) fn check_fork(&self) -> Result<(), Corrupted> {
        if std::process::id() == self.me.pid {
            Ok(())
        } else {
            Err(self.corrupted(format!(
                "this handle was opened by pid {} and is used in pid {} after fork: open the queue again in the child",
                self.me.pid,
                std::process::id()
            )))
        }
    }

    /// Fails once another process truncated the segment under our mapping.
    #[inline]
    pub(crate) fn intact(&self) -> Result<(), Corrupted> {
        if self.shared.segment().is_truncated() {
            Err(self.corrupted("it was truncated by another process after it was mapped"))
        } else {
            Ok(())
        }
    }

    /// Wakes every process asleep on the queue, for an event they find in
    /// their re-check rather than in a slot (close, a peer gone): long
    /// sleeps are on `tail` (consumers) and `head` (producers); naps on a
    /// slot end by themselves within [`crate::wait::HELD_NAP`].
    pub(crate) fn nudge_all(&self) {
        let ring = self.ring();
        ring.index(Side::Send).nudge();
        ring.index(Side::Recv).nudge();
    }

    /// Whether the queue was closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.ctl().flags.load(Ordering::Acquire) & FLAG_CLOSED != 0
    }

    pub(crate) fn close(&self) {
        self.ctl().flags.fetch_or(FLAG_CLOSED, Ordering::AcqRel);
        self.nudge_all();
    }

    pub(crate) fn stats(&self) -> Stats {
        crate::inspect::stats_of(
            self.ctl(),
            self.cap,
            self.slot_size,
            self.me_ident,
            self.lifetime,
        )
    }
}
