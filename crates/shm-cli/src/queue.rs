//! `shm queue create|send|recv`, and the queue part of `shm stat`.

use std::io::{BufRead, Write};
use std::time::Duration;

use serde_json::{Value, json};
use shm_core::SegmentId;
use shm_core::list::SegmentInfo;
use shm_queue::{Lifetime, Queue, QueueOptions, RecvTimeoutError, SendTimeoutError, Stats};

use crate::fmt::human_size;
use crate::{CliError, CliResult, emit, warn};

/// A queue's counters as `shm stat` shows them.
pub struct QueueInfo(Stats);

impl QueueInfo {
    /// The `queue` object of `shm stat --json`.
    pub fn json(&self) -> Value {
        let s = &self.0;
        json!({
            "capacity": s.capacity,
            "slot_size": s.slot_size,
            "len": s.len,
            "sent": s.sent,
            "received": s.received,
            "blocked_sends": s.blocked_sends,
            "blocked_recvs": s.blocked_recvs,
            "producers": s.producers,
            "consumers": s.consumers,
            "attached": s.attached,
            "lifetime": lifetime_word(s.lifetime),
            "closed": s.closed,
            "recovered": s.recovered,
            "abandoned": s.abandoned,
        })
    }

    /// The lines `shm stat` prints.
    pub fn lines(&self) -> Vec<(String, String)> {
        let s = &self.0;
        vec![
            (
                "queue".into(),
                format!(
                    "{} of {} slots used, slots of {} bytes",
                    s.len, s.capacity, s.slot_size
                ),
            ),
            (
                "messages".into(),
                format!("{} sent, {} received", s.sent, s.received),
            ),
            (
                "blocked".into(),
                format!("{} sends, {} receives", s.blocked_sends, s.blocked_recvs),
            ),
            (
                "peers".into(),
                format!(
                    "{} producers, {} consumers, {} handles attached",
                    s.producers, s.consumers, s.attached
                ),
            ),
            (
                "lifetime".into(),
                match s.lifetime {
                    Lifetime::LastPeer => "removed with the last attached handle",
                    Lifetime::Creator => "removed with its creator's handle",
                    Lifetime::Persistent => "kept until `shm rm`",
                    _ => "unknown",
                }
                .into(),
            ),
            ("closed".into(), if s.closed { "yes" } else { "no" }.into()),
            (
                "recovered".into(),
                format!(
                    "{} claims of dead processes, {} abandoned sends",
                    s.recovered, s.abandoned
                ),
            ),
        ]
    }
}

/// The JSON word for a lifetime mode.
fn lifetime_word(l: Lifetime) -> &'static str {
    match l {
        Lifetime::LastPeer => "last-peer",
        Lifetime::Creator => "creator",
        Lifetime::Persistent => "persistent",
        _ => "unknown",
    }
}

/// The queue's counters if `e` is a queue of this library; a queue that
/// cannot be inspected gives a warning and `None`.
pub fn queue_stats(id: &SegmentId, e: &SegmentInfo) -> Option<QueueInfo> {
    if e.kind.as_deref() != Some(shm_queue::KIND) {
        return None;
    }
    match Queue::inspect(id) {
        Ok(s) => Some(QueueInfo(s)),
        Err(err) => {
            warn(&format!("cannot read the queue's counters: {err}"));
            None
        }
    }
}

fn to_u32(what: &str, v: u64) -> Result<u32, CliError> {
    u32::try_from(v).map_err(|_| CliError::new(format!("{what} {v} is too large")))
}

/// `shm queue create /NAME --capacity N --slot-size BYTES [--mode OCTAL]`.
pub fn create(id: &SegmentId, capacity: u64, slot_size: u64, mode: u32) -> CliResult {
    let opts = QueueOptions::new()
        .capacity(to_u32("capacity", capacity)?)
        .slot_size(to_u32("slot size", slot_size)?)
        .mode(mode)
        // Leave it for the senders and receivers to come: it stays until
        // `shm rm`.
        .lifetime(Lifetime::Persistent);
    let q = Queue::create(id, &opts)?;
    emit(&format!(
        "created queue {id}: {} slots of {} bytes ({} segment), mode {mode:04o}\n",
        q.capacity(),
        q.slot_size(),
        human_size(q.segment().len() as u64)
    ))
}

