//! `sync-*` subcommands: processes that lock, wait, notify and post on the
//! shm-sync primitives of one segment, for `tests/tests/sync.rs`.
//!
//! Every subcommand takes the segment name first. The segment is a
//! [`Shared<Layout>`]: a [`Mutex<u64>`] (the counter), a [`Condvar`], a
//! [`FutexCondvar`], two [`Semaphore`]s, an [`OwnerLock`] and a
//! [`WaitWord`]; see [`Objects`].
//! Results go to stdout as one line each (`ok 5`, `owner-died 18446744...`,
//! `not-recoverable`, ...), so the tests can assert on them.
//!
//! | subcommand | args | does |
//! |---|---|---|
//! | `sync-incr` | NAME N | N times: lock, `+= 1`, unlock; prints `done` |
//! | `sync-hold` | NAME | locks, writes the dirty marker, prints `locked`, sleeps (to be killed) |
//! | `sync-lock` | NAME repair\|leave\|report | one `lock_timeout(20 s)`; prints the outcome; `repair` fixes an owner death, `leave` drops the guard unrepaired |
//! | `sync-pingpong` | NAME pthread\|futex PARITY ROUNDS | alternates with the other player through the counter |
//! | `sync-cv-wait` | NAME pthread\|futex TARGET \[long\] | prints `waiting` with the lock held, waits while counter < TARGET, prints `woke V` (or `owner-died V`, after marking the mutex consistent); `long`: one `wait_timeout(120 s)` per wake-up instead of `wait_while` (no periodic re-check) |
//! | `sync-cv-notify` | NAME pthread\|futex COUNT one\|all | COUNT times: lock, `+= 1`, unlock, notify; prints `notified` |
//! | `sync-sem-post` | NAME SLOT N | posts N times |
//! | `sync-sem-wait` | NAME SLOT N | takes N tokens (blocking); prints `got N` |
//! | `sync-sem-timeout` | NAME SLOT MS | one `wait_timeout(MS)`; prints `timed-out ELAPSED_MS` or `got ELAPSED_MS` |
//! | `sync-owner-hold` | NAME | takes the [`OwnerLock`], prints `locked`, sleeps (to be killed) |
//! | `sync-owner-lock` | NAME | one `OwnerLock::lock(60 s)`; prints `clean`, `taken-over PID` or `stuck PID` |
//! | `sync-owner-lock-for` | NAME MS | one `OwnerLock::lock(MS)`; prints `clean E`, `taken-over PID E` or `stuck PID E` (E: elapsed ms) |
//! | `sync-lock-for` | NAME MS | one `Mutex::lock_timeout(MS)`; prints `ok V E`, `owner-died V E` (repaired: the dirty marker becomes 0), `timed-out E` or `error ...` |
//! | `sync-lock-block` | NAME | one `Mutex::lock()`; prints `ok V E` or `owner-died V E` (repaired as above) |
//! | `sync-cv-timeout` | NAME pthread\|futex MS \[once\] | `wait_timeout_while(counter unchanged, MS)`; prints `timed-out E` or `woke V E`; `once`: one `wait_timeout(MS)`, prints `timed-out E` or `returned V E` |
//! | `sync-ww-sleep` | NAME MS | `WaitWord::sleep` in a loop until the word's value changes or MS pass; prints `timed-out E returns N` or `changed V E returns N` (N: sleeps that returned early: signals, wake-ups) |
//!
//! `sync-cv-wait NAME KIND TARGET long-addr` is `long`, and first prints
//! `addr CV MUTEX`: the addresses (in this process) of the condvar's futex
//! word and of the mutex's lock word, so a test can tell from
//! `/proc/PID/syscall` which word the process sleeps on.
//!
//! The `sync-chaos-*` subcommands, for `tests/tests/chaos_sync.rs`, work on
//! another segment (see [`chaos`]) and take any segment name, POSIX or
//! System V (`sysv:0x...`).

use std::time::{Duration, Instant};

use shm_core::{SegmentId, Shared, SharedOptions, ShmSafe, ShmShared};
use shm_sync::{
    Condvar, FutexCondvar, LockError, Locked, Mutex, OwnerLock, Semaphore, Slept, TryLockError,
    WaitWord,
};

/// What `sync-hold` writes into the counter before it is killed: a repairer
/// must see it.
pub const DIRTY: u64 = u64::MAX;

/// Everything the `sync-*` subcommands share, one `T` of one
/// [`Shared`], so that each is reached through [`Shared::get`] and no two
/// references into the segment ever overlap.
#[repr(C)]
pub struct Layout {
    counter: Mutex<u64>,
    condvar: Condvar,
    futex_condvar: FutexCondvar,
    semaphores: [Semaphore; 2],
    owner_lock: OwnerLock,
    wait_word: WaitWord,
}

