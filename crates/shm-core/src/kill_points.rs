//! A deterministic kill point for the multi-process tests (feature
//! `kill-points`), as in shm-queue: with the feature on,
//! `SHM_KILL_POINT=NAME` makes the process kill itself with `SIGKILL` the
//! first time it passes the named step. Without the feature it compiles to
//! nothing.
//!
//! The steps: `header:writing` (a creator in `Shared::create`, with the
//! magic and its PID written and the rest of the header not yet).

#[cfg(feature = "kill-points")]
pub(crate) fn kill_point(name: &str) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("SHM_KILL_POINT").ok());
    if target.as_deref() == Some(name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "kill-points"))]
#[inline(always)]
pub(crate) fn kill_point(_name: &str) {}
