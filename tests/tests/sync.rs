//! Multi-process tests of shm-sync: real processes (the `shm-test-helper`
//! binary, `sync-*` subcommands) sharing one segment. Every child is reaped
//! (`Proc` kills and waits on drop), every wait has a watchdog, every
//! segment is removed by a `Cleanup` guard even when the test fails. No test
//! asserts an upper bound on time: a hang becomes a watchdog failure.

use std::time::{Duration, Instant};

use shm_core::SegmentId;
use shm_sync::{LockError, Locked, TryLockError};
use shm_tests::helper::sync::{DIRTY, Objects};
use shm_tests::{Cleanup, Proc, read_line, spawn, unique_posix};

/// Watchdog for one child (debug builds on 2 shared cores are slow).
const LIMIT: Duration = Duration::from_secs(180);
/// Watchdog for a handshake line.
const LINE: Duration = Duration::from_secs(60);

fn setup(tag: &str, start: u64) -> (SegmentId, Cleanup, Objects) {
    let id = unique_posix(tag);
    let cleanup = Cleanup::new(std::slice::from_ref(&id));
    let objects = Objects::create(&id, start);
    (id, cleanup, objects)
}

fn helper(cmd: &str, id: &SegmentId, args: &[&str]) -> Proc {
    let name = id.to_string();
    let mut all = vec![cmd, name.as_str()];
    all.extend_from_slice(args);
    spawn(&all)
}

fn expect_line(p: &mut Proc, want: &str) {
    let line = read_line(p, LINE);
    assert_eq!(line, want, "unexpected handshake line");
}

/// Kills `p` with SIGKILL and reaps it.
fn kill(mut p: Proc) {
    p.kill();
    let (status, _) = p.wait(LIMIT);
    assert!(!status.success(), "the child was meant to die by SIGKILL");
}

/// Polls `cond` until it holds, with a watchdog.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LINE, "watchdog: {what} did not happen");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the (single-threaded) child sleeps in a futex wait, as the
/// kernel reports in `/proc/PID/wchan`: then it is really asleep in the
/// primitive, not merely about to be.
fn wait_until_asleep(p: &Proc) {
    let path = format!("/proc/{}/wchan", p.pid());
    eventually("the child sleeps in a futex wait", || {
        std::fs::read_to_string(&path).is_ok_and(|w| w.contains("futex"))
    });
}

fn counter(o: &Objects) -> u64 {
    match o.mutex().lock() {
        Ok(g) => *g,
        Err(e) => panic!("lock the counter: {e}"),
    }
}

#[test]
fn four_processes_increment_the_counter_exactly() {
    const EACH: u64 = 100_000;
    let (id, _cleanup, o) = setup("sync-incr", 0);
    let n = EACH.to_string();
    let children: Vec<Proc> = (0..4).map(|_| helper("sync-incr", &id, &[&n])).collect();
    for c in children {
        assert_eq!(c.success(LIMIT).trim(), "done");
    }
    assert_eq!(counter(&o), 4 * EACH);
}

#[test]
fn holder_killed_while_holding_is_reported_repaired_and_the_mutex_goes_on() {
    let (id, _cleanup, o) = setup("sync-ownerdied", 10);
    let mut holder = helper("sync-hold", &id, &[]);
    expect_line(&mut holder, "locked");
    // A locker already blocked on the mutex when the holder dies: the
    // kernel's robust-list walk wakes it with the owner-died mark.
    let blocked = helper("sync-lock", &id, &["repair"]);
    std::thread::sleep(Duration::from_millis(100));
    kill(holder);
    let out = blocked.success(LIMIT);
    assert_eq!(out.trim(), format!("owner-died {DIRTY} repaired 1"));
    // Repaired: plain lockers continue, in this process and in others.
    assert_eq!(counter(&o), 1);
    let inc = helper("sync-incr", &id, &["1000"]);
    assert_eq!(inc.success(LIMIT).trim(), "done");
    let report = helper("sync-lock", &id, &["report"]);
    assert_eq!(report.success(LIMIT).trim(), "ok 1001");

    // A second death, found by a locker that arrives afterwards.
    let mut holder = helper("sync-hold", &id, &[]);
    expect_line(&mut holder, "locked");
    kill(holder);
    let late = helper("sync-lock", &id, &["repair"]);
    assert_eq!(
        late.success(LIMIT).trim(),
        format!("owner-died {DIRTY} repaired 1")
    );
    assert_eq!(counter(&o), 1);
}

