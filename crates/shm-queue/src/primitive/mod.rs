//! The atomics of everything the queue keeps in its segment: shm-sync's
//! shim, so that `--cfg shm_loom` swaps in loom's types here exactly as it
//! does in shm-sync (whose futex model the queue's waits then use).

pub(crate) use shm_sync::shim::{AtomicU32, AtomicU64, Ordering, fence};
