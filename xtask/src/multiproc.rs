//! `cargo xtask test-multiproc [--chaos] [--rounds N] [--seed S] [-- TEST-ARGS...]`:
//! the multi-process tests (packages `shm-tests` and `shm-cli`, whose tests
//! run the `shm` binary as real processes; release build) and the flags
//! that become their `SHM_CHAOS*` environment. The leftover check around it
//! is the caller's ([`Xtask::with_leftover_check`]).

use std::ffi::OsString;

use crate::cmd::{Xtask, run_cmd};
use crate::{Result, usage};

impl Xtask {
    pub(crate) fn test_multiproc(&self, opts: &MultiprocOpts) -> Result {
        // The helper binary first, so that the tests of a package other
        // than its own (shm-cli's) find it too: handed over in
        // `SHM_TEST_HELPER` (`shm_tests::helper_path`).
        run_cmd(&mut self.cargo([
            "build",
            "-p",
            "shm-tests",
            "--release",
            "--bin",
            "shm-test-helper",
        ]))?;
        let helper = self.target_base.join("release").join("shm-test-helper");
        let mut cmd = self.cargo([
            "test",
            "-p",
            "shm-tests",
            "-p",
            "shm-cli",
            "--release",
            "--",
        ]);
        cmd.arg("--test-threads=2").args(&opts.test_args);
        // Where a build for another target (`CARGO_BUILD_TARGET`) put it
        // elsewhere, the tests look next to themselves instead.
        if helper.is_file() {
            cmd.env("SHM_TEST_HELPER", &helper);
        }
        if opts.chaos {
            cmd.env("SHM_CHAOS", "1");
        }
        if let Some(rounds) = opts.rounds {
            cmd.env("SHM_CHAOS_ROUNDS", rounds.to_string());
        }
        if let Some(seed) = opts.seed {
            cmd.env("SHM_CHAOS_SEED", seed.to_string());
        }
        run_cmd(&mut cmd)
    }
}

/// The flags of `test-multiproc`, which become its environment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MultiprocOpts {
    chaos: bool,
    rounds: Option<u64>,
    seed: Option<u64>,
    /// Everything after `--`, handed to the test binaries.
    test_args: Vec<OsString>,
}

impl MultiprocOpts {
    pub(crate) fn parse(args: &[OsString]) -> Result<MultiprocOpts> {
        let mut opts = MultiprocOpts::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(s) = arg.to_str() else {
                return Err(usage(format!(
                    "test-multiproc: unexpected argument {arg:?}"
                )));
            };
            let (flag, inline) = match s.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (s, None),
            };
            let mut value = |name: &str| -> Result<u64> {
                let v = match &inline {
                    Some(v) => v.clone(),
                    None => it
                        .next()
                        .and_then(|v| v.to_str())
                        .ok_or_else(|| usage(format!("test-multiproc: {name} needs a number")))?
                        .to_owned(),
                };
                parse_u64(&v)
                    .ok_or_else(|| usage(format!("test-multiproc: {name} {v:?} is not a number")))
            };
            match flag {
                "--chaos" if inline.is_none() => opts.chaos = true,
                "--rounds" => {
                    let n = value("--rounds")?;
                    if n == 0 {
                        return Err(usage("test-multiproc: --rounds must be at least 1"));
                    }
                    opts.rounds = Some(n);
                }
                "--seed" => opts.seed = Some(value("--seed")?),
                "--" => {
                    opts.test_args = it.cloned().collect();
                    break;
                }
                _ => return Err(usage(format!("test-multiproc: unknown argument `{s}`"))),
            }
        }
        Ok(opts)
    }
}

/// Decimal or `0x` hexadecimal.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_multiproc_flags() {
        let o = MultiprocOpts::parse(&os(&["--chaos", "--rounds", "5", "--seed=0x10"])).unwrap();
        assert_eq!(
            o,
            MultiprocOpts {
                chaos: true,
                rounds: Some(5),
                seed: Some(16),
                test_args: Vec::new()
            }
        );
        let o = MultiprocOpts::parse(&os(&["--", "queue", "--nocapture"])).unwrap();
        assert_eq!(o.test_args, os(&["queue", "--nocapture"]));
        for bad in [
            &["--rounds"][..],
            &["--rounds", "0"],
            &["--seed", "x"],
            &["--chaos=1"],
            &["--frobnicate"],
        ] {
            assert!(
                matches!(MultiprocOpts::parse(&os(bad)), Err(Error::Usage(_))),
                "{bad:?} should be a usage error"
            );
        }
    }
}
