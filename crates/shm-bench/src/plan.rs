//! What one pass runs: the measures, their sizes and message counts, and
//! which contender takes part in which measure.

use std::time::Duration;

use serde_json::{Value, json};

use crate::transport::{ChanSpec, Contender};

/// One kind of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    /// Round trip of one message there and one back.
    PingPong,
    /// One producer streaming to one consumer.
    Stream,
    /// CPU time of a receiver blocked on an empty channel.
    Idle,
    /// Send-to-return latency of a receiver that has been asleep.
    Wake,
    /// `n` producers streaming to `n` consumers.
    Mpmc(usize),
}

impl Measure {
    /// Name in JSON and on the command line of a child.
    pub fn name(self) -> String {
        match self {
            Measure::PingPong => "pingpong".into(),
            Measure::Stream => "stream".into(),
            Measure::Idle => "idle".into(),
            Measure::Wake => "wake".into(),
            Measure::Mpmc(n) => format!("mpmc{n}"),
        }
    }

    fn parse(s: &str) -> Option<Measure> {
        Some(match s {
            "pingpong" => Measure::PingPong,
            "stream" => Measure::Stream,
            "idle" => Measure::Idle,
            "wake" => Measure::Wake,
            _ => Measure::Mpmc(s.strip_prefix("mpmc")?.parse().ok()?),
        })
    }
}

/// One run of one contender in one measure.
#[derive(Debug, Clone)]
pub struct Case {
    /// The measure.
    pub measure: Measure,
    /// Who.
    pub contender: Contender,
    /// Message size in bytes.
    pub size: usize,
    /// Timed messages (round trips, per-producer messages, wake samples).
    pub count: u64,
    /// Untimed round trips before the timed ones (ping-pong).
    pub warmup: u64,
    /// Producers (and as many consumers).
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Channel depth in messages.
    pub capacity: usize,
    /// How long the idle receiver stays blocked.
    pub idle: Duration,
    /// How long the sender sleeps before each wake-up sample.
    pub gap: Duration,
    /// Time limit of a ping-pong or streaming run: a producer stops early
    /// once it has sent for this long (the rate is over what it sent), a
    /// ping-pong once it has at least 1000 samples. Keeps a slow
    /// contender from stretching the run.
    pub limit: Duration,
    /// Messages per call for the batch API.
    pub batch: usize,
}

impl Case {
    /// The channel geometry.
    pub fn spec(&self) -> ChanSpec {
        ChanSpec {
            size: self.size,
            capacity: self.capacity,
        }
    }

    /// Key of the row group in the report: measure and size.
    pub fn key(&self) -> String {
        match self.measure {
            Measure::PingPong | Measure::Stream => format!("{}-{}", self.measure.name(), self.size),
            _ => self.measure.name(),
        }
    }

    /// To JSON, for a child's command line and for the report.
    pub fn to_json(&self) -> Value {
        json!({
            "measure": self.measure.name(),
            "contender": self.contender.name(),
            "size": self.size,
            "count": self.count,
            "warmup": self.warmup,
            "producers": self.producers,
            "consumers": self.consumers,
            "capacity": self.capacity,
            "idle_ms": self.idle.as_millis() as u64,
            "gap_ms": self.gap.as_millis() as u64,
            "limit_ms": self.limit.as_millis() as u64,
            "batch": self.batch,
        })
    }

    /// From [`Case::to_json`].
    pub fn from_json(v: &Value) -> Option<Case> {
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Case {
            measure: Measure::parse(v.get("measure")?.as_str()?)?,
            contender: Contender::from_name(v.get("contender")?.as_str()?)?,
            size: u("size")? as usize,
            count: u("count")?,
            warmup: u("warmup")?,
            producers: u("producers")? as usize,
            consumers: u("consumers")? as usize,
            capacity: u("capacity")? as usize,
            idle: Duration::from_millis(u("idle_ms")?),
            gap: Duration::from_millis(u("gap_ms")?),
            limit: Duration::from_millis(u("limit_ms")?),
            batch: u("batch")? as usize,
        })
    }
}

