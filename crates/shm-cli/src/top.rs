//! `shm top`: a live view of queues, from the counters each queue already
//! keeps, read read-only ([`Queue::inspect`]) so that watching disturbs
//! nothing. On a terminal the table is redrawn in place every interval;
//! piped, one line per queue per interval, for logs and scripts.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use shm_core::SegmentId;
use shm_queue::{Queue, Stats};

use crate::render::table;
use crate::segment_cmds::listing;
use crate::{CliError, CliResult, warn};

/// What `shm top` was asked for.
#[derive(Debug)]
pub struct TopOpts {
    /// The queues to watch; empty: every queue on the machine (looked for
    /// again at each interval).
    pub queues: Vec<SegmentId>,
    /// Time between samples.
    pub interval: Duration,
    /// Stop after this many samples.
    pub iterations: Option<u64>,
    /// Force the one-line-per-queue output even on a terminal.
    pub lines: bool,
    /// No header line in the piped output.
    pub noheadings: bool,
}

const HEADER: [&str; 14] = [
    "QUEUE",
    "LEN",
    "CAP",
    "FILL",
    "IN/s",
    "OUT/s",
    "SENT",
    "RECV",
    "BLK-SEND",
    "BLK-RECV",
    "PROD",
    "CONS",
    "ATTACHED",
    "RECOVERED",
];

/// One sample of one queue, and the rates since the one before.
fn cells(id: &SegmentId, s: &Stats, prev: Option<&(Instant, Stats)>, now: Instant) -> Vec<String> {
    let rate = |now_v: u64, then_v: u64, dt: f64| {
        if dt <= 0.0 {
            "-".to_owned()
        } else {
            format!("{:.0}", now_v.saturating_sub(then_v) as f64 / dt)
        }
    };
    let (rin, rout) = match prev {
        Some((t, p)) => {
            let dt = now.duration_since(*t).as_secs_f64();
            (rate(s.sent, p.sent, dt), rate(s.received, p.received, dt))
        }
        None => ("-".into(), "-".into()),
    };
    let fill = s
        .len
        .saturating_mul(100)
        .checked_div(s.capacity)
        .unwrap_or(0);
    vec![
        id.to_string(),
        s.len.to_string(),
        s.capacity.to_string(),
        format!("{fill}%"),
        rin,
        rout,
        s.sent.to_string(),
        s.received.to_string(),
        s.blocked_sends.to_string(),
        s.blocked_recvs.to_string(),
        s.producers.to_string(),
        s.consumers.to_string(),
        s.attached.to_string(),
        s.recovered.to_string(),
        s.abandoned.to_string(),
        if s.closed { "yes" } else { "no" }.to_owned(),
    ]
}

/// Every queue of this library on the machine.
fn all_queues() -> Result<Vec<SegmentId>, CliError> {
    let l = listing()?;
    Ok(l.entries
        .iter()
        .filter(|e| e.kind.as_deref() == Some(shm_queue::KIND))
        .filter_map(|e| e.segment_id())
        .collect())
}

/// Writes `text`; `Ok(false)` when the reader went away (stop quietly).
fn write_out(text: &str) -> Result<bool, CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::new(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// `shm top [QUEUE...] [--interval-ms MS] [--iterations N] [--lines]`.
pub fn top(opts: TopOpts) -> CliResult {
    let redraw = !opts.lines && std::io::stdout().is_terminal();
    let mut prev: HashMap<SegmentId, (Instant, Stats)> = HashMap::new();
    let mut warned: HashMap<SegmentId, String> = HashMap::new();
    let mut sample: u64 = 0;
    let started = Instant::now();
    if !redraw && !opts.noheadings {
        let mut h = vec!["TIME"];
        h.extend(HEADER);
        if !write_out(&format!("{}\n", h.join(" ")))? {
            return Ok(());
        }
    }
    loop {
        sample += 1;
        let ids = if opts.queues.is_empty() {
            all_queues()?
        } else {
            opts.queues.clone()
        };
        let now = Instant::now();
        let mut rows = Vec::new();
        for id in &ids {
            match Queue::inspect(id) {
                Ok(s) => {
                    warned.remove(id);
                    rows.push(cells(id, &s, prev.get(id), now));
                    prev.insert(id.clone(), (now, s));
                }
                Err(e) => {
                    let msg = e.to_string();
                    if warned.get(id) != Some(&msg) {
                        if !redraw {
                            warn(&format!("cannot read {id}: {msg}"));
                        }
                        warned.insert(id.clone(), msg.clone());
                    }
                    prev.remove(id);
                    if redraw {
                        let mut r = vec![id.to_string(), format!("({msg})")];
                        r.resize(HEADER.len(), String::new());
                        rows.push(r);
                    }
                }
            }
        }
        let go_on = if redraw {
            let mut screen = String::from("\x1b[H\x1b[2J");
            screen.push_str(&format!(
                "shm top: {} queue(s), every {} ms, sample {sample} (Ctrl-C to quit)\n\n",
                ids.len(),
                opts.interval.as_millis()
            ));
            if ids.is_empty() {
                screen.push_str("no queues on this machine\n");
            } else {
                screen.push_str(&table(&HEADER, &rows));
            }
            write_out(&screen)?
        } else {
            let t = format!("{:.1}", now.duration_since(started).as_secs_f64());
            let text: String = rows
                .iter()
                .map(|r| {
                    let cells: Vec<String> = r.iter().map(|c| c.replace(' ', "_")).collect();
                    format!("{t} {}\n", cells.join(" "))
                })
                .collect();
            write_out(&text)?
        };
        if !go_on || opts.iterations.is_some_and(|n| sample >= n) {
            return Ok(());
        }
        std::thread::sleep(opts.interval);
    }
}
