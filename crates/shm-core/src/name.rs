//! Segment names: `/NAME` (POSIX), `sysv:KEY` and `sysv-id:ID` (System V).

use std::ffi::{CStr, CString};
use std::fmt;
use std::str::FromStr;

use crate::error::NameError;

/// Longest POSIX name accepted, without the leading slash (`NAME_MAX`).
pub const MAX_POSIX_NAME: usize = 255;

/// A validated POSIX shared memory name: a leading `/`, then 1 to 255 bytes
/// with no further `/`, no NUL, and not `.` or `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PosixName {
    c: CString,
}

impl PosixName {
    /// Validates `name`.
    ///
    /// ```
    /// use shm_core::PosixName;
    /// assert!(PosixName::new("/frames").is_ok());
    /// assert!(PosixName::new("frames").is_err());
    /// assert!(PosixName::new("/a/b").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, NameError> {
        let err = |reason: &'static str| NameError {
            name: name.to_owned(),
            reason,
        };
        let rest = name
            .strip_prefix('/')
            .ok_or_else(|| err("a POSIX segment name must start with '/'"))?;
        if rest.is_empty() {
            return Err(err("the name after '/' is empty"));
        }
        if rest.len() > MAX_POSIX_NAME {
            return Err(err("the name is longer than 255 bytes (NAME_MAX)"));
        }
        if rest.contains('/') {
            return Err(err(
                "a POSIX segment name may not contain '/' after the first character",
            ));
        }
        if rest == "." || rest == ".." {
            return Err(err("'.' and '..' are not segment names"));
        }
        if rest.bytes().any(|b| b == 0 || b.is_ascii_control()) {
            return Err(err("the name contains a NUL or control character"));
        }
        let c = CString::new(name).map_err(|_| err("the name contains a NUL byte"))?;
        Ok(PosixName { c })
    }

    /// The name with its leading slash.
    pub fn as_str(&self) -> &str {
        // The bytes came from a `&str`.
        self.c.to_str().unwrap_or_default()
    }

    /// The name without the slash: the file name under `/dev/shm`.
    pub fn file_name(&self) -> &str {
        &self.as_str()[1..]
    }

    /// The name as a C string, for `shm_open`.
    pub fn as_c_str(&self) -> &CStr {
        &self.c
    }
}

impl fmt::Display for PosixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PosixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Which segment: a POSIX name, a System V key, or a System V shmid.
///
/// Parses from and prints as `/NAME`, `sysv:KEY` (decimal or `0x` hex) and
/// `sysv-id:ID`.
///
/// ```
/// use shm_core::SegmentId;
/// let id: SegmentId = "sysv:0x1234".parse()?;
/// assert_eq!(id, SegmentId::SysV(0x1234));
/// assert_eq!(id.to_string(), "sysv:0x00001234");
/// assert!("nope".parse::<SegmentId>().is_err());
/// # Ok::<(), shm_core::NameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SegmentId {
    /// A POSIX segment, `/dev/shm/NAME`.
    Posix(PosixName),
    /// A System V segment by key. Key 0 (`IPC_PRIVATE`) is refused: it
    /// names no segment.
    SysV(i32),
    /// A System V segment by the shmid the kernel gave it.
    SysVId(i32),
}

impl SegmentId {
    /// A POSIX id from a name, validated.
    pub fn posix(name: &str) -> Result<Self, NameError> {
        PosixName::new(name).map(SegmentId::Posix)
    }

    /// The backend that holds this segment.
    pub fn backend(&self) -> crate::Backend {
        match self {
            SegmentId::Posix(_) => crate::Backend::Posix,
            SegmentId::SysV(_) | SegmentId::SysVId(_) => crate::Backend::SysV,
        }
    }
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else {
        s.parse::<i64>().ok()
    }
}

impl FromStr for SegmentId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason: &'static str| NameError {
            name: s.to_owned(),
            reason,
        };
        if s.starts_with('/') {
            return SegmentId::posix(s);
        }
        if let Some(k) = s.strip_prefix("sysv:") {
            let v = parse_int(k)
                .ok_or_else(|| err("the System V key is not a decimal or 0x hex integer"))?;
            // Keys are 32 bits; `ipcs` prints them as unsigned hex.
            let key = i32::try_from(v)
                .or_else(|_| u32::try_from(v).map(|u| u as i32))
                .map_err(|_| err("the System V key does not fit in 32 bits"))?;
            if key == 0 {
                return Err(err(
                    "key 0 is IPC_PRIVATE, which names no segment; use sysv-id:ID",
                ));
            }
            return Ok(SegmentId::SysV(key));
        }
        if let Some(k) = s.strip_prefix("sysv-id:") {
            let v = parse_int(k).ok_or_else(|| err("the shmid is not an integer"))?;
            let id = i32::try_from(v)
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| err("the shmid must be between 0 and 2147483647"))?;
            return Ok(SegmentId::SysVId(id));
        }
        Err(err(
            "expected /NAME (POSIX), sysv:KEY or sysv-id:ID (System V)",
        ))
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentId::Posix(n) => write!(f, "{n}"),
            SegmentId::SysV(k) => write!(f, "sysv:{:#010x}", *k as u32),
            SegmentId::SysVId(id) => write!(f, "sysv-id:{id}"),
        }
    }
}