/// Whether `c` takes part in `m` at `size`, or why not (shown as n/a).
pub fn applicable(c: Contender, m: Measure) -> Result<(), String> {
    let same_wait = |as_: &str| Err(format!("waits exactly like {as_}"));
    match m {
        Measure::Mpmc(_) if c == Contender::ShmQueueAsync => {
            Err("the async receiver is measured one to one".into())
        }
        Measure::PingPong if c == Contender::ShmQueueBatch => {
            Err("a batch needs a stream; ping-pong has one message in flight".into())
        }
        Measure::Idle | Measure::Wake => match c {
            Contender::SpinRingInPlace => same_wait("spin-ring"),
            Contender::ShmQueueZeroCopy | Contender::ShmQueueBatch => same_wait("shm-queue"),
            _ => Ok(()),
        },
        Measure::Mpmc(_) => match c {
            Contender::Pipe | Contender::CondvarRing | Contender::ShmQueue => Ok(()),
            Contender::Iceoryx2 | Contender::Iceoryx2Event => Err(
                "publish-subscribe hands every sample to every subscriber: no work sharing".into(),
            ),
            _ => Err(
                "multi-producer runs cover shm-queue, the condvar ring and the pipe baseline"
                    .into(),
            ),
        },
        _ => Ok(()),
    }
}

/// The sizes used.
pub const SMALL: usize = 64;
/// 4 KiB.
pub const PAGE: usize = 4096;
/// 1 MiB.
pub const LARGE: usize = 1 << 20;

/// Every case of one pass, in the order they run: measure by measure, and
/// within a measure every contender in turn, so that a slow moment of the
/// machine hits one measure of many contenders rather than all measures of
/// one.
pub fn pass(quick: bool, contenders: &[Contender]) -> Vec<Case> {
    let base = |measure, contender, size, count| Case {
        measure,
        contender,
        size,
        count,
        warmup: 0,
        producers: 1,
        consumers: 1,
        capacity: if size >= LARGE { 8 } else { 256 },
        idle: Duration::from_millis(0),
        gap: Duration::from_millis(0),
        limit: Duration::from_millis(if quick { 200 } else { 1_000 }),
        batch: 32,
    };
    let pick = |q: u64, full: u64| if quick { q } else { full };
    let mut cases = Vec::new();
    for &size in &[SMALL, PAGE] {
        for &c in contenders {
            let mut case = base(Measure::PingPong, c, size, pick(500, 10_000));
            case.warmup = pick(50, 1_000);
            cases.push(case);
        }
    }
    for &(size, q, full) in &[
        (SMALL, 20_000, 5_000_000),
        (PAGE, 2_000, 500_000),
        (LARGE, 100, 5_000),
    ] {
        for &c in contenders {
            cases.push(base(Measure::Stream, c, size, pick(q, full)));
        }
    }
    for &c in contenders {
        let mut case = base(Measure::Idle, c, SMALL, 1);
        case.idle = Duration::from_millis(pick(300, 2_000));
        cases.push(case);
    }
    for &c in contenders {
        let mut case = base(Measure::Wake, c, SMALL, pick(20, 50));
        case.gap = Duration::from_millis(10);
        cases.push(case);
    }
    for n in [1usize, 2, 4] {
        for &c in contenders {
            let mut case = base(
                Measure::Mpmc(n),
                c,
                SMALL,
                pick(20_000, 2_000_000) / n as u64,
            );
            case.producers = n;
            case.consumers = n;
            cases.push(case);
        }
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_survive_the_command_line() {
        for case in pass(true, &Contender::ALL) {
            let back = Case::from_json(&case.to_json()).expect("parses");
            assert_eq!(back.to_json(), case.to_json());
            assert_eq!(back.key(), case.key());
        }
    }

    #[test]
    fn every_measure_has_its_references() {
        for m in [
            Measure::PingPong,
            Measure::Stream,
            Measure::Idle,
            Measure::Wake,
        ] {
            assert!(applicable(Contender::Pipe, m).is_ok());
            assert!(applicable(Contender::SpinRing, m).is_ok());
            assert!(applicable(Contender::ShmQueue, m).is_ok());
        }
        for n in [1, 2, 4] {
            assert!(applicable(Contender::ShmQueue, Measure::Mpmc(n)).is_ok());
            assert!(applicable(Contender::CondvarRing, Measure::Mpmc(n)).is_ok());
            assert!(applicable(Contender::Pipe, Measure::Mpmc(n)).is_ok());
        }
        let full = pass(false, &Contender::ALL);
        for c in [Contender::ShmQueue, Contender::CondvarRing] {
            assert!(
                full.iter()
                    .any(|k| k.contender == c && k.key() == "mpmc2" && k.producers == 2),
                "a full pass runs {} 2 × 2",
                c.name()
            );
        }
    }
}
