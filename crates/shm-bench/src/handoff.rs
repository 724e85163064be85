//! Cross-process hand-off latency of each shm-sync primitive: two processes
//! pass a turn back and forth through the primitive, and the time per
//! one-way hand-off is reported (half a round trip).
//!
//! - `mutex`: a turn counter under `shm_sync::Mutex`; each side locks,
//!   takes the turn if it is its own, unlocks, and polls again (the lock
//!   is what passes the turn);
//! - `futex-condvar` and `condvar`: the same counter, each side sleeping on
//!   the condvar until the turn is its own and notifying after taking it;
//! - `semaphore`: two semaphores, one for each direction.
//!
//! The parent times the round trips; the child is `shm-bench handoff-child
//! NAME KIND COUNT`, started from the current executable.

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::{SegmentId, Shared, SharedOptions};
use shm_sync::MutexGuard;

use crate::micro::Micro;
use crate::sys::pad::Pad;

/// The primitives measured.
pub const KINDS: [&str; 4] = ["mutex", "futex-condvar", "condvar", "semaphore"];

const SAMPLES: u64 = 7;

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn lock(pad: &Pad) -> io::Result<MutexGuard<'_, u64>> {
    pad.mutex.lock().map_err(err)
}

/// How long one hand-off may take before the run is declared hung (the
/// other process died, or the primitive lost a wake-up): a watchdog, never
/// a timing assertion.
const HUNG: Duration = Duration::from_secs(30);

fn hung(kind: &str) -> io::Error {
    err(format!(
        "the {kind} hand-off did not come back within {HUNG:?}: the other process died or hung"
    ))
}

/// One round trip from `side` (0: parent, 1: child) of `kind`: take the
/// turn when it is ours (counter even for the parent, odd for the child),
/// pass it on, and return once it came back (parent) or was passed on
/// (child). Every wait is bounded by [`HUNG`].
fn step(pad: &Pad, kind: &str, side: u64) -> io::Result<()> {
    let start = Instant::now();
    match kind {
        "mutex" => loop {
            let mut g = lock(pad)?;
            if *g % 2 == side {
                *g += 1;
                return Ok(());
            }
            drop(g);
            if start.elapsed() > HUNG {
                return Err(hung(kind));
            }
            std::hint::spin_loop();
        },
        "futex-condvar" => {
            let g = lock(pad)?;
            let (mut g, timed_out) = pad
                .futex_condvar
                .wait_timeout_while(g, HUNG, |c| *c % 2 != side)
                .map_err(err)?;
            if timed_out {
                return Err(hung(kind));
            }
            *g += 1;
            drop(g);
            pad.futex_condvar.notify_all();
            Ok(())
        }
        "condvar" => {
            let g = lock(pad)?;
            let (mut g, timed_out) = pad
                .condvar
                .wait_timeout_while(g, HUNG, |c| *c % 2 != side)
                .map_err(err)?;
            if timed_out {
                return Err(hung(kind));
            }
            *g += 1;
            drop(g);
            pad.condvar.notify_all();
            Ok(())
        }
        "semaphore" => {
            let (give, take) = if side == 0 {
                (&pad.ping, &pad.pong)
            } else {
                (&pad.pong, &pad.ping)
            };
            if side == 0 {
                give.post().map_err(err)?;
            }
            if !take.wait_timeout(HUNG) {
                return Err(hung(kind));
            }
            if side == 1 {
                give.post().map_err(err)?;
            }
            Ok(())
        }
        other => Err(err(format!("unknown hand-off kind {other:?}"))),
    }
}

/// The child's side: `count` steps.
pub fn child(name: &str, kind: &str, count: u64) -> io::Result<()> {
    let id = SegmentId::posix(name).map_err(err)?;
    let shared = Shared::<Pad>::open(&id, &SharedOptions::new()).map_err(err)?;
    let pad = shared.get();
    pad.attached.store(1, Ordering::Release);
    for _ in 0..count {
        // For the turn-based kinds the child waits for the parent's move
        // inside `step`; the parent's last round trip ends when the child
        // has moved, so the counts match.
        step(pad, kind, 1)?;
    }
    Ok(())
}

/// Measures every kind with `iters` round trips per sample.
pub fn run(quick: bool) -> io::Result<Vec<Micro>> {
    let iters = if quick { 200 } else { 20_000 };
    KINDS.iter().map(|k| measure(k, iters)).collect()
}

fn measure(kind: &str, iters: u64) -> io::Result<Micro> {
    let name = format!("/shmrs-bench-handoff-{}-{kind}", std::process::id());
    let id = SegmentId::posix(&name).map_err(err)?;
    let shared = Shared::<Pad>::create(&id, &SharedOptions::new(), |p| {
        p.mutex.init(0)?;
        p.condvar.init()?;
        p.futex_condvar.init()?;
        p.ping.init(0);
        p.pong.init(0);
        Ok(())
    })
    .map_err(err)?;
    let warm = iters / 10 + 1;
    let total = warm + SAMPLES * iters;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["handoff-child", &name, kind, &total.to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    let result = (|| {
        let pad = shared.get();
        let start = Instant::now();
        while pad.attached.load(Ordering::Acquire) == 0 {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(err("the hand-off child did not attach within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..warm {
            step(pad, kind, 0)?;
        }
        let mut samples = Vec::new();
        for _ in 0..SAMPLES {
            let t = Instant::now();
            for _ in 0..iters {
                step(pad, kind, 0)?;
            }
            // Two hand-offs per round trip.
            samples.push(t.elapsed().as_nanos() as f64 / iters as f64 / 2.0);
        }
        samples.sort_by(f64::total_cmp);
        Ok(Micro {
            name: format!("hand-off between two processes: {kind} (one way)"),
            median_ns: samples[samples.len() / 2],
            min_ns: samples[0],
        })
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let _ = shared.segment().remove();
    let micro = result?;
    if !status.success() {
        return Err(err(format!("the {kind} hand-off child failed: {status}")));
    }
    Ok(micro)
}
