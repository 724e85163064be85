//! `shm queue create|send|recv`, and the queue part of `shm stat`.

use std::io::{BufRead, Write};
use std::time::Duration;

use serde_json::{Value, json};
use shm_core::SegmentId;
use shm_core::list::SegmentInfo;
use shm_queue::{Lifetime, Queue, QueueOptions, RecvTimeoutError, SendTimeoutError, Stats};

use crate::render::human_size;
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

/// How messages are delimited on standard input and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Framing {
    /// One message per line; the newline is not part of it.
    #[default]
    Lines,
    /// Messages separated by NUL bytes (`-0`, as `find -print0` writes).
    Nul,
    /// Each message preceded by its length, a 4-byte big-endian unsigned
    /// integer (binary-safe).
    Length,
}

impl Framing {
    /// What one message is called in messages.
    fn unit(self) -> &'static str {
        match self {
            Framing::Lines => "line",
            Framing::Nul => "record",
            Framing::Length => "frame",
        }
    }
}

/// `shm queue send /NAME [--timeout-ms MS] [-0 | --framing F]`: every line
/// (record, frame) of standard input is one message.
pub fn send(id: &SegmentId, timeout: Option<Duration>, framing: Framing) -> CliResult {
    let q = Queue::open(id)?;
    let tx = q
        .sender()
        .map_err(|e| CliError::new(format!("cannot join {id} as a producer: {e}")))?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let max = q.slot_size();
    let unit = framing.unit();
    let mut line = Vec::with_capacity(max.saturating_add(1).min(1 << 20));
    let mut n: u64 = 0;
    loop {
        let read = match framing {
            Framing::Lines => read_line_bounded(&mut input, &mut line, max, b'\n'),
            Framing::Nul => read_line_bounded(&mut input, &mut line, max, 0),
            Framing::Length => read_frame_bounded(&mut input, &mut line, max),
        }
        .map_err(|e| CliError::new(format!("cannot read standard input: {e}")))?;
        match read {
            Line::End => return Ok(()),
            Line::Complete => {}
            Line::TooLong => {
                return Err(CliError::new(format!(
                    "{unit} {} is longer than the {max}-byte slots of {id} (refused at byte {}, \
                     before its end): not sent ({} {unit}s before it were)",
                    n + 1,
                    max + 1,
                    n
                )));
            }
            Line::FrameTooLong(len) => {
                return Err(CliError::new(format!(
                    "frame {} announces {len} bytes, longer than the {max}-byte slots of {id} \
                     (refused on reading its length): not sent ({n} frames before it were)",
                    n + 1
                )));
            }
            Line::Truncated { want, got } => {
                return Err(CliError::new(format!(
                    "frame {} is cut short: standard input ended after {got} of its {want} bytes \
                     (length prefix included): not sent ({n} frames before it were)",
                    n + 1
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
                    "{unit} {n} is {len} bytes, longer than the {max}-byte slots of {id}: \
                     not sent ({} {unit}s before it were)",
                    n - 1
                )));
            }
            Err(SendTimeoutError::Timeout) => {
                return Err(CliError::new(format!(
                    "timed out sending {unit} {n} to {id}: the queue stayed full for {} ms ({} {unit}s were sent)",
                    timeout.map_or(0, |t| t.as_millis()),
                    n - 1
                )));
            }
            Err(e) => {
                return Err(CliError::new(format!(
                    "cannot send {unit} {n} to {id}: {e} ({} {unit}s were sent)",
                    n - 1
                )));
            }
        }
    }
}

/// `shm queue peek /NAME [--count N] [-0 | --framing F]`: prints the next
/// messages without taking them, from a read-only mapping (a racy
/// snapshot: they may be taken the moment after).
pub fn peek(id: &SegmentId, count: u64, framing: Framing) -> CliResult {
    let max = usize::try_from(count).unwrap_or(usize::MAX);
    let seen = shm_queue::peek::peek(id, max)?;
    let mut text = Vec::new();
    for m in &seen.messages {
        write_message(&mut text, m, framing)
            .map_err(|e| CliError::new(format!("cannot format a message: {e}")))?;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(&text).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => {
            return Err(CliError::new(format!(
                "cannot write to standard output: {e}"
            )));
        }
    }
    if seen.raced && (seen.messages.len() as u64) < count {
        warn(&format!(
            "{id} changed while it was read: receivers took messages meanwhile \
             ({} shown)",
            seen.messages.len()
        ));
    }
    Ok(())
}

/// `shm queue close /NAME`: sends fail with `Closed` from now on; the
/// receivers already attached drain what is left, then end (new ones
/// cannot join a closed queue).
pub fn close(id: &SegmentId) -> CliResult {
    let q = Queue::open(id)?;
    let was = q.is_closed();
    q.close();
    emit(&format!(
        "{} {id}: sends fail from now on; {} message(s) left for the receivers already attached\n",
        if was { "already closed" } else { "closed" },
        q.len()
    ))
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
    /// A length prefix announcing more than `max` bytes: refused before
    /// any byte of the frame is read.
    FrameTooLong(u64),
    /// The input ended inside a frame: `got` of `want` bytes (prefix
    /// included).
    Truncated {
        /// Bytes the frame needed, its 4-byte prefix included.
        want: u64,
        /// Bytes there were.
        got: u64,
    },
}

