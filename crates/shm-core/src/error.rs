//! Errors, one enum per operation (a caller matches only the cases its call
//! can produce). Every message names the segment and says what to do where
//! there is something to do.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::Fingerprint;

/// A segment name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// The name as given.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid segment name {:?}: {}", self.name, self.reason)
    }
}

impl Error for NameError {}

/// Who owns an existing segment and with which permissions, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mode {:04o}, owner uid {} gid {}",
            self.mode, self.uid, self.gid
        )
    }
}

fn owner_suffix(owner: &Option<Owner>) -> String {
    owner.map(|o| format!(" ({o})")).unwrap_or_default()
}

/// Why creating a segment failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// The name is not valid.
    InvalidName(NameError),
    /// Zero, too large, or too small for what must go in it.
    InvalidSize {
        /// The segment.
        segment: String,
        /// Requested size in bytes.
        size: u64,
        /// Why it was refused.
        reason: String,
    },
    /// A segment with this name or key exists already.
    AlreadyExists {
        /// The segment.
        segment: String,
    },
    /// The caller may not create it.
    PermissionDenied {
        /// The segment.
        segment: String,
        /// Owner and mode of what is in the way, if it could be read.
        owner: Option<Owner>,
    },
    /// `/dev/shm` (or the System V pool) has no room for it.
    NoSpace {
        /// The segment.
        segment: String,
        /// Requested size in bytes.
        size: u64,
        /// What is full, with numbers.
        detail: String,
    },
    /// A kernel limit (`kernel.shmmax`, `shmmni`, `shmall`) refused it.
    Limit {
        /// The segment.
        segment: String,
        /// Which limit, with its value.
        detail: String,
    },
    /// The creator's initializer failed; the segment was removed.
    Init {
        /// The segment.
        segment: String,
        /// What the initializer said.
        source: Box<dyn Error + Send + Sync>,
    },
    /// Any other system error.
    Io {
        /// The call that failed.
        op: &'static str,
        /// The segment.
        segment: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::InvalidName(e) => e.fmt(f),
            CreateError::InvalidSize {
                segment,
                size,
                reason,
            } => {
                write!(f, "cannot create {segment} with size {size}: {reason}")
            }
            CreateError::AlreadyExists { segment } => write!(
                f,
                "cannot create {segment}: it already exists (open it instead, or remove it with `shm rm {segment}`)"
            ),
            CreateError::PermissionDenied { segment, owner } => write!(
                f,
                "permission denied creating {segment}{}",
                owner_suffix(owner)
            ),
            CreateError::NoSpace {
                segment,
                size,
                detail,
            } => {
                write!(f, "no space to create {segment} of {size} bytes: {detail}")
            }
            CreateError::Limit { segment, detail } => {
                write!(f, "cannot create {segment}: {detail}")
            }
            CreateError::Init { segment, source } => {
                write!(
                    f,
                    "initializing {segment} failed (it was removed): {source}"
                )
            }
            CreateError::Io {
                op,
                segment,
                source,
            } => {
                write!(f, "{op} failed for {segment}: {source}")
            }
        }
    }
}

impl Error for CreateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CreateError::InvalidName(e) => Some(e),
            CreateError::Init { source, .. } => Some(source.as_ref()),
            CreateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<NameError> for CreateError {
    fn from(e: NameError) -> Self {
        CreateError::InvalidName(e)
    }
}

impl CreateError {
    /// The `io::ErrorKind` this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            CreateError::InvalidName(_) | CreateError::InvalidSize { .. } => {
                io::ErrorKind::InvalidInput
            }
            CreateError::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            CreateError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            CreateError::NoSpace { .. } => io::ErrorKind::StorageFull,
            CreateError::Limit { .. } => io::ErrorKind::QuotaExceeded,
            CreateError::Init { .. } => io::ErrorKind::Other,
            CreateError::Io { source, .. } => source.kind(),
        }
    }
}

