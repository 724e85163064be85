//! Listing the segments on this machine and the processes attached to each.
//!
//! Everything here observes without disturbing, and reads only text the
//! kernel publishes:
//!
//! - System V segments come from `/proc/sysvipc/shm`. They are never
//!   attached: `shmat` would rewrite the `lpid`, `atime` and `nattch` that
//!   are being reported, so [`SegmentInfo::kind`] stays `None` for them.
//! - POSIX segments are the regular files of `/dev/shm`. The first
//!   [`HEADER_SIZE`] bytes are read with plain `read()`
//!   (never mapped, with `O_NOATIME` where allowed) to tell this library's
//!   segments, and their kind, from foreign ones.
//! - The processes holding a segment come from every `/proc/PID/maps`: a
//!   POSIX mapping shows as `/dev/shm/NAME` with the file's inode, a System V
//!   one as `/SYSV<key as 8 hex digits>` with the shmid in the inode column.
//!
//! What could not be read (the maps of other users' processes when not
//! root, a header without read permission) is said in
//! [`Listing::warnings`], never silently dropped. All text is treated as
//! untrusted input: a line that does not parse is skipped, nothing panics.
//!
//! ```
//! let listing = shm_core::list::segments()?;
//! for seg in &listing.entries {
//!     println!("{} {:?} {} bytes, pids {:?}", seg.backend, seg.name, seg.size, seg.pids);
//! }
//! for w in &listing.warnings {
//!     eprintln!("warning: {w}");
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::{Backend, HEADER_SIZE, HeaderInfo, SegmentId};

mod fds;
mod memory;
mod sysvipc;

pub use fds::{FdHolders, fd_holders};
pub use memory::{
    Dev, Holder, MapsLine, SharedMemory, ShmKind, ShmObject, SmapsEntry, parse_smaps,
};
pub use sysvipc::{SysvEntry, parse_sysvipc_shm, sysv_entries};

/// Where POSIX shared memory lives.
pub const DEV_SHM: &str = "/dev/shm";

/// One segment on this machine, of either backend, with the processes that
/// hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SegmentInfo {
    /// [`Backend::Posix`] or [`Backend::SysV`].
    pub backend: Backend,
    /// POSIX: the name with its leading slash; System V: `None`.
    pub name: Option<String>,
    /// System V: the key (0 for `IPC_PRIVATE`); POSIX: `None`.
    pub key: Option<i32>,
    /// System V: the shmid; POSIX: `None`.
    pub id: Option<i32>,
    /// Size in bytes.
    pub size: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`0o777` at most).
    pub mode: u32,
    /// System V: the kernel's attach count. POSIX: the number of distinct
    /// processes that map it (of those whose maps could be read).
    pub nattch: u64,
    /// System V: creator PID; POSIX: `None`.
    pub cpid: Option<i32>,
    /// System V: PID of the last `shmat`/`shmdt`; POSIX: `None`.
    pub lpid: Option<i32>,
    /// Every process that maps or attaches it (of those whose maps could be
    /// read), sorted, without duplicates.
    pub pids: Vec<u32>,
    /// The kind word of this library's header (`queue`, `shared`, ...);
    /// `None` for a foreign segment, one whose header could not be read, and
    /// every System V segment (never attached to find out).
    pub kind: Option<String>,
    /// The decoded header, when `kind` is `Some`.
    pub header: Option<HeaderInfo>,
    /// Why the first bytes could not be read (so `kind` is unknown rather
    /// than foreign), e.g. permission denied; `None` when they were read.
    pub header_error: Option<String>,
    /// Last attach (System V) or access (POSIX), seconds since the epoch.
    pub atime: i64,
    /// System V: last detach, seconds since the epoch (0: never).
    pub dtime: Option<i64>,
    /// Last change, seconds since the epoch.
    pub ctime: i64,
    /// POSIX: last modification, seconds since the epoch.
    pub mtime: Option<i64>,
}

impl SegmentInfo {
    /// The id to open or remove this segment with: `/NAME`, `sysv:KEY`, or
    /// `sysv-id:ID` for an `IPC_PRIVATE` segment. `None` for a POSIX file
    /// whose name is not a valid segment name.
    pub fn segment_id(&self) -> Option<SegmentId> {
        match self.backend {
            Backend::SysV => match (self.key, self.id) {
                (Some(k), _) if k != 0 => Some(SegmentId::SysV(k)),
                (_, Some(id)) => Some(SegmentId::SysVId(id)),
                _ => None,
            },
            _ => self.name.as_deref().and_then(|n| SegmentId::posix(n).ok()),
        }
    }