// SAFETY: `#[repr(C)]` of `ShmSafe` fields only: the layout is fixed, no
// field holds a pointer, every bit pattern of every field is valid (so of
// the whole), mutation goes through the fields' atomics and cells, and the
// type id names this layout.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Layout {
    const TYPE_ID: u64 = shm_core::type_id("shm_tests::helper::sync::Layout");
}

// SAFETY: every field is `ShmShared`, so every non-padding byte is atomic
// or in an `UnsafeCell`.
#[allow(unsafe_code)]
unsafe impl ShmShared for Layout {}

/// The test segment: the counter mutex and the other primitives.
pub struct Objects {
    shared: Shared<Layout>,
}

fn opts() -> SharedOptions {
    SharedOptions::new().kind("sync-test")
}

impl Objects {
    /// Creates the segment with the counter at `start` and initializes every
    /// primitive (the creator's job, before any child starts).
    pub fn create(id: &SegmentId, start: u64) -> Self {
        let shared = Shared::<Layout>::create(id, &opts(), |o| {
            o.counter.init(start)?;
            o.condvar.init()?;
            o.futex_condvar.init()?;
            o.semaphores[0].init(0);
            o.semaphores[1].init(0);
            o.owner_lock.init();
            o.wait_word.init(0);
            Ok(())
        })
        .expect("create the sync test segment");
        Objects { shared }
    }

    /// Opens the segment a test created.
    pub fn open(id: &SegmentId) -> Self {
        let shared = Shared::<Layout>::open(id, &opts()).expect("open the sync test segment");
        Objects { shared }
    }

    /// The counter.
    pub fn mutex(&self) -> &Mutex<u64> {
        &self.shared.get().counter
    }

    /// The pthread condvar.
    pub fn condvar(&self) -> &Condvar {
        &self.shared.get().condvar
    }

    /// The futex condvar.
    pub fn futex_condvar(&self) -> &FutexCondvar {
        &self.shared.get().futex_condvar
    }

    /// Semaphore 0 or 1.
    pub fn semaphore(&self, slot: usize) -> &Semaphore {
        &self.shared.get().semaphores[slot.min(1)]
    }

    /// The owner lock.
    pub fn owner_lock(&self) -> &OwnerLock {
        &self.shared.get().owner_lock
    }

    /// The bare wait word.
    pub fn wait_word(&self) -> &WaitWord {
        &self.shared.get().wait_word
    }

    /// The segment, to remove it.
    pub fn shared(&self) -> &Shared<Layout> {
        &self.shared
    }
}

/// A condvar of either kind, to run one protocol over both.
#[derive(Clone, Copy)]
enum Cv<'a> {
    Pthread(&'a Condvar),
    Futex(&'a FutexCondvar),
}

impl<'a> Cv<'a> {
    fn of(o: &'a Objects, kind: &str) -> Self {
        match kind {
            "pthread" => Cv::Pthread(o.condvar()),
            "futex" => Cv::Futex(o.futex_condvar()),
            other => panic!("condvar kind {other:?}: pthread or futex"),
        }
    }

    fn wait_while<'m>(
        self,
        g: shm_sync::MutexGuard<'m, u64>,
        f: impl FnMut(&mut u64) -> bool,
    ) -> Result<shm_sync::MutexGuard<'m, u64>, LockError<'m, u64>> {
        match self {
            Cv::Pthread(c) => c.wait_while(g, f),
            Cv::Futex(c) => c.wait_while(g, f),
        }
    }

    fn wait_timeout<'m>(
        self,
        g: shm_sync::MutexGuard<'m, u64>,
        d: Duration,
    ) -> Result<shm_sync::MutexGuard<'m, u64>, LockError<'m, u64>> {
        match self {
            Cv::Pthread(c) => c.wait_timeout(g, d).map(|(g, _)| g),
            Cv::Futex(c) => c.wait_timeout(g, d).map(|(g, _)| g),
        }
    }

    fn wait_timeout_while<'m>(
        self,
        g: shm_sync::MutexGuard<'m, u64>,
        d: Duration,
        f: impl FnMut(&mut u64) -> bool,
    ) -> Result<(shm_sync::MutexGuard<'m, u64>, bool), LockError<'m, u64>> {
        match self {
            Cv::Pthread(c) => c.wait_timeout_while(g, d, f),
            Cv::Futex(c) => c.wait_timeout_while(g, d, f),
        }
    }

    fn notify(self, all: bool) {
        match (self, all) {
            (Cv::Pthread(c), false) => c.notify_one(),
            (Cv::Pthread(c), true) => c.notify_all(),
            (Cv::Futex(c), false) => c.notify_one(),
            (Cv::Futex(c), true) => c.notify_all(),
        }
    }
}

