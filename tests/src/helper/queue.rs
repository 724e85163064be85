//! `queue-*` subcommands: producers and consumers of shm-queue that check
//! what they move.
//!
//! Message format (at least 24 bytes): producer id (u32), pad (u32),
//! sequence (u64), checksum (u64) of the id, the sequence and the filler
//! bytes that follow up to the message size.

use std::io::Write;
use std::time::Duration;

use shm_core::SegmentId;
use shm_queue::{Queue, RecvTimeoutError, SendTimeoutError};

/// Smallest message the checked format needs.
pub const MIN_MSG: usize = 24;

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Fills `buf` with the checked message `(producer, seq)`.
pub fn encode(buf: &mut [u8], producer: u32, seq: u64) {
    buf[0..4].copy_from_slice(&producer.to_le_bytes());
    buf[4..8].fill(0);
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[24..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_add(i).wrapping_mul(31) as u8 ^ producer as u8;
    }
    let sum = fnv(&buf[24..], fnv(&buf[0..16], 0xcbf2_9ce4_8422_2325));
    buf[16..24].copy_from_slice(&sum.to_le_bytes());
}

/// Decodes a checked message: `Some((producer, seq))` if it is whole.
pub fn decode(msg: &[u8]) -> Option<(u32, u64)> {
    if msg.len() < MIN_MSG {
        return None;
    }
    let sum = fnv(&msg[24..], fnv(&msg[0..16], 0xcbf2_9ce4_8422_2325));
    if sum.to_le_bytes() != msg[16..24] {
        return None;
    }
    let producer = u32::from_le_bytes(msg[0..4].try_into().ok()?);
    let seq = u64::from_le_bytes(msg[8..16].try_into().ok()?);
    Some((producer, seq))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("argument {i} ({what}) missing or invalid"))
}

/// Opens the queue, or exits with status 1 and the error on stderr: the
/// torture tests tell an error (allowed) from a panic or a signal (not).
fn open(name: &str) -> Queue {
    let opened = name
        .parse::<SegmentId>()
        .map_err(|e| e.to_string())
        .and_then(|id| Queue::open(&id).map_err(|e| e.to_string()));
    opened.unwrap_or_else(|e| fail(&format!("open {name}: {e}")))
}

/// `timeout=MS` among the flags: every send or receive gives up after MS.
fn op_timeout(flags: &[String]) -> Option<Duration> {
    flags
        .iter()
        .find_map(|f| f.strip_prefix("timeout=")?.parse().ok())
        .map(Duration::from_millis)
}

