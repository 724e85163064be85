//! Signal storms: a queue user whose main thread gets a `SIGALRM` every
//! 20 ms from a handler installed without `SA_RESTART` (every futex wait
//! and sleep keeps failing with `EINTR`) still recovers a dead peer's claim
//! within its liveness slice, never hangs, and never returns from a timed
//! wait early. Whether a claimer is dead is decided by elapsed time, not by
//! how a wait ended: with the decision tied to a futex wait timing out, the
//! storm would keep every wait from timing out and the consumer would wait
//! on the dead claim forever (the watchdog below turns that into a
//! failure).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use shm_core::SegmentId;
use shm_queue::{Lifetime, Queue, QueueOptions};
use shm_tests::{Cleanup, read_line, spawn, spawn_env, unique_posix};

const LIMIT: Duration = Duration::from_secs(60);

fn queue(id: &SegmentId) -> Queue {
    Queue::create(
        id,
        &QueueOptions::new()
            .capacity(4)
            .slot_size(64)
            .lifetime(Lifetime::Persistent),
    )
    .expect("create")
}

/// `r P SEQ` lines.
fn received(out: &str, producer: u32) -> Vec<u64> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("r ")?.split_whitespace();
            let p: u32 = f.next()?.parse().ok()?;
            let s: u64 = f.next()?.parse().ok()?;
            (p == producer).then_some(s)
        })
        .collect()
}

fn storm_count(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("storm signals ")?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_consumer_in_a_signal_storm_recovers_a_dead_producers_claim() {
    let id = unique_posix("storm-skip");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let q = queue(&id);
    let name = id.to_string();
    // Producer 1 sends 0 and 1, claims position 2 and dies there.
    let victim = spawn_env(
        &["queue-produce", &name, "1", "50", "64", "report"],
        &[("SHM_KILL_POINT", "send:claimed:3")],
    );
    let (status, _) = victim.wait(LIMIT);
    assert_eq!(
        status.signal(),
        Some(9),
        "the victim did not die at its kill point"
    );
    let mut consumer = spawn(&["storm", "queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut consumer, LIMIT), "registered");
    consumer.drain();
    let steady = spawn(&["queue-produce", &name, "2", "100", "64"]);
    assert!(steady.success(LIMIT).contains("done"));
    let out = consumer.success(LIMIT);
    assert!(
        out.contains("torn 0") && out.contains("disorder 0"),
        "{out}"
    );
    assert_eq!(
        received(&out, 1),
        vec![0, 1],
        "the dead producer's committed messages"
    );
    assert_eq!(received(&out, 2), (0..100).collect::<Vec<_>>());
    assert!(storm_count(&out) >= 2, "the storm did not happen: {out}");
    let stats = q.stats();
    assert!(
        stats.recovered >= 1,
        "the dead claim was not recovered: {stats:?}"
    );
    assert_eq!(
        (stats.producers, stats.consumers, stats.len),
        (0, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn a_producer_in_a_signal_storm_frees_a_dead_consumers_slot() {
    let id = unique_posix("storm-free");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let q = queue(&id);
    let name = id.to_string();
    // Three messages wait; a consumer takes position 0 and dies holding it.
    assert!(
        spawn(&["queue-produce", &name, "1", "3", "64"])
            .success(LIMIT)
            .contains("done")
    );
    let victim = spawn_env(
        &["queue-consume", &name, "report"],
        &[("SHM_KILL_POINT", "recv:claimed:1")],
    );
    let (status, _) = victim.wait(LIMIT);
    assert_eq!(
        status.signal(),
        Some(9),
        "the victim did not die at its kill point"
    );
    // An idle producer keeps the consumer from seeing every producer gone
    // before the storm producer has registered.
    let mut anchor = spawn(&["queue-register-and-wait", &name, "producer"]);
    assert_eq!(read_line(&mut anchor, LIMIT), "registered");
    let mut consumer = spawn(&["queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut consumer, LIMIT), "registered");
    consumer.drain();
    // Wrapping around, the producer meets the dead consumer's slot at
    // position 4 and must free it, interrupted every 20 ms.
    let producer = spawn(&["storm", "queue-produce", &name, "2", "40", "64"]);
    let pout = producer.success(LIMIT);
    assert!(pout.contains("done"), "{pout}");
    // A few signals at least (the producer may be done within 100 ms).
    assert!(storm_count(&pout) >= 2, "the storm did not happen: {pout}");
    anchor.kill();
    let out = consumer.success(LIMIT);
    assert!(
        out.contains("torn 0") && out.contains("disorder 0"),
        "{out}"
    );
    assert_eq!(
        received(&out, 1),
        vec![1, 2],
        "all but the message the victim took"
    );
    assert_eq!(received(&out, 2), (0..40).collect::<Vec<_>>());
    assert!(q.stats().recovered >= 1, "{:?}", q.stats());
}

#[test]
fn a_timed_receive_in_a_signal_storm_neither_hangs_nor_returns_early() {
    let id = unique_posix("storm-timeout");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = queue(&id);
    let name = id.to_string();
    // A producer registered and idle: the receiver waits, it is not
    // disconnected.
    let mut idle = spawn(&["queue-register-and-wait", &name, "producer"]);
    assert_eq!(read_line(&mut idle, LIMIT), "registered");
    let waiter = spawn(&["storm", "timed-recv", &name, "300"]);
    let out = waiter.success(LIMIT);
    let after: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("timeout-after ")?.parse().ok())
        .unwrap_or_else(|| panic!("no timeout reported: {out}"));
    assert!(
        after >= 300,
        "returned after {after} ms, before its 300 ms deadline"
    );
    assert!(storm_count(&out) > 5, "the storm did not happen: {out}");
    idle.kill();
}
