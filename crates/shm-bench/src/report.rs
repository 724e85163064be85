//! Turning runs into numbers: metrics per run, medians over passes, the
//! markdown tables with ratios, the queue's targets, the JSON document and
//! the machine description.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::plan::{Case, LARGE, Measure, PAGE, SMALL};
use crate::runner::Outcome;
use crate::transport::Contender;

/// One run of one case in one pass.
#[derive(Debug)]
pub struct Record {
    /// 1-based pass number.
    pub pass: usize,
    /// What ran.
    pub case: Case,
    /// What came of it.
    pub outcome: Result<Outcome, String>,
    /// Derived numbers (see [`metrics`]).
    pub metrics: BTreeMap<&'static str, f64>,
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The numbers of one run: `median_us`, `p99_us`, `p999_us` (ping-pong and
/// wake-up), `msgs_per_s` and `mb_per_s` (streaming), `cpu_pct` (idle).
pub fn metrics(case: &Case, outputs: &[Value], notes: &Value) -> BTreeMap<&'static str, f64> {
    let mut m = BTreeMap::new();
    let qs = &notes["queue_stats"];
    if let (Some(sent), Some(recv)) = (qs["sent"].as_f64(), qs["received"].as_f64()) {
        if let Some(b) = qs["blocked_sends"].as_f64() {
            m.insert("blocked_send_pct", 100.0 * b / sent.max(1.0));
        }
        if let Some(b) = qs["blocked_recvs"].as_f64() {
            m.insert("blocked_recv_pct", 100.0 * b / recv.max(1.0));
        }
    }
    let role = |r: &str| outputs.iter().find(|o| o["role"] == r);
    let sw = |k: &str| -> f64 {
        outputs
            .iter()
            .filter_map(|o| o["switches"][k].as_u64())
            .sum::<u64>() as f64
    };
    let (vcsw, ivcsw) = (sw("voluntary"), sw("involuntary"));
    let cpu_us = sw("cpu_ns") / 1e3;
    match case.measure {
        Measure::PingPong | Measure::Wake => {
            let (r, k) = if case.measure == Measure::PingPong {
                ("ping", "rtt")
            } else {
                ("wake-recv", "latency")
            };
            if case.measure == Measure::PingPong
                && let Some(n) = role(r).and_then(|o| o[k]["n"].as_f64())
            {
                // Warm-up round trips are counted in the switches too.
                let n = (n + case.warmup as f64).max(1.0);
                m.insert("vcsw_per_msg", vcsw / n);
                m.insert("ivcsw_per_msg", ivcsw / n);
                m.insert("cpu_us_per_msg", cpu_us / n);
            }
            if let Some(s) = role(r).map(|o| &o[k]) {
                for (name, key) in [
                    ("median_us", "median"),
                    ("p99_us", "p99"),
                    ("p999_us", "p999"),
                ] {
                    if let Some(v) = f(&s[key]) {
                        m.insert(name, v / 1e3);
                    }
                }
            }
        }
        Measure::Stream | Measure::Mpmc(_) => {
            let t0 = outputs
                .iter()
                .filter(|o| o["role"] == "produce")
                .filter_map(|o| o["t0"].as_u64())
                .min();
            let t1 = outputs
                .iter()
                .filter(|o| o["role"] == "consume")
                .filter_map(|o| o["t_end"].as_u64())
                .max();
            if let (Some(t0), Some(t1)) = (t0, t1) {
                // What the producers really sent (they stop at the time
                // limit), all of it checked on arrival.
                let total: f64 = outputs
                    .iter()
                    .filter(|o| o["role"] == "produce")
                    .filter_map(|o| o["sent"][0][1].as_u64())
                    .sum::<u64>() as f64;
                m.insert("messages", total);
                m.insert("vcsw_per_msg", vcsw / total.max(1.0));
                m.insert("ivcsw_per_msg", ivcsw / total.max(1.0));
                m.insert("cpu_us_per_msg", cpu_us / total.max(1.0));
                let secs = (t1.saturating_sub(t0)).max(1) as f64 / 1e9;
                m.insert("msgs_per_s", total / secs);
                m.insert("mb_per_s", total * case.size as f64 / secs / 1e6);
                m.insert("seconds", secs);
            }
        }
        Measure::Idle => {
            if let Some(o) = role("idle-recv") {
                if let (Some(c), Some(w)) = (f(&o["cpu_ns"]), f(&o["wall_ns"])) {
                    m.insert("cpu_pct", 100.0 * c / w.max(1.0));
                    m.insert("wall_s", w / 1e9);
                }
                if let (Some(u), Some(s)) = (f(&o["utime_us"]), f(&o["stime_us"])) {
                    m.insert("utime_ms", u / 1e3);
                    m.insert("stime_ms", s / 1e3);
                }
            }
        }
    }
    m
}

/// The result of a (row, contender) over all passes.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Median over passes of each metric.
    pub values: BTreeMap<String, f64>,
    /// Why it did not apply.
    pub na: Option<String>,
    /// Failures, if any pass failed.
    pub failed: Vec<String>,
    /// Passes that ran.
    pub passes: usize,
}

