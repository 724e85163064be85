//! Blocking: the loop both sides share around a claim.
//!
//! A claim that finds nothing says which slot to wait on and the state it
//! saw there ([`Claim::Wait`]). The waiter spins briefly (pause bursts
//! without yielding, for at most [`SPIN`]) watching that state word, then
//! sleeps on it with shm-sync's [`WaitWord::sleep`](shm_sync::WaitWord::sleep):
//! the commit or release that changes the slot wakes it, and nothing is
//! written to a shared line when nobody sleeps. Events that are not a slot
//! change (close, the other side gone) come through a nudge and the
//! sleeper's re-check.
//!
//! Time, not the futex's answer, decides about dead peers: a sleep lasts at
//! most one [`LIVENESS`] slice, and
//!
//! - a claim of another process that holds us up (a producer writing the
//!   slot at `head`, a consumer reading the slot at `tail`) is checked for
//!   a dead holder once it has held us up for a whole slice ([`Patience`],
//!   kept per position, so a stream of signals or wake-ups neither hurries
//!   nor delays it);
//! - every slice of waiting, dead registrations are cleared, so a
//!   disconnect caused by a crash is seen.

use std::cell::Cell;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use shm_sync::WaitWord;

use crate::error::Corrupted;
use crate::layout::Registration;
use crate::queue::Inner;
use crate::registry::Role;
use crate::ring::{Claim, Side, WaitOn};
use shm_sync::shim::Ordering;

/// How long a claim of another process may hold a waiter up before the
/// waiter checks whether that process is alive, and how often a sleeper
/// looks for crashed peers.
pub(crate) const LIVENESS: Duration = shm_sync::RECHECK;

/// How long one sleep lasts while another process's claim holds us up:
/// its commit or release is a plain store that wakes us only if it sees
/// our flag, and one landing between its look and its store misses us (see
/// [`WaitWord::store_exclusive`]); such a miss costs at most this long.
pub(crate) const HELD_NAP: Duration = Duration::from_millis(1);

/// How long a waiter spins before it sleeps: a few round trips between two
/// processes on two cores (one is about a microsecond), far less than the
/// tens of microseconds a futex wake-up costs on a virtual machine.
pub(crate) const SPIN: Duration = Duration::from_micros(30);

/// How long a handle has been held up at one position by another process's
/// claim. Kept in the handle, so that `try_*` calls in a loop recover a
/// dead claim as surely as a blocking call does.
#[derive(Debug, Default)]
pub(crate) struct Patience(Cell<Option<(u64, Instant)>>);

impl Patience {
    /// Held up at `pos` again: whether a whole slice has passed since this
    /// started (then the clock restarts, so liveness is checked at most
    /// once a slice).
    fn due(&self, pos: u64) -> bool {
        let now = Instant::now();
        match self.0.get() {
            Some((p, since)) if p == pos && now.duration_since(since) < LIVENESS => false,
            Some((p, _)) if p == pos => {
                self.0.set(Some((pos, now)));
                true
            }
            _ => {
                self.0.set(Some((pos, now)));
                false
            }
        }
    }

    fn clear(&self) {
        self.0.set(None);
    }
}

/// Why a claim gave no positions: the way of waiting gave up (`B`, which
/// is [`Infallible`] for a call that waits for ever), or the side must stop
/// (`E`: closed, disconnected, corrupted).
#[derive(Debug)]
pub(crate) enum Fail<E, B> {
    Blocked(B),
    Stop(E),
}

impl<E> Fail<E, Infallible> {
    /// The stop reason of a call that never gives up.
    pub(crate) fn stop(self) -> E {
        match self {
            Fail::Stop(e) => e,
            Fail::Blocked(never) => match never {},
        }
    }
}

impl<E: From<Corrupted>, B> From<Corrupted> for Fail<E, B> {
    fn from(c: Corrupted) -> Self {
        Fail::Stop(c.into())
    }
}

/// A side's blocking error: what a claim returns when the side must stop.
pub(crate) trait StopError: From<Corrupted> {
    fn closed() -> Self;
    fn disconnected() -> Self;
}

impl StopError for crate::SendError {
    fn closed() -> Self {
        crate::SendError::Closed
    }
    fn disconnected() -> Self {
        crate::SendError::Disconnected
    }
}

impl StopError for crate::RecvError {
    fn closed() -> Self {
        crate::RecvError::Closed
    }
    fn disconnected() -> Self {
        crate::RecvError::Disconnected
    }
}

/// What a waiter does once a claim found nothing.
pub(crate) enum Next<B> {
    /// Give up now.
    GiveUp(B),
    /// The deadline passed: one last look, then give up.
    LastLook(B),
    /// Sleep, until at most the deadline.
    Sleep(Option<Instant>),
}

/// A way of waiting: not at all, until a deadline, or for ever. The type
/// says whether (and how) a call can give up, so a call that waits for
/// ever has no "gave up" case to handle.
pub(crate) trait How: Copy {
    /// What giving up carries: `()`, or [`Infallible`] for ever.
    type Blocked;
    /// Whether the caller waits at all (and so may spin first).
    fn waits(self) -> bool;
    /// What to do at `now` with nothing claimed.
    fn next(self, now: Instant) -> Next<Self::Blocked>;
}

/// Never wait (`try_*`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Try;

/// Wait until a deadline (`None`: one too far to represent, so never).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Until(pub(crate) Option<Instant>);

/// Wait for ever.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forever;

impl Until {
    /// A deadline `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        Until(Instant::now().checked_add(timeout))
    }
}

impl How for Try {
    type Blocked = ();
    fn waits(self) -> bool {
        false
    }
    fn next(self, _: Instant) -> Next<()> {
        Next::GiveUp(())
    }
}

