//! `cargo xtask loom`: the loom models (tests named `*loom*` in shm-core,
//! shm-sync and shm-queue) built with `--cfg shm_loom` in a target directory
//! of their own, and the [`TestTotals`] read from libtest's output to say how
//! many models ran.

use std::env;

use crate::Result;
use crate::cmd::{Xtask, run_cmd_tee};

impl Xtask {
    /// Runs the loom models; returns how many passed.
    pub(crate) fn loom(&self) -> Result<u64> {
        let mut cmd = self.cargo([
            "test",
            "--release",
            "--lib",
            "-p",
            "shm-core",
            "-p",
            "shm-sync",
            "-p",
            "shm-queue",
            "loom",
        ]);
        cmd.env("RUSTFLAGS", "--cfg shm_loom")
            // A separate target dir: the cfg change would otherwise rebuild
            // everything in the normal one, twice per ci run.
            .env("CARGO_TARGET_DIR", self.target_base.join("loom"));
        if env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
            cmd.env("LOOM_MAX_PREEMPTIONS", "2");
        }
        let out = run_cmd_tee(&mut cmd)?;
        let totals = TestTotals::parse(&out);
        println!(
            "loom: {} model(s) passed in {} test binar{} (LOOM_MAX_PREEMPTIONS={})",
            totals.passed,
            totals.binaries,
            if totals.binaries == 1 { "y" } else { "ies" },
            env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "2".into()),
        );
        if totals.passed == 0 {
            println!("loom: warning: no test named *loom* exists under --cfg shm_loom");
        }
        Ok(totals.passed)
    }
}

/// Totals over the `test result:` lines of libtest output.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    binaries: u64,
    passed: u64,
    failed: u64,
}

impl TestTotals {
    fn parse(output: &str) -> TestTotals {
        let mut t = TestTotals::default();
        for line in output.lines() {
            let Some(rest) = line.trim().strip_prefix("test result:") else {
                continue;
            };
            t.binaries += 1;
            for part in rest.split([';', '.']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    match (n.parse::<u64>(), what) {
                        (Ok(n), "passed") => t.passed += n,
                        (Ok(n), "failed") => t.failed += n,
                        _ => {}
                    }
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_test_results() {
        let out = "\
running 2 tests
test sem::loom_post_wait ... ok
test header::loom_publish ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.20s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        assert_eq!(
            TestTotals::parse(out),
            TestTotals {
                binaries: 2,
                passed: 2,
                failed: 0
            }
        );
        let bad = "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(
            TestTotals::parse(bad),
            TestTotals {
                binaries: 1,
                passed: 3,
                failed: 1
            }
        );
    }
}