/// Medians over passes, per row key and contender.
pub type Summary = BTreeMap<String, BTreeMap<Contender, Cell>>;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The summary stored in a JSON document written by [`json_doc`], to render
/// the tables and the chart again without running anything.
pub fn summary_from_json(doc: &Value) -> Option<Summary> {
    let mut out = Summary::new();
    for (key, row) in doc.get("summary")?.as_object()? {
        let mut r = BTreeMap::new();
        for (name, cell) in row.as_object()? {
            let c = Contender::from_name(name)?;
            let values = cell["medians"]
                .as_object()?
                .iter()
                .filter_map(|(m, v)| Some((m.clone(), v.as_f64()?)))
                .collect();
            let failed = cell["failed"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            r.insert(
                c,
                Cell {
                    values,
                    na: cell["na"].as_str().map(str::to_string),
                    failed,
                    passes: cell["passes"].as_u64().unwrap_or(0) as usize,
                },
            );
        }
        out.insert(key.clone(), r);
    }
    Some(out)
}

/// Summarizes every record.
pub fn summarize(records: &[Record]) -> Summary {
    let mut raw: BTreeMap<(String, Contender), (Vec<&Record>, Cell)> = BTreeMap::new();
    for r in records {
        let e = raw.entry((r.case.key(), r.case.contender)).or_default();
        match &r.outcome {
            Ok(Outcome::Ran { .. }) => e.0.push(r),
            Ok(Outcome::NotApplicable(why)) => e.1.na = Some(why.clone()),
            Err(msg) => e.1.failed.push(format!("pass {}: {msg}", r.pass)),
        }
    }
    let mut out = Summary::new();
    for ((key, c), (ran, mut cell)) in raw {
        let mut names: Vec<&'static str> =
            ran.iter().flat_map(|r| r.metrics.keys().copied()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let mut v: Vec<f64> = ran
                .iter()
                .filter_map(|r| r.metrics.get(name).copied())
                .collect();
            if !v.is_empty() {
                cell.values.insert(name.to_string(), median(&mut v));
            }
        }
        cell.passes = ran.len();
        out.entry(key).or_default().insert(c, cell);
    }
    out
}

fn get(s: &Summary, key: &str, c: Contender, metric: &str) -> Option<f64> {
    s.get(key)?.get(&c)?.values.get(metric).copied()
}

/// Three significant digits, no exponent.
pub fn sig(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a < 0.001 {
        return format!("{v:.1e}");
    }
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else if a >= 0.1 {
        3
    } else {
        4
    };
    format!("{v:.decimals$}")
}

fn ratio(v: Option<f64>, r: Option<f64>) -> String {
    match (v, r) {
        (Some(v), Some(r)) if r > 0.0 => format!("{}x", sig(v / r)),
        _ => "-".into(),
    }
}

struct Table<'a> {
    s: &'a Summary,
    contenders: &'a [Contender],
    notes: Vec<String>,
}

