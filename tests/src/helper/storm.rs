//! `storm SUBCOMMAND ARGS...`: runs any other subcommand while its main
//! thread gets a `SIGALRM` every 20 ms from a handler installed without
//! `SA_RESTART`, so every blocking system call it makes (futex waits,
//! sleeps) keeps being interrupted with `EINTR`. What the queue and the
//! sync primitives promise must hold all the same: no hang, no early
//! return without a reason, dead peers still noticed within their
//! liveness slice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::pthread::{pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use shm_core::shim::real::{AtomicBool, AtomicU64};

/// Signals delivered so far (printed at the end, so a test can tell the
/// storm really happened).
static DELIVERED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    // Async-signal-safe: one atomic add.
    DELIVERED.fetch_add(1, Ordering::Relaxed);
}

/// How often the main thread is interrupted.
pub const PERIOD: Duration = Duration::from_millis(20);

/// Runs a `storm` (or `timed-recv`) subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    if cmd == "timed-recv" {
        return Some(timed_recv(args));
    }
    if cmd != "storm" {
        return None;
    }
    let Some((inner, rest)) = args.split_first() else {
        eprintln!("usage: storm SUBCOMMAND [ARGS...]");
        return Some(2);
    };
    // No SA_RESTART: interrupted system calls fail with EINTR instead of
    // being restarted by the kernel.
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only does an atomic add, which is
    // async-signal-safe, and touches no state the interrupted code holds.
    if let Err(e) = unsafe { sigaction(Signal::SIGALRM, &action) } {
        eprintln!("storm: sigaction: {e}");
        return Some(2);
    }
    let main = pthread_self();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopper = std::sync::Arc::clone(&stop);
    let ticker = std::thread::spawn(move || {
        while !stopper.load(Ordering::Relaxed) {
            std::thread::sleep(PERIOD);
            // The main thread is the one that blocks in the queue.
            let _ = pthread_kill(main, Signal::SIGALRM);
        }
    });
    let code = super::dispatch(inner, rest);
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    println!("storm signals {}", DELIVERED.load(Ordering::Relaxed));
    code
}

/// `timed-recv NAME MS`: registers a receiver, prints "registered", then
/// one `recv_timeout(MS)` and how it ended: `timeout-after ELAPSED_MS`, or
/// `got LEN`, or `err MESSAGE`.
fn timed_recv(args: &[String]) -> i32 {
    let (Some(name), Some(ms)) = (args.first(), args.get(1).and_then(|m| m.parse().ok())) else {
        eprintln!("usage: timed-recv NAME MS");
        return 2;
    };
    let opened = name
        .parse::<shm_core::SegmentId>()
        .map_err(|e| e.to_string())
        .and_then(|id| shm_queue::Queue::open(&id).map_err(|e| e.to_string()));
    let q = match opened {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: open {name}: {e}");
            return 1;
        }
    };
    let Ok(rx) = q.receiver() else {
        eprintln!("error: register");
        return 1;
    };
    println!("registered");
    let start = std::time::Instant::now();
    match rx.recv_timeout(Duration::from_millis(ms)) {
        Ok(m) => println!("got {}", m.len()),
        Err(shm_queue::RecvTimeoutError::Timeout) => {
            println!("timeout-after {}", start.elapsed().as_millis())
        }
        Err(e) => println!("err {e}"),
    }
    0
}