#[test]
fn a_locker_that_does_not_repair_leaves_the_mutex_not_recoverable_and_says_so() {
    let (id, _cleanup, o) = setup("sync-notrecoverable", 0);
    let mut holder = helper("sync-hold", &id, &[]);
    expect_line(&mut holder, "locked");
    kill(holder);
    let careless = helper("sync-lock", &id, &["leave"]);
    assert_eq!(
        careless.success(LIMIT).trim(),
        format!("owner-died {DIRTY}")
    );
    // Reported at once, not hung (the helper's lock has a 20 s limit and
    // would print `timed-out`).
    for _ in 0..2 {
        let later = helper("sync-lock", &id, &["report"]);
        assert_eq!(later.success(LIMIT).trim(), "not-recoverable");
    }
    assert!(matches!(o.mutex().lock(), Err(LockError::NotRecoverable)));
    assert!(matches!(
        o.mutex().try_lock(),
        Err(TryLockError::NotRecoverable)
    ));
    // After a try_lock in this process, other processes still get the
    // verdict instead of blocking (glibc's pthread_mutex_trylock would leave
    // the lock word held here; see docs/sync.md).
    let after_try = helper("sync-lock", &id, &["report"]);
    assert_eq!(after_try.success(LIMIT).trim(), "not-recoverable");
}

fn ping_pong(kind: &str) {
    const ROUNDS: u64 = 10_000;
    let (id, _cleanup, o) = setup(&format!("sync-pingpong-{kind}"), 0);
    let r = ROUNDS.to_string();
    let even = helper("sync-pingpong", &id, &[kind, "0", &r]);
    let odd = helper("sync-pingpong", &id, &[kind, "1", &r]);
    assert_eq!(even.success(LIMIT).trim(), "done");
    assert_eq!(odd.success(LIMIT).trim(), "done");
    assert_eq!(counter(&o), 2 * ROUNDS);
}

#[test]
fn pthread_condvar_ping_pong_between_two_processes() {
    ping_pong("pthread");
}

#[test]
fn futex_condvar_ping_pong_between_two_processes() {
    ping_pong("futex");
}

/// Starts a `sync-cv-wait` child and returns once it sleeps in the condvar
/// (it printed `waiting` holding the mutex; this process then got the mutex,
/// which the child releases only inside the wait).
fn start_waiter(id: &SegmentId, o: &Objects, kind: &str, target: u64) -> Proc {
    let mut w = helper("sync-cv-wait", id, &[kind, &target.to_string()]);
    expect_line(&mut w, "waiting");
    drop(
        o.mutex()
            .lock_timeout(LINE)
            .map_err(|e| e.to_string())
            .expect("lock"),
    );
    wait_until_asleep(&w);
    w
}

/// Like [`start_waiter`], but the child waits with one long `wait_timeout`
/// per wake-up (no periodic re-check), so that the condvar's own wake-ups
/// are what is tested.
fn start_long_waiter(id: &SegmentId, o: &Objects, kind: &str, target: u64) -> Proc {
    let mut w = helper("sync-cv-wait", id, &[kind, &target.to_string(), "long"]);
    expect_line(&mut w, "waiting");
    drop(
        o.mutex()
            .lock_timeout(LINE)
            .map_err(|e| e.to_string())
            .expect("lock"),
    );
    wait_until_asleep(&w);
    w
}

/// Whether `p` prints a line within `limit`; a child that does not is left
/// to the caller (and killed and reaped when dropped).
fn prints_within(p: &mut Proc, limit: Duration) -> Option<String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_line(p, limit))).ok()
}

