//! `shm doctor`: what commonly breaks shared memory on a machine, each with
//! a verdict and a hint.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use shm_core::list::{DEV_SHM, page_size, sysv_entries};

use crate::render::human_size;
use crate::{CliError, CliResult, emit};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works, but something is likely to bite.
    Warn,
    /// Shared memory will not work as expected.
    Fail,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked, e.g. `kernel.shmmax`.
    pub name: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub value: String,
    /// What to do about it (or why it is fine).
    pub hint: String,
}

fn check(name: &'static str, verdict: Verdict, value: String, hint: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        value,
        hint: hint.into(),
    }
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        0
    } else {
        ((part as u128 * 100) / whole as u128) as u64
    }
}

/// The filesystem type mounted at `/dev/shm`, from `/proc/self/mounts`.
fn dev_shm_fstype() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().rev().find_map(|l| {
        let mut f = l.split_whitespace();
        let _src = f.next()?;
        let target = f.next()?;
        let fstype = f.next()?;
        (target == DEV_SHM).then(|| fstype.to_owned())
    })
}

fn check_dev_shm() -> Check {
    const SMALL: u64 = 64 << 20;
    let name = "/dev/shm space";
    let usage = match shm_core::list::filesystem_usage(DEV_SHM) {
        Ok(u) => u,
        Err(e) => {
            return check(
                name,
                Verdict::Fail,
                format!("cannot statvfs {DEV_SHM}: {e}"),
                "POSIX shared memory needs a tmpfs at /dev/shm: `mount -t tmpfs -o mode=1777 tmpfs /dev/shm`",
            );
        }
    };
    let fstype = dev_shm_fstype();
    let used = usage.total.saturating_sub(usage.free);
    let value = format!(
        "{} free of {} ({}% used), {}",
        human_size(usage.available),
        human_size(usage.total),
        percent(used, usage.total),
        fstype
            .as_deref()
            .map_or_else(|| "not a mount point".to_owned(), |t| format!("{t} mount")),
    );
    if fstype.as_deref().is_some_and(|t| t != "tmpfs") {
        return check(
            name,
            Verdict::Warn,
            value,
            "/dev/shm is not a tmpfs: segments may be written to disk; mount a tmpfs there",
        );
    }
    if usage.available < usage.total / 10 || usage.available < 16 << 20 {
        return check(
            name,
            Verdict::Warn,
            value,
            "nearly full: new segments fail with ENOSPC or SIGBUS on first touch; remove stale ones with `shm gc`, or enlarge it (`mount -o remount,size=2G /dev/shm`)",
        );
    }
    if usage.total <= SMALL {
        return check(
            name,
            Verdict::Warn,
            value,
            "small (64M is docker's default): run containers with --shm-size, or `mount -o remount,size=1G /dev/shm`",
        );
    }
    check(
        name,
        Verdict::Ok,
        value,
        "enough room; tmpfs pages count against RAM and swap only once written",
    )
}

fn check_sticky() -> Check {
    let name = "/dev/shm permissions";
    match std::fs::metadata(DEV_SHM) {
        Err(e) => check(
            name,
            Verdict::Fail,
            format!("cannot stat {DEV_SHM}: {e}"),
            "create it: `mkdir -m 1777 /dev/shm && mount -t tmpfs tmpfs /dev/shm`",
        ),
        Ok(md) => {
            let mode = md.mode() & 0o7777;
            let value = format!("mode {mode:04o}, owner uid {}", md.uid());
            if mode & 0o1000 == 0 && mode & 0o002 != 0 {
                check(
                    name,
                    Verdict::Warn,
                    value,
                    "world-writable without the sticky bit: any user can remove or replace anyone's segments; `chmod 1777 /dev/shm`",
                )
            } else if mode & 0o002 == 0 {
                check(
                    name,
                    Verdict::Warn,
                    value,
                    "not world-writable: only some users can create POSIX segments; `chmod 1777 /dev/shm`",
                )
            } else {
                check(
                    name,
                    Verdict::Ok,
                    value,
                    "sticky and world-writable: everyone can create, only owners can remove",
                )
            }
        }
    }
}

fn sysctl_missing(name: &'static str) -> Check {
    check(
        name,
        Verdict::Warn,
        "cannot be read".into(),
        "this kernel may lack System V IPC (CONFIG_SYSVIPC) or /proc/sys is hidden",
    )
}