/// `shm queue send /NAME [--timeout-ms MS]`: every line of standard input,
/// without its newline, is one message.
pub fn send(id: &SegmentId, timeout: Option<Duration>) -> CliResult {
    let q = Queue::open(id)?;
    let tx = q
        .sender()
        .map_err(|e| CliError::new(format!("cannot join {id} as a producer: {e}")))?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let max = q.slot_size();
    let mut line = Vec::with_capacity(max.saturating_add(1).min(1 << 20));
    let mut n: u64 = 0;
    loop {
        let read = read_line_bounded(&mut input, &mut line, max)
            .map_err(|e| CliError::new(format!("cannot read standard input: {e}")))?;
        match read {
            Line::End => return Ok(()),
            Line::Complete => {}
            Line::TooLong => {
                return Err(CliError::new(format!(
                    "line {} is longer than the {max}-byte slots of {id} (refused at byte {}, \
                     before its end): not sent ({} lines before it were)",
                    n + 1,
                    max + 1,
                    n
                )));
            }
        }
        n += 1;
        let result = match timeout {
            Some(t) => tx.send_timeout(&line, t),
            None => tx.send(&line).map_err(SendTimeoutError::from),
        };
        match result {
            Ok(()) => {}
            Err(SendTimeoutError::TooLarge { len, max }) => {
                return Err(CliError::new(format!(
                    "line {n} is {len} bytes, longer than the {max}-byte slots of {id}: \
                     not sent ({} lines before it were)",
                    n - 1
                )));
            }
            Err(SendTimeoutError::Timeout) => {
                return Err(CliError::new(format!(
                    "timed out sending line {n} to {id}: the queue stayed full for {} ms ({} lines were sent)",
                    timeout.map_or(0, |t| t.as_millis()),
                    n - 1
                )));
            }
            Err(e) => {
                return Err(CliError::new(format!(
                    "cannot send line {n} to {id}: {e} ({} lines were sent)",
                    n - 1
                )));
            }
        }
    }
}

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The end of the input, with no byte of a new line.
    End,
    /// A whole line (its newline removed), or a last line without one.
    Complete,
    /// More than `max` bytes before a newline: refused at once.
    TooLong,
}

/// Reads one line of at most `max` bytes into `line` (cleared first),
/// without its newline. Memory stays bounded by `max` whatever the input:
/// it stops as soon as the line holds `max + 1` bytes, before the newline
/// arrives (a line that never ends, as from `/dev/zero`, is refused, not
/// buffered).
fn read_line_bounded(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    line.clear();
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if any { Line::Complete } else { Line::End });
        }
        any = true;
        let room = max.saturating_add(1) - line.len();
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) if i <= room => (i, true),
            _ => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..take]);
        input.consume(if done { take + 1 } else { take });
        if line.len() > max {
            return Ok(Line::TooLong);
        }
        if done {
            return Ok(Line::Complete);
        }
    }
}

/// `shm queue recv /NAME [--count N] [--timeout-ms MS]`: prints each
/// message and a newline.
pub fn recv(id: &SegmentId, count: Option<u64>, timeout: Option<Duration>) -> CliResult {
    let q = Queue::open(id)?;
    let rx = q
        .receiver()
        .map_err(|e| CliError::new(format!("cannot join {id} as a consumer: {e}")))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut got: u64 = 0;
    while count.is_none_or(|c| got < c) {
        let msg = match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv().map_err(RecvTimeoutError::from),
        };
        let msg = match msg {
            Ok(m) => m,
            Err(RecvTimeoutError::Disconnected) | Err(RecvTimeoutError::Closed) => break,
            Err(RecvTimeoutError::Timeout) => {
                return Err(CliError::new(format!(
                    "no message arrived on {id} within {} ms ({got} received)",
                    timeout.map_or(0, |t| t.as_millis())
                )));
            }
            Err(e) => {
                return Err(CliError::new(format!(
                    "cannot receive from {id}: {e} ({got} received)"
                )));
            }
        };
        got += 1;
        out.write_all(&msg)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| {
                CliError::new(format!(
                    "cannot write message {got} from {id} to standard output: {e} (it was taken from the queue)"
                ))
            })?;
    }
    // Fewer than `count` messages because every producer left is still
    // success: the stream ended.
    out.flush()
        .map_err(|e| CliError::new(format!("cannot write to standard output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        // A tiny buffer, so lines straddle refills.
        let mut r = std::io::BufReader::with_capacity(3, input);
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            let l = read_line_bounded(&mut r, &mut line, max).unwrap();
            let stop = l != Line::Complete;
            got.push((l, line.clone()));
            if stop {
                return got;
            }
        }
    }

    #[test]
    fn lines_up_to_the_slot_size_pass_and_longer_ones_stop_at_once() {
        use Line::*;
        assert_eq!(lines(b"", 4), vec![(End, vec![])]);
        assert_eq!(
            lines(b"ab\n\nabcd\nxy", 4),
            vec![
                (Complete, b"ab".to_vec()),
                (Complete, vec![]),
                (Complete, b"abcd".to_vec()),
                (Complete, b"xy".to_vec()),
                (End, vec![]),
            ]
        );
        // One byte too many, with or without a newline after it.
        assert_eq!(lines(b"abcde\n", 4)[0], (TooLong, b"abcde".to_vec()));
        assert_eq!(lines(b"abcde", 4)[0], (TooLong, b"abcde".to_vec()));
        // An endless line is refused after max + 1 bytes.
        let mut zero = std::io::BufReader::new(std::io::repeat(0));
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut zero, &mut line, 1000).unwrap(),
            TooLong
        );
        assert_eq!(line.len(), 1001);
        assert!(line.capacity() < 4096, "{}", line.capacity());
    }
}
