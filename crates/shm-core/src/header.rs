//! The segment header and the init handshake behind [`Shared<T>`].
//!
//! # Layout
//!
//! Every segment made through [`Shared`] starts with a 128-byte header
//! (native endian, the same host on both sides):
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | magic | [`MAGIC`], `"SHMRSv1\0"` |
//! | 8 | 4 | version | [`FORMAT_VERSION`] |
//! | 12 | 4 | state | the init state word (below) |
//! | 16 | 8 | type_id | [`ShmSafe::TYPE_ID`] of the content |
//! | 24 | 8 | type_size | `size_of` the content |
//! | 32 | 4 | type_align | `align_of` the content |
//! | 36 | 4 | data_offset | where the content starts |
//! | 40 | 8 | total_size | size of the whole segment |
//! | 48 | 4 | creator_pid | |
//! | 52 | 4 | flags | 0 |
//! | 56 | 8 | creator_start | creator start time, clock ticks since boot |
//! | 64 | 32 | kind | NUL-padded ASCII word, e.g. `queue` |
//! | 96 | 24 | reserved | 0 |
//! | 120 | 8 | checksum | FNV-1a of bytes 0..120, state bytes taken as 0 |
//!
//! The content `T` starts at `data_offset` (128 rounded up to `T`'s
//! alignment); a trailing region for variable-size data (a queue's slots)
//! starts at the next multiple of 64 after `T` and runs to `total_size`.
//!
//! # The state word
//!
//! | value | state | set by |
//! |---|---|---|
//! | 0 | initializing | the kernel (fresh pages are zero) |
//! | [`STATE_READY`] | ready | the creator, with **Release**, after the header and `T` are written |
//! | [`STATE_FAILED`] | failed | the creator, when its initializer returned an error |
//!
//! An opener loads the word with **Acquire**; seeing ready, it sees every
//! byte the creator wrote before. No other transition exists.
//!
//! # Detecting a dead creator
//!
//! POSIX: the creator takes an OFD write lock on its descriptor right after
//! `shm_open` and drops it once ready; the kernel drops it too if the creator
//! dies. An opener that finds the segment not ready and not locked knows the
//! creator is gone. System V: the kernel records the creator PID (`cpid`),
//! checked together with the start time in the header.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{CreateError, OpenError};
use crate::segment::Segment;
use crate::shim::{AtomicU32, AtomicU64, Ordering};
use crate::{Backend, Fingerprint, ProcessId, SegmentId, ShmSafe, ShmShared};

/// The first 8 bytes of every segment this library makes.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRSv1\0");
/// The on-segment format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 128;
/// State word value: ready.
pub const STATE_READY: u32 = 0x5245_4459;
/// State word value: the creator's initializer failed.
pub const STATE_FAILED: u32 = 0x4641_494c;
const KIND_LEN: usize = 32;
/// Index in `RawHeader::rest` of the word holding `creator_pid` and `flags`
/// (bytes 48..56).
const PID_WORD: usize = (48 - 16) / 8;
/// How long an opener waits on a name that exists but has no size and no
/// locked creator: the microseconds between a creator's `shm_open` and its
/// lock.
const EMPTY_GRACE: Duration = Duration::from_millis(200);

/// The header as it lies in the segment: atomics only, so reading it while
/// another process writes is sound.
#[repr(C)]
pub(crate) struct RawHeader {
    magic: AtomicU64,
    version: AtomicU32,
    /// See the state table in the module docs.
    state: AtomicU32,
    rest: [AtomicU64; 14],
}

#[cfg(not(shm_loom))]
const _: () = assert!(size_of::<RawHeader>() == HEADER_SIZE);
#[cfg(not(shm_loom))]
const _: () = assert!(align_of::<RawHeader>() == 8);

// SAFETY: `#[repr(C)]` of atomics only: no pointers, every bit pattern is a
// valid value, all mutation is atomic. (Under `--cfg shm_loom` this type is
// never placed in a real segment.)
#[allow(unsafe_code)]
unsafe impl ShmSafe for RawHeader {
    const TYPE_ID: u64 = crate::type_id("shm_core::RawHeader/v1");
}

// SAFETY: all fields are atomics.
#[allow(unsafe_code)]
unsafe impl crate::ShmShared for RawHeader {}

impl RawHeader {
    /// Copies the header out word by word.
    fn snapshot(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&self.magic.load(Ordering::Relaxed).to_ne_bytes());
        b[8..12].copy_from_slice(&self.version.load(Ordering::Relaxed).to_ne_bytes());
        b[12..16].copy_from_slice(&self.state.load(Ordering::Relaxed).to_ne_bytes());
        for (i, w) in self.rest.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        b
    }

    /// Writes every field but the state word: the magic first and the
    /// creator's PID right after it, so that an opener that finds the magic
    /// of a creator killed in the middle (not ready, lock gone) can name it
    /// in `CreatorDied`.
    fn store_identity(&self, b: &[u8; HEADER_SIZE]) {
        let word = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or_default());
        self.magic.store(word(0), Ordering::Relaxed);
        self.rest[PID_WORD].store(word(16 + 8 * PID_WORD), Ordering::Relaxed);
        crate::kill::kill_point("header:writing");
        self.version.store(
            u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            Ordering::Relaxed,
        );
        for (i, w) in self.rest.iter().enumerate() {
            w.store(word(16 + 8 * i), Ordering::Relaxed);
        }
    }
}

/// Publishes the header: everything written before becomes visible to an
/// opener that loads the state with Acquire and sees ready.
pub(crate) fn publish(state: &AtomicU32, value: u32) {
    state.store(value, Ordering::Release);
}

/// The state an opener sees.
pub(crate) fn observe(state: &AtomicU32) -> u32 {
    state.load(Ordering::Acquire)
}

/// What an initializer passed to [`Shared::create`] returns on failure.
pub type InitError = Box<dyn Error + Send + Sync>;

/// The init state recorded in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum InitState {
    /// The creator is (or was, if it died) still initializing.
    Initializing,
    /// Ready to use.
    Ready,
    /// The creator's initializer failed.
    Failed,
}

/// Why bytes are not a valid header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_SIZE`] bytes.
    TooShort(usize),
    /// The magic is not [`MAGIC`]: not a segment of this library.
    BadMagic(u64),
    /// Another format version.
    Version(u32),
    /// The checksum does not match: the header was overwritten.
    Checksum,
    /// A field holds an impossible value.
    Invalid(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooShort(n) => {
                write!(f, "{n} bytes is shorter than the {HEADER_SIZE}-byte header")
            }
            HeaderError::BadMagic(m) => write!(f, "magic {m:#018x} is not this library's"),
            HeaderError::Version(v) => {
                write!(f, "format version {v}, this build reads {FORMAT_VERSION}")
            }
            HeaderError::Checksum => f.write_str("the header checksum does not match"),
            HeaderError::Invalid(what) => write!(f, "impossible header field: {what}"),
        }
    }
}

impl Error for HeaderError {}

/// A decoded, validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HeaderInfo {
    /// The init state.
    pub state: InitState,
    /// The content's fingerprint.
    pub fingerprint: Fingerprint,
    /// Offset of the content.
    pub data_offset: u64,
    /// Size of the whole segment.
    pub total_size: u64,
    /// The creator.
    pub creator: ProcessId,
    /// What the segment holds, e.g. `queue`.
    pub kind: String,
}

