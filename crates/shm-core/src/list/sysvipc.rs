//! `/proc/sysvipc/shm`: every System V segment the kernel knows, read
//! without attaching, each column found by its name in the header line.

use std::io;

/// One line of `/proc/sysvipc/shm`: what the kernel knows of a System V
/// segment, read without attaching to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SysvEntry {
    /// The key (0 for `IPC_PRIVATE`).
    pub key: i32,
    /// The shmid.
    pub shmid: i32,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Creator PID.
    pub cpid: i32,
    /// PID of the last attach or detach.
    pub lpid: i32,
    /// Attach count.
    pub nattch: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// Last attach, seconds since the epoch.
    pub atime: i64,
    /// Last detach, seconds since the epoch.
    pub dtime: i64,
    /// Last change, seconds since the epoch.
    pub ctime: i64,
}

/// Where each field of a [`SysvEntry`] is in a line of `/proc/sysvipc/shm`,
/// found by the names in its header line.
struct SysvColumns {
    key: usize,
    shmid: usize,
    perms: usize,
    size: usize,
    cpid: usize,
    lpid: usize,
    nattch: usize,
    uid: usize,
    gid: usize,
    cuid: usize,
    cgid: usize,
    atime: usize,
    dtime: usize,
    ctime: usize,
}

impl SysvColumns {
    /// The columns named in `header`; `None` if one is missing.
    fn from_header(header: &str) -> Option<SysvColumns> {
        let names: Vec<&str> = header.split_whitespace().collect();
        let col = |name: &str| names.iter().position(|n| *n == name);
        Some(SysvColumns {
            key: col("key")?,
            shmid: col("shmid")?,
            perms: col("perms")?,
            size: col("size")?,
            cpid: col("cpid")?,
            lpid: col("lpid")?,
            nattch: col("nattch")?,
            uid: col("uid")?,
            gid: col("gid")?,
            cuid: col("cuid")?,
            cgid: col("cgid")?,
            atime: col("atime")?,
            dtime: col("dtime")?,
            ctime: col("ctime")?,
        })
    }

    /// One data line; `None` if it does not parse.
    fn parse(&self, line: &str) -> Option<SysvEntry> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let at = |i: usize| f.get(i).copied();
        Some(SysvEntry {
            // The kernel prints the key as a signed int.
            key: at(self.key)?
                .parse::<i64>()
                .ok()
                .and_then(|v| i32::try_from(v).ok())?,
            shmid: at(self.shmid)?.parse().ok()?,
            mode: u32::from_str_radix(at(self.perms)?, 8).ok()? & 0o777,
            size: at(self.size)?.parse().ok()?,
            cpid: at(self.cpid)?.parse().ok()?,
            lpid: at(self.lpid)?.parse().ok()?,
            nattch: at(self.nattch)?.parse().ok()?,
            uid: at(self.uid)?.parse().ok()?,
            gid: at(self.gid)?.parse().ok()?,
            cuid: at(self.cuid)?.parse().ok()?,
            cgid: at(self.cgid)?.parse().ok()?,
            atime: at(self.atime)?.parse().ok()?,
            dtime: at(self.dtime)?.parse().ok()?,
            ctime: at(self.ctime)?.parse().ok()?,
        })
    }
}

/// Parses the text of `/proc/sysvipc/shm`: a header line naming the
/// columns, then one line per segment.
///
/// Columns are found by their names in the header (`key`, `shmid`,
/// `perms`, `size`, `cpid`, `lpid`, `nattch`, `uid`, `gid`, `cuid`, `cgid`,
/// `atime`, `dtime`, `ctime`), so a kernel that adds columns (as 4.x added
/// `rss` and `swap`) or moves them still parses. `None` if the header lacks
/// one of them; a data line that does not parse is skipped. Untrusted
/// text: nothing here panics.
///
/// ```
/// let text = "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss\n\
///             1577058305 7 1600 4096 1234 1235 2 1000 1000 1000 1000 0 0 1700000000 4096\n\
///             garbage\n";
/// let entries = shm_core::list::parse_sysvipc_shm(text).expect("a header");
/// assert_eq!(entries.len(), 1);
/// assert_eq!((entries[0].key, entries[0].shmid, entries[0].mode), (0x5e00_0001, 7, 0o600));
/// assert_eq!(shm_core::list::parse_sysvipc_shm("a b c\n1 2 3\n"), None);
/// ```
pub fn parse_sysvipc_shm(text: &str) -> Option<Vec<SysvEntry>> {
    let mut lines = text.lines();
    let columns = SysvColumns::from_header(lines.next()?)?;
    Some(lines.filter_map(|l| columns.parse(l)).collect())
}

/// Every System V segment, from `/proc/sysvipc/shm` ([`parse_sysvipc_shm`]).
/// A header without the expected columns is an [`io::ErrorKind::InvalidData`]
/// error.
pub fn sysv_entries() -> io::Result<Vec<SysvEntry>> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm")?;
    parse_sysvipc_shm(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/sysvipc/shm: the header line does not name the expected columns",
        )
    })
}
