//! `CLOCK_MONOTONIC` deadlines as absolute `timespec`s.
//!
//! `std::time::Instant` is `CLOCK_MONOTONIC` on Linux, but it does not expose
//! its `timespec`; a deadline is carried over by reading both clocks once and
//! adding the remaining time. The skew is the few nanoseconds between the two
//! reads.

use std::time::{Duration, Instant};

/// Deadlines further away than this (about 34 000 years) are clamped: they
/// mean "no deadline" in practice and must not overflow `tv_sec`.
const FAR: Duration = Duration::from_secs(1 << 40);

/// `clock_gettime(CLOCK_MONOTONIC, &ts)`.
///
/// # References
/// clock_gettime(2).
#[doc(alias = "clock_gettime")]
pub(crate) fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail (and a failure would leave
    // `ts` at zero, a deadline in the past: a timeout, not UB).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// The absolute `CLOCK_MONOTONIC` time `after` from now.
pub(crate) fn monotonic_after(after: Duration) -> libc::timespec {
    add(monotonic_now(), after)
}

/// The absolute `CLOCK_MONOTONIC` time of `deadline` (now, if it passed).
pub(crate) fn monotonic_at(deadline: Instant) -> libc::timespec {
    let now = Instant::now();
    let ts = monotonic_now();
    add(ts, deadline.saturating_duration_since(now))
}

fn add(ts: libc::timespec, d: Duration) -> libc::timespec {
    let d = d.min(FAR);
    let mut sec = ts.tv_sec + d.as_secs() as libc::time_t;
    let mut nsec = ts.tv_nsec + libc::c_long::from(d.subsec_nanos() as i32);
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec += 1;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_normalized_and_monotonic() {
        let a = monotonic_now();
        let b = monotonic_after(Duration::from_millis(1500));
        assert!(b.tv_nsec < 1_000_000_000);
        let diff = (b.tv_sec - a.tv_sec) as f64 + (b.tv_nsec - a.tv_nsec) as f64 / 1e9;
        assert!(diff >= 1.5, "{diff}");
        let past = monotonic_at(Instant::now() - Duration::from_millis(1));
        assert!(past.tv_sec <= monotonic_now().tv_sec);
        let far = monotonic_after(Duration::MAX);
        assert!(far.tv_sec > a.tv_sec);
    }
}
