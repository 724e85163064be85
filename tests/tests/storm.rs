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
use shm_queue::Queue;
use shm_tests::{Cleanup, persistent_queue, read_line, spawn, spawn_env, unique_posix};

const LIMIT: Duration = Duration::from_secs(60);

fn queue(id: &SegmentId) -> Queue {
    persistent_queue(id, 4, 64)
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

/// The storm's signal count from a helper's output (also printed, for
/// the figures in docs/reliability.md).
fn storm_count(out: &str) -> u64 {
    let n = out
        .lines()
        .find_map(|l| l.strip_prefix("storm signals ")?.parse().ok())
        .unwrap_or(0);
    eprintln!("storm: {n} signals delivered");
    n
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

// ---------------------------------------------------------------------
// Every blocking call of shm-sync, and shm-core's wait for a creator that
// is still initializing, under the same storm (issue #11, item 3). Each
// call runs in a `storm` helper; each test checks that the call neither
// hangs (watchdog) nor returns before its deadline without a reason, that
// a dead owner is still noticed (within `NOTICE` of the kill: a generous
// liveness bound, the slices are 100 ms), and that the storm happened.

use std::time::Instant;

use shm_core::{Shared, SharedOptions};
use shm_tests::Proc;
use shm_tests::helper::core::Gate;
use shm_tests::helper::sync::{DIRTY, Objects};
use shm_tests::unique_sysv;

/// How soon after a kill the death must be noticed: generous (the slices
/// are 100 ms), only so that "noticed at the deadline" cannot pass.
const NOTICE: Duration = Duration::from_secs(10);
/// The short deadline of the timed calls.
const SHORT_MS: u64 = 300;

fn objects(tag: &str) -> (SegmentId, Cleanup, Objects) {
    let id = unique_posix(tag);
    let cleanup = Cleanup::new(std::slice::from_ref(&id));
    let o = Objects::create(&id, 0);
    (id, cleanup, o)
}

/// The first line of `out`, split into words.
fn words(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The number after the word `key` on the first line of `out`.
fn number_after(out: &str, key: &str) -> u64 {
    let w = words(out);
    let i = w
        .iter()
        .position(|x| x == key)
        .unwrap_or_else(|| panic!("no {key:?} in {out}"));
    w[i + 1]
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {out}"))
}

/// The last word of the first line of `out`, as a number.
fn last_number(out: &str) -> u64 {
    words(out)
        .last()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed time in {out}"))
}

/// A timed call in a storm that must report `what` after at least its
/// deadline; returns the storm's signal count.
fn expires_not_early(args: &[&str], what: &str, at_least: u64) -> u64 {
    let out = spawn(args).success(LIMIT);
    assert_eq!(words(&out).first().map(String::as_str), Some(what), "{out}");
    // `timed-out E` or `stuck PID E`: the elapsed time comes last.
    let elapsed = last_number(&out);
    assert!(
        elapsed >= at_least,
        "`{}` returned after {elapsed} ms, before its {at_least} ms deadline",
        args.join(" ")
    );
    let n = storm_count(&out);
    assert!(n >= 5, "the storm did not happen: {out}");
    n
}

/// Lets `p` block inside the storm for a while, kills `victim`, and
/// returns `p`'s output, asserting the death was noticed within `NOTICE`.
fn kill_then_collect(p: Proc, mut victim: Proc) -> String {
    std::thread::sleep(Duration::from_millis(SHORT_MS));
    let killed = Instant::now();
    victim.kill();
    let _ = victim.wait(LIMIT);
    let out = p.success(LIMIT);
    assert!(
        killed.elapsed() < NOTICE,
        "the death was noticed only after {:?}: {out}",
        killed.elapsed()
    );
    assert!(storm_count(&out) >= 5, "the storm did not happen: {out}");
    out
}

fn holder(name: &str, cmd: &str) -> Proc {
    let mut h = spawn(&[cmd, name]);
    assert_eq!(read_line(&mut h, LIMIT), "locked");
    h
}

#[test]
fn mutex_lock_and_lock_timeout_in_a_signal_storm() {
    let (id, _clean, o) = objects("storm-mutex");
    let name = id.to_string();
    // A live holder: the timed lock expires, not early.
    let h = holder(&name, "sync-hold");
    let ms = SHORT_MS.to_string();
    expires_not_early(
        &["storm", "sync-lock-for", &name, &ms],
        "timed-out",
        SHORT_MS,
    );
    // The holder dies while an untimed lock waits: owner-died, on time.
    let waiter = spawn(&["storm", "sync-lock-block", &name]);
    let out = kill_then_collect(waiter, h);
    assert!(out.starts_with(&format!("owner-died {DIRTY} ")), "{out}");
    // Again with a long timed lock.
    let h = holder(&name, "sync-hold");
    let waiter = spawn(&["storm", "sync-lock-for", &name, "60000"]);
    let out = kill_then_collect(waiter, h);
    assert!(out.starts_with(&format!("owner-died {DIRTY} ")), "{out}");
    // Repaired and free: taken at once.
    let out = spawn(&["storm", "sync-lock-block", &name]).success(LIMIT);
    assert!(out.starts_with("ok 0 "), "{out}");
    assert!(matches!(o.mutex().try_lock(), Ok(g) if *g == 0));
}

#[test]
fn condvar_waits_in_a_signal_storm() {
    for kind in ["pthread", "futex"] {
        let (id, _clean, o) = objects(&format!("storm-cv-{kind}"));
        let name = id.to_string();
        let ms = SHORT_MS.to_string();
        // Nobody notifies: the timed wait ends at its deadline, and says so.
        expires_not_early(
            &["storm", "sync-cv-timeout", &name, kind, &ms],
            "timed-out",
            SHORT_MS,
        );
        // One `wait_timeout`, no loop around it: a signal is no reason to
        // return, so it ends at its deadline. (FutexCondvar used to return
        // at the first signal, as if woken.)
        let out = spawn(&["storm", "sync-cv-timeout", &name, kind, &ms, "once"]).success(LIMIT);
        assert!(
            out.starts_with("timed-out "),
            "{kind}: returned early: {out}"
        );
        assert!(last_number(&out) >= SHORT_MS, "{kind}: {out}");
        // An untimed wait, interrupted every 20 ms, still returns only
        // when notified (`wait_while` re-checks after each return).
        let mut w = spawn(&["storm", "sync-cv-wait", &name, kind, "1"]);
        assert_eq!(read_line(&mut w, LIMIT), "waiting");
        std::thread::sleep(Duration::from_millis(SHORT_MS));
        assert!(
            w.try_status().expect("try_wait").is_none(),
            "returned early"
        );
        *o.mutex().lock().map_err(|e| e.to_string()).expect("lock") = 1;
        match kind {
            "futex" => o.futex_condvar().notify_one(),
            _ => o.condvar().notify_one(),
        }
        let out = w.success(LIMIT);
        assert!(out.starts_with("woke 1"), "{kind}: {out}");
        assert!(storm_count(&out) >= 5, "the storm did not happen: {out}");
        // A timed wait that is notified in time returns woken.
        let w = spawn(&["storm", "sync-cv-timeout", &name, kind, "60000"]);
        std::thread::sleep(Duration::from_millis(SHORT_MS));
        *o.mutex().lock().map_err(|e| e.to_string()).expect("lock") = 2;
        match kind {
            "futex" => o.futex_condvar().notify_all(),
            _ => o.condvar().notify_all(),
        }
        let out = w.success(LIMIT);
        assert!(out.starts_with("woke 2 "), "{kind}: {out}");
    }
}

#[test]
fn semaphore_waits_in_a_signal_storm() {
    let (id, _clean, o) = objects("storm-sem");
    let name = id.to_string();
    let ms = SHORT_MS.to_string();
    let out = spawn(&["storm", "sync-sem-timeout", &name, "1", &ms]).success(LIMIT);
    let (what, rest) = out.split_once(' ').expect("`WHAT MS`");
    assert_eq!(what, "timed-out", "{out}");
    let elapsed: u64 = rest.lines().next().unwrap().trim().parse().unwrap();
    assert!(elapsed >= SHORT_MS, "returned after {elapsed} ms: {out}");
    assert!(storm_count(&out) >= 5, "{out}");
    let w = spawn(&["storm", "sync-sem-wait", &name, "0", "1"]);
    std::thread::sleep(Duration::from_millis(SHORT_MS));
    o.semaphore(0).post().expect("post");
    let out = w.success(LIMIT);
    assert!(out.starts_with("got 1"), "{out}");
    assert!(storm_count(&out) >= 5, "{out}");
    assert_eq!(o.semaphore(0).value(), 0);
    assert_eq!((o.semaphore(0).waiters(), o.semaphore(1).waiters()), (0, 0));
}

#[test]
fn owner_lock_in_a_signal_storm() {
    let (id, _clean, o) = objects("storm-owner");
    let name = id.to_string();
    let h = holder(&name, "sync-owner-hold");
    let ms = SHORT_MS.to_string();
    expires_not_early(
        &["storm", "sync-owner-lock-for", &name, &ms],
        "stuck",
        SHORT_MS,
    );
    let dead = h.pid();
    let waiter = spawn(&["storm", "sync-owner-lock-for", &name, "60000"]);
    let out = kill_then_collect(waiter, h);
    assert!(out.starts_with(&format!("taken-over {dead} ")), "{out}");
    assert_eq!(o.owner_lock().holder(), None);
}

#[test]
fn a_bare_wait_word_sleep_in_a_signal_storm() {
    let (id, _clean, o) = objects("storm-waitword");
    let name = id.to_string();
    let ms = SHORT_MS.to_string();
    // `WaitWord::sleep` returns `Woken` on each signal (a spurious
    // wake-up, documented); a loop with the same absolute deadline still
    // ends at the deadline.
    let out = spawn(&["storm", "sync-ww-sleep", &name, &ms]).success(LIMIT);
    assert!(out.starts_with("timed-out "), "{out}");
    assert!(number_after(&out, "timed-out") >= SHORT_MS, "{out}");
    assert!(
        number_after(&out, "returns") >= 1,
        "no sleep was interrupted: {out}"
    );
    assert!(storm_count(&out) >= 5, "{out}");
    let w = spawn(&["storm", "sync-ww-sleep", &name, "60000"]);
    std::thread::sleep(Duration::from_millis(SHORT_MS));
    o.wait_word().transition(0, 1).expect("the word holds 0");
    let out = w.success(LIMIT);
    assert!(out.starts_with("changed 1 "), "{out}");
}

fn gate() -> (SegmentId, Shared<Gate>) {
    let id = unique_posix("storm-gate");
    let gate =
        Shared::<Gate>::create(&id, &SharedOptions::new(), |_| Ok(())).expect("create the gate");
    (id, gate)
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

#[test]
fn an_opener_waiting_for_an_initializing_creator_in_a_signal_storm() {
    use std::sync::atomic::Ordering;
    for id in [unique_posix("storm-init"), unique_sysv()] {
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let name = id.to_string();
        // A live creator that never finishes: InitTimeout, not early.
        let mut creator = spawn(&["core-init-hang", &name]);
        assert_eq!(read_line(&mut creator, LIMIT), "initializing");
        let ms = SHORT_MS.to_string();
        let (_, out) = spawn(&["storm", "core-open", &name, &ms]).wait(LIMIT);
        assert!(out.contains("error=InitTimeout"), "{name}: {out}");
        let elapsed: u64 = field(&out, "elapsed_ms").parse().unwrap();
        assert!(elapsed >= SHORT_MS, "{name}: gave up after {elapsed} ms");
        assert!(storm_count(&out) >= 5, "{out}");
        // The creator dies while an opener waits: CreatorDied, on time.
        let mut opener = spawn(&["storm", "core-open", &name, "60000"]);
        assert_eq!(read_line(&mut opener, LIMIT), "state=initializing");
        std::thread::sleep(Duration::from_millis(SHORT_MS));
        let killed = Instant::now();
        creator.kill();
        let _ = creator.wait(LIMIT);
        let (_, out) = opener.wait(LIMIT);
        assert!(out.contains("error=CreatorDied"), "{name}: {out}");
        assert!(killed.elapsed() < NOTICE, "{name}: noticed late: {out}");
        assert!(storm_count(&out) >= 5, "{out}");
        let _ = shm_core::remove(&id);
        // A slow creator that finishes: the opener gets the segment.
        let (gate_id, gate) = gate();
        let _clean_gate = Cleanup::new(std::slice::from_ref(&gate_id));
        let mut creator = spawn(&["core-slow-create", &name, &gate_id.to_string()]);
        assert_eq!(read_line(&mut creator, LIMIT), "initializing");
        let mut opener = spawn(&["storm", "core-open", &name, "60000"]);
        assert_eq!(read_line(&mut opener, LIMIT), "state=initializing");
        std::thread::sleep(Duration::from_millis(SHORT_MS));
        gate.get()[1].store(1, Ordering::Release);
        let out = opener.success(LIMIT);
        assert_eq!(field(&out, "created"), "false", "{out}");
        assert!(storm_count(&out) >= 5, "{out}");
        creator.success(LIMIT);
    }
}
