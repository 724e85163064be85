//! `shm-bench`: shm-queue side by side with pipes, Unix sockets, POSIX
//! message queues, a hand-written pthread condvar ring, a busy-spinning
//! shared-memory ring (the hardware limit) and crossbeam-channel, between
//! two processes, with every transfer checked.
//!
//! Run it through `cargo xtask bench [ARGS]`; `--help` lists the options
//! and docs/benchmarks.md explains the method and the results.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod chart;
mod child;
mod handoff;
mod micro;
mod payload;
mod plan;
mod report;
mod runner;
#[allow(unsafe_code)]
mod sys;
mod transport;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::plan::Measure;
use crate::report::Record;
use crate::runner::Outcome;
use crate::transport::Contender;

const USAGE: &str = "\
usage: shm-bench [--quick] [--passes N] [--only NAMES] [--json PATH] [--svg PATH] [--markdown PATH]
       shm-bench micro [--quick]
       shm-bench report --from JSON [--svg PATH] [--markdown PATH]

Runs every contender between two processes (pinned to two CPUs when there
are two), interleaved pass by pass, and prints markdown tables of the
medians over passes with ratios against the pipe and the raw spin ring.

  --quick          one pass, tiny message counts (what `cargo xtask ci` runs)
  --passes N       passes (default 3, --quick 1)
  --only NAMES     comma-separated contenders and/or measures to run
                   (contenders: pipe unix-stream unix-seqpacket posix-mq
                   condvar-ring spin-ring spin-ring-inplace shm-queue
                   shm-queue-zerocopy shm-queue-batch shm-queue-async iceoryx2 iceoryx2-event
                   crossbeam; measures: pingpong stream idle wake mpmc).
                   Ratios need pipe, spin-ring and condvar-ring in the
                   selection.
  --json PATH      write every raw number, the machine and the medians
  --svg PATH       chart (default: docs/benchmarks.svg for a full run,
                   <target>/shm-bench-quick.svg for --quick)
  --markdown PATH  write the tables there too
  micro            in-process micro-benchmarks of uncontended paths
  report           the tables and chart of a run saved with --json, again

The iceoryx2 contenders (iceoryx2: publish-subscribe, the subscriber
busy-polls; iceoryx2-event: plus an event service, the subscriber blocks)
are built only with the `iceoryx2` feature, off by default:

  cargo run --release -p shm-bench --features iceoryx2 -- [ARGS]

A build with the feature runs them in every full run; a build without it
leaves them out (and refuses --only iceoryx2).

Exit status 1 if any run failed (a transfer that did not check out, a
child that crashed or hung).
";

#[derive(Debug, Default)]
struct Options {
    quick: bool,
    passes: Option<usize>,
    only: Vec<String>,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    markdown: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--passes" => {
                let v = value("--passes")?;
                o.passes = Some(
                    v.parse()
                        .map_err(|_| format!("--passes {v}: not a number"))?,
                );
            }
            "--only" => o
                .only
                .extend(value("--only")?.split(',').map(|s| s.trim().to_string())),
            "--json" => o.json = Some(value("--json")?.into()),
            "--svg" => o.svg = Some(value("--svg")?.into()),
            "--markdown" => o.markdown = Some(value("--markdown")?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    for name in &o.only {
        let measure = ["pingpong", "stream", "idle", "wake", "mpmc"].contains(&name.as_str());
        match Contender::from_name(name) {
            None if !measure => {
                return Err(format!("--only: unknown contender or measure {name:?}"));
            }
            Some(c) if !c.available() => {
                return Err(format!("--only {name}: {}", transport::NO_ICEORYX2));
            }
            _ => {}
        }
    }
    if o.passes == Some(0) {
        return Err("--passes must be at least 1".into());
    }
    Ok(o)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first two CPUs this process may run on, or none with fewer than two.
fn pick_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return Vec::new();
    };
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .take(2)
        .collect();
    if cpus.len() == 2 { cpus } else { Vec::new() }
}

