//! `cargo xtask examples` (and the `examples` step of `ci`): builds every
//! example of the library crates and runs each as a real program, with a
//! timeout, failing if one fails, hangs or leaves a segment behind.
//!
//! Each example starts its peer process itself (it re-executes its own
//! binary with a role argument), so one run is two real processes. A hung
//! example is killed with its whole process group, peer included.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{Xtask, check_status, run_cmd, show, start_error};
use crate::{Result, failed};

/// One example: its package, its name, and the features it needs.
struct Example {
    package: &'static str,
    name: &'static str,
    features: &'static [&'static str],
}

/// Every example, in the order they run. Add new ones here.
const EXAMPLES: &[Example] = &[
    Example {
        package: "shm-core",
        name: "memfd_pass",
        features: &[],
    },
    Example {
        package: "shm-sync",
        name: "mutex_condvar",
        features: &[],
    },
    Example {
        package: "shm-queue",
        name: "producer_consumer",
        features: &[],
    },
    Example {
        package: "shm-queue",
        name: "typed_queue",
        features: &[],
    },
    Example {
        package: "shm-queue",
        name: "zero_copy",
        features: &[],
    },
    Example {
        package: "shm-queue",
        name: "async_consumer",
        features: &["tokio"],
    },
];

/// How long one example may run (they take about a second each).
const TIMEOUT: Duration = Duration::from_secs(120);

impl Xtask {
    /// Builds and runs every example, each under the leftover check.
    pub(crate) fn examples(&self) -> Result {
        let bin_dir = self.target_base.join("debug").join("examples");
        for ex in EXAMPLES {
            let mut build = self.cargo(["build", "-p", ex.package]);
            build.args(["--example", ex.name]);
            if !ex.features.is_empty() {
                build.args(["--features", &ex.features.join(",")]);
            }
            run_cmd(&mut build)?;
            let bin = bin_dir.join(ex.name);
            self.with_leftover_check(&format!("example {}", ex.name), || {
                run_with_timeout(Command::new(&bin).current_dir(&self.root), TIMEOUT)
            })?;
        }
        println!("examples: {} ran and cleaned up", EXAMPLES.len());
        Ok(())
    }
}

/// Runs `cmd` in a process group of its own; past `limit`, kills the
/// group (the example and the peer it started) and fails.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result {
    println!("$ {}", show(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| start_error(cmd, &e))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return check_status(cmd, status),
            Ok(None) if start.elapsed() > limit => {
                // `kill -KILL -- -PGID`: the example and its peer.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "`{}` ran for more than {limit:?}; killed it and its peer",
                    show(cmd)
                )));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(failed(format!("waiting for `{}`: {e}", show(cmd)))),
        }
    }
}
