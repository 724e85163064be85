//! [`Snapshot<T>`]: the header validated as `Shared::open` does, and a
//! private copy of the `T`, through a mapping that may be read-only.

use std::fmt;
use std::time::Duration;

use crate::error::OpenError;
use crate::header::{FORMAT_VERSION, HeaderError, HeaderInfo, InitState};
use crate::segment::Segment;
use crate::{Fingerprint, SegmentId, ShmSafe};

/// A private copy of the `T` behind a validated header, taken through a
/// read-only mapping: what an observer that may read a segment but not
/// write it (`shm stat`, a monitoring tool) uses instead of
/// [`Shared`](crate::Shared).
///
/// The header is validated as [`Shared::open`](crate::Shared::open) does
/// (magic, version, checksum, fingerprint, total size), but a snapshot
/// never waits: a segment still being initialized is
/// [`OpenError::InitTimeout`] at once. The copy is taken word by word while
/// others may write, so fields may come from slightly different moments;
/// `T: ShmSafe` makes any bytes a valid `T`. Nothing is ever written to the segment.
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