/// Reads one line of at most `max` bytes into `line` (cleared first),
/// without its delimiter `delim` (`\n`, or NUL for `-0`). Memory stays
/// bounded by `max` whatever the input: it stops as soon as the line holds
/// `max + 1` bytes, before the delimiter arrives (a line that never ends,
/// as from `/dev/zero` with newlines, is refused, not buffered).
fn read_line_bounded(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
    delim: u8,
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
        let (take, done) = match buf.iter().position(|&b| b == delim) {
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

/// Fills `buf` from `input` as far as it goes; the number of bytes read
/// (less than `buf.len()` only at the end of the input).
fn read_full(input: &mut impl BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one length-prefixed frame (4-byte big-endian length, then that
/// many bytes) into `frame` (cleared first). A length over `max` is
/// refused as soon as it is read, before any byte of the frame: memory
/// stays bounded by `max`.
fn read_frame_bounded(
    input: &mut impl BufRead,
    frame: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    frame.clear();
    let mut prefix = [0u8; 4];
    let got = read_full(input, &mut prefix)?;
    if got == 0 {
        return Ok(Line::End);
    }
    if got < 4 {
        return Ok(Line::Truncated {
            want: 4,
            got: got as u64,
        });
    }
    let len = u64::from(u32::from_be_bytes(prefix));
    if len > max as u64 {
        return Ok(Line::FrameTooLong(len));
    }
    frame.resize(len as usize, 0);
    let got = read_full(input, frame)?;
    if got < frame.len() {
        return Ok(Line::Truncated {
            want: 4 + len,
            got: 4 + got as u64,
        });
    }
    Ok(Line::Complete)
}

/// Writes one message in `framing`.
fn write_message(out: &mut impl Write, msg: &[u8], framing: Framing) -> std::io::Result<()> {
    match framing {
        Framing::Lines => {
            out.write_all(msg)?;
            out.write_all(b"\n")
        }
        Framing::Nul => {
            out.write_all(msg)?;
            out.write_all(b"\0")
        }
        Framing::Length => {
            // A slot is at most `MAX_SLOT_SIZE` (1 GiB): the length fits.
            let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
            out.write_all(&len.to_be_bytes())?;
            out.write_all(msg)
        }
    }
}

/// `shm queue recv /NAME [--count N] [--timeout-ms MS] [-0 | --framing F]`:
/// prints each message in the framing (by default, followed by a newline).
pub fn recv(
    id: &SegmentId,
    count: Option<u64>,
    timeout: Option<Duration>,
    framing: Framing,
) -> CliResult {
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
        write_message(&mut out, &msg, framing)
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
            let l = read_line_bounded(&mut r, &mut line, max, b'\n').unwrap();
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
            read_line_bounded(&mut zero, &mut line, 1000, b'\n').unwrap(),
            TooLong
        );
        assert_eq!(line.len(), 1001);
        assert!(line.capacity() < 4096, "{}", line.capacity());
    }

    #[test]
    fn nul_records_and_length_frames_are_bounded_too() {
        let mut r = std::io::BufReader::with_capacity(3, &b"ab\0\0abcde\0"[..]);
        let mut m = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut m, 4, 0).unwrap(),
            Line::Complete
        );
        assert_eq!(m, b"ab");
        assert_eq!(
            read_line_bounded(&mut r, &mut m, 4, 0).unwrap(),
            Line::Complete
        );
        assert!(m.is_empty());
        assert_eq!(
            read_line_bounded(&mut r, &mut m, 4, 0).unwrap(),
            Line::TooLong
        );

        let mut input = Vec::new();
        for msg in [&b"hi"[..], b"", b"\n\0x"] {
            write_message(&mut input, msg, Framing::Length).unwrap();
        }
        let mut r = std::io::BufReader::with_capacity(3, &input[..]);
        let mut got = Vec::new();
        while read_frame_bounded(&mut r, &mut m, 8).unwrap() == Line::Complete {
            got.push(m.clone());
        }
        assert_eq!(got, vec![b"hi".to_vec(), vec![], b"\n\0x".to_vec()]);
        // A huge announced length is refused before reading the frame.
        let mut r = std::io::BufReader::new(std::io::Read::chain(
            &[0xff, 0xff, 0xff, 0xff][..],
            std::io::repeat(0),
        ));
        assert_eq!(
            read_frame_bounded(&mut r, &mut m, 1 << 20).unwrap(),
            Line::FrameTooLong(u64::from(u32::MAX))
        );
        assert!(m.capacity() < 4096);
        // Cut short: in the prefix, and in the payload.
        let mut r = std::io::BufReader::new(&[0, 0][..]);
        assert_eq!(
            read_frame_bounded(&mut r, &mut m, 8).unwrap(),
            Line::Truncated { want: 4, got: 2 }
        );
        let mut r = std::io::BufReader::new(&[0, 0, 0, 5, b'a'][..]);
        assert_eq!(
            read_frame_bounded(&mut r, &mut m, 8).unwrap(),
            Line::Truncated { want: 9, got: 5 }
        );
    }
}