    /// The name as people write it: `/NAME`, `sysv:0xKEY` or `sysv-id:ID`.
    pub fn display_name(&self) -> String {
        match self.segment_id() {
            Some(id) => id.to_string(),
            None => self.name.clone().unwrap_or_else(|| "?".into()),
        }
    }

    /// Whether `id` names this segment.
    pub fn matches(&self, id: &SegmentId) -> bool {
        match id {
            SegmentId::Posix(n) => {
                self.backend == Backend::Posix && self.name.as_deref() == Some(n.as_str())
            }
            SegmentId::SysV(k) => self.backend == Backend::SysV && self.key == Some(*k),
            SegmentId::SysVId(i) => self.backend == Backend::SysV && self.id == Some(*i),
        }
    }
}

/// What [`segments`] found, and what it could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Listing {
    /// The segments: POSIX ones by name, then System V ones by shmid.
    pub entries: Vec<SegmentInfo>,
    /// What could not be read, one sentence each.
    pub warnings: Vec<String>,
    /// Whether the maps of every process could be read. When `false`, the
    /// POSIX `pids` and `nattch` may miss processes (System V `nattch` is
    /// the kernel's and always complete).
    pub maps_complete: bool,
}

impl Listing {
    /// The entry that `id` names.
    pub fn find(&self, id: &SegmentId) -> Option<&SegmentInfo> {
        self.entries.iter().find(|e| e.matches(id))
    }
}

/// A shared memory mapping found in a `/proc/PID/maps` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmMapping {
    /// `/dev/shm/NAME`, with the file's inode.
    Posix {
        /// The name with its leading slash, `/NAME`.
        name: String,
        /// The inode column.
        inode: u64,
        /// Whether the kernel marked it ` (deleted)`: the name was removed
        /// (and may since name another segment).
        deleted: bool,
    },
    /// `/SYSV<key>`, with the shmid as inode.
    SysV {
        /// The key, from the 8 hex digits after `/SYSV`.
        key: i32,
        /// The shmid, from the inode column.
        shmid: i32,
    },
}

/// Parses one line of `/proc/PID/maps`; `Some` if it maps shared memory.
///
/// The line is `ADDRESS PERMS OFFSET DEV INODE [PATH]`; the path may hold
/// spaces and ends in ` (deleted)` when the file was removed. Untrusted
/// text: anything that does not fit is `None`.
///
/// ```
/// use shm_core::list::{parse_maps_line, ShmMapping};
/// let l = "7f00-7f01 rw-s 00000000 00:05 32770    /SYSV5e001234 (deleted)";
/// assert_eq!(parse_maps_line(l), Some(ShmMapping::SysV { key: 0x5e001234, shmid: 32770 }));
/// let l = "7f00-7f01 rw-s 00000000 00:1a 1234     /dev/shm/frames";
/// assert_eq!(
///     parse_maps_line(l),
///     Some(ShmMapping::Posix { name: "/frames".into(), inode: 1234, deleted: false })
/// );
/// assert_eq!(parse_maps_line("garbage"), None);
/// ```
pub fn parse_maps_line(line: &str) -> Option<ShmMapping> {
    let m = MapsLine::parse(line)?;
    if let Some(file) = m.path.strip_prefix("/dev/shm/") {
        if file.is_empty() || file.contains('/') {
            return None;
        }
        return Some(ShmMapping::Posix {
            name: format!("/{file}"),
            inode: m.inode,
            deleted: m.deleted,
        });
    }
    match m.kind()? {
        ShmKind::SysV { key, shmid } => Some(ShmMapping::SysV { key, shmid }),
        _ => None,
    }
}

/// Who maps what, from every readable `/proc/PID/maps`.
#[derive(Debug, Default)]
struct MapsIndex {
    /// POSIX: (name, inode) → PIDs.
    posix: BTreeMap<(String, u64), BTreeSet<u32>>,
    /// System V: shmid → PIDs.
    sysv: BTreeMap<i32, BTreeSet<u32>>,
    /// PIDs whose maps could not be read for lack of permission.
    denied: Vec<u32>,
    /// Other read failures, as sentences.
    other: Vec<String>,
    /// With [`MapsIndex::keep_text`]: the maps text of every process that
    /// maps some shared memory object (see [`ShmKind`]), for [`memory`].
    holders: BTreeMap<u32, String>,
    /// Whether to fill `holders`.
    keep_text: bool,
}

