//! The `child` subcommand: one participant of a run (or, for the
//! in-process contender, all of them as threads), started by the parent
//! with `current_exe() child SPEC`.
//!
//! Protocol on the standard streams: the child opens its endpoints, pins
//! itself, prints `ready`, waits for a `go` line, runs its role, and prints
//! one JSON line `{"outputs": [...]}`. Errors go to stderr and the exit
//! status; the parent's watchdog kills a child that hangs.

use std::io::{self, BufRead, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::payload::{Checker, Got, Stamper, now_ns};
use crate::plan::{Case, Measure};
use crate::transport::{self, Contender, Placement, Rx, Tx};

/// What a participant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends, waits for the reply, times the round trip.
    Ping,
    /// Replies to every message.
    Pong,
    /// Streams messages, with this producer id.
    Produce(u32),
    /// Receives until every producer's end marker.
    Consume,
    /// Sleeps, then sends one message.
    IdleSend,
    /// Blocks on the empty channel; measures its own CPU time.
    IdleRecv,
    /// Sleeps before each send, stamping the send time.
    WakeSend,
    /// Receives and measures send-to-return latency.
    WakeRecv,
}

impl Role {
    fn name(self) -> String {
        match self {
            Role::Ping => "ping".into(),
            Role::Pong => "pong".into(),
            Role::Produce(p) => format!("produce{p}"),
            Role::Consume => "consume".into(),
            Role::IdleSend => "idle-send".into(),
            Role::IdleRecv => "idle-recv".into(),
            Role::WakeSend => "wake-send".into(),
            Role::WakeRecv => "wake-recv".into(),
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "ping" => Role::Ping,
            "pong" => Role::Pong,
            "consume" => Role::Consume,
            "idle-send" => Role::IdleSend,
            "idle-recv" => Role::IdleRecv,
            "wake-send" => Role::WakeSend,
            "wake-recv" => Role::WakeRecv,
            _ => Role::Produce(s.strip_prefix("produce")?.parse().ok()?),
        })
    }
}

/// One participant: its role, which of the two CPUs it runs on, and which
/// channel (0 forward, 1 back) it sends on and receives from.
#[derive(Debug, Clone, Copy)]
pub struct Participant {
    /// What it does.
    pub role: Role,
    /// 0 for the sending side, 1 for the receiving side.
    pub cpu_slot: usize,
    /// Channel it sends on.
    pub tx: Option<usize>,
    /// Channel it receives from.
    pub rx: Option<usize>,
}

/// Channels a case needs (2 for ping-pong, else 1).
pub fn channels(case: &Case) -> usize {
    if case.measure == Measure::PingPong {
        2
    } else {
        1
    }
}

/// The participants of a case.
pub fn participants(case: &Case) -> Vec<Participant> {
    let p = |role, cpu_slot, tx, rx| Participant {
        role,
        cpu_slot,
        tx,
        rx,
    };
    match case.measure {
        Measure::PingPong => vec![
            p(Role::Ping, 0, Some(0), Some(1)),
            p(Role::Pong, 1, Some(1), Some(0)),
        ],
        Measure::Stream | Measure::Mpmc(_) => {
            let mut v: Vec<_> = (0..case.producers as u32)
                .map(|id| p(Role::Produce(id), 0, Some(0), None))
                .collect();
            v.extend((0..case.consumers).map(|_| p(Role::Consume, 1, None, Some(0))));
            v
        }
        Measure::Idle => vec![
            p(Role::IdleSend, 0, Some(0), None),
            p(Role::IdleRecv, 1, None, Some(0)),
        ],
        Measure::Wake => vec![
            p(Role::WakeSend, 0, Some(0), None),
            p(Role::WakeRecv, 1, None, Some(0)),
        ],
    }
}

/// The JSON spec passed on a child's command line. `cpu` is the CPU to pin
/// to; `own_cpu` says that no other participant of the run is pinned to
/// it (so every peer runs on another CPU).
pub fn spec(
    case: &Case,
    part: &Participant,
    cpu: Option<usize>,
    own_cpu: bool,
    tx: Value,
    rx: Value,
) -> Value {
    json!({
        "case": case.to_json(),
        "role": part.role.name(),
        "cpu": cpu,
        "own_cpu": own_cpu && cpu.is_some(),
        "tx": tx,
        "rx": rx,
    })
}

