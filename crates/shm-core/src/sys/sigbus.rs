//! Surviving a segment truncated under our feet.
//!
//! Another process that can write a POSIX (or memfd) segment can also
//! `ftruncate` it. Our mapping then reaches past the end of the file, and the
//! kernel answers a touch of those pages with `SIGBUS`, which would kill the
//! process. This module installs, once, a `SIGBUS` handler that looks the
//! faulting address up in a table of our mappings: if it lies in one, the
//! handler maps a private zero page over it (`mmap(MAP_FIXED |
//! MAP_ANONYMOUS)`, async-signal-safe), marks the mapping as truncated, and
//! returns, so the access completes on private memory. Callers check
//! [`is_truncated`] and turn it into an error. A fault anywhere else goes to
//! the handler that was there before (Rust's own, which reports stack
//! overflows), or to the default action.
//!
//! The table has [`SLOTS`] entries; a mapping that finds it full is simply
//! not protected.
//!
//! # Installed once, kept installed, opt-out
//!
//! The handler is process-wide. It is installed by the first mapping (not
//! before), unless [`disable`] ran first or `SHM_SIGBUS_GUARD=0` is set in
//! the environment. A `SIGBUS` sent with `kill`/`sigqueue`/`tgkill` is
//! handed to the previous handler; if that one changes the disposition (Rust's
//! own stack-overflow handler resets it to the default action and returns),
//! the new disposition becomes the one chained to and ours is put back, so
//! the guard survives the signal and the process sees what it would have
//! seen without the guard. A fault that is not ours is never answered by
//! putting ours back (the access would fault forever): it ends the process
//! as before.
//!
//! # The slot protocol
//!
//! | `start` | meaning |
//! |---|---|
//! | 0 | free |
//! | [`CLAIMED`] | taken by a `register` that is still writing `len` |
//! | an address | a registered mapping of `len` bytes |
//!
//! `register` claims a free slot by CAS `0 -> CLAIMED`, so two threads
//! never write the same slot's `len`, then stores `len` and publishes the
//! address with **Release**. The handler loads `start` with **Acquire**,
//! then `len`, then `start` again, and skips a slot that changed meanwhile
//! (unregistered and reused under it). `unregister` stores 0 before the
//! pages are unmapped; a fault inside a mapping can only come from a thread
//! that still borrows it, so that mapping cannot be unmapped while its
//! fault is being handled.

use std::sync::Once;

use crate::shim::Ordering;
use crate::shim::real::{AtomicBool, AtomicUsize};

/// Mappings that can be protected at once.
pub(crate) const SLOTS: usize = 1024;

/// `start` of a slot being filled in by `register` (no mapping starts at
/// address 1: mappings are page-aligned).
const CLAIMED: usize = 1;

struct Slot {
    /// First byte; 0 when the slot is free, [`CLAIMED`] while registering.
    start: AtomicUsize,
    len: AtomicUsize,
    truncated: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    truncated: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static INSTALL: Once = Once::new();
/// Whether our handler was installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The action to chain to: `sa_sigaction` of the one installed before ours
/// (`SIG_DFL` until read), or what it changed the disposition to since.
static PREV_ACTION: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
/// Whether [`PREV_ACTION`] takes `SA_SIGINFO` arguments.
static PREV_SIGINFO: AtomicBool = AtomicBool::new(false);
/// The page size, read once before the handler is installed (`sysconf` is
/// not on the async-signal-safe list).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);

/// Registers `start..start+len` as one of our mappings; the index to give
/// back to [`unregister`], or `None` if the table is full.
pub(crate) fn register(start: usize, len: usize) -> Option<usize> {
    install();
    if start <= CLAIMED {
        return None;
    }
    for (i, s) in TABLE.iter().enumerate() {
        // Claim first, so that no other `register` writes this slot's
        // `len` between ours and the publication of `start`.
        if s.start.load(Ordering::Relaxed) == 0
            && s.start
                .compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            s.len.store(len, Ordering::Relaxed);
            s.truncated.store(false, Ordering::Relaxed);
            s.start.store(start, Ordering::Release);
            return Some(i);
        }
    }
    None
}

/// Forgets a mapping (before it is unmapped).
pub(crate) fn unregister(index: usize) {
    if let Some(s) = TABLE.get(index) {
        s.start.store(0, Ordering::Release);
    }
}