#[test]
fn futex_condvar_waiter_killed_mid_wait_stops_neither_notifiers_nor_other_waiters() {
    let (id, _cleanup, o) = setup("sync-cvkill-futex", 0);
    // The same sequence that breaks the pthread condvar (next test).
    let victim = start_long_waiter(&id, &o, "futex", 1000);
    let survivor = start_long_waiter(&id, &o, "futex", 1);
    // Since format v2 `waiters()` is the sleepers flag (0 or 1), not a count.
    assert_eq!(o.futex_condvar().waiters(), 1);
    kill(victim);
    // The dead waiter's flag stays behind: it only costs a wake syscall.
    assert_eq!(o.futex_condvar().waiters(), 1);
    // A killed process leaves the kernel's futex queue, so a single
    // notify_one reaches the survivor.
    let notifier = helper("sync-cv-notify", &id, &["futex", "1", "one"]);
    assert_eq!(notifier.success(LIMIT).trim(), "notified");
    assert_eq!(survivor.success(LIMIT).trim(), "woke 1");
    // Self-healing: that notify cleared the dead waiter's flag (and woke
    // every sleeper, so nobody set it again): one needless FUTEX_WAKE in
    // all, not one per notify forever.
    assert_eq!(o.futex_condvar().waiters(), 0);
    // New waiters, one notify each, both kinds of notify.
    for round in 2..7u64 {
        let w = start_long_waiter(&id, &o, "futex", round);
        let how = if round % 2 == 0 { "one" } else { "all" };
        let n = helper("sync-cv-notify", &id, &["futex", "1", how]);
        assert_eq!(n.success(LIMIT).trim(), "notified");
        assert_eq!(w.success(LIMIT).trim(), format!("woke {round}"));
    }
    // And the periodic-recheck flavour of waiting still works alongside.
    let w = start_waiter(&id, &o, "futex", 7);
    let n = helper("sync-cv-notify", &id, &["futex", "1", "one"]);
    assert_eq!(n.success(LIMIT).trim(), "notified");
    assert_eq!(w.success(LIMIT).trim(), "woke 7");
}