/// Locks, treating an owner death as "repair by keeping the value" (these
/// subcommands run where no holder is killed; a death is reported on
/// stderr).
fn lock(m: &Mutex<u64>) -> shm_sync::MutexGuard<'_, u64> {
    match m.lock() {
        Ok(g) => g,
        Err(LockError::OwnerDied(g)) => {
            eprintln!("sync helper: previous owner died; marking consistent");
            g.make_consistent().expect("make_consistent");
            g
        }
        Err(e) => panic!("lock: {e}"),
    }
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> &'a str {
    args.get(i)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("missing argument {i}: {what}"))
}

fn num(args: &[String], i: usize, what: &str) -> u64 {
    arg(args, i, what)
        .parse()
        .unwrap_or_else(|e| panic!("argument {i} ({what}): {e}"))
}

/// Runs a `sync-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    if cmd.starts_with("sync-chaos-") {
        return chaos::run(cmd, args);
    }
    let f: fn(&Objects, &[String]) -> i32 = match cmd {
        "sync-incr" => incr,
        "sync-hold" => hold,
        "sync-lock" => lock_once,
        "sync-pingpong" => ping_pong,
        "sync-cv-wait" => cv_wait,
        "sync-cv-notify" => cv_notify,
        "sync-sem-post" => sem_post,
        "sync-sem-wait" => sem_wait,
        "sync-sem-timeout" => sem_timeout,
        "sync-owner-hold" => owner_hold,
        "sync-owner-lock" => owner_lock,
        "sync-owner-lock-for" => owner_lock_for,
        "sync-lock-for" => lock_for,
        "sync-lock-block" => lock_block,
        "sync-cv-timeout" => cv_timeout,
        "sync-ww-sleep" => ww_sleep,
        _ => return None,
    };
    let id = SegmentId::posix(arg(args, 0, "segment name")).expect("segment name");
    let o = Objects::open(&id);
    let code = f(&o, &args[1..]);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Some(code)
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn incr(o: &Objects, args: &[String]) -> i32 {
    let n = num(args, 0, "count");
    for _ in 0..n {
        *lock(o.mutex()) += 1;
    }
    say("done");
    0
}

fn hold(o: &Objects, _args: &[String]) -> i32 {
    let mut g = lock(o.mutex());
    *g = DIRTY;
    say("locked");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn lock_once(o: &Objects, args: &[String]) -> i32 {
    let action = arg(args, 0, "repair|leave|report");
    match o.mutex().lock_timeout(Duration::from_secs(20)) {
        Ok(g) => say(&format!("ok {}", *g)),
        Err(TryLockError::OwnerDied(mut g)) => {
            let seen = *g;
            match action {
                "repair" => {
                    // Repair: the dead holder left the dirty marker.
                    if *g == DIRTY {
                        *g = 0;
                    }
                    *g += 1;
                    g.make_consistent().expect("make_consistent");
                    say(&format!("owner-died {seen} repaired {}", *g));
                }
                // Dropping the guard unrepaired makes the mutex not
                // recoverable.
                _ => say(&format!("owner-died {seen}")),
            }
        }
        Err(TryLockError::NotRecoverable) => say("not-recoverable"),
        Err(TryLockError::TimedOut) => say("timed-out"),
        Err(TryLockError::WouldBlock) => say("would-block"),
        Err(TryLockError::Uninitialized) => say("uninitialized"),
        Err(TryLockError::Os(e)) => say(&format!("os {e}")),
    }
    0
}

fn ping_pong(o: &Objects, args: &[String]) -> i32 {
    let cv = Cv::of(o, arg(args, 0, "pthread|futex"));
    let parity = num(args, 1, "parity");
    let rounds = num(args, 2, "rounds");
    let end = 2 * rounds;
    let mut g = lock(o.mutex());
    loop {
        g = match cv.wait_while(g, |v| *v % 2 != parity && *v < end) {
            Ok(g) => g,
            Err(e) => panic!("wait: {e}"),
        };
        if *g >= end {
            break;
        }
        *g += 1;
        cv.notify(false);
    }
    drop(g);
    // The other player may be waiting for the final value.
    cv.notify(true);
    say("done");
    0
}

fn cv_wait(o: &Objects, args: &[String]) -> i32 {
    let cv = Cv::of(o, arg(args, 0, "pthread|futex"));
    let target = num(args, 1, "target");
    let mode = args.get(2).map(String::as_str);
    if mode == Some("long-addr") {
        let cv_addr = match cv {
            Cv::Pthread(c) => std::ptr::from_ref(c).addr(),
            Cv::Futex(c) => std::ptr::from_ref(c).addr(),
        };
        let mutex_addr = std::ptr::from_ref(o.mutex()).addr();
        say(&format!("addr {cv_addr:#x} {mutex_addr:#x}"));
    }
    let g = lock(o.mutex());
    // Printed with the lock held: once the test can lock the mutex, this
    // process is inside the wait.
    say("waiting");
    let r = if matches!(mode, Some("long" | "long-addr")) {
        let mut g = g;
        loop {
            if *g >= target {
                break Ok(g);
            }
            match cv.wait_timeout(g, Duration::from_secs(120)) {
                Ok(next) => g = next,
                Err(e) => break Err(e),
            }
        }
    } else {
        cv.wait_while(g, |v| *v < target)
    };
    match r {
        Ok(g) => say(&format!("woke {}", *g)),
        // The mutex holder died while this process waited: the relock
        // reports it. Mark consistent, keeping the value.
        Err(LockError::OwnerDied(g)) => {
            g.make_consistent().expect("make_consistent");
            say(&format!("owner-died {}", *g));
        }
        Err(e) => say(&format!("error {e}")),
    }
    0
}

fn cv_notify(o: &Objects, args: &[String]) -> i32 {
    let cv = Cv::of(o, arg(args, 0, "pthread|futex"));
    let count = num(args, 1, "count");
    let all = arg(args, 2, "one|all") == "all";
    for _ in 0..count {
        *lock(o.mutex()) += 1;
        cv.notify(all);
    }
    say("notified");
    0
}

fn sem_post(o: &Objects, args: &[String]) -> i32 {
    let s = o.semaphore(num(args, 0, "slot") as usize);
    for _ in 0..num(args, 1, "count") {
        s.post().expect("post");
    }
    say("posted");
    0
}

fn sem_wait(o: &Objects, args: &[String]) -> i32 {
    let s = o.semaphore(num(args, 0, "slot") as usize);
    let n = num(args, 1, "count");
    for _ in 0..n {
        s.wait();
    }
    say(&format!("got {n}"));
    0
}

fn sem_timeout(o: &Objects, args: &[String]) -> i32 {
    let s = o.semaphore(num(args, 0, "slot") as usize);
    let ms = num(args, 1, "milliseconds");
    let start = Instant::now();
    let got = s.wait_timeout(Duration::from_millis(ms));
    let elapsed = start.elapsed().as_millis();
    say(&format!(
        "{} {elapsed}",
        if got { "got" } else { "timed-out" }
    ));
    0
}

fn owner_hold(o: &Objects, _args: &[String]) -> i32 {
    let guard = match o.owner_lock().lock(Duration::from_secs(20)) {
        Ok(l) => l.into_guard(),
        Err(e) => panic!("owner lock: {e}"),
    };
    say("locked");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        let _ = &guard;
    }
}

fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

fn owner_lock_for(o: &Objects, args: &[String]) -> i32 {
    let ms = num(args, 0, "milliseconds");
    let start = Instant::now();
    match o.owner_lock().lock(Duration::from_millis(ms)) {
        Ok(Locked::Clean(_)) => say(&format!("clean {}", ms_since(start))),
        Ok(Locked::TakenOver { dead, .. }) => {
            say(&format!("taken-over {} {}", dead.pid, ms_since(start)))
        }
        Err(e) => say(&format!("stuck {} {}", e.holder.pid, ms_since(start))),
    }
    0
}

/// Repairs after an owner death: the dirty marker becomes 0.
fn repair(g: &mut shm_sync::MutexGuard<'_, u64>) -> u64 {
    let seen = **g;
    if seen == DIRTY {
        **g = 0;
    }
    g.make_consistent().expect("make_consistent");
    seen
}

fn lock_for(o: &Objects, args: &[String]) -> i32 {
    let ms = num(args, 0, "milliseconds");
    let start = Instant::now();
    match o.mutex().lock_timeout(Duration::from_millis(ms)) {
        Ok(g) => say(&format!("ok {} {}", *g, ms_since(start))),
        Err(TryLockError::OwnerDied(mut g)) => {
            let seen = repair(&mut g);
            say(&format!("owner-died {seen} {}", ms_since(start)));
        }
        Err(TryLockError::TimedOut) => say(&format!("timed-out {}", ms_since(start))),
        Err(e) => say(&format!("error {e}")),
    }
    0
}

fn lock_block(o: &Objects, _args: &[String]) -> i32 {
    let start = Instant::now();
    match o.mutex().lock() {
        Ok(g) => say(&format!("ok {} {}", *g, ms_since(start))),
        Err(LockError::OwnerDied(mut g)) => {
            let seen = repair(&mut g);
            say(&format!("owner-died {seen} {}", ms_since(start)));
        }
        Err(e) => say(&format!("error {e}")),
    }
    0
}

