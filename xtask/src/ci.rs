//! `cargo xtask ci`: every step CI runs ([`CiStep`]), in order, stopping at
//! the first failure except for the final leftover check, then a summary
//! table with each step's time. Also `cargo xtask bench`, which is one
//! `cargo run` and one of the steps.

use std::ffi::OsString;
use std::fmt;
use std::time::{Duration, Instant};

use crate::cmd::{Xtask, run_cmd};
use crate::leftover::Snapshot;
use crate::multiproc::MultiprocOpts;
use crate::{Error, Result, failed};

impl Xtask {
    pub(crate) fn ci(&self) -> Result {
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
            // shm-tests and shm-cli run their tests in `test-multiproc`
            // (real processes, release build).
            CiStep::Test => run_cmd(&mut self.cargo([
                "test",
                "--workspace",
                "--exclude",
                "shm-tests",
                "--exclude",
                "shm-cli",
            ])),
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

    /// `cargo xtask bench ARGS`: the shm-bench binary, in release, with `args`.
    pub(crate) fn bench(&self, args: &[OsString]) -> Result {
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