/// Evidence for docs/sync.md: glibc's condvar (2.25 and later, as on
/// Debian 12's 2.36) keeps per-group waiter references in the
/// `pthread_cond_t`. A waiter killed inside `pthread_cond_timedwait` never
/// drops its reference, so (1) a later `pthread_cond_signal` is handed to
/// the dead waiter's group and wakes nobody, and (2) the signal after that,
/// which must switch groups, waits in `__condvar_quiesce_and_switch_g1` for
/// the dead reference forever, holding the condvar's internal lock, which
/// then also blocks the timeouts of other waiters. Nothing outside glibc can
/// repair that; hence `FutexCondvar`. The previous test runs the same
/// sequence on `FutexCondvar` and passes.
///
/// The assertions hold for glibc up to 2.36 (observed here on every run);
/// later versions reworked the condvar, and there the test only reports
/// what it saw.
#[test]
fn pthread_condvar_waiter_killed_mid_wait_loses_a_wakeup_then_hangs_a_notifier() {
    let version = shm_sync::glibc_version();
    let minor = version
        .strip_prefix("2.")
        .and_then(|m| m.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    let known_affected = matches!(minor, Some(25..=36));
    let (id, _cleanup, o) = setup("sync-cvkill-pthread", 0);
    let victim = start_long_waiter(&id, &o, "pthread", 1000);
    let survivor = start_long_waiter(&id, &o, "pthread", 1);
    kill(victim);

    // Round 1: a signal after the death still wakes the survivor.
    let n1 = helper("sync-cv-notify", &id, &["pthread", "1", "one"]);
    assert_eq!(n1.success(LIMIT).trim(), "notified");
    assert_eq!(survivor.success(LIMIT).trim(), "woke 1");

    eprintln!(
        "pthread condvar evidence: `watchdog: ... printed no line` messages below are \
         expected on glibc {version}; they are what this test asserts"
    );
    // Round 2: a new waiter; the signal goes to the dead waiter's group.
    let mut w2 = start_long_waiter(&id, &o, "pthread", 2);
    let n2 = helper("sync-cv-notify", &id, &["pthread", "1", "one"]);
    assert_eq!(n2.success(LIMIT).trim(), "notified");
    let w2_line = prints_within(&mut w2, Duration::from_secs(3));

    // Round 3: another waiter; this signal has to switch groups.
    let mut w3 = start_long_waiter(&id, &o, "pthread", 3);
    let mut n3 = helper("sync-cv-notify", &id, &["pthread", "1", "one"]);
    let n3_line = prints_within(&mut n3, Duration::from_secs(3));
    // The notifier unlocked the mutex before it signalled: the counter
    // moved, and the mutex is free, whatever the condvar does.
    assert_eq!(counter(&o), 3);
    let w3_line = prints_within(&mut w3, Duration::from_secs(1));
    eprintln!(
        "glibc {version}: round 2 waiter {w2_line:?}, round 3 notifier {n3_line:?}, round 3 waiter {w3_line:?}"
    );
    if known_affected {
        assert_eq!(
            w2_line, None,
            "glibc {version}: the round-2 wake-up was delivered"
        );
        assert_eq!(
            n3_line, None,
            "glibc {version}: the round-3 notifier returned"
        );
        assert_eq!(w3_line, None, "glibc {version}: the round-3 waiter woke");
    }
    // Dropping the children kills and reaps them: the hung notifier is
    // killable, it just never returns on its own.
}

#[test]
fn semaphore_counts_tokens_across_processes() {
    const EACH: u64 = 20_000;
    let (id, _cleanup, o) = setup("sync-sem", 0);
    let n = EACH.to_string();
    // Consumers first, so that many waits really sleep.
    let consumers: Vec<Proc> = (0..2)
        .map(|_| helper("sync-sem-wait", &id, &["0", &n]))
        .collect();
    let producers: Vec<Proc> = (0..2)
        .map(|_| helper("sync-sem-post", &id, &["0", &n]))
        .collect();
    for p in producers {
        assert_eq!(p.success(LIMIT).trim(), "posted");
    }
    for c in consumers {
        assert_eq!(c.success(LIMIT).trim(), format!("got {EACH}"));
    }
    assert_eq!(o.semaphore(0).value(), 0);
    assert_eq!(o.semaphore(0).waiters(), 0);
}

#[test]
fn semaphore_timeouts_expire_and_posts_in_time_are_taken() {
    let (id, _cleanup, o) = setup("sync-semtimeout", 0);
    // Nobody posts: the wait times out, and not early.
    let out = helper("sync-sem-timeout", &id, &["1", "200"]).success(LIMIT);
    let (what, ms) = out.trim().split_once(' ').expect("`WHAT MS`");
    assert_eq!(what, "timed-out");
    assert!(ms.parse::<u64>().unwrap() >= 200, "{out}");
    assert_eq!(o.semaphore(1).value(), 0);

    // A post from another process within the timeout is taken.
    let waiter = helper("sync-sem-timeout", &id, &["1", "120000"]);
    eventually("the waiter registers", || o.semaphore(1).waiters() == 1);
    wait_until_asleep(&waiter);
    o.semaphore(1).post().unwrap();
    let out = waiter.success(LIMIT);
    assert!(out.starts_with("got "), "{out}");
    assert_eq!(o.semaphore(1).value(), 0);
}

#[test]
fn semaphore_waiter_killed_mid_wait_loses_no_token() {
    let (id, _cleanup, o) = setup("sync-semkill", 0);
    let s = o.semaphore(0);
    let victim = helper("sync-sem-wait", &id, &["0", "1"]);
    eventually("the victim registers", || s.waiters() == 1);
    wait_until_asleep(&victim);
    kill(victim);
    // Its hint stays, which only makes posts call FUTEX_WAKE.
    assert_eq!(s.waiters(), 1);
    s.post().unwrap();
    s.post().unwrap();
    assert_eq!(s.value(), 2);
    let taker = helper("sync-sem-wait", &id, &["0", "2"]);
    assert_eq!(taker.success(LIMIT).trim(), "got 2");
    assert_eq!(s.value(), 0);
    assert!(!s.wait_timeout(Duration::from_millis(10)));
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of
/// `/proc/PID/stat`, counted after the command name).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn sleeping_waiters_cost_no_cpu() {
    let (id, _cleanup, o) = setup("sync-idle", 0);
    let sem = helper("sync-sem-wait", &id, &["0", "1"]);
    let cv = start_waiter(&id, &o, "futex", 1);
    wait_until_asleep(&sem);
    let before = (cpu_ticks(sem.pid()), cpu_ticks(cv.pid()));
    std::thread::sleep(Duration::from_secs(1));
    let after = (cpu_ticks(sem.pid()), cpu_ticks(cv.pid()));
    // A spinning waiter would burn ~100 ticks in that second; a sleeping
    // one burns none (one tick of slack for accounting at the boundary).
    assert!(
        after.0 - before.0 <= 1,
        "semaphore waiter used {} ticks",
        after.0 - before.0
    );
    assert!(
        after.1 - before.1 <= 1,
        "condvar waiter used {} ticks",
        after.1 - before.1
    );
    o.semaphore(0).post().unwrap();
    assert_eq!(sem.success(LIMIT).trim(), "got 1");
    *o.mutex().lock().map_err(|e| e.to_string()).unwrap() = 1;
    o.futex_condvar().notify_all();
    assert_eq!(cv.success(LIMIT).trim(), "woke 1");
}

#[test]
fn condvar_waiters_learn_that_the_mutex_holder_died() {
    for kind in ["futex", "pthread"] {
        let (id, _cleanup, o) = setup(&format!("sync-cvowner-{kind}"), 0);
        let waiter = start_long_waiter(&id, &o, kind, 1);
        // The holder takes the mutex, writes the dirty marker (which ends
        // the waiter's condition) and is killed before it can notify.
        let mut holder = helper("sync-hold", &id, &[]);
        expect_line(&mut holder, "locked");
        kill(holder);
        match kind {
            "futex" => o.futex_condvar().notify_all(),
            _ => o.condvar().notify_all(),
        }
        assert_eq!(waiter.success(LIMIT).trim(), format!("owner-died {DIRTY}"));
        // The waiter marked it consistent: the mutex is normal again.
        assert_eq!(counter(&o), DIRTY);
    }
}

#[test]
fn owner_lock_holder_killed_is_taken_over_by_a_waiter_and_by_a_late_locker() {
    let (id, _cleanup, o) = setup("sync-ownerlock", 0);
    let lock = o.owner_lock();
    let mut holder = helper("sync-owner-hold", &id, &[]);
    expect_line(&mut holder, "locked");
    let dead = holder.pid();
    assert_eq!(lock.holder().map(|h| h.pid), Some(dead));
    assert!(lock.try_lock().is_none());
    // A locker already asleep on the lock when the holder dies: it finds
    // the holder dead at its next liveness look and takes over.
    let blocked = helper("sync-owner-lock", &id, &[]);
    wait_until_asleep(&blocked);
    kill(holder);
    assert_eq!(blocked.success(LIMIT).trim(), format!("taken-over {dead}"));
    // That locker unlocked before it exited: the lock is free and clean.
    assert_eq!(lock.holder(), None);
    match lock.lock(LINE) {
        Ok(Locked::Clean(_)) => {}
        other => panic!("expected a clean lock: {other:?}"),
    }

    // A second death, found by this process arriving afterwards.
    let mut holder = helper("sync-owner-hold", &id, &[]);
    expect_line(&mut holder, "locked");
    let dead = holder.pid();
    kill(holder);
    match lock.lock(LINE) {
        Ok(Locked::TakenOver { guard, dead: who }) => {
            assert_eq!(who.pid, dead);
            drop(guard);
        }
        other => panic!("expected a takeover from pid {dead}: {other:?}"),
    }
    // Released: other processes lock it cleanly.
    let after = helper("sync-owner-lock", &id, &[]);
    assert_eq!(after.success(LIMIT).trim(), "clean");
    assert_eq!(lock.holder(), None);
}

/// What `/proc/PID/syscall` says the process is blocked in: `Some(addr)`
/// for a futex call (syscall 202 on x86-64) on `addr`, `None` otherwise
/// (running, or another call).
fn futex_address(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let mut f = text.split_whitespace();
    if f.next()? != "202" {
        return None;
    }
    u64::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()
}

fn parse_addr(line: &str) -> (u64, u64) {
    let mut f = line
        .strip_prefix("addr ")
        .expect("`addr CV MUTEX`")
        .split(' ');
    let mut next = || u64::from_str_radix(f.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    (next(), next())
}

/// Issue #11, item 1: `notify_one` wakes waiter V, and V is killed before
/// it relocks; the other waiters must not sleep on although the condition
/// holds. The test holds the mutex while it notifies, so every woken waiter
/// blocks in its relock; it finds the notified waiter by what
/// `/proc/PID/syscall` shows (a futex wait on the mutex's lock word instead
/// of the condvar's word) and kills exactly that one before releasing the
/// mutex. The others wait with one 120 s `wait_timeout` each: a waiter
/// that was not woken and did not look at the counter again would sleep
/// that long, far past the 20 s bound. With format v1's `notify_one` (one
/// `FUTEX_WAKE(1)`, sleeps without slices) this failed; today `notify_one`
/// wakes every sleeper, and a wait also re-checks the counter every
/// `FutexCondvar::RECHECK`.
#[test]
fn futex_condvar_notified_waiter_killed_before_it_relocks_strands_no_one() {
    const ROUNDS: usize = 5;
    const WAITERS: usize = 3;
    let bound = Duration::from_secs(20);
    let mut all_woken_rounds = 0;
    for round in 0..ROUNDS {
        let (id, _cleanup, o) = setup("sync-cvkill-notified", 0);
        let mut waiters: Vec<(Proc, u64, u64)> = (0..WAITERS)
            .map(|_| {
                let mut w = helper("sync-cv-wait", &id, &["futex", "1", "long-addr"]);
                let (cv, mutex) = parse_addr(&read_line(&mut w, LINE));
                expect_line(&mut w, "waiting");
                drop(
                    o.mutex()
                        .lock_timeout(LINE)
                        .map_err(|e| e.to_string())
                        .expect("lock"),
                );
                (w, cv, mutex)
            })
            .collect();
        for (w, cv, _) in &waiters {
            eventually("the waiter sleeps on the condvar word", || {
                futex_address(w.pid()) == Some(*cv)
            });
        }
        // Notify while holding the mutex: woken waiters block in the relock.
        let mut g = o.mutex().lock().map_err(|e| e.to_string()).expect("lock");
        *g = 1;
        o.futex_condvar().notify_one();
        let mut woken = Vec::new();
        eventually("the notified waiter waits for the mutex", || {
            woken = waiters
                .iter()
                .enumerate()
                .filter(|(_, (w, _, mutex))| futex_address(w.pid()) == Some(*mutex))
                .map(|(i, _)| i)
                .collect();
            !woken.is_empty()
        });
        // Give the other wake-ups (if any) a moment to land, for the figure.
        std::thread::sleep(Duration::from_millis(50));
        let moved = waiters
            .iter()
            .filter(|(w, cv, _)| futex_address(w.pid()) != Some(*cv))
            .count();
        if moved == WAITERS {
            all_woken_rounds += 1;
        }
        let (victim, _, _) = waiters.remove(woken[0]);
        kill(victim);
        drop(g);
        for (w, _, _) in waiters {
            assert_eq!(
                w.success(bound).trim(),
                "woke 1",
                "round {round}: a waiter stranded after the notified one died"
            );
        }
        assert_eq!(counter(&o), 1);
    }
    eprintln!(
        "{ROUNDS} rounds of {WAITERS} waiters, the notified one killed before its relock: \
         the others returned every time; notify_one woke all {WAITERS} in {all_woken_rounds} rounds"
    );
}