impl Table<'_> {
    /// The text of a cell, and a footnote if it is n/a or failed.
    fn cell(&mut self, key: &str, c: Contender, metric: &str, scale: f64) -> String {
        let Some(cell) = self.s.get(key).and_then(|m| m.get(&c)) else {
            return "-".into();
        };
        if !cell.failed.is_empty() {
            self.notes.push(format!(
                "{} {key}: FAILED {}",
                c.name(),
                cell.failed.join("; ")
            ));
            return "FAILED".into();
        }
        if let Some(why) = &cell.na {
            let note = format!("{} {key}: {why}", c.name());
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
            return "n/a".into();
        }
        cell.values
            .get(metric)
            .map(|v| sig(v * scale))
            .unwrap_or_else(|| "-".into())
    }

    fn footnotes(&mut self, out: &mut String) {
        if !self.notes.is_empty() {
            out.push('\n');
            for n in self.notes.drain(..) {
                let _ = writeln!(out, "- n/a or failed: {n}");
            }
        }
    }
}

/// Whether any of `keys` has a cell for `c` (with `None`: for anyone).
fn present(s: &Summary, keys: &[String], c: Option<Contender>) -> bool {
    keys.iter().any(|k| {
        s.get(k)
            .is_some_and(|row| c.map_or(!row.is_empty(), |c| row.contains_key(&c)))
    })
}

fn header(out: &mut String, cols: &[&str]) {
    let _ = writeln!(out, "| {} |", cols.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        cols.iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect::<Vec<_>>()
            .join("|")
    );
}

