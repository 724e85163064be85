//! What every benchmark message carries, and how each side checks it.
//!
//! # Message format
//!
//! All words are native-endian `u64`; every message size used is a multiple
//! of 8 and at least [`HEADER`] bytes.
//!
//! | word | contents                                                   |
//! |------|------------------------------------------------------------|
//! | 0    | sequence number, per producer, from 0 ([`END`] ends a run) |
//! | 1    | producer id (low 32 bits), message length (high 32 bits)   |
//! | 2    | `CLOCK_MONOTONIC` nanoseconds at send (0 if not stamped)   |
//! | 3..  | pattern: `seed(producer, seq) ^ (i * K)` for payload word i |
//!
//! The receiver checks the length, the producer id, the sequence (exactly
//! the next one with a single consumer, strictly increasing with several),
//! and **every payload word** against the pattern, so a torn, stale,
//! duplicated or misplaced message is caught. Both sides also keep, per
//! producer, a count and an order-independent checksum (a wrapping sum of a
//! 64-bit mix of producer, sequence and length); the parent adds the
//! consumers' sums up and compares them with the producer's, which proves
//! exactly-once delivery across several consumers.

use std::io;

/// Bytes of header before the pattern.
pub const HEADER: usize = 24;
/// Sequence number of an end marker.
pub const END: u64 = u64::MAX;
/// Odd multiplier of the pattern (the 64-bit golden ratio).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// `CLOCK_MONOTONIC` now, in nanoseconds. Comparable between processes on
/// one machine, which is what the wake-up latency needs.
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero would show up as an
    // absurd latency rather than be hidden.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A strong 64-bit mix (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn seed(producer: u32, seq: u64) -> u64 {
    mix(seq ^ ((producer as u64) << 48) ^ 0x5348_4d52_5342_454e)
}

/// The per-message term of the checksum.
fn term(producer: u32, seq: u64, len: usize) -> u64 {
    mix(seed(producer, seq) ^ ((len as u64) << 7))
}

fn word(buf: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
    u64::from_ne_bytes(w)
}

fn set_word(buf: &mut [u8], i: usize, v: u64) {
    buf[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a message into `buf` (its whole length is the message).
pub fn fill(buf: &mut [u8], producer: u32, seq: u64, stamp: u64) {
    debug_assert!(buf.len() >= HEADER && buf.len().is_multiple_of(8));
    set_word(buf, 0, seq);
    set_word(buf, 1, producer as u64 | ((buf.len() as u64) << 32));
    set_word(buf, 2, stamp);
    let s = seed(producer, seq);
    let mut k = 0u64;
    for chunk in buf[HEADER..].chunks_exact_mut(8) {
        chunk.copy_from_slice(&(s ^ k).to_ne_bytes());
        k = k.wrapping_add(K);
    }
}

/// Whether the pattern after the header is intact.
fn pattern_ok(buf: &[u8], producer: u32, seq: u64) -> bool {
    let s = seed(producer, seq);
    let mut k = 0u64;
    let mut bad = 0u64;
    for chunk in buf[HEADER..].chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        bad |= u64::from_ne_bytes(w) ^ s ^ k;
        k = k.wrapping_add(K);
    }
    bad == 0
}

/// Environment variable that makes every producer corrupt one bit of the
/// payload of its message with this sequence number: proves, in the test
/// suite, that a bad transfer fails the run.
pub const CORRUPT_ENV: &str = "SHM_BENCH_CORRUPT_SEQ";

/// The producer side: sequence numbers and checksum of what was sent.
#[derive(Debug)]
pub struct Stamper {
    producer: u32,
    next: u64,
    sum: u64,
    corrupt: Option<u64>,
}

impl Stamper {
    /// A producer with id `producer`, starting at sequence 0.
    pub fn new(producer: u32) -> Self {
        Stamper {
            producer,
            next: 0,
            sum: 0,
            corrupt: std::env::var(CORRUPT_ENV).ok().and_then(|v| v.parse().ok()),
        }
    }

    /// Fills `buf` with the next message; `stamp` goes into word 2.
    pub fn next(&mut self, buf: &mut [u8], stamp: u64) {
        fill(buf, self.producer, self.next, stamp);
        if self.corrupt == Some(self.next) {
            let last = buf.len() - 1;
            buf[last] ^= 0x10;
        }
        self.sum = self
            .sum
            .wrapping_add(term(self.producer, self.next, buf.len()));
        self.next += 1;
    }

    /// Fills `buf` with a reply carrying sequence `seq` (ping-pong).
    pub fn reply(&mut self, buf: &mut [u8], seq: u64) {
        self.next = seq;
        self.next(buf, 0);
    }

    /// Fills `buf` with an end marker (not counted).
    pub fn end(&self, buf: &mut [u8]) {
        fill(buf, self.producer, END, 0);
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.next
    }

    /// Checksum of what was sent.
    pub fn sum(&self) -> u64 {
        self.sum
    }
}

/// What [`Checker::accept`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// A data message: its sequence number and send timestamp.
    Data {
        /// Sequence number.
        seq: u64,
        /// Word 2.
        stamp: u64,
    },
    /// An end marker.
    End,
}

