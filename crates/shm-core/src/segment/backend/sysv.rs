//! The System V backend: `shmget`, `shmat`, `shmctl(IPC_STAT | IPC_SET |
//! IPC_RMID)`: a kernel object named by key, or by the shmid the kernel
//! gave it.

use std::io;
use std::num::NonZeroUsize;

use super::{Backend, Creator, Stat};
use crate::ProcessId;
use crate::error::{CreateError, OpenError, Owner};
use crate::sys::map::Mapping;
use crate::sys::sysv;

/// A mapped System V segment.
#[derive(Debug)]
pub(crate) struct SysV {
    shmid: i32,
    /// The key it was made or opened by; `None` when opened by shmid.
    key: Option<i32>,
}

/// Creates `key` exclusively (`shmget(IPC_CREAT | IPC_EXCL)`) and attaches
/// it read-write; a failure after `shmget` removes it again.
pub(crate) fn create(
    key: i32,
    seg: &str,
    size: u64,
    len: NonZeroUsize,
    mode: u32,
) -> Result<(SysV, Mapping), CreateError> {
    let io_err = |op, source| CreateError::Io {
        op,
        segment: seg.to_owned(),
        source,
    };
    // `shmat` checks the mode even for the creator (unlike `open` of a
    // file it just created), so a mode without owner read and write is set
    // only after the attach.
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode | 0o600) as i32;
    let shmid = sysv::shmget(key, len.get(), flags).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => CreateError::AlreadyExists {
            segment: seg.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => CreateError::PermissionDenied {
            segment: seg.to_owned(),
            owner: owner(key),
        },
        Some(libc::EINVAL) => CreateError::Limit {
            segment: seg.to_owned(),
            detail: format!(
                "{size} bytes is outside the System V limits (kernel.shmmax = {})",
                read_sysctl("shmmax")
            ),
        },
        Some(libc::ENOSPC) => CreateError::Limit {
            segment: seg.to_owned(),
            detail: enospc_detail(),
        },
        Some(libc::ENOMEM) => CreateError::NoSpace {
            segment: seg.to_owned(),
            size,
            detail: "the kernel has no memory for it".into(),
        },
        _ => io_err("shmget", e),
    })?;
    let map = Mapping::shmat(shmid, len, true).map_err(|e| {
        let _ = sysv::ipc_rmid(shmid);
        io_err("shmat", e)
    })?;
    if mode & 0o600 != 0o600 {
        sysv::ipc_set_mode(shmid, mode).map_err(|e| {
            let _ = sysv::ipc_rmid(shmid);
            io_err("shmctl(IPC_SET)", e)
        })?;
    }
    let key = Some(key);
    Ok((SysV { shmid, key }, map))
}

/// The shmid of `key` (`shmget(key, 0, 0)`).
pub(crate) fn lookup(key: i32, seg: &str) -> Result<i32, OpenError> {
    sysv::shmget(key, 0, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound {
            segment: seg.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            segment: seg.to_owned(),
            owner: owner(key),
        },
        _ => OpenError::Io {
            op: "shmget",
            segment: seg.to_owned(),
            source: e,
        },
    })
}

/// Attaches `shmid` (with `SHM_RDONLY` when `read_only`), its size read
/// with `shmctl(IPC_STAT)` first.
pub(crate) fn attach(
    shmid: i32,
    key: Option<i32>,
    seg: &str,
    read_only: bool,
) -> Result<(SysV, Mapping), OpenError> {
    let st = sysv::ipc_stat(shmid).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::EIDRM) => OpenError::NotFound {
            segment: seg.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            segment: seg.to_owned(),
            owner: crate::list::sysv_entries()
                .ok()
                .and_then(|v| v.into_iter().find(|e| e.shmid == shmid))
                .map(|e| Owner {
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                }),
        },
        _ => OpenError::Io {
            op: "shmctl(IPC_STAT)",
            segment: seg.to_owned(),
            source: e,
        },
    })?;
    let len = super::mapped_len(seg, st.size)?;
    let map = Mapping::shmat(shmid, len, !read_only).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) => OpenError::PermissionDenied {
            segment: seg.to_owned(),
            owner: Some(Owner {
                mode: st.mode,
                uid: st.uid,
                gid: st.gid,
            }),
        },
        Some(libc::EINVAL) | Some(libc::EIDRM) => OpenError::NotFound {
            segment: seg.to_owned(),
        },
        _ => OpenError::Io {
            op: "shmat",
            segment: seg.to_owned(),
            source: e,
        },
    })?;
    Ok((SysV { shmid, key }, map))
}

