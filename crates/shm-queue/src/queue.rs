//! The byte-message queue: [`Queue`], [`Sender`], [`Receiver`].

use std::time::{Duration, Instant};

use shm_core::{ProcessId, SegmentId, Shared, SharedOptions};

use crate::error::{Corrupted, OpenError, RecvError, RegisterError, SendError};
use crate::kill::kill_point;
use crate::layout::pid_namespace;
use crate::layout::{
    ABANDONED, Control, FLAG_CLOSED, FLAG_HAD_CONSUMER, FLAG_HAD_PRODUCER, FREE, MAX_PEERS,
    READING, READY, Registration, SLOT_HEADER, SlotHeader, WRITING, stride_for,
};
use crate::lock::{LockGuard, Stuck};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::slots;
use crate::wait::{self, Woke};

/// Largest slot accepted: 1 GiB.
pub const MAX_SLOT_SIZE: u32 = 1 << 30;
/// Most slots accepted: 2^24.
pub const MAX_CAPACITY: u32 = 1 << 24;
/// The kind word recorded in the segment header.
pub const KIND: &str = "queue";
/// How long a lock may be held before it is taken for broken.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// Capacity, slot size and permissions of a new queue, and how long `open`
/// waits for a creator to finish.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    capacity: u32,
    slot_size: u32,
    mode: u32,
    timeout: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: 1024,
            slot_size: 256,
            mode: shm_core::DEFAULT_MODE,
            timeout: Duration::from_secs(5),
        }
    }
}

impl QueueOptions {
    /// 1024 slots of 256 bytes, mode 0600, a 5 s open deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages the queue holds.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// Largest message in bytes.
    pub fn slot_size(mut self, slot_size: u32) -> Self {
        self.slot_size = slot_size;
        self
    }

    /// Permission bits of the segment.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for the creator to finish initializing.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A snapshot of a queue's counters, read without taking part in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Messages in the queue (committed or being written, not yet taken).
    pub len: u64,
    /// Slots.
    pub capacity: u64,
    /// Largest message in bytes.
    pub slot_size: u64,
    /// Messages committed since creation.
    pub sent: u64,
    /// Messages received since creation.
    pub received: u64,
    /// Sends that had to sleep on a full queue.
    pub blocked_sends: u64,
    /// Receives that had to sleep on an empty queue.
    pub blocked_recvs: u64,
    /// Live registered producers.
    pub producers: u64,
    /// Live registered consumers.
    pub consumers: u64,
    /// Whether the queue was closed.
    pub closed: bool,
    /// Claims of dead processes taken over.
    pub recovered: u64,
    /// Times the lock was repaired after its holder died.
    pub lock_repairs: u64,
}

/// A blocking bounded queue of byte messages between processes.
///
/// The creating handle owns the segment and removes it on drop (change that
/// with [`Queue::segment_mut`] and [`shm_core::Segment::set_owner`]).
/// Register a [`Sender`] or [`Receiver`] to take part; see the crate docs for
/// the exact semantics.
#[derive(Debug)]
pub struct Queue {
    shared: Shared<Control>,
    // Validated copies of the configuration: never re-read from the segment.
    cap: u64,
    slot_size: usize,
    stride: usize,
    slots_offset: usize,
    name: String,
    me: ProcessId,
}

/// What a claim under the lock found.
enum Claim {
    /// Positions `start..start+n` are ours.
    Got { start: u64, n: usize },
    /// Nothing to claim now (full / empty).
    None,
    /// The slot at the front is held by a live peer; wait for it.
    Busy,
}

/// The futex word, sleeper count and blocked counter of one side.
struct Side<'a> {
    word: &'a AtomicU32,
    waiters: &'a AtomicU32,
    blocked: &'a AtomicU64,
}

/// How long an operation may block.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Try,
    Until(Option<Instant>),
}

impl Wait {
    pub(crate) fn timeout(d: Duration) -> Self {
        Wait::Until(Instant::now().checked_add(d))
    }
}

/// Which registration table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Producer => "producers",
            Role::Consumer => "consumers",
        }
    }
}

impl Queue {
    /// Creates a queue exclusively.
    pub fn create(id: &SegmentId, opts: &QueueOptions) -> Result<Queue, OpenError> {
        Self::create_typed(id, opts, 0)
    }

