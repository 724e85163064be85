//! The compound-death suite: two deaths in a row, the second one while the
//! first one's leftovers are still in the queue, often on the very path
//! that cleans them up.
//!
//! For every ordered pair (A, B), A one of the ten `send:*`/`recv:*` kill
//! points and B one of those ten or the four recovery steps
//! (`recover:skip`, `recover:skipped`, `recover:free`, `recover:freed`):
//!
//! 1. a first process dies at A, on a queue of 4 slots of 64 bytes. For a
//!    `send:*` step it is a producer alone on a fresh queue, killed at its
//!    3rd pass (`A:3`): two messages committed and, depending on A, a dead
//!    claim on the third slot. For a `recv:*` step, a producer first
//!    queues 3 messages and exits, then a consumer dies at its 2nd pass
//!    (`A:2`): one message received and, depending on A, a dead claim on
//!    the second slot.
//! 2. a second process is started with `SHM_KILL_POINT=B:1`: a producer for
//!    `send:*` and `recover:free*`, a consumer for `recv:*` and
//!    `recover:skip*`. A consumer meets a dead producer's claim at the head
//!    and must skip it (`recover:skip*`); a producer sends more than the
//!    capacity and wraps around to a dead consumer's slot, which it must
//!    free (`recover:free*`). So where A left a claim of the other side,
//!    the second process dies in the middle of recovering it. Where B is a
//!    recovery step with nothing to recover, it simply finishes.
//! 3. a fresh consumer and a steady producer (20 messages, five times round
//!    the ring, over every slot a dead process may hold) run to the end.
//!
//! Over everything every process printed, the rules: every message whose
//! send returned success is received exactly once, in per-producer order,
//! except at most one per consumer that died after taking its message
//! (`recv:claimed`, `recv:reading`, `recv:read`, `recv:released`); nothing
//! torn (checksums), duplicated, or received that was never sent (the one
//! exception: the unreported last message of a producer that died at
//! `send:committed`); dead claims counted as recovered; and at the end no
//! producer, no consumer and no message left. The suite also checks that
//! each recovery step was really hit as the second death where it applies,
//! so it cannot silently stop covering recovery.
//!
//! `SHM_COMPOUND_PAIRS="send:claimed,recover:skip;recv:read,recover:free"`
//! runs only those pairs; `SHM_COMPOUND_THREADS` sets how many pairs run at
//! once (default 4: the processes mostly sleep in liveness slices). After
//! 10 failed pairs no new pair starts, unless `SHM_COMPOUND_KEEP_GOING` is
//! set. A failed pair prints what each of its processes printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::shim::real::AtomicUsize;
use shm_queue::Stats;
use shm_tests::{Cleanup, Proc, persistent_queue, read_line, spawn, spawn_env, unique_posix};

const SEND_STEPS: [&str; 5] = [
    "send:published",
    "send:claimed",
    "send:writing",
    "send:written",
    "send:committed",
];
const RECV_STEPS: [&str; 5] = [
    "recv:published",
    "recv:claimed",
    "recv:reading",
    "recv:read",
    "recv:released",
];
const RECOVER_STEPS: [&str; 4] = [
    "recover:skip",
    "recover:skipped",
    "recover:free",
    "recover:freed",
];

/// Steps after which the dead process leaves a claim on a slot that a
/// survivor of the other side must recover.
const LEAVES_CLAIM: [&str; 6] = [
    "send:claimed",
    "send:writing",
    "send:written",
    "recv:claimed",
    "recv:reading",
    "recv:read",
];
/// Consumer steps after which the message was taken: it may be lost with
/// its dead receiver (at most once), never delivered twice.
const TOOK_MESSAGE: [&str; 4] = ["recv:claimed", "recv:reading", "recv:read", "recv:released"];