/// The markdown tables: ping-pong, streaming, idle and wake-up,
/// multi-producer, and the queue's targets.
pub fn markdown(s: &Summary, contenders: &[Contender], passes: usize) -> String {
    let mut out = String::new();
    let mut t = Table {
        s,
        contenders,
        notes: Vec::new(),
    };
    let pipe = Contender::Pipe;
    let ring = Contender::SpinRing;
    let condvar = Contender::CondvarRing;
    let _ = writeln!(
        out,
        "Medians over {passes} pass(es). Ratios: the contender's number divided by the pipe's, \
         by the raw copying spin ring's (\"ring\", \"spin-ring\") and, for streaming and N × N, by \
         the hand-written condvar ring's (for times lower is better, for rates higher is better)."
    );
    let keys: Vec<String> = [SMALL, PAGE]
        .iter()
        .map(|z| format!("pingpong-{z}"))
        .collect();
    if present(s, &keys, None) {
        let _ = writeln!(out, "\n### Ping-pong round trip (µs)\n");
        header(
            &mut out,
            &[
                "contender",
                "64 B median",
                "p99",
                "p99.9",
                "÷ pipe",
                "÷ ring",
                "4 KiB median",
                "p99",
                "p99.9",
                "÷ pipe",
                "÷ ring",
            ],
        );
        for &c in t.contenders {
            if !present(s, &keys, Some(c)) {
                continue;
            }
            let mut row = vec![c.name().to_string()];
            for size in [SMALL, PAGE] {
                let key = format!("pingpong-{size}");
                for m in ["median_us", "p99_us", "p999_us"] {
                    row.push(t.cell(&key, c, m, 1.0));
                }
                let v = get(s, &key, c, "median_us");
                row.push(ratio(v, get(s, &key, pipe, "median_us")));
                row.push(ratio(v, get(s, &key, ring, "median_us")));
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        t.footnotes(&mut out);
    }

    let keys: Vec<String> = [SMALL, PAGE, LARGE]
        .iter()
        .map(|z| format!("stream-{z}"))
        .collect();
    if present(s, &keys, None) {
        let _ = writeln!(out, "\n### Streaming, one producer to one consumer\n");
        header(
            &mut out,
            &[
                "contender",
                "64 B M msg/s",
                "÷ pipe",
                "÷ spin-ring",
                "÷ condvar-ring",
                "4 KiB M msg/s",
                "÷ pipe",
                "÷ spin-ring",
                "÷ condvar-ring",
                "1 MiB MB/s",
                "÷ pipe",
                "÷ spin-ring",
                "÷ condvar-ring",
            ],
        );
        for &c in t.contenders {
            if !present(s, &keys, Some(c)) {
                continue;
            }
            let mut row = vec![c.name().to_string()];
            for (size, metric, scale) in [
                (SMALL, "msgs_per_s", 1e-6),
                (PAGE, "msgs_per_s", 1e-6),
                (LARGE, "mb_per_s", 1.0),
            ] {
                let key = format!("stream-{size}");
                row.push(t.cell(&key, c, metric, scale));
                let v = get(s, &key, c, metric);
                row.push(ratio(v, get(s, &key, pipe, metric)));
                row.push(ratio(v, get(s, &key, ring, metric)));
                row.push(ratio(v, get(s, &key, condvar, metric)));
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        t.footnotes(&mut out);
    }

    let keys: Vec<String> = vec![
        "pingpong-64".into(),
        "stream-64".into(),
        "stream-4096".into(),
        format!("stream-{LARGE}"),
    ];
    if present(s, &keys, None) {
        let _ = writeln!(
            out,
            "\n### Context switches per message, both sides together: voluntary / involuntary\n\n\
             (per round trip for ping-pong; `getrusage(RUSAGE_THREAD)`. Voluntary: slept in the \
             kernel, each costing about a wake-up latency. Involuntary: preempted, or gave the CPU \
             away in `sched_yield` while other work was runnable.)\n"
        );
        header(
            &mut out,
            &[
                "contender",
                "64 B ping-pong",
                "64 B stream",
                "4 KiB stream",
                "1 MiB stream",
            ],
        );
        for &c in t.contenders {
            if !keys.iter().any(|k| get(s, k, c, "vcsw_per_msg").is_some()) {
                continue;
            }
            let mut row = vec![c.name().to_string()];
            for k in &keys {
                row.push(
                    match (get(s, k, c, "vcsw_per_msg"), get(s, k, c, "ivcsw_per_msg")) {
                        (Some(v), Some(i)) => format!("{} / {}", sig(v), sig(i)),
                        _ => "-".into(),
                    },
                );
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(
            out,
            "\n### CPU time per message, both sides together (µs)\n\n\
             (per round trip for ping-pong; `CLOCK_THREAD_CPUTIME_ID`; includes writing and \
             checking every payload word, and the spinning of the spin ring)\n"
        );
        header(
            &mut out,
            &[
                "contender",
                "64 B ping-pong",
                "64 B stream",
                "4 KiB stream",
                "1 MiB stream",
            ],
        );
        for &c in t.contenders {
            if !keys
                .iter()
                .any(|k| get(s, k, c, "cpu_us_per_msg").is_some())
            {
                continue;
            }
            let mut row = vec![c.name().to_string()];
            for k in &keys {
                row.push(get(s, k, c, "cpu_us_per_msg").map_or("-".into(), sig));
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    }

    let keys: Vec<String> = vec!["idle".into(), "wake".into()];
    if present(s, &keys, None) {
        let _ = writeln!(
            out,
            "\n### Blocked receiver: idle CPU and wake-up latency (64 B)\n"
        );
        header(
            &mut out,
            &[
                "contender",
                "idle CPU, % of a core",
                "wake-up median µs",
                "p99 µs",
                "÷ pipe",
            ],
        );
        for &c in t.contenders {
            if !present(s, &keys, Some(c)) {
                continue;
            }
            let row = [
                c.name().to_string(),
                t.cell("idle", c, "cpu_pct", 1.0),
                t.cell("wake", c, "median_us", 1.0),
                t.cell("wake", c, "p99_us", 1.0),
                ratio(
                    get(s, "wake", c, "median_us"),
                    get(s, "wake", pipe, "median_us"),
                ),
            ];
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        t.footnotes(&mut out);
    }

    let keys: Vec<String> = [1, 2, 4].iter().map(|n| format!("mpmc{n}")).collect();
    if present(s, &keys, None) {
        let _ = writeln!(out, "\n### N producers to N consumers, 64 B (M msg/s)\n");
        header(
            &mut out,
            &[
                "contender",
                "1 × 1",
                "2 × 2",
                "4 × 4",
                "2 × 2 ÷ pipe",
                "2 × 2 ÷ condvar-ring",
                "4 × 4 ÷ pipe",
                "4 × 4 ÷ condvar-ring",
            ],
        );
        for &c in t.contenders {
            // Contenders that take no part in N × N get no row (the
            // reason is in the plan, not news in every run).
            if keys.iter().all(|k| {
                s.get(k)
                    .is_none_or(|m| m.get(&c).is_none_or(|cell| cell.na.is_some()))
            }) {
                continue;
            }
            let row = [
                c.name().to_string(),
                t.cell("mpmc1", c, "msgs_per_s", 1e-6),
                t.cell("mpmc2", c, "msgs_per_s", 1e-6),
                t.cell("mpmc4", c, "msgs_per_s", 1e-6),
                ratio(
                    get(s, "mpmc2", c, "msgs_per_s"),
                    get(s, "mpmc2", pipe, "msgs_per_s"),
                ),
                ratio(
                    get(s, "mpmc2", c, "msgs_per_s"),
                    get(s, "mpmc2", condvar, "msgs_per_s"),
                ),
                ratio(
                    get(s, "mpmc4", c, "msgs_per_s"),
                    get(s, "mpmc4", pipe, "msgs_per_s"),
                ),
                ratio(
                    get(s, "mpmc4", c, "msgs_per_s"),
                    get(s, "mpmc4", condvar, "msgs_per_s"),
                ),
            ];
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        t.footnotes(&mut out);
    }

    let rows: Vec<(String, &str)> = vec![
        ("pingpong-64".into(), "64 B ping-pong"),
        ("stream-64".into(), "64 B stream"),
        ("stream-4096".into(), "4 KiB stream"),
        (format!("stream-{LARGE}"), "1 MiB stream"),
        ("mpmc2".into(), "2 × 2, 64 B"),
        ("mpmc4".into(), "4 × 4, 64 B"),
    ];
    let qs: Vec<Contender> = t
        .contenders
        .iter()
        .copied()
        .filter(|c| c.is_shm_queue())
        .collect();
    if qs.iter().any(|&c| {
        rows.iter()
            .any(|(k, _)| get(s, k, c, "blocked_recv_pct").is_some())
    }) {
        let _ = writeln!(
            out,
            "\n### shm-queue: share of sends and receives that had to wait (queue stats)\n\n\
             (the queue counts every wait, its spin included; the voluntary context switches \
             above are the waits that ended up asleep)\n"
        );
        let _ = writeln!(
            out,
            "| run | contender | sends that waited | receives that waited |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|");
        for (k, label) in &rows {
            for &c in &qs {
                if let (Some(bs), Some(br)) = (
                    get(s, k, c, "blocked_send_pct"),
                    get(s, k, c, "blocked_recv_pct"),
                ) {
                    let _ = writeln!(
                        out,
                        "| {label} | {} | {}% | {}% |",
                        c.name(),
                        sig(bs),
                        sig(br)
                    );
                }
            }
        }
    }

    let _ = writeln!(out, "\n### shm-queue targets (shm-queue v2)\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    for tg in targets(s) {
        let _ = writeln!(out, "| {} | {} | {} |", tg.target, tg.measured, tg.verdict);
    }
    out
}

/// One of the queue's performance targets, evaluated.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the issue asks.
    pub target: String,
    /// What this run measured.
    pub measured: String,
    /// "met", "missed by ...", or why it could not be judged.
    pub verdict: String,
    /// Whether it was met (`None`: not measured).
    pub met: Option<bool>,
}

fn judge(
    target: &str,
    v: Option<f64>,
    r: Option<f64>,
    limit: f64,
    at_most: bool,
    detail: String,
) -> Target {
    let (measured, verdict, met) = match (v, r) {
        (Some(v), Some(r)) if r > 0.0 => {
            let q = v / r;
            let ok = if at_most { q <= limit } else { q >= limit };
            let verdict = if ok {
                "met".to_string()
            } else if at_most {
                format!("missed: {}x over the limit", sig(q / limit))
            } else {
                format!("missed: {}% short", sig(100.0 * (1.0 - q / limit)))
            };
            (format!("{}x ({detail})", sig(q)), verdict, Some(ok))
        }
        _ => ("-".into(), "not measured in this run".into(), None),
    };
    Target {
        target: target.into(),
        measured,
        verdict,
        met,
    }
}

/// The queue's performance targets (the shm-queue v2 issue) against this
/// run.
pub fn targets(s: &Summary) -> Vec<Target> {
    use Contender::*;
    let q = ShmQueue;
    let mut v = Vec::new();
    let us = |k: &str, c, m| get(s, k, c, m);
    let pp = "pingpong-64";
    v.push(judge(
        "64 B ping-pong median ≤ 2x the raw ring's",
        us(pp, q, "median_us"),
        us(pp, SpinRing, "median_us"),
        2.0,
        true,
        format!(
            "{} µs vs {} µs; p99 {} µs",
            us(pp, q, "median_us").map_or("-".into(), sig),
            us(pp, SpinRing, "median_us").map_or("-".into(), sig),
            us(pp, q, "p99_us").map_or("-".into(), sig),
        ),
    ));
    let idle = us("idle", q, "cpu_pct");
    v.push(Target {
        target: "receiver blocked 2 s on an empty queue uses < 1% of a core".into(),
        measured: idle.map_or("-".into(), |c| format!("{}%", sig(c))),
        verdict: match idle {
            Some(c) if c < 1.0 => "met".into(),
            Some(c) => format!("missed: {}x over the limit", sig(c / 1.0)),
            None => "not measured in this run".into(),
        },
        met: idle.map(|c| c < 1.0),
    });
    for (key, limit, label) in [
        (
            "stream-64",
            0.6,
            "64 B streaming ≥ 0.6x the raw copying ring",
        ),
        (
            "stream-4096",
            0.7,
            "4 KiB streaming ≥ 0.7x the raw copying ring",
        ),
    ] {
        let m = |c| us(key, c, "msgs_per_s");
        let detail = format!(
            "{} vs {} M msg/s; {} the condvar ring, {} the pipe",
            m(q).map_or("-".into(), |x| sig(x / 1e6)),
            m(SpinRing).map_or("-".into(), |x| sig(x / 1e6)),
            ratio(m(q), m(CondvarRing)),
            ratio(m(q), m(Pipe)),
        );
        v.push(judge(label, m(q), m(SpinRing), limit, false, detail));
    }
    let m64 = |c| us("stream-64", c, "msgs_per_s");
    v.push(judge(
        "64 B streaming, zero-copy API ≥ 0.6x the raw in-place ring",
        m64(ShmQueueZeroCopy),
        m64(SpinRingInPlace),
        0.6,
        false,
        format!(
            "{} vs {} M msg/s",
            m64(ShmQueueZeroCopy).map_or("-".into(), |x| sig(x / 1e6)),
            m64(SpinRingInPlace).map_or("-".into(), |x| sig(x / 1e6)),
        ),
    ));
    v.push(judge(
        "64 B streaming ≥ 2x the hand-written condvar ring",
        m64(q),
        m64(CondvarRing),
        2.0,
        false,
        format!(
            "{} vs {} M msg/s",
            m64(q).map_or("-".into(), |x| sig(x / 1e6)),
            m64(CondvarRing).map_or("-".into(), |x| sig(x / 1e6)),
        ),
    ));
    let big = format!("stream-{LARGE}");
    let mb = |c| us(&big, c, "mb_per_s");
    v.push(judge(
        "1 MiB, copying API ≥ 0.9x the raw copying ring",
        mb(q),
        mb(SpinRing),
        0.9,
        false,
        format!(
            "{} vs {} MB/s",
            mb(q).map_or("-".into(), sig),
            mb(SpinRing).map_or("-".into(), sig)
        ),
    ));
    v.push(judge(
        "1 MiB, zero-copy API ≥ 0.9x the raw in-place ring",
        mb(ShmQueueZeroCopy),
        mb(SpinRingInPlace),
        0.9,
        false,
        format!(
            "{} vs {} MB/s",
            mb(ShmQueueZeroCopy).map_or("-".into(), sig),
            mb(SpinRingInPlace).map_or("-".into(), sig)
        ),
    ));
    v.push(judge(
        "wake-up latency of a sleeping receiver ≤ the pipe's",
        us("wake", q, "median_us"),
        us("wake", Pipe, "median_us"),
        1.0,
        true,
        format!(
            "median {} µs vs {} µs",
            us("wake", q, "median_us").map_or("-".into(), sig),
            us("wake", Pipe, "median_us").map_or("-".into(), sig)
        ),
    ));
    v
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// CPU model, cores, kernel and glibc of this machine.
pub fn machine() -> Value {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let glibc = std::process::Command::new("ldd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cpu": model,
        "cores": cores,
        "available_parallelism": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "glibc": shm_sync::glibc_version(),
        "ldd_version": glibc,
        "loadavg_at_start": read("/proc/loadavg").trim(),
        "mq_msg_max": read("/proc/sys/fs/mqueue/msg_max").trim(),
        "mq_msgsize_max": read("/proc/sys/fs/mqueue/msgsize_max").trim(),
    })
}

/// Markdown lines describing the machine.
pub fn machine_markdown(m: &Value) -> String {
    format!(
        "- CPU: {} ({} logical CPUs, {} available to this process)\n- kernel: {}\n- glibc: {} ({})\n- load average at start: {}\n",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["available_parallelism"],
        m["kernel"].as_str().unwrap_or("?"),
        m["glibc"].as_str().unwrap_or("?"),
        m["ldd_version"].as_str().unwrap_or("?"),
        m["loadavg_at_start"].as_str().unwrap_or("?"),
    )
}

/// The JSON document: machine, options, every run with its raw outputs,
/// the medians and the targets.
pub fn json_doc(
    machine: &Value,
    options: Value,
    records: &[Record],
    s: &Summary,
    micro: &Value,
) -> Value {
    let runs: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v = json!({ "pass": r.pass, "case": r.case.to_json(), "metrics": r.metrics });
            match &r.outcome {
                Ok(Outcome::Ran { outputs, notes }) => {
                    v["outcome"] = "ran".into();
                    v["outputs"] = Value::Array(outputs.clone());
                    v["notes"] = notes.clone();
                }
                Ok(Outcome::NotApplicable(why)) => {
                    v["outcome"] = "n/a".into();
                    v["reason"] = why.as_str().into();
                }
                Err(e) => {
                    v["outcome"] = "failed".into();
                    v["error"] = e.as_str().into();
                }
            }
            v
        })
        .collect();
    let mut summary = serde_json::Map::new();
    for (key, row) in s {
        let mut r = serde_json::Map::new();
        for (c, cell) in row {
            r.insert(
                c.name().into(),
                json!({
                    "medians": cell.values,
                    "passes": cell.passes,
                    "na": cell.na,
                    "failed": cell.failed,
                }),
            );
        }
        summary.insert(key.clone(), Value::Object(r));
    }
    let targets: Vec<Value> = targets(s)
        .into_iter()
        .map(|t| json!({ "target": t.target, "measured": t.measured, "verdict": t.verdict, "met": t.met }))
        .collect();
    json!({
        "machine": machine,
        "options": options,
        "contenders": Contender::ALL.iter().map(|c| json!({ "name": c.name(), "what": c.describe() })).collect::<Vec<_>>(),
        "runs": runs,
        "summary": summary,
        "targets": targets,
        "micro": micro,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_sig() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(sig(12.345), "12.3");
        assert_eq!(sig(0.5), "0.500");
        assert_eq!(sig(1234.5), "1234");
        assert_eq!(sig(0.0), "0");
    }

    #[test]
    fn summary_survives_the_json_document() {
        let mut s = Summary::new();
        let mut cell = Cell::default();
        cell.values.insert("median_us".into(), 1.5);
        cell.passes = 3;
        s.entry("pingpong-64".into())
            .or_default()
            .insert(Contender::Pipe, cell);
        let na = Cell {
            na: Some("why".into()),
            ..Cell::default()
        };
        s.entry("pingpong-64".into())
            .or_default()
            .insert(Contender::ShmQueueBatch, na);
        let doc = json_doc(&json!({}), json!({}), &[], &s, &json!([]));
        let back = summary_from_json(&doc).expect("summary");
        assert_eq!(
            get(&back, "pingpong-64", Contender::Pipe, "median_us"),
            Some(1.5)
        );
        assert_eq!(back["pingpong-64"][&Contender::Pipe].passes, 3);
        assert_eq!(
            back["pingpong-64"][&Contender::ShmQueueBatch].na.as_deref(),
            Some("why")
        );
    }

    #[test]
    fn targets_say_by_how_much() {
        let t = judge("x", Some(3.0), Some(1.0), 2.0, true, String::new());
        assert_eq!(t.met, Some(false));
        assert!(t.verdict.contains("1.50x over"), "{}", t.verdict);
        let t = judge("x", Some(0.3), Some(1.0), 0.6, false, String::new());
        assert!(t.verdict.contains("50.0% short"), "{}", t.verdict);
        assert_eq!(
            judge("x", None, Some(1.0), 2.0, true, String::new()).met,
            None
        );
    }
}
