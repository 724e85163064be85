//! Listing the segments on this machine and the processes attached to each.

use std::io;

/// One line of `/proc/sysvipc/shm`: what the kernel knows of a System V
/// segment, read without attaching to it.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl SysvEntry {
    /// Parses one data line of `/proc/sysvipc/shm`; `None` if it is not one.
    pub fn parse_line(line: &str) -> Option<SysvEntry> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            return None;
        }
        Some(SysvEntry {
            key: f[0]
                .parse::<i64>()
                .ok()
                .and_then(|v| i32::try_from(v).ok())?,
            shmid: f[1].parse().ok()?,
            mode: u32::from_str_radix(f[2], 8).ok()? & 0o777,
            size: f[3].parse().ok()?,
            cpid: f[4].parse().ok()?,
            lpid: f[5].parse().ok()?,
            nattch: f[6].parse().ok()?,
            uid: f[7].parse().ok()?,
            gid: f[8].parse().ok()?,
            cuid: f[9].parse().ok()?,
            cgid: f[10].parse().ok()?,
            atime: f[11].parse().ok()?,
            dtime: f[12].parse().ok()?,
            ctime: f[13].parse().ok()?,
        })
    }
}

/// Every System V segment, from `/proc/sysvipc/shm`.
pub fn sysv_entries() -> io::Result<Vec<SysvEntry>> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(SysvEntry::parse_line)
        .collect())
}
