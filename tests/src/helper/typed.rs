//! `typed-*` and `serde-*` subcommands: a producer of derived typed
//! messages and one of serialized messages, written without `unsafe`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shm_core::SegmentId;
use shm_queue::{Queue, ShmSafe, TypedQueue};

/// A typed message whose `ShmSafe` impl is derived: no `unsafe` anywhere
/// in the tests for it.
#[derive(Clone, Copy, Debug, PartialEq, ShmSafe)]
#[repr(C)]
pub struct Reading {
    /// Sequence number.
    pub seq: u64,
    /// Who sent it.
    pub sensor: u32,
    /// Explicit padding, so the struct has none.
    pub flags: u32,
    /// Some values derived from `seq`.
    pub values: [f64; 3],
}

impl Reading {
    /// The message number `seq` from `sensor`.
    pub fn new(sensor: u32, seq: u64) -> Self {
        let x = seq as f64;
        Reading {
            seq,
            sensor,
            flags: (seq % 7) as u32,
            values: [x, x * 0.5, -x],
        }
    }
}

/// A serialized message: owns heap data, so it could never be `ShmSafe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A named thing with a list.
    Order {
        /// Sequence number.
        seq: u64,
        /// A string of varying length.
        item: String,
        /// A vector of varying length.
        amounts: Vec<u32>,
    },
    /// The end.
    Done,
}

impl Event {
    /// The message number `seq`.
    pub fn order(seq: u64) -> Self {
        Event::Order {
            seq,
            item: "x".repeat((seq % 20) as usize),
            amounts: (0..(seq % 5) as u32).collect(),
        }
    }
}

const LIMIT: Duration = Duration::from_secs(30);

fn fail(msg: &str) -> ! {
    eprintln!("shm-test-helper: {msg}");
    std::process::exit(1);
}

fn id(name: &str) -> SegmentId {
    SegmentId::posix(name).unwrap_or_else(|e| fail(&format!("bad name {name}: {e}")))
}

fn count(args: &[String]) -> u64 {
    args.get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| fail("usage: NAME COUNT"))
}

/// Runs a `typed-*`/`serde-*` subcommand; `None` if `cmd` is another's.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    match cmd {
        // typed-send NAME COUNT: sends Reading::new(pid, 0..COUNT) through
        // a TypedQueue<Reading>.
        "typed-send" => {
            let q = TypedQueue::<Reading>::open(&id(&args[0]))
                .unwrap_or_else(|e| fail(&format!("open: {e}")));
            let tx = q
                .sender()
                .unwrap_or_else(|e| fail(&format!("register: {e}")));
            for seq in 0..count(args) {
                tx.send_timeout(Reading::new(std::process::id(), seq), LIMIT)
                    .unwrap_or_else(|e| fail(&format!("send {seq}: {e}")));
            }
            Some(0)
        }
        // serde-send NAME COUNT: sends Event::order(0..COUNT), then a
        // malformed message, then Event::Done, serialized.
        "serde-send" => {
            let q = Queue::open(&id(&args[0])).unwrap_or_else(|e| fail(&format!("open: {e}")));
            let tx = q
                .sender()
                .unwrap_or_else(|e| fail(&format!("register: {e}")));
            for seq in 0..count(args) {
                tx.send_serialized(&Event::order(seq))
                    .unwrap_or_else(|e| fail(&format!("send {seq}: {e}")));
            }
            tx.send(&[0xff, 0xff])
                .unwrap_or_else(|e| fail(&format!("send garbage: {e}")));
            tx.send_serialized(&Event::Done)
                .unwrap_or_else(|e| fail(&format!("send done: {e}")));
            Some(0)
        }
        _ => None,
    }
}