impl From<CreateError> for io::Error {
    fn from(e: CreateError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// Why opening a segment failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The name is not valid.
    InvalidName(NameError),
    /// No such segment.
    NotFound {
        /// The segment.
        segment: String,
    },
    /// The caller may not open it.
    PermissionDenied {
        /// The segment.
        segment: String,
        /// Its owner and mode, if they could be read.
        owner: Option<Owner>,
    },
    /// Smaller than its header or than the type it must hold.
    TooSmall {
        /// The segment.
        segment: String,
        /// Its size in bytes.
        size: u64,
        /// The size needed.
        needed: u64,
    },
    /// Not made by this library (bad magic or checksum).
    NotOurs {
        /// The segment.
        segment: String,
        /// What was wrong.
        detail: String,
    },
    /// Made by an incompatible version of this library.
    VersionMismatch {
        /// The segment.
        segment: String,
        /// The version in the header.
        found: u32,
        /// The version this build speaks.
        expected: u32,
    },
    /// It holds a different type, or one built with another layout.
    LayoutMismatch {
        /// The segment.
        segment: String,
        /// The type asked for.
        expected: Fingerprint,
        /// The type the header records.
        found: Fingerprint,
    },
    /// Its size differs from the one its header records (truncated or
    /// grown by someone else).
    SizeMismatch {
        /// The segment.
        segment: String,
        /// Size recorded in the header.
        header: u64,
        /// Size the kernel reports.
        actual: u64,
    },
    /// The creator died while initializing it; it will never become ready.
    CreatorDied {
        /// The segment.
        segment: String,
        /// The creator's PID.
        pid: u32,
    },
    /// The creator's initializer reported failure.
    InitFailed {
        /// The segment.
        segment: String,
    },
    /// The creator is alive but did not finish initializing in time.
    InitTimeout {
        /// The segment.
        segment: String,
        /// How long the opener waited.
        waited: Duration,
    },
    /// A value read from the segment is impossible.
    Corrupted {
        /// The segment.
        segment: String,
        /// What was impossible.
        detail: String,
    },
    /// `open_or_create` had to create and that failed.
    Create(CreateError),
    /// Any other system error.
    Io {
        /// The call that failed.
        op: &'static str,
        /// The segment.
        segment: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::InvalidName(e) => e.fmt(f),
            OpenError::NotFound { segment } => write!(f, "no segment {segment} (see `shm ls`)"),
            OpenError::PermissionDenied { segment, owner } => write!(
                f,
                "permission denied opening {segment}{}",
                owner_suffix(owner)
            ),
            OpenError::TooSmall {
                segment,
                size,
                needed,
            } => write!(
                f,
                "{segment} is {size} bytes, too small: at least {needed} are needed (truncated, or not made by this library)"
            ),
            OpenError::NotOurs { segment, detail } => {
                write!(f, "{segment} was not made by this library: {detail}")
            }
            OpenError::VersionMismatch {
                segment,
                found,
                expected,
            } => write!(
                f,
                "{segment} has format version {found}, this build reads version {expected}"
            ),
            OpenError::LayoutMismatch {
                segment,
                expected,
                found,
            } => write!(
                f,
                "{segment} holds another type or layout ({found}) than the one asked for ({expected})"
            ),
            OpenError::SizeMismatch {
                segment,
                header,
                actual,
            } => write!(
                f,
                "{segment} is {actual} bytes but its header says {header}: it was truncated or resized"
            ),
            OpenError::CreatorDied { segment, pid } => write!(
                f,
                "the creator of {segment} (pid {pid}) died while initializing it; remove it with `shm rm {segment}`"
            ),
            OpenError::InitFailed { segment } => {
                write!(f, "the creator of {segment} failed to initialize it")
            }
            OpenError::InitTimeout { segment, waited } => write!(
                f,
                "{segment} was still being initialized by a live creator after {waited:?}"
            ),
            OpenError::Corrupted { segment, detail } => {
                write!(f, "{segment} is corrupted: {detail}")
            }
            OpenError::Create(e) => e.fmt(f),
            OpenError::Io {
                op,
                segment,
                source,
            } => write!(f, "{op} failed for {segment}: {source}"),
        }
    }
}

impl Error for OpenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OpenError::InvalidName(e) => Some(e),
            OpenError::Create(e) => Some(e),
            OpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<NameError> for OpenError {
    fn from(e: NameError) -> Self {
        OpenError::InvalidName(e)
    }
}

impl From<CreateError> for OpenError {
    fn from(e: CreateError) -> Self {
        OpenError::Create(e)
    }
}