/// Whether participant `idx` of `parts` is pinned to a CPU no other
/// participant is pinned to, given `cpus` (empty: no pinning).
pub fn alone_on_cpu(parts: &[Participant], idx: usize, cpus: &[usize]) -> bool {
    let cpu = |p: &Participant| cpus.get(p.cpu_slot).copied();
    let Some(mine) = cpu(&parts[idx]) else {
        return false;
    };
    parts
        .iter()
        .enumerate()
        .all(|(i, p)| i == idx || cpu(p) != Some(mine))
}

/// The one CPU this thread's affinity mask allows, if it allows exactly one.
fn only_cpu() -> Option<usize> {
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()?;
    let mut allowed = (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
    let first = allowed.next()?;
    allowed.next().is_none().then_some(first)
}

/// The JSON spec of the in-process child, which runs every participant as
/// a thread.
pub fn threads_spec(case: &Case, cpus: &[usize]) -> Value {
    json!({ "case": case.to_json(), "role": "threads", "cpus": cpus })
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.into())
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: Option<usize>) -> io::Result<()> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set)?;
    }
    Ok(())
}

fn handshake() -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(bad(format!("expected go, got {line:?}")));
    }
    Ok(())
}

/// Entry point of `shm-bench child SPEC`.
pub fn main(arg: &str) -> io::Result<()> {
    // If the parent dies, so do we: nothing is left spinning.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let spec: Value = serde_json::from_str(arg).map_err(|e| bad(e.to_string()))?;
    let case = Case::from_json(&spec["case"]).ok_or_else(|| bad("bad case"))?;
    let role = spec["role"].as_str().ok_or_else(|| bad("no role"))?;
    let outputs = if role == "threads" {
        let cpus: Vec<usize> = spec["cpus"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_u64().map(|c| c as usize))
                    .collect()
            })
            .unwrap_or_default();
        threads(&case, &cpus)?
    } else {
        let role = Role::parse(role).ok_or_else(|| bad(format!("bad role {role}")))?;
        let cpu = spec["cpu"].as_u64().map(|c| c as usize);
        pin(cpu)?;
        // Trust the mask the kernel reports, not only the plan: a CPU of our
        // own means exactly that one CPU allowed, and no peer pinned there.
        let place = Placement {
            dedicated_cpu: spec["own_cpu"].as_bool() == Some(true)
                && cpu.is_some()
                && only_cpu() == cpu,
        };
        let mut tx = match &spec["tx"] {
            Value::Null => None,
            v => Some(transport::open_tx(case.contender, v, case.spec(), place)?),
        };
        let mut rx = match &spec["rx"] {
            Value::Null => None,
            v => Some(transport::open_rx(case.contender, v, case.spec(), place)?),
        };
        // Only now: in a ping-pong each side waits here for the other's
        // endpoints, which the other opens before it waits.
        if let Some(t) = tx.as_mut() {
            t.connect()?;
        }
        if let Some(r) = rx.as_mut() {
            r.connect()?;
        }
        handshake()?;
        let out = run(&case, role, tx.as_deref_mut(), rx.as_deref_mut())?;
        vec![out]
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{}", json!({ "outputs": outputs }))?;
    out.flush()
}