fn cv_timeout(o: &Objects, args: &[String]) -> i32 {
    let cv = Cv::of(o, arg(args, 0, "pthread|futex"));
    let ms = num(args, 1, "milliseconds");
    let g = lock(o.mutex());
    let at_start = *g;
    let start = Instant::now();
    if args.get(2).map(String::as_str) == Some("once") {
        let r = match cv {
            Cv::Pthread(c) => c.wait_timeout(g, Duration::from_millis(ms)),
            Cv::Futex(c) => c.wait_timeout(g, Duration::from_millis(ms)),
        };
        match r {
            Ok((_, true)) => say(&format!("timed-out {}", ms_since(start))),
            Ok((g, false)) => say(&format!("returned {} {}", *g, ms_since(start))),
            Err(e) => say(&format!("error {e}")),
        }
        return 0;
    }
    match cv.wait_timeout_while(g, Duration::from_millis(ms), |v| *v == at_start) {
        Ok((_, true)) => say(&format!("timed-out {}", ms_since(start))),
        Ok((g, false)) => say(&format!("woke {} {}", *g, ms_since(start))),
        Err(e) => say(&format!("error {e}")),
    }
    0
}

fn ww_sleep(o: &Objects, args: &[String]) -> i32 {
    let w = o.wait_word();
    let ms = num(args, 0, "milliseconds");
    let start = Instant::now();
    let deadline = start + Duration::from_millis(ms);
    let seen = w.load();
    let mut early = 0u64;
    loop {
        match w.sleep(seen, Some(deadline), || false) {
            Slept::TimedOut => {
                say(&format!("timed-out {} returns {early}", ms_since(start)));
                return 0;
            }
            Slept::Changed | Slept::Woken if w.load() != seen => {
                say(&format!(
                    "changed {} {} returns {early}",
                    w.load(),
                    ms_since(start)
                ));
                return 0;
            }
            // A signal (EINTR) or a spurious wake-up: look again, with the
            // same absolute deadline.
            Slept::Changed | Slept::Woken => early += 1,
        }
    }
}

fn owner_lock(o: &Objects, _args: &[String]) -> i32 {
    match o.owner_lock().lock(Duration::from_secs(60)) {
        Ok(Locked::Clean(_)) => say("clean"),
        Ok(Locked::TakenOver { dead, .. }) => say(&format!("taken-over {}", dead.pid)),
        Err(e) => say(&format!("stuck {}", e.holder.pid)),
    }
    0
}

/// The chaos segment and the `sync-chaos-*` processes of
/// `tests/tests/chaos_sync.rs`: lockers, condvar waiters and a notifier,
/// semaphore posters and waiters, all on one segment, any of them killed
/// with SIGKILL at any moment.
///
/// The segment is a [`Shared<chaos::Layout>`]: the mutex guards
/// `[a, b, holder, gen]` with the invariant `a == b` and `holder == 0`
/// whenever the lock is free. A locker sets `holder` to its PID, stores
/// `a + 1` into `a`, spins, stores the same into `b`, clears `holder` and
/// unlocks. A holder killed between the two steps leaves `a == b + 1` and
/// its PID in `holder`; the next locker gets `OwnerDied`, rolls the update
/// forward (`b = a`), clears `holder` and marks the mutex consistent.
/// Beside the mutex lie a [`FutexCondvar`] (waiters wait for `gen` to
/// reach a target), a [`Semaphore`] and a stop word for the semaphore
/// waiters. The stores are atomic (`Release`) so that the compiler keeps
/// them in program order: a kill sees them in that order.
///
/// | subcommand | args | does |
/// |---|---|---|
/// | `sync-chaos-create` | NAME MS | creates the segment; its initializer prints `initializing` and sleeps MS (to be killed) |
/// | `sync-chaos-open` | NAME MS | opens with an MS deadline; prints `creator-died PID`, `ready` or `error ...` |
/// | `sync-chaos-lock` | NAME ITERS SEED | ITERS two-step updates; prints `cs A` after each |
/// | `sync-chaos-cv-wait` | NAME TARGET | prints `waiting` with the lock held, waits (no timeout) while `gen < TARGET`, prints `woke GEN` |
/// | `sync-chaos-cv-notify` | NAME COUNT SEED | COUNT times: `gen += 1` under the lock, unlock, notify (one or all, the last one all); prints `n GEN` after each |
/// | `sync-chaos-sem-post` | NAME COUNT SEED | COUNT posts; prints `p` after each |
/// | `sync-chaos-sem-wait` | NAME MS | `wait_timeout(MS)` in a loop, `t` after each token; once the stop word is set and a wait timed out, drains with `try_wait` and prints `done` |
/// | `sync-chaos-check` | NAME | one `lock_timeout(20 s)`; prints `state A B HOLDER GEN` |
///
/// Every process that gets `OwnerDied` prints `owner-died HOLDER repaired`
/// (it found `a == b + 1`) or `owner-died HOLDER clean`. A state that must
/// never happen (`a` neither `b` nor `b + 1`, a broken invariant under a
/// healthy lock, `NotRecoverable`) prints `error ...` and exits with 2.
pub mod chaos {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use shm_core::shim::real::{AtomicU32, AtomicU64};
    use shm_core::{CreateError, OpenError, SegmentId, Shared, SharedOptions, ShmSafe, ShmShared};
    use shm_sync::{FutexCondvar, LockError, Mutex, MutexGuard, Semaphore, TryLockError};