/// The consumer side: checks every message, counts and sums per producer.
#[derive(Debug)]
pub struct Checker {
    len: usize,
    exact: bool,
    seen: Vec<Option<u64>>,
    counts: Vec<u64>,
    sums: Vec<u64>,
    ends: usize,
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Checker {
    /// Expects messages of exactly `len` bytes from `producers` producers;
    /// with `exact`, each producer's sequence must be 0, 1, 2, ... (one
    /// consumer), else only strictly increasing (one of several consumers).
    pub fn new(len: usize, producers: usize, exact: bool) -> Self {
        Checker {
            len,
            exact,
            seen: vec![None; producers],
            counts: vec![0; producers],
            sums: vec![0; producers],
            ends: 0,
        }
    }

    /// Checks one received message.
    pub fn accept(&mut self, msg: &[u8]) -> io::Result<Got> {
        if msg.len() != self.len || msg.len() < HEADER {
            return Err(corrupt(format!(
                "message of {} bytes, expected {}",
                msg.len(),
                self.len
            )));
        }
        let seq = word(msg, 0);
        let w1 = word(msg, 1);
        let producer = (w1 & 0xffff_ffff) as u32;
        let len = (w1 >> 32) as usize;
        if len != self.len {
            return Err(corrupt(format!(
                "header says {len} bytes, got {}",
                self.len
            )));
        }
        let p = producer as usize;
        if p >= self.seen.len() {
            return Err(corrupt(format!("unknown producer {producer}")));
        }
        if !pattern_ok(msg, producer, seq) {
            return Err(corrupt(format!(
                "payload of producer {producer} seq {seq} does not match its pattern"
            )));
        }
        if seq == END {
            self.ends += 1;
            return Ok(Got::End);
        }
        let expected_ok = match (self.seen[p], self.exact) {
            (None, true) => seq == 0,
            (None, false) => true,
            (Some(last), true) => seq == last + 1,
            (Some(last), false) => seq > last,
        };
        if !expected_ok {
            return Err(corrupt(format!(
                "producer {producer}: seq {seq} after {:?}",
                self.seen[p]
            )));
        }
        self.seen[p] = Some(seq);
        self.counts[p] += 1;
        self.sums[p] = self.sums[p].wrapping_add(term(producer, seq, len));
        Ok(Got::Data {
            seq,
            stamp: word(msg, 2),
        })
    }

    /// End markers seen so far.
    pub fn ends(&self) -> usize {
        self.ends
    }

    /// Data messages per producer.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Checksums per producer.
    pub fn sums(&self) -> &[u64] {
        &self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let mut s = Stamper::new(1);
        let mut c = Checker::new(64, 2, true);
        let mut buf = vec![0u8; 64];
        s.next(&mut buf, 7);
        assert_eq!(c.accept(&buf).unwrap(), Got::Data { seq: 0, stamp: 7 });
        s.next(&mut buf, 0);
        buf[40] ^= 1;
        assert!(c.accept(&buf).is_err());
        buf[40] ^= 1;
        c.accept(&buf).unwrap();
        // A duplicate is refused.
        assert!(c.accept(&buf).is_err());
        assert_eq!(c.counts(), &[0, 2]);
        assert_eq!(c.sums()[1], s.sum());
        s.end(&mut buf);
        assert_eq!(c.accept(&buf).unwrap(), Got::End);
    }
}
