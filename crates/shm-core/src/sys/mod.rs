//! Raw system calls. The only place in shm-core besides [`crate::shareable`]
//! where `unsafe` appears; everything above is safe Rust.
//!
//! Conventions, so that a reader who knows the man pages finds each call:
//! each wrapper's doc opens with the C call it wraps, carries
//! `#[doc(alias)]`, and converts return codes through [`cvt`] (one place
//! that reads `errno`).
#![allow(unsafe_code)]
// The one place in shm-core allowed to call the raw libc functions that
// clippy.toml disallows everywhere else.
#![allow(clippy::disallowed_methods)]

pub(crate) mod fdpass;
pub(crate) mod map;
pub(crate) mod posix;
pub(crate) mod sigbus;
pub(crate) mod sysv;

use std::io;

/// Converts a C return value of `-1` into the thread's `errno`.
pub(crate) fn cvt<T: PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
