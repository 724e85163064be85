//! A queue's name follows its peers (the default `Lifetime::LastPeer`):
//! `open_or_create` joins the queue its peers still use after its creator
//! left (no split brain), the last leaver removes the name, and deaths at
//! every step of leaving or joining leave a name the next process handles.
//! Also the async interface between real processes: a tokio consumer and
//! producer, and receive futures cancelled again and again mid-stream.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use shm_core::SegmentId;
use shm_tests::{Cleanup, Proc, read_line, spawn, spawn_env, unique_posix};

const LIMIT: Duration = Duration::from_secs(60);

fn path_of(id: &SegmentId) -> std::path::PathBuf {
    let name = id.to_string();
    std::path::Path::new("/dev/shm").join(name.trim_start_matches('/'))
}

fn named(id: &SegmentId) -> bool {
    path_of(id).exists()
}

fn expect(p: &mut Proc, line: &str) {
    assert_eq!(read_line(p, LIMIT), line);
}

#[test]
fn open_or_create_joins_the_queue_its_peers_still_use_after_the_creator_left() {
    let id = unique_posix("life-join");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    // A creates the queue, sends, and stays until B has joined.
    let mut a = spawn(&["life-send", &name, "from-a", "wait-peers=2"]);
    expect(&mut a, "created true");
    expect(&mut a, "sent");
    // B joins as the consumer.
    let mut b = spawn(&["life-recv", &name, "2"]);
    expect(&mut b, "created false");
    expect(&mut b, "registered");
    // The creator leaves while B still uses the queue.
    let out = a.success(LIMIT);
    assert!(out.contains("leaving"), "{out}");
    assert!(named(&id), "the name went away with its creator");
    // A third process must join that queue, not make a second one.
    let mut c = spawn(&["life-send", &name, "from-c"]);
    expect(&mut c, "created false");
    c.success(LIMIT);
    let out = b.success(LIMIT);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["got from-a", "got from-c"],
        "B must get both messages through the one queue"
    );
    // B was the last peer: the name went with it.
    assert!(!named(&id), "the last peer left the name behind");
}

#[test]
fn the_name_of_a_queue_whose_peers_died_is_removed_by_the_next_leaver() {
    let id = unique_posix("life-dead");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let mut b = spawn(&["life-recv", &name, "1000"]);
    expect(&mut b, "created true");
    expect(&mut b, "registered");
    b.kill();
    let (status, _) = b.wait(LIMIT);
    assert_eq!(status.signal(), Some(9));
    // Every attached process is dead: the name stays, and the next process
    // joins that queue (there is no live peer to split from).
    assert!(named(&id));
    let mut c = spawn(&["life-send", &name, "x"]);
    expect(&mut c, "created false");
    c.success(LIMIT);
    // C found the dead entry, cleared it, and removed the name as the last
    // live peer.
    assert!(!named(&id), "the name outlived every peer");
}

/// A leaver or joiner killed at `point`; then a newcomer joins and leaves.
/// Returns whether the newcomer created the queue.
fn death_then_newcomer(point: &str, victim_leaves: bool) -> (bool, SegmentId) {
    let id = unique_posix("life-kill");
    let name = id.to_string();
    let env = [("SHM_KILL_POINT", point)];
    if victim_leaves {
        // The victim dies leaving: it created the queue and is its only peer.
        let v = spawn_env(&["life-send", &name, "v"], &env);
        let (status, out) = v.wait(LIMIT);
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: the victim did not die there ({status}); stdout:\n{out}"
        );
    } else {
        // A live peer keeps the queue; the victim dies joining it.
        let mut keeper = spawn(&["life-recv", &name, "1"]);
        expect(&mut keeper, "created true");
        expect(&mut keeper, "registered");
        let v = spawn_env(&["life-send", &name, "v"], &env);
        let (status, out) = v.wait(LIMIT);
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: {status}; stdout:\n{out}"
        );
        keeper.kill();
        let _ = keeper.wait(LIMIT);
    }
    let mut c = spawn(&["life-send", &name, "c"]);
    let created = read_line(&mut c, LIMIT) == "created true";
    c.success(LIMIT);
    (created, id)
}

