//! The leftover check: a [`Snapshot`] of the entries of `/dev/shm` and of
//! the System V segments in `/proc/sysvipc/shm` (the data `ipcs -m` prints),
//! taken before a task and compared after it, failing if the task left new
//! ones behind. The System V table and the `/proc/PID/maps` lines (which
//! live process still maps a new entry) are read with shm-core's parsers
//! ([`shm_core::list::sysv_entries`], [`shm_core::list::parse_maps_line`]);
//! `clean-shm` reads through the same functions.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use shm_core::list::{ShmMapping, SysvEntry, parse_maps_line};

use crate::cmd::Xtask;
use crate::{Result, failed};

pub(crate) const DEV_SHM: &str = shm_core::list::DEV_SHM;
/// How long the leftover check waits for new entries to go away: a process
/// of another run that is removing its segment right now.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

impl Xtask {
    /// Runs `task` between two snapshots and fails if it left segments.
    pub(crate) fn with_leftover_check(&self, what: &str, task: impl FnOnce() -> Result) -> Result {
        let before = Snapshot::take()?;
        let result = task();
        // Checked even when the task failed: a failing test is the one most
        // likely to leave something behind.
        let check = Snapshot::take().and_then(|after| after.check_against(&before));
        match (result, check) {
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(left)) => Err(failed(format!("{what}: {left}"))),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(left)) => Err(failed(format!(
                "{e}\n{what} also left segments behind: {left}"
            ))),
        }
    }
}

/// The System V segments, as `/proc/sysvipc/shm` lists them.
pub(crate) fn read_sysv() -> Result<Vec<SysvEntry>> {
    match shm_core::list::sysv_entries() {
        Ok(entries) => Ok(entries),
        // A kernel without System V IPC has no segments.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(failed(format!("reading /proc/sysvipc/shm: {e}"))),
    }
}