/// Whether a touch of the mapping found it cut short.
#[inline]
pub(crate) fn is_truncated(index: usize) -> bool {
    TABLE
        .get(index)
        .is_some_and(|s| s.truncated.load(Ordering::Acquire))
}

/// Marks the mapping as cut short without a touch: `MADV_POPULATE_READ`
/// found pages past the end of its file (see `Segment::populate`).
pub(crate) fn mark_truncated(index: usize) {
    if let Some(s) = TABLE.get(index) {
        s.truncated.store(true, Ordering::Release);
    }
}

/// Our `sigaction`: the handler with `SA_SIGINFO | SA_ONSTACK |
/// SA_NODEFER` and an empty mask. Async-signal-safe (`sigemptyset` is on
/// the list), so the handler can rebuild it.
fn our_action() -> libc::sigaction {
    // SAFETY: `sigaction` structs are plain C data; all-zero is valid.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = handler as *const () as usize;
    new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
    // SAFETY: `sa_mask` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    new
}

/// Records `prev` as the action to chain to.
fn set_previous(prev: &libc::sigaction) {
    PREV_SIGINFO.store(prev.sa_flags & libc::SA_SIGINFO != 0, Ordering::Relaxed);
    PREV_ACTION.store(prev.sa_sigaction, Ordering::Release);
}

/// Keeps the handler from ever being installed in this process; `false` if
/// it already is (it stays). See [`crate::disable_sigbus_guard`].
pub(crate) fn disable() -> bool {
    INSTALL.call_once(|| {});
    !INSTALLED.load(Ordering::Acquire)
}

/// Whether the handler is installed.
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

fn install() {
    INSTALL.call_once(|| {
        if std::env::var_os("SHM_SIGBUS_GUARD").is_some_and(|v| v == "0") {
            return;
        }
        // SAFETY: sysconf has no memory arguments.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(p) = usize::try_from(p)
            && p.is_power_of_two()
        {
            PAGE_SIZE.store(p, Ordering::Relaxed);
        }
        let new = our_action();
        // SAFETY: `sigaction` structs are plain C data; all-zero is valid.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // Read the previous action and record it *before* installing ours,
        // so that a SIGBUS arriving right after the install finds it.
        // SAFETY: a null new action only queries; `old` is valid and
        // writable.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
            return;
        }
        set_previous(&old);
        // SAFETY: `new` is valid for the call; the handler is an
        // `extern "C"` function with the SA_SIGINFO signature; a null
        // old-action pointer is allowed.
        if unsafe { libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) } == 0 {
            INSTALLED.store(true, Ordering::Release);
        }
    });
}

/// After a previous handler ran for a *sent* `SIGBUS`: puts ours back if it
/// changed the disposition, and chains to what it changed it to from now
/// on. Only `sigaction` and atomics: async-signal-safe.
fn reinstall_after_sent() {
    let ours = our_action();
    // SAFETY: plain C data; all-zero is valid.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `ours` is valid for the call, `now` valid and writable; the
    // handler has the SA_SIGINFO signature.
    if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut now) } != 0 {
        return;
    }
    if now.sa_sigaction != ours.sa_sigaction {
        set_previous(&now);
    }
}

/// Saves `errno` and puts it back on drop: the handler's system calls must
/// not change what the interrupted code reads from it.
struct SavedErrno(libc::c_int);

