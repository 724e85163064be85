//! All shared memory, named or not, and how much of it is resident.
//!
//! Named segments (`/dev/shm` files and System V segments) are only part of
//! the shared memory of a machine. The rest hides in mappings that have no
//! name an operator can list:
//!
//! | [`ShmKind`] | what `/proc/PID/maps` shows | made by |
//! |---|---|---|
//! | [`Anonymous`](ShmKind::Anonymous) | `/dev/zero (deleted)` | `mmap(MAP_SHARED \| MAP_ANONYMOUS)`, inherited across `fork` (PostgreSQL's buffer pool) |
//! | [`Hugepage`](ShmKind::Hugepage) | `/anon_hugepage (deleted)` | the same with `MAP_HUGETLB` |
//! | [`Memfd`](ShmKind::Memfd) | `/memfd:NAME (deleted)` | `memfd_create`, passed to other processes by fd |
//! | [`DeletedPosix`](ShmKind::DeletedPosix) | `/dev/shm/NAME (deleted)` | a POSIX segment removed while still mapped |
//! | [`Posix`](ShmKind::Posix) | `/dev/shm/NAME` | `shm_open` (a named segment) |
//! | [`SysV`](ShmKind::SysV) | `/SYSV<key>` (always ` (deleted)`) | `shmget` (a named segment) |
//!
//! Each object is identified by the device and inode of its mapping (they
//! all live on an in-kernel tmpfs, or on `/dev/shm`'s), so the mappings of
//! one object in many processes are grouped into one [`ShmObject`]. Only
//! shared mappings (`s` in the permissions) of the unnamed kinds count: a
//! private mapping of a memfd is copy-on-write memory of that process.
//!
//! The resident and swapped sizes come from `/proc/PID/smaps`, read only for
//! the processes that map some shared memory (reading `smaps` walks page
//! tables, so the others are not asked). One parser, [`MapsLine::parse`],
//! reads the lines of `maps` and the mapping lines of `smaps`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;

/// A device number as `/proc/PID/maps` prints it: `major:minor` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dev {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}", self.major, self.minor)
    }
}

/// One line of `/proc/PID/maps`, or a mapping line of `/proc/PID/smaps`:
/// `START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapsLine<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// The four permission characters, e.g. `rw-s`.
    pub perms: &'a str,
    /// Offset of the mapping in its file, in bytes.
    pub offset: u64,
    /// Device of the file.
    pub dev: Dev,
    /// Inode of the file (the shmid for a System V segment).
    pub inode: u64,
    /// The path, without the ` (deleted)` suffix; empty for none.
    pub path: &'a str,
    /// Whether the kernel marked the path ` (deleted)`.
    pub deleted: bool,
}

impl<'a> MapsLine<'a> {
    /// Parses one line; `None` if it is not a mapping line. The path may
    /// hold spaces. Untrusted text: anything that does not fit is `None`.
    ///
    /// ```
    /// use shm_core::list::MapsLine;
    /// let l = MapsLine::parse("7f00-7f02 rw-s 00001000 00:01 77 /memfd:pool (deleted)").unwrap();
    /// assert_eq!((l.start, l.end, l.offset, l.inode), (0x7f00, 0x7f02, 0x1000, 77));
    /// assert_eq!((l.path, l.deleted, l.shared()), ("/memfd:pool", true, true));
    /// assert_eq!(l.dev.to_string(), "00:01");
    /// assert!(MapsLine::parse("Rss:   4 kB").is_none());
    /// ```
    pub fn parse(line: &'a str) -> Option<MapsLine<'a>> {
        let mut rest = line;
        let mut fields = [""; 5];
        for f in fields.iter_mut() {
            rest = rest.trim_start_matches(' ');
            let end = rest.find(' ').unwrap_or(rest.len());
            *f = &rest[..end];
            rest = &rest[end..];
        }
        let [addr, perms, offset, dev, inode] = fields;
        let (start, end) = addr.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        if end < start || perms.len() != 4 || !perms.is_ascii() {
            return None;
        }
        let offset = u64::from_str_radix(offset, 16).ok()?;
        let (major, minor) = dev.split_once(':')?;
        let dev = Dev {
            major: u32::from_str_radix(major, 16).ok()?,
            minor: u32::from_str_radix(minor, 16).ok()?,
        };
        let inode: u64 = inode.parse().ok()?;
        let path = rest.trim_start_matches(' ');
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (path, false),
        };
        Some(MapsLine {
            start,
            end,
            perms,
            offset,
            dev,
            inode,
            path,
            deleted,
        })
    }

