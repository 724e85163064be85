//! Deterministic kill points: a process kills itself with SIGKILL exactly at
//! a named step of the queue protocol (feature `kill-points` of shm-queue),
//! and the queue must stay usable with nothing torn, duplicated or lost that
//! was promised. One death per scenario here; `compound.rs` kills a second
//! process while the first one's leftovers are still there.
//!
//! The steps of the lock-free slot protocol: `send:published` (claim
//! published in the producer's registration record, before the `tail` CAS),
//! `send:claimed`, `send:writing`, `send:written`, `send:committed`;
//! `recv:published`, `recv:claimed`, `recv:reading`, `recv:read`,
//! `recv:released`; and the registration steps `register:taken`,
//! `unregister:cleared`, `reap:cleared`.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use shm_core::SegmentId;
use shm_queue::Queue;
use shm_tests::{Cleanup, Proc, persistent_queue, read_line, spawn, spawn_env, unique_posix};

const LIMIT: Duration = Duration::from_secs(60);

fn queue(id: &SegmentId) -> Queue {
    persistent_queue(id, 4, 64)
}

fn died_by_sigkill(p: Proc, point: &str) -> String {
    let (status, out) = p.wait(LIMIT);
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: the victim did not die at its kill point ({status}); stdout:\n{out}"
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

/// `s SEQ` lines of a reporting producer: the sends that returned success.
fn promised(out: &str) -> BTreeSet<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("s ").and_then(|s| s.parse().ok()))
        .collect()
}

fn check_clean(out: &str) {
    assert!(!out.contains("torn-msg"), "torn message: {out}");
    assert!(out.contains("torn 0"), "torn messages: {out}");
    assert!(out.contains("disorder 0"), "out of order: {out}");
}

#[test]
fn a_producer_killed_at_any_send_step_loses_nothing_it_was_promised() {
    // (point, the pass that dies, whether a consumer must recover the dead
    // producer's claim: it won the tail CAS and never committed)
    let points = [
        ("send:published", 10, false),
        ("send:claimed", 10, true),
        ("send:writing", 10, true),
        ("send:written", 10, true),
        ("send:committed", 10, false),
        ("register:taken", 1, false),
        ("unregister:cleared", 1, false),
    ];
    for (point, hit, dead_claim) in points {
        let id = unique_posix("kp-send");
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let q = queue(&id);
        let name = id.to_string();
        // The test holds a producer registration until the steady producer
        // has registered: otherwise the consumer, once it has reaped the
        // dead victim, could rightly see "every producer gone" and stop
        // before the steady producer starts.
        let anchor = q.sender().expect("anchor registration");
        let mut consumer = spawn(&["queue-consume", &name, "report"]);
        assert_eq!(read_line(&mut consumer, LIMIT), "registered");
        consumer.drain();
        let kp = format!("{point}:{hit}");
        let victim = spawn_env(
            &["queue-produce", &name, "1", "50", "64", "report"],
            &[("SHM_KILL_POINT", &kp)],
        );
        let vout = died_by_sigkill(victim, point);
        let promised = promised(&vout);
        let mut steady = spawn(&["queue-produce", &name, "2", "200", "64"]);
        assert_eq!(read_line(&mut steady, LIMIT), "registered", "{point}");
        drop(anchor);
        assert!(
            steady.success(LIMIT).contains("done"),
            "{point}: steady producer failed"
        );
        // Ends only once the dead producer's registration was reclaimed.
        let out = consumer.success(LIMIT);
        check_clean(&out);
        let got = received(&out);
        let from = |p: u32| -> Vec<u64> {
            got.iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, s)| *s)
                .collect()
        };
        let (from1, from2) = (from(1), from(2));
        assert_eq!(
            from2,
            (0..200).collect::<Vec<_>>(),
            "{point}: steady producer not exactly once"
        );
        // The dead producer's messages: an exact prefix, covering every
        // send that returned success...
        assert_eq!(
            from1,
            (0..from1.len() as u64).collect::<Vec<_>>(),
            "{point}: not a prefix"
        );
        assert!(
            promised.iter().all(|s| (*s as usize) < from1.len()),
            "{point}: a promised message was lost (promised {promised:?}, got {from1:?})"
        );
        // ...and nothing beyond, except the one send that committed before
        // the victim could learn it succeeded.
        let extra = u64::from(point == "send:committed");
        assert!(
            from1.len() as u64 <= promised.len() as u64 + extra,
            "{point}: received {from1:?}, but only {promised:?} were sent"
        );
        let stats = q.stats();
        assert_eq!(
            (stats.producers, stats.consumers, stats.len),
            (0, 0, 0),
            "{point}: {stats:?}"
        );
        if dead_claim {
            assert!(
                stats.recovered >= 1,
                "{point}: the dead producer's claim was not recovered: {stats:?}"
            );
        }
    }
}

