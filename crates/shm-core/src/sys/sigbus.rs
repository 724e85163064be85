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

use std::sync::Once;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Mappings that can be protected at once.
pub(crate) const SLOTS: usize = 1024;

struct Slot {
    /// First byte; 0 when the slot is free.
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
/// The action that was installed before ours, to chain to.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

fn page_size() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// Registers `start..start+len` as one of our mappings; the index to give
/// back to [`unregister`], or `None` if the table is full.
pub(crate) fn register(start: usize, len: usize) -> Option<usize> {
    install();
    for (i, s) in TABLE.iter().enumerate() {
        if s.start.load(Ordering::Relaxed) == 0 {
            s.len.store(len, Ordering::Relaxed);
            s.truncated.store(false, Ordering::Relaxed);
            if s.start
                .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(i);
            }
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
pub(crate) fn is_truncated(index: usize) -> bool {
    TABLE
        .get(index)
        .is_some_and(|s| s.truncated.load(Ordering::Acquire))
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `sigaction` structs are plain C data; all-zero is valid.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        // SAFETY: `sa_mask` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both structs are valid for the call; the handler is an
        // `extern "C"` function with the SA_SIGINFO signature.
        if unsafe { libc::sigaction(libc::SIGBUS, &new, &mut old) } == 0 {
            let _ = PREVIOUS.set(old);
        }
    });
}

/// The `SIGBUS` handler. Only async-signal-safe work: atomic loads and
/// stores, `mmap`, `sigaction`, and a call to the previous handler.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler;
    // `si_addr` is the faulting address for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in TABLE.iter() {
        let start = s.start.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr - start < s.len.load(Ordering::Relaxed) {
            let page = addr & !(page_size() - 1);
            // SAFETY: `page` lies inside one of our own shared mappings
            // (checked above); replacing that page with private zeros
            // affects no Rust object outside the mapping, whose contents
            // are untrusted bytes anyway.
            let p = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    page_size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                s.truncated.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not ours: hand it to whoever was there before.
    match PREVIOUS.get() {
        Some(prev) if prev.sa_flags & libc::SA_SIGINFO != 0 && prev.sa_sigaction > 1 => {
            // SAFETY: the previous handler was installed with SA_SIGINFO, so
            // it has this signature; we pass on the kernel's arguments.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(prev.sa_sigaction) };
            f(sig, info, ctx);
        }
        Some(prev) if prev.sa_sigaction > 1 => {
            // SAFETY: a plain handler installed without SA_SIGINFO.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
            f(sig);
        }
        _ => {
            // Default action: restore it and return; the access faults
            // again and the process ends as it would have without us.
            // SAFETY: as above, all-zero sigaction is SIG_DFL.
            let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a valid struct; a null old-action pointer is allowed.
            unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
        }
    }
}