const CAPACITY: u32 = 4;
const SLOT: u32 = 64;
const SIZE: &str = "64";
/// Messages of the steady producer: five times round the ring.
const STEADY: u64 = 20;
/// Messages the second process sends as a producer: past the capacity, so
/// that it wraps around to a slot the dead consumer holds.
const SECOND_SENDS: u32 = CAPACITY + 3;
/// Its deadline per send: nobody consumes while it runs, so it ends with a
/// timeout where there was nothing to recover. Many liveness slices long.
const SECOND_TIMEOUT_MS: u64 = 1500;
/// After this many failed pairs no new pair starts (a protocol that hangs
/// would otherwise cost a watchdog period per pair), unless
/// `SHM_COMPOUND_KEEP_GOING` is set.
const MAX_FAILURES: usize = 10;
/// Watchdog on every wait.
const LIMIT: Duration = Duration::from_secs(30);

/// Producer ids, as printed in the messages.
const PREFILL: u32 = 0;
const VICTIM: u32 = 1;
const SECOND: u32 = 2;
const STEADY_ID: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Producer(u32),
    Consumer,
}

/// One process of a pair, once it ended.
struct Run {
    what: &'static str,
    role: Role,
    /// The kill point it was given (`STEP:N`), if any.
    kill: Option<(&'static str, u32)>,
    status: ExitStatus,
    out: String,
}

impl Run {
    fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }

    /// The step it died at: its kill point, if SIGKILL ended it (nothing
    /// else sends one but the watchdog, which fails the test).
    fn died_at(&self) -> Option<&'static str> {
        self.kill.filter(|_| self.killed()).map(|(s, _)| s)
    }

    /// `s SEQ` lines: the sends that returned success.
    fn sent(&self) -> impl Iterator<Item = u64> + '_ {
        self.out
            .lines()
            .filter_map(|l| l.strip_prefix("s ")?.parse().ok())
    }

    /// `r P SEQ` lines: the messages received, in order.
    fn received(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.out.lines().filter_map(|l| {
            let mut f = l.strip_prefix("r ")?.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
    }
}

/// One pair's transcript; printed in full if the pair fails.
struct Pair {
    a: &'static str,
    b: &'static str,
    queue: String,
    runs: Vec<Run>,
    stats: Option<Stats>,
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pair ({}, {}) on {}:", self.a, self.b, self.queue)?;
        for r in &self.runs {
            let kp = r.kill.map(|(s, n)| format!(" SHM_KILL_POINT={s}:{n}"));
            writeln!(
                f,
                "  {} {:?}{} ended with {}; stdout: {:?}",
                r.what,
                r.role,
                kp.unwrap_or_default(),
                r.status,
                r.out
            )?;
        }
        if let Some(s) = &self.stats {
            writeln!(f, "  final {s:?}")?;
        }
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // A failed assertion or a watchdog unwinds through here: show what
        // every process of the pair printed.
        if std::thread::panicking() {
            eprintln!("{self}");
        }
    }
}

