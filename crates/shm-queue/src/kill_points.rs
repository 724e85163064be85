//! Deterministic kill points for the torture tests (feature `kill-points`).
//!
//! With the feature on, `SHM_KILL_POINT=NAME` or `SHM_KILL_POINT=NAME:N`
//! makes the process kill itself with `SIGKILL` the first (or the N-th)
//! time it passes the named step, so every step of the protocol can be
//! proven to survive a death exactly there. Without the feature, a kill
//! point compiles to nothing.
//!
//! The steps, in the order a message passes them:
//!
//! - producer: `send:published` (claim in its record, before the CAS on
//!   `tail`), `send:claimed`, `send:writing` (half the payload copied),
//!   `send:written`, `send:committed` (committed, record not yet cleared);
//! - consumer: `recv:published`, `recv:claimed`, `recv:reading`,
//!   `recv:read` (copied out, slot not yet released), `recv:released`
//!   (released, the message not yet returned to the caller);
//! - recovery: `recover:skip` / `recover:skipped` (a consumer, before and
//!   after turning a dead producer's claim into a tombstone),
//!   `recover:free` / `recover:freed` (a producer, before and after freeing
//!   a dead consumer's slot);
//! - registration: `register:taken`, `unregister:cleared`, `reap:cleared`;
//! - attachment and the name's lifetime (see `life.rs`): `attach:taken`
//!   (a joiner's entry taken, the removal mark not yet read),
//!   `attach:reaped` (a dead process's entry cleared), `detach:cleared`
//!   (a leaver's entry cleared, nothing decided), `retire:marked` (the last
//!   leaver holds the removal mark, the name is still there),
//!   `retire:removed` (the name removed, the mark not yet set to done).

#[cfg(feature = "kill-points")]
pub(crate) fn kill_point(name: &str) {
    use shm_sync::shim::Ordering;
    use shm_sync::shim::real::AtomicU64;
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("SHM_KILL_POINT").ok()?;
        let (n, count) = match v.rsplit_once(':') {
            Some((n, c)) if c.chars().all(|d| d.is_ascii_digit()) && !c.is_empty() => {
                (n.to_owned(), c.parse().unwrap_or(1))
            }
            _ => (v, 1),
        };
        Some((n, count.max(1)))
    });
    if let Some((n, count)) = target
        && n == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *count
    {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "kill-points"))]
#[inline(always)]
pub(crate) fn kill_point(_name: &str) {}