    use super::say;

    /// What the mutex guards: `[a, b, holder, gen]`.
    pub type Guarded = [AtomicU64; 4];
    /// Index of `a`, the first step of the update.
    pub const A: usize = 0;
    /// Index of `b`, the second step.
    pub const B: usize = 1;
    /// Index of the holder's PID while it updates (0 otherwise).
    pub const HOLDER: usize = 2;
    /// Index of the counter the condvar waiters wait on.
    pub const GEN: usize = 3;

    fn opts() -> SharedOptions {
        SharedOptions::new().kind("sync-chaos")
    }

    fn zeroed() -> Guarded {
        std::array::from_fn(|_| AtomicU64::new(0))
    }

    /// Everything the chaos subcommands share, one `T` of one [`Shared`].
    #[repr(C)]
    pub struct Layout {
        mutex: Mutex<Guarded>,
        condvar: FutexCondvar,
        semaphore: Semaphore,
        stop: AtomicU32,
    }

    // SAFETY: `#[repr(C)]` of `ShmSafe` fields only: the layout is fixed,
    // no field holds a pointer, every bit pattern of every field is valid,
    // mutation goes through the fields' atomics and cells, and the type id
    // names this layout.
    #[allow(unsafe_code)]
    unsafe impl ShmSafe for Layout {
        const TYPE_ID: u64 = shm_core::type_id("shm_tests::helper::sync::chaos::Layout");
    }

    // SAFETY: every field is `ShmShared`, so every non-padding byte is
    // atomic or in an `UnsafeCell`.
    #[allow(unsafe_code)]
    unsafe impl ShmShared for Layout {}

    /// The chaos segment.
    pub struct Chaos {
        shared: Shared<Layout>,
    }

    impl Chaos {
        /// Creates the segment (this process owns it) and initializes every
        /// primitive in it.
        pub fn create(id: &SegmentId) -> Result<Self, CreateError> {
            let shared = Shared::<Layout>::create(id, &opts(), |c| {
                c.mutex.init(zeroed())?;
                // Zero is already the empty state of both; init says so.
                let _ = c.condvar.init();
                c.semaphore.init(0);
                c.stop.store(0, Ordering::Release);
                Ok(())
            })?;
            Ok(Chaos { shared })
        }

        /// Opens the segment, waiting at most `timeout` for its creator.
        pub fn open(id: &SegmentId, timeout: Duration) -> Result<Self, OpenError> {
            let shared = Shared::<Layout>::open(id, &opts().timeout(timeout))?;
            Ok(Chaos { shared })
        }

        /// The mutex.
        pub fn mutex(&self) -> &Mutex<Guarded> {
            &self.shared.get().mutex
        }

        /// The futex condvar.
        pub fn condvar(&self) -> &FutexCondvar {
            &self.shared.get().condvar
        }

        /// The semaphore.
        pub fn semaphore(&self) -> &Semaphore {
            &self.shared.get().semaphore
        }

        /// Nonzero: semaphore waiters stop once the semaphore is empty.
        pub fn stop(&self) -> &AtomicU32 {
            &self.shared.get().stop
        }
    }