impl MapsIndex {
    fn add_text(&mut self, pid: u32, text: &str) {
        let mut holds = false;
        for line in text.lines() {
            holds |= self.keep_text && MapsLine::parse(line).and_then(|m| m.kind()).is_some();
            match parse_maps_line(line) {
                Some(ShmMapping::Posix { name, inode, .. }) => {
                    self.posix.entry((name, inode)).or_default().insert(pid);
                }
                Some(ShmMapping::SysV { shmid, .. }) => {
                    self.sysv.entry(shmid).or_default().insert(pid);
                }
                None => {}
            }
        }
        if holds {
            self.holders.insert(pid, text.to_owned());
        }
    }

    fn complete(&self) -> bool {
        self.denied.is_empty() && self.other.is_empty()
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.other.clone();
        if !self.denied.is_empty() {
            let shown: Vec<String> = self
                .denied
                .iter()
                .take(8)
                .map(|&p| match comm(p) {
                    Some(c) => format!("{p} ({c})"),
                    None => p.to_string(),
                })
                .collect();
            let more = if self.denied.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            w.push(format!(
                "could not read /proc/PID/maps of {} process(es) (permission denied: pid {}{more}): \
                 the pids and POSIX nattch shown may miss them (other users' processes need root)",
                self.denied.len(),
                shown.join(", ")
            ));
        }
        w
    }
}

/// The command name of `pid`, from `/proc/PID/comm` (readable by anyone).
fn comm(pid: u32) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let c = c.trim_end();
    (!c.is_empty()).then(|| c.chars().filter(|ch| !ch.is_control()).collect())
}

fn proc_pids() -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

fn read_maps(pid: u32, index: &mut MapsIndex) {
    match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(text) => index.add_text(pid, &text),
        Err(e) => match e.kind() {
            // The process exited between the directory scan and the read.
            io::ErrorKind::NotFound => {}
            _ if e.raw_os_error() == Some(libc::ESRCH) => {}
            io::ErrorKind::PermissionDenied => index.denied.push(pid),
            _ => index
                .other
                .push(format!("could not read /proc/{pid}/maps: {e}")),
        },
    }
}

fn scan_maps() -> io::Result<MapsIndex> {
    scan_maps_with(false)
}

fn scan_maps_with(keep_text: bool) -> io::Result<MapsIndex> {
    let mut index = MapsIndex {
        keep_text,
        ..MapsIndex::default()
    };
    for pid in proc_pids()? {
        read_maps(pid, &mut index);
    }
    Ok(index)
}

/// Every process that maps the POSIX segment `name` (`/NAME`), sorted. Only
/// mappings of the file that has this name now count, not of an earlier one
/// removed since. Processes whose maps cannot be read are not included.
pub fn attached_pids_posix(name: &str) -> io::Result<Vec<u32>> {
    let file = name.strip_prefix('/').unwrap_or(name);
    let md = std::fs::metadata(Path::new(DEV_SHM).join(file))?;
    let index = scan_maps()?;
    Ok(index
        .posix
        .get(&(format!("/{file}"), md.ino()))
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default())
}

/// Every process that has the System V segment `shmid` attached, sorted.
/// Processes whose maps cannot be read are not included.
pub fn attached_pids_sysv(shmid: i32) -> io::Result<Vec<u32>> {
    let index = scan_maps()?;
    Ok(index
        .sysv
        .get(&shmid)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default())
}

