//! The chaos suite of the synchronization primitives used directly: rounds
//! of real processes on one segment (random backend) that lock the robust
//! `Mutex` for a two-step update, wait on the `FutexCondvar` and notify it,
//! post and take `Semaphore` tokens, while random ones are killed with
//! SIGKILL at random moments (holding the lock, between the two steps,
//! asleep on the condvar or the semaphore), and in some rounds a creator is
//! killed inside its initializer first.
//!
//! After each round it checks: an opener of the dead creator's segment got
//! `CreatorDied`; every `OwnerDied` was repaired (the mutex never became
//! not recoverable) and named a killed process, and every half-done update
//! was a killed locker's; a fresh process locks the mutex and finds the
//! invariant; the counter equals the critical sections reported, plus at
//! most one per killed locker, and no value was reported twice; the
//! condvar's waiters that survived were all woken; the semaphore's tokens
//! balance (posted − taken − left over is 0, give or take one per killed
//! poster or waiter); nothing hung (a watchdog per process turns a hang into
//! a failure naming the seed).
//!
//! Quick mode: 6 rounds. Long mode: `SHM_CHAOS=1` (100 rounds, or
//! `SHM_CHAOS_ROUNDS`); `SHM_CHAOS_SEED` replays a run. The pthread
//! `Condvar` is not used: a killed waiter can hang its later notifiers
//! (docs/sync.md), which is why `FutexCondvar` exists.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::OpenError;
use shm_tests::helper::sync::chaos::{self, A, B, Chaos, Found, GEN, HOLDER};
use shm_tests::random::Rng;
use shm_tests::{Cleanup, Proc, read_line, spawn, unique_posix, unique_sysv};

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Figures {
    rounds: u64,
    killed: u64,
    killed_lockers: u64,
    killed_cv: u64,
    killed_sem: u64,
    creators_killed: u64,
    critical_sections: u64,
    owner_deaths: u64,
    repairs: u64,
    wakeups: u64,
    tokens: u64,
    slices_expired: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Locker,
    CvWaiter,
    Notifier,
    Poster,
    SemWaiter,
}

impl Role {
    /// Roles that end by themselves; the waiters end once these are done.
    fn finite(self) -> bool {
        matches!(self, Role::Locker | Role::Notifier | Role::Poster)
    }
}

struct Member {
    role: Role,
    pid: u64,
    proc: Option<Proc>,
    killed: bool,
    out: String,
}

/// `owner-died HOLDER repaired|clean` lines: (holder, repaired).
fn owner_deaths(out: &str) -> impl Iterator<Item = (u64, bool)> + '_ {
    out.lines().filter_map(|l| {
        let mut w = l.strip_prefix("owner-died ")?.split_whitespace();
        let holder = w.next()?.parse().ok()?;
        Some((holder, w.next()? == "repaired"))
    })
}

fn count(out: &str, line: &str) -> u64 {
    out.lines().filter(|l| *l == line).count() as u64
}

/// A creator killed inside its initializer: an opener already waiting for
/// it and one arriving afterwards both get `CreatorDied` naming it. The
/// dead segment is removed before the round creates its own.
fn creator_killed_during_init(seed: u64, id: &shm_core::SegmentId, rng: &mut Rng) {
    let name = id.to_string();
    let mut creator = spawn(&["sync-chaos-create", &name, "60000"]);
    let pid = creator.pid();
    assert_eq!(
        read_line(&mut creator, LIMIT),
        "initializing",
        "seed {seed}: the creator did not start initializing"
    );
    let mut opener = spawn(&["sync-chaos-open", &name, "30000"]);
    opener.drain();
    std::thread::sleep(Duration::from_micros(rng.range(0, 20_000)));
    creator.kill();
    let (status, _) = creator.wait(LIMIT);
    assert_eq!(
        status.signal(),
        Some(9),
        "seed {seed}: the creator was not killed in its initializer ({status})"
    );
    let out = opener.success(LIMIT);
    assert_eq!(
        out.trim(),
        format!("creator-died {pid}"),
        "seed {seed}: a waiting opener of a segment whose creator died in init"
    );
    match Chaos::open(id, Duration::from_secs(20)) {
        Err(OpenError::CreatorDied { pid: p, .. }) => {
            assert_eq!(p, pid, "seed {seed}: CreatorDied names another PID")
        }
        Err(e) => panic!("seed {seed}: open after the creator died: {e} (expected CreatorDied)"),
        Ok(_) => panic!("seed {seed}: opened a segment whose creator died in init"),
    }
    shm_core::remove(id).unwrap_or_else(|e| panic!("seed {seed}: remove the dead segment: {e}"));
}

