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
    // `from_str_radix` and `parse` accept a leading sign; `0x-5` or `0x+5`
    // are not hex numbers, so only a bare decimal may carry one.
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> NameError {
        match PosixName::new(name) {
            Ok(n) => panic!("{name:?} was accepted as {n}"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_posix_names_are_accepted_as_given() {
        let longest = format!("/{}", "x".repeat(MAX_POSIX_NAME));
        for name in [
            "/a",
            "/frames",
            "/with.dots",
            "/...",
            "/a b",
            "/ünï",
            &longest,
        ] {
            let n = PosixName::new(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(n.as_str(), name);
            assert_eq!(n.file_name(), &name[1..]);
            assert_eq!(n.as_c_str().to_bytes(), name.as_bytes());
            assert_eq!(n.to_string(), name);
        }
    }

    #[test]
    fn invalid_posix_names_are_refused_with_the_reason() {
        let too_long = format!("/{}", "x".repeat(MAX_POSIX_NAME + 1));
        let cases: &[(&str, &str)] = &[
            ("frames", "start with '/'"),
            ("", "start with '/'"),
            ("/", "empty"),
            (&too_long, "longer than 255"),
            ("/a/b", "may not contain '/'"),
            ("//", "may not contain '/'"),
            ("/.", "'.' and '..'"),
            ("/..", "'.' and '..'"),
            ("/a\0b", "NUL or control"),
            ("/\0", "NUL or control"),
            ("/a\nb", "NUL or control"),
            ("/tab\there", "NUL or control"),
            ("/del\x7f", "NUL or control"),
        ];
        for (name, reason) in cases {
            let e = refused(name);
            assert_eq!(&e.name, name);
            assert!(e.reason.contains(reason), "{name:?}: {}", e.reason);
            let text = e.to_string();
            assert!(text.contains(&format!("{name:?}")), "{text}");
            assert!(text.contains(e.reason), "{text}");
            // The same refusal through `SegmentId`, when it looks POSIX.
            if name.starts_with('/') {
                assert_eq!(SegmentId::posix(name), Err(e.clone()));
                assert_eq!(name.parse::<SegmentId>(), Err(e));
            }
        }
    }

    #[test]
    fn segment_ids_parse_and_print_round_trip() {
        let cases: &[(&str, SegmentId, &str)] = &[
            ("/frames", SegmentId::posix("/frames").unwrap(), "/frames"),
            ("sysv:0x1234", SegmentId::SysV(0x1234), "sysv:0x00001234"),
            ("sysv:0X1234", SegmentId::SysV(0x1234), "sysv:0x00001234"),
            ("sysv:4660", SegmentId::SysV(0x1234), "sysv:0x00001234"),
            (
                "sysv:0xABCdef",
                SegmentId::SysV(0xab_cdef),
                "sysv:0x00abcdef",
            ),
            (
                "sysv:0x7fffffff",
                SegmentId::SysV(i32::MAX),
                "sysv:0x7fffffff",
            ),
            // Keys are 32 bits: `ipcs` prints them as unsigned hex.
            ("sysv:0xffffffff", SegmentId::SysV(-1), "sysv:0xffffffff"),
            (
                "sysv:0x80000000",
                SegmentId::SysV(i32::MIN),
                "sysv:0x80000000",
            ),
            ("sysv:-1", SegmentId::SysV(-1), "sysv:0xffffffff"),
            ("sysv:1", SegmentId::SysV(1), "sysv:0x00000001"),
            ("sysv-id:0", SegmentId::SysVId(0), "sysv-id:0"),
            ("sysv-id:42", SegmentId::SysVId(42), "sysv-id:42"),
            ("sysv-id:0x10", SegmentId::SysVId(16), "sysv-id:16"),
            (
                "sysv-id:2147483647",
                SegmentId::SysVId(i32::MAX),
                "sysv-id:2147483647",
            ),
        ];
        for (text, id, printed) in cases {
            let parsed: SegmentId = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&parsed, id, "{text}");
            assert_eq!(parsed.to_string(), *printed);
            assert_eq!(printed.parse::<SegmentId>().as_ref(), Ok(id), "{printed}");
        }
        assert_eq!(
            SegmentId::posix("/a").unwrap().backend(),
            crate::Backend::Posix
        );
        assert_eq!(SegmentId::SysV(1).backend(), crate::Backend::SysV);
        assert_eq!(SegmentId::SysVId(1).backend(), crate::Backend::SysV);
    }

    #[test]
    fn bad_segment_ids_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("sysv:0", "IPC_PRIVATE"),
            ("sysv:0x0", "IPC_PRIVATE"),
            ("sysv:0x00000000", "IPC_PRIVATE"),
            ("sysv:-0", "IPC_PRIVATE"),
            ("sysv:", "not a decimal or 0x hex"),
            ("sysv:0x", "not a decimal or 0x hex"),
            ("sysv:0x-5", "not a decimal or 0x hex"),
            ("sysv:0x+5", "not a decimal or 0x hex"),
            ("sysv:12ab", "not a decimal or 0x hex"),
            ("sysv: 1", "not a decimal or 0x hex"),
            ("sysv:0x100000000", "32 bits"),
            ("sysv:-2147483649", "32 bits"),
            ("sysv-id:-1", "between 0 and"),
            ("sysv-id:2147483648", "between 0 and"),
            ("sysv-id:x", "not an integer"),
            ("nope", "expected /NAME"),
            ("", "expected /NAME"),
            ("SYSV:1", "expected /NAME"),
            ("posix:/a", "expected /NAME"),
        ];
        for (text, reason) in cases {
            match text.parse::<SegmentId>() {
                Ok(id) => panic!("{text:?} was accepted as {id}"),
                Err(e) => {
                    assert_eq!(&e.name, text);
                    assert!(e.reason.contains(reason), "{text:?}: {}", e.reason);
                    assert!(e.to_string().contains(&format!("{text:?}")));
                }
            }
        }
    }
}