/// `shmctl(shmid, IPC_RMID)`, without attaching.
pub(crate) fn remove(shmid: i32) -> io::Result<()> {
    sysv::ipc_rmid(shmid)
}

/// The shmid of `key`, for removing by key.
pub(crate) fn shmid_of(key: i32) -> io::Result<i32> {
    sysv::shmget(key, 0, 0)
}

/// Owner and mode of a System V segment by key, from `/proc/sysvipc/shm`
/// (readable without permission on the segment).
pub(crate) fn owner(key: i32) -> Option<Owner> {
    crate::list::sysv_entries()
        .ok()?
        .into_iter()
        .find(|e| e.key == key)
        .map(|e| Owner {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
        })
}

/// Which System V limit an `ENOSPC` from `shmget` hit: the kernel gives the
/// same error for the segment count (`shmmni`) and the page total
/// (`shmall`), so count the segments to tell them apart.
fn enospc_detail() -> String {
    let shmmni = read_sysctl("shmmni");
    let count = crate::list::sysv_entries().map(|v| v.len()).ok();
    match (count, shmmni.parse::<usize>()) {
        (Some(n), Ok(max)) if n >= max => format!(
            "the System V segment limit kernel.shmmni = {max} is reached ({n} segments exist; remove some with `shm gc` or raise it)"
        ),
        _ => format!(
            "the System V page limit kernel.shmall = {} pages is reached (or kernel.shmmni = {shmmni} segments)",
            read_sysctl("shmall")
        ),
    }
}

fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

impl SysV {
    /// The shmid.
    pub(crate) fn shmid(&self) -> i32 {
        self.shmid
    }

    /// `shmctl(IPC_STAT)`, as a [`Stat`].
    pub(crate) fn stat(&self) -> io::Result<Stat> {
        let shmid = self.shmid;
        let st = match sysv::ipc_stat(shmid) {
            Ok(st) => st,
            // IPC_STAT needs read permission, which a mode such as 0200 or
            // 0000 denies even the creator; the kernel's table in /proc
            // says the same to everyone.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let entry = crate::list::sysv_entries()?
                    .into_iter()
                    .find(|x| x.shmid == shmid)
                    .ok_or(e)?;
                sysv::SysvStat {
                    key: entry.key,
                    size: entry.size,
                    uid: entry.uid,
                    gid: entry.gid,
                    mode: entry.mode & 0o777,
                    nattch: entry.nattch,
                    cpid: entry.cpid,
                    lpid: entry.lpid,
                    atime: entry.atime,
                    dtime: entry.dtime,
                    ctime: entry.ctime,
                }
            }
            Err(e) => return Err(e),
        };
        Ok(Stat {
            backend: Backend::SysV,
            size: st.size,
            uid: st.uid,
            gid: st.gid,
            mode: st.mode,
            key: Some(st.key),
            shmid: Some(shmid),
            nattch: Some(st.nattch),
            cpid: Some(st.cpid),
            lpid: Some(st.lpid),
            atime: st.atime,
            dtime: Some(st.dtime),
            ctime: st.ctime,
        })
    }

    /// The kernel records the creator's PID (`cpid`); the header's start
    /// time, when its PID matches, guards against PID reuse.
    pub(crate) fn creator(&self, header_pid: Option<ProcessId>) -> Creator {
        let cpid = self.stat().ok().and_then(|s| s.cpid).unwrap_or(0).max(0) as u32;
        let who = match header_pid {
            Some(p) if p.pid == cpid => p,
            _ => ProcessId {
                pid: cpid,
                start: 0,
            },
        };
        Creator {
            alive: who.is_alive(),
            pid: cpid,
            recorded_by_kernel: true,
        }
    }

    /// Whether the key still finds this segment: `IPC_RMID` on an attached
    /// segment makes its key private (0). Opened by shmid: `false`.
    pub(crate) fn is_named(&self) -> bool {
        let Some(key) = self.key else {
            return false;
        };
        match crate::list::sysv_entries() {
            Ok(entries) => entries
                .iter()
                .any(|e| e.shmid == self.shmid && e.key == key && e.key != 0),
            Err(_) => true,
        }
    }

    /// `shmctl(IPC_RMID)`: a shmid names one segment only.
    pub(crate) fn remove(&self) -> io::Result<()> {
        sysv::ipc_rmid(self.shmid)
    }
}