fn start(seed: u64, role: Role, args: &[&str], members: &mut Vec<Member>) {
    let mut proc = spawn(args);
    if role == Role::CvWaiter {
        // Printed with the lock held, so it is about to wait.
        assert_eq!(read_line(&mut proc, LIMIT), "waiting", "seed {seed}");
    }
    proc.drain();
    members.push(Member {
        role,
        pid: u64::from(proc.pid()),
        proc: Some(proc),
        killed: false,
        out: String::new(),
    });
}

/// Reaps a member with the watchdog; a killed one may also have finished.
fn reap(seed: u64, m: &mut Member, started: Instant) {
    let Some(proc) = m.proc.take() else { return };
    let (status, out) = proc.wait(
        LIMIT
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(10)),
    );
    let killed = m.killed && status.signal() == Some(9);
    assert!(
        killed || status.success(),
        "seed {seed}: a surviving {:?} (pid {}) failed ({status}):\n{out}",
        m.role,
        m.pid
    );
    assert!(
        !out.lines().any(|l| l.starts_with("error ")),
        "seed {seed}: {:?} (pid {}) reported an error:\n{out}",
        m.role,
        m.pid
    );
    m.killed = killed;
    m.out = out;
}

fn round(seed: u64, figures: &mut Figures) {
    let mut rng = Rng::new(seed);
    let id = if rng.next_u64().is_multiple_of(2) {
        unique_posix("chaos-sync")
    } else {
        unique_sysv()
    };
    let _clean = Cleanup::new(std::slice::from_ref(&id));
    if rng.next_u64().is_multiple_of(3) {
        creator_killed_during_init(seed, &id, &mut rng);
        figures.creators_killed += 1;
    }
    let c = Chaos::create(&id).unwrap_or_else(|e| panic!("seed {seed}: create: {e}"));
    let name = id.to_string();

    let target = rng.range(10, 60);
    let mut members: Vec<Member> = Vec::new();
    for _ in 0..rng.range(1, 3) {
        start(
            seed,
            Role::CvWaiter,
            &["sync-chaos-cv-wait", &name, &target.to_string()],
            &mut members,
        );
    }
    for _ in 0..rng.range(1, 3) {
        start(
            seed,
            Role::SemWaiter,
            &["sync-chaos-sem-wait", &name, "20"],
            &mut members,
        );
    }
    for _ in 0..rng.range(2, 4) {
        let iters = rng.range(1000, 8000).to_string();
        let s = rng.next_u64().to_string();
        start(
            seed,
            Role::Locker,
            &["sync-chaos-lock", &name, &iters, &s],
            &mut members,
        );
    }
    for _ in 0..rng.range(1, 2) {
        let posts = rng.range(200, 3000).to_string();
        let s = rng.next_u64().to_string();
        start(
            seed,
            Role::Poster,
            &["sync-chaos-sem-post", &name, &posts, &s],
            &mut members,
        );
    }
    let s = rng.next_u64().to_string();
    start(
        seed,
        Role::Notifier,
        &["sync-chaos-cv-notify", &name, &target.to_string(), &s],
        &mut members,
    );

    // Kill some at random moments, lockers most often (so that some die
    // holding the lock, some between the two steps of their update).
    let kills = rng.range(1, 5);
    for _ in 0..kills {
        std::thread::sleep(Duration::from_micros(rng.range(0, 25_000)));
        let role = match rng.range(0, 19) {
            0..=9 => Role::Locker,
            10..=12 => Role::CvWaiter,
            13 => Role::Notifier,
            14..=16 => Role::SemWaiter,
            _ => Role::Poster,
        };
        let of_role: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].role == role && !members[i].killed)
            .collect();
        if of_role.is_empty() {
            continue;
        }
        let m = &mut members[of_role[rng.range(0, of_role.len() as u64 - 1) as usize]];
        if let Some(p) = m.proc.as_mut() {
            p.kill();
            m.killed = true;
        }
    }

    // The processes that end by themselves first.
    let started = Instant::now();
    for m in members.iter_mut().filter(|m| m.role.finite()) {
        reap(seed, m, started);
    }
    // Then wake whoever still waits: the notifier may be dead. This lock
    // may itself find a dead holder and repair it.
    let (g, found) =
        chaos::lock_for(c.mutex(), LIMIT).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let mut test_deaths: Vec<(u64, bool)> = Vec::new();
    if let Found::OwnerDied { holder, repaired } = found {
        test_deaths.push((holder, repaired));
    }
    let gen_by_notifier = g[GEN].load(Ordering::Acquire);
    g[GEN].store(gen_by_notifier.max(target), Ordering::Release);
    drop(g);
    c.condvar().notify_all();
    c.stop().store(1, Ordering::Release);
    for m in members.iter_mut() {
        reap(seed, m, started);
    }

    // A fresh process locks the mutex: it must be free, healthy, repaired.
    let check = spawn(&["sync-chaos-check", &name]).success(LIMIT);
    let state: Vec<u64> = check
        .lines()
        .find_map(|l| l.strip_prefix("state "))
        .unwrap_or_else(|| panic!("seed {seed}: the check process printed no state:\n{check}"))
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(state.len(), 4, "seed {seed}: {check}");
    let (a, b, holder, generation) = (state[A], state[B], state[HOLDER], state[GEN]);
    assert_eq!(
        (a, holder),
        (b, 0),
        "seed {seed}: the invariant does not hold after the round"
    );
    assert!(
        generation >= target,
        "seed {seed}: gen {generation} < target {target}"
    );
    // And so does this process, with a clean lock.
    {
        let (g, found) =
            chaos::lock_for(c.mutex(), LIMIT).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(
            found,
            Found::Clean,
            "seed {seed}: an owner death after every process was reaped"
        );
        assert_eq!(g[A].load(Ordering::Acquire), a, "seed {seed}");
    }

    let killed_pids: BTreeSet<u64> = members.iter().filter(|m| m.killed).map(|m| m.pid).collect();
    let killed_lockers: BTreeSet<u64> = members
        .iter()
        .filter(|m| m.killed && m.role == Role::Locker)
        .map(|m| m.pid)
        .collect();
    let killed_of = |role: Role| {
        members
            .iter()
            .filter(|m| m.killed && m.role == role)
            .count() as u64
    };

    // Owner deaths: each names a killed process (or nobody, when the holder
    // died outside its update), a half-done update a killed locker, and a
    // death is reported at most once.
    let mut deaths = test_deaths;
    for m in &members {
        deaths.extend(owner_deaths(&m.out));
    }
    deaths.extend(owner_deaths(&check));
    for &(h, repaired) in &deaths {
        assert!(
            h == 0 || killed_pids.contains(&h),
            "seed {seed}: owner death reported for pid {h}, which was not killed"
        );
        assert!(
            !repaired || killed_lockers.contains(&h),
            "seed {seed}: a half-done update by pid {h}, not a killed locker"
        );
    }
    assert!(
        deaths.len() as u64 <= killed_pids.len() as u64,
        "seed {seed}: {} owner deaths reported for {} processes killed",
        deaths.len(),
        killed_pids.len()
    );
    let repairs = deaths.iter().filter(|d| d.1).count() as u64;
    assert!(
        repairs <= killed_lockers.len() as u64,
        "seed {seed}: {repairs} repairs for {} lockers killed",
        killed_lockers.len()
    );

    // The counter: every completed critical section reported a distinct
    // value; each killed locker may have completed one more unreported (or
    // had its half-done one rolled forward).
    let mut values: BTreeSet<u64> = BTreeSet::new();
    let mut sections = 0u64;
    for m in members.iter().filter(|m| m.role == Role::Locker) {
        for v in m.out.lines().filter_map(|l| l.strip_prefix("cs ")) {
            let v: u64 = v.parse().expect("cs value");
            assert!(
                values.insert(v),
                "seed {seed}: two critical sections both produced {v}"
            );
            sections += 1;
        }
    }
    assert!(
        values.iter().next_back().is_none_or(|&max| max <= a),
        "seed {seed}: a section reported a value above the counter {a}"
    );
    assert!(
        a >= sections && a - sections <= killed_lockers.len() as u64,
        "seed {seed}: counter {a}, {sections} sections reported, {} lockers killed",
        killed_lockers.len()
    );

    // The notifier's increments: exact unless it was killed (then at most
    // one it did not report).
    let notifier = members
        .iter()
        .find(|m| m.role == Role::Notifier)
        .expect("notifier");
    let notified = notifier.out.lines().filter(|l| l.starts_with("n ")).count() as u64;
    if notifier.killed {
        assert!(
            gen_by_notifier >= notified && gen_by_notifier <= notified + 1,
            "seed {seed}: gen {gen_by_notifier}, {notified} notifications reported by a killed notifier"
        );
    } else {
        assert_eq!(
            (gen_by_notifier, notified),
            (target, target),
            "seed {seed}: notifier"
        );
    }

    // Condvar waiters that survived were woken (they printed and exited;
    // a hang would have tripped the watchdog).
    let mut wakeups = 0;
    for m in members
        .iter()
        .filter(|m| m.role == Role::CvWaiter && !m.killed)
    {
        let woke = m
            .out
            .lines()
            .find_map(|l| l.strip_prefix("woke "))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            woke.is_some_and(|v| v >= target),
            "seed {seed}: a surviving condvar waiter (pid {}) was not woken at {target}:\n{}",
            m.pid,
            m.out
        );
        wakeups += 1;
    }
    assert!(
        u64::from(c.condvar().waiters()) <= killed_of(Role::CvWaiter),
        "seed {seed}: condvar waiter hint {} with {} waiters killed",
        c.condvar().waiters(),
        killed_of(Role::CvWaiter)
    );

    // Semaphore: with P posts and T takes reported, a killed poster may
    // have posted one more (unreported) and a killed waiter taken one more.
    // Posts really made = takes really made + what is left, so
    // `posted - taken - left` = (unreported takes) - (unreported posts),
    // between -kp and kw.
    let posted: u64 = members
        .iter()
        .filter(|m| m.role == Role::Poster)
        .map(|m| count(&m.out, "p"))
        .sum();
    let taken: u64 = members
        .iter()
        .filter(|m| m.role == Role::SemWaiter)
        .map(|m| count(&m.out, "t"))
        .sum();
    let left = u64::from(c.semaphore().value());
    let (kp, kw) = (killed_of(Role::Poster), killed_of(Role::SemWaiter));
    let balance = posted as i64 - taken as i64 - left as i64;
    assert!(
        taken <= posted + kp && -(kp as i64) <= balance && balance <= kw as i64,
        "seed {seed}: semaphore: posted {posted}, taken {taken}, left {left}, \
         {kp} posters and {kw} waiters killed"
    );
    let waiters_survived = members
        .iter()
        .any(|m| m.role == Role::SemWaiter && !m.killed);
    assert!(
        !waiters_survived || left == 0,
        "seed {seed}: {left} tokens left although a semaphore waiter drained it"
    );
    assert!(
        u64::from(c.semaphore().waiters()) <= kw,
        "seed {seed}: semaphore waiter hint {} with {kw} waiters killed",
        c.semaphore().waiters()
    );

    figures.rounds += 1;
    figures.killed += killed_pids.len() as u64;
    figures.killed_lockers += killed_lockers.len() as u64;
    figures.killed_cv += killed_of(Role::CvWaiter) + killed_of(Role::Notifier);
    figures.killed_sem += kp + kw;
    figures.critical_sections += sections;
    figures.owner_deaths += deaths.len() as u64;
    figures.repairs += repairs;
    figures.wakeups += wakeups;
    figures.tokens += taken;
    figures.slices_expired += members
        .iter()
        .map(|m| count(&m.out, "lock-slice-expired"))
        .sum::<u64>();
}

