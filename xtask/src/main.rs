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

mod cmd;
mod examples;

use cmd::{Xtask, run_cmd, run_cmd_tee, which};

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::thread;
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

/// `/dev/shm` names that belong to this project's tests, benches and demo.
const OUR_PREFIXES: [&str; 3] = ["shmrs-test-", "shmrs-bench-", "shmrs-demo-"];
/// Top byte of the System V keys the tests use.
const TEST_KEY_TOP_BYTE: u32 = 0x5e;
const DEV_SHM: &str = "/dev/shm";
const PROC_SYSV_SHM: &str = "/proc/sysvipc/shm";
/// How long the leftover check waits for new entries to go away: a process
/// of another run that is removing its segment right now.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

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

    /// Runs `task` between two snapshots and fails if it left segments.
    fn with_leftover_check(&self, what: &str, task: impl FnOnce() -> Result) -> Result {
        let before = Snapshot::take()?;
        let result = task();
        // Checked even when the task failed: a failing test is the one most
        // likely to leave something behind.
        let check = Snapshot::take().and_then(|after| after.check_against(&before));
        match (result, check) {
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(left)) => Err(failed(format!("{what}: {left}"))),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(left)) => Err(failed(format!(
                "{e}\n{what} also left segments behind: {left}"
            ))),
        }
    }

    fn test_multiproc(&self, opts: &MultiprocOpts) -> Result {
        let mut cmd = self.cargo(["test", "-p", "shm-tests", "--release", "--"]);
        cmd.arg("--test-threads=2").args(&opts.test_args);
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

    /// Runs the loom models; returns how many passed.
    fn loom(&self) -> Result<u64> {
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

    fn bench(&self, args: &[OsString]) -> Result {
        let mut cmd = self.cargo(["run", "--release", "-p", "shm-bench", "--"]);
        cmd.args(args);
        run_cmd(&mut cmd)
    }

    fn san(&self) -> Result {
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
        // No test target builds the `shm` binary that tests/tests/cli.rs
        // runs; left to itself that test builds it with `$CARGO` and the
        // inherited RUSTFLAGS, and (when it cannot tell the `--target`
        // layout) without `--target`, which instruments the clap_derive
        // proc-macro and fails. Build it here, instrumented, and hand it
        // over through `SHM_BIN`. The helper binary of tests/ is built by
        // the test run itself, with the same flags.
        run_cmd(&mut nightly_cargo(&[
            "build", "-p", "shm-cli", "--bin", "shm",
        ]))?;
        let shm = asan_dir.join(&host).join("debug").join("shm");
        let mut cmd = nightly_cargo(&[
            "test",
            "--workspace",
            "--exclude",
            "shm-bench",
            "--lib",
            "--tests",
        ]);
        cmd.env("SHM_BIN", &shm);
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

#[derive(Debug, Default, PartialEq, Eq)]
struct MultiprocOpts {
    chaos: bool,
    rounds: Option<u64>,
    seed: Option<u64>,
    /// Everything after `--`, handed to the test binaries.
    test_args: Vec<OsString>,
}

impl MultiprocOpts {
    fn parse(args: &[OsString]) -> Result<MultiprocOpts> {
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

/// A System V segment as `/proc/sysvipc/shm` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SysvSeg {
    key: u32,
    shmid: i64,
    size: u64,
    cpid: u32,
    nattch: u64,
}

/// Parses `/proc/sysvipc/shm`: a header line naming the columns, then one
/// line per segment. Columns are found by name, so a kernel that adds some
/// still parses; a line that does not parse is skipped.
fn parse_sysvipc_shm(text: &str) -> Vec<SysvSeg> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(key), Some(shmid), Some(size), Some(cpid), Some(nattch)) = (
        col("key"),
        col("shmid"),
        col("size"),
        col("cpid"),
        col("nattch"),
    ) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(SysvSeg {
                // The kernel prints the key as a signed int.
                key: f.get(key)?.parse::<i64>().ok()? as u32,
                shmid: f.get(shmid)?.parse().ok()?,
                size: f.get(size)?.parse().ok()?,
                cpid: f.get(cpid)?.parse().ok()?,
                nattch: f.get(nattch)?.parse().ok()?,
            })
        })
        .collect()
}

fn read_sysv() -> Result<Vec<SysvSeg>> {
    match fs::read_to_string(PROC_SYSV_SHM) {
        Ok(text) => Ok(parse_sysvipc_shm(&text)),
        // A kernel without System V IPC has no segments.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(failed(format!("reading {PROC_SYSV_SHM}: {e}"))),
    }
}

