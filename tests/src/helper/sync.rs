//! `sync-*` subcommands: processes that lock, wait, notify and post on the
//! shm-sync primitives of one segment, for `tests/tests/sync.rs`.
//!
//! Every subcommand takes the segment name first. The segment is a
//! [`Shared<Mutex<u64>>`] (the counter) whose trailing region holds a
//! [`Condvar`], a [`FutexCondvar`] and two [`Semaphore`]s; see [`Objects`].
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

use std::time::{Duration, Instant};

use shm_core::{SegmentId, Shared, SharedOptions};
use shm_sync::{Condvar, FutexCondvar, LockError, Mutex, Semaphore, TryLockError};

/// What `sync-hold` writes into the counter before it is killed: a repairer
/// must see it.
pub const DIRTY: u64 = u64::MAX;

/// Offsets in the trailing region.
const CONDVAR_AT: usize = 0;
const FUTEX_CONDVAR_AT: usize = 64;
const SEM_AT: [usize; 2] = [72, 80];
const TAIL: u64 = 128;

/// The test segment: the counter mutex and, in its trailing region, the
/// other primitives.
pub struct Objects {
    shared: Shared<Mutex<u64>>,
}

fn opts() -> SharedOptions {
    SharedOptions::new().kind("sync-test").extra(TAIL)
}

impl Objects {
    /// Creates the segment with the counter at `start` and initializes every
    /// primitive (the creator's job, before any child starts).
    pub fn create(id: &SegmentId, start: u64) -> Self {
        let shared = Shared::<Mutex<u64>>::create(id, &opts(), |m| Ok(m.init(start)?))
            .expect("create the sync test segment");
        let o = Objects { shared };
        o.condvar().init().expect("init condvar");
        o.futex_condvar().init().expect("init futex condvar");
        o.semaphore(0).init(0);
        o.semaphore(1).init(0);
        o
    }

    /// Opens the segment a test created.
    pub fn open(id: &SegmentId) -> Self {
        let shared = Shared::<Mutex<u64>>::open(id, &opts()).expect("open the sync test segment");
        Objects { shared }
    }

    /// The counter.
    pub fn mutex(&self) -> &Mutex<u64> {
        self.shared.get()
    }

    /// The pthread condvar.
    pub fn condvar(&self) -> &Condvar {
        self.tail(CONDVAR_AT)
    }

    /// The futex condvar.
    pub fn futex_condvar(&self) -> &FutexCondvar {
        self.tail(FUTEX_CONDVAR_AT)
    }

    /// Semaphore 0 or 1.
    pub fn semaphore(&self, slot: usize) -> &Semaphore {
        self.tail(SEM_AT[slot.min(1)])
    }

    /// The segment, to remove it.
    pub fn shared(&self) -> &Shared<Mutex<u64>> {
        &self.shared
    }

    fn tail<T: shm_core::ShmShared>(&self, at: usize) -> &T {
        self.shared
            .segment()
            .view::<T>(self.shared.tail_offset() + at)
            .expect("trailing region holds the primitive")
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
    let g = lock(o.mutex());
    // Printed with the lock held: once the test can lock the mutex, this
    // process is inside the wait.
    say("waiting");
    let r = if args.get(2).map(String::as_str) == Some("long") {
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
