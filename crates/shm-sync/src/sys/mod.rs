//! Raw system calls: the shared futex, the process-shared robust pthread
//! mutex and condition variable, and the monotonic clock. The only place in
//! shm-sync (besides the `unsafe impl`s of the marker traits) where `unsafe`
//! appears; everything above is safe Rust.
//!
//! Conventions, so that a reader who knows the man pages finds each call:
//! each wrapper's doc opens with the C call it wraps, carries `#[doc(alias)]`, and converts return codes in one place
//! ([`cvt_errno`] for the pthread calls that return the error number, the
//! `-1`/`errno` convention for `syscall`).
#![allow(unsafe_code)]
#![allow(clippy::disallowed_methods)]

#[cfg(not(shm_loom))]
pub(crate) mod futex;
pub(crate) mod pthread;
pub(crate) mod time;

use std::io;

/// Converts a pthread-style return value (0 or an error number) into a
/// `Result` carrying the raw error number.
pub(crate) fn cvt_errno(ret: libc::c_int) -> Result<(), libc::c_int> {
    if ret == 0 { Ok(()) } else { Err(ret) }
}

/// Converts a pthread-style return value into an `io::Result`.
pub(crate) fn cvt_io(ret: libc::c_int) -> io::Result<()> {
    cvt_errno(ret).map_err(io::Error::from_raw_os_error)
}