fn read_dev_shm() -> Result<BTreeSet<String>> {
    let dir = match fs::read_dir(DEV_SHM) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(failed(format!("reading {DEV_SHM}: {e}"))),
    };
    let mut names = BTreeSet::new();
    for entry in dir {
        let entry = entry.map_err(|e| failed(format!("reading {DEV_SHM}: {e}")))?;
        names.insert(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// What exists in `/dev/shm` and `ipcs -m` at one moment.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    posix: BTreeSet<String>,
    sysv: BTreeMap<i64, SysvSeg>,
}

impl Snapshot {
    fn take() -> Result<Snapshot> {
        Ok(Snapshot {
            posix: read_dev_shm()?,
            sysv: read_sysv()?.into_iter().map(|s| (s.shmid, s)).collect(),
        })
    }

    /// What is in `self` and not in `before`.
    fn new_since(&self, before: &Snapshot) -> Snapshot {
        Snapshot {
            posix: self.posix.difference(&before.posix).cloned().collect(),
            sysv: self
                .sysv
                .iter()
                .filter(|(id, _)| !before.sysv.contains_key(id))
                .map(|(id, s)| (*id, s.clone()))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.posix.is_empty() && self.sysv.is_empty()
    }

    /// Fails, listing them, if entries exist now that `before` did not
    /// have. New entries get [`LEFTOVER_GRACE`] to disappear first (a
    /// concurrent run removing its own), and outside CI an entry that a live
    /// process still maps belongs to that process, not to us: it is shown but
    /// not counted.
    fn check_against(&self, before: &Snapshot) -> Result {
        let mut new = self.new_since(before);
        let deadline = Instant::now() + LEFTOVER_GRACE;
        while !new.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
            let now = Snapshot::take()?.new_since(before);
            new.posix.retain(|n| now.posix.contains(n));
            new.sysv.retain(|id, _| now.sysv.contains_key(id));
        }
        if new.is_empty() {
            println!("leftover check: nothing new in {DEV_SHM} or ipcs -m");
            return Ok(());
        }
        let strict = env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let mappers = posix_mappers(&new.posix);
        let mut leftovers = Vec::new();
        let mut in_use = Vec::new();
        for name in &new.posix {
            let path = Path::new(DEV_SHM).join(name);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match mappers.get(name) {
                Some(pids) => in_use.push(format!(
                    "{} ({size} bytes), mapped by {}",
                    path.display(),
                    describe_pids(pids)
                )),
                None => leftovers.push(format!("{} ({size} bytes)", path.display())),
            }
        }
        for s in new.sysv.values() {
            let line = format!(
                "System V shmid {} key {:#010x} ({} bytes, creator pid {}, nattch {})",
                s.shmid, s.key, s.size, s.cpid, s.nattch
            );
            if s.nattch > 0 {
                in_use.push(line);
            } else {
                leftovers.push(line);
            }
        }
        if !in_use.is_empty() {
            println!(
                "leftover check: new since the start and still in use by a live process{}:",
                if strict {
                    " (counted: CI is set, nothing else should run here)"
                } else {
                    " (another program's, not counted; set CI=1 to count them)"
                }
            );
            for l in &in_use {
                println!("  {l}");
            }
            if strict {
                leftovers.append(&mut in_use);
            }
        }
        if leftovers.is_empty() {
            println!("leftover check: nothing left behind");
            return Ok(());
        }
        let mut msg = format!(
            "{} shared memory segment(s) appeared during the run and were not removed:",
            leftovers.len()
        );
        for l in &leftovers {
            msg.push_str("\n  ");
            msg.push_str(l);
        }
        msg.push_str(
            "\nfind the test that does not clean up; `cargo xtask clean-shm` removes \
             test leftovers (`rm /dev/shm/NAME`, `ipcrm -m SHMID` for the others)",
        );
        Err(failed(msg))
    }
}

/// For each name in `names`, the PIDs whose `/proc/PID/maps` map
/// `/dev/shm/NAME`. Processes we may not read are skipped.
fn posix_mappers(names: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<u32>> {
    let mut found: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    if names.is_empty() {
        return found;
    }
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(maps) = fs::read_to_string(entry.path().join("maps")) else {
            continue;
        };
        for name in maps_shm_names(&maps) {
            if names.contains(name) {
                found.entry(name.to_owned()).or_default().insert(pid);
            }
        }
    }
    found
}

/// The `/dev/shm` names mapped in the text of a `/proc/PID/maps`.
fn maps_shm_names(maps: &str) -> impl Iterator<Item = &str> {
    maps.lines().filter_map(|line| {
        // Five fields (range, perms, offset, dev, inode), then the path,
        // which may contain spaces.
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(' ')?..];
        }
        let rest = rest.trim();
        let rest = rest.strip_suffix(" (deleted)").unwrap_or(rest);
        rest.strip_prefix("/dev/shm/")
    })
}

fn describe_pids(pids: &BTreeSet<u32>) -> String {
    pids.iter()
        .map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid} ({})", comm.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
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