    /// Whether the mapping is shared (`s` in the permissions).
    pub fn shared(&self) -> bool {
        self.perms.ends_with('s')
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the mapping is empty (never, from the kernel).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// What shared memory object this line maps, if any (see the table in
    /// the module docs).
    ///
    /// ```
    /// use shm_core::list::{MapsLine, ShmKind};
    /// let kind = |l| MapsLine::parse(l).and_then(|m| m.kind());
    /// assert_eq!(kind("7f00-7f01 rw-s 00000000 00:01 9 /dev/zero (deleted)"), Some(ShmKind::Anonymous));
    /// assert_eq!(
    ///     kind("7f00-7f01 rw-s 00000000 00:1a 5 /dev/shm/gone (deleted)"),
    ///     Some(ShmKind::DeletedPosix { name: "/gone".into() })
    /// );
    /// // A private mapping of a memfd is not shared memory.
    /// assert_eq!(kind("7f00-7f01 rw-p 00000000 00:01 9 /memfd:x (deleted)"), None);
    /// ```
    pub fn kind(&self) -> Option<ShmKind> {
        if let Some(file) = self.path.strip_prefix("/dev/shm/") {
            if file.is_empty() || file.contains('/') {
                return None;
            }
            let name = format!("/{file}");
            return Some(if self.deleted {
                if !self.shared() {
                    return None;
                }
                ShmKind::DeletedPosix { name }
            } else {
                ShmKind::Posix { name }
            });
        }
        if let Some(hex) = self.path.strip_prefix("/SYSV") {
            if hex.len() != 8 {
                return None;
            }
            let key = u32::from_str_radix(hex, 16).ok()? as i32;
            let shmid = i32::try_from(self.inode).ok()?;
            return Some(ShmKind::SysV { key, shmid });
        }
        if !self.shared() || !self.deleted {
            return None;
        }
        match self.path {
            "/dev/zero" => Some(ShmKind::Anonymous),
            "/anon_hugepage" => Some(ShmKind::Hugepage),
            p => p.strip_prefix("/memfd:").map(|name| ShmKind::Memfd {
                name: name.to_owned(),
            }),
        }
    }
}

/// What a shared memory object is (see the table in the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShmKind {
    /// A POSIX segment: the file `/dev/shm/NAME`.
    Posix {
        /// `/NAME`.
        name: String,
    },
    /// A System V segment.
    SysV {
        /// The key (0 for `IPC_PRIVATE`).
        key: i32,
        /// The shmid.
        shmid: i32,
    },
    /// A shared anonymous mapping (`/dev/zero (deleted)`).
    Anonymous,
    /// A shared anonymous mapping of huge pages (`/anon_hugepage (deleted)`).
    Hugepage,
    /// A memfd (`/memfd:NAME (deleted)`).
    Memfd {
        /// The name given to `memfd_create` (not unique).
        name: String,
    },
    /// A POSIX segment whose name was removed while it was still mapped.
    DeletedPosix {
        /// The name it had, `/NAME` (which may name another segment now).
        name: String,
    },
}

impl ShmKind {
    /// The type word the `shm` command shows: `posix`, `sysv`, `anon`,
    /// `hugepage`, `memfd` or `deleted`.
    pub fn word(&self) -> &'static str {
        match self {
            ShmKind::Posix { .. } => "posix",
            ShmKind::SysV { .. } => "sysv",
            ShmKind::Anonymous => "anon",
            ShmKind::Hugepage => "hugepage",
            ShmKind::Memfd { .. } => "memfd",
            ShmKind::DeletedPosix { .. } => "deleted",
        }
    }

    /// Whether this is a named segment (listed by [`super::segments`] too).
    pub fn is_named(&self) -> bool {
        matches!(self, ShmKind::Posix { .. } | ShmKind::SysV { .. })
    }
}