/// The in-process contender: every participant as a pinned thread, over
/// channels made here.
fn threads(case: &Case, cpus: &[usize]) -> io::Result<Vec<Value>> {
    if case.contender != Contender::Crossbeam {
        return Err(bad(format!(
            "{} does not run in-process",
            case.contender.name()
        )));
    }
    let parts = participants(case);
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..channels(case) {
        let (tx, rx) = transport::channel::pair(case.capacity);
        txs.push(tx);
        rxs.push(rx);
    }
    let barrier = Arc::new(Barrier::new(parts.len() + 1));
    let mut handles = Vec::new();
    for part in parts {
        let tx = part.tx.map(|i| txs[i].clone());
        let rx = part.rx.map(|i| rxs[i].clone());
        let cpu = cpus.get(part.cpu_slot).copied();
        let case = case.clone();
        let barrier = Arc::clone(&barrier);
        handles.push(std::thread::spawn(move || -> io::Result<Value> {
            pin(cpu)?;
            let mut tx = tx;
            let mut rx = rx;
            barrier.wait();
            run(
                &case,
                part.role,
                tx.as_mut().map(|t| t as &mut dyn Tx),
                rx.as_mut().map(|r| r as &mut dyn Rx),
            )
        }));
    }
    // The channels of this function must not keep the peers alive.
    drop(txs);
    drop(rxs);
    handshake()?;
    barrier.wait();
    let mut outputs = Vec::new();
    for h in handles {
        outputs.push(h.join().map_err(|_| bad("a benchmark thread panicked"))??);
    }
    Ok(outputs)
}

fn need<'a, T: ?Sized>(e: Option<&'a mut T>, what: &str) -> io::Result<&'a mut T> {
    e.ok_or_else(|| bad(format!("role needs a {what}")))
}