pub(crate) fn read_dev_shm() -> Result<BTreeSet<String>> {
    let dir = match fs::read_dir(DEV_SHM) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(failed(format!("reading {DEV_SHM}: {e}"))),
    };
    let mut names = BTreeSet::new();
    for entry in dir {
        let entry = entry.map_err(|e| failed(format!("reading {DEV_SHM}: {e}")))?;
        names.insert(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// What exists in `/dev/shm` and `ipcs -m` at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    posix: BTreeSet<String>,
    sysv: BTreeMap<i32, SysvEntry>,
}

impl Snapshot {
    pub(crate) fn take() -> Result<Snapshot> {
        Ok(Snapshot {
            posix: read_dev_shm()?,
            sysv: read_sysv()?.into_iter().map(|s| (s.shmid, s)).collect(),
        })
    }

    /// What is in `self` and not in `before`.
    fn new_since(&self, before: &Snapshot) -> Snapshot {
        Snapshot {
            posix: self.posix.difference(&before.posix).cloned().collect(),
            sysv: self
                .sysv
                .iter()
                .filter(|(id, _)| !before.sysv.contains_key(id))
                .map(|(id, s)| (*id, s.clone()))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.posix.is_empty() && self.sysv.is_empty()
    }

    /// Fails, listing them, if entries exist now that `before` did not
    /// have. New entries get [`LEFTOVER_GRACE`] to disappear first (a
    /// concurrent run removing its own), and outside CI an entry that a live
    /// process still maps belongs to that process, not to us: it is shown but
    /// not counted.
    pub(crate) fn check_against(&self, before: &Snapshot) -> Result {
        let mut new = self.new_since(before);
        let deadline = Instant::now() + LEFTOVER_GRACE;
        while !new.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
            let now = Snapshot::take()?.new_since(before);
            new.posix.retain(|n| now.posix.contains(n));
            new.sysv.retain(|id, _| now.sysv.contains_key(id));
        }
        if new.is_empty() {
            println!("leftover check: nothing new in {DEV_SHM} or ipcs -m");
            return Ok(());
        }
        let strict = env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let mappers = posix_mappers(&new.posix);
        let mut leftovers = Vec::new();
        let mut in_use = Vec::new();
        for name in &new.posix {
            let path = Path::new(DEV_SHM).join(name);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match mappers.get(name) {
                Some(pids) => in_use.push(format!(
                    "{} ({size} bytes), mapped by {}",
                    path.display(),
                    describe_pids(pids)
                )),
                None => leftovers.push(format!("{} ({size} bytes)", path.display())),
            }
        }
        for s in new.sysv.values() {
            let line = format!(
                "System V shmid {} key {:#010x} ({} bytes, creator pid {}, nattch {})",
                s.shmid, s.key, s.size, s.cpid, s.nattch
            );
            if s.nattch > 0 {
                in_use.push(line);
            } else {
                leftovers.push(line);
            }
        }
        if !in_use.is_empty() {
            println!(
                "leftover check: new since the start and still in use by a live process{}:",
                if strict {
                    " (counted: CI is set, nothing else should run here)"
                } else {
                    " (another program's, not counted; set CI=1 to count them)"
                }
            );
            for l in &in_use {
                println!("  {l}");
            }
            if strict {
                leftovers.append(&mut in_use);
            }
        }
        if leftovers.is_empty() {
            println!("leftover check: nothing left behind");
            return Ok(());
        }
        let mut msg = format!(
            "{} shared memory segment(s) appeared during the run and were not removed:",
            leftovers.len()
        );
        for l in &leftovers {
            msg.push_str("\n  ");
            msg.push_str(l);
        }
        msg.push_str(
            "\nfind the test that does not clean up; `cargo xtask clean-shm` removes \
             test leftovers (`rm /dev/shm/NAME`, `ipcrm -m SHMID` for the others)",
        );
        Err(failed(msg))
    }
}

/// For each name in `names`, the PIDs whose `/proc/PID/maps` map
/// `/dev/shm/NAME`. Processes we may not read are skipped.
fn posix_mappers(names: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<u32>> {
    let mut found: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    if names.is_empty() {
        return found;
    }
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(maps) = fs::read_to_string(entry.path().join("maps")) else {
            continue;
        };
        for name in maps_shm_names(&maps) {
            if names.contains(&name) {
                found.entry(name).or_default().insert(pid);
            }
        }
    }
    found
}

/// The `/dev/shm` names (without the slash) mapped in the text of a
/// `/proc/PID/maps`, removed ones (` (deleted)`) included.
fn maps_shm_names(maps: &str) -> impl Iterator<Item = String> {
    maps.lines()
        .filter_map(|line| match parse_maps_line(line)? {
            ShmMapping::Posix { name, .. } => {
                Some(name.strip_prefix('/').unwrap_or(&name).to_owned())
            }
            ShmMapping::SysV { .. } => None,
        })
}

fn describe_pids(pids: &BTreeSet<u32>) -> String {
    pids.iter()
        .map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid} ({})", comm.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn finds_dev_shm_in_maps() {
        let maps = "\
7f0000000000-7f0000001000 rw-s 00000000 00:1a 123 /dev/shm/shmrs-test-a-1-0
7f0000001000-7f0000002000 rw-s 00000000 00:1a 124 /dev/shm/with space (deleted)
7f0000002000-7f0000003000 rw-s 00000000 00:01 65 /SYSV5e000001 (deleted)
7f0000003000-7f0000004000 r-xp 00000000 08:01 99 /usr/lib/libc.so.6
7f0000004000-7f0000005000 rw-p 00000000 00:00 0
";
        let names: Vec<String> = maps_shm_names(maps).collect();
        assert_eq!(names, ["shmrs-test-a-1-0", "with space"]);
    }

    #[test]
    fn new_since_is_a_difference() {
        let seg = |shmid| SysvEntry {
            key: 1,
            shmid,
            mode: 0o600,
            size: 1,
            cpid: 1,
            lpid: 1,
            nattch: 0,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            atime: 0,
            dtime: 0,
            ctime: 0,
        };
        let before = Snapshot {
            posix: ["a".to_owned(), "b".to_owned()].into(),
            sysv: [(1, seg(1))].into(),
        };
        let after = Snapshot {
            posix: ["b".to_owned(), "c".to_owned()].into(),
            sysv: [(1, seg(1)), (2, seg(2))].into(),
        };
        let new = after.new_since(&before);
        assert_eq!(new.posix, ["c".to_owned()].into());
        assert_eq!(new.sysv.keys().copied().collect::<Vec<_>>(), [2]);
        assert!(before.new_since(&before).is_empty());
    }

    /// The check on the real `/dev/shm` and System V table. Other programs
    /// may create and remove segments meanwhile, so it asserts only about
    /// the entries it made itself.
    #[test]
    fn leftover_check_names_new_segments() {
        let before = Snapshot::take().unwrap();
        let name = format!("shmrs-test-xtask-{}", std::process::id());
        let path = Path::new(DEV_SHM).join(&name);
        fs::write(&path, b"left behind").unwrap();
        // ipcmk(1) (util-linux) makes an unattached System V segment and
        // prints its shmid; without it only the POSIX half is checked.
        let shmid = Command::new("ipcmk")
            .args(["-M", "4096"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let out = String::from_utf8_lossy(&o.stdout);
                out.split_whitespace().last()?.parse::<i32>().ok()
            });
        let after = Snapshot::take().unwrap();
        let result = after.check_against(&before);
        let _ = fs::remove_file(&path);
        if let Some(id) = shmid {
            let _ = Command::new("ipcrm").args(["-m", &id.to_string()]).status();
        }
        let msg = result
            .expect_err("a new segment must fail the check")
            .to_string();
        assert!(msg.contains(&name), "{msg}");
        if let Some(id) = shmid {
            assert!(msg.contains(&format!("shmid {id} ")), "{msg}");
        }
        if let Err(e) = Snapshot::take().unwrap().check_against(&before) {
            let msg = e.to_string();
            assert!(!msg.contains(&name), "removed, still reported: {msg}");
        }
    }
}