fn checksum(b: &[u8; HEADER_SIZE]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &byte) in b[..120].iter().enumerate() {
        let byte = if (12..16).contains(&i) { 0 } else { byte };
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where `T` starts and where the trailing region starts, or `None` on
/// overflow.
fn layout_of(fp: &Fingerprint) -> Option<(u64, u64)> {
    let align = u64::from(fp.align);
    let data = (HEADER_SIZE as u64).checked_next_multiple_of(align)?;
    let tail = data.checked_add(fp.size)?.checked_next_multiple_of(64)?;
    Some((data, tail))
}

impl HeaderInfo {
    /// Offset of the trailing region.
    pub fn tail_offset(&self) -> u64 {
        layout_of(&self.fingerprint).map_or(self.total_size, |(_, t)| t)
    }

    /// Encodes the header (with the state word).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        let state = match self.state {
            InitState::Initializing => 0,
            InitState::Ready => STATE_READY,
            InitState::Failed => STATE_FAILED,
        };
        b[0..8].copy_from_slice(&MAGIC.to_ne_bytes());
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
        b[12..16].copy_from_slice(&state.to_ne_bytes());
        b[16..24].copy_from_slice(&self.fingerprint.type_id.to_ne_bytes());
        b[24..32].copy_from_slice(&self.fingerprint.size.to_ne_bytes());
        b[32..36].copy_from_slice(&self.fingerprint.align.to_ne_bytes());
        b[36..40].copy_from_slice(&(self.data_offset as u32).to_ne_bytes());
        b[40..48].copy_from_slice(&self.total_size.to_ne_bytes());
        b[48..52].copy_from_slice(&self.creator.pid.to_ne_bytes());
        b[56..64].copy_from_slice(&self.creator.start.to_ne_bytes());
        let kind = self.kind.as_bytes();
        let n = kind.len().min(KIND_LEN);
        b[64..64 + n].copy_from_slice(&kind[..n]);
        let sum = checksum(&b);
        b[120..128].copy_from_slice(&sum.to_ne_bytes());
        b
    }

    /// Decodes and validates a header from untrusted bytes. Never panics;
    /// accepts only what [`HeaderInfo::encode`] can produce.
    pub fn decode(bytes: &[u8]) -> Result<HeaderInfo, HeaderError> {
        let b: &[u8; HEADER_SIZE] = bytes
            .get(..HEADER_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(HeaderError::TooShort(bytes.len()))?;
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        let magic = u64_at(0);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if checksum(b) != u64_at(120) {
            return Err(HeaderError::Checksum);
        }
        let state = match u32_at(12) {
            0 => InitState::Initializing,
            STATE_READY => InitState::Ready,
            STATE_FAILED => InitState::Failed,
            _ => return Err(HeaderError::Invalid("state word")),
        };
        let fingerprint = Fingerprint {
            type_id: u64_at(16),
            size: u64_at(24),
            align: u32_at(32),
        };
        if !fingerprint.align.is_power_of_two() || fingerprint.align > 4096 {
            return Err(HeaderError::Invalid("type alignment"));
        }
        let data_offset = u64::from(u32_at(36));
        let total_size = u64_at(40);
        let (data, tail) = layout_of(&fingerprint).ok_or(HeaderError::Invalid("type size"))?;
        if data_offset != data {
            return Err(HeaderError::Invalid("data offset"));
        }
        if tail > total_size || total_size > crate::MAX_SEGMENT_SIZE {
            return Err(HeaderError::Invalid("total size"));
        }
        if u32_at(52) != 0 || b[96..120].iter().any(|&x| x != 0) {
            return Err(HeaderError::Invalid("reserved bytes"));
        }
        let kind_bytes = &b[64..96];
        let end = kind_bytes.iter().position(|&c| c == 0).unwrap_or(KIND_LEN);
        if kind_bytes[end..].iter().any(|&c| c != 0)
            || !kind_bytes[..end].iter().all(|c| c.is_ascii_graphic())
        {
            return Err(HeaderError::Invalid("kind"));
        }
        let kind = String::from_utf8_lossy(&kind_bytes[..end]).into_owned();
        Ok(HeaderInfo {
            state,
            fingerprint,
            data_offset,
            total_size,
            creator: ProcessId {
                pid: u32_at(48),
                start: u64_at(56),
            },
            kind,
        })
    }

    /// Reads and decodes the header of a mapped segment, read-write or
    /// read-only.
    ///
    /// On a read-write handle it loads the header's words through a
    /// reference over the first [`HEADER_SIZE`] bytes while it runs; the
    /// contract of the `unsafe` [`Segment::view`] keeps other references
    /// off those bytes meanwhile.
    // Calls `Segment::view` (`// SAFETY:` below).
    #[allow(unsafe_code)]
    pub fn read(segment: &Segment) -> Result<HeaderInfo, HeaderError> {
        let short = || HeaderError::TooShort(segment.len());
        if let Some(copied) = {
            let mut b = [0u8; HEADER_SIZE];
            segment
                .read_at_if_read_only(0, &mut b)
                .map(|r| r.map(|()| b))
        } {
            return HeaderInfo::decode(&copied.map_err(|_| short())?);
        }
        // SAFETY: in this process, the first HEADER_SIZE bytes of a segment
        // are reached only through a `&RawHeader` at offset 0 (here, in
        // `Shared::create`/`open`), never by `Shared::get` (its `T` starts at
        // `data_offset >= HEADER_SIZE`) nor by anything else safe code can
        // form; `view`'s contract makes every `unsafe` caller keep off these
        // bytes while this runs. The reference does not outlive this call.
        let raw = unsafe { segment.view::<RawHeader>(0) }.map_err(|_| short())?;
        HeaderInfo::decode(&raw.snapshot())
    }
}

/// Options for [`Shared`]: permission bits, how long openers wait for ready,
/// the kind word recorded in the header, and the size of the trailing region.
#[derive(Debug, Clone)]
pub struct SharedOptions {
    mode: u32,
    timeout: Duration,
    kind: String,
    extra: u64,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions {
            mode: crate::DEFAULT_MODE,
            timeout: Duration::from_secs(5),
            kind: "shared".into(),
            extra: 0,
        }
    }
}

impl SharedOptions {
    /// Mode 0600, a 5 s open deadline, kind `shared`, no trailing region.
    pub fn new() -> Self {
        Self::default()
    }

    /// Permission bits of a new segment.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for a live creator to finish initializing.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The kind word in the header (printable ASCII, at most 32 bytes;
    /// longer words are cut), shown by `shm ls`.
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = kind
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(KIND_LEN)
            .collect();
        self
    }

    /// Bytes of trailing region after `T`.
    pub fn extra(mut self, bytes: u64) -> Self {
        self.extra = bytes;
        self
    }
}

/// A `T` in a segment behind a validated header (`T: ShmShared`, since the
/// handle gives out `&T` over bytes other processes write).
///
/// Only the creator initializes `T`; openers validate the header (magic,
/// version, checksum, layout fingerprint, total size) and wait, up to the
/// deadline of [`SharedOptions::timeout`], for the creator to publish ready.
/// A creator that died during init is reported as
/// [`OpenError::CreatorDied`], not waited on.
pub struct Shared<T: ShmShared> {
    segment: Segment,
    data_offset: usize,
    tail_offset: usize,
    _t: PhantomData<T>,
}

