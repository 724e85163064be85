//! `shm demo`: a producer process streams numbered, checksummed messages
//! through a queue to a consumer process, with a live progress bar; the
//! queue segment is shown with the PIDs attached to it; then a ping-pong
//! phase measures round-trip latency. The queues are removed at the end.
//!
//! The two processes are this binary again, started with the hidden
//! subcommands `__demo-producer` and `__demo-consumer`. Each registers,
//! prints `ready`, and waits for `go` on its standard input, so the listing
//! is taken while both are attached.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shm_core::SegmentId;
use shm_queue::{Queue, QueueOptions, RecvError};

use crate::render::human_size;
use crate::segment_cmds::ls_table;
use crate::{CliError, CliResult, emit};

/// Bytes in every demo message: an 8-byte sequence number and 56 bytes
/// derived from it.
pub const MSG_LEN: usize = 64;
/// How long the demo lets its processes run before calling it a hang.
const WATCHDOG: Duration = Duration::from_secs(60);
/// How long a process may take to start and attach.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The message with sequence number `seq`.
pub fn message(seq: u64) -> [u8; MSG_LEN] {
    let mut m = [0u8; MSG_LEN];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    // splitmix64 of the sequence number fills the rest.
    let mut x = seq;
    for chunk in m[8..].chunks_exact_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    m
}

/// A running FNV-1a 64 over every byte streamed.
#[derive(Clone, Copy)]
pub struct Checksum(u64);

impl Checksum {
    /// The empty checksum.
    pub fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The value so far.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// Waits for the `go` line from the parent.
fn wait_for_go() -> Result<(), CliError> {
    say("ready")?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::new(format!("cannot read from the demo: {e}")))?;
    if line.trim() != "go" {
        return Err(CliError::new("the demo went away before starting"));
    }
    Ok(())
}

fn say(line: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::new(format!("cannot report to the demo: {e}")))
}

/// The hidden `__demo-producer QUEUE PONG MESSAGES PINGS`.
pub fn producer(id: &SegmentId, pong: &SegmentId, messages: u64, pings: u64) -> CliResult {
    let q = Queue::open(id)?;
    let tx = q.sender()?;
    let pq = Queue::open(pong)?;
    let prx = pq.receiver()?;
    wait_for_go()?;
    let mut sum = Checksum::new();
    let start = Instant::now();
    for seq in 0..messages {
        let m = message(seq);
        tx.send(&m)
            .map_err(|e| CliError::new(format!("producer: sending message {seq}: {e}")))?;
        sum.update(&m);
    }
    let elapsed = start.elapsed();
    let mut rtts: Vec<u64> = Vec::with_capacity(usize::try_from(pings).unwrap_or(0));
    for i in 0..pings {
        let seq = messages + i;
        let t = Instant::now();
        tx.send(&message(seq))
            .map_err(|e| CliError::new(format!("producer: sending ping {i}: {e}")))?;
        let back = prx
            .recv()
            .map_err(|e| CliError::new(format!("producer: waiting for pong {i}: {e}")))?;
        rtts.push(t.elapsed().as_nanos().try_into().unwrap_or(u64::MAX));
        if back[..] != message(seq)[..] {
            return Err(CliError::new(format!("producer: pong {i} is not its ping")));
        }
    }
    drop(tx);
    rtts.sort_unstable();
    let pct = |p: usize| rtts.get(rtts.len() * p / 100).copied().unwrap_or(0);
    say(&format!(
        "sent {messages} {:016x} {}",
        sum.value(),
        elapsed.as_nanos()
    ))?;
    say(&format!("rtt {} {}", pct(50), pct(99)))
}