    pub(crate) fn create_typed(
        id: &SegmentId,
        opts: &QueueOptions,
        message_type: u64,
    ) -> Result<Queue, OpenError> {
        let (stride, extra) = Self::check_config(id, opts)?;
        let sopts = Self::shared_options(opts).extra(extra);
        let shared = Shared::<Control>::create(id, &sopts, |c| {
            // The lock, indices, flags and tables start as zeros.
            c.capacity.store(opts.capacity, Ordering::Relaxed);
            c.slot_size.store(opts.slot_size, Ordering::Relaxed);
            c.stride.store(stride, Ordering::Relaxed);
            c.message_type.store(message_type, Ordering::Relaxed);
            c.pid_ns.store(pid_namespace(), Ordering::Relaxed);
            Ok(())
        })?;
        Self::from_shared(shared, message_type)
    }

    /// Opens an existing queue, waiting up to 5 s for its creator.
    pub fn open(id: &SegmentId) -> Result<Queue, OpenError> {
        Self::open_with(id, &QueueOptions::new())
    }

    /// Opens with the open deadline of `opts`.
    pub fn open_with(id: &SegmentId, opts: &QueueOptions) -> Result<Queue, OpenError> {
        Self::open_typed(id, opts, 0)
    }

    pub(crate) fn open_typed(
        id: &SegmentId,
        opts: &QueueOptions,
        message_type: u64,
    ) -> Result<Queue, OpenError> {
        let shared = Shared::<Control>::open(id, &Self::shared_options(opts))?;
        Self::from_shared(shared, message_type)
    }

    /// Opens the queue if it exists, else creates it; says whether this call
    /// created it. Race-free among many processes.
    pub fn open_or_create(id: &SegmentId, opts: &QueueOptions) -> Result<(Queue, bool), OpenError> {
        Self::open_or_create_typed(id, opts, 0)
    }