impl<T: ShmShared> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &self.segment)
            .field("data_offset", &self.data_offset)
            .field("tail_offset", &self.tail_offset)
            .finish()
    }
}

/// Why one attempt to open did not finish.
enum Attempt {
    /// Not ready yet, with the error to give if the deadline passes.
    Pending(OpenError),
    /// Final.
    Failed(OpenError),
}

impl<T: ShmShared> Shared<T> {
    /// Creates the segment exclusively, runs `init` on the zeroed `T`, and
    /// publishes it as ready. If `init` fails, the segment is marked failed
    /// and removed.
    pub fn create(
        id: &SegmentId,
        opts: &SharedOptions,
        init: impl FnOnce(&T) -> Result<(), InitError>,
    ) -> Result<Self, CreateError> {
        let fp = Fingerprint::of::<T>();
        let (data, tail) = layout_of(&fp).ok_or_else(|| CreateError::InvalidSize {
            segment: id.to_string(),
            size: fp.size,
            reason: "the type is too large".into(),
        })?;
        let total = tail
            .checked_add(opts.extra)
            .ok_or_else(|| CreateError::InvalidSize {
                segment: id.to_string(),
                size: opts.extra,
                reason: "header, content and trailing region overflow".into(),
            })?;
        let segment = Segment::create_inner(id, total, opts.mode, true)?;
        Self::init_in(segment, data, tail, total, opts, init)
    }

    /// The same in an anonymous (memfd) segment, to share by `fork` or by
    /// passing [`Segment::fd`].
    pub fn create_anonymous(
        opts: &SharedOptions,
        init: impl FnOnce(&T) -> Result<(), InitError>,
    ) -> Result<Self, CreateError> {
        let fp = Fingerprint::of::<T>();
        let invalid = || CreateError::InvalidSize {
            segment: "memfd".into(),
            size: fp.size,
            reason: "header, content and trailing region overflow".into(),
        };
        let (data, tail) = layout_of(&fp).ok_or_else(invalid)?;
        let total = tail.checked_add(opts.extra).ok_or_else(invalid)?;
        let segment = Segment::anonymous(total)?;
        Self::init_in(segment, data, tail, total, opts, init)
    }

    // Calls `Segment::view` (`// SAFETY:` below).
    #[allow(unsafe_code)]
    fn init_in(
        segment: Segment,
        data: u64,
        tail: u64,
        total: u64,
        opts: &SharedOptions,
        init: impl FnOnce(&T) -> Result<(), InitError>,
    ) -> Result<Self, CreateError> {
        let name = segment.describe();
        let bad_layout = || CreateError::InvalidSize {
            segment: name.clone(),
            size: total,
            reason: "the content does not fit the mapping".into(),
        };
        // SAFETY: this function owns `segment`, just created and not yet
        // shared in this process: the only references into it are this
        // `&RawHeader` over the header and the `&T` below, at
        // `data >= HEADER_SIZE` (`layout_of`), so they do not overlap.
        let raw = unsafe { segment.view::<RawHeader>(0) }.map_err(|_| bad_layout())?;
        let info = HeaderInfo {
            state: InitState::Initializing,
            fingerprint: Fingerprint::of::<T>(),
            data_offset: data,
            total_size: total,
            creator: ProcessId::current(),
            kind: opts.kind.clone(),
        };
        raw.store_identity(&info.encode());
        // SAFETY: as above; `init` gets this `&T` only, never the segment.
        let value = unsafe { segment.view::<T>(data as usize) }.map_err(|_| bad_layout())?;
        if let Err(e) = init(value) {
            publish(&raw.state, STATE_FAILED);
            let _ = segment.remove();
            return Err(CreateError::Init {
                segment: name,
                source: e,
            });
        }
        publish(&raw.state, STATE_READY);
        if let Some(fd) = segment.fd() {
            // Dropping the lock only matters for tidiness: an opener that
            // sees ready never looks at it.
            let _ = crate::sys::posix::ofd_unlock(fd);
        }
        Ok(Shared {
            segment,
            data_offset: data as usize,
            tail_offset: tail as usize,
            _t: PhantomData,
        })
    }