/// One process's share of a [`ShmObject`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// The process.
    pub pid: u32,
    /// Its effective uid (the owner of `/proc/PID`), if it could be read.
    pub uid: Option<u32>,
    /// Bytes of the object it maps (all its mappings of it together).
    pub mapped: u64,
    /// `Rss` of those mappings, in bytes: pages of the object present in
    /// its page tables.
    pub rss: u64,
    /// `Pss`, in bytes: its proportional share of them.
    pub pss: u64,
    /// `Swap`, in bytes: pages of the mapped range that are swapped out.
    pub swap: u64,
    /// Whether `rss`, `pss` and `swap` were read (`smaps` may be
    /// unreadable while `maps` was not); all 0 when `false`.
    pub measured: bool,
}

/// One shared memory object and every process that maps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmObject {
    /// What it is.
    pub kind: ShmKind,
    /// Device of its mappings.
    pub dev: Dev,
    /// Inode of its mappings (the shmid for System V).
    pub inode: u64,
    /// The largest extent mapped by any process (offset plus length), in
    /// bytes: the object's size as far as its mappings tell. (For named
    /// segments, the listing has the real size.)
    pub mapped_size: u64,
    /// The processes mapping it, by PID.
    pub holders: Vec<Holder>,
    /// Bytes of it resident in RAM and mapped by at least one process: the
    /// sum of the holders' `Pss` (a page mapped by `n` processes counts
    /// `1/n` in each).
    pub rss: u64,
    /// Bytes of it swapped out: the largest `Swap` any holder reports (each
    /// reports the swapped pages of the range it maps).
    pub swap: u64,
}

impl ShmObject {
    /// The PIDs of the holders, sorted.
    pub fn pids(&self) -> Vec<u32> {
        self.holders.iter().map(|h| h.pid).collect()
    }

    /// The uid of the lowest-numbered holder whose uid could be read: who
    /// an unnamed object is charged to in per-user totals.
    pub fn holder_uid(&self) -> Option<u32> {
        self.holders.iter().find_map(|h| h.uid)
    }
}

/// Every shared memory object the readable maps show; see
/// [`super::segments_and_memory`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedMemory {
    /// The objects, named ones first (POSIX by name, System V by shmid),
    /// then the unnamed ones by device and inode.
    pub objects: Vec<ShmObject>,
    /// Processes whose `smaps` could not be read (so their sizes are 0 and
    /// [`Holder::measured`] is `false`), one sentence each.
    pub warnings: Vec<String>,
}

impl SharedMemory {
    /// The object of a named POSIX segment: the current file `/NAME`, with
    /// this inode.
    pub fn posix(&self, name: &str, inode: u64) -> Option<&ShmObject> {
        self.objects.iter().find(|o| {
            o.inode == inode && matches!(&o.kind, ShmKind::Posix { name: n } if n == name)
        })
    }

    /// The object of a System V segment.
    pub fn sysv(&self, shmid: i32) -> Option<&ShmObject> {
        self.objects
            .iter()
            .find(|o| matches!(o.kind, ShmKind::SysV { shmid: s, .. } if s == shmid))
    }

    /// The unnamed objects: anonymous, huge page, memfd and deleted POSIX
    /// mappings.
    pub fn unnamed(&self) -> impl Iterator<Item = &ShmObject> {
        self.objects.iter().filter(|o| !o.kind.is_named())
    }
}

/// A `Key:   N kB` line of `smaps`, in bytes.
fn smaps_field(line: &str) -> Option<(&str, u64)> {
    let (key, rest) = line.split_once(':')?;
    let rest = rest.trim();
    let kb = rest.strip_suffix(" kB")?.trim();
    Some((key, kb.parse::<u64>().ok()?.saturating_mul(1024)))
}