    pub(crate) fn open_or_create_typed(
        id: &SegmentId,
        opts: &QueueOptions,
        message_type: u64,
    ) -> Result<(Queue, bool), OpenError> {
        loop {
            match Self::create_typed(id, opts, message_type) {
                Ok(q) => return Ok((q, true)),
                Err(OpenError::Create(shm_core::CreateError::AlreadyExists { .. })) => {}
                Err(e) => return Err(e),
            }
            match Self::open_typed(id, opts, message_type) {
                Ok(q) => return Ok((q, false)),
                Err(OpenError::Open(shm_core::OpenError::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a queue's counters without registering.
    pub fn inspect(id: &SegmentId) -> Result<Stats, OpenError> {
        Ok(Self::open(id)?.stats())
    }

    fn shared_options(opts: &QueueOptions) -> SharedOptions {
        SharedOptions::new()
            .mode(opts.mode)
            .timeout(opts.timeout)
            .kind(KIND)
    }

    fn check_config(id: &SegmentId, opts: &QueueOptions) -> Result<(u32, u64), OpenError> {
        let invalid = |reason: String| OpenError::InvalidConfig {
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
    fn from_shared(shared: Shared<Control>, message_type: u64) -> Result<Queue, OpenError> {
        let name = shared.segment().describe();
        let c = shared.get();
        let corrupted = |detail: String| Corrupted {
            queue: name.clone(),
            detail,
        };
        let cap = c.capacity.load(Ordering::Relaxed);
        let slot_size = c.slot_size.load(Ordering::Relaxed);
        let stride = c.stride.load(Ordering::Relaxed);
        if cap == 0 || cap > MAX_CAPACITY || slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(corrupted(format!(
                "capacity {cap} / slot size {slot_size} out of range"
            ))
            .into());
        }
        if stride_for(slot_size) != Some(stride) {
            return Err(corrupted(format!(
                "slot stride {stride} does not match slot size {slot_size}"
            ))
            .into());
        }
        let need = u64::from(cap) * u64::from(stride);
        if need != shared.tail_len() as u64 {
            return Err(corrupted(format!(
                "{cap} slots of stride {stride} need {need} bytes, the segment has {}",
                shared.tail_len()
            ))
            .into());
        }
        if c.message_type.load(Ordering::Relaxed) != message_type {
            return Err(OpenError::WrongMessageType { queue: name });
        }
        let (theirs, ours) = (c.pid_ns.load(Ordering::Relaxed), pid_namespace());
        if theirs != 0 && ours != 0 && theirs != ours {
            return Err(OpenError::OtherPidNamespace { queue: name });
        }
        Ok(Queue {
            cap: u64::from(cap),
            slot_size: slot_size as usize,
            stride: stride as usize,
            slots_offset: shared.tail_offset(),
            shared,
            name,
            me: ProcessId::current(),
        })
    }

    fn ctl(&self) -> &Control {
        self.shared.get()
    }

    fn corrupted(&self, detail: impl Into<String>) -> Corrupted {
        Corrupted {
            queue: self.name.clone(),
            detail: detail.into(),
        }
    }

    fn slot_offset(&self, pos: u64) -> usize {
        self.slots_offset + (pos % self.cap) as usize * self.stride
    }

    fn slot(&self, pos: u64) -> Result<&SlotHeader, Corrupted> {
        // In bounds by construction (validated at open); the check stays as
        // a guard against a mapping shorter than validated.
        self.shared
            .segment()
            .view::<SlotHeader>(self.slot_offset(pos))
            .map_err(|e| self.corrupted(e.to_string()))
    }

    fn payload_ptr(&self, pos: u64) -> Result<*mut u8, Corrupted> {
        self.shared
            .segment()
            .ptr_at(self.slot_offset(pos) + SLOT_HEADER, self.slot_size)
            .map_err(|e| self.corrupted(e.to_string()))
    }

    /// Takes the queue lock; after a holder died, validates the indices
    /// (the protocol needs no other repair: see the layout docs).
    ///
    /// Critical sections are a few dozen instructions, so a lock held for
    /// [`LOCK_PATIENCE`] is not contention: its holder is stopped or the
    /// lock word is garbage. That is reported as corruption instead of
    /// waiting forever.
    fn lock(&self) -> Result<LockGuard<'_>, Corrupted> {
        self.intact()?;
        let me = self.me;
        match self
            .ctl()
            .lock
            .lock(me, LOCK_PATIENCE, |p| p == me || p.is_alive())
        {
            Ok((g, false)) => Ok(g),
            Ok((g, true)) => {
                kill_point("repair:locked");
                self.indices()?;
                self.ctl()
                    .consumer
                    .lock_repairs
                    .fetch_add(1, Ordering::Relaxed);
                Ok(g)
            }
            Err(Stuck { pid }) => Err(self.corrupted(format!(
                "its lock has been held by pid {pid} for over {LOCK_PATIENCE:?} (that process is stopped, or the lock word was overwritten)"
            ))),
        }
    }

    /// Without the lock: is the message at `head` committed (or a claim to
    /// skip)? The re-check of a receiver about to sleep; a hint, the claim
    /// decides.
    fn message_at_head(&self) -> bool {
        let c = self.ctl();
        let head = c.consumer.head.load(Ordering::Acquire);
        let tail = c.producer.tail.load(Ordering::Acquire);
        head < tail
            && self
                .slot(head)
                .is_ok_and(|s| matches!(s.state(), READY | ABANDONED))
    }

    /// Without the lock: is the slot at `tail` free with room in the ring?
    /// The re-check of a sender about to sleep; a hint, the claim decides.
    fn room_at_tail(&self) -> bool {
        let c = self.ctl();
        let head = c.consumer.head.load(Ordering::Acquire);
        let tail = c.producer.tail.load(Ordering::Acquire);
        tail >= head && tail - head < self.cap && self.slot(tail).is_ok_and(|s| s.state() == FREE)
    }

    /// Fails in a child that inherited this handle across `fork`: it would
    /// act under the parent's identity. (Checked where a syscall is cheap
    /// next to what surrounds it: registering and sleeping.)
    fn check_fork(&self) -> Result<(), Corrupted> {
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
    fn intact(&self) -> Result<(), Corrupted> {
        if self.shared.segment().is_truncated() {
            Err(self.corrupted("it was truncated by another process after it was mapped"))
        } else {
            Ok(())
        }
    }

    /// `(head, tail)`, validated.
    fn indices(&self) -> Result<(u64, u64), Corrupted> {
        let c = self.ctl();
        let head = c.consumer.head.load(Ordering::Acquire);
        let tail = c.producer.tail.load(Ordering::Acquire);
        // `tail` must leave room for `tail + capacity` (positions are never
        // near 2^64 in a real queue: that is a million years at 10^8/s).
        if head > tail || tail - head > self.cap || tail > u64::MAX - self.cap {
            return Err(self.corrupted(format!(
                "head {head} and tail {tail} are impossible for capacity {}",
                self.cap
            )));
        }
        Ok((head, tail))
    }

    fn owner_alive(&self, slot: &SlotHeader) -> bool {
        let owner = slot.owner();
        owner == self.me || owner.is_alive()
    }

    fn claim_for(&self, slot: &SlotHeader, pos: u64, state: u32) {
        slot.claim(self.me, pos, state);
    }

    /// Under the lock: claims up to `max` positions at `tail` for writing.
    fn claim_send(&self, max: usize, check_owners: bool) -> Result<Claim, SendError> {
        let _g = self.lock()?;
        kill_point("send:locked");
        let c = self.ctl();
        if c.flags.load(Ordering::Relaxed) & FLAG_CLOSED != 0 {
            return Err(SendError::Closed);
        }
        let (head, tail) = self.indices()?;
        let room = (self.cap - (tail - head)).min(max as u64);
        let mut n = 0u64;
        while n < room {
            let pos = tail + n;
            let slot = self.slot(pos)?;
            let state = slot.state();
            let seq = slot.seq.load(Ordering::Relaxed);
            let free = match state {
                FREE => true,
                // A claim of this very position whose claimer died before
                // moving `tail`: it never happened.
                WRITING | READING if seq == pos => true,
                // A consumer still copying out the previous lap's message.
                READING if seq.wrapping_add(self.cap) == pos => {
                    if check_owners && !self.owner_alive(slot) {
                        c.consumer.recovered.fetch_add(1, Ordering::Relaxed);
                        true
                    } else {
                        false
                    }
                }
                _ => {
                    return Err(self
                        .corrupted(format!(
                            "slot for position {pos} has state {state} and sequence {seq}"
                        ))
                        .into());
                }
            };
            if !free {
                break;
            }
            self.claim_for(slot, pos, WRITING);
            n += 1;
        }
        if n == 0 {
            return Ok(if room == 0 { Claim::None } else { Claim::Busy });
        }
        kill_point("send:claimed");
        c.producer.tail.store(tail + n, Ordering::Release);
        Ok(Claim::Got {
            start: tail,
            n: n as usize,
        })
    }

    /// Under the lock: claims up to `max` committed messages at `head`.
    fn claim_recv(&self, max: usize, check_owners: bool) -> Result<Claim, RecvError> {
        let _g = self.lock()?;
        kill_point("recv:locked");
        let c = self.ctl();
        let (mut head, tail) = self.indices()?;
        let start_head = head;
        let mut n = 0u64;
        let mut freed = false;
        while head + n < tail && n < max as u64 {
            let pos = head + n;
            let slot = self.slot(pos)?;
            let state = slot.state();
            let seq = slot.seq.load(Ordering::Relaxed);
            if seq != pos {
                return Err(self
                    .corrupted(format!("slot for position {pos} carries sequence {seq}"))
                    .into());
            }
            match state {
                // READING at `head`: a claim whose claimer died before moving
                // `head`; the message is still whole.
                READY | READING => {
                    let len = slot.len.load(Ordering::Relaxed) as usize;
                    if len > self.slot_size {
                        return Err(self
                            .corrupted(format!(
                                "message length {len} exceeds the slot size {}",
                                self.slot_size
                            ))
                            .into());
                    }
                    self.claim_for(slot, pos, READING);
                    n += 1;
                }
                WRITING | ABANDONED if n == 0 => {
                    let dead = state == ABANDONED || (check_owners && !self.owner_alive(slot));
                    if !dead {
                        break;
                    }
                    // Skip a claim its producer will never commit.
                    slot.reclaim();
                    c.consumer.recovered.fetch_add(1, Ordering::Relaxed);
                    head += 1;
                    freed = true;
                }
                WRITING | ABANDONED => break,
                _ => {
                    return Err(self
                        .corrupted(format!("slot for position {pos} has state {state}"))
                        .into());
                }
            }
        }
        if head + n != start_head {
            kill_point("recv:claimed");
            c.consumer.head.store(head + n, Ordering::Release);
        }
        if freed {
            wait::notify(&c.consumer.not_full, &c.consumer.send_waiters, true);
        }
        if n > 0 {
            Ok(Claim::Got {
                start: head,
                n: n as usize,
            })
        } else if head < tail {
            Ok(Claim::Busy)
        } else {
            Ok(Claim::None)
        }
    }

    /// Under the lock: clears registrations of dead processes. Returns the
    /// live (producers, consumers).
    fn reap_dead(&self) -> Result<(u64, u64), Corrupted> {
        let _g = self.lock()?;
        kill_point("reap:locked");
        let c = self.ctl();
        let mut live = [0u64; 2];
        for (i, table) in [&c.producers, &c.consumers].into_iter().enumerate() {
            for r in table.iter() {
                match r.holder() {
                    Some(who) if who.is_alive() => live[i] += 1,
                    Some(_) => r.clear(),
                    None => {}
                }
            }
        }
        Ok((live[0], live[1]))
    }

    /// Registered entries whose pid is set (no liveness check: cheap).
    fn registered(&self, role: Role) -> usize {
        let table = match role {
            Role::Producer => &self.ctl().producers,
            Role::Consumer => &self.ctl().consumers,
        };
        table.iter().filter(|r| r.holder().is_some()).count()
    }

    fn register(&self, role: Role) -> Result<usize, RegisterError> {
        self.check_fork()?;
        for attempt in 0..2 {
            if attempt == 1 {
                self.reap_dead()?;
            }
            let _g = self.lock()?;
            kill_point("register:locked");
            let c = self.ctl();
            if c.flags.load(Ordering::Relaxed) & FLAG_CLOSED != 0 {
                return Err(RegisterError::Closed);
            }
            let (table, flag) = match role {
                Role::Producer => (&c.producers, FLAG_HAD_PRODUCER),
                Role::Consumer => (&c.consumers, FLAG_HAD_CONSUMER),
            };
            if let Some((i, r)) = table.iter().enumerate().find(|(_, r)| r.holder().is_none()) {
                r.take(self.me);
                kill_point("register:taken");
                c.flags.fetch_or(flag, Ordering::Release);
                return Ok(i);
            }
        }
        Err(RegisterError::TooMany {
            queue: self.name.clone(),
            role: role.word(),
        })
    }

    fn unregister(&self, role: Role, index: usize) {
        let c = self.ctl();
        let table = match role {
            Role::Producer => &c.producers,
            Role::Consumer => &c.consumers,
        };
        // A corrupted lock leaves the entry to the dead-peer sweep.
        if let Ok(_g) = self.lock()
            && {
                kill_point("unregister:locked");
                true
            }
            && let Some(r) = table.get(index)
            && r.holder() == Some(self.me)
        {
            r.clear();
        }
        // Peers of the other side may now be disconnected.
        wait::notify(&c.producer.not_empty, &c.producer.recv_waiters, true);
        wait::notify(&c.consumer.not_full, &c.consumer.send_waiters, true);
    }

    /// Registers a producer.
    pub fn sender(&self) -> Result<Sender<'_>, RegisterError> {
        let index = self.register(Role::Producer)?;
        Ok(Sender { queue: self, index })
    }

    /// Registers a consumer.
    pub fn receiver(&self) -> Result<Receiver<'_>, RegisterError> {
        let index = self.register(Role::Consumer)?;
        Ok(Receiver { queue: self, index })
    }

    /// Closes the queue: sends fail with `Closed`, receivers drain what is
    /// left and then get `Closed`, and no one can register.
    pub fn close(&self) {
        let c = self.ctl();
        c.flags.fetch_or(FLAG_CLOSED, Ordering::SeqCst);
        wait::notify(&c.producer.not_empty, &c.producer.recv_waiters, true);
        wait::notify(&c.consumer.not_full, &c.consumer.send_waiters, true);
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.ctl().flags.load(Ordering::Acquire) & FLAG_CLOSED != 0
    }

    /// Messages in the queue now.
    pub fn len(&self) -> usize {
        self.indices().map_or(0, |(h, t)| (t - h) as usize)
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Largest message in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// The counters, read without the lock and without registering: an
    /// observer never disturbs the queue (taking the lock could even find
    /// a dead holder and would then owe the repair).
    pub fn stats(&self) -> Stats {
        let c = self.ctl();
        let live = |t: &[Registration; MAX_PEERS]| {
            t.iter()
                .filter(|r| r.holder().is_some_and(|p| p.is_alive()))
                .count() as u64
        };
        let head = c.consumer.head.load(Ordering::Relaxed);
        let tail = c.producer.tail.load(Ordering::Relaxed);
        Stats {
            len: tail.saturating_sub(head).min(self.cap),
            capacity: self.cap,
            slot_size: self.slot_size as u64,
            sent: c.producer.sent.load(Ordering::Relaxed),
            received: c.consumer.received.load(Ordering::Relaxed),
            blocked_sends: c.producer.blocked_sends.load(Ordering::Relaxed),
            blocked_recvs: c.consumer.blocked_recvs.load(Ordering::Relaxed),
            producers: live(&c.producers),
            consumers: live(&c.consumers),
            closed: self.is_closed(),
            recovered: c.consumer.recovered.load(Ordering::Relaxed),
            lock_repairs: c.consumer.lock_repairs.load(Ordering::Relaxed),
        }
    }

    /// The segment underneath.
    pub fn segment(&self) -> &shm_core::Segment {
        self.shared.segment()
    }

    /// The segment underneath, to change who owns it.
    pub fn segment_mut(&mut self) -> &mut shm_core::Segment {
        self.shared.segment_mut()
    }

    /// Removes the queue's segment now (mappings stay valid until dropped).
    pub fn remove(&self) -> std::io::Result<()> {
        self.shared.segment().remove()
    }

    // ----- the two blocking loops -----

    /// Claims up to `max` slots for writing, blocking per `wait`.
    fn acquire_send(&self, max: usize, how: Wait) -> Result<(u64, usize), SendError> {
        let c = self.ctl();
        let side = Side {
            word: &c.consumer.not_full,
            waiters: &c.consumer.send_waiters,
            blocked: &c.producer.blocked_sends,
        };
        self.acquire(
            side,
            how,
            |check| self.claim_send(max, check),
            || self.room_at_tail(),
            // Full or blocked by a slow consumer: only a queue whose every
            // consumer left is a reason to stop waiting.
            |_| {
                (c.flags.load(Ordering::Acquire) & FLAG_HAD_CONSUMER != 0
                    && self.registered(Role::Consumer) == 0)
                    .then_some(SendError::Disconnected)
            },
            (SendError::Full, SendError::Timeout),
        )
    }

    /// Claims up to `max` committed messages, blocking per `wait`.
    fn acquire_recv(&self, max: usize, how: Wait) -> Result<(u64, usize), RecvError> {
        let c = self.ctl();
        let side = Side {
            word: &c.producer.not_empty,
            waiters: &c.producer.recv_waiters,
            blocked: &c.consumer.blocked_recvs,
        };
        self.acquire(
            side,
            how,
            |check| self.claim_recv(max, check),
            || self.message_at_head(),
            // Closed or disconnected matter only once the queue is drained.
            |claim| {
                if !matches!(claim, Claim::None) {
                    return None;
                }
                let flags = c.flags.load(Ordering::Acquire);
                if flags & FLAG_CLOSED != 0 {
                    Some(RecvError::Closed)
                } else if flags & FLAG_HAD_PRODUCER != 0 && self.registered(Role::Producer) == 0 {
                    Some(RecvError::Disconnected)
                } else {
                    None
                }
            },
            (RecvError::Empty, RecvError::Timeout),
        )
    }

    /// The blocking loop both sides share: claim; if nothing was claimed,
    /// stop if `stop` says so, else spin and sleep on the side's futex word
    /// (counting the sleep once), look for dead peers after each liveness
    /// slice, and give up at the deadline after one last claim.
    fn acquire<E: From<Corrupted>>(
        &self,
        side: Side<'_>,
        how: Wait,
        claim: impl Fn(bool) -> Result<Claim, E>,
        ready: impl Fn() -> bool,
        stop: impl Fn(&Claim) -> Option<E>,
        (would_block, timed_out): (E, E),
    ) -> Result<(u64, usize), E> {
        let mut counted = false;
        // Dead claimants are looked for once per liveness slice, however
        // often the futex word changes meanwhile.
        let mut last_sweep = Instant::now();
        let mut check_owners = false;
        loop {
            let seen = side.word.load(Ordering::Acquire);
            let got = claim(check_owners)?;
            check_owners = false;
            if let Claim::Got { start, n } = got {
                return Ok((start, n));
            }
            if let Some(e) = stop(&got) {
                // The last producer may have committed and left between our
                // claim and the look at the registrations: seeing it gone
                // (Acquire), one more claim sees what it committed.
                match claim(true)? {
                    Claim::Got { start, n } => return Ok((start, n)),
                    Claim::None => return Err(e),
                    Claim::Busy => {}
                }
            }
            let deadline = match how {
                Wait::Try => return Err(would_block),
                Wait::Until(d) => d,
            };
            if !counted {
                side.blocked.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            match wait::block(side.word, side.waiters, seen, deadline, &ready) {
                Woke::Changed | Woke::Liveness => {}
                Woke::Deadline => {
                    // One last look before giving up.
                    return match claim(true)? {
                        Claim::Got { start, n } => Ok((start, n)),
                        _ => Err(timed_out),
                    };
                }
            }
            if last_sweep.elapsed() >= wait::LIVENESS {
                self.check_fork()?;
                self.reap_dead()?;
                check_owners = true;
                last_sweep = Instant::now();
            }
        }
    }

    /// Publishes written slots `start..start+n` with their lengths.
    fn commit_send(&self, start: u64, lens: impl Iterator<Item = usize>) -> Result<(), SendError> {
        let c = self.ctl();
        let mut n = 0;
        for (i, len) in lens.enumerate() {
            let pos = start + i as u64;
            if !self.slot(pos)?.commit(pos, len as u32) {
                return Err(self
                    .corrupted(format!(
                        "the claim on position {pos} was taken over while it was being written"
                    ))
                    .into());
            }
            n += 1;
        }
        c.producer.sent.fetch_add(n, Ordering::Relaxed);
        // A sleeping receiver's re-check sees the READY slot itself.
        wait::notify_changed(&c.producer.not_empty, &c.producer.recv_waiters, n > 1);
        Ok(())
    }

    /// Frees read slots `start..start+n`.
    fn release_recv(&self, start: u64, n: usize) -> Result<(), RecvError> {
        let c = self.ctl();
        let mut lost = None;
        for pos in start..start + n as u64 {
            if !self.slot(pos)?.release(pos) {
                lost.get_or_insert(pos);
            }
        }
        if let Some(pos) = lost {
            return Err(self
                .corrupted(format!(
                    "the claim on position {pos} was taken over while it was being read"
                ))
                .into());
        }
        c.consumer.received.fetch_add(n as u64, Ordering::Relaxed);
        // A sleeping sender's re-check sees the FREE slot itself.
        wait::notify_changed(&c.consumer.not_full, &c.consumer.send_waiters, n > 1);
        Ok(())
    }

    /// Marks claimed-but-unwritten slots abandoned (a panicking closure).
    fn abandon(&self, start: u64, n: usize) {
        for i in 0..n as u64 {
            if let Ok(slot) = self.slot(start + i) {
                slot.state.store(ABANDONED, Ordering::Release);
            }
        }
        let c = self.ctl();
        wait::notify(&c.producer.not_empty, &c.producer.recv_waiters, true);
    }

    fn msg_len(&self, pos: u64) -> Result<usize, RecvError> {
        let len = self.slot(pos)?.len.load(Ordering::Relaxed) as usize;
        // Checked at claim time; a hostile write since then is caught here.
        if len > self.slot_size {
            return Err(self
                .corrupted(format!(
                    "message length {len} exceeds the slot size {}",
                    self.slot_size
                ))
                .into());
        }
        Ok(len)
    }
}

/// Releases a claim if the code between claim and commit unwinds.
struct ClaimGuard<'a> {
    queue: &'a Queue,
    start: u64,
    n: usize,
    write: bool,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        if self.write {
            self.queue.abandon(self.start, self.n);
        } else {
            // The messages were taken; free the slots so producers go on.
            let _ = self.queue.release_recv(self.start, self.n);
        }
    }
}

/// A registered producer. Dropping it unregisters; when the last producer
/// is gone, receivers get [`RecvError::Disconnected`] after draining.
///
/// A `Sender` belongs to the process that registered it: do not carry it
/// across `fork`.
#[derive(Debug)]
pub struct Sender<'q> {
    queue: &'q Queue,
    index: usize,
}

impl Sender<'_> {
    fn send_inner(&self, msg: &[u8], how: Wait) -> Result<(), SendError> {
        self.send_in_place(msg.len(), how, |buf| {
            // In two halves, so a kill point can stop a send mid-copy.
            let half = msg.len() / 2;
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
        let (start, n) = q.acquire_send(1, how)?;
        let mut guard = ClaimGuard {
            queue: q,
            start,
            n,
            write: true,
        };
        let ptr = q.payload_ptr(start)?;
        // SAFETY: `ptr` is the payload of slot `start`, in bounds for
        // `slot_size >= len` bytes (`payload_ptr` checked), and we hold its
        // WRITING claim until `commit_send` below.
        let out = write(unsafe { slots::payload_mut(ptr, len) });
        guard.n = 0;
        kill_point("send:written");
        q.commit_send(start, std::iter::once(len))?;
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
    /// exactly `len` bytes. If `write` panics the claim is abandoned and
    /// nothing is sent.
    pub fn send_with<R>(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        self.send_in_place(len, Wait::Until(None), write)
    }

    /// Sends every message of `msgs` in order, claiming as many slots per
    /// lock as are free. Blocks while the queue is full. On an error, the
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
            let (start, n) = q
                .acquire_send(msgs.len() - done, Wait::Until(None))
                .map_err(|e| (done, e))?;
            let mut guard = ClaimGuard {
                queue: q,
                start,
                n,
                write: true,
            };
            for (i, m) in msgs[done..done + n].iter().enumerate() {
                let ptr = q
                    .payload_ptr(start + i as u64)
                    .map_err(|e| (done, e.into()))?;
                // SAFETY: the payload of a slot we hold a WRITING claim on,
                // in bounds for `slot_size >= m.len()` bytes.
                unsafe { slots::payload_mut(ptr, m.len()) }.copy_from_slice(m);
            }
            guard.n = 0;
            q.commit_send(start, msgs[done..done + n].iter().map(|m| m.len()))
                .map_err(|e| (done, e))?;
            done += n;
        }
        Ok(())
    }

    pub(crate) fn send_value<T: shm_core::ShmSafe + Copy>(
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
    pub fn queue(&self) -> &Queue {
        self.queue
    }
}

impl Drop for Sender<'_> {
    fn drop(&mut self) {
        self.queue.unregister(Role::Producer, self.index);
    }
}

/// A registered consumer. Dropping it unregisters; when the last consumer
/// is gone, senders get [`SendError::Disconnected`].
///
/// A `Receiver` belongs to the process that registered it: do not carry it
/// across `fork`.
#[derive(Debug)]
pub struct Receiver<'q> {
    queue: &'q Queue,
    index: usize,
}

impl Receiver<'_> {
    fn recv_in_place<R>(&self, how: Wait, read: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        let q = self.queue;
        let (start, n) = q.acquire_recv(1, how)?;
        let mut guard = ClaimGuard {
            queue: q,
            start,
            n,
            write: false,
        };
        let len = q.msg_len(start)?;
        let ptr = q.payload_ptr(start)?;
        kill_point("recv:reading");
        // SAFETY: the payload of slot `start`, in bounds for `slot_size >=
        // len` bytes, under our READING claim until `release_recv`.
        let out = read(unsafe { slots::payload(ptr, len) });
        // Bytes read from pages lost to a truncation are zeros: not a message.
        q.intact()?;
        kill_point("recv:read");
        guard.n = 0;
        q.release_recv(start, n)?;
        Ok(out)
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

    /// Receives up to `max` messages under one lock, blocking until at
    /// least one is there, and appends them to `out`. Returns how many.
    pub fn recv_batch(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize, RecvError> {
        let q = self.queue;
        let (start, n) = q.acquire_recv(max.max(1), Wait::Until(None))?;
        let mut guard = ClaimGuard {
            queue: q,
            start,
            n,
            write: false,
        };
        // Check every length before taking any message, so an error never
        // leaves half the batch in `out`.
        let lens = (0..n as u64)
            .map(|i| q.msg_len(start + i))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, len) in lens.into_iter().enumerate() {
            let ptr = q.payload_ptr(start + i as u64)?;
            // SAFETY: the payload of a slot under our READING claim, in
            // bounds for `slot_size >= len` bytes.
            out.push(unsafe { slots::payload(ptr, len) }.to_vec());
        }
        guard.n = 0;
        q.release_recv(start, n)?;
        Ok(n)
    }

    pub(crate) fn recv_value<T: shm_core::ShmSafe + Copy>(
        &self,
        how: Wait,
    ) -> Result<T, RecvError> {
        let q = self.queue;
        let (start, n) = q.acquire_recv(1, how)?;
        let mut guard = ClaimGuard {
            queue: q,
            start,
            n,
            write: false,
        };
        let len = q.msg_len(start)?;
        if len != size_of::<T>() {
            return Err(q
                .corrupted(format!(
                    "typed message of {len} bytes, expected {}",
                    size_of::<T>()
                ))
                .into());
        }
        let ptr = q.payload_ptr(start)?;
        // SAFETY: `size_of::<T>()` bytes of a payload under our READING
        // claim (length checked above, in bounds by `payload_ptr`).
        let value = unsafe { slots::read_value::<T>(ptr) };
        guard.n = 0;
        q.release_recv(start, n)?;
        Ok(value)
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        self.queue
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        self.queue.unregister(Role::Consumer, self.index);
    }
}