impl Pair {
    /// Runs one helper process to its end.
    fn run(
        &mut self,
        what: &'static str,
        role: Role,
        kill: Option<(&'static str, u32)>,
        args: &[&str],
    ) -> &Run {
        let p = match kill {
            Some((step, n)) => spawn_env(args, &[("SHM_KILL_POINT", &format!("{step}:{n}"))]),
            None => spawn(args),
        };
        self.finish(what, role, kill, p)
    }

    /// Waits for a started process, with the watchdog.
    fn finish(
        &mut self,
        what: &'static str,
        role: Role,
        kill: Option<(&'static str, u32)>,
        p: Proc,
    ) -> &Run {
        let (status, out) = p.wait(LIMIT);
        self.runs.push(Run {
            what,
            role,
            kill,
            status,
            out,
        });
        self.runs.last().expect("just pushed")
    }

    fn ctx(&self) -> String {
        format!("({}, {})", self.a, self.b)
    }

    /// The loss rules over everything every process printed, and the final
    /// stats.
    fn check(&self) {
        let ctx = self.ctx();
        let mut promised: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        let mut unreported_ok: BTreeSet<u32> = BTreeSet::new();
        let mut received: Vec<(u32, u64)> = Vec::new();
        let mut may_lose = 0u64;
        for r in &self.runs {
            assert!(
                !r.out.contains("torn-msg"),
                "{ctx}: {} delivered a torn message",
                r.what
            );
            match r.role {
                Role::Producer(p) => {
                    promised.entry(p).or_default().extend(r.sent());
                    if r.died_at() == Some("send:committed") {
                        unreported_ok.insert(p);
                    }
                }
                Role::Consumer => {
                    // The consumers ran one after another (each had ended
                    // before the next started), so their messages in run
                    // order are the order of delivery.
                    received.extend(r.received());
                    if r.died_at().is_some_and(|s| TOOK_MESSAGE.contains(&s)) {
                        may_lose += 1;
                    }
                    if !r.killed() {
                        assert!(
                            r.out.contains("torn 0") && r.out.contains("disorder 0"),
                            "{ctx}: {} saw torn or disordered messages",
                            r.what
                        );
                    }
                }
            }
        }
        // Nothing duplicated.
        let unique: BTreeSet<(u32, u64)> = received.iter().copied().collect();
        assert_eq!(
            unique.len(),
            received.len(),
            "{ctx}: a message was delivered twice: {received:?}"
        );
        // Per-producer order.
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for &(p, s) in &received {
            if let Some(prev) = last.insert(p, s) {
                assert!(
                    s > prev,
                    "{ctx}: producer {p}'s messages out of order ({prev} then {s})"
                );
            }
        }
        // Nothing received that was never sent: only promised messages, and
        // the last one of a producer that died at `send:committed`.
        for &(p, s) in &unique {
            let mine = promised.get(&p);
            let ok = mine.is_some_and(|m| m.contains(&s))
                || (unreported_ok.contains(&p)
                    && s == mine.and_then(|m| m.iter().next_back()).map_or(0, |m| m + 1));
            assert!(
                ok,
                "{ctx}: producer {p}'s message {s} arrived but was never sent"
            );
        }
        // Every promise kept, but for one message per consumer that died
        // holding it.
        let lost: Vec<(u32, u64)> = promised
            .iter()
            .flat_map(|(p, seqs)| seqs.iter().map(move |s| (*p, *s)))
            .filter(|m| !unique.contains(m))
            .collect();
        assert!(
            lost.len() as u64 <= may_lose,
            "{ctx}: promised messages {lost:?} lost, but only {may_lose} consumers died holding one"
        );
        // The processes that ran to the end sent everything.
        for (p, n) in [(PREFILL, 3), (STEADY_ID, STEADY)] {
            if let Some(seqs) = promised.get(&p) {
                assert_eq!(
                    seqs,
                    &(0..n).collect::<BTreeSet<_>>(),
                    "{ctx}: producer {p} did not send all"
                );
            }
        }
        let stats = self.stats.as_ref().expect("stats read");
        assert_eq!(
            (stats.producers, stats.consumers, stats.len),
            (0, 0, 0),
            "{ctx}: registrations or messages left: {stats:?}"
        );
        // A claim left by a dead process was recovered and counted. When the
        // second process died on the recovery path after the slot was
        // repaired, that one repair may have gone uncounted.
        let second = self.runs.iter().find(|r| r.what == "second");
        let leaves_claim = self
            .runs
            .iter()
            .any(|r| r.died_at().is_some_and(|s| LEAVES_CLAIM.contains(&s)));
        let died_after_repair = second
            .and_then(Run::died_at)
            .is_some_and(|s| s == "recover:skipped" || s == "recover:freed");
        if leaves_claim && !died_after_repair {
            assert!(
                stats.recovered >= 1,
                "{ctx}: a dead claim was left, but none recovered: {stats:?}"
            );
        }
    }
}

fn is_send(step: &str) -> bool {
    step.starts_with("send:")
}

/// Whether the scenario makes the second process pass B: every send and
/// receive passes the `send:*`/`recv:*` steps; a consumer meets a dead
/// producer's claim after `send:claimed`, `send:writing`, `send:written`;
/// a producer wraps around to a dead consumer's claim after
/// `recv:claimed`, `recv:reading`, `recv:read`.
fn must_hit(a: &str, b: &str) -> bool {
    if !b.starts_with("recover:") {
        return true;
    }
    let producer_claim = LEAVES_CLAIM.contains(&a) && is_send(a);
    let consumer_claim = LEAVES_CLAIM.contains(&a) && !is_send(a);
    if b.starts_with("recover:skip") {
        producer_claim
    } else {
        consumer_claim
    }
}

/// Runs pair (A, B); returns whether the second process died at B.
fn run_pair(a: &'static str, b: &'static str) -> bool {
    let id = unique_posix("compound");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let q = persistent_queue(&id, CAPACITY, SLOT);
    let name = id.to_string();
    let mut pair = Pair {
        a,
        b,
        queue: name.clone(),
        runs: Vec::new(),
        stats: None,
    };
    let ctx = pair.ctx();

    // 1. The first death.
    let victim = if is_send(a) {
        // Alone on a fresh queue (no consumer ever registered, so its sends
        // are queued, not refused): two sends commit, the third dies at A
        // with the queue not full.
        pair.run(
            "victim",
            Role::Producer(VICTIM),
            Some((a, 3)),
            &["queue-produce", &name, "1", "10", SIZE, "report"],
        )
    } else {
        let prefill = pair.run(
            "prefill",
            Role::Producer(PREFILL),
            None,
            &["queue-produce", &name, "0", "3", SIZE, "report"],
        );
        assert!(prefill.status.success(), "{ctx}: prefill failed");
        // Receives message 0, dies at A while taking message 1.
        pair.run(
            "victim",
            Role::Consumer,
            Some((a, 2)),
            &["queue-consume", &name, "report"],
        )
    };
    assert!(victim.killed(), "{ctx}: the first process did not die at A");

    // 2. The second death.
    let second_is_producer = is_send(b) || b.starts_with("recover:free");
    let second = if second_is_producer {
        // The test holds a consumer registration meanwhile: after a dead
        // victim consumer, the producer would otherwise rightly be told
        // that every consumer is gone before it reaches the dead slot. It
        // never receives.
        let anchor = q.receiver().expect("anchor registration");
        let timeout = format!("timeout={SECOND_TIMEOUT_MS}");
        let count = SECOND_SENDS.to_string();
        let args = [
            "queue-produce",
            &name,
            "2",
            &count,
            SIZE,
            "report",
            &timeout,
            "say-error",
        ];
        let r = pair.run("second", Role::Producer(SECOND), Some((b, 1)), &args);
        let hit = r.killed();
        drop(anchor);
        hit
    } else {
        pair.run(
            "second",
            Role::Consumer,
            Some((b, 1)),
            &["queue-consume", &name, "report"],
        )
        .killed()
    };
    if !second {
        let r = pair.runs.last().expect("second run");
        assert!(
            b.starts_with("recover:"),
            "{ctx}: the second process never passed {b}, which every send or receive passes"
        );
        if second_is_producer {
            // Nothing needed freeing, so the producer filled the ring and,
            // with nobody consuming, its next send timed out: that and
            // nothing else is how it may end.
            let last = r.out.lines().last().unwrap_or_default();
            assert!(
                r.status.code() == Some(1)
                    && last.starts_with("failed ")
                    && last.ends_with(" timeout"),
                "{ctx}: the second producer should have ended with a send timeout"
            );
        } else {
            // Nothing needed skipping: it drained the queue and, every
            // producer being dead or gone, was told so.
            assert!(r.status.success(), "{ctx}: the second consumer failed");
        }
    }
    assert_eq!(
        second,
        must_hit(a, b),
        "{ctx}: the second process {} B",
        if second {
            "died at, unexpectedly,"
        } else {
            "never reached"
        }
    );

    // 3. A fresh consumer and a steady producer. The test holds a producer
    // registration until both have registered, so the consumer does not stop
    // (every producer gone) before the steady producer starts.
    let anchor = q.sender().expect("anchor registration");
    let mut fresh = spawn(&["queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut fresh, LIMIT), "registered", "{ctx}");
    fresh.drain();
    let steady_n = STEADY.to_string();
    let mut steady = spawn(&["queue-produce", &name, "3", &steady_n, SIZE, "report"]);
    assert_eq!(read_line(&mut steady, LIMIT), "registered", "{ctx}");
    steady.drain();
    drop(anchor);
    let r = pair.finish("steady", Role::Producer(STEADY_ID), None, steady);
    assert!(
        r.status.success() && r.out.contains("done"),
        "{ctx}: the steady producer failed"
    );
    let r = pair.finish("fresh", Role::Consumer, None, fresh);
    assert!(r.status.success(), "{ctx}: the fresh consumer failed");

    pair.stats = Some(q.stats());
    pair.check();
    second
}

/// The pairs to run: all of them, or `SHM_COMPOUND_PAIRS`.
fn plan() -> (Vec<(&'static str, &'static str)>, bool) {
    let firsts = SEND_STEPS.iter().chain(&RECV_STEPS);
    let seconds: Vec<&'static str> = SEND_STEPS
        .iter()
        .chain(&RECV_STEPS)
        .chain(&RECOVER_STEPS)
        .copied()
        .collect();
    let all: Vec<(&'static str, &'static str)> = firsts
        .flat_map(|a| seconds.iter().map(move |b| (*a, *b)))
        .collect();
    match std::env::var("SHM_COMPOUND_PAIRS") {
        Ok(spec) if !spec.trim().is_empty() => {
            let wanted: Vec<(String, String)> = spec
                .split(';')
                .filter_map(|p| {
                    let (a, b) = p.trim().split_once(',')?;
                    Some((a.trim().to_owned(), b.trim().to_owned()))
                })
                .collect();
            let chosen: Vec<_> = all
                .into_iter()
                .filter(|(a, b)| wanted.iter().any(|(x, y)| x == a && y == b))
                .collect();
            assert!(!chosen.is_empty(), "SHM_COMPOUND_PAIRS matches no pair");
            (chosen, false)
        }
        _ => (all, true),
    }
}

/// A pair and whether its second process died at B, or why it failed.
type PairResult = ((&'static str, &'static str), Result<bool, String>);

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

#[test]
fn every_second_death_after_a_first_one_keeps_every_promise() {
    let (pairs, full) = plan();
    let threads = shm_tests::random::env_u64("SHM_COMPOUND_THREADS")
        .unwrap_or(4)
        .max(1) as usize;
    let started = Instant::now();
    let keep_going = std::env::var_os("SHM_COMPOUND_KEEP_GOING").is_some();
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let results: Mutex<Vec<PairResult>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(pairs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(a, b)) = pairs.get(i) else { break };
                    if !keep_going && failed.load(Ordering::Relaxed) >= MAX_FAILURES {
                        break;
                    }
                    let r = std::panic::catch_unwind(|| run_pair(a, b))
                        .map_err(|e| panic_text(e.as_ref()));
                    if r.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(((a, b), r));
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut hits: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut failures = Vec::new();
    for ((a, b), r) in &results {
        match r {
            Ok(true) if b.starts_with("recover:") => hits.entry(*b).or_default().push(*a),
            Ok(_) => {}
            Err(e) => failures.push(format!("({a}, {b}): {e}")),
        }
    }
    eprintln!(
        "compound: {} of {} pairs run in {:.1?} on {threads} threads, {} failed; recovery steps hit as the second death: {hits:?}",
        results.len(),
        pairs.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} pairs failed (transcripts above){}:\n{}",
        failures.len(),
        results.len(),
        if results.len() < pairs.len() {
            format!(
                "; stopped after {MAX_FAILURES} failures, {} pairs not run (SHM_COMPOUND_KEEP_GOING=1 runs them all)",
                pairs.len() - results.len()
            )
        } else {
            String::new()
        },
        failures.join("\n")
    );
    if full {
        for step in RECOVER_STEPS {
            assert!(
                hits.get(step).is_some_and(|v| !v.is_empty()),
                "no pair died at {step}: the suite no longer covers that recovery"
            );
        }
    }
}
