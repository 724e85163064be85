//! The shared futex: `FUTEX_WAIT_BITSET` and `FUTEX_WAKE` without
//! `FUTEX_PRIVATE_FLAG`, so that a waiter in one process is woken by a waker
//! in another. The kernel keys a shared futex by the backing page and offset,
//! not by the virtual address, so the two processes may map the word at
//! different addresses.

use crate::shim::real::{AtomicU32, AtomicU64};

/// `FUTEX_WAIT_BITSET` (libc exports the constant only for some targets).
const FUTEX_WAIT_BITSET: libc::c_int = 9;
/// `FUTEX_WAKE`.
const FUTEX_WAKE: libc::c_int = 1;
/// `FUTEX_BITSET_MATCH_ANY`: wait for any wake.
const MATCH_ANY: u32 = u32::MAX;

/// What the raw wait returned.
pub(crate) enum Wait {
    /// Returned 0: woken by `FUTEX_WAKE` (or spuriously).
    Woken,
    /// `EAGAIN`: the word did not hold the expected value.
    ValueChanged,
    /// `ETIMEDOUT`.
    TimedOut,
    /// `EINTR`: a signal handler ran.
    Interrupted,
}

/// `futex(uaddr, FUTEX_WAIT_BITSET, val, abstime, NULL, FUTEX_BITSET_MATCH_ANY)`:
/// sleeps while `*uaddr == val`, until woken or until the absolute
/// `CLOCK_MONOTONIC` time `abstime` (forever if `None`).
///
/// Any other error (`EFAULT`, `EINVAL`: impossible with a valid reference
/// and a normalized `timespec`) is reported as a spurious wake-up, which every
/// caller tolerates by re-checking its condition.
///
/// # References
/// futex(2); `kernel/futex/waitwake.c`.
#[doc(alias = "futex")]
#[doc(alias = "FUTEX_WAIT_BITSET")]
pub(crate) fn wait(word: &AtomicU32, val: u32, abstime: Option<&libc::timespec>) -> Wait {
    wait_raw(word.as_ptr(), val, abstime)
}

/// The low 32 bits of a 64-bit word: the futex word of [`wait_low`] and
/// [`wake_low`].
fn low_half(word: &AtomicU64) -> *mut u32 {
    let base = word.as_ptr().cast::<u32>();
    if cfg!(target_endian = "little") {
        base
    } else {
        base.wrapping_add(1)
    }
}

/// [`wait`] on the low 32 bits of a 64-bit atomic word: the kernel compares
/// those 32 bits with `val`. Every change of a word the caller sleeps on
/// must change its low half (the callers keep their tag and flag bits
/// there).
#[doc(alias = "FUTEX_WAIT_BITSET")]
pub(crate) fn wait_low(word: &AtomicU64, val: u32, abstime: Option<&libc::timespec>) -> Wait {
    wait_raw(low_half(word), val, abstime)
}

/// [`wake`] for sleepers of [`wait_low`] on the same word.
#[doc(alias = "FUTEX_WAKE")]
pub(crate) fn wake_low(word: &AtomicU64, n: u32) -> usize {
    wake_raw(low_half(word), n)
}

fn wait_raw(uaddr: *mut u32, val: u32, abstime: Option<&libc::timespec>) -> Wait {
    let ts = abstime.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `uaddr` is a live, 4-byte aligned location inside an atomic
    // the caller borrows for the duration of the call (an `AtomicU32`, or
    // one half of an `AtomicU64`); `ts` is null or points to a valid
    // `timespec`; FUTEX_WAIT_BITSET only reads both. The kernel reads
    // `*uaddr` atomically; Rust code never makes a 32-bit access to a
    // 64-bit word.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            uaddr,
            FUTEX_WAIT_BITSET,
            val,
            ts,
            std::ptr::null::<u32>(),
            MATCH_ANY,
        )
    };
    if ret == 0 {
        return Wait::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Wait::ValueChanged,
        Some(libc::ETIMEDOUT) => Wait::TimedOut,
        Some(libc::EINTR) => Wait::Interrupted,
        _ => Wait::Woken,
    }
}

/// `futex(uaddr, FUTEX_WAKE, n)`: wakes up to `n` waiters on `word`, in any
/// process; returns how many were woken.
///
/// # References
/// futex(2).
#[doc(alias = "futex")]
#[doc(alias = "FUTEX_WAKE")]
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    wake_raw(word.as_ptr(), n)
}

fn wake_raw(uaddr: *mut u32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `uaddr` is a live, aligned 4-byte location the caller borrows;
    // FUTEX_WAKE does not access the memory, it only uses the address as a
    // key.
    let ret = unsafe { libc::syscall(libc::SYS_futex, uaddr, FUTEX_WAKE, n) };
    // Errors (EFAULT, EINVAL) cannot happen with a valid reference; a failed
    // wake woke nobody.
    usize::try_from(ret).unwrap_or(0)
}
