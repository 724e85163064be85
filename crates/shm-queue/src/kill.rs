//! Deterministic kill points for the torture tests (feature `kill-points`).
//!
//! With the feature on, `SHM_KILL_POINT=NAME` or `SHM_KILL_POINT=NAME:N`
//! makes the process kill itself with `SIGKILL` the first (or the N-th)
//! time it passes the named step, so every step of the protocol can be
//! proven to survive a death exactly there. Without the feature, a kill
//! point compiles to nothing.
//!
//! The steps: `send:locked`, `send:claimed`, `send:writing`, `send:written`,
//! `recv:locked`, `recv:claimed`, `recv:reading`, `recv:read`,
//! `register:locked`, `register:taken`, `unregister:locked`, `reap:locked`,
//! `repair:locked`.

#[cfg(feature = "kill-points")]
pub(crate) fn kill_point(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
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