/// The hidden `__demo-consumer QUEUE PONG MESSAGES PINGS`.
pub fn consumer(id: &SegmentId, pong: &SegmentId, messages: u64, pings: u64) -> CliResult {
    let q = Queue::open(id)?;
    let rx = q.receiver()?;
    let pq = Queue::open(pong)?;
    let ptx = pq.sender()?;
    wait_for_go()?;
    let mut sum = Checksum::new();
    let start = Instant::now();
    for seq in 0..messages {
        let m = rx
            .recv()
            .map_err(|e| CliError::new(format!("consumer: waiting for message {seq}: {e}")))?;
        if m[..] != message(seq)[..] {
            return Err(CliError::new(format!(
                "consumer: message {seq} is wrong ({} bytes, sequence {:?})",
                m.len(),
                m.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
            )));
        }
        sum.update(&m);
    }
    let elapsed = start.elapsed();
    for i in 0..pings {
        let m = rx
            .recv()
            .map_err(|e| CliError::new(format!("consumer: waiting for ping {i}: {e}")))?;
        ptx.send(&m)
            .map_err(|e| CliError::new(format!("consumer: answering ping {i}: {e}")))?;
    }
    match rx.recv() {
        Err(RecvError::Disconnected) => {}
        Ok(_) => return Err(CliError::new("consumer: a message beyond the last one")),
        Err(e) => {
            return Err(CliError::new(format!(
                "consumer: after the last message: {e}"
            )));
        }
    }
    say(&format!(
        "received {messages} {:016x} {}",
        sum.value(),
        elapsed.as_nanos()
    ))
}

/// One demo process: killed and reaped when dropped.
struct Kid {
    what: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    status: Option<ExitStatus>,
}

