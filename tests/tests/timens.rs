//! Liveness across time namespaces: two processes in one PID namespace but
//! in different time namespaces (`unshare --time --boottime N`) must see
//! each other alive. The kernel shifts the start time in `/proc/PID/stat`
//! by the *reader's* boot-time offset, so before start times were
//! normalized (`shm_core::process`) each side took the other for a recycled
//! PID: an `OwnerLock` held by a live process was taken over, a live
//! producer's registration was judged dead (its receiver got
//! `Disconnected`), and a System V creator still initializing was reported
//! as `CreatorDied`.
//!
//! Namespaces tried: the test's own (offset 0), one with `--boottime 86400`
//! and one with a negative offset (half the uptime, at most an hour), every
//! ordered pair of two different ones. Needs root and util-linux `unshare`;
//! a kernel without time namespaces (no `/proc/self/ns/time`, Linux < 5.6)
//! skips with a printed reason, anything else that keeps `unshare` from
//! working fails.

use std::time::{Duration, Instant};

use shm_core::SegmentId;
use shm_tests::helper::sync::Objects;
use shm_tests::{Cleanup, Proc, persistent_queue, read_line, spawn_via, unique_posix, unique_sysv};

const LIMIT: Duration = Duration::from_secs(60);

/// A time namespace to run a helper in: a name and the `unshare` prefix
/// (empty: the test's own).
struct Ns {
    name: String,
    wrapper: Vec<String>,
}

impl Ns {
    fn wrapper(&self) -> Vec<&str> {
        self.wrapper.iter().map(String::as_str).collect()
    }

    fn spawn(&self, args: &[&str]) -> Proc {
        spawn_via(&self.wrapper(), args)
    }
}

/// The namespaces, or `None` (with the reason printed) on a kernel
/// without time namespaces.
fn namespaces() -> Option<Vec<Ns>> {
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!(
            "SKIPPED: this kernel has no time namespaces (/proc/self/ns/time is missing; \
             Linux 5.6+ with CONFIG_TIME_NS), so start times cannot be shifted"
        );
        return None;
    }
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .expect("read /proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("parse /proc/uptime");
    let back = ((uptime / 2.0) as i64).clamp(1, 3600);
    let unshare = |off: i64| {
        ["unshare", "--time", "--boottime", &off.to_string()]
            .map(str::to_owned)
            .to_vec()
    };
    let all = vec![
        Ns {
            name: "own".into(),
            wrapper: Vec::new(),
        },
        Ns {
            name: "boottime +86400".into(),
            wrapper: unshare(86400),
        },
        Ns {
            name: format!("boottime -{back}"),
            wrapper: unshare(-back),
        },
    ];
    Some(all)
}

/// Every ordered pair of two different namespaces.
fn pairs(all: &[Ns]) -> Vec<(&Ns, &Ns)> {
    let mut v = Vec::new();
    for a in all {
        for b in all {
            if a.name != b.name {
                v.push((a, b));
            }
        }
    }
    v
}