#[test]
fn a_process_killed_at_any_step_of_leaving_or_joining_leaves_a_name_the_next_one_handles() {
    // (point, victim is leaving, whether the newcomer must create anew)
    let cases = [
        // Died after clearing its entry, before deciding: the name stays
        // with no live peer; the newcomer joins it.
        ("detach:cleared", true, false),
        // Died holding the removal mark with the name still there: the
        // newcomer clears the dead mark and joins.
        ("retire:marked", true, false),
        // Died after removing the name: the newcomer makes a new queue.
        ("retire:removed", true, true),
        // A joiner died right after taking its entry: the newcomer joins
        // (the keeper was killed too, so every entry is dead).
        ("attach:taken", false, false),
    ];
    for (point, leaving, fresh) in cases {
        let (created, id) = death_then_newcomer(point, leaving);
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        assert_eq!(
            created, fresh,
            "{point}: did the newcomer create the queue?"
        );
        // In every case the newcomer was the last live peer: the name is
        // gone once it left, dead entries and marks notwithstanding.
        assert!(!named(&id), "{point}: the name outlived every peer");
    }
}

/// Parses "got COUNT torn T disorder D cancelled C".
fn async_tally(out: &str) -> (u64, u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("got "))
        .unwrap_or_else(|| panic!("no tally in {out:?}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "{line}");
    (f[0], f[1], f[2], f[3])
}

fn persistent_queue(tag: &str, capacity: u32) -> (SegmentId, shm_queue::Queue, Cleanup) {
    let id = unique_posix(tag);
    let clean = Cleanup::new(std::slice::from_ref(&id));
    let q = shm_tests::persistent_queue(&id, capacity, 64);
    (id, q, clean)
}

#[test]
fn a_tokio_consumer_receives_from_a_producer_process_and_sees_it_leave() {
    let (id, _q, _clean) = persistent_queue("async-consume", 8);
    let name = id.to_string();
    let mut c = spawn(&["async-consume", &name]);
    expect(&mut c, "registered");
    // Let the consumer go to sleep on an empty queue first, so the first
    // message has to wake it through its descriptor.
    std::thread::sleep(Duration::from_millis(200));
    spawn(&["queue-produce", &name, "7", "5000", "24"]).success(LIMIT);
    let (got, torn, disorder, _) = async_tally(&c_success(c));
    assert_eq!((got, torn, disorder), (5000, 0, 0));
}

fn c_success(p: Proc) -> String {
    p.success(LIMIT)
}

#[test]
fn a_tokio_producer_waits_for_room_in_a_full_queue() {
    let (id, _q, _clean) = persistent_queue("async-produce", 2);
    let name = id.to_string();
    let mut c = spawn(&["queue-consume", &name]);
    assert_eq!(read_line(&mut c, LIMIT), "registered");
    let mut p = spawn(&["async-produce", &name, "3000"]);
    expect(&mut p, "registered");
    let out = p.success(LIMIT);
    assert!(out.contains("done"), "{out}");
    let out = c.success(LIMIT);
    assert!(out.contains("p 0 3000 "), "{out}");
    assert!(
        out.contains("torn 0") && out.contains("disorder 0"),
        "{out}"
    );
}

#[test]
fn cancelled_receive_futures_lose_no_message_and_leave_no_claim() {
    let (id, q, _clean) = persistent_queue("async-cancel", 4);
    let name = id.to_string();
    // Every receive races a 50 µs timer: most futures are dropped while
    // waiting, some just as the message arrives.
    let mut c = spawn(&["async-consume", &name, "count=4000", "cancel-us=50"]);
    expect(&mut c, "registered");
    for producer in 0..2 {
        let p = producer.to_string();
        spawn(&["queue-produce", &name, &p, "2000", "24"]).success(LIMIT);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (got, torn, disorder, cancelled) = async_tally(&c.success(LIMIT));
    assert_eq!(
        (got, torn, disorder),
        (4000, 0, 0),
        "lost or broken messages"
    );
    assert!(
        cancelled > 0,
        "no future was cancelled: the test proves nothing"
    );
    let stats = q.stats();
    // Nothing taken on a cancelled future's behalf, no claim left over.
    assert_eq!(stats.received, 4000);
    assert_eq!((stats.recovered, stats.abandoned), (0, 0), "{stats:?}");
}
