//! [`Shared<T>`]: a `T` behind the segment header, with the init handshake
//! (only the creator initializes, openers wait for ready with a deadline,
//! a creator that died during init is reported), and [`Snapshot<T>`], the
//! read-only copy an observer takes.
//!
//! The bytes of the header and the state word's protocol are in
//! `header.rs`; whether a creator is still alive is the segment's business
//! (`Segment::creator`, which asks its backend): nothing here calls the OS.
//!
//! # Detecting a dead creator
//!
//! POSIX and memfd: the creator takes an OFD write lock on its descriptor
//! right after `shm_open` and drops it once ready; the kernel drops it too
//! if the creator dies. An opener that finds the segment not ready and not
//! locked knows the creator is gone. System V: the kernel records the
//! creator PID (`cpid`), checked together with the start time in the
//! header.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{CreateError, OpenError};
use crate::header::{
    FORMAT_VERSION, HEADER_SIZE, HeaderError, HeaderInfo, InitState, KIND_LEN, MAGIC, RawHeader,
    STATE_FAILED, STATE_READY, layout_of, observe, publish,
};
use crate::segment::Segment;
use crate::{Fingerprint, ProcessId, SegmentId, ShmShared};

/// How long an opener waits on a name that exists but has no size and no
/// locked creator: the microseconds between a creator's `shm_open` and its
/// lock.
const EMPTY_GRACE: Duration = Duration::from_millis(200);

/// What an initializer passed to [`Shared::create`] returns on failure.
pub type InitError = Box<dyn Error + Send + Sync>;

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
        // Dropping the lock only matters for tidiness: an opener that sees
        // ready never looks at it.
        segment.end_creation();
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
                Self::empty(crate::segment::creator_holds(id), e, empty_since)
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

    // Calls `Segment::view` (`// SAFETY:` below).
    #[allow(unsafe_code)]
    fn validate(segment: Segment, empty_since: &mut Option<Instant>) -> Result<Self, Attempt> {
        let name = segment.describe();
        let actual = segment.len() as u64;
        // SAFETY: this function owns `segment` by value (just mapped, or
        // handed to `from_segment`), so no borrow of it is alive: this
        // `&RawHeader` is the only reference into it (`Segment::creator` forms
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
            let creator = segment.creator(header_pid);
            let pid = creator.pid;
            if creator.alive {
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
                Err(HeaderError::BadMagic(0)) if creator.recorded_by_kernel && pid != 0 => {
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

/// States ruled out by the checks before; kept out of line so the callers
/// read as the happy path.
#[cold]
fn unreachable_state() -> ! {
    unreachable!("state ruled out by validation")
}

mod snapshot;
#[cfg(test)]
mod tests;

pub use snapshot::Snapshot;
