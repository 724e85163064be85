//! Who holds a POSIX segment open by a file descriptor: a process may have
//! `shm_open`ed a segment and not mapped it yet (or keep the descriptor to
//! map it again later), which no `/proc/PID/maps` shows.

use std::io;

use super::{DEV_SHM, proc_pids};

/// The processes that hold `/dev/shm/NAME` open, from `/proc/PID/fd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdHolders {
    /// Each process holding it, with its descriptors, by PID.
    pub holders: Vec<(u32, Vec<u32>)>,
    /// Processes whose descriptors could not be read (other users'
    /// processes when not root).
    pub denied: Vec<u32>,
}

impl FdHolders {
    /// Whether every process's descriptors could be read.
    pub fn complete(&self) -> bool {
        self.denied.is_empty()
    }
}

/// Every process with a descriptor open on the POSIX segment `name`
/// (`/NAME`): a link in `/proc/PID/fd` that reads `/dev/shm/NAME` (the file
/// of that name now; one removed since reads ` (deleted)` and is not
/// counted). Fails only if `/proc` cannot be listed.
///
/// ```
/// let h = shm_core::list::fd_holders("/surely-nobody-has-this-open")?;
/// assert!(h.holders.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn fd_holders(name: &str) -> io::Result<FdHolders> {
    let file = name.strip_prefix('/').unwrap_or(name);
    let want = format!("{DEV_SHM}/{file}");
    let mut out = FdHolders::default();
    for pid in proc_pids()? {
        let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                out.denied.push(pid);
                continue;
            }
            // Exited meanwhile, or a kernel thread.
            Err(_) => continue,
        };
        let mut fds: Vec<u32> = dir
            .filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|target| target.as_os_str() == want.as_str())
            })
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        if !fds.is_empty() {
            fds.sort_unstable();
            out.holders.push((pid, fds));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Segment, SegmentId};

    #[test]
    fn an_open_segment_is_seen_through_its_descriptor() {
        let name = format!("/shmrs-test-fds-{}", std::process::id());
        let id = SegmentId::posix(&name).expect("name");
        let seg = Segment::create(&id, 4096, 0o600).expect("create");
        // This process maps it; whether it also keeps the descriptor is the
        // segment's business: open one ourselves to be sure.
        let f = std::fs::File::open(format!("{DEV_SHM}{name}")).expect("open");
        let h = fd_holders(&name).expect("scan");
        let me = std::process::id();
        assert!(
            h.holders.iter().any(|(p, fds)| *p == me && !fds.is_empty()),
            "{h:?}"
        );
        drop(f);
        drop(seg);
        let h = fd_holders(&name).expect("scan");
        assert!(h.holders.iter().all(|(p, _)| *p != me), "{h:?}");
    }
}