/// One shared memory mapping of `/proc/PID/smaps`, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    /// What it maps.
    pub kind: ShmKind,
    /// Device of the mapping.
    pub dev: Dev,
    /// Inode of the mapping.
    pub inode: u64,
    /// Offset in the object, in bytes.
    pub offset: u64,
    /// Length, in bytes.
    pub len: u64,
    /// `Rss`, in bytes.
    pub rss: u64,
    /// `Pss`, in bytes.
    pub pss: u64,
    /// `Swap`, in bytes.
    pub swap: u64,
}

/// Parses `/proc/PID/smaps` (or `maps`: then every size is 0) into the
/// shared memory mappings it holds, with sizes. Untrusted text: lines that
/// do not parse are skipped.
///
/// ```
/// use shm_core::list::{parse_smaps, ShmKind};
/// let text = "7f00-7f10 rw-s 00000000 00:01 42 /dev/zero (deleted)\n\
///             Rss:   32 kB\nPss:   16 kB\nSwap:   8 kB\n\
///             7f20-7f21 r-xp 00000000 08:01 7 /usr/bin/x\nRss: 4 kB\n";
/// let found = parse_smaps(text);
/// assert_eq!(found.len(), 1);
/// let m = &found[0];
/// assert_eq!((&m.kind, m.dev.to_string(), m.inode), (&ShmKind::Anonymous, "00:01".into(), 42));
/// assert_eq!((m.len, m.rss, m.pss, m.swap), (0x10, 32 << 10, 16 << 10, 8 << 10));
/// ```
pub fn parse_smaps(text: &str) -> Vec<SmapsEntry> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    // Whether the block being read belongs to the last entry of `out`.
    let mut current = false;
    for line in text.lines() {
        if let Some(m) = MapsLine::parse(line) {
            current = match m.kind() {
                Some(kind) => {
                    out.push(SmapsEntry {
                        kind,
                        dev: m.dev,
                        inode: m.inode,
                        offset: m.offset,
                        len: m.len(),
                        rss: 0,
                        pss: 0,
                        swap: 0,
                    });
                    true
                }
                None => false,
            };
            continue;
        }
        if !current {
            continue;
        }
        let Some((key, bytes)) = smaps_field(line) else {
            continue;
        };
        if let Some(last) = out.last_mut() {
            match key {
                "Rss" => last.rss = bytes,
                "Pss" => last.pss = bytes,
                "Swap" => last.swap = bytes,
                _ => {}
            }
        }
    }
    out
}