impl SavedErrno {
    fn save() -> Self {
        // SAFETY: `__errno_location` returns this thread's errno slot,
        // valid for the thread's life.
        SavedErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// The `SIGBUS` handler. Only async-signal-safe work: atomic loads and
/// stores, `mmap`, `sigaction`, `sigemptyset`, `raise`, and a call to the
/// previous handler.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let _errno = SavedErrno::save();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // Only a fault the kernel raised has a faulting address: for a SIGBUS
    // sent with kill/sigqueue (`si_code <= 0`) the same bytes hold the
    // sender's pid and uid (or whatever `rt_sigqueueinfo` put there), and
    // must not patch anything. A truncated file mapping faults with
    // BUS_ADRERR.
    if code == libc::BUS_ADRERR {
        // SAFETY: as above; for a kernel BUS_ADRERR fault `si_addr` is the
        // faulting address.
        let addr = unsafe { (*info).si_addr() } as usize;
        if patch(addr) {
            return;
        }
    }
    // Not ours: hand it to whoever was there before.
    let prev = PREV_ACTION.load(Ordering::Acquire);
    let siginfo = PREV_SIGINFO.load(Ordering::Relaxed);
    let sent = code <= 0;
    match prev {
        // A sent SIGBUS that was ignored before us stays ignored. (A fault
        // with SIG_IGN is not ignorable: the kernel forces the default
        // action, as the last arm does.)
        libc::SIG_IGN if sent => {}
        p if p > libc::SIG_IGN && siginfo => {
            // SAFETY: a value other than SIG_DFL (0) and SIG_IGN (1) is the
            // address of a handler function, so non-null; it was installed
            // with SA_SIGINFO, so it has this signature; we pass on the
            // kernel's arguments.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(p) };
            f(sig, info, ctx);
            if sent {
                reinstall_after_sent();
            }
        }
        p if p > libc::SIG_IGN => {
            // SAFETY: as above, the address of a plain handler installed
            // without SA_SIGINFO, so it has this signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p) };
            f(sig);
            if sent {
                reinstall_after_sent();
            }
        }
        _ => {
            // Default action: restore it and return; the access faults
            // again and the process ends as it would have without us.
            // SAFETY: as above, all-zero sigaction is SIG_DFL.
            let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a valid struct; a null old-action pointer is allowed.
            unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
            if sent {
                // Sent, not a fault: returning would not repeat it, so
                // deliver it again now under the default action (SIGBUS is
                // not blocked here: SA_NODEFER), which ends the process.
                // SAFETY: raise is async-signal-safe and has no memory
                // arguments.
                unsafe { libc::raise(sig) };
            }
        }
    }
}

/// Maps a private zero page over the page of `addr` if `addr` lies in a
/// registered mapping, and marks every registered mapping that contains it
/// as truncated. Whether the page was patched.
fn patch(addr: usize) -> bool {
    let page_size = PAGE_SIZE.load(Ordering::Relaxed);
    let mut patched = false;
    for s in TABLE.iter() {
        let start = s.start.load(Ordering::Acquire);
        if start <= CLAIMED {
            continue;
        }
        let len = s.len.load(Ordering::Relaxed);
        // Unregistered (and maybe reused) between the two loads: `len` may
        // belong to another mapping.
        if s.start.load(Ordering::Acquire) != start {
            continue;
        }
        if addr < start || addr - start >= len {
            continue;
        }
        if !patched {
            let page = addr & !(page_size - 1);
            // SAFETY: `page` lies inside one of our own shared mappings
            // (checked above), which the faulting thread still borrows, so
            // it is not unmapped meanwhile (see the slot protocol);
            // replacing that page with private zeros affects no Rust object
            // outside the mapping, whose contents are untrusted bytes
            // anyway.
            let p = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    page_size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                continue;
            }
            patched = true;
        }
        // Every slot that covers the address (a stale one may, if the
        // range was unmapped and mapped again meanwhile): a false
        // "truncated" is an error, a missed one is silent data loss.
        s.truncated.store(true, Ordering::Release);
    }
    patched
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many threads registering at once each get a slot of their own that
    /// holds their own length (a claim-then-fill race once gave a slot the
    /// address of one mapping and the length of another).
    #[test]
    fn concurrent_registrations_keep_their_own_lengths() {
        let got: Vec<(usize, usize, usize)> = std::thread::scope(|t| {
            let hs: Vec<_> = (1..=16usize)
                .map(|k| {
                    t.spawn(move || {
                        let mut mine = Vec::new();
                        for j in 0..8usize {
                            // Fake, page-aligned addresses no mapping has.
                            let start = 0x1000_0000_0000usize + (k << 24) + (j << 16);
                            let len = k * 4096 + j;
                            if let Some(i) = register(start, len) {
                                mine.push((i, start, len));
                            }
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut seen = std::collections::HashSet::new();
        for &(i, start, len) in &got {
            assert!(seen.insert(i), "slot {i} handed out twice");
            assert_eq!(TABLE[i].start.load(Ordering::Acquire), start);
            assert_eq!(TABLE[i].len.load(Ordering::Acquire), len);
            assert!(!is_truncated(i));
        }
        for &(i, _, _) in &got {
            unregister(i);
        }
        assert!(register(CLAIMED, 4096).is_none(), "not a mapping address");
    }
}
