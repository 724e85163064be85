//! `cargo xtask san`: AddressSanitizer over the unit and integration tests,
//! through rustup's nightly toolchain in a target directory of its own (not
//! part of `ci`: it needs nightly).

use std::process::{Command, Stdio};

use crate::cmd::{Xtask, run_cmd, which};
use crate::{Result, failed};

impl Xtask {
    pub(crate) fn san(&self) -> Result {
        let rustup = which("rustup").ok_or_else(|| {
            failed(
                "`cargo xtask san` needs rustup and a nightly toolchain \
                 (install rustup from https://rustup.rs, then `rustup toolchain install nightly`)",
            )
        })?;
        let probe = Command::new(&rustup)
            .args(["run", "nightly", "rustc", "-vV"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| failed(format!("could not run {}: {e}", rustup.display())))?;
        if !probe.status.success() {
            return Err(failed(
                "`cargo xtask san` needs the nightly toolchain for -Zsanitizer=address: \
                 `rustup toolchain install nightly`",
            ));
        }
        let info = String::from_utf8_lossy(&probe.stdout);
        let host = info
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or("x86_64-unknown-linux-gnu")
            .trim()
            .to_owned();
        println!(
            "san: {} on {host}",
            info.lines().next().unwrap_or("nightly")
        );
        let asan_dir = self.target_base.join("asan");
        let nightly_cargo = |args: &[&str]| {
            let mut cmd = Command::new(&rustup);
            cmd.current_dir(&self.root)
                .args(["run", "nightly", "cargo"])
                .args(args)
                // With `--target`, the flag reaches only the target's code,
                // not proc-macros and build scripts, which the uninstrumented
                // compiler must load and run.
                .args(["--target", &host])
                .env("RUSTFLAGS", "-Zsanitizer=address")
                .env("CARGO_TARGET_DIR", &asan_dir)
                // `$CARGO` and friends point at the stable toolchain we were
                // started from; let the nightly cargo set its own.
                .env_remove("CARGO")
                .env_remove("RUSTC")
                .env_remove("RUSTDOC")
                .env_remove("RUSTUP_TOOLCHAIN");
            cmd
        };
        // The CLI's tests run the `shm` binary cargo builds for them
        // (`CARGO_BIN_EXE_shm`), instrumented like everything else, and
        // find the helper binary of tests/ next to themselves: this one
        // run builds both.
        let mut cmd = nightly_cargo(&[
            "test",
            "--workspace",
            "--exclude",
            "shm-bench",
            "--lib",
            "--tests",
        ]);
        run_cmd(&mut cmd)
    }
}
