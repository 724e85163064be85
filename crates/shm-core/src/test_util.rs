//! Plumbing for the unit tests: segment ids no other test or run uses, and a
//! guard that removes them even when a test fails.

use crate::shim::Ordering;
use crate::shim::real::AtomicU32;
use crate::{OpenError, Segment, SegmentId};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `/shmrs-test-core-TAG-PID-N`: unique within this run and across
/// concurrent runs (the PID differs).
pub(crate) fn posix_id(tag: &str) -> SegmentId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    SegmentId::posix(&format!(
        "/shmrs-test-core-{tag}-{}-{n}",
        std::process::id()
    ))
    .expect("valid test name")
}

/// A System V key with top byte 0x5e (the byte `cargo xtask clean-shm`
/// knows as a test key), built from the PID and a counter, and skipped if a
/// segment with it already exists.
pub(crate) fn sysv_id() -> SegmentId {
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let key = 0x5e00_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff);
        let id = SegmentId::SysV(key as i32);
        if matches!(Segment::open(&id), Err(OpenError::NotFound { .. })) {
            return id;
        }
    }
}

/// Removes its ids when dropped, so a failing test leaves nothing behind.
pub(crate) struct Guard(Vec<SegmentId>);

impl Guard {
    pub(crate) fn new(ids: &[&SegmentId]) -> Self {
        Guard(ids.iter().map(|i| (*i).clone()).collect())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for id in &self.0 {
            // Already removed is the normal case.
            let _ = crate::remove(id);
        }
    }
}

/// Whether a segment with this id exists.
pub(crate) fn exists(id: &SegmentId) -> bool {
    match Segment::open(id) {
        Ok(_) => true,
        Err(OpenError::NotFound { .. }) => false,
        Err(e) => panic!("probing {id}: {e}"),
    }
}

/// Asserts that an error's message names the segment.
pub(crate) fn assert_names(e: &dyn std::error::Error, id: &SegmentId) {
    let text = e.to_string();
    assert!(
        text.contains(&id.to_string()),
        "message {text:?} does not name {id}"
    );
}