impl Kid {
    fn start(what: &'static str, args: &[String]) -> Result<Kid, CliError> {
        let exe = std::env::current_exe().map_err(|e| {
            CliError::new(format!("cannot find this program to start the {what}: {e}"))
        })?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CliError::new(format!("cannot start the {what}: {e}")))?;
        let stdin = child.stdin.take();
        let (tx, lines) = channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Kid {
            what,
            child,
            stdin,
            lines,
            status: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self, limit: Duration) -> Result<String, CliError> {
        match self.lines.recv_timeout(limit) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(CliError::new(format!(
                "the {} (pid {}) said nothing for {limit:?}",
                self.what,
                self.pid()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(CliError::new(format!(
                "the {} (pid {}) exited early",
                self.what,
                self.pid()
            ))),
        }
    }

    fn go(&mut self) -> CliResult {
        let what = self.what;
        match self.stdin.take() {
            Some(mut s) => s
                .write_all(b"go\n")
                .map_err(|e| CliError::new(format!("cannot start the {what}: {e}"))),
            None => Err(CliError::new(format!("the {what} has no input"))),
        }
    }

    /// Whether it has exited; an exit with failure is an error.
    fn finished(&mut self) -> Result<bool, CliError> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| CliError::new(format!("cannot wait for the {}: {e}", self.what)))?;
        }
        match self.status {
            Some(s) if s.success() => Ok(true),
            Some(s) => Err(CliError::new(format!(
                "the {} (pid {}) failed: {s}",
                self.what,
                self.pid()
            ))),
            None => Ok(false),
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn field<T: std::str::FromStr>(line: &str, word: &str, i: usize) -> Result<T, CliError> {
    let mut f = line.split_whitespace();
    if f.next() != Some(word) {
        return Err(CliError::new(format!(
            "unexpected report from a demo process: {line:?}"
        )));
    }
    f.nth(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| CliError::new(format!("unexpected report from a demo process: {line:?}")))
}

fn micros(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

/// `shm demo [--messages N] [--pings N]`.
pub fn demo(messages: u64, pings: u64) -> CliResult {
    let pid = std::process::id();
    let id = SegmentId::posix(&format!("/shmrs-demo-{pid}"))?;
    let pong_id = SegmentId::posix(&format!("/shmrs-demo-{pid}-pong"))?;
    // Both queues are owned here: removed on every way out, errors included.
    let q = Queue::create(&id, &QueueOptions::new().capacity(4096).slot_size(64))?;
    let pong = Queue::create(&pong_id, &QueueOptions::new().capacity(16).slot_size(64))?;
    emit(&format!(
        "queue {id}: {} slots of {} bytes ({}); streaming {messages} messages of {MSG_LEN} bytes, then {pings} round trips\n",
        q.capacity(),
        q.slot_size(),
        human_size(q.segment().len() as u64)
    ))?;

    let args = |role: &str| {
        vec![
            role.to_owned(),
            id.to_string(),
            pong_id.to_string(),
            messages.to_string(),
            pings.to_string(),
        ]
    };
    let mut consumer = Kid::start("consumer", &args("__demo-consumer"))?;
    let mut producer = Kid::start("producer", &args("__demo-producer"))?;
    for kid in [&mut consumer, &mut producer] {
        let l = kid.line(START_LIMIT)?;
        if l != "ready" {
            return Err(CliError::new(format!(
                "the {} (pid {}) did not start: {l:?}",
                kid.what,
                kid.pid()
            )));
        }
    }
    emit(&format!(
        "producer pid {}, consumer pid {}; the queue segment and who holds it:\n",
        producer.pid(),
        consumer.pid()
    ))?;
    let listing = crate::segment_cmds::listing()?;
    let shown: Vec<_> = listing
        .entries
        .iter()
        .filter(|e| e.matches(&id) || e.matches(&pong_id))
        .collect();
    emit(&ls_table(&shown))?;

    let bar = ProgressBar::with_draw_target(Some(messages), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:30}] {human_pos}/{human_len} messages {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let plain = !std::io::stderr().is_terminal();
    consumer.go()?;
    producer.go()?;

    let start = Instant::now();
    let mut last_plain = Instant::now();
    loop {
        let stats = q.stats();
        let received = stats.received.min(messages);
        bar.set_position(received);
        let secs = start.elapsed().as_secs_f64();
        if secs > 0.0 {
            bar.set_message(format!("{:.2} M/s", received as f64 / secs / 1e6));
        }
        if plain && last_plain.elapsed() >= Duration::from_secs(1) {
            last_plain = Instant::now();
            emit(&format!(
                "  {} of {messages} received\n",
                stats.received.min(messages)
            ))?;
        }
        let done_c = consumer.finished()?;
        let done_p = producer.finished()?;
        if done_c && done_p {
            break;
        }
        if start.elapsed() > WATCHDOG {
            bar.abandon();
            return Err(CliError::new(format!(
                "the demo did not finish within {WATCHDOG:?}; its processes were killed"
            )));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    bar.finish_and_clear();

    let sent = producer.line(START_LIMIT)?;
    let rtt = producer.line(START_LIMIT)?;
    let received = consumer.line(START_LIMIT)?;
    let (sent_sum, recv_sum): (String, String) =
        (field(&sent, "sent", 1)?, field(&received, "received", 1)?);
    if sent_sum != recv_sum || field::<u64>(&received, "received", 0)? != messages {
        return Err(CliError::new(format!(
            "checksums differ: the producer sent {sent_sum}, the consumer received {recv_sum}"
        )));
    }
    let ns: u64 = field(&received, "received", 2)?;
    let secs = (ns as f64 / 1e9).max(1e-9);
    let (p50, p99): (u64, u64) = (field(&rtt, "rtt", 0)?, field(&rtt, "rtt", 1)?);
    let stats = q.stats();
    let mut out = format!(
        "streamed {messages} messages ({}) in {secs:.2} s: {:.2} M messages/s, {:.0} MB/s; checksum {recv_sum} matches\n",
        human_size(messages.saturating_mul(MSG_LEN as u64)),
        messages as f64 / secs / 1e6,
        messages as f64 * MSG_LEN as f64 / secs / 1e6,
    );
    out.push_str(&format!(
        "blocked: {} sends on a full queue, {} receives on an empty one\n",
        stats.blocked_sends, stats.blocked_recvs
    ));
    if pings > 0 {
        out.push_str(&format!(
            "ping-pong {pings} round trips between two processes: p50 {}, p99 {}\n",
            micros(p50),
            micros(p99)
        ));
    }
    q.remove()
        .map_err(|e| CliError::new(format!("cannot remove {id}: {e}")))?;
    pong.remove()
        .map_err(|e| CliError::new(format!("cannot remove {pong_id}: {e}")))?;
    out.push_str(&format!("removed {id} and {pong_id}\n"));
    emit(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_and_carry_their_sequence() {
        let a = message(1);
        let b = message(2);
        assert_ne!(a, b);
        assert_eq!(u64::from_le_bytes(a[..8].try_into().unwrap_or_default()), 1);
        let mut s = Checksum::new();
        s.update(&a);
        let one = s.value();
        s.update(&b);
        assert_ne!(one, s.value());
    }
}
