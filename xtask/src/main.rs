//! `cargo xtask`: the project's build and test tasks, in Rust, so that CI and
//! a laptop run exactly the same thing (matklad's cargo-xtask pattern).
//!
//! Run `cargo xtask help` for the list. Cargo is taken from `$CARGO` (set
//! by `cargo run`), falling back to `cargo` on `PATH`; the workspace root is
//! the parent of this package's manifest directory.
//!
//! The leftover check snapshots the entries of `/dev/shm` and the System V
//! segments of `/proc/sysvipc/shm` (the data `ipcs -m` prints) before a task
//! and fails if the task left new ones behind.
#![forbid(unsafe_code)]

mod clean_shm;
mod cmd;
mod examples;
mod leftover;
mod loom;
mod multiproc;
mod san;

use clean_shm::clean_shm;
use cmd::{Xtask, run_cmd};
use leftover::Snapshot;
use multiproc::MultiprocOpts;

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
                             multi-process tests (package shm-tests, release);
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

impl Xtask {
    fn ci(&self) -> Result {
        let total = Instant::now();
        let before = Snapshot::take()?;
        let count = CiStep::ALL.len();
        let mut results: Vec<(&str, StepResult)> = Vec::new();
        let mut failure = None;
        for (i, step) in CiStep::ALL.into_iter().enumerate() {
            let name = step.name();
            // After a failure only the leftover check still runs: it is
            // cheap and says what the failed step left behind.
            if failure.is_some() && !matches!(step, CiStep::Leftover) {
                results.push((name, StepResult::Skipped));
                continue;
            }
            println!("\n==> [{}/{count}] {name}", i + 1);
            let start = Instant::now();
            let outcome = self.ci_step(step, &before);
            let took = start.elapsed();
            match outcome {
                Ok(()) => {
                    println!("<== {name}: ok in {}", Hms(took));
                    results.push((name, StepResult::Ok(took)));
                }
                Err(e) => {
                    println!("<== {name}: FAILED after {}", Hms(took));
                    results.push((name, StepResult::Failed(took)));
                    let msg = format!("ci step `{name}` failed: {e}");
                    failure = Some(match failure.take() {
                        Some(Error::Failed(first)) => failed(format!("{first}\n{msg}")),
                        _ => failed(msg),
                    });
                }
            }
        }
        print_summary(&results, total.elapsed());
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn ci_step(&self, step: CiStep, before: &Snapshot) -> Result {
        match step {
            CiStep::Fmt => run_cmd(&mut self.cargo(["fmt", "--all", "--check"])),
            CiStep::Clippy => run_cmd(&mut self.cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
            CiStep::Test => {
                run_cmd(&mut self.cargo(["test", "--workspace", "--exclude", "shm-tests"]))
            }
            CiStep::Examples => self.examples(),
            CiStep::Doc => {
                let mut cmd = self.cargo(["doc", "--workspace", "--no-deps"]);
                cmd.env("RUSTDOCFLAGS", "-D warnings");
                run_cmd(&mut cmd)
            }
            CiStep::Multiproc => self.with_leftover_check("test-multiproc", || {
                self.test_multiproc(&MultiprocOpts::default())
            }),
            CiStep::Loom => self.loom().map(drop),
            CiStep::Bench => self.bench(&[OsString::from("--quick")]),
            CiStep::Leftover => Snapshot::take()?.check_against(before),
        }
    }

    fn bench(&self, args: &[OsString]) -> Result {
        let mut cmd = self.cargo(["run", "--release", "-p", "shm-bench", "--"]);
        cmd.args(args);
        run_cmd(&mut cmd)
    }
}

/// The steps of `cargo xtask ci`, in the order they run.
#[derive(Debug, Clone, Copy)]
enum CiStep {
    Fmt,
    Clippy,
    Test,
    Examples,
    Doc,
    Multiproc,
    Loom,
    Bench,
    Leftover,
}

impl CiStep {
    const ALL: [CiStep; 9] = [
        CiStep::Fmt,
        CiStep::Clippy,
        CiStep::Test,
        CiStep::Examples,
        CiStep::Doc,
        CiStep::Multiproc,
        CiStep::Loom,
        CiStep::Bench,
        CiStep::Leftover,
    ];

    fn name(self) -> &'static str {
        match self {
            CiStep::Fmt => "fmt",
            CiStep::Clippy => "clippy",
            CiStep::Test => "test",
            CiStep::Examples => "examples",
            CiStep::Doc => "doc",
            CiStep::Multiproc => "test-multiproc",
            CiStep::Loom => "loom",
            CiStep::Bench => "bench --quick",
            CiStep::Leftover => "leftover check",
        }
    }
}

/// A duration printed as `4.2s` or `3m 07s`.
struct Hms(Duration);

impl fmt::Display for Hms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs < 60.0 {
            write!(f, "{secs:.1}s")
        } else {
            let whole = self.0.as_secs();
            write!(f, "{}m {:02}s", whole / 60, whole % 60)
        }
    }
}

enum StepResult {
    Ok(Duration),
    Failed(Duration),
    Skipped,
}

fn print_summary(results: &[(&str, StepResult)], total: Duration) {
    let width = results
        .iter()
        .map(|(n, _)| n.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    println!("\nci summary");
    println!("  {:width$}  {:7}  {:>9}", "step", "result", "time");
    for (name, result) in results {
        let (verdict, took) = match result {
            StepResult::Ok(d) => ("ok", Hms(*d).to_string()),
            StepResult::Failed(d) => ("FAILED", Hms(*d).to_string()),
            StepResult::Skipped => ("skipped", "-".to_owned()),
        };
        println!("  {name:width$}  {verdict:7}  {took:>9}");
    }
    println!(
        "  {:width$}  {:7}  {:>9}",
        "total",
        "",
        Hms(total).to_string()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations() {
        assert_eq!(Hms(Duration::from_millis(4200)).to_string(), "4.2s");
        assert_eq!(Hms(Duration::from_secs(187)).to_string(), "3m 07s");
    }
}