/// The first [`HEADER_SIZE`] bytes of a file, read without mapping it and,
/// where the kernel allows, without touching its access time.
fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NONBLOCK)
        .open(path)
        .or_else(|e| match e.raw_os_error() {
            // O_NOATIME is only for the owner (or CAP_FOWNER).
            Some(libc::EPERM) => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path),
            _ => Err(e),
        })?;
    let mut buf = Vec::with_capacity(HEADER_SIZE);
    (&mut file).take(HEADER_SIZE as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn posix_entries(index: &MapsIndex, warnings: &mut Vec<String>) -> io::Result<Vec<SegmentInfo>> {
    let dir = match std::fs::read_dir(DEV_SHM) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            warnings.push(format!("{DEV_SHM} does not exist: no POSIX segments"));
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in dir {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                warnings.push(format!("reading {DEV_SHM}: {e}"));
                continue;
            }
        };
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            warnings.push(format!(
                "skipped {DEV_SHM}/{:?}: the name is not UTF-8",
                entry.file_name()
            ));
            continue;
        };
        // `symlink_metadata`: a symlink in /dev/shm is not a segment.
        let md = match std::fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            // Removed while listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(format!("could not stat {DEV_SHM}/{file}: {e}"));
                continue;
            }
        };
        if !md.file_type().is_file() {
            continue;
        }
        let name = format!("/{file}");
        let (kind, header, header_error) = match read_head(&entry.path()) {
            Ok(bytes) => match HeaderInfo::decode(&bytes) {
                Ok(h) => (Some(h.kind.clone()), Some(h), None),
                Err(_) => (None, None, None),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                let why = format!(
                    "could not read the header of {name} (mode {:04o}, owner uid {} gid {}): {e}; \
                     its kind is unknown",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid()
                );
                warnings.push(why.clone());
                (None, None, Some(why))
            }
        };
        let pids: Vec<u32> = index
            .posix
            .get(&(name.clone(), md.ino()))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        out.push(SegmentInfo {
            backend: Backend::Posix,
            name: Some(name),
            key: None,
            id: None,
            size: md.size(),
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o777,
            nattch: pids.len() as u64,
            cpid: None,
            lpid: None,
            pids,
            kind,
            header,
            header_error,
            atime: md.atime(),
            dtime: None,
            ctime: md.ctime(),
            mtime: Some(md.mtime()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn sysv_infos(index: &MapsIndex, warnings: &mut Vec<String>) -> Vec<SegmentInfo> {
    let entries = match sysv_entries() {
        Ok(e) => e,
        Err(e) => {
            warnings.push(format!(
                "could not read /proc/sysvipc/shm: {e}; System V segments are not listed"
            ));
            return Vec::new();
        }
    };
    let mut out: Vec<SegmentInfo> = entries
        .into_iter()
        .map(|e| SegmentInfo {
            backend: Backend::SysV,
            name: None,
            key: Some(e.key),
            id: Some(e.shmid),
            size: e.size,
            uid: e.uid,
            gid: e.gid,
            mode: e.mode,
            nattch: e.nattch,
            cpid: Some(e.cpid),
            lpid: Some(e.lpid),
            pids: index
                .sysv
                .get(&e.shmid)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            kind: None,
            header: None,
            header_error: None,
            atime: e.atime,
            dtime: Some(e.dtime),
            ctime: e.ctime,
            mtime: None,
        })
        .collect();
    out.sort_by_key(|e| e.id);
    out
}

/// Every segment on this machine: the POSIX ones in `/dev/shm` and the
/// System V ones in `/proc/sysvipc/shm`, each with the processes that map
/// it. Fails only if `/proc` itself cannot be read; everything else that
/// could not be read is in [`Listing::warnings`].
pub fn segments() -> io::Result<Listing> {
    listing_of(&scan_maps()?)
}

fn listing_of(index: &MapsIndex) -> io::Result<Listing> {
    let mut warnings = index.warnings();
    let mut entries = posix_entries(index, &mut warnings)?;
    entries.extend(sysv_infos(index, &mut warnings));
    Ok(Listing {
        entries,
        warnings,
        maps_complete: index.complete(),
    })
}

/// The [`segments`] listing and every shared memory object of the machine
/// ([`SharedMemory`]: named segments and the unnamed anonymous, memfd and
/// deleted POSIX mappings, with resident and swapped sizes), from one scan
/// of `/proc`. Processes whose maps cannot be read are in the listing's
/// warnings, those whose `smaps` cannot be read in the memory's.
pub fn segments_and_memory() -> io::Result<(Listing, SharedMemory)> {
    let index = scan_maps_with(true)?;
    let listing = listing_of(&index)?;
    Ok((listing, memory::measure(&index.holders)))
}

/// The inode of the POSIX segment file `/NAME` now, to find its object in a
/// [`SharedMemory`] ([`SharedMemory::posix`]).
pub fn posix_inode(name: &str) -> io::Result<u64> {
    let file = name.strip_prefix('/').unwrap_or(name);
    Ok(std::fs::symlink_metadata(Path::new(DEV_SHM).join(file))?.ino())
}

/// Size and free space of a filesystem, from `statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FsUsage {
    /// Total bytes.
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Bytes free (including those reserved for root).
    pub free: u64,
}

/// Size and free space of the filesystem holding `path` (`statvfs`), e.g.
/// [`DEV_SHM`].
#[doc(alias = "statvfs")]
// `fsblkcnt_t` and `c_ulong` are 64-bit here but 32-bit on some targets:
// the conversions are no-ops only on this one.
#[allow(clippy::useless_conversion)]
pub fn filesystem_usage(path: &str) -> io::Result<FsUsage> {
    let v = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frag = u64::from(v.fragment_size());
    Ok(FsUsage {
        total: u64::from(v.blocks()).saturating_mul(frag),
        available: u64::from(v.blocks_available()).saturating_mul(frag),
        free: u64::from(v.blocks_free()).saturating_mul(frag),
    })
}

/// The page size of this machine, from the `AT_PAGESZ` entry of
/// `/proc/self/auxv`; 4096 if that cannot be read.
pub fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(bytes) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_ne_bytes(w)
    };
    bytes
        .chunks_exact(16)
        .map(|pair| (word(&pair[..8]), word(&pair[8..])))
        .find(|&(k, _)| k == AT_PAGESZ)
        .map(|(_, v)| v)
        .filter(|v| v.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Segment;
    use proptest::prelude::*;

    #[test]
    fn maps_lines_parse_or_are_skipped() {
        let l = "7f3a1c000000-7f3a1c001000 rw-s 00000000 00:01 65538                      /SYSV00000000 (deleted)";
        assert_eq!(
            parse_maps_line(l),
            Some(ShmMapping::SysV {
                key: 0,
                shmid: 65538
            })
        );
        let l = "7f3a1c000000-7f3a1c001000 rw-s 00000000 00:01 65538 /SYSVffffffff";
        assert_eq!(
            parse_maps_line(l),
            Some(ShmMapping::SysV {
                key: -1,
                shmid: 65538
            })
        );
        let l = "7f00-7f01 r--s 00000000 00:1a 99 /dev/shm/with space (deleted)";
        assert_eq!(
            parse_maps_line(l),
            Some(ShmMapping::Posix {
                name: "/with space".into(),
                inode: 99,
                deleted: true
            })
        );
        for bad in [
            "",
            "7f00-7f01 rw-p 00000000 00:00 0",
            "7f00-7f01 rw-p 00000000 08:01 1234 /usr/lib/libc.so.6",
            "7f00-7f01 rw-s 00000000 00:01 x /SYSV00000000",
            "7f00-7f01 rw-s 00000000 00:01 1 /SYSV123",
            "7f00-7f01 rw-s 00000000 00:01 1 /SYSVzzzzzzzz",
            "7f00-7f01 rw-s 00000000 00:01 99999999999 /SYSV00000001",
            "7f00-7f01 rw-s 00000000 00:1a 5 /dev/shm/",
            "7f00-7f01 rw-s 00000000 00:1a 5 /dev/shm/a/b",
            "x rw-s 0 0 5 /dev/shm/a",
        ] {
            assert_eq!(parse_maps_line(bad), None, "{bad:?}");
        }
    }

    /// The layout of a 6.x kernel, with a line per kind of key and one
    /// that does not parse.
    const PROC_SYSVIPC_SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
1577058305          7   600                  4096  1234  1234      0     0     0     0     0          0          0 1700000000                     0                     0
         0         65  1600                 65536   999  1000      2  1000  1000  1000  1000 1700000001          0 1700000000                  4096                     0
-559038737          9   644                   128    42    42      1     0     0     0     0          0          0 1700000000                     0                     0
garbage line
";

    #[test]
    fn sysvipc_shm_is_read_by_column_name() {
        let e = parse_sysvipc_shm(PROC_SYSVIPC_SHM).expect("a header");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            SysvEntry {
                key: 0x5e00_0001,
                shmid: 7,
                mode: 0o600,
                size: 4096,
                cpid: 1234,
                lpid: 1234,
                nattch: 0,
                uid: 0,
                gid: 0,
                cuid: 0,
                cgid: 0,
                atime: 0,
                dtime: 0,
                ctime: 1_700_000_000,
            }
        );
        // `perms` carries SHM_DEST (01000) above the permission bits.
        assert_eq!(
            (e[1].key, e[1].mode, e[1].nattch, e[1].uid),
            (0, 0o600, 2, 1000)
        );
        assert_eq!(e[1].atime, 1_700_000_001);
        // The kernel prints keys as signed ints.
        assert_eq!(e[2].key as u32, 0xdead_beef);

        // Columns in another order, one more, none of rss/swap: same entry.
        let moved = "shmid key extra perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime\n\
                     7 1577058305 x 600 4096 1234 1234 0 0 0 0 0 0 0 1700000000\n";
        assert_eq!(parse_sysvipc_shm(moved), Some(vec![e[0].clone()]));

        // No header, or one without a needed column: not this file.
        assert_eq!(parse_sysvipc_shm(""), None);
        assert_eq!(parse_sysvipc_shm("a b c\n1 2 3\n"), None);
        let no_ctime = "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime\n";
        assert_eq!(parse_sysvipc_shm(no_ctime), None);
        // A header alone: no segments.
        let header = PROC_SYSVIPC_SHM.lines().next().unwrap();
        assert_eq!(parse_sysvipc_shm(header), Some(Vec::new()));
    }

    #[test]
    fn own_sysvipc_table_parses() {
        let text = std::fs::read_to_string("/proc/sysvipc/shm").expect("/proc/sysvipc/shm");
        let parsed = parse_sysvipc_shm(&text).expect("the kernel's header names every column");
        assert_eq!(parsed.len(), text.lines().count() - 1, "{text}");
    }

    proptest! {
        #[test]
        fn parse_maps_line_never_panics(s in "\\PC*") {
            let _ = parse_maps_line(&s);
        }

        #[test]
        fn parse_sysvipc_shm_never_panics(s in "\\PC*") {
            let _ = parse_sysvipc_shm(&s);
            let header = "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime\n";
            let _ = parse_sysvipc_shm(&format!("{header}{s}"));
        }

        #[test]
        fn parse_maps_line_never_panics_on_near_misses(
            inode in "[0-9a-z]{0,12}",
            path in "(/dev/shm/|/SYSV|/)[ -~]{0,12}( \\(deleted\\))?",
        ) {
            let _ = parse_maps_line(&format!("7f00-7f01 rw-s 00000000 00:01 {inode} {path}"));
        }
    }

    #[test]
    fn own_posix_segment_is_listed_with_this_process() {
        let name = format!("/shmrs-test-list-{}", std::process::id());
        let id = SegmentId::posix(&name).expect("name");
        let seg = Segment::create(&id, 8192, 0o640).expect("create");
        let listing = segments().expect("listing");
        let e = listing.find(&id).expect("listed");
        assert_eq!(e.size, 8192);
        assert_eq!(e.mode, 0o640);
        assert_eq!(e.pids, vec![std::process::id()]);
        assert_eq!(e.nattch, 1);
        assert_eq!(e.kind, None, "a raw segment has no header");
        assert_eq!(
            attached_pids_posix(&name).expect("pids"),
            vec![std::process::id()]
        );
        drop(seg);
        assert!(segments().expect("listing").find(&id).is_none());
    }

    #[test]
    fn a_removed_file_of_the_same_name_does_not_count_as_attached() {
        let name = format!("/shmrs-test-list-reuse-{}", std::process::id());
        let id = SegmentId::posix(&name).expect("name");
        let old = Segment::create(&id, 4096, 0o600).expect("create");
        old.remove().expect("remove");
        // `old` stays mapped as "/dev/shm/NAME (deleted)".
        // A new file of the same name, not mapped by anyone.
        let mut again = Segment::create(&id, 4096, 0o600).expect("create again");
        again.set_owner(false);
        drop(again);
        let listing = segments().expect("listing");
        let e = listing.find(&id).expect("listed");
        assert!(e.pids.is_empty(), "{:?}", e.pids);
        assert!(attached_pids_posix(&name).expect("pids").is_empty());
        crate::remove(&id).expect("remove the new one");
        drop(old);
    }

    #[test]
    fn own_sysv_segment_is_listed_with_this_process() {
        let key = 0x5e7f_0000 | (std::process::id() as i32 & 0xffff);
        let id = SegmentId::SysV(key);
        let seg = Segment::create(&id, 4096, 0o600).expect("create");
        let shmid = seg.shmid().expect("shmid");
        let listing = segments().expect("listing");
        let e = listing.find(&id).expect("listed");
        assert_eq!(e.id, Some(shmid));
        assert_eq!(e.nattch, 1);
        assert_eq!(e.cpid, Some(std::process::id() as i32));
        assert_eq!(e.pids, vec![std::process::id()]);
        assert_eq!(
            attached_pids_sysv(shmid).expect("pids"),
            vec![std::process::id()]
        );
        assert!(listing.find(&SegmentId::SysVId(shmid)).is_some());
        drop(seg);
    }

    #[test]
    fn page_size_and_dev_shm_usage_are_sane() {
        assert!(page_size() >= 4096);
        let u = filesystem_usage(DEV_SHM).expect("statvfs /dev/shm");
        assert!(u.total >= u.free && u.free >= u.available);
    }
}