/// Field 22 of `/proc/PID/stat` as read by a process in `ns`.
fn raw_start_seen_from(ns: &Ns, pid: u32) -> u64 {
    let mut cmd = std::process::Command::new(ns.wrapper.first().map_or("cat", String::as_str));
    if !ns.wrapper.is_empty() {
        cmd.args(&ns.wrapper[1..]).arg("cat");
    }
    let out = shm_tests::wait_output(
        cmd.arg(format!("/proc/{pid}/stat"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start cat"),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "`{} cat /proc/{pid}/stat` failed ({}): is util-linux unshare working?",
        ns.wrapper.join(" "),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = &text[text.rfind(')').expect("comm") + 1..];
    rest.split_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .expect("starttime")
}

/// The kernel really shifts start times by the reader's namespace (the
/// precondition of the other tests), and `unshare` works here.
#[test]
fn the_kernel_shifts_start_times_by_the_readers_time_namespace() {
    let Some(all) = namespaces() else { return };
    let me = std::process::id();
    let own = raw_start_seen_from(&all[0], me);
    let plus = raw_start_seen_from(&all[1], me);
    assert_eq!(
        plus,
        own + 86400 * 100,
        "a reader with --boottime 86400 sees the start time 8 640 000 ticks later"
    );
    let minus = raw_start_seen_from(&all[2], me);
    assert!(
        minus < own,
        "a negative offset shifts it back: {minus} vs {own}"
    );
    // Normalized, this process's start is the same from anywhere.
    assert_eq!(shm_core::process::start_time(me), Some(own));
}

#[test]
fn an_owner_lock_held_in_another_time_namespace_is_not_taken_over() {
    let Some(all) = namespaces() else { return };
    let mut tried = 0;
    for (holder_ns, waiter_ns) in pairs(&all) {
        let id = unique_posix("timens-owner");
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let _o = Objects::create(&id, 0);
        let name = id.to_string();
        let mut holder = holder_ns.spawn(&["sync-owner-hold", &name]);
        assert_eq!(read_line(&mut holder, LIMIT), "locked");
        // Four liveness looks (100 ms each): before the fix the second one
        // took the lock from the live holder.
        let out = waiter_ns
            .spawn(&["sync-owner-lock-for", &name, "400"])
            .success(LIMIT);
        assert!(
            out.starts_with(&format!("stuck {} ", holder.pid())),
            "holder in {}, waiter in {}: a live holder's lock was not kept: {out}",
            holder_ns.name,
            waiter_ns.name
        );
        // A dead one is still found, across the namespaces.
        let dead = holder.pid();
        holder.kill();
        let _ = holder.wait(LIMIT);
        let out = waiter_ns
            .spawn(&["sync-owner-lock-for", &name, "30000"])
            .success(LIMIT);
        assert!(
            out.starts_with(&format!("taken-over {dead} ")),
            "holder in {}, waiter in {}: {out}",
            holder_ns.name,
            waiter_ns.name
        );
        tried += 1;
    }
    eprintln!("owner lock: {tried} ordered pairs of time namespaces");
}

#[test]
fn a_producer_in_another_time_namespace_is_alive_for_its_receiver() {
    let Some(all) = namespaces() else { return };
    let mut tried = 0;
    for (producer_ns, receiver_ns) in pairs(&all) {
        let id = unique_posix("timens-queue");
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let q = persistent_queue(&id, 4, 64);
        let name = id.to_string();
        let mut producer = producer_ns.spawn(&["queue-register-and-wait", &name, "producer"]);
        assert_eq!(read_line(&mut producer, LIMIT), "registered");
        // An empty queue with a live producer: the receive times out. Before
        // the fix the producer was judged dead: `Disconnected`.
        let out = receiver_ns
            .spawn(&["timed-recv", &name, "400"])
            .success(LIMIT);
        assert!(
            out.contains("timeout-after"),
            "producer in {}, receiver in {}: {out}",
            producer_ns.name,
            receiver_ns.name
        );
        assert_eq!(
            q.stats().producers,
            1,
            "the live producer's registration was cleared"
        );
        // A dead producer is still found: the receive ends disconnected.
        producer.kill();
        let _ = producer.wait(LIMIT);
        let out = receiver_ns
            .spawn(&["timed-recv", &name, "30000"])
            .success(LIMIT);
        assert!(
            out.contains("err") && !out.contains("timeout-after"),
            "producer in {}, receiver in {}: a dead producer was not noticed: {out}",
            producer_ns.name,
            receiver_ns.name
        );
        tried += 1;
    }
    eprintln!("queue: {tried} ordered pairs of time namespaces");
}

fn error_line(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix("error="))
        .unwrap_or("")
}

#[test]
fn a_sysv_creator_initializing_in_another_time_namespace_is_not_reported_dead() {
    let Some(all) = namespaces() else { return };
    let mut tried = 0;
    for (creator_ns, opener_ns) in pairs(&all) {
        let id: SegmentId = unique_sysv();
        let _clean = Cleanup::new(std::slice::from_ref(&id));
        let name = id.to_string();
        let mut creator = creator_ns.spawn(&["core-init-hang", &name]);
        assert_eq!(read_line(&mut creator, LIMIT), "initializing");
        // The System V backend judges the creator by its PID and start
        // time: before the fix, `CreatorDied` from a live creator.
        let (_, out) = opener_ns.spawn(&["core-open", &name, "400"]).wait(LIMIT);
        assert!(
            error_line(&out).starts_with("InitTimeout"),
            "creator in {}, opener in {}: {out}",
            creator_ns.name,
            opener_ns.name
        );
        // Killed, it is reported dead at once.
        let mut opener = opener_ns.spawn(&["core-open", &name, "30000"]);
        assert_eq!(read_line(&mut opener, LIMIT), "state=initializing");
        let killed_at = Instant::now();
        creator.kill();
        let _ = creator.wait(LIMIT);
        let (_, out) = opener.wait(LIMIT);
        assert!(
            error_line(&out).starts_with("CreatorDied"),
            "creator in {}, opener in {}: {out}",
            creator_ns.name,
            opener_ns.name
        );
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "the death was only noticed at the opener's deadline"
        );
        tried += 1;
    }
    eprintln!("System V init: {tried} ordered pairs of time namespaces");
}
