//! The queue's targets, judged from a run's medians.

use super::Summary;
use super::tables::{get, ratio, sig};
use crate::plan::LARGE;
use crate::transport::Contender;

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

pub(super) fn judge(
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
