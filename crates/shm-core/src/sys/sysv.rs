//! System V shared memory: `shmget`, `shmctl(IPC_STAT)`, `shmctl(IPC_SET)`,
//! `shmctl(IPC_RMID)`.
//! (`shmat`/`shmdt` live with the mapping in [`super::map`].)
//!
//! Neither nix nor rustix wraps these, so they call `libc` directly.

use std::io;

use super::cvt;

/// `shmget(key, size, flags)`: returns the shmid.
pub(crate) fn shmget(key: i32, size: usize, flags: i32) -> io::Result<i32> {
    // SAFETY: no memory arguments.
    cvt(unsafe { libc::shmget(key, size, flags) })
}

/// What `shmctl(IPC_STAT)` reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SysvStat {
    pub(crate) key: i32,
    pub(crate) size: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    pub(crate) nattch: u64,
    pub(crate) cpid: i32,
    pub(crate) lpid: i32,
    pub(crate) atime: i64,
    pub(crate) dtime: i64,
    pub(crate) ctime: i64,
}

/// `shmctl(shmid, IPC_STAT, &buf)`.
#[doc(alias = "shmctl")]
pub(crate) fn ipc_stat(shmid: i32) -> io::Result<SysvStat> {
    // SAFETY: `shmid_ds` is plain C data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable `shmid_ds` that outlives the call.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    Ok(SysvStat {
        key: ds.shm_perm.__key,
        size: ds.shm_segsz as u64,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        mode: u32::from(ds.shm_perm.mode) & 0o777,
        nattch: ds.shm_nattch as u64,
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        atime: ds.shm_atime,
        dtime: ds.shm_dtime,
        ctime: ds.shm_ctime,
    })
}

/// `shmctl(shmid, IPC_STAT)` then `shmctl(shmid, IPC_SET)` with the
/// permission bits replaced by `mode` (owner and group unchanged).
#[doc(alias = "IPC_SET")]
pub(crate) fn ipc_set_mode(shmid: i32, mode: u32) -> io::Result<()> {
    // SAFETY: `shmid_ds` is plain C data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable `shmid_ds` that outlives the call.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    ds.shm_perm.mode = (mode & 0o777) as _;
    // SAFETY: `ds` is a valid `shmid_ds`; IPC_SET reads uid, gid and mode.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `shmctl(shmid, IPC_RMID, NULL)`: marks the segment for removal; it goes
/// away once the last process detaches.
#[doc(alias = "IPC_RMID")]
pub(crate) fn ipc_rmid(shmid: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}
