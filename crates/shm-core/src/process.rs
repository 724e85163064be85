//! Process identity that survives PID reuse: a PID plus its start time.
//!
//! # Start times across time namespaces
//!
//! The start time in `/proc/PID/stat` (field 22) is the process's start on
//! `CLOCK_BOOTTIME`, shifted by the boot-time offset of the *reader's* time
//! namespace (Linux 5.6 and later: `timens_add_boottime_ns` in
//! `fs/proc/array.c`). Two processes in one PID namespace but in different
//! time namespaces (`unshare --time --boottime 86400`) therefore read
//! different start times for the same process, and each would take the
//! other for a recycled PID, that is for dead. Measured on this project's
//! Linux 6.18 machine: a process the host reads as started at tick 673 329
//! reads as 9 313 329 from a namespace with `--boottime 86400` (8 640 000
//! ticks more), and its own start time, read by itself, is shifted too.
//!
//! So every start time this module hands out or compares is *normalized*:
//! the reader's own boot-time offset (from `/proc/self/timens_offsets`) is
//! taken off, which gives the start on the boot clock of the initial time
//! namespace, the same number in every namespace. The on-segment records
//! (a [`ProcessId`]'s `start`, shm-queue's `pid | start << 22`, the
//! `OwnerLock` holder's start) keep their format and meaning, "clock ticks
//! since boot", now made precise as the host's boot. A process that cannot
//! learn its own offset (see [`boottime_offset`]) records start 0
//! ("unknown": its PID alone names it) and compares PIDs only, because a
//! false "dead" hands a live process's lock or claim to someone else.
//!
//! pidfds (`pidfd_open`, Linux 5.3) do not solve this: a pidfd names the
//! process that has a PID *now*, and cannot say whether that is the
//! process a record in a segment was written by; only a start time can,
//! and a pidfd cannot be stored in a segment.

use std::fmt;

/// A process named by PID and the time it started (clock ticks since boot,
/// from field 22 of `/proc/PID/stat`, normalized to the initial time
/// namespace: see the module docs). A recycled PID has another start time,
/// so a record of a dead process is never mistaken for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProcessId {
    /// The PID.
    pub pid: u32,
    /// Start time in clock ticks (1/100 s) since boot, on the boot clock
    /// of the initial time namespace; 0 if unknown (then only the PID
    /// names the process).
    pub start: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessId {
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this very process (same PID, same start time) still runs.
    /// A zombie counts as dead: it will never touch the segment again.
    ///
    /// Start times are compared normalized (module docs), so a process in
    /// another time namespace is seen alive; they may differ by one tick
    /// (10 ms, [`same_start`]). When this process cannot learn its own
    /// time-namespace offset, only the PID and the state are looked at.
    ///
    /// When `/proc/PID/stat` cannot be read although the PID exists (a
    /// `/proc` mounted with `hidepid=1` or `2` hides other users'
    /// processes), the answer is "alive": callers take a dead process's
    /// locks and claims over, so a false "dead" would hand a live
    /// process's lock to a second holder, while a false "alive" only makes
    /// them wait.
    pub fn is_alive(&self) -> bool {
        if self.pid == 0 || self.pid > i32::MAX as u32 {
            return false;
        }
        match stat_fields(self.pid) {
            Some((state, raw)) => {
                let start_matches = match (self.start, normalize(raw)) {
                    (0, _) | (_, None) => true,
                    (want, Some(seen)) => same_start(want, seen),
                };
                state != 'Z' && state != 'X' && start_matches
            }
            None => pid_exists(self.pid),
        }
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)
    }
}

/// `kill(pid, 0)`: whether any process has this PID (`EPERM` means one
/// exists that we may not signal).
fn pid_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// The start time of `pid` in clock ticks since boot, normalized to the
/// initial time namespace (module docs), if it exists and this process
/// knows its own time-namespace offset.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).and_then(|(_, raw)| normalize(raw))
}

