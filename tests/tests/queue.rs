//! Multi-process tests of shm-queue: exactly-once transfer between real
//! processes, and processes killed with SIGKILL at random moments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shm_core::SegmentId;
use shm_queue::Queue;
use shm_tests::random::Rng;
use shm_tests::{Cleanup, Proc, persistent_queue, read_line, spawn, unique_posix, unique_sysv};

const LIMIT: Duration = Duration::from_secs(120);

fn create(id: &SegmentId, capacity: u32, slot: u32) -> Queue {
    // The Cleanup guard of each test removes it, even on failure.
    persistent_queue(id, capacity, slot)
}

/// Per-producer (count, sum, sum of squares) as printed by `queue-consume`.
type Tally = BTreeMap<u32, (u64, u128, u128)>;

fn parse_tally(out: &str, into: &mut Tally) {
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["p", p, c, s, sq] => {
                let e = into.entry(p.parse().unwrap()).or_insert((0, 0, 0));
                e.0 += c.parse::<u64>().unwrap();
                e.1 += s.parse::<u128>().unwrap();
                e.2 += sq.parse::<u128>().unwrap();
            }
            ["torn", n] => assert_eq!(*n, "0", "torn messages delivered"),
            ["disorder", n] => assert_eq!(*n, "0", "a producer's messages arrived out of order"),
            _ => {}
        }
    }
}

fn expected(count: u64) -> (u64, u128, u128) {
    let n = u128::from(count);
    (count, n * (n - 1) / 2, (n - 1) * n * (2 * n - 1) / 6)
}

fn transfer(id: SegmentId, producers: u32, consumers: u32, count: u64, size: usize) {
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 64, size as u32);
    let name = id.to_string();
    let count_s = count.to_string();
    let size_s = size.to_string();
    let mut cons: Vec<Proc> = (0..consumers)
        .map(|_| spawn(&["queue-consume", &name]))
        .collect();
    for c in &mut cons {
        assert_eq!(read_line(c, LIMIT), "registered");
    }
    let prods: Vec<Proc> = (0..producers)
        .map(|p| spawn(&["queue-produce", &name, &p.to_string(), &count_s, &size_s]))
        .collect();
    for p in prods {
        let out = p.success(LIMIT);
        assert!(out.contains("done"), "producer did not finish: {out}");
    }
    let mut tally = Tally::new();
    for c in cons {
        parse_tally(&c.success(LIMIT), &mut tally);
    }
    for p in 0..producers {
        assert_eq!(
            tally.get(&p).copied(),
            Some(expected(count)),
            "producer {p}: not exactly once"
        );
    }
    let stats = Queue::inspect(&id).expect("inspect");
    assert_eq!(stats.sent, u64::from(producers) * count);
    assert_eq!(stats.received, u64::from(producers) * count);
    assert_eq!(stats.len, 0);
    assert_eq!((stats.producers, stats.consumers), (0, 0));
}

#[test]
fn exactly_once_1x1() {
    transfer(unique_posix("q1x1"), 1, 1, 50_000, 64);
}

#[test]
fn exactly_once_4x1() {
    transfer(unique_posix("q4x1"), 4, 1, 20_000, 64);
}

#[test]
fn exactly_once_1x4() {
    transfer(unique_posix("q1x4"), 1, 4, 50_000, 64);
}

#[test]
fn exactly_once_4x4_sysv() {
    transfer(unique_sysv(), 4, 4, 20_000, 200);
}

#[test]
fn exactly_once_large_messages() {
    transfer(unique_posix("qbig"), 2, 2, 500, 256 * 1024);
}

#[test]
fn killed_producers_leave_a_prefix_and_disconnect_still_arrives() {
    let id = unique_posix("qkillp");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 16, 128);
    let name = id.to_string();
    let mut rng = Rng::from_env("SHM_TEST_SEED");
    let mut cons: Vec<Proc> = (0..2).map(|_| spawn(&["queue-consume", &name])).collect();
    for c in &mut cons {
        assert_eq!(read_line(c, LIMIT), "registered");
    }
    let steady = spawn(&["queue-produce", &name, "0", "30000", "128"]);
    let mut victims: Vec<Proc> = (1..=3)
        .map(|p| {
            spawn(&[
                "queue-produce",
                &name,
                &p.to_string(),
                "1000000",
                "128",
                "report",
            ])
        })
        .collect();
    for v in &mut victims {
        assert_eq!(read_line(v, LIMIT), "registered");
        v.drain();
    }
    let mut reported: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    for (i, mut v) in victims.into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        v.kill();
        let (_, out) = v.wait(LIMIT);
        let last = out
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("s ").and_then(|s| s.parse::<u64>().ok()));
        reported.insert(i as u32 + 1, last);
    }
    assert!(steady.success(LIMIT).contains("done"));
    // Consumers finish only if the dead producers' registrations were
    // reclaimed: otherwise this hangs and the watchdog fails the test.
    let mut tally = Tally::new();
    for c in cons {
        parse_tally(&c.success(LIMIT), &mut tally);
    }
    assert_eq!(tally.get(&0).copied(), Some(expected(30_000)));
    for (p, last) in reported {
        let got = tally.get(&p).copied().unwrap_or((0, 0, 0));
        // What arrived is exactly a prefix 0..k (no gap, no duplicate), and
        // covers every send that returned success.
        assert_eq!(
            got,
            if got.0 == 0 {
                (0, 0, 0)
            } else {
                expected(got.0)
            },
            "producer {p}: not a prefix"
        );
        if let Some(last) = last {
            assert!(
                got.0 > last,
                "producer {p}: send {last} returned success but was lost"
            );
        }
    }
}

