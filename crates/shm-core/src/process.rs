//! Process identity that survives PID reuse: a PID plus its start time.

use std::fmt;

/// A process named by PID and the time it started (clock ticks since boot,
/// field 22 of `/proc/PID/stat`). A recycled PID has another start time, so
/// a record of a dead process is never mistaken for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProcessId {
    /// The PID.
    pub pid: u32,
    /// Start time in clock ticks since boot; 0 if unknown.
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
            Some((state, start)) => {
                state != 'Z' && state != 'X' && (self.start == 0 || start == self.start)
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

/// The start time of `pid` in clock ticks since boot, if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).map(|(_, start)| start)
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
            start: me.start + 1,
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
}