fn message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn chaos_sync_rounds_of_random_kills_leave_mutex_condvar_and_semaphore_sound() {
    let (rounds, seed) = shm_tests::random::chaos_plan("chaos sync", 6, 100);
    let mut figures = Figures::default();
    for r in 0..rounds {
        let s = seed.wrapping_add(r);
        // A watchdog or a check panics inside the round; its processes are
        // killed and reaped and its segment removed on the way out. Name the
        // seed that replays it.
        if let Err(e) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| round(s, &mut figures)))
        {
            panic!(
                "chaos sync: round {r} failed; replay it with SHM_CHAOS_SEED={s} \
                 SHM_CHAOS_ROUNDS=1: {}",
                message(e.as_ref())
            );
        }
    }
    eprintln!(
        "chaos sync figures: rounds {}, processes killed {} (lockers {}, condvar {}, semaphore {}), \
         creators killed in init {}, critical sections checked {}, owner deaths {}, repairs {}, \
         condvar waiters woken {}, tokens taken {}, lock slices expired {}, not recoverable 0, \
         hung 0",
        figures.rounds,
        figures.killed,
        figures.killed_lockers,
        figures.killed_cv,
        figures.killed_sem,
        figures.creators_killed,
        figures.critical_sections,
        figures.owner_deaths,
        figures.repairs,
        figures.wakeups,
        figures.tokens,
        figures.slices_expired
    );
}
