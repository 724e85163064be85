//! Hostile bytes: while real producers and consumers use a queue, another
//! process writes random bytes, extreme values and stale copies into its
//! header, control block and slots. The users must get errors or carry on,
//! never panic, crash on a signal, or hang (a watchdog turns a hang into a
//! failure). Also: segments that are not queues, or not ours at all.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use shm_core::{Segment, SegmentId, Shared, SharedOptions};
use shm_queue::{Queue, QueueOpenError};
use shm_tests::{
    Cleanup, Proc, persistent_queue, read_line, spawn, spawn_env, unique_posix, unique_sysv,
};

const LIMIT: Duration = Duration::from_secs(60);

fn assert_error_or_success(p: Proc, what: &str, seed: u64) -> String {
    let (status, out) = p.wait(LIMIT);
    assert!(
        status.signal().is_none(),
        "seed {seed}: {what} was killed by signal {:?}",
        status.signal()
    );
    // 0: finished; 1: stopped on a reported error. 101 would be a panic.
    assert!(
        matches!(status.code(), Some(0) | Some(1)),
        "seed {seed}: {what} exited with {status}"
    );
    out
}

fn hostile_round(id: SegmentId, seed: u64) {
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let _q = persistent_queue(&id, 16, 64);
    let name = id.to_string();
    let mut users = Vec::new();
    for _ in 0..2 {
        let mut c = spawn(&["queue-consume", &name, "timeout=1000"]);
        assert_eq!(read_line(&mut c, LIMIT), "registered");
        c.drain();
        users.push(("consumer", c));
    }
    for p in 0..2 {
        let mut c = spawn(&[
            "queue-produce",
            &name,
            &p.to_string(),
            "1000000",
            "64",
            "timeout=1000",
        ]);
        assert_eq!(read_line(&mut c, LIMIT), "registered");
        c.drain();
        users.push(("producer", c));
    }
    let scribbler = spawn(&["queue-scribble", &name, &seed.to_string(), "1500"]);
    let out = scribbler.success(LIMIT);
    assert!(out.contains("writes"), "{out}");
    // The users were told to stop by errors or timeouts, or still run: stop
    // whatever still runs after a while, but first give them time to fail
    // on their own.
    std::thread::sleep(Duration::from_millis(300));
    for (what, mut u) in users {
        // A user still moving messages through the mangled queue is fine;
        // it is ended here. One that exited did so on an error, not a
        // panic or a signal.
        if let Ok(Some(status)) = u.try_status() {
            assert!(
                status.signal().is_none() && matches!(status.code(), Some(0) | Some(1)),
                "seed {seed}: {what} ended with {status}"
            );
        } else {
            u.kill();
        }
        let _ = u.wait(LIMIT);
    }
    // A newcomer gets an error or a working queue, never a crash.
    let newcomer = spawn(&["queue-recv-one", &name, "100"]);
    assert_error_or_success(newcomer, "a late opener", seed);
}

#[test]
fn users_survive_a_scribbler_posix() {
    for seed in [11u64, 23, 37] {
        hostile_round(unique_posix("hostile"), seed);
    }
}

#[test]
fn users_survive_a_scribbler_sysv() {
    for seed in [41u64, 53] {
        hostile_round(unique_sysv(), seed);
    }
}

#[test]
fn segments_of_another_kind_or_not_ours_are_refused() {
    let raw_id = unique_posix("notours");
    let typed_id = unique_posix("othertype");
    let _clean = Cleanup::new(&[raw_id.clone(), typed_id.clone()]);
    // Not made by this library: random bytes.
    let mut raw = Segment::create(&raw_id, 65536, 0o600).unwrap();
    let junk: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    raw.write_at(0, &junk).unwrap();
    match Queue::open(&raw_id) {
        Err(QueueOpenError::Open(shm_core::OpenError::NotOurs { .. })) => {}
        other => panic!("a foreign segment opened as a queue: {other:?}"),
    }
    // Ours, but holding another type.
    let _other =
        Shared::<shm_core::shim::real::AtomicU64>::create(&typed_id, &SharedOptions::new(), |_| {
            Ok(())
        })
        .unwrap();
    match Queue::open(&typed_id) {
        Err(QueueOpenError::Open(shm_core::OpenError::LayoutMismatch { .. })) => {}
        other => panic!("another type opened as a queue: {other:?}"),
    }
    // Through a process too: an error on stderr and exit 1, no panic.
    let (status, _) = spawn(&["queue-recv-one", &raw_id.to_string(), "100"]).wait(LIMIT);
    assert_eq!(status.code(), Some(1));
}