fn measure_family(m: Measure) -> &'static str {
    match m {
        Measure::PingPong => "pingpong",
        Measure::Stream => "stream",
        Measure::Idle => "idle",
        Measure::Wake => "wake",
        Measure::Mpmc(_) => "mpmc",
    }
}

fn short(
    outcome: &Result<Outcome, String>,
    metrics: &std::collections::BTreeMap<&str, f64>,
) -> String {
    match outcome {
        Ok(Outcome::NotApplicable(why)) => format!("n/a ({why})"),
        Err(e) => format!("FAILED: {e}"),
        Ok(Outcome::Ran { .. }) => metrics
            .iter()
            .filter(|(k, _)| {
                ["median_us", "p99_us", "msgs_per_s", "mb_per_s", "cpu_pct"].contains(k)
            })
            .map(|(k, v)| format!("{k} {}", report::sig(*v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Names of ours in /dev/shm left by this process: removed, and reported.
fn leftovers() -> Vec<String> {
    let prefix = format!("shmrs-bench-{}-", std::process::id());
    let mut left = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
                left.push(name);
            }
        }
    }
    left
}

fn bench(o: &Options) -> Result<bool, String> {
    let started = Instant::now();
    let only_contenders: Vec<Contender> = o
        .only
        .iter()
        .filter_map(|n| Contender::from_name(n))
        .collect();
    let only_measures: Vec<&str> = o
        .only
        .iter()
        .map(String::as_str)
        .filter(|n| Contender::from_name(n).is_none())
        .collect();
    let contenders: Vec<Contender> = if only_contenders.is_empty() {
        Contender::ALL
            .into_iter()
            .filter(|c| c.available())
            .collect()
    } else {
        Contender::ALL
            .into_iter()
            .filter(|c| only_contenders.contains(c))
            .collect()
    };
    let passes = o.passes.unwrap_or(if o.quick { 1 } else { 3 });
    let cpus = pick_cpus();
    let machine = report::machine();
    let timeout = Duration::from_secs(if o.quick { 60 } else { 180 });
    eprintln!(
        "shm-bench: {} pass(es), {} contender(s), pinned to cpus {:?}",
        passes,
        contenders.len(),
        cpus
    );
    let mut records = Vec::new();
    let mut run = 0u64;
    for pass in 1..=passes {
        for case in plan::pass(o.quick, &contenders) {
            if !only_measures.is_empty() && !only_measures.contains(&measure_family(case.measure)) {
                continue;
            }
            run += 1;
            let outcome = runner::run_case(&case, run, &cpus, timeout);
            let metrics = match &outcome {
                Ok(Outcome::Ran { outputs, notes }) => report::metrics(&case, outputs, notes),
                _ => Default::default(),
            };
            if !matches!(outcome, Ok(Outcome::NotApplicable(_))) {
                eprintln!(
                    "[pass {pass}/{passes} {:>6.1}s] {:<14} {:<19} {}",
                    started.elapsed().as_secs_f64(),
                    case.key(),
                    case.contender.name(),
                    short(&outcome, &metrics)
                );
            }
            records.push(Record {
                pass,
                case,
                outcome,
                metrics,
            });
        }
    }
    let left = leftovers();
    let micro = if only_contenders.is_empty() && only_measures.is_empty() {
        micro::run(o.quick).map_err(|e| format!("micro-benchmarks: {e}"))?
    } else {
        Vec::new()
    };
    let summary = report::summarize(&records);
    let mut md = format!(
        "## Results ({})\n\n{}\n{}",
        if o.quick {
            "--quick: tiny counts, not for quoting"
        } else {
            "full run"
        },
        report::machine_markdown(&machine),
        report::markdown(&summary, &contenders, passes),
    );
    if !micro.is_empty() {
        md.push_str("\n### Micro-benchmarks\n\n");
        md.push_str(&micro::markdown(&micro));
    }
    md.push_str(&format!(
        "\nTotal time: {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    println!("{md}");
    if let Some(p) = &o.markdown {
        std::fs::write(p, &md).map_err(|e| format!("writing {}: {e}", p.display()))?;
    }
    let svg = o.svg.clone().unwrap_or_else(|| {
        if o.quick {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"))
                .join("shm-bench-quick.svg")
        } else {
            workspace_root().join("docs/benchmarks.svg")
        }
    });
    if let Some(dir) = svg.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let title = chart_title(&machine, passes);
    chart::write(&svg, &summary, &contenders, &title)
        .map_err(|e| format!("chart {}: {e}", svg.display()))?;
    eprintln!("shm-bench: chart written to {}", svg.display());
    let mut machine = machine;
    machine["loadavg_at_end"] = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .into();
    if let Some(p) = &o.json {
        let options = json!({
            "quick": o.quick,
            "passes": passes,
            "only": o.only,
            "cpus": cpus,
            "seconds": started.elapsed().as_secs_f64(),
        });
        let doc = report::json_doc(&machine, options, &records, &summary, &micro::json(&micro));
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
        eprintln!("shm-bench: JSON written to {}", p.display());
    }
    let failed: Vec<&Record> = records.iter().filter(|r| r.outcome.is_err()).collect();
    for r in &failed {
        eprintln!(
            "shm-bench: FAILED pass {} {} {}: {}",
            r.pass,
            r.case.key(),
            r.case.contender.name(),
            r.outcome.as_ref().err().map_or("", String::as_str)
        );
    }
    if !left.is_empty() {
        eprintln!(
            "shm-bench: FAILED: segments left behind (now removed): {}",
            left.join(", ")
        );
    }
    Ok(failed.is_empty() && left.is_empty())
}

/// `shm-bench report --from JSON [--svg PATH] [--markdown PATH]`: the
/// tables (to stdout) and the chart of a saved run, without running.
fn report_from(args: &[String]) -> Result<(), String> {
    let mut from = None;
    let mut svg = None;
    let mut markdown = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--from" => &mut from,
            "--svg" => &mut svg,
            "--markdown" => &mut markdown,
            other => return Err(format!("unknown argument {other:?}")),
        };
        *slot = Some(PathBuf::from(
            it.next().ok_or(format!("{a} needs a value"))?,
        ));
    }
    let from = from.ok_or("--from JSON is required")?;
    let text = std::fs::read_to_string(&from).map_err(|e| format!("{}: {e}", from.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", from.display()))?;
    let summary = report::summary_from_json(&doc).ok_or("no summary in that JSON")?;
    let passes = doc["options"]["passes"].as_u64().unwrap_or(1) as usize;
    let machine = &doc["machine"];
    let md = format!(
        "{}\n{}",
        report::machine_markdown(machine),
        report::markdown(&summary, &Contender::ALL, passes)
    );
    println!("{md}");
    if let Some(p) = markdown {
        std::fs::write(&p, &md).map_err(|e| format!("writing {}: {e}", p.display()))?;
    }
    if let Some(p) = svg {
        chart::write(&p, &summary, &Contender::ALL, &chart_title(machine, passes))
            .map_err(|e| format!("chart {}: {e}", p.display()))?;
    }
    Ok(())
}

fn chart_title(machine: &serde_json::Value, passes: usize) -> String {
    format!(
        "shm-bench: medians of {passes} pass(es), {} ({} CPUs), kernel {}",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["kernel"].as_str().unwrap_or("?")
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("child") => {
            let Some(spec) = args.get(1) else {
                eprintln!("shm-bench child: missing spec");
                return ExitCode::from(2);
            };
            match child::main(spec) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shm-bench child: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("handoff-child") => {
            let (Some(name), Some(kind), Some(count)) = (
                args.get(1),
                args.get(2),
                args.get(3).and_then(|c| c.parse().ok()),
            ) else {
                eprintln!("shm-bench handoff-child: usage: NAME KIND COUNT");
                return ExitCode::from(2);
            };
            match handoff::child(name, kind, count) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shm-bench handoff-child: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("micro") => {
            let quick = args.iter().any(|a| a == "--quick");
            match micro::run(quick) {
                Ok(r) => {
                    print!("{}", micro::markdown(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shm-bench micro: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("report") => match report_from(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shm-bench report: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => match parse(&args).and_then(|o| bench(&o)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("shm-bench: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
    }
}