#[test]
fn killed_consumers_lose_at_most_what_they_took() {
    let id = unique_posix("qkillc");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 8, 64);
    let name = id.to_string();
    let mut rng = Rng::from_env("SHM_TEST_SEED");
    let total = 40_000u64;
    let mut survivor = spawn(&["queue-consume", &name, "report"]);
    assert_eq!(read_line(&mut survivor, LIMIT), "registered");
    // It prints a line per message: read it as it comes, or it blocks on a
    // full pipe.
    survivor.drain();
    let mut victims: Vec<Proc> = (0..3)
        .map(|_| spawn(&["queue-consume", &name, "report"]))
        .collect();
    for v in &mut victims {
        assert_eq!(read_line(v, LIMIT), "registered");
        v.drain();
    }
    let producer = spawn(&["queue-produce", &name, "7", &total.to_string(), "64"]);
    let mut seen: Vec<u64> = Vec::new();
    let collect = |out: &str, seen: &mut Vec<u64>| {
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("r 7 ") {
                seen.push(rest.parse().unwrap());
            }
        }
    };
    let killed = victims.len() as u64;
    for mut v in victims {
        std::thread::sleep(Duration::from_millis(2 + rng.below(40)));
        v.kill();
        let (_, out) = v.wait(LIMIT);
        collect(&out, &mut seen);
    }
    assert!(producer.success(LIMIT).contains("done"));
    collect(&survivor.success(LIMIT), &mut seen);
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a message was delivered twice");
    let missing = total - unique.len() as u64;
    // Each killed consumer can take at most one message it never reported.
    assert!(
        missing <= killed,
        "{missing} messages lost, more than the {killed} killed consumers could hold"
    );
}

#[test]
fn receiver_learns_of_a_producer_killed_while_registered() {
    let id = unique_posix("qdisc");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 4, 64);
    let name = id.to_string();
    let mut consumer = spawn(&["queue-consume", &name]);
    assert_eq!(read_line(&mut consumer, LIMIT), "registered");
    let mut producer = spawn(&["queue-register-and-wait", &name, "producer"]);
    assert_eq!(read_line(&mut producer, LIMIT), "registered");
    producer.kill();
    let _ = producer.wait(LIMIT);
    let out = consumer.success(Duration::from_secs(30));
    assert!(out.contains("torn 0"), "{out}");
}

#[test]
fn sender_learns_that_every_consumer_died() {
    let id = unique_posix("qsdisc");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 4, 64);
    let name = id.to_string();
    let mut consumer = spawn(&["queue-register-and-wait", &name, "consumer"]);
    assert_eq!(read_line(&mut consumer, LIMIT), "registered");
    consumer.kill();
    let _ = consumer.wait(LIMIT);
    // The producer fills the 4 slots, then must get Disconnected, not hang.
    let (status, _) =
        spawn(&["queue-produce", &name, "1", "100", "64"]).wait(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(1),
        "the producer should fail with Disconnected"
    );
}

#[test]
fn recv_timeout_expires_across_processes() {
    let id = unique_posix("qtimeout");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 4, 64);
    let out = spawn(&["queue-recv-one", &id.to_string(), "200"]).success(LIMIT);
    assert!(out.contains("err timed out"), "{out}");
}

#[test]
fn a_process_in_another_pid_namespace_is_refused() {
    // Peers are named by PID; a process that sees other PIDs could not tell
    // a crashed peer from a live one, so the queue refuses it at open.
    let id = unique_posix("qpidns");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = create(&id, 4, 64);
    let helper = shm_tests::helper_path();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"])
        .arg(&helper)
        .args(["queue-recv-one", &id.to_string(), "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .expect("unshare (util-linux) must be installed and work as root");
    let out = shm_tests::wait_output(child, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout {:?} stderr {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("another PID namespace"), "{stderr}");
}