    /// Opens an existing segment, validates its header and waits for ready.
    pub fn open(id: &SegmentId, opts: &SharedOptions) -> Result<Self, OpenError> {
        let start = Instant::now();
        let mut backoff = Duration::from_micros(20);
        let mut empty_since: Option<Instant> = None;
        loop {
            let pending = match Self::try_open(id, &mut empty_since) {
                Ok(s) => return Ok(s),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Pending(e)) => e,
            };
            if start.elapsed() >= opts.timeout {
                return Err(match pending {
                    OpenError::InitTimeout { segment, .. } => OpenError::InitTimeout {
                        segment,
                        waited: start.elapsed(),
                    },
                    e => e,
                });
            }
            std::thread::sleep(backoff.min(opts.timeout.saturating_sub(start.elapsed())));
            backoff = (backoff * 2).min(Duration::from_millis(5));
        }
    }

    /// Opens the segment if it exists, else creates it with `init`; says
    /// whether this call created it. Race-free among many processes.
    pub fn open_or_create(
        id: &SegmentId,
        opts: &SharedOptions,
        init: impl FnOnce(&T) -> Result<(), InitError>,
    ) -> Result<(Self, bool), OpenError> {
        let mut init = Some(init);
        loop {
            match Self::create(id, opts, |t: &T| match init.take() {
                Some(f) => f(t),
                None => Err("initializer already used".into()),
            }) {
                Ok(s) => return Ok((s, true)),
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match Self::open(id, opts) {
                Ok(s) => return Ok((s, false)),
                Err(OpenError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Validates an already mapped segment (received as a descriptor, say).
    pub fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        let mut since = None;
        match Self::validate(segment, &mut since) {
            Ok(s) => Ok(s),
            Err(Attempt::Pending(e) | Attempt::Failed(e)) => Err(e),
        }
    }

    fn try_open(id: &SegmentId, empty_since: &mut Option<Instant>) -> Result<Self, Attempt> {
        match Segment::open(id) {
            Ok(seg) => Self::validate(seg, empty_since),
            Err(e @ OpenError::TooSmall { size: 0, .. }) => {
                // A POSIX name exists before its creator sizes it.
                let locked = match id {
                    SegmentId::Posix(name) => {
                        crate::sys::posix::shm_open(name.as_c_str(), nix::fcntl::OFlag::O_RDONLY, 0)
                            .and_then(|fd| {
                                crate::sys::posix::ofd_locked_by_other(std::os::fd::AsFd::as_fd(
                                    &fd,
                                ))
                            })
                            .unwrap_or(false)
                    }
                    _ => false,
                };
                Self::empty(locked, e, empty_since)
            }
            Err(e) => Err(Attempt::Failed(e)),
        }
    }

    fn empty(
        locked: bool,
        e: OpenError,
        empty_since: &mut Option<Instant>,
    ) -> Result<Self, Attempt> {
        let first = *empty_since.get_or_insert_with(Instant::now);
        if locked || first.elapsed() < EMPTY_GRACE {
            Err(Attempt::Pending(e))
        } else {
            Err(Attempt::Failed(e))
        }
    }

    /// Is the creator of a not-ready segment still alive?
    fn creator_alive(segment: &Segment, header_pid: Option<ProcessId>) -> (bool, u32) {
        match segment.backend() {
            Backend::SysV => {
                let cpid = segment.stat().ok().and_then(|s| s.cpid).unwrap_or(0).max(0) as u32;
                let who = match header_pid {
                    Some(p) if p.pid == cpid => p,
                    _ => ProcessId {
                        pid: cpid,
                        start: 0,
                    },
                };
                (who.is_alive(), cpid)
            }
            Backend::Posix | Backend::Memfd => {
                let locked = segment
                    .fd()
                    .map(crate::sys::posix::ofd_locked_by_other)
                    .is_some_and(|r| r.unwrap_or(false));
                (locked, header_pid.map_or(0, |p| p.pid))
            }
        }
    }

    // Calls `Segment::view` (`// SAFETY:` below).
    #[allow(unsafe_code)]
    fn validate(segment: Segment, empty_since: &mut Option<Instant>) -> Result<Self, Attempt> {
        let name = segment.describe();
        let actual = segment.len() as u64;
        // SAFETY: this function owns `segment` by value (just mapped, or
        // handed to `from_segment`), so no borrow of it is alive: this
        // `&RawHeader` is the only reference into it (`creator_alive` forms
        // none).
        let Ok(raw) = (unsafe { segment.view::<RawHeader>(0) }) else {
            // Not transient: a creator sizes the segment in one call
            // (`posix_fallocate`, `shmget`), and the size-0 moment before it
            // is handled by `try_open`. Waiting would only delay the error.
            return Err(Attempt::Failed(OpenError::TooSmall {
                segment: name,
                size: actual,
                needed: HEADER_SIZE as u64,
            }));
        };
        let not_ours = |detail: String| OpenError::NotOurs {
            segment: name.clone(),
            detail,
        };
        let decoded = loop {
            let state = observe(&raw.state);
            let bytes = raw.snapshot();
            let decoded = HeaderInfo::decode(&bytes);
            if state != 0 {
                break decoded;
            }
            // Initializing, or a creator that died, or not ours at all.
            let header_pid = decoded.as_ref().ok().map(|h| h.creator);
            let (alive, pid) = Self::creator_alive(&segment, header_pid);
            if alive {
                return Err(Attempt::Pending(OpenError::InitTimeout {
                    segment: name,
                    waited: Duration::ZERO,
                }));
            }
            // The creator may have published ready (and dropped its lock, or
            // exited) between the first look at the state and the liveness
            // check: look again before calling it dead.
            if observe(&raw.state) != 0 {
                continue;
            }
            return match decoded {
                Ok(_) => Err(Attempt::Failed(OpenError::CreatorDied { segment: name, pid })),
                // Our magic, the rest not (yet) valid: a creator of this
                // library killed while writing the header, as at any other
                // stage of init. The PID is stored right after the magic.
                Err(_) if bytes[0..8] == MAGIC.to_ne_bytes() => {
                    let from_header =
                        u32::from_ne_bytes([bytes[48], bytes[49], bytes[50], bytes[51]]);
                    let pid = if pid == 0 { from_header } else { pid };
                    Err(Attempt::Failed(OpenError::CreatorDied { segment: name, pid }))
                }
                Err(HeaderError::BadMagic(0)) if segment.backend() == Backend::SysV && pid != 0 => {
                    Err(Attempt::Failed(OpenError::CreatorDied { segment: name, pid }))
                }
                Err(HeaderError::BadMagic(0)) => Self::empty(
                    false,
                    not_ours("it is all zeros and no process is initializing it (its creator died before writing the header, or it was not made by this library)".into()),
                    empty_since,
                ),
                Err(e) => Err(Attempt::Failed(not_ours(e.to_string()))),
            };
        };
        let info = match decoded {
            Ok(i) => i,
            Err(HeaderError::Version(found)) => {
                return Err(Attempt::Failed(OpenError::VersionMismatch {
                    segment: name,
                    found,
                    expected: FORMAT_VERSION,
                }));
            }
            Err(e @ (HeaderError::BadMagic(_) | HeaderError::TooShort(_))) => {
                return Err(Attempt::Failed(not_ours(e.to_string())));
            }
            Err(e) => {
                return Err(Attempt::Failed(OpenError::Corrupted {
                    segment: name,
                    detail: e.to_string(),
                }));
            }
        };
        match info.state {
            InitState::Ready => {}
            InitState::Failed => {
                return Err(Attempt::Failed(OpenError::InitFailed { segment: name }));
            }
            // The word was not 0 a moment ago and no creator ever writes 0:
            // another process wrote it. Untrusted input, not a panic.
            InitState::Initializing => {
                return Err(Attempt::Failed(OpenError::Corrupted {
                    segment: name,
                    detail: "the init state went back from ready to initializing".into(),
                }));
            }
        }
        let expected = Fingerprint::of::<T>();
        if info.fingerprint != expected {
            return Err(Attempt::Failed(OpenError::LayoutMismatch {
                segment: name,
                expected,
                found: info.fingerprint,
            }));
        }
        if info.total_size != actual {
            return Err(Attempt::Failed(OpenError::SizeMismatch {
                segment: name,
                header: info.total_size,
                actual,
            }));
        }
        let (data, tail) = match layout_of(&expected) {
            Some(l) => l,
            None => return Err(Attempt::Failed(not_ours("impossible layout".into()))),
        };
        if segment.view_fits::<T>(data as usize).is_err() {
            return Err(Attempt::Failed(OpenError::TooSmall {
                segment: name,
                size: actual,
                needed: tail,
            }));
        }
        Ok(Shared {
            segment,
            data_offset: data as usize,
            tail_offset: tail as usize,
            _t: PhantomData,
        })
    }

    /// The shared value.
    ///
    /// The safe way to a reference into a segment: the `Shared` owns its
    /// mapping and places exactly one `T`, at one offset, in it.
    #[inline]
    // Calls `Segment::view` (`// SAFETY:` below).
    #[allow(unsafe_code)]
    pub fn get(&self) -> &T {
        // Checked in `init_in`/`validate`; the mapping cannot shrink under us.
        // SAFETY: `self` owns the mapping, and every reference this process
        // forms over `data_offset..data_offset + size_of::<T>()` is a `&T`
        // at `data_offset`: this one, or others from `get`. Safe code has no
        // other way in: `segment()` gives `&Segment`, whose `view` is
        // `unsafe` with a contract that keeps other references off this
        // `T`, and whose copies take `&mut`; `segment_mut` and
        // `into_segment` borrow or consume `self`, so no `&T` from here is
        // alive then. The header's `&RawHeader` ends at `HEADER_SIZE <=
        // data_offset`.
        match unsafe { self.segment.view::<T>(self.data_offset) } {
            Ok(v) => v,
            Err(_) => unreachable_state(),
        }
    }

    /// The segment underneath.
    #[inline]
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The segment underneath, to change who owns it.
    pub fn segment_mut(&mut self) -> &mut Segment {
        &mut self.segment
    }

    /// Gives back the segment.
    pub fn into_segment(self) -> Segment {
        self.segment
    }

    /// The header as it is now.
    pub fn header(&self) -> Result<HeaderInfo, HeaderError> {
        HeaderInfo::read(&self.segment)
    }

    /// Offset of the trailing region in the segment.
    pub fn tail_offset(&self) -> usize {
        self.tail_offset
    }

    /// Length of the trailing region.
    pub fn tail_len(&self) -> usize {
        self.segment.len() - self.tail_offset
    }
}

/// A private copy of the `T` behind a validated header, taken through a
/// read-only mapping: what an observer that may read a segment but not
/// write it (`shm stat`, a monitoring tool) uses instead of [`Shared`].
///
/// The header is validated as [`Shared::open`] does (magic, version,
/// checksum, fingerprint, total size), but a snapshot never waits: a
/// segment still being initialized is [`OpenError::InitTimeout`] at once.
/// The copy is taken word by word while others may write, so fields may
/// come from slightly different moments; `T: ShmSafe` makes any bytes a
/// valid `T`. Nothing is ever written to the segment.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shm_core::{SegmentId, Shared, SharedOptions, Snapshot};
/// let id = SegmentId::posix(&format!("/doc-snapshot-{}", std::process::id()))?;
/// let live = Shared::<AtomicU64>::create(&id, &SharedOptions::new(), |c| {
///     c.store(7, Ordering::Relaxed);
///     Ok(())
/// })?;
/// let seen = Snapshot::<AtomicU64>::open(&id)?;      // read-only mapping
/// assert_eq!(seen.get().load(Ordering::Relaxed), 7);  // a private copy
/// assert!(seen.segment().is_read_only());
/// # drop(live);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Snapshot<T: ShmSafe> {
    segment: Segment,
    header: HeaderInfo,
    value: Box<T>,
}

impl<T: ShmSafe> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("segment", &self.segment)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<T: ShmSafe> Snapshot<T> {
    /// Opens `id` with [`Segment::open_read_only`] (read permission is
    /// enough), validates its header and copies the `T` out.
    pub fn open(id: &SegmentId) -> Result<Self, OpenError> {
        Self::from_segment(Segment::open_read_only(id)?)
    }

    /// The same over a segment already mapped (read-only or not).
    pub fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        let name = segment.describe();
        let actual = segment.len() as u64;
        let header = match HeaderInfo::read(&segment) {
            Ok(h) => h,
            Err(HeaderError::Version(found)) => {
                return Err(OpenError::VersionMismatch {
                    segment: name,
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            Err(e @ (HeaderError::BadMagic(_) | HeaderError::TooShort(_))) => {
                return Err(OpenError::NotOurs {
                    segment: name,
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                return Err(OpenError::Corrupted {
                    segment: name,
                    detail: e.to_string(),
                });
            }
        };
        match header.state {
            InitState::Ready => {}
            InitState::Failed => return Err(OpenError::InitFailed { segment: name }),
            InitState::Initializing => {
                return Err(OpenError::InitTimeout {
                    segment: name,
                    waited: Duration::ZERO,
                });
            }
        }
        let expected = Fingerprint::of::<T>();
        if header.fingerprint != expected {
            return Err(OpenError::LayoutMismatch {
                segment: name,
                expected,
                found: header.fingerprint,
            });
        }
        if header.total_size != actual {
            return Err(OpenError::SizeMismatch {
                segment: name,
                header: header.total_size,
                actual,
            });
        }
        let value = usize::try_from(header.data_offset)
            .ok()
            .and_then(|off| segment.read_boxed::<T>(off))
            .ok_or_else(|| OpenError::TooSmall {
                segment: name.clone(),
                size: actual,
                needed: header.tail_offset(),
            })?;
        Ok(Snapshot {
            segment,
            header,
            value,
        })
    }

    /// The copy of the value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The validated header, as it was when the copy was taken.
    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// The segment underneath (read-only when opened with
    /// [`Snapshot::open`]).
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Offset of the trailing region in the segment.
    pub fn tail_offset(&self) -> usize {
        usize::try_from(self.header.tail_offset()).unwrap_or(usize::MAX)
    }

    /// Length of the trailing region.
    pub fn tail_len(&self) -> usize {
        self.segment.len().saturating_sub(self.tail_offset())
    }
}

/// States ruled out by the checks before; kept out of line so the callers
/// read as the happy path.
#[cold]
fn unreachable_state() -> ! {
    unreachable!("state ruled out by validation")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::real::AtomicU64 as StdAtomicU64;
    use crate::test_util::{Guard, assert_names, exists, posix_id, sysv_id};

    fn quick() -> SharedOptions {
        SharedOptions::new().timeout(Duration::from_millis(300))
    }

    fn sample_info() -> HeaderInfo {
        let fingerprint = Fingerprint::of::<[u64; 3]>();
        HeaderInfo {
            state: InitState::Ready,
            fingerprint,
            data_offset: 128,
            total_size: 4096,
            creator: ProcessId {
                pid: 77,
                start: 12345,
            },
            kind: "queue".into(),
        }
    }

    /// Deterministic junk: xorshift64.
    fn junk(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn open_err<T: ShmShared>(id: &SegmentId, opts: &SharedOptions) -> OpenError {
        match Shared::<T>::open(id, opts) {
            Ok(_) => panic!("{id} opened"),
            Err(e) => {
                assert_names(&e, id);
                e
            }
        }
    }

    #[test]
    fn encode_then_decode_gives_back_the_header() {
        for state in [InitState::Initializing, InitState::Ready, InitState::Failed] {
            let info = HeaderInfo {
                state,
                ..sample_info()
            };
            let bytes = info.encode();
            assert_eq!(&bytes[0..8], b"SHMRSv1\0");
            assert_eq!(HeaderInfo::decode(&bytes), Ok(info.clone()));
            // Longer input: only the first 128 bytes count.
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(&[0xaa; 50]);
            assert_eq!(HeaderInfo::decode(&longer), Ok(info));
        }
        assert_eq!(sample_info().tail_offset(), 192);
        assert_eq!(
            HeaderInfo::decode(&sample_info().encode()[..127]),
            Err(HeaderError::TooShort(127))
        );
        assert_eq!(HeaderInfo::decode(&[]), Err(HeaderError::TooShort(0)));
    }

    #[test]
    fn decode_refuses_each_kind_of_bad_header() {
        let good = sample_info().encode();
        let with = |f: &dyn Fn(&mut [u8; HEADER_SIZE]), fix_sum: bool| {
            let mut b = good;
            f(&mut b);
            if fix_sum {
                let sum = checksum(&b);
                b[120..128].copy_from_slice(&sum.to_ne_bytes());
            }
            HeaderInfo::decode(&b)
        };
        assert_eq!(
            with(&|b| b[0] = b'X', true),
            Err(HeaderError::BadMagic(u64::from_le_bytes(*b"XHMRSv1\0")))
        );
        assert_eq!(
            with(&|b| b[8..12].copy_from_slice(&2u32.to_ne_bytes()), true),
            Err(HeaderError::Version(2))
        );
        assert_eq!(with(&|b| b[20] ^= 1, false), Err(HeaderError::Checksum));
        assert_eq!(with(&|b| b[127] ^= 0x80, false), Err(HeaderError::Checksum));
        // The state word is outside the checksum, so it is checked by value.
        assert_eq!(
            with(&|b| b[12..16].copy_from_slice(&7u32.to_ne_bytes()), false),
            Err(HeaderError::Invalid("state word"))
        );
        type Damage = dyn Fn(&mut [u8; HEADER_SIZE]);
        let cases: &[(&Damage, &str)] = &[
            (
                &|b| b[32..36].copy_from_slice(&3u32.to_ne_bytes()),
                "type alignment",
            ),
            (
                &|b| b[32..36].copy_from_slice(&0u32.to_ne_bytes()),
                "type alignment",
            ),
            (
                &|b| b[32..36].copy_from_slice(&8192u32.to_ne_bytes()),
                "type alignment",
            ),
            (
                &|b| b[24..32].copy_from_slice(&u64::MAX.to_ne_bytes()),
                "type size",
            ),
            (
                &|b| b[36..40].copy_from_slice(&64u32.to_ne_bytes()),
                "data offset",
            ),
            (
                &|b| b[40..48].copy_from_slice(&100u64.to_ne_bytes()),
                "total size",
            ),
            (
                &|b| b[40..48].copy_from_slice(&(crate::MAX_SEGMENT_SIZE + 1).to_ne_bytes()),
                "total size",
            ),
            (&|b| b[52] = 1, "reserved bytes"),
            (&|b| b[100] = 1, "reserved bytes"),
            (&|b| b[119] = 1, "reserved bytes"),
            (&|b| b[66] = b' ', "kind"),
            (&|b| b[66] = 0x80, "kind"),
            // A NUL inside the word with text after it.
            (&|b| b[70] = b'x', "kind"),
        ];
        for (f, what) in cases {
            assert_eq!(with(*f, true), Err(HeaderError::Invalid(what)), "{what}");
        }
        // A full 32-byte kind word, no NUL, is fine.
        let long = HeaderInfo {
            kind: "k".repeat(32),
            ..sample_info()
        };
        assert_eq!(HeaderInfo::decode(&long.encode()), Ok(long));
        // All zeros and all ones are not headers.
        assert_eq!(
            HeaderInfo::decode(&[0; HEADER_SIZE]),
            Err(HeaderError::BadMagic(0))
        );
        assert!(HeaderInfo::decode(&[0xff; HEADER_SIZE]).is_err());
        for e in [
            HeaderError::TooShort(3),
            HeaderError::BadMagic(1),
            HeaderError::Version(9),
            HeaderError::Checksum,
            HeaderError::Invalid("kind"),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    fn create_then_open(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let opts = SharedOptions::new().kind("counter").extra(1000);
        let mut ran = false;
        let mut a = Shared::<StdAtomicU64>::create(&id, &opts, |c| {
            assert_eq!(c.load(Ordering::Relaxed), 0, "fresh content is zero");
            c.store(41, Ordering::Relaxed);
            ran = true;
            Ok(())
        })
        .expect("create");
        assert!(ran);
        assert!(a.segment().is_owner());
        let h = a.header().unwrap();
        assert_eq!(h.state, InitState::Ready);
        assert_eq!(h.kind, "counter");
        assert_eq!(h.creator, ProcessId::current());
        assert_eq!(h.fingerprint, Fingerprint::of::<StdAtomicU64>());
        assert_eq!(h.total_size, a.segment().len() as u64);
        assert_eq!(h.data_offset, 128);
        assert_eq!(a.tail_offset(), 192);
        assert_eq!(a.tail_len(), 1000);
        assert_eq!(a.segment().stat().unwrap().mode, 0o600, "default mode");

        match Shared::<StdAtomicU64>::create(&id, &opts, |_| panic!("init of a second create")) {
            Err(e @ CreateError::AlreadyExists { .. }) => assert_names(&e, &id),
            other => panic!("second create: {other:?}"),
        }

        // Mapped twice: different addresses, one value.
        let mut b = Shared::<StdAtomicU64>::open(&id, &quick()).expect("open");
        assert!(!b.segment().is_owner());
        assert_ne!(std::ptr::from_ref(a.get()), std::ptr::from_ref(b.get()));
        assert_eq!(b.get().fetch_add(1, Ordering::SeqCst), 41);
        assert_eq!(a.get().load(Ordering::SeqCst), 42);
        assert_eq!(b.header().unwrap(), h);
        assert_eq!(b.tail_len(), 1000);
        let at = b.tail_offset() + 999;
        b.segment_mut().write_at(at, b"t").unwrap();
        let mut t = [0u8; 1];
        let at = a.tail_offset() + 999;
        a.segment_mut().read_at(at, &mut t).unwrap();
        assert_eq!(&t, b"t");

        // open_or_create of an existing segment opens and does not init.
        let (c, created) =
            Shared::<StdAtomicU64>::open_or_create(&id, &quick(), |_| panic!("re-init")).unwrap();
        assert!(!created);
        assert_eq!(c.get().load(Ordering::SeqCst), 42);
        drop((b, c));

        let seg = a.into_segment();
        assert!(seg.is_owner());
        drop(seg);
        assert!(!exists(&id), "the creator owns and removes it");
        match Shared::<StdAtomicU64>::open(&id, &quick()) {
            Err(e @ OpenError::NotFound { .. }) => assert_names(&e, &id),
            other => panic!("open after the owner dropped: {other:?}"),
        }
        // open_or_create of a missing segment creates, once.
        let mut calls = 0;
        let (d, created) = Shared::<StdAtomicU64>::open_or_create(&id, &quick(), |c| {
            calls += 1;
            c.store(7, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert!(created && calls == 1);
        assert!(d.segment().is_owner());
        assert_eq!(d.get().load(Ordering::SeqCst), 7);
    }

    fn layout_mismatch(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let _a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| Ok(())).unwrap();
        match open_err::<[StdAtomicU64; 2]>(&id, &quick()) {
            OpenError::LayoutMismatch {
                expected, found, ..
            } => {
                assert_eq!(expected, Fingerprint::of::<[StdAtomicU64; 2]>());
                assert_eq!(found, Fingerprint::of::<StdAtomicU64>());
            }
            e => panic!("opened as [AtomicU64; 2]: {e:?}"),
        }
        // Same size and alignment, another type: the type id tells.
        match open_err::<std::sync::atomic::AtomicI64>(&id, &quick()) {
            OpenError::LayoutMismatch {
                expected, found, ..
            } => {
                assert_eq!((expected.size, expected.align), (found.size, found.align));
                assert_ne!(expected.type_id, found.type_id);
            }
            e => panic!("opened as u64: {e:?}"),
        }
    }

    fn not_ours(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let mut raw = Segment::create(&id, 4096, 0o600).unwrap();
        raw.write_at(0, &junk(4096, 0x1234_5678_9abc_def1)).unwrap();
        let mut state = [0u8; 4];
        raw.read_at(12, &mut state).unwrap();
        assert_ne!(state, [0; 4], "the junk must not look like initializing");
        match open_err::<StdAtomicU64>(&id, &quick()) {
            OpenError::NotOurs { detail, .. } => assert!(detail.contains("magic"), "{detail}"),
            e => panic!("junk opened: {e:?}"),
        }
        // Our magic but a wrong version.
        raw.write_at(0, &MAGIC.to_ne_bytes()).unwrap();
        raw.write_at(8, &2u32.to_ne_bytes()).unwrap();
        match open_err::<StdAtomicU64>(&id, &quick()) {
            OpenError::VersionMismatch {
                found: 2,
                expected: FORMAT_VERSION,
                ..
            } => {}
            e => panic!("version 2 opened: {e:?}"),
        }
    }

    fn too_small(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let mut raw = Segment::create(&id, 16, 0o600).unwrap();
        raw.write_at(0, &MAGIC.to_ne_bytes()).unwrap();
        // The default 5 s deadline: the error must come at once, not after
        // it (the watchdog of the test run catches a hang).
        match open_err::<StdAtomicU64>(&id, &SharedOptions::new()) {
            OpenError::TooSmall {
                size: 16, needed, ..
            } => {
                assert_eq!(needed, HEADER_SIZE as u64)
            }
            e => panic!("16 bytes opened: {e:?}"),
        }
        match Shared::<StdAtomicU64>::from_segment(raw) {
            Err(OpenError::TooSmall { size: 16, .. }) => {}
            other => panic!("from_segment of 16 bytes: {other:?}"),
        }
    }

    fn corrupted(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let mut a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| Ok(())).unwrap();
        let seg = a.segment_mut();
        let mut good = [0u8; HEADER_SIZE];
        seg.read_at(0, &mut good).unwrap();
        let expect_corrupted = |what: &str| match open_err::<StdAtomicU64>(&id, &quick()) {
            OpenError::Corrupted { detail, .. } => {
                assert!(detail.contains(what), "{detail} lacks {what}")
            }
            e => panic!("{what}: {e:?}"),
        };
        // One byte of the fingerprint changed: the checksum no longer matches.
        seg.write_at(20, &[good[20] ^ 0x01]).unwrap();
        expect_corrupted("checksum");
        // A bad value behind a valid checksum.
        let mut b = good;
        b[100] = 9;
        let sum = checksum(&b);
        b[120..128].copy_from_slice(&sum.to_ne_bytes());
        seg.write_at(0, &b).unwrap();
        expect_corrupted("reserved");
        // A state word that is no state.
        seg.write_at(0, &good).unwrap();
        seg.write_at(12, &0xdead_u32.to_ne_bytes()).unwrap();
        expect_corrupted("state");
        // The creator reported failure.
        seg.write_at(12, &STATE_FAILED.to_ne_bytes()).unwrap();
        assert!(matches!(
            open_err::<StdAtomicU64>(&id, &quick()),
            OpenError::InitFailed { .. }
        ));
        // Repaired, it opens again.
        seg.write_at(0, &good).unwrap();
        Shared::<StdAtomicU64>::open(&id, &quick()).expect("repaired header opens");
    }

    fn init_error(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        match Shared::<StdAtomicU64>::create(&id, &quick(), |c| {
            c.store(1, Ordering::Relaxed);
            Err("no config file".into())
        }) {
            Err(e @ CreateError::Init { .. }) => {
                assert_names(&e, &id);
                assert!(e.to_string().contains("no config file"), "{e}");
                let source = std::error::Error::source(&e).expect("source wired");
                assert_eq!(source.to_string(), "no config file");
            }
            other => panic!("failing init: {other:?}"),
        }
        assert!(!exists(&id), "a failed init removes the segment");
        match Shared::<StdAtomicU64>::open_or_create(&id, &quick(), |_| Err("again".into())) {
            Err(OpenError::Create(CreateError::Init { .. })) => {}
            other => panic!("open_or_create with failing init: {other:?}"),
        }
        assert!(!exists(&id));
    }

    fn modes(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let a = Shared::<StdAtomicU64>::create(&id, &quick().mode(0o640), |_| Ok(())).unwrap();
        assert_eq!(a.segment().stat().unwrap().mode, 0o640);
    }

    /// A snapshot reads through a read-only mapping, copies the value, and
    /// validates the header as `open` does.
    fn snapshots(id: SegmentId) {
        let _g = Guard::new(&[&id]);
        let a = Shared::<StdAtomicU64>::create(&id, &quick().extra(64), |c| {
            c.store(7, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        let snap = Snapshot::<StdAtomicU64>::open(&id).expect("snapshot");
        assert!(snap.segment().is_read_only());
        assert_eq!(snap.get().load(Ordering::Relaxed), 7);
        assert_eq!(snap.header().kind, "shared");
        assert_eq!((snap.tail_offset(), snap.tail_len()), (a.tail_offset(), 64));
        // A private copy: later changes are not seen.
        a.get().store(8, Ordering::Relaxed);
        assert_eq!(snap.get().load(Ordering::Relaxed), 7);
        match Snapshot::<std::sync::atomic::AtomicI64>::open(&id) {
            Err(OpenError::LayoutMismatch { .. }) => {}
            other => panic!("snapshot as another type: {other:?}"),
        }
        let raw = posix_id("snapshot-raw");
        let _g2 = Guard::new(&[&raw]);
        let mut r = Segment::create(&raw, 4096, 0o600).unwrap();
        r.write_at(0, b"not a header").unwrap();
        match Snapshot::<StdAtomicU64>::open(&raw) {
            Err(OpenError::NotOurs { .. }) => {}
            other => panic!("snapshot of a raw segment: {other:?}"),
        }
    }

    macro_rules! for_both_backends {
        ($($test:ident => $body:ident;)*) => {
            mod on_posix {
                use super::*;
                $(#[test] fn $test() { $body(posix_id(stringify!($test))) })*
            }
            mod on_sysv {
                use super::*;
                $(#[test] fn $test() { $body(sysv_id()) })*
            }
        };
    }

    for_both_backends! {
        create_open_and_open_or_create => create_then_open;
        another_type_is_a_layout_mismatch => layout_mismatch;
        junk_is_not_ours => not_ours;
        a_segment_smaller_than_the_header_is_too_small => too_small;
        damaged_headers_are_corrupted => corrupted;
        a_failing_initializer_removes_the_segment => init_error;
        shared_options_mode_is_applied => modes;
        a_snapshot_copies_through_a_read_only_mapping => snapshots;
    }

    #[test]
    fn a_grown_posix_segment_is_a_size_mismatch() {
        let id = posix_id("grown");
        let _g = Guard::new(&[&id]);
        let a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| Ok(())).unwrap();
        let SegmentId::Posix(name) = &id else {
            unreachable!()
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{}", name.file_name()))
            .unwrap();
        file.set_len(a.segment().len() as u64 + 4096).unwrap();
        match open_err::<StdAtomicU64>(&id, &quick()) {
            OpenError::SizeMismatch { header, actual, .. } => {
                assert_eq!(header, 192);
                assert_eq!(actual, 192 + 4096);
            }
            e => panic!("grown segment: {e:?}"),
        }
    }

    #[test]
    fn all_zeros_without_a_creator_is_not_ours() {
        let id = posix_id("zeros");
        let _g = Guard::new(&[&id]);
        let _raw = Segment::create(&id, 4096, 0o600).unwrap();
        assert!(matches!(
            open_err::<StdAtomicU64>(&id, &quick()),
            OpenError::NotOurs { .. }
        ));
    }

    #[test]
    fn a_locked_creator_is_waited_for_and_its_death_reported() {
        // The POSIX handshake in one process: the creator's descriptor holds
        // the OFD lock, an opener's own descriptor sees it.
        let id = posix_id("handshake");
        let _g = Guard::new(&[&id]);
        let mut creator = Segment::create_inner(&id, 192, 0o600, true).unwrap();
        let info = HeaderInfo {
            state: InitState::Initializing,
            fingerprint: Fingerprint::of::<StdAtomicU64>(),
            data_offset: 128,
            total_size: 192,
            creator: ProcessId::current(),
            kind: "shared".into(),
        };
        creator.write_at(0, &info.encode()).unwrap();
        let timeout = Duration::from_millis(50);
        match open_err::<StdAtomicU64>(&id, &quick().timeout(timeout)) {
            OpenError::InitTimeout { waited, .. } => {
                assert!(waited >= timeout, "waited {waited:?}, deadline {timeout:?}")
            }
            e => panic!("live creator: {e:?}"),
        }
        // The creator goes away without publishing: its lock goes with it.
        creator.set_owner(false);
        drop(creator);
        match open_err::<StdAtomicU64>(&id, &SharedOptions::new()) {
            OpenError::CreatorDied { pid, .. } => assert_eq!(pid, std::process::id()),
            e => panic!("dead creator: {e:?}"),
        }
    }

    #[test]
    fn an_opener_racing_a_finishing_creator_never_calls_it_dead() {
        // The creator publishes ready and drops its lock while an opener is
        // between its look at the state and its look at the lock: the opener
        // must look at the state again, not report a dead creator.
        let id = posix_id("finish-race");
        let _g = Guard::new(&[&id]);
        let mut opened = 0;
        for round in 0..300u32 {
            let done = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                let creator = s.spawn(|| {
                    let spin = Instant::now();
                    let a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| {
                        while spin.elapsed() < Duration::from_micros(u64::from(round % 40)) {
                            std::hint::spin_loop();
                        }
                        Ok(())
                    })
                    .expect("create");
                    while !done.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    drop(a);
                });
                let start = Instant::now();
                // No panic before `done` is set: the creator would wait
                // for it forever and the scope with it.
                let outcome = loop {
                    match Shared::<StdAtomicU64>::open(&id, &SharedOptions::new()) {
                        Ok(_) => break Ok(()),
                        Err(OpenError::NotFound { .. })
                            if start.elapsed() < Duration::from_secs(10) =>
                        {
                            std::hint::spin_loop()
                        }
                        Err(e) => break Err(e),
                    }
                };
                done.store(true, Ordering::Release);
                creator.join().expect("creator thread");
                if let Err(e) = outcome {
                    panic!("round {round}: {e}");
                }
                opened += 1;
            });
        }
        assert_eq!(opened, 300);
    }

    #[test]
    fn an_anonymous_shared_value_travels_by_descriptor() {
        let a = Shared::<[StdAtomicU64; 4]>::create_anonymous(&quick(), |v| {
            v[3].store(99, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        let fd = a.segment().fd().unwrap().try_clone_to_owned().unwrap();
        let b = Shared::<[StdAtomicU64; 4]>::from_segment(Segment::from_fd(fd).unwrap()).unwrap();
        assert_ne!(std::ptr::from_ref(a.get()), std::ptr::from_ref(b.get()));
        assert_eq!(b.get()[3].load(Ordering::SeqCst), 99);
        let fd = a.segment().fd().unwrap().try_clone_to_owned().unwrap();
        match Shared::<StdAtomicU64>::from_segment(Segment::from_fd(fd).unwrap()) {
            Err(OpenError::LayoutMismatch { segment, .. }) => assert_eq!(segment, "memfd"),
            other => panic!("memfd as another type: {other:?}"),
        }
        match Shared::<StdAtomicU64>::create_anonymous(&quick(), |_| Err("nope".into())) {
            Err(CreateError::Init { segment, .. }) => assert_eq!(segment, "memfd"),
            other => panic!("failing anonymous init: {other:?}"),
        }
    }

    #[test]
    fn the_kind_word_is_cut_to_printable_ascii() {
        let id = posix_id("kind");
        let _g = Guard::new(&[&id]);
        let opts = quick().kind(&format!("a b\u{e9}\n{}", "z".repeat(40)));
        let a = Shared::<std::sync::atomic::AtomicU8>::create(&id, &opts, |_| Ok(())).unwrap();
        let kind = a.header().unwrap().kind;
        assert_eq!(kind, format!("ab{}", "z".repeat(30)));
        assert_eq!(kind.len(), 32);
    }

    #[test]
    fn absurd_trailing_regions_are_refused() {
        let id = posix_id("extra");
        let _g = Guard::new(&[&id]);
        for extra in [u64::MAX, crate::MAX_SEGMENT_SIZE] {
            match Shared::<std::sync::atomic::AtomicU8>::create(&id, &quick().extra(extra), |_| {
                Ok(())
            }) {
                Err(e @ CreateError::InvalidSize { .. }) => assert_names(&e, &id),
                other => panic!("extra {extra}: {other:?}"),
            }
        }
        assert!(!exists(&id));
    }

    #[test]
    fn every_error_converts_into_io_error() {
        let id = posix_id("io");
        let e = io::Error::from(OpenError::InitTimeout {
            segment: id.to_string(),
            waited: Duration::from_secs(1),
        });
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains(&id.to_string()));
        let e = io::Error::from(OpenError::LayoutMismatch {
            segment: id.to_string(),
            expected: Fingerprint::of::<u8>(),
            found: Fingerprint::of::<u16>(),
        });
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = io::Error::from(OpenError::from(crate::NameError {
            name: "x".into(),
            reason: "because",
        }));
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
    use std::io;
}

/// loom model of the init handshake: the creator writes the header, then
/// publishes ready with Release; an opener that sees ready (Acquire) reads
/// the whole header as written, never a mix. Run by `cargo xtask loom`.
#[cfg(all(test, shm_loom))]
mod loom_tests {
    use loom::sync::Arc;

    use super::*;

    fn blank() -> RawHeader {
        RawHeader {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            state: AtomicU32::new(0),
            rest: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[test]
    fn loom_an_opener_that_sees_ready_sees_the_whole_header() {
        loom::model(|| {
            let raw = Arc::new(blank());
            let info = HeaderInfo {
                state: InitState::Initializing,
                fingerprint: Fingerprint {
                    size: 64,
                    align: 8,
                    type_id: 0x1234_5678,
                },
                data_offset: 128,
                total_size: 256,
                creator: ProcessId { pid: 42, start: 7 },
                kind: "queue".into(),
            };
            let creator = {
                let raw = raw.clone();
                let bytes = info.encode();
                loom::thread::spawn(move || {
                    raw.store_identity(&bytes);
                    publish(&raw.state, STATE_READY);
                })
            };
            // The opener: it looks once; if ready, everything must be there.
            if observe(&raw.state) == STATE_READY {
                let seen = HeaderInfo::decode(&raw.snapshot()).expect("a ready header decodes");
                assert_eq!(
                    seen,
                    HeaderInfo {
                        state: InitState::Ready,
                        ..info
                    }
                );
            }
            creator.join().unwrap();
        });
    }
}
