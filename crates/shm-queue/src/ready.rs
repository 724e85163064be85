//! Readiness for event loops: a descriptor that becomes readable when a
//! receiver may have a message (or a sender room), and the tokio futures
//! built on it.
//!
//! The queue's waiters sleep on futex words in the segment, which no event
//! loop can poll. So a handle that asks for readiness gets a helper thread
//! (one per handle, started on first use) and an `eventfd`. The helper
//! sleeps only while the handle is *armed*: a `try_*` call that finds
//! nothing arms it. Armed, it waits exactly as a blocking call would
//! (spinning briefly, then sleeping on the word a claim would wait on,
//! with the same liveness checks and recovery of dead peers' claims) but
//! claims nothing; when a claim would succeed, the side must stop (closed,
//! disconnected), or a liveness slice passed, it disarms and writes the
//! `eventfd`. The caller then calls `try_*` again, which either takes the
//! message or arms again.
//!
//! Nothing is ever taken on the caller's behalf, so dropping a future or
//! ignoring the descriptor loses no message and leaves no claim open: the
//! async calls are cancel-safe by construction.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
// Process-local flags, never in a segment nor in a loom model: std's.
use shm_sync::shim::Ordering;
use shm_sync::shim::real::AtomicBool;

use crate::error::{RecvError, SendError};
use crate::queue::{Inner, Queue};
use crate::registry::Role;
use crate::wait::{Fail, LIVENESS, Patience, Until};

/// How long one wait of the helper lasts before it looks whether its
/// handle is being dropped (so a drop waits at most this long for it).
const HELPER_SLICE: Duration = Duration::from_millis(10);

/// What the helper thread and the handle share.
#[derive(Debug)]
struct State {
    efd: EventFd,
    armed: AtomicBool,
    stop: AtomicBool,
}

/// A handle's readiness helper: the thread and the descriptor it writes.
#[derive(Debug)]
pub(crate) struct Notifier {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    fn start(queue: Queue, role: Role, index: usize) -> io::Result<Notifier> {
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(io::Error::from)?;
        let state = Arc::new(State {
            efd,
            armed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("shm-queue-ready".into())
            .spawn(move || helper(&theirs, &queue, role, index))?;
        Ok(Notifier {
            state,
            thread: Some(thread),
        })
    }

    /// After a `try_*` found nothing: empties the descriptor and has the
    /// helper watch for the next chance.
    pub(crate) fn arm(&self) {
        // Whatever it held was for an earlier chance, already taken.
        let _ = self.state.efd.read();
        if !self.state.armed.swap(true, Ordering::AcqRel)
            && let Some(t) = &self.thread
        {
            t.thread().unpark();
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.state.efd.as_fd()
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // It returns within one `HELPER_SLICE`; joining makes sure its
            // handle on the queue is gone when ours is.
            let _ = t.join();
        }
    }
}

/// The helper thread: waits while armed, then signals.
fn helper(state: &State, queue: &Queue, role: Role, index: usize) {
    let patience = Patience::default();
    loop {
        while !state.armed.load(Ordering::Acquire) {
            if state.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::park();
        }
        let since = Instant::now();
        loop {
            if state.stop.load(Ordering::Acquire) {
                return;
            }
            let ready = queue
                .0
                .wait_ready(role, index, &patience, Until::after(HELPER_SLICE));
            // Ready, or stopping (the caller's next `try_*` says why), or a
            // whole liveness slice passed (its `try_*` checks for dead
            // peers); else keep waiting.
            if ready || since.elapsed() >= LIVENESS {
                break;
            }
        }
        state.armed.store(false, Ordering::Release);
        let _ = state.efd.write(1);
    }
}

impl Inner {
    /// Waits per `how` until a claim of `role` would get something, or the
    /// side must stop; claims nothing. Whether to signal (`false`: the
    /// deadline passed with nothing to report).
    fn wait_ready(&self, role: Role, index: usize, patience: &Patience, how: Until) -> bool {
        fn signal<T, E>(r: Result<T, Fail<E, ()>>) -> bool {
            !matches!(r, Err(Fail::Blocked(())))
        }
        let rec = self.registration(role.is_producer(), index);
        match role {
            Role::Producer => signal(self.acquire::<SendError, _>(role, rec, 0, how, patience)),
            Role::Consumer => signal(self.acquire::<RecvError, _>(role, rec, 0, how, patience)),
        }
    }
}

/// The readiness helper of one handle, started on first use. `Sync`
/// (`OnceLock`, not `OnceCell`): an async call's future holds a `&` to it
/// across its `await`, and must stay `Send`.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    notifier: OnceLock<Notifier>,
    #[cfg(feature = "tokio")]
    async_fd: OnceLock<tokio::io::unix::AsyncFd<FdOf>>,
}

impl Readiness {
    /// After a `try_*` call: one that found nothing arms the helper, if
    /// there is one.
    #[inline]
    pub(crate) fn tried<T, E>(&self, r: Result<T, Fail<E, ()>>) -> Result<T, Fail<E, ()>> {
        if matches!(r, Err(Fail::Blocked(())))
            && let Some(n) = self.notifier.get()
        {
            n.arm();
        }
        r
    }