impl OpenError {
    /// The `io::ErrorKind` this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            OpenError::InvalidName(_) => io::ErrorKind::InvalidInput,
            OpenError::NotFound { .. } => io::ErrorKind::NotFound,
            OpenError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            OpenError::InitTimeout { .. } => io::ErrorKind::TimedOut,
            OpenError::Create(c) => c.kind(),
            OpenError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        }
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// An access outside the segment, or misaligned for the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundsError {
    /// Offset asked for.
    pub offset: usize,
    /// Length asked for.
    pub len: usize,
    /// Length of the segment.
    pub segment_len: usize,
    /// Alignment the type needs (1 for byte access).
    pub align: usize,
}

impl fmt::Display for BoundsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access of {} bytes at offset {} (alignment {}) is outside a {}-byte segment or misaligned",
            self.len, self.offset, self.align, self.segment_len
        )
    }
}

impl Error for BoundsError {}

/// Why an access through a [`crate::Segment`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessError {
    /// Outside the segment, or misaligned for the type asked for.
    OutOfBounds(BoundsError),
    /// A write, a view or a raw pointer asked of a handle opened read-only
    /// ([`crate::Segment::open_read_only`]); nothing was touched.
    ReadOnly {
        /// The segment.
        segment: String,
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::OutOfBounds(b) => b.fmt(f),
            AccessError::ReadOnly {
                segment,
                offset,
                len,
            } => write!(
                f,
                "cannot write {len} bytes at offset {offset} of {segment}: it was opened read-only"
            ),
        }
    }
}

impl Error for AccessError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            AccessError::OutOfBounds(b) => Some(b),
            AccessError::ReadOnly { .. } => None,
        }
    }
}

impl From<BoundsError> for AccessError {
    fn from(e: BoundsError) -> Self {
        AccessError::OutOfBounds(e)
    }
}