/// Runs one role over its endpoints and returns its output.
pub fn run(
    case: &Case,
    role: Role,
    tx: Option<&mut (dyn Tx + '_)>,
    rx: Option<&mut (dyn Rx + '_)>,
) -> io::Result<Value> {
    match role {
        Role::Ping => ping(case, need(tx, "sender")?, need(rx, "receiver")?),
        Role::Pong => pong(case, need(rx, "receiver")?, need(tx, "sender")?),
        Role::Produce(id) => produce(case, id, need(tx, "sender")?),
        Role::Consume => consume(case, need(rx, "receiver")?),
        Role::IdleSend => idle_send(case, need(tx, "sender")?),
        Role::IdleRecv => idle_recv(case, need(rx, "receiver")?),
        Role::WakeSend => wake_send(case, need(tx, "sender")?),
        Role::WakeRecv => wake_recv(case, need(rx, "receiver")?),
    }
}

fn sent(st: &Stamper, id: u32) -> Value {
    json!([[id, st.sent(), st.sum()]])
}

fn received(ck: &Checker) -> Value {
    Value::Array(
        ck.counts()
            .iter()
            .zip(ck.sums())
            .map(|(c, s)| json!([c, s]))
            .collect(),
    )
}

/// Nearest-rank quantiles of nanosecond samples.
pub fn stats(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    let n = samples.len();
    let q = |p: f64| -> u64 {
        if n == 0 {
            0
        } else {
            samples[(((n as f64) * p).ceil() as usize).clamp(1, n) - 1]
        }
    };
    let mean = if n == 0 {
        0.0
    } else {
        samples.iter().map(|&s| s as f64).sum::<f64>() / n as f64
    };
    json!({
        "n": n,
        "min": q(0.0),
        "median": q(0.5),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": samples.last().copied().unwrap_or(0),
        "mean": mean,
    })
}

fn ping(case: &Case, tx: &mut dyn Tx, rx: &mut dyn Rx) -> io::Result<Value> {
    let mut st = Stamper::new(0);
    let mut ck = Checker::new(case.size, 2, true);
    let total = case.warmup + case.count;
    let mut samples = Vec::with_capacity(case.count as usize);
    let v0 = usage();
    let started = Instant::now();
    let min_samples = case.count.min(1000) as usize;
    for i in 0..total {
        if samples.len() >= min_samples && started.elapsed() > case.limit {
            break;
        }
        let t = Instant::now();
        tx.send(case.size, &mut |b| st.next(b, 0))?;
        rx.recv(&mut |m| match ck.accept(m)? {
            Got::Data { seq, .. } if seq == i => Ok(()),
            other => Err(bad(format!("round trip {i}: reply {other:?}"))),
        })?;
        if i >= case.warmup {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    let switches = csw_since(v0);
    tx.send(case.size, &mut |b| st.end(b))?;
    Ok(json!({
        "role": "ping",
        "switches": switches,
        "rtt": stats(&mut samples),
        "sent": sent(&st, 0),
        "received": received(&ck),
    }))
}

fn pong(case: &Case, rx: &mut dyn Rx, tx: &mut dyn Tx) -> io::Result<Value> {
    let mut st = Stamper::new(1);
    let mut ck = Checker::new(case.size, 2, true);
    let v0 = usage();
    loop {
        let mut got = Got::End;
        rx.recv(&mut |m| {
            got = ck.accept(m)?;
            Ok(())
        })?;
        match got {
            Got::End => break,
            Got::Data { seq, .. } => tx.send(case.size, &mut |b| st.reply(b, seq))?,
        }
    }
    Ok(json!({
        "role": "pong",
        "switches": csw_since(v0),
        "sent": sent(&st, 1),
        "received": received(&ck),
    }))
}

fn produce(case: &Case, id: u32, tx: &mut dyn Tx) -> io::Result<Value> {
    let mut st = Stamper::new(id);
    let v0 = usage();
    let t0 = now_ns();
    let stop = t0 + case.limit.as_nanos() as u64;
    let mut left = case.count as usize;
    while left > 0 && now_ns() < stop {
        let n = left.min(case.batch.max(1));
        tx.send_many(n, case.size, &mut |b| st.next(b, 0))?;
        left -= n;
    }
    let t1 = now_ns();
    for _ in 0..case.consumers {
        tx.send(case.size, &mut |b| st.end(b))?;
    }
    Ok(json!({
        "role": "produce",
        "t0": t0,
        "t1": t1,
        "switches": csw_since(v0),
        "sent": sent(&st, id),
    }))
}

fn consume(case: &Case, rx: &mut dyn Rx) -> io::Result<Value> {
    let mut ck = Checker::new(case.size, case.producers, case.consumers == 1);
    let v0 = usage();
    let t0 = now_ns();
    while ck.ends() < case.producers {
        rx.recv_many(case.batch.max(1), &mut |m| {
            ck.accept(m)?;
            Ok(())
        })?;
    }
    if ck.ends() > case.producers {
        return Err(bad(format!(
            "took {} end markers, expected {}",
            ck.ends(),
            case.producers
        )));
    }
    let t_end = now_ns();
    Ok(json!({
        "role": "consume",
        "t0": t0,
        "t_end": t_end,
        "switches": csw_since(v0),
        "received": received(&ck),
    }))
}

fn idle_send(case: &Case, tx: &mut dyn Tx) -> io::Result<Value> {
    let mut st = Stamper::new(0);
    std::thread::sleep(case.idle);
    tx.send(case.size, &mut |b| st.next(b, 0))?;
    Ok(json!({ "role": "idle-send", "sent": sent(&st, 0) }))
}

fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Context switches of this thread so far: voluntary (a sleep in the
/// kernel: a blocking read, a futex wait) and involuntary (preempted, or
/// gave the CPU away with `sched_yield` while others were runnable).
fn csw() -> (u64, u64) {
    getrusage(UsageWho::RUSAGE_THREAD).map_or((0, 0), |u| {
        (
            u.voluntary_context_switches() as u64,
            u.involuntary_context_switches() as u64,
        )
    })
}

/// Counters at the start of a timed part: context switches and CPU time.
#[derive(Debug, Clone, Copy)]
struct Usage {
    csw: (u64, u64),
    cpu_ns: u64,
}

fn usage() -> Usage {
    Usage {
        csw: csw(),
        cpu_ns: thread_cpu_ns(),
    }
}

/// Context switches and CPU time since `start`.
fn csw_since(start: Usage) -> Value {
    let now = csw();
    json!({
        "voluntary": now.0 - start.csw.0,
        "involuntary": now.1 - start.csw.1,
        "cpu_ns": thread_cpu_ns() - start.cpu_ns,
    })
}

fn rusage_us() -> io::Result<(u64, u64)> {
    let u = getrusage(UsageWho::RUSAGE_THREAD)?;
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Ok((us(u.user_time()), us(u.system_time())))
}

fn idle_recv(case: &Case, rx: &mut dyn Rx) -> io::Result<Value> {
    let mut ck = Checker::new(case.size, 1, true);
    let (u0, s0) = rusage_us()?;
    let c0 = thread_cpu_ns();
    let w0 = now_ns();
    rx.recv(&mut |m| ck.accept(m).map(drop))?;
    let w1 = now_ns();
    let c1 = thread_cpu_ns();
    let (u1, s1) = rusage_us()?;
    Ok(json!({
        "role": "idle-recv",
        "cpu_ns": c1 - c0,
        "wall_ns": w1 - w0,
        "utime_us": u1 - u0,
        "stime_us": s1 - s0,
        "received": received(&ck),
    }))
}

fn wake_send(case: &Case, tx: &mut dyn Tx) -> io::Result<Value> {
    let mut st = Stamper::new(0);
    for _ in 0..case.count {
        std::thread::sleep(case.gap);
        tx.send(case.size, &mut |b| st.next(b, now_ns()))?;
    }
    Ok(json!({ "role": "wake-send", "sent": sent(&st, 0) }))
}

fn wake_recv(case: &Case, rx: &mut dyn Rx) -> io::Result<Value> {
    let mut ck = Checker::new(case.size, 1, true);
    let mut samples = Vec::with_capacity(case.count as usize);
    for _ in 0..case.count {
        rx.recv(&mut |m| {
            let t = now_ns();
            match ck.accept(m)? {
                Got::Data { stamp, .. } => {
                    samples.push(t.saturating_sub(stamp));
                    Ok(())
                }
                Got::End => Err(bad("unexpected end marker")),
            }
        })?;
    }
    Ok(json!({
        "role": "wake-recv",
        "latency": stats(&mut samples),
        "gap_ms": Duration::as_millis(&case.gap) as u64,
        "received": received(&ck),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let s = stats(&mut v);
        assert_eq!(s["median"], 500);
        assert_eq!(s["p99"], 990);
        assert_eq!(s["p999"], 999);
        assert_eq!(s["min"], 1);
        assert_eq!(s["max"], 1000);
        assert_eq!(stats(&mut [])["median"], 0);
    }

    #[test]
    fn roles_round_trip() {
        for r in [
            Role::Ping,
            Role::Pong,
            Role::Produce(3),
            Role::Consume,
            Role::IdleSend,
            Role::IdleRecv,
            Role::WakeSend,
            Role::WakeRecv,
        ] {
            assert_eq!(Role::parse(&r.name()), Some(r));
        }
    }

    #[test]
    fn a_cpu_of_its_own_only_without_company() {
        let case = |m| {
            let mut c = crate::plan::pass(true, &[Contender::SpinRing])
                .into_iter()
                .find(|c| c.measure == Measure::Stream)
                .expect("a stream case");
            if let Measure::Mpmc(n) = m {
                c.measure = m;
                c.producers = n;
                c.consumers = n;
            }
            c
        };
        let one = participants(&case(Measure::Stream));
        assert!((0..one.len()).all(|i| alone_on_cpu(&one, i, &[0, 1])));
        assert!((0..one.len()).all(|i| !alone_on_cpu(&one, i, &[])));
        let two = participants(&case(Measure::Mpmc(2)));
        assert!((0..two.len()).all(|i| !alone_on_cpu(&two, i, &[0, 1])));
    }

    #[test]
    fn crossbeam_threads_run_a_checked_stream() {
        let mut case = crate::plan::pass(true, &[Contender::Crossbeam])
            .into_iter()
            .find(|c| c.measure == Measure::Stream)
            .expect("a stream case");
        case.count = 1000;
        let (mut tx, mut rx) = transport::channel::pair(case.capacity);
        let c2 = case.clone();
        let producer = std::thread::spawn(move || run(&c2, Role::Produce(0), Some(&mut tx), None));
        let consumer = run(&case, Role::Consume, None, Some(&mut rx)).expect("consumer");
        let producer = producer.join().expect("thread").expect("producer");
        crate::runner::check_transfers(&[producer, consumer]).expect("exactly once");
    }
}
