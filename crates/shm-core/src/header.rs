//! The on-segment header: its bytes ([`RawHeader`]), [`HeaderInfo::encode`],
//! [`HeaderInfo::decode`] and the checksum, and the state word's protocol.
//! [`crate::Shared`] runs the init handshake over it (`shared.rs`).
//!
//! # Layout
//!
//! Every segment made through [`crate::Shared`] starts with a 128-byte header
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

use std::error::Error;
use std::fmt;

use crate::segment::Segment;
use crate::shim::{AtomicU32, AtomicU64, Ordering};
use crate::{Fingerprint, ProcessId, ShmSafe};

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
pub(crate) const KIND_LEN: usize = 32;
/// Index in `RawHeader::rest` of the word holding `creator_pid` and `flags`
/// (bytes 48..56).
const PID_WORD: usize = (48 - 16) / 8;

/// The header as it lies in the segment: atomics only, so reading it while
/// another process writes is sound.
#[repr(C)]
pub(crate) struct RawHeader {
    magic: AtomicU64,
    version: AtomicU32,
    /// See the state table in the module docs.
    pub(crate) state: AtomicU32,
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
    pub(crate) fn snapshot(&self) -> [u8; HEADER_SIZE] {
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
    pub(crate) fn store_identity(&self, b: &[u8; HEADER_SIZE]) {
        let word = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or_default());
        self.magic.store(word(0), Ordering::Relaxed);
        self.rest[PID_WORD].store(word(16 + 8 * PID_WORD), Ordering::Relaxed);
        crate::kill_points::kill_point("header:writing");
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

pub(crate) fn checksum(b: &[u8; HEADER_SIZE]) -> u64 {
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
pub(crate) fn layout_of(fp: &Fingerprint) -> Option<(u64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