    /// The helper of `queue`'s entry `index` of `role`, started now if
    /// need be.
    fn notifier(&self, queue: &Queue, role: Role, index: usize) -> io::Result<&Notifier> {
        if let Some(n) = self.notifier.get() {
            return Ok(n);
        }
        queue.0.check_fork().map_err(io::Error::other)?;
        let n = Notifier::start(queue.clone(), role, index)?;
        Ok(self.notifier.get_or_init(|| n))
    }

    /// The descriptor, armed: it becomes readable at the next chance.
    pub(crate) fn fd(&self, queue: &Queue, role: Role, index: usize) -> io::Result<BorrowedFd<'_>> {
        let n = self.notifier(queue, role, index)?;
        n.arm();
        Ok(n.fd())
    }

    /// Waits (asynchronously) for the helper's signal.
    #[cfg(feature = "tokio")]
    pub(crate) async fn readable(&self, queue: &Queue, role: Role, index: usize) -> io::Result<()> {
        let afd = match self.async_fd.get() {
            Some(a) => a,
            None => {
                let n = self.notifier(queue, role, index)?;
                // `AsyncFd::new` needs a runtime with I/O enabled: say so
                // rather than panic.
                tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
                let afd = reactor::register(FdOf(Arc::clone(&n.state)))?;
                // The `try_*` before this found nothing with no helper to
                // arm yet.
                n.arm();
                self.async_fd.get_or_init(|| afd)
            }
        };
        let mut guard = afd.readable().await?;
        guard.clear_ready();
        Ok(())
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        // The registration with the reactor goes before the descriptor.
        #[cfg(feature = "tokio")]
        drop(self.async_fd.take());
    }
}

/// Registering the helper's descriptor with tokio's reactor: the one
/// `unsafe` call of the async interface.
#[cfg(feature = "tokio")]
#[allow(unsafe_code)]
mod reactor {
    use super::FdOf;
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    pub(super) fn register(fd: FdOf) -> std::io::Result<AsyncFd<FdOf>> {
        // SAFETY: `FdOf` holds the `eventfd` through an `Arc` of its
        // state, so the descriptor stays open, and names the same file
        // description, for as long as the `AsyncFd` owns the `FdOf`; its
        // `as_raw_fd` always returns that one descriptor.
        Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
    }
}

/// The helper's descriptor, for tokio's reactor.
#[derive(Debug)]
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
struct FdOf(Arc<State>);

impl AsRawFd for FdOf {
    fn as_raw_fd(&self) -> RawFd {
        self.0.efd.as_raw_fd()
    }
}