#[test]
fn a_consumer_killed_at_any_recv_step_loses_at_most_the_message_it_took() {
    // (point, the pass that dies, messages the death may lose, whether a
    // producer must free the slot the dead consumer claimed: 100 messages
    // through 4 slots wrap around to it many times)
    let points = [
        ("recv:published", 10, 0, false),
        ("recv:claimed", 10, 1, true),
        ("recv:reading", 10, 1, true),
        ("recv:read", 10, 1, true),
        ("recv:released", 10, 1, false),
        ("register:taken", 1, 0, false),
        ("unregister:cleared", 1, 0, false),
    ];
    for (point, hit, may_lose, dead_claim) in points {
        let id = unique_posix("kp-recv");
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let q = queue(&id);
        let name = id.to_string();
        // The test holds a consumer registration until the survivor has
        // registered, so the producer never sees "every consumer gone"
        // between the victim's death and the survivor's start. It never
        // receives, so it takes nothing from the count.
        let anchor = q.receiver().expect("anchor registration");
        let kp = format!("{point}:{hit}");
        let mut victim = Some(spawn_env(
            &["queue-consume", &name, "report"],
            &[("SHM_KILL_POINT", &kp)],
        ));
        let mut vout = String::new();
        if point.starts_with("register:") {
            // Dies before it can say "registered".
            vout = died_by_sigkill(victim.take().expect("victim"), point);
        } else if let Some(v) = victim.as_mut() {
            assert_eq!(read_line(v, LIMIT), "registered", "{point}");
            v.drain();
        }
        let mut producer = spawn(&["queue-produce", &name, "3", "100", "64", "report"]);
        producer.drain();
        if let Some(v) = victim.take() {
            vout = died_by_sigkill(v, point);
        }
        let mut survivor = spawn(&["queue-consume", &name, "report"]);
        assert_eq!(read_line(&mut survivor, LIMIT), "registered", "{point}");
        survivor.drain();
        drop(anchor);
        let pout = producer.success(LIMIT);
        assert!(pout.contains("done"), "{point}: producer did not finish");
        let sout = survivor.success(LIMIT);
        check_clean(&sout);
        assert!(!vout.contains("torn-msg"), "{point}: torn message: {vout}");
        // The victim's messages, then the survivor's: the victim was dead
        // before the survivor started, so together they are in order.
        let mut all = received(&vout);
        all.extend(received(&sout));
        let seqs: Vec<u64> = all.iter().map(|(_, s)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{point}: out of order or duplicated: {seqs:?}"
        );
        assert!(
            all.iter().all(|(p, s)| *p == 3 && *s < 100),
            "{point}: a message that was never sent: {all:?}"
        );
        let lost = 100 - seqs.len() as u64;
        assert!(
            lost <= may_lose,
            "{point}: lost {lost} messages (at most {may_lose} allowed)"
        );
        let stats = q.stats();
        assert_eq!(
            (stats.producers, stats.consumers, stats.len),
            (0, 0, 0),
            "{point}: {stats:?}"
        );
        if dead_claim {
            assert!(
                stats.recovered >= 1,
                "{point}: the dead consumer's slot was not freed: {stats:?}"
            );
        }
    }
}

#[test]
fn a_death_while_reaping_a_dead_peer_is_survived() {
    let id = unique_posix("kp-reap");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let q = queue(&id);
    let name = id.to_string();
    // Two dead registrations, a producer's and a consumer's.
    for role in ["producer", "consumer"] {
        let mut p = spawn(&["queue-register-and-wait", &name, role]);
        assert_eq!(read_line(&mut p, LIMIT), "registered", "{role}");
        p.kill();
        let (status, _) = p.wait(LIMIT);
        assert_eq!(status.signal(), Some(9), "{role}");
    }
    // A consumer on the empty queue looks for dead peers (it must, to learn
    // that the only producer is gone) and dies right after clearing the
    // first dead registration it reaps.
    let sweeper = spawn_env(
        &["queue-consume", &name],
        &[("SHM_KILL_POINT", "reap:cleared")],
    );
    died_by_sigkill(sweeper, "reap:cleared");
    // And the queue still works; the anchor keeps the consumer from
    // stopping (every producer gone) before the producer registers.
    let anchor = q.sender().expect("anchor registration");
    let mut consumer = spawn(&["queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut consumer, LIMIT), "registered");
    consumer.drain();
    let mut producer = spawn(&["queue-produce", &name, "4", "100", "64"]);
    assert_eq!(read_line(&mut producer, LIMIT), "registered");
    drop(anchor);
    assert!(producer.success(LIMIT).contains("done"));
    let out = consumer.success(LIMIT);
    check_clean(&out);
    let got: Vec<u64> = received(&out).into_iter().map(|(_, s)| s).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // Every dead registration reclaimed, the sweeper's own included.
    let stats = q.stats();
    assert_eq!(
        (stats.producers, stats.consumers, stats.len),
        (0, 0, 0),
        "{stats:?}"
    );
}