fn truncate_posix(id: &SegmentId, len: u64) {
    let SegmentId::Posix(name) = id else {
        panic!("a POSIX id")
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.file_name()))
        .and_then(|f| f.set_len(len))
        .expect("truncate the segment's file");
}

#[test]
fn a_segment_truncated_after_mapping_gives_an_error_not_sigbus() {
    let id = unique_posix("trunc-raw");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let mut seg = Segment::create(&id, 64 * 1024, 0o600).unwrap();
    seg.write_at(60_000, b"before").unwrap();
    assert!(!seg.is_truncated());
    truncate_posix(&id, 4096);
    // These pages are gone from the file: without the guard this access is
    // a SIGBUS that kills the test process.
    seg.write_at(60_000, b"after").unwrap();
    let mut back = [0u8; 5];
    seg.read_at(60_000, &mut back).unwrap();
    assert!(seg.is_truncated(), "the truncation was not noticed");
    // What is left of the file is still shared.
    seg.write_at(0, b"head").unwrap();
}

#[test]
fn queue_users_get_errors_when_the_segment_is_truncated_under_them() {
    let id = unique_posix("trunc-queue");
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    let q = persistent_queue(&id, 256, 1024);
    let name = id.to_string();
    let mut users = Vec::new();
    let mut c = spawn(&["queue-consume", &name, "timeout=2000"]);
    assert_eq!(read_line(&mut c, LIMIT), "registered");
    c.drain();
    users.push(c);
    let mut p = spawn(&[
        "queue-produce",
        &name,
        "0",
        "100000000",
        "512",
        "timeout=2000",
    ]);
    assert_eq!(read_line(&mut p, LIMIT), "registered");
    p.drain();
    users.push(p);
    std::thread::sleep(Duration::from_millis(100));
    truncate_posix(&id, 4096);
    for u in users {
        let (status, _) = u.wait(LIMIT);
        assert_eq!(
            status.signal(),
            None,
            "a user died of a signal after the truncation"
        );
        assert_eq!(
            status.code(),
            Some(1),
            "a user did not stop on an error ({status})"
        );
    }
    // The test's own mapping notices too, once it reaches past the end:
    // here the kernel does (`populate`, which reads nothing itself, so it
    // races no reference and needs no `&mut`).
    assert!(!q.segment().is_truncated(), "noticed before any touch");
    let e = q.segment().populate().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT), "{e}");
    assert!(q.segment().is_truncated());
    assert!(matches!(
        q.sender(),
        Err(shm_queue::RegisterError::Corrupted(_))
    ));
}

/// The guard is process-wide and stays installed. A `SIGBUS` sent with
/// `kill` goes to the handler installed before ours (Rust's, which resets
/// the action to the default and returns); that used to leave the default
/// action in place, so the next truncation killed the process. Now ours is
/// put back: the helper survives the sent signal and then a truncation.
/// Opting out (`disable_sigbus_guard`, or `SHM_SIGBUS_GUARD=0`) leaves the
/// default: the same truncation kills it with `SIGBUS`.
#[test]
fn the_sigbus_guard_outlives_a_sent_sigbus_and_can_be_turned_off() {
    let ids: Vec<SegmentId> = (0..3).map(|_| unique_posix("sigbus")).collect();
    let _clean = Cleanup::new(&ids);
    let (status, out) = spawn(&["core-sigbus", "kill", &ids[0].to_string()]).wait(LIMIT);
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal after a sent SIGBUS: the guard is gone:\n{out}"
    );
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("installed=true"), "{out}");
    assert!(out.contains("survived the sent SIGBUS"), "{out}");
    assert!(
        out.contains("touched truncated=true bytes=[0, 0, 0, 0, 0, 0]"),
        "{out}"
    );

    for (id, mode, env) in [
        (&ids[1], "off", &[][..]),
        (&ids[2], "plain", &[("SHM_SIGBUS_GUARD", "0")][..]),
    ] {
        let (status, out) = spawn_env(&["core-sigbus", mode, &id.to_string()], env).wait(LIMIT);
        assert_eq!(
            status.signal(),
            Some(libc::SIGBUS),
            "{mode}: without the guard a truncation is a SIGBUS ({status}):\n{out}"
        );
        assert!(out.contains("installed=false"), "{mode}: {out}");
        if mode == "off" {
            assert!(out.contains("disabled=true"), "{out}");
        }
    }
}