fn check_sysv() -> Vec<Check> {
    let entries = sysv_entries().unwrap_or_default();
    let page = page_size();
    let mut out = Vec::new();

    match read_u64("/proc/sys/kernel/shmmax") {
        None => out.push(sysctl_missing("kernel.shmmax")),
        Some(max) => {
            let largest = entries.iter().map(|e| e.size).max().unwrap_or(0);
            let value = format!(
                "{max} bytes ({}); largest segment now {}",
                human_size(max),
                human_size(largest)
            );
            out.push(if max < 32 << 20 {
                check(
                    "kernel.shmmax",
                    Verdict::Warn,
                    value,
                    "System V segments larger than this fail with EINVAL: `sysctl -w kernel.shmmax=68719476736` (and in /etc/sysctl.d)",
                )
            } else {
                check(
                    "kernel.shmmax",
                    Verdict::Ok,
                    value,
                    "largest System V segment allowed",
                )
            });
        }
    }

    match read_u64("/proc/sys/kernel/shmall") {
        None => out.push(sysctl_missing("kernel.shmall")),
        Some(all) => {
            let used: u64 = entries
                .iter()
                .map(|e| e.size.div_ceil(page))
                .fold(0u64, u64::saturating_add);
            let value = format!(
                "{all} pages of {page} bytes; {used} in use ({}%)",
                percent(used, all)
            );
            out.push(if percent(used, all) >= 90 {
                check(
                    "kernel.shmall",
                    Verdict::Warn,
                    value,
                    "System V memory nearly exhausted: new segments fail with ENOSPC; remove stale ones (`shm gc`) or raise kernel.shmall",
                )
            } else {
                check(
                    "kernel.shmall",
                    Verdict::Ok,
                    value,
                    "total System V shared memory allowed, in pages",
                )
            });
        }
    }

    match read_u64("/proc/sys/kernel/shmmni") {
        None => out.push(sysctl_missing("kernel.shmmni")),
        Some(mni) => {
            let n = entries.len() as u64;
            let value = format!("{mni} segments; {n} exist ({}%)", percent(n, mni));
            out.push(if percent(n, mni) >= 90 {
                check(
                    "kernel.shmmni",
                    Verdict::Warn,
                    value,
                    "nearly every System V segment id is taken: shmget fails with ENOSPC; remove stale ones (`shm gc`) or raise kernel.shmmni",
                )
            } else {
                check(
                    "kernel.shmmni",
                    Verdict::Ok,
                    value,
                    "how many System V segments may exist at once",
                )
            });
        }
    }
    out
}

/// Parses a systemd boolean.
fn systemd_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// The last `RemoveIPC=` in the `[Login]` section of `text`.
pub fn remove_ipc_setting(text: &str) -> Option<bool> {
    let mut in_login = false;
    let mut found = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            in_login = l == "[Login]";
            continue;
        }
        if let Some((k, v)) = l.split_once('=')
            && in_login
            && k.trim() == "RemoveIPC"
            && let Some(b) = systemd_bool(v)
        {
            found = Some(b);
        }
    }
    found
}

/// logind.conf and its drop-ins in the order systemd reads them: the main
/// file, then every `*.conf` of the drop-in directories sorted by file name
/// (a name in /etc hides the same name in /run and /usr/lib).
fn logind_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/systemd/logind.conf")];
    let mut dropins: std::collections::BTreeMap<std::ffi::OsString, PathBuf> = Default::default();
    for dir in [
        "/usr/lib/systemd/logind.conf.d",
        "/usr/local/lib/systemd/logind.conf.d",
        "/run/systemd/logind.conf.d",
        "/etc/systemd/logind.conf.d",
    ] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "conf") {
                dropins.insert(e.file_name(), p);
            }
        }
    }
    files.extend(dropins.into_values());
    files
}

fn check_remove_ipc() -> Check {
    let name = "RemoveIPC";
    let mut setting = None;
    let mut source = None;
    for f in logind_files() {
        if let Ok(text) = std::fs::read_to_string(&f)
            && let Some(b) = remove_ipc_setting(&text)
        {
            setting = Some(b);
            source = Some(f);
        }
    }
    let systemd = Path::new("/run/systemd/system").exists();
    let effective = setting.unwrap_or(true);
    let value = match (&setting, &source) {
        (Some(b), Some(f)) => format!(
            "RemoveIPC={} in {}",
            if *b { "yes" } else { "no" },
            f.display()
        ),
        _ => "not set (systemd's default is yes)".into(),
    };
    let value = if systemd {
        value
    } else {
        format!("{value}; systemd is not running")
    };
    if !effective {
        check(
            name,
            Verdict::Ok,
            value,
            "logind leaves the segments of logged-out users alone",
        )
    } else if !systemd {
        check(
            name,
            Verdict::Ok,
            value,
            "no systemd-logind here, so nothing removes segments at logout",
        )
    } else {
        check(
            name,
            Verdict::Warn,
            value,
            "when a regular user (uid >= 1000) ends their last session, systemd-logind removes every segment they own, even in use: set RemoveIPC=no in /etc/systemd/logind.conf.d/shm.conf, or run services as a system user",
        )
    }
}

