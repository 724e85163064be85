//! The chaos suite: rounds of real producers and consumers (2 to 4 of each,
//! plus one consumer that is never killed) through the
//! queue, with processes killed by SIGKILL at random moments, and after each
//! round the checks: every message whose send returned success was received
//! exactly once unless a receiver that took it was killed; nothing torn;
//! per-producer order kept; dead registrations reclaimed so disconnect still
//! arrives; nothing hung (a watchdog turns a hang into a failure naming the
//! seed that reproduces it).
//!
//! `cargo xtask test-multiproc` runs a quick mode (a few rounds);
//! `cargo xtask test-multiproc --chaos [--rounds N] [--seed S]` runs the long
//! mode (`SHM_CHAOS=1`, `SHM_CHAOS_ROUNDS`, `SHM_CHAOS_SEED`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use shm_tests::random::Rng;
use shm_tests::{Cleanup, Proc, persistent_queue, read_line, spawn, unique_posix, unique_sysv};

const LIMIT: Duration = Duration::from_secs(90);

#[derive(Default)]
struct Figures {
    rounds: u64,
    killed_producers: u64,
    killed_consumers: u64,
    messages_checked: u64,
    lost_with_dead_receivers: u64,
}

enum Role {
    Producer(u32),
    Consumer,
}

struct Member {
    role: Role,
    proc: Proc,
}

/// Parses what a process printed: `s SEQ` (producer), `r P SEQ` (consumer).
fn lines<'a>(out: &'a str, prefix: &str) -> impl Iterator<Item = Vec<u64>> + 'a {
    let prefix = prefix.to_owned();
    out.lines().filter_map(move |l| {
        l.strip_prefix(prefix.as_str()).map(|rest| {
            rest.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
    })
}

fn round(seed: u64, figures: &mut Figures) {
    let mut rng = Rng::new(seed);
    let id = if rng.next_u64().is_multiple_of(2) {
        unique_posix("chaos")
    } else {
        unique_sysv()
    };
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let capacity = rng.range(1, 32) as u32;
    let slot = rng.range(24, 512) as u32;
    let q = persistent_queue(&id, capacity, slot);
    let name = id.to_string();
    let size = rng.range(24, u64::from(slot)).to_string();
    let n_prod = rng.range(2, 4) as u32;
    let n_cons = rng.range(2, 4);
    let mut members: Vec<Member> = Vec::new();
    // One consumer is never killed, so producers always have someone to
    // send to (with every consumer dead they rightly get Disconnected).
    let mut keeper = spawn(&["queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut keeper, LIMIT), "registered", "seed {seed}");
    keeper.drain();
    for _ in 0..n_cons {
        let mut p = spawn(&["queue-consume", &name, "report"]);
        assert_eq!(read_line(&mut p, LIMIT), "registered", "seed {seed}");
        p.drain();
        members.push(Member {
            role: Role::Consumer,
            proc: p,
        });
    }
    // The test itself holds a producer registration until every producer
    // has registered, so a fast producer that finishes first does not end
    // the consumers early (with every registered producer gone they rightly
    // stop).
    let anchor = q.sender().expect("anchor registration");
    for p in 0..n_prod {
        let count = rng.range(200, 5000).to_string();
        let mut proc = spawn(&[
            "queue-produce",
            &name,
            &p.to_string(),
            &count,
            &size,
            "report",
        ]);
        assert_eq!(read_line(&mut proc, LIMIT), "registered", "seed {seed}");
        proc.drain();
        members.push(Member {
            role: Role::Producer(p),
            proc,
        });
    }
    drop(anchor);
    // Kill some of them at random moments (producers and consumers alike).
    let kills = rng.range(1, members.len() as u64);
    let mut killed: Vec<usize> = Vec::new();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_micros(rng.range(0, 30_000)));
        let i = rng.range(0, members.len() as u64 - 1) as usize;
        if !killed.contains(&i) {
            members[i].proc.kill();
            killed.push(i);
        }
    }
    members.push(Member {
        role: Role::Consumer,
        proc: keeper,
    });

    let mut promised: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut received: Vec<(u32, u64)> = Vec::new();
    let mut dead_consumers = 0u64;
    let started = Instant::now();
    for (i, m) in members.into_iter().enumerate() {
        let (status, out) = m.proc.wait(
            LIMIT
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(5)),
        );
        // A process picked for a kill may have finished first.
        let was_killed = killed.contains(&i) && status.signal() == Some(9);
        if !was_killed {
            assert!(
                status.success(),
                "seed {seed}: a surviving process failed ({status}):\n{out}"
            );
        }
        assert!(
            !out.contains("torn-msg"),
            "seed {seed}: a torn message was delivered"
        );
        match m.role {
            Role::Producer(p) => {
                let set = promised.entry(p).or_default();
                set.extend(lines(&out, "s ").filter_map(|v| v.first().copied()));
                figures.killed_producers += u64::from(was_killed);
            }
            Role::Consumer => {
                let mine: Vec<(u32, u64)> = lines(&out, "r ")
                    .filter(|v| v.len() == 2)
                    .map(|v| (v[0] as u32, v[1]))
                    .collect();
                // Per-producer order within one consumer.
                let mut last: BTreeMap<u32, u64> = BTreeMap::new();
                for &(p, s) in &mine {
                    if let Some(prev) = last.insert(p, s) {
                        assert!(
                            s > prev,
                            "seed {seed}: producer {p}'s messages out of order ({prev} then {s})"
                        );
                    }
                }
                received.extend(mine);
                if was_killed {
                    dead_consumers += 1;
                }
            }
        }
    }
    figures.killed_consumers += dead_consumers;
    let unique: BTreeSet<(u32, u64)> = received.iter().copied().collect();
    assert_eq!(
        unique.len(),
        received.len(),
        "seed {seed}: a message was delivered twice"
    );
    let mut lost = 0u64;
    for (p, seqs) in &promised {
        for s in seqs {
            if !unique.contains(&(*p, *s)) {
                lost += 1;
            }
        }
    }
    assert!(
        lost <= dead_consumers,
        "seed {seed}: {lost} promised messages lost, but only {dead_consumers} receivers died"
    );
    // Nothing arrives that was never sent: beyond the promised ones, only
    // the one send per killed producer that succeeded before it could say so.
    for &(p, s) in &unique {
        let max_promised = promised.get(&p).and_then(|v| v.iter().next_back().copied());
        assert!(
            max_promised.is_some_and(|m| s <= m + 1) || (max_promised.is_none() && s == 0),
            "seed {seed}: producer {p} message {s} arrived but was never sent"
        );
    }
    let stats = q.stats();
    assert_eq!(
        (stats.producers, stats.consumers, stats.len),
        (0, 0, 0),
        "seed {seed}: {stats:?}"
    );
    figures.rounds += 1;
    figures.messages_checked += unique.len() as u64;
    figures.lost_with_dead_receivers += lost;
}

#[test]
fn chaos_rounds_of_random_kills_keep_every_promise() {
    let (rounds, seed) = shm_tests::random::chaos_plan("chaos", 6, 100);
    let mut figures = Figures::default();
    for r in 0..rounds {
        let s = seed.wrapping_add(r);
        round(s, &mut figures);
    }
    eprintln!(
        "chaos figures: rounds {}, producers killed {}, consumers killed {}, messages checked {}, \
         duplicates 0, torn 0, promised messages lost with their dead receiver {}",
        figures.rounds,
        figures.killed_producers,
        figures.killed_consumers,
        figures.messages_checked,
        figures.lost_with_dead_receivers
    );
}