impl From<AccessError> for io::Error {
    fn from(e: AccessError) -> Self {
        let kind = match e {
            AccessError::OutOfBounds(_) => io::ErrorKind::InvalidInput,
            AccessError::ReadOnly { .. } => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: &str = "/shmrs-test-core-messages";

    fn owner() -> Option<Owner> {
        Some(Owner {
            mode: 0o640,
            uid: 1000,
            gid: 100,
        })
    }

    fn create_errors() -> Vec<CreateError> {
        let seg = || SEG.to_owned();
        vec![
            CreateError::InvalidName(NameError {
                name: seg(),
                reason: "because",
            }),
            CreateError::InvalidSize {
                segment: seg(),
                size: 0,
                reason: "a segment cannot be empty".into(),
            },
            CreateError::AlreadyExists { segment: seg() },
            CreateError::PermissionDenied {
                segment: seg(),
                owner: owner(),
            },
            CreateError::PermissionDenied {
                segment: seg(),
                owner: None,
            },
            CreateError::NoSpace {
                segment: seg(),
                size: 1 << 30,
                detail: "/dev/shm has 0 bytes free".into(),
            },
            CreateError::Limit {
                segment: seg(),
                detail: "kernel.shmmni = 4096".into(),
            },
            CreateError::Init {
                segment: seg(),
                source: "bad config".into(),
            },
            CreateError::Io {
                op: "mmap",
                segment: seg(),
                source: io::Error::from_raw_os_error(libc::ENOMEM),
            },
        ]
    }

    fn open_errors() -> Vec<OpenError> {
        let seg = || SEG.to_owned();
        let fp = Fingerprint {
            size: 8,
            align: 8,
            type_id: 1,
        };
        vec![
            OpenError::InvalidName(NameError {
                name: seg(),
                reason: "because",
            }),
            OpenError::NotFound { segment: seg() },
            OpenError::PermissionDenied {
                segment: seg(),
                owner: owner(),
            },
            OpenError::TooSmall {
                segment: seg(),
                size: 16,
                needed: 128,
            },
            OpenError::NotOurs {
                segment: seg(),
                detail: "bad magic".into(),
            },
            OpenError::VersionMismatch {
                segment: seg(),
                found: 2,
                expected: 1,
            },
            OpenError::LayoutMismatch {
                segment: seg(),
                expected: fp,
                found: Fingerprint { size: 16, ..fp },
            },
            OpenError::SizeMismatch {
                segment: seg(),
                header: 192,
                actual: 4288,
            },
            OpenError::CreatorDied {
                segment: seg(),
                pid: 4242,
            },
            OpenError::InitFailed { segment: seg() },
            OpenError::InitTimeout {
                segment: seg(),
                waited: Duration::from_millis(1500),
            },
            OpenError::Corrupted {
                segment: seg(),
                detail: "checksum".into(),
            },
            OpenError::Create(CreateError::AlreadyExists { segment: seg() }),
            OpenError::Io {
                op: "fstat",
                segment: seg(),
                source: io::Error::from_raw_os_error(libc::EINTR),
            },
        ]
    }

    #[test]
    fn every_message_names_the_segment() {
        for e in create_errors() {
            let text = e.to_string();
            assert!(text.contains(SEG), "{text}");
        }
        for e in open_errors() {
            let text = e.to_string();
            assert!(text.contains(SEG), "{text}");
        }
    }

    #[test]
    fn messages_carry_what_a_person_acts_on() {
        let text = |e: &dyn Error| e.to_string();
        let c = create_errors();
        assert!(
            text(&c[2]).contains(&format!("shm rm {SEG}")),
            "{}",
            text(&c[2])
        );
        assert!(
            text(&c[3]).contains("mode 0640, owner uid 1000 gid 100"),
            "{}",
            text(&c[3])
        );
        assert!(!text(&c[4]).contains("mode"), "{}", text(&c[4]));
        assert!(text(&c[5]).contains("/dev/shm has 0 bytes free"));
        assert!(text(&c[6]).contains("kernel.shmmni = 4096"));
        assert!(text(&c[7]).contains("bad config"));
        assert!(text(&c[8]).starts_with("mmap failed for"));
        let o = open_errors();
        assert!(text(&o[1]).contains("shm ls"));
        assert!(text(&o[2]).contains("mode 0640, owner uid 1000"));
        assert!(text(&o[3]).contains("16 bytes") && text(&o[3]).contains("128"));
        assert!(text(&o[6]).contains("size 16") && text(&o[6]).contains("size 8"));
        assert!(text(&o[7]).contains("4288") && text(&o[7]).contains("192"));
        assert!(text(&o[8]).contains("pid 4242") && text(&o[8]).contains("shm rm"));
        assert!(text(&o[10]).contains("1.5s"), "{}", text(&o[10]));
    }

    #[test]
    fn sources_and_io_kinds_are_wired() {
        let kinds: Vec<io::ErrorKind> = create_errors().iter().map(CreateError::kind).collect();
        assert_eq!(
            kinds,
            [
                io::ErrorKind::InvalidInput,
                io::ErrorKind::InvalidInput,
                io::ErrorKind::AlreadyExists,
                io::ErrorKind::PermissionDenied,
                io::ErrorKind::PermissionDenied,
                io::ErrorKind::StorageFull,
                io::ErrorKind::QuotaExceeded,
                io::ErrorKind::Other,
                io::ErrorKind::OutOfMemory,
            ]
        );
        let with_source: Vec<bool> = create_errors()
            .iter()
            .map(|e| e.source().is_some())
            .collect();
        assert_eq!(
            with_source,
            [true, false, false, false, false, false, false, true, true]
        );
        let kinds: Vec<io::ErrorKind> = open_errors().iter().map(OpenError::kind).collect();
        use io::ErrorKind::*;
        assert_eq!(
            kinds,
            [
                InvalidInput,
                NotFound,
                PermissionDenied,
                InvalidData,
                InvalidData,
                InvalidData,
                InvalidData,
                InvalidData,
                InvalidData,
                InvalidData,
                TimedOut,
                InvalidData,
                AlreadyExists,
                Interrupted,
            ]
        );
        for e in open_errors() {
            let has_source = e.source().is_some();
            let expected = matches!(
                e,
                OpenError::InvalidName(_) | OpenError::Create(_) | OpenError::Io { .. }
            );
            assert_eq!(has_source, expected, "{e:?}");
            let text = e.to_string();
            let io = io::Error::from(e);
            assert_eq!(io.to_string(), text, "io::Error keeps the message");
            assert!(io.get_ref().is_some());
        }
    }
}
