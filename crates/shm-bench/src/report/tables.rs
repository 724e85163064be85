//! The markdown tables of a run: one per measure, with the ratios to the
//! pipe, the raw ring and the condvar ring.

use std::fmt::Write as _;

use super::{Summary, targets};
use crate::plan::{LARGE, PAGE, SMALL};
use crate::transport::Contender;

pub(super) fn get(s: &Summary, key: &str, c: Contender, metric: &str) -> Option<f64> {
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

pub(super) fn ratio(v: Option<f64>, r: Option<f64>) -> String {
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