impl How for Until {
    type Blocked = ();
    fn waits(self) -> bool {
        true
    }
    fn next(self, now: Instant) -> Next<()> {
        match self.0 {
            Some(d) if now >= d => Next::LastLook(()),
            d => Next::Sleep(d),
        }
    }
}

impl How for Forever {
    type Blocked = Infallible;
    fn waits(self) -> bool {
        true
    }
    fn next(self, _: Instant) -> Next<Infallible> {
        Next::Sleep(None)
    }
}

impl Inner {
    /// Claims up to `max` positions for `role` (publishing them in `rec`),
    /// blocking per `how`.
    ///
    /// `max == 0` probes: it returns `(position, 0, false)` once a claim
    /// would get something, and claims nothing (the readiness waiter of
    /// [`crate::ready`]).
    pub(crate) fn acquire<E: StopError, H: How>(
        &self,
        role: Role,
        rec: &Registration,
        max: usize,
        how: H,
        patience: &Patience,
    ) -> Result<(u64, usize, bool), Fail<E, H::Blocked>> {
        let ring = self.ring();
        let other = match role {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        };
        let claim = |recover: bool| {
            match role {
                Role::Producer => ring.claim_send(rec, max, recover),
                Role::Consumer => ring.claim_recv(rec, max, recover),
            }
            .map_err(|b| Fail::from(self.bad(b)))
        };
        let mut recover = false;
        let mut forced = false;
        let mut counted = false;
        // Set when the first sleep starts (reading the clock on every
        // claim would cost more than the claim).
        let mut last_sweep: Option<Instant> = None;
        loop {
            // A process-local flag: cheap enough for every claim.
            self.intact()?;
            if role == Role::Producer && self.is_closed() {
                return Err(Fail::Stop(E::closed()));
            }
            let (on, seen) = match claim(recover)? {
                Claim::Got { start, n, wake } => {
                    patience.clear();
                    return Ok((start, n, wake));
                }
                Claim::Wait { on, seen } => (on, seen),
            };
            recover = false;
            let held = matches!(on, WaitOn::Held { .. });
            if let WaitOn::Held { pos } = on
                && patience.due(pos)
            {
                recover = true;
                continue;
            }
            let (word, nap) = match on {
                // A consumer waits for a producer's claim, a producer for
                // a consumer's.
                WaitOn::Index if role == Role::Consumer => (ring.index(Side::Send), LIVENESS),
                WaitOn::Index => (ring.index(Side::Recv), LIVENESS),
                WaitOn::Held { pos } => (ring.word(pos).map_err(|b| self.bad(b))?, HELD_NAP),
            };
            // Spin first: in a stream or a ping-pong the other side is a
            // microsecond away, and the checks below read shared lines.
            if how.waits() && spin_until_changed(word, seen) {
                continue;
            }
            let closed = self.is_closed();
            let gone = self.side_gone(other);
            if held && gone && !forced && role == Role::Consumer {
                // Every producer is gone, so a claim still open at the head
                // is a dead one: recover it now rather than after a slice.
                recover = true;
                forced = true;
                continue;
            }
            forced = false;
            // Consumers stop only on a drained queue; producers as soon as
            // they would have to wait.
            let stop = match role {
                Role::Consumer if held => None,
                Role::Consumer if closed => Some(true),
                _ if gone => Some(false),
                _ => None,
            };
            if let Some(closed) = stop {
                // A last look, with recovery: the other side may have
                // committed (or released) and left between our claim and
                // the look at its registrations; seeing it gone (Acquire),
                // this claim sees what it did.
                match claim(true)? {
                    Claim::Got { start, n, wake } => {
                        patience.clear();
                        return Ok((start, n, wake));
                    }
                    Claim::Wait {
                        on: WaitOn::Index, ..
                    } if closed => return Err(Fail::Stop(E::closed())),
                    Claim::Wait {
                        on: WaitOn::Index, ..
                    } => return Err(Fail::Stop(E::disconnected())),
                    Claim::Wait { .. } => continue,
                }
            }
            let now = Instant::now();
            let deadline = match how.next(now) {
                Next::GiveUp(b) => return Err(Fail::Blocked(b)),
                Next::LastLook(b) => {
                    // One last look before giving up.
                    return match claim(false)? {
                        Claim::Got { start, n, wake } => {
                            patience.clear();
                            Ok((start, n, wake))
                        }
                        Claim::Wait { .. } => Err(Fail::Blocked(b)),
                    };
                }
                Next::Sleep(d) => d,
            };
            if !counted {
                let blocked = match role {
                    Role::Producer => &self.ctl().blocked_sends,
                    Role::Consumer => &self.ctl().blocked_recvs,
                };
                blocked.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            let slice = now + nap;
            let until = deadline.map_or(slice, |d| d.min(slice));
            word.sleep(seen, Some(until), || {
                self.is_closed() != closed || self.side_gone(other) != gone
            });
            // Time decides, not how the sleep ended: a signal every few
            // milliseconds must neither hurry nor starve the sweep.
            let swept = *last_sweep.get_or_insert(now);
            if swept.elapsed() >= LIVENESS {
                self.check_fork()?;
                self.reap_dead();
                last_sweep = Some(Instant::now());
            }
        }
    }
}

/// Spins watching `word` leave `seen`, for at most [`SPIN`] (shm-sync's
/// spin: pause bursts, never a yield). Whether it changed.
fn spin_until_changed(word: &WaitWord, seen: u64) -> bool {
    shm_sync::shim::spin_until(SPIN, || word.load() != seen)
}
