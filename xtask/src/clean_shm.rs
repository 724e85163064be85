//! `cargo xtask clean-shm [--dry-run]`: removes what interrupted runs left
//! behind, the `/dev/shm` entries named with this project's prefixes and the
//! unattached System V segments whose key carries its top byte.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::leftover::{DEV_SHM, read_dev_shm, read_sysv};
use crate::{Result, failed};

/// `/dev/shm` names that belong to this project's tests, benches and demo.
const OUR_PREFIXES: [&str; 3] = ["shmrs-test-", "shmrs-bench-", "shmrs-demo-"];
/// Top byte of the System V keys the tests use.
const TEST_KEY_TOP_BYTE: u32 = 0x5e;

fn is_ours(name: &str) -> bool {
    OUR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether a System V key (printed signed by the kernel) is a test key.
pub(crate) fn is_test_key(key: i32) -> bool {
    (key as u32) >> 24 == TEST_KEY_TOP_BYTE
}

pub(crate) fn clean_shm(dry_run: bool) -> Result {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut errors = Vec::new();
    let mut count = 0;
    for name in read_dev_shm()?.into_iter().filter(|n| is_ours(n)) {
        let path = Path::new(DEV_SHM).join(&name);
        if dry_run {
            println!("{verb} {}", path.display());
            count += 1;
            continue;
        }
        // Unlinking the file is what shm_unlink(3) does.
        match fs::remove_file(&path) {
            Ok(()) => {
                println!("{verb} {}", path.display());
                count += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    for seg in read_sysv()?
        .into_iter()
        .filter(|s| is_test_key(s.key) && s.nattch == 0)
    {
        let what = format!(
            "System V shmid {} key {:#010x} ({} bytes)",
            seg.shmid, seg.key, seg.size
        );
        if dry_run {
            println!("{verb} {what}");
            count += 1;
            continue;
        }
        // std has no shmctl; ipcrm(1) from util-linux does IPC_RMID.
        let out = Command::new("ipcrm")
            .args(["-m", &seg.shmid.to_string()])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                println!("{verb} {what}");
                count += 1;
            }
            Ok(o) => {
                // Gone in the meantime is fine.
                if read_sysv()?.iter().any(|s| s.shmid == seg.shmid) {
                    errors.push(format!(
                        "{what}: ipcrm: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
            }
            Err(e) => errors.push(format!("{what}: could not run ipcrm (util-linux): {e}")),
        }
    }
    println!(
        "clean-shm: {verb} {count} segment(s){}",
        if count == 0 { ", nothing to do" } else { "" }
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "could not remove:\n  {}",
            errors.join("\n  ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_prefixes() {
        assert!(is_ours("shmrs-test-x-1"));
        assert!(is_ours("shmrs-bench-ring"));
        assert!(is_ours("shmrs-demo-42"));
        assert!(!is_ours("sem.shmrs-test-x"));
        assert!(!is_ours("shmrs-other"));
    }

    #[test]
    fn test_keys_are_recognised() {
        assert!(is_test_key(0x5e00_0001));
        assert!(!is_test_key(0));
        // Negative keys are the high half of the u32 range.
        assert!(!is_test_key(0xdead_beef_u32 as i32));
    }
}
