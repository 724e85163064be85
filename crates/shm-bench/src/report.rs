//! Turning runs into numbers: metrics per run, medians over passes, the
//! markdown tables with ratios, the queue's targets, the JSON document and
//! the machine description.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::plan::{Case, Measure};
use crate::runner::Outcome;
use crate::transport::Contender;

mod tables;
mod targets;

pub use tables::{markdown, sig};
pub use targets::targets;
#[cfg(test)]
use {tables::get, targets::judge};

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
