//! The marker trait for types that are sound to place in shared memory.

use crate::shim::real::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64,
    AtomicUsize,
};

/// A type that may live inside a shared memory segment and be used from every
/// process that maps it.
///
/// Addresses differ per process and any process can write any byte at any
/// time, so only plain data qualifies. The library hands out `&T` over a
/// segment only for `T: ShmSafe`.
///
/// # Safety
///
/// An implementor guarantees all of the following:
///
/// - the type is `#[repr(C)]`, `#[repr(transparent)]` or a primitive, so its
///   layout is the same in every process built from the same source;
/// - it holds no pointer, reference, `Box`, `Vec`, `String`, file descriptor
///   or anything else whose meaning depends on the process or the address;
/// - **every bit pattern is a valid value** (another process may write any
///   byte at any time), and the all-zero pattern is what a fresh segment
///   holds before the creator initializes it;
/// - all mutation through `&Self` goes through atomics or `UnsafeCell`, and
///   the type is `Sync`;
/// - [`ShmSafe::TYPE_ID`] is stable across builds and differs between types
///   whose bytes mean different things.
pub unsafe trait ShmSafe: Sync + Sized + 'static {
    /// A stable identifier of the type, part of the layout fingerprint that
    /// `open` checks. Build it with [`type_id`] and [`combine_type_ids`].
    const TYPE_ID: u64;
}

/// A [`ShmSafe`] type whose every byte lives inside an atomic or an
/// `UnsafeCell`, so that a shared reference `&Self` over a segment stays
/// sound while other processes write any byte of it.
///
/// [`crate::Segment::view`] and [`crate::Shared`] hand out `&T` over shared
/// bytes and therefore require this. Plain data (`u64`, `[u8; N]`, a
/// `#[repr(C)]` struct of integers) is [`ShmSafe`] but not `ShmShared`: a
/// `&u64` over bytes that change under it is undefined behaviour in Rust's
/// memory model. Keep such data behind a lock (`shm_sync::Mutex<T>` holds it
/// in an `UnsafeCell`), copy it in and out (`Segment::read_at`), or send it
/// through a typed queue.
///
/// # Safety
///
/// On top of the [`ShmSafe`] guarantees: every non-padding byte of `Self` is
/// part of an atomic or sits inside an `UnsafeCell`, and all access to those
/// bytes through `&Self` is atomic or goes through that cell under a
/// protocol the type documents.
pub unsafe trait ShmShared: ShmSafe {}

macro_rules! impl_shm_shared {
    ($($t:ty),* $(,)?) => {
        // SAFETY: an atomic is all interior mutability; access through
        // `&Self` is atomic.
        $(unsafe impl ShmShared for $t {})*
    };
}

impl_shm_shared!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
);

// SAFETY: an array of `ShmShared` elements has no bytes but theirs.
unsafe impl<T: ShmShared, const N: usize> ShmShared for [T; N] {}

/// FNV-1a hash of a type's stable name, for [`ShmSafe::TYPE_ID`].
///
/// ```
/// assert_ne!(shm_core::type_id("a::A"), shm_core::type_id("a::B"));
/// ```
pub const fn type_id(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Combines the id of a generic container with the id of its parameter, for
/// [`ShmSafe::TYPE_ID`] of types like `Mutex<T>`.
pub const fn combine_type_ids(outer: u64, inner: u64) -> u64 {
    (outer ^ inner.rotate_left(17)).wrapping_mul(0x0000_0100_0000_01b3)
}

macro_rules! impl_shm_safe {
    ($($t:ty),* $(,)?) => {
        // SAFETY: primitives and std atomics: fixed layout, no pointers, every
        // bit pattern valid, atomics mutate through `&self` only.
        $(unsafe impl ShmSafe for $t {
            const TYPE_ID: u64 = type_id(stringify!($t));
        })*
    };
}

impl_shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    f32,
    f64,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
);

// `bool` and `AtomicBool` are left out on purpose: only 0 and 1 are valid
// bit patterns, and another process may write any byte.

// SAFETY: an array of `ShmSafe` elements is `ShmSafe`: its layout is the
// elements' layout repeated, and every bit pattern of every element is valid.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const TYPE_ID: u64 =
        combine_type_ids(combine_type_ids(type_id("[T; N]"), T::TYPE_ID), N as u64);
}

/// Size, alignment and type id of a type placed in a segment; recorded in the
/// segment header by the creator and checked by every opener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Fingerprint {
    /// `size_of::<T>()`.
    pub size: u64,
    /// `align_of::<T>()`.
    pub align: u32,
    /// [`ShmSafe::TYPE_ID`].
    pub type_id: u64,
}

impl Fingerprint {
    /// The fingerprint of `T`.
    pub const fn of<T: ShmSafe>() -> Self {
        Fingerprint {
            size: core::mem::size_of::<T>() as u64,
            align: core::mem::align_of::<T>() as u32,
            type_id: T::TYPE_ID,
        }
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "size {} align {} type {:#018x}",
            self.size, self.align, self.type_id
        )
    }
}