fn is_ours(name: &str) -> bool {
    OUR_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn is_test_key(key: u32) -> bool {
    key >> 24 == TEST_KEY_TOP_BYTE
}

fn clean_shm(dry_run: bool) -> Result {
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

    const PROC_SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
1577058305          7   600                  4096  1234  1234      0     0     0     0     0          0          0 1700000000                     0                     0
         0         65  1600                 65536   999  1000      2  1000  1000  1000  1000 1700000001          0 1700000000                  4096                     0
-559038737          9   644                   128    42    42      1     0     0     0     0          0          0 1700000000                     0                     0
garbage line
";

    #[test]
    fn parses_proc_sysvipc_shm() {
        let segs = parse_sysvipc_shm(PROC_SHM);
        assert_eq!(segs.len(), 3);
        assert_eq!(
            segs[0],
            SysvSeg {
                key: 0x5e00_0001,
                shmid: 7,
                size: 4096,
                cpid: 1234,
                nattch: 0
            }
        );
        assert!(is_test_key(segs[0].key));
        assert_eq!(segs[1].key, 0);
        assert_eq!(segs[1].nattch, 2);
        // Negative keys are the high half of the u32 range.
        assert_eq!(segs[2].key, 0xdead_beef);
        assert!(!is_test_key(segs[2].key));
    }

    #[test]
    fn empty_or_unknown_sysvipc_is_empty() {
        assert!(parse_sysvipc_shm("").is_empty());
        assert!(parse_sysvipc_shm("a b c\n1 2 3\n").is_empty());
    }

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

    #[test]
    fn finds_dev_shm_in_maps() {
        let maps = "\
7f0000000000-7f0000001000 rw-s 00000000 00:1a 123 /dev/shm/shmrs-test-a-1-0
7f0000001000-7f0000002000 rw-s 00000000 00:1a 124 /dev/shm/with space (deleted)
7f0000002000-7f0000003000 rw-s 00000000 00:01 65 /SYSV5e000001 (deleted)
7f0000003000-7f0000004000 r-xp 00000000 08:01 99 /usr/lib/libc.so.6
7f0000004000-7f0000005000 rw-p 00000000 00:00 0
";
        let names: Vec<&str> = maps_shm_names(maps).collect();
        assert_eq!(names, ["shmrs-test-a-1-0", "with space"]);
    }

    #[test]
    fn our_prefixes() {
        assert!(is_ours("shmrs-test-x-1"));
        assert!(is_ours("shmrs-bench-ring"));
        assert!(is_ours("shmrs-demo-42"));
        assert!(!is_ours("sem.shmrs-test-x"));
        assert!(!is_ours("shmrs-other"));
    }

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

    #[test]
    fn new_since_is_a_difference() {
        let seg = |shmid| SysvSeg {
            key: 1,
            shmid,
            size: 1,
            cpid: 1,
            nattch: 0,
        };
        let before = Snapshot {
            posix: ["a".to_owned(), "b".to_owned()].into(),
            sysv: [(1, seg(1))].into(),
        };
        let after = Snapshot {
            posix: ["b".to_owned(), "c".to_owned()].into(),
            sysv: [(1, seg(1)), (2, seg(2))].into(),
        };
        let new = after.new_since(&before);
        assert_eq!(new.posix, ["c".to_owned()].into());
        assert_eq!(new.sysv.keys().copied().collect::<Vec<_>>(), [2]);
        assert!(before.new_since(&before).is_empty());
    }

    /// The check on the real `/dev/shm` and System V table. Other programs
    /// may create and remove segments meanwhile, so it asserts only about
    /// the entries it made itself.
    #[test]
    fn leftover_check_names_new_segments() {
        let before = Snapshot::take().unwrap();
        let name = format!("shmrs-test-xtask-{}", std::process::id());
        let path = Path::new(DEV_SHM).join(&name);
        fs::write(&path, b"left behind").unwrap();
        // ipcmk(1) (util-linux) makes an unattached System V segment and
        // prints its shmid; without it only the POSIX half is checked.
        let shmid = Command::new("ipcmk")
            .args(["-M", "4096"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let out = String::from_utf8_lossy(&o.stdout);
                out.split_whitespace().last()?.parse::<i64>().ok()
            });
        let after = Snapshot::take().unwrap();
        let result = after.check_against(&before);
        let _ = fs::remove_file(&path);
        if let Some(id) = shmid {
            let _ = Command::new("ipcrm").args(["-m", &id.to_string()]).status();
        }
        let msg = result
            .expect_err("a new segment must fail the check")
            .to_string();
        assert!(msg.contains(&name), "{msg}");
        if let Some(id) = shmid {
            assert!(msg.contains(&format!("shmid {id} ")), "{msg}");
        }
        if let Err(e) = Snapshot::take().unwrap().check_against(&before) {
            let msg = e.to_string();
            assert!(!msg.contains(&name), "removed, still reported: {msg}");
        }
    }

    #[test]
    fn formats_durations() {
        assert_eq!(Hms(Duration::from_millis(4200)).to_string(), "4.2s");
        assert_eq!(Hms(Duration::from_secs(187)).to_string(), "3m 07s");
    }
}
