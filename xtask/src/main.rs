//! `cargo xtask`: the project's build and test tasks, in Rust, so that CI and
//! a laptop run exactly the same thing (matklad's cargo-xtask pattern).
//!
//! Run `cargo xtask help` for the list. Cargo is taken from `$CARGO` (set
//! by `cargo run`), falling back to `cargo` on `PATH`; the workspace root is
//! the parent of this package's manifest directory.
//!
//! This file holds the usage text, the argument dispatch and the [`Error`]
//! every task returns. Each task lives in a module of its own with its
//! flags: [`ci`] (and `bench`), [`examples`], [`multiproc`], [`loom`],
//! [`san`] and [`clean_shm`](mod@clean_shm). [`cmd`] runs commands for all
//! of them, and [`leftover`] is the check, run around most tasks, that fails
//! if a task left a segment in `/dev/shm` or `ipcs -m`.
#![forbid(unsafe_code)]

mod ci;
mod clean_shm;
mod cmd;
mod examples;
mod leftover;
mod loom;
mod multiproc;
mod san;

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

use clean_shm::clean_shm;
use cmd::Xtask;
use multiproc::MultiprocOpts;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci                         everything CI runs, in order, stopping at the first
                             failure: fmt, clippy, test, examples, doc,
                             test-multiproc, loom, bench --quick, then the
                             leftover check
  examples                   runs every example (two processes each) with a
                             timeout; fails if one fails or leaves a segment
  test-multiproc [--chaos] [--rounds N] [--seed S] [-- TEST-ARGS...]
                             multi-process tests (packages shm-tests and
                             shm-cli, release; shm-test-helper built first);
                             the flags become SHM_CHAOS=1, SHM_CHAOS_ROUNDS,
                             SHM_CHAOS_SEED; fails if a segment is left behind
  loom                       the loom models (tests named *loom*) with
                             --cfg shm_loom; LOOM_MAX_PREEMPTIONS defaults to 2
  bench [--quick] [--json PATH] [--only NAME]
                             cargo run --release -p shm-bench with these args
  san                        AddressSanitizer over the unit and integration
                             tests (needs the nightly toolchain; not in ci)
  clean-shm [--dry-run]      removes what interrupted runs left: /dev/shm
                             entries named shmrs-test-*, shmrs-bench-*,
                             shmrs-demo-*, and unattached System V segments
                             whose key has top byte 0x5e
  help                       this text

environment:
  CARGO                      the cargo to run (default: cargo)
  CARGO_TARGET_DIR           base target directory; loom builds in <base>/loom,
                             san in <base>/asan (default base: <workspace>/target)
  CI                         when set (not \"false\"), the leftover check also
                             fails on new segments still in use by a live process
";

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Help) => {
            print!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Usage(msg)) => {
            if !msg.is_empty() {
                eprintln!("xtask: {msg}\n");
            }
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Failed(msg)) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Why a task did not succeed.
#[derive(Debug)]
enum Error {
    /// `help`: usage text on stdout, exit 2.
    Help,
    /// Bad command line: usage text, exit 2.
    Usage(String),
    /// The task ran and failed: exit 1.
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Help => f.write_str("help requested"),
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
        }
    }
}

type Result<T = ()> = std::result::Result<T, Error>;

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

fn failed(msg: impl Into<String>) -> Error {
    Error::Failed(msg.into())
}

fn run(args: &[OsString]) -> Result {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage(""));
    };
    let Some(cmd) = cmd.to_str() else {
        return Err(usage(format!("unknown command {cmd:?}")));
    };
    if matches!(cmd, "help" | "--help" | "-h") {
        // `help` shows the usage and exits 2, like any other non-task.
        return Err(Error::Help);
    }
    let x = Xtask::from_env();
    match cmd {
        "ci" => {
            no_args(cmd, rest)?;
            x.ci()
        }
        "examples" => {
            no_args(cmd, rest)?;
            x.examples()
        }
        "test-multiproc" => {
            let opts = MultiprocOpts::parse(rest)?;
            x.with_leftover_check("test-multiproc", || x.test_multiproc(&opts))
        }
        "loom" => {
            no_args(cmd, rest)?;
            x.loom().map(drop)
        }
        "bench" => x.with_leftover_check("bench", || x.bench(rest)),
        "san" => {
            no_args(cmd, rest)?;
            x.with_leftover_check("san", || x.san())
        }
        "clean-shm" => {
            let dry_run = match rest {
                [] => false,
                [flag] if flag == "--dry-run" => true,
                _ => {
                    return Err(usage(format!(
                        "clean-shm takes only --dry-run, got {rest:?}"
                    )));
                }
            };
            clean_shm(dry_run)
        }
        other => Err(usage(format!("unknown command `{other}`"))),
    }
}

fn no_args(cmd: &str, rest: &[OsString]) -> Result {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(usage(format!("`{cmd}` takes no arguments, got {rest:?}")))
    }
}