/// A one-word name for a send error, for `say-error`.
fn send_error_kind(e: &SendTimeoutError) -> &'static str {
    match e {
        SendTimeoutError::Timeout => "timeout",
        SendTimeoutError::Disconnected => "disconnected",
        SendTimeoutError::Closed => "closed",
        _ => "other",
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

/// Runs a `queue-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    match cmd {
        // queue-produce NAME PRODUCER COUNT SIZE [report] [timeout=MS]
        //               [say-error]
        // Sends COUNT checked messages; with `report`, prints "s SEQ" after
        // each send returned success. Prints "done" at the end. Any error
        // exits with status 1; with `say-error`, it first prints
        // "failed SEQ KIND" on stdout (KIND: timeout, full, disconnected,
        // closed or other), so a test can tell an expected timeout from
        // anything else.
        "queue-produce" => {
            let q = open(&args[0]);
            let producer: u32 = arg(args, 1, "producer");
            let count: u64 = arg(args, 2, "count");
            let size: usize = arg(args, 3, "size");
            let report = args[4..].iter().any(|a| a == "report");
            let say_error = args[4..].iter().any(|a| a == "say-error");
            let timeout = op_timeout(&args[4..]);
            let tx = q
                .sender()
                .unwrap_or_else(|e| fail(&format!("register: {e}")));
            let mut out = std::io::stdout().lock();
            writeln!(out, "registered").ok();
            out.flush().ok();
            let mut buf = vec![0u8; size.max(MIN_MSG)];
            for seq in 0..count {
                encode(&mut buf, producer, seq);
                let sent = match timeout {
                    Some(t) => tx.send_timeout(&buf, t),
                    None => tx.send(&buf).map_err(SendTimeoutError::from),
                };
                if let Err(e) = sent {
                    eprintln!("producer {producer}: send {seq} failed: {e}");
                    if say_error {
                        writeln!(out, "failed {seq} {}", send_error_kind(&e)).ok();
                    }
                    return Some(1);
                }
                if report {
                    writeln!(out, "s {seq}").ok();
                }
            }
            writeln!(out, "done").ok();
            Some(0)
        }
        // queue-consume NAME [report] [timeout=MS]
        // Receives until Disconnected. Prints "p COUNT SUM SUMSQ" per
        // producer, "torn N" and "disorder N"; with `report`, also "r P SEQ"
        // for every message as it arrives (for consumers that get killed)
        // and "torn-msg" for a message that fails its checksum.
        "queue-consume" => {
            let q = open(&args[0]);
            let report = args[1..].iter().any(|a| a == "report");
            let timeout = op_timeout(&args[1..]);
            let rx = q
                .receiver()
                .unwrap_or_else(|e| fail(&format!("register: {e}")));
            let mut out = std::io::stdout().lock();
            writeln!(out, "registered").ok();
            out.flush().ok();
            let mut per: std::collections::BTreeMap<u32, (u64, u128, u128, Option<u64>)> =
                Default::default();
            let (mut torn, mut disorder) = (0u64, 0u64);
            let mut buf = vec![0u8; q.slot_size()];
            loop {
                let got = match timeout {
                    Some(t) => rx.recv_with_timeout(t, |m| {
                        buf[..m.len()].copy_from_slice(m);
                        m.len()
                    }),
                    None => rx.recv_into(&mut buf).map_err(RecvTimeoutError::from),
                };
                match got {
                    Ok(n) => match decode(&buf[..n]) {
                        Some((p, seq)) => {
                            let e = per.entry(p).or_insert((0, 0, 0, None));
                            if e.3.is_some_and(|last| seq <= last) {
                                disorder += 1;
                            }
                            e.0 += 1;
                            e.1 += u128::from(seq);
                            e.2 += u128::from(seq) * u128::from(seq);
                            e.3 = Some(seq);
                            if report {
                                writeln!(out, "r {p} {seq}").ok();
                            }
                        }
                        None => {
                            torn += 1;
                            if report {
                                writeln!(out, "torn-msg").ok();
                            }
                        }
                    },
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(e) => {
                        eprintln!("consumer: recv failed: {e}");
                        return Some(1);
                    }
                }
            }
            for (p, (c, s, sq, _)) in per {
                writeln!(out, "p {p} {c} {s} {sq}").ok();
            }
            writeln!(out, "torn {torn}").ok();
            writeln!(out, "disorder {disorder}").ok();
            Some(0)
        }
        // queue-recv-one NAME TIMEOUT_MS: registers, prints "registered",
        // receives one message with a timeout, prints its length.
        "queue-recv-one" => {
            let q = open(&args[0]);
            let ms: u64 = arg(args, 1, "timeout ms");
            let rx = q.receiver().expect("register receiver");
            println!("registered");
            match rx.recv_timeout(Duration::from_millis(ms)) {
                Ok(m) => println!("got {}", m.len()),
                Err(e) => println!("err {e}"),
            }
            Some(0)
        }
        // queue-register-and-wait NAME producer|consumer: registers, prints
        // "registered", then sleeps until killed.
        "queue-register-and-wait" => {
            let q = open(&args[0]);
            let role = args.get(1).map(String::as_str).unwrap_or("producer");
            let _tx;
            let _rx;
            if role == "producer" {
                _tx = q.sender().expect("register sender");
            } else {
                _rx = q.receiver().expect("register receiver");
            }
            println!("registered");
            std::io::stdout().flush().ok();
            std::thread::sleep(Duration::from_secs(600));
            Some(0)
        }
        // queue-scribble NAME SEED MILLIS
        // A hostile process: for MILLIS ms writes random bytes, extreme
        // values and stale copies into the queue's segment (header, control
        // block with its lock, slot headers, payloads).
        "queue-scribble" => {
            let id: SegmentId = args[0].parse().expect("segment name");
            let seed: u64 = arg(args, 1, "seed");
            let millis: u64 = arg(args, 2, "millis");
            let mut seg =
                shm_core::Segment::open(&id).unwrap_or_else(|e| fail(&format!("open: {e}")));
            let header =
                shm_core::HeaderInfo::read(&seg).unwrap_or_else(|e| fail(&format!("header: {e}")));
            let data = header.data_offset as usize;
            let tail = header.tail_offset() as usize;
            let len = seg.len();
            let mut snapshot = vec![0u8; len.min(1 << 20)];
            seg.read_at(0, &mut snapshot)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let mut rng = seed | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let extremes = [
                0u64,
                u64::MAX,
                1 << 63,
                1,
                2,
                u64::from(u32::MAX),
                (1 << 63) - 1,
            ];
            let deadline = std::time::Instant::now() + Duration::from_millis(millis);
            let mut writes = 0u64;
            while std::time::Instant::now() < deadline {
                // Pick a region: 0 header, 1 control block, 2 slot headers
                // and payloads.
                let (lo, hi) = match next() % 8 {
                    0 => (0, data),
                    1..=4 => (data, tail),
                    _ => (tail, len),
                };
                if hi <= lo + 8 {
                    continue;
                }
                let off = (lo + (next() as usize) % (hi - lo - 8)) & !7;
                let off = off.max(lo);
                let value = match next() % 4 {
                    0 => next(),
                    1 => extremes[(next() as usize) % extremes.len()],
                    // A stale copy of what was there when we started.
                    2 if off + 8 <= snapshot.len() => {
                        u64::from_ne_bytes(snapshot[off..off + 8].try_into().unwrap_or_default())
                    }
                    _ => next() % 64,
                };
                let _ = seg.write_at(off, &value.to_ne_bytes());
                writes += 1;
                if writes.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            println!("writes {writes}");
            Some(0)
        }
        _ => None,
    }
}