    /// What a locker found when it got the lock.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Found {
        /// A normal lock; the invariant held.
        Clean,
        /// The previous holder died; `holder` is the PID it left (0 if it
        /// died outside its update), `repaired` says whether the update was
        /// half done and rolled forward.
        OwnerDied {
            /// The PID in the holder field.
            holder: u64,
            /// Whether `a == b + 1` was found and repaired.
            repaired: bool,
        },
    }

    impl Found {
        /// The line a process prints for it, or `None` for a clean lock.
        pub fn line(self) -> Option<String> {
            match self {
                Found::Clean => None,
                Found::OwnerDied { holder, repaired } => Some(format!(
                    "owner-died {holder} {}",
                    if repaired { "repaired" } else { "clean" }
                )),
            }
        }
    }

    /// The invariant of a healthy lock.
    pub fn check(g: &MutexGuard<'_, Guarded>) -> Result<(), String> {
        let (a, b, h) = (
            g[A].load(Ordering::Acquire),
            g[B].load(Ordering::Acquire),
            g[HOLDER].load(Ordering::Acquire),
        );
        if a == b && h == 0 {
            Ok(())
        } else {
            Err(format!(
                "invariant broken under a healthy lock: a {a} b {b} holder {h}"
            ))
        }
    }

    /// After `OwnerDied`: rolls a half-done update forward, clears the
    /// holder and marks the mutex consistent.
    pub fn repair(g: &MutexGuard<'_, Guarded>) -> Result<Found, String> {
        let (a, b, holder) = (
            g[A].load(Ordering::Acquire),
            g[B].load(Ordering::Acquire),
            g[HOLDER].load(Ordering::Acquire),
        );
        let repaired = if a == b {
            false
        } else if a == b.wrapping_add(1) {
            g[B].store(a, Ordering::Release);
            true
        } else {
            return Err(format!(
                "invariant broken beyond repair: a {a} b {b} holder {holder}"
            ));
        };
        g[HOLDER].store(0, Ordering::Release);
        g.make_consistent()
            .map_err(|e| format!("make_consistent: {e}"))?;
        Ok(Found::OwnerDied { holder, repaired })
    }

    /// Turns the outcome of a lock or a condvar wait into a guard with a
    /// healthy invariant, repairing after an owner death.
    pub fn settle<'a>(
        r: Result<MutexGuard<'a, Guarded>, LockError<'a, Guarded>>,
    ) -> Result<(MutexGuard<'a, Guarded>, Found), String> {
        match r {
            Ok(g) => {
                check(&g)?;
                Ok((g, Found::Clean))
            }
            Err(LockError::OwnerDied(g)) => {
                let f = repair(&g)?;
                Ok((g, f))
            }
            Err(e) => Err(format!("lock: {e}")),
        }
    }

    /// How long one slice of [`lock`] waits before it looks again.
    pub const SLICE: Duration = Duration::from_millis(100);

    /// Locks, repairing after an owner death.
    ///
    /// With `Mutex::lock`, as a user would. (Before `lock` slept in
    /// `Mutex::RECHECK` slices it could sleep forever here: an untimed
    /// `pthread_mutex_lock` on a robust mutex loses its wake-up when the
    /// process that was woken to take the lock is killed before it takes
    /// it; this suite found that, see docs/reliability.md.) With
    /// `SHM_CHAOS_SYNC_TIMED_LOCK` set, it locks in slices of
    /// `lock_timeout(SLICE)` instead, printing `lock-slice-expired` for each
    /// slice that ran out.
    pub fn lock(m: &Mutex<Guarded>) -> Result<(MutexGuard<'_, Guarded>, Found), String> {
        if std::env::var_os("SHM_CHAOS_SYNC_TIMED_LOCK").is_none() {
            return settle(m.lock());
        }
        let start = std::time::Instant::now();
        loop {
            match m.lock_timeout(SLICE) {
                Ok(g) => return settle(Ok(g)),
                Err(TryLockError::OwnerDied(g)) => return settle(Err(LockError::OwnerDied(g))),
                Err(TryLockError::TimedOut) if start.elapsed() < Duration::from_secs(30) => {
                    say("lock-slice-expired");
                }
                Err(e) => return Err(format!("lock_timeout: {e}")),
            }
        }
    }

    /// Locks with a deadline (for the test process and the final check,
    /// so that a mutex held for good is a failure, not a hang), repairing
    /// after an owner death.
    pub fn lock_for(
        m: &Mutex<Guarded>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'_, Guarded>, Found), String> {
        match m.lock_timeout(timeout) {
            Ok(g) => {
                check(&g)?;
                Ok((g, Found::Clean))
            }
            Err(TryLockError::OwnerDied(g)) => {
                let f = repair(&g)?;
                Ok((g, f))
            }
            Err(e) => Err(format!("lock_timeout({timeout:?}): {e}")),
        }
    }

    fn report(f: Found) {
        if let Some(line) = f.line() {
            say(&line);
        }
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*, never zero.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn rng(args: &[String], i: usize) -> Rng {
        let seed: u64 = super::num(args, i, "seed");
        Rng(seed ^ u64::from(std::process::id()).rotate_left(32) | 1)
    }

    /// Runs a `sync-chaos-*` subcommand.
    pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
        let f: fn(&SegmentId, &[String]) -> Result<(), String> = match cmd {
            "sync-chaos-create" => create,
            "sync-chaos-open" => open,
            "sync-chaos-lock" => locker,
            "sync-chaos-cv-wait" => cv_wait,
            "sync-chaos-cv-notify" => cv_notify,
            "sync-chaos-sem-post" => sem_post,
            "sync-chaos-sem-wait" => sem_wait,
            "sync-chaos-check" => check_once,
            _ => return None,
        };
        let id: SegmentId = super::arg(args, 0, "segment name")
            .parse()
            .expect("segment name");
        Some(match f(&id, &args[1..]) {
            Ok(()) => 0,
            Err(e) => {
                say(&format!("error {e}"));
                2
            }
        })
    }

    fn attach(id: &SegmentId) -> Result<Chaos, String> {
        Chaos::open(id, Duration::from_secs(20)).map_err(|e| format!("open: {e}"))
    }

    fn create(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let ms = super::num(args, 0, "milliseconds");
        let shared = Shared::<Layout>::create(id, &opts(), |c| {
            c.mutex.init(zeroed())?;
            say("initializing");
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        })
        .map_err(|e| format!("create: {e}"))?;
        say("ready");
        drop(shared);
        Ok(())
    }

    fn open(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let ms = super::num(args, 0, "milliseconds");
        match Chaos::open(id, Duration::from_millis(ms)) {
            Ok(_) => say("ready"),
            Err(OpenError::CreatorDied { pid, .. }) => say(&format!("creator-died {pid}")),
            Err(e) => say(&format!("error {e}")),
        }
        Ok(())
    }

    fn locker(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let c = attach(id)?;
        let iters = super::num(args, 0, "iterations");
        let mut rng = rng(args, 1);
        let pid = u64::from(std::process::id());
        for _ in 0..iters {
            let (g, found) = lock(c.mutex())?;
            report(found);
            g[HOLDER].store(pid, Ordering::Release);
            let a = g[A].load(Ordering::Acquire) + 1;
            g[A].store(a, Ordering::Release);
            // Widen the window between the two steps: spin, or sometimes
            // sleep holding the lock, so that kills land here too.
            if rng.next().is_multiple_of(4) {
                std::thread::sleep(Duration::from_micros(rng.next() % 100));
            } else {
                for _ in 0..rng.next() % 512 {
                    std::hint::spin_loop();
                }
            }
            g[B].store(a, Ordering::Release);
            g[HOLDER].store(0, Ordering::Release);
            drop(g);
            say(&format!("cs {a}"));
            if rng.next().is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(rng.next() % 300));
            }
        }
        say("done");
        Ok(())
    }

    fn cv_wait(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let c = attach(id)?;
        let target = super::num(args, 0, "target");
        let (mut g, found) = lock(c.mutex())?;
        report(found);
        // Printed with the lock held: once anyone else locks, this process
        // is inside the wait.
        say("waiting");
        loop {
            // No timeout: a lost wake-up hangs this process and the test's
            // watchdog turns that into a failure.
            let r = c
                .condvar()
                .wait_while(g, |d| d[GEN].load(Ordering::Acquire) < target);
            let (next, found) = settle(r)?;
            g = next;
            report(found);
            if g[GEN].load(Ordering::Acquire) >= target {
                break;
            }
        }
        say(&format!("woke {}", g[GEN].load(Ordering::Acquire)));
        Ok(())
    }

    fn cv_notify(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let c = attach(id)?;
        let count = super::num(args, 0, "count");
        let mut rng = rng(args, 1);
        for i in 0..count {
            let (g, found) = lock(c.mutex())?;
            report(found);
            let next_gen = g[GEN].load(Ordering::Acquire) + 1;
            g[GEN].store(next_gen, Ordering::Release);
            drop(g);
            if i + 1 == count || rng.next().is_multiple_of(2) {
                c.condvar().notify_all();
            } else {
                c.condvar().notify_one();
            }
            say(&format!("n {next_gen}"));
            std::thread::sleep(Duration::from_micros(rng.next() % 2000));
        }
        say("done");
        Ok(())
    }

    fn sem_post(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let c = attach(id)?;
        let count = super::num(args, 0, "count");
        let mut rng = rng(args, 1);
        for _ in 0..count {
            c.semaphore().post().map_err(|e| format!("post: {e}"))?;
            say("p");
            if rng.next().is_multiple_of(8) {
                std::thread::sleep(Duration::from_micros(rng.next() % 500));
            }
        }
        say("done");
        Ok(())
    }

    fn sem_wait(id: &SegmentId, args: &[String]) -> Result<(), String> {
        let c = attach(id)?;
        let ms = super::num(args, 0, "milliseconds");
        let s = c.semaphore();
        loop {
            if s.wait_timeout(Duration::from_millis(ms)) {
                say("t");
            } else if c.stop().load(Ordering::Acquire) != 0 {
                break;
            }
        }
        // Every post happened before the stop word was set: take what is
        // left, so that a surviving waiter leaves the semaphore empty.
        while s.try_wait() {
            say("t");
        }
        say("done");
        Ok(())
    }

    fn check_once(id: &SegmentId, _args: &[String]) -> Result<(), String> {
        let c = attach(id)?;
        let (g, found) = lock_for(c.mutex(), Duration::from_secs(20))?;
        report(found);
        say(&format!(
            "state {} {} {} {}",
            g[A].load(Ordering::Acquire),
            g[B].load(Ordering::Acquire),
            g[HOLDER].load(Ordering::Acquire),
            g[GEN].load(Ordering::Acquire)
        ));
        Ok(())
    }
}
