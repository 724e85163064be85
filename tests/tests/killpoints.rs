//! Deterministic kill points: a process kills itself with SIGKILL exactly at
//! a named step of the queue protocol (feature `kill-points` of shm-queue),
//! and the queue must stay usable with nothing torn, duplicated or lost that
//! was promised.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use shm_core::SegmentId;
use shm_queue::{Queue, QueueOptions};
use shm_tests::{Cleanup, Proc, read_line, spawn, spawn_env, unique_posix};

const LIMIT: Duration = Duration::from_secs(60);

fn queue(id: &SegmentId) -> Queue {
    let mut q = Queue::create(id, &QueueOptions::new().capacity(4).slot_size(64)).expect("create");
    q.segment_mut().set_owner(false);
    q
}

fn died_by_sigkill(p: Proc, point: &str) -> String {
    let (status, out) = p.wait(LIMIT);
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: the victim did not die at its kill point ({status})"
    );
    out
}

/// `r P SEQ` lines of a reporting consumer.
fn received(out: &str) -> Vec<(u32, u64)> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("r ")?.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

fn check_clean(out: &str) {
    assert!(out.contains("torn 0"), "torn messages: {out}");
    assert!(out.contains("disorder 0"), "out of order: {out}");
}

#[test]
fn a_producer_killed_at_any_send_step_loses_nothing_it_was_promised() {
    let points = [
        ("send:locked", 10, true),
        ("send:claimed", 10, true),
        ("send:writing", 10, false),
        ("send:written", 10, false),
        ("register:locked", 1, true),
        ("register:taken", 1, true),
        ("unregister:locked", 1, true),
    ];
    for (point, hit, holds_lock) in points {
        let id = unique_posix("kp-send");
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let q = queue(&id);
        let name = id.to_string();
        let mut consumer = spawn(&["queue-consume", &name, "report"]);
        assert_eq!(read_line(&mut consumer, LIMIT), "registered");
        consumer.drain();
        let kp = format!("{point}:{hit}");
        let victim = spawn_env(
            &["queue-produce", &name, "1", "50", "64", "report"],
            &[("SHM_KILL_POINT", &kp)],
        );
        let vout = died_by_sigkill(victim, point);
        let promised: BTreeSet<u64> = vout
            .lines()
            .filter_map(|l| l.strip_prefix("s ").and_then(|s| s.parse().ok()))
            .collect();
        let steady = spawn(&["queue-produce", &name, "2", "200", "64"]);
        assert!(
            steady.success(LIMIT).contains("done"),
            "{point}: steady producer failed"
        );
        // Ends only once the dead producer's registration was reclaimed.
        let out = consumer.success(LIMIT);
        check_clean(&out);
        let got = received(&out);
        let from1: Vec<u64> = got
            .iter()
            .filter(|(p, _)| *p == 1)
            .map(|(_, s)| *s)
            .collect();
        let from2: Vec<u64> = got
            .iter()
            .filter(|(p, _)| *p == 2)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            from2,
            (0..200).collect::<Vec<_>>(),
            "{point}: steady producer not exactly once"
        );
        // The dead producer's messages: an exact prefix, covering every
        // send that returned success.
        assert_eq!(
            from1,
            (0..from1.len() as u64).collect::<Vec<_>>(),
            "{point}: not a prefix"
        );
        assert!(
            promised.iter().all(|s| (*s as usize) < from1.len()),
            "{point}: a promised message was lost"
        );
        let stats = q.stats();
        assert_eq!(
            (stats.producers, stats.consumers, stats.len),
            (0, 0, 0),
            "{point}: {stats:?}"
        );
        if holds_lock {
            assert!(
                stats.lock_repairs >= 1,
                "{point}: the lock was not repaired: {stats:?}"
            );
        }
    }
}

#[test]
fn a_consumer_killed_at_any_recv_step_loses_at_most_the_message_it_took() {
    // (point, messages the death may lose, whether it holds the lock)
    let points = [
        ("recv:locked", 0, true),
        ("recv:claimed", 0, true),
        ("recv:reading", 1, false),
        ("recv:read", 1, false),
    ];
    for (point, may_lose, holds_lock) in points {
        let id = unique_posix("kp-recv");
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let q = queue(&id);
        let name = id.to_string();
        let kp = format!("{point}:10");
        let mut victim = spawn_env(
            &["queue-consume", &name, "report"],
            &[("SHM_KILL_POINT", &kp)],
        );
        assert_eq!(read_line(&mut victim, LIMIT), "registered");
        victim.drain();
        let mut producer = spawn(&["queue-produce", &name, "3", "100", "64", "report"]);
        producer.drain();
        let vout = died_by_sigkill(victim, point);
        let mut survivor = spawn(&["queue-consume", &name, "report"]);
        survivor.drain();
        assert!(
            producer.success(LIMIT).contains("done"),
            "{point}: producer did not finish"
        );
        let sout = survivor.success(LIMIT);
        check_clean(&sout);
        let mut all = received(&vout);
        all.extend(received(&sout));
        let seqs: Vec<u64> = all.iter().map(|(_, s)| *s).collect();
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "{point}: a message was delivered twice"
        );
        let lost = 100 - unique.len() as u64;
        assert_eq!(lost, may_lose, "{point}: lost {lost} messages");
        let stats = q.stats();
        assert_eq!(
            (stats.producers, stats.consumers, stats.len),
            (0, 0, 0),
            "{point}: {stats:?}"
        );
        if holds_lock {
            assert!(
                stats.lock_repairs >= 1,
                "{point}: the lock was not repaired: {stats:?}"
            );
        }
    }
}

#[test]
fn deaths_while_sweeping_dead_peers_or_repairing_the_lock_are_survived() {
    let id = unique_posix("kp-repair");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let q = queue(&id);
    let name = id.to_string();
    // A consumer dies holding the lock in its dead-peer sweep (it sweeps
    // after a liveness slice on an empty queue).
    let sweeper = spawn_env(
        &["queue-consume", &name],
        &[("SHM_KILL_POINT", "reap:locked")],
    );
    died_by_sigkill(sweeper, "reap:locked");
    // The next locker must repair, and dies doing so.
    let repairer = spawn_env(
        &["queue-consume", &name],
        &[("SHM_KILL_POINT", "repair:locked")],
    );
    died_by_sigkill(repairer, "repair:locked");
    // And the queue still works.
    let mut consumer = spawn(&["queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut consumer, LIMIT), "registered");
    consumer.drain();
    assert!(
        spawn(&["queue-produce", &name, "4", "100", "64"])
            .success(LIMIT)
            .contains("done")
    );
    let out = consumer.success(LIMIT);
    check_clean(&out);
    let got: BTreeMap<u64, ()> = received(&out).into_iter().map(|(_, s)| (s, ())).collect();
    assert_eq!(got.len(), 100);
    // The repairer died before it could count its repair; the next one counted.
    assert!(q.stats().lock_repairs >= 1, "{:?}", q.stats());
}