/// Whether two normalized start times name the same start. They may differ
/// by one tick: the kernel rounds the *shifted* time down to a tick, so an
/// offset that is not a whole number of ticks (CRIU restores with
/// nanosecond offsets; `unshare` sets whole seconds) can move a start by
/// one tick between two namespaces. A recycled PID is still told apart
/// unless it was reused within 10 ms of the first process's start, which
/// would need the PID space to wrap around in that time.
pub fn same_start(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= 1
}

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`, 100 on every
/// Linux ABI).
const TICK_NS: i128 = 10_000_000;

/// The proc inode number of the initial time namespace
/// (`PROC_TIME_INIT_INO`, fixed by the kernel like those of the other
/// initial namespaces).
const INIT_TIME_NS: u64 = 0xEFFF_FFFA;

/// Takes this process's boot-time offset off a start time read from
/// `/proc/PID/stat`; `None` if the offset is unknown.
fn normalize(raw_ticks: u64) -> Option<u64> {
    let off = boottime_offset()?;
    Some(unshift(raw_ticks, off))
}

/// `raw_ticks` (a start time shifted by a boot-time offset of `off_ns`)
/// on the unshifted clock: the offset in whole ticks, rounded down, is
/// taken off (exact when the offset is a whole number of ticks).
fn unshift(raw_ticks: u64, off_ns: i128) -> u64 {
    let ticks = i128::from(raw_ticks) - off_ns.div_euclid(TICK_NS);
    u64::try_from(ticks.max(0)).unwrap_or(u64::MAX)
}

/// The inode of a namespace link such as `/proc/self/ns/time`
/// (`time:[4026531834]`).
fn ns_inode(path: &str) -> Option<u64> {
    let link = std::fs::read_link(path).ok()?;
    let text = link.to_str()?;
    let inner = text.split_once('[')?.1.strip_suffix(']')?;
    inner.parse().ok()
}

/// The `boottime` line of a `timens_offsets` file, in nanoseconds.
fn parse_offsets(text: &str) -> Option<i128> {
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        if f.next()? != "boottime" {
            return None;
        }
        let secs: i128 = f.next()?.parse().ok()?;
        let nanos: i128 = f.next()?.parse().ok()?;
        Some(secs * 1_000_000_000 + nanos)
    })
}

/// This process's `CLOCK_BOOTTIME` offset against the initial time
/// namespace, in nanoseconds: 0 without time namespaces (Linux < 5.6, or
/// a kernel built without `CONFIG_TIME_NS`: no `/proc/self/ns/time`) and
/// in the initial one; else read from `timens_offsets`, cached per
/// namespace.
///
/// `/proc/PID/timens_offsets` shows the offsets of the namespace that
/// PID's *children* get (`time_for_children`). That is this process's own
/// namespace except for the moment between `unshare(CLONE_NEWTIME)` and
/// the next `exec` (which moves the caller in); then the parent's file is
/// tried, if the parent's children's namespace is ours. `None` when
/// neither tells (this process then records start 0 and compares PIDs
/// only).
pub fn boottime_offset() -> Option<i128> {
    use std::sync::Mutex;
    static CACHE: Mutex<Option<(u64, i128)>> = Mutex::new(None);
    let Some(ns) = ns_inode("/proc/self/ns/time") else {
        return Some(0);
    };
    if ns == INIT_TIME_NS {
        return Some(0);
    }
    let cached = *CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached_ns, off)) = cached
        && cached_ns == ns
    {
        return Some(off);
    }
    let parent = std::os::unix::process::parent_id();
    let from = ["self".to_owned(), parent.to_string()]
        .into_iter()
        .find(|who| ns_inode(&format!("/proc/{who}/ns/time_for_children")) == Some(ns))?;
    let off =
        parse_offsets(&std::fs::read_to_string(format!("/proc/{from}/timens_offsets")).ok()?)?;
    // Still the namespace we asked about (the file names no namespace).
    if ns_inode(&format!("/proc/{from}/ns/time_for_children")) != Some(ns) {
        return None;
    }
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some((ns, off));
    Some(off)
}

/// `(state, starttime)` from `/proc/PID/stat`. The command name may contain
/// spaces and parentheses, so fields are counted after the last `)`.
fn stat_fields(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state come fields 4..; starttime is field 22, the 20th here.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_a_recycled_pid_is_not() {
        let me = ProcessId::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        let other = ProcessId {
            start: me.start + 2,
            ..me
        };
        assert!(!other.is_alive());
        assert!(!ProcessId { pid: 0, start: 0 }.is_alive());
        assert!(
            !ProcessId {
                pid: u32::MAX,
                start: 0
            }
            .is_alive()
        );
    }

    #[test]
    fn a_killed_child_is_dead_while_a_zombie_and_after_reaping() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("start sleep");
        let who = ProcessId {
            pid: child.id(),
            start: start_time(child.id()).expect("child's start time"),
        };
        assert!(who.is_alive());
        assert!(
            ProcessId { start: 0, ..who }.is_alive(),
            "start 0 means any"
        );
        child.kill().expect("kill");
        // Not reaped yet: a zombie (once the kernel delivered the kill),
        // which counts as dead. A watchdog, not a timing assertion.
        let since = std::time::Instant::now();
        while stat_fields(who.pid).is_some_and(|(state, _)| state != 'Z') {
            assert!(
                since.elapsed() < std::time::Duration::from_secs(30),
                "watchdog: the killed child never became a zombie"
            );
            std::thread::yield_now();
        }
        assert_eq!(stat_fields(who.pid).map(|(s, _)| s), Some('Z'));
        assert!(!who.is_alive(), "a zombie is dead");
        child.wait().expect("reap");
        assert!(!who.is_alive(), "a reaped process is dead");
    }

    #[test]
    fn offsets_are_parsed_and_taken_off_in_whole_ticks() {
        let text = "monotonic           0         0\nboottime        86400         0\n";
        assert_eq!(parse_offsets(text), Some(86_400_000_000_000));
        assert_eq!(parse_offsets("boottime -5 250000000"), Some(-4_750_000_000));
        assert_eq!(parse_offsets("monotonic 1 0"), None);
        // Measured: the host reads 673329, a --boottime 86400 namespace 9313329.
        assert_eq!(unshift(9_313_329, 86_400_000_000_000), 673_329);
        assert_eq!(unshift(673_329, 0), 673_329);
        assert_eq!(unshift(100, -4_750_000_000), 575);
        assert_eq!(unshift(3, 1_000_000_000), 0, "clamped, never negative");
        // A sub-tick offset moves a start by at most one tick.
        let t_ns: i128 = 6_733_291_234_567;
        for off in [0i128, 5_000_000, 86_400_004_999_999, -7_777_777] {
            let raw = u64::try_from((t_ns + off) / TICK_NS).unwrap();
            let back = unshift(raw, off);
            assert!(
                same_start(back, (t_ns / TICK_NS) as u64),
                "offset {off}: {back}"
            );
        }
        assert!(!same_start(10, 12));
    }

    #[test]
    fn this_process_knows_its_offset_and_its_start_is_stable() {
        // The test runs in whatever time namespace it was started in; its
        // offset is known and its own start time reads the same each time.
        assert!(boottime_offset().is_some());
        let a = start_time(std::process::id()).unwrap();
        let b = ProcessId::current().start;
        assert_eq!(a, b);
        assert!(ns_inode("/proc/self/ns/pid").is_some());
    }
}