/// Reads `smaps` of every PID in `pids` and groups what they map by device
/// and inode. A process that maps shared memory but whose `smaps` cannot be
/// read is measured from its `maps` text (`maps_text`), with sizes 0.
pub(super) fn measure(pids: &BTreeMap<u32, String>) -> SharedMemory {
    type Key = (Dev, u64, ShmKind);
    let mut objects: BTreeMap<Key, (u64, BTreeMap<u32, Holder>)> = BTreeMap::new();
    let mut unmeasured = Vec::new();
    for (&pid, maps_text) in pids {
        let (text, measured) = match std::fs::read_to_string(format!("/proc/{pid}/smaps")) {
            Ok(t) => (t, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
            Err(_) => {
                unmeasured.push(pid);
                (maps_text.clone(), false)
            }
        };
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .ok()
            .map(|m| m.uid());
        for m in parse_smaps(&text) {
            // Several memfds may share a name, every anonymous mapping is
            // `/dev/zero`: the device and inode tell them apart.
            let entry = objects.entry((m.dev, m.inode, m.kind)).or_default();
            entry.0 = entry.0.max(m.offset.saturating_add(m.len));
            let h = entry.1.entry(pid).or_insert_with(|| Holder {
                pid,
                uid,
                measured,
                ..Holder::default()
            });
            h.mapped = h.mapped.saturating_add(m.len);
            h.rss = h.rss.saturating_add(m.rss);
            h.pss = h.pss.saturating_add(m.pss);
            h.swap = h.swap.saturating_add(m.swap);
        }
    }
    let mut out: Vec<ShmObject> = objects
        .into_iter()
        .map(|((dev, inode, kind), (extent, holders))| {
            let holders: Vec<Holder> = holders.into_values().collect();
            ShmObject {
                rss: holders.iter().map(|h| h.pss).sum(),
                swap: holders.iter().map(|h| h.swap).max().unwrap_or(0),
                kind,
                dev,
                inode,
                mapped_size: extent,
                holders,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let rank = |o: &ShmObject| match &o.kind {
            ShmKind::Posix { name } => (0, name.clone(), 0),
            ShmKind::SysV { shmid, .. } => (1, String::new(), i64::from(*shmid)),
            _ => (2, String::new(), 0),
        };
        rank(a)
            .cmp(&rank(b))
            .then((a.dev, a.inode).cmp(&(b.dev, b.inode)))
    });
    let mut warnings = Vec::new();
    if !unmeasured.is_empty() {
        let shown: Vec<String> = unmeasured.iter().take(8).map(u32::to_string).collect();
        warnings.push(format!(
            "could not read /proc/PID/smaps of {} process(es) (pid {}{}): \
             their resident and swapped sizes count as 0",
            unmeasured.len(),
            shown.join(", "),
            if unmeasured.len() > 8 { ", ..." } else { "" }
        ));
    }
    SharedMemory {
        objects: out,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_is_recognised_and_the_rest_is_not() {
        let kind = |l: &str| MapsLine::parse(l).and_then(|m| m.kind());
        assert_eq!(
            kind("7f00-7f01 rw-s 00000000 00:01 3 /anon_hugepage (deleted)"),
            Some(ShmKind::Hugepage)
        );
        assert_eq!(
            kind("7f00-7f01 rw-s 00000000 00:01 3 /memfd:a b (deleted)"),
            Some(ShmKind::Memfd { name: "a b".into() })
        );
        assert_eq!(
            kind("7f00-7f01 rw-s 00000000 00:01 32770 /SYSV0000002a (deleted)"),
            Some(ShmKind::SysV {
                key: 42,
                shmid: 32770
            })
        );
        for none in [
            "7f00-7f01 rw-p 00000000 00:01 3 /dev/zero (deleted)",
            "7f00-7f01 rw-s 00000000 00:05 3 /dev/zero",
            "7f00-7f01 rw-p 00000000 00:1a 5 /dev/shm/x (deleted)",
            "7f00-7f01 rw-s 00000000 08:01 5 /home/x/file",
            "7f00-7f01 rw-s 00000000 08:01 5 /home/x/file (deleted)",
            "7f00-7f01 rw-p 00000000 00:00 0 [heap]",
            "7f01-7f00 rw-s 00000000 00:01 3 /dev/zero (deleted)",
            "7f00-7f01 rw-s 00000000 0001 3 /dev/zero (deleted)",
        ] {
            assert_eq!(kind(none), None, "{none}");
        }
    }

    #[test]
    fn smaps_blocks_attach_to_their_mapping() {
        let text = "\
7f00-7f04 rw-s 00000000 00:01 9 /memfd:m (deleted)
Size:                 16 kB
Rss:                  12 kB
Pss:                   6 kB
Swap:                  4 kB
VmFlags: rd wr sh mr mw me ms sd
7f10-7f11 rw-p 00000000 00:00 0
Rss:                   4 kB
7f20-7f22 rw-s 00002000 00:01 9 /memfd:m (deleted)
Rss:                   8 kB
Pss: garbage
";
        let got = parse_smaps(text);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].rss, got[0].pss, got[0].swap),
            (12 << 10, 6 << 10, 4 << 10)
        );
        assert_eq!((got[1].offset, got[1].len), (0x2000, 2));
        assert_eq!((got[1].rss, got[1].pss), (8 << 10, 0));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = MapsLine::parse(&s).and_then(|m| m.kind());
            let _ = parse_smaps(&s);
        }

        #[test]
        fn near_misses_never_panic(
            addr in "[0-9a-f-]{0,10}",
            dev in "[0-9a-f:]{0,6}",
            path in "(/dev/shm/|/SYSV|/memfd:|/dev/zero|/)[ -~]{0,12}( \\(deleted\\))?",
            kb in "[0-9 k]{0,24}",
        ) {
            let text = format!("{addr} rw-s 00000000 {dev} 1 {path}\nRss: {kb} kB\n");
            let _ = parse_smaps(&text);
        }
    }
}