/// `(total, free, size in kB)` of the default hugepage pool, from
/// `/proc/meminfo` text.
pub fn hugepages(meminfo: &str) -> Option<(u64, u64, u64)> {
    let field = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some((
        field("HugePages_Total")?,
        field("HugePages_Free")?,
        field("Hugepagesize")?,
    ))
}

fn check_hugepages() -> Check {
    let name = "hugepages";
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    match hugepages(&text) {
        None => check(
            name,
            Verdict::Ok,
            "no hugepage pool in /proc/meminfo".into(),
            "this kernel has no hugetlbfs; only needed for huge-page segments",
        ),
        Some((total, free, kb)) => {
            let value = format!("{total} pages of {kb} kB reserved, {free} free");
            if total == 0 {
                check(
                    name,
                    Verdict::Ok,
                    value,
                    "none reserved: SHM_HUGETLB/MAP_HUGETLB segments fail with ENOMEM; reserve with `sysctl -w vm.nr_hugepages=N` if you need them",
                )
            } else if free == 0 {
                check(
                    name,
                    Verdict::Warn,
                    value,
                    "the pool is used up: new huge-page segments fail; raise vm.nr_hugepages",
                )
            } else {
                check(
                    name,
                    Verdict::Ok,
                    value,
                    "huge-page segments can be created",
                )
            }
        }
    }
}

fn check_max_map_count() -> Check {
    let name = "vm.max_map_count";
    match read_u64("/proc/sys/vm/max_map_count") {
        None => check(
            name,
            Verdict::Warn,
            "cannot be read".into(),
            "/proc/sys/vm/max_map_count is hidden",
        ),
        Some(n) if n < 65_530 => check(
            name,
            Verdict::Warn,
            format!("{n} mappings per process"),
            "below the kernel default 65530: a process mapping many segments gets ENOMEM from mmap/shmat; `sysctl -w vm.max_map_count=262144`",
        ),
        Some(n) => check(
            name,
            Verdict::Ok,
            format!("{n} mappings per process"),
            "each mapped segment uses one",
        ),
    }
}

/// Every check, in a fixed order.
pub fn checks() -> Vec<Check> {
    let mut v = vec![check_dev_shm(), check_sticky()];
    v.extend(check_sysv());
    v.push(check_remove_ipc());
    v.push(check_hugepages());
    v.push(check_max_map_count());
    v
}

/// `shm doctor [--json]`: exit 1 if any check failed.
pub fn doctor(json: bool) -> CliResult {
    let checks = checks();
    if json {
        let arr: Vec<_> = checks
            .iter()
            .map(|c| {
                json!({
                    "check": c.name,
                    "verdict": c.verdict.word(),
                    "value": c.value,
                    "hint": c.hint,
                })
            })
            .collect();
        emit(&format!("{}\n", serde_json::Value::Array(arr)))?;
    } else {
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &checks {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}\n      {:<width$}  hint: {}\n",
                c.verdict.word(),
                c.name,
                c.value,
                "",
                c.hint
            ));
        }
        emit(&out)?;
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{} check(s) failed: {}",
            failed.len(),
            failed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_ipc_is_read_from_the_login_section_only() {
        assert_eq!(remove_ipc_setting(""), None);
        assert_eq!(remove_ipc_setting("[Login]\n#RemoveIPC=no\n"), None);
        assert_eq!(remove_ipc_setting("[Login]\nRemoveIPC=no\n"), Some(false));
        assert_eq!(
            remove_ipc_setting("[Login]\nRemoveIPC=no\nRemoveIPC = yes\n"),
            Some(true)
        );
        assert_eq!(remove_ipc_setting("[Other]\nRemoveIPC=no\n"), None);
        assert_eq!(remove_ipc_setting("[Login]\nRemoveIPC=maybe\n"), None);
    }

    #[test]
    fn hugepages_parse_from_meminfo() {
        let m = "MemTotal: 1 kB\nHugePages_Total:       4\nHugePages_Free:        3\nHugepagesize:       2048 kB\n";
        assert_eq!(hugepages(m), Some((4, 3, 2048)));
        assert_eq!(hugepages("garbage"), None);
    }

    #[test]
    fn every_check_has_a_value_and_a_hint() {
        let all = checks();
        assert!(all.len() >= 8);
        for c in all {
            assert!(!c.value.is_empty() && !c.hint.is_empty(), "{c:?}");
        }
    }
}
