//! Plumbing for the unit tests: segment ids no other test or run uses, and a
//! guard that removes them even when a test fails.

use crate::shim::Ordering;
use crate::shim::real::AtomicU32;
use crate::{Backend, OpenError, Segment, SegmentId};

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

/// A backend as the conformance tests see it: one test body per behaviour,
/// generic over `S: Sut` (or [`NamedSut`] where it needs a name), run for
/// every backend by [`conformance_tests!`] (as iceoryx2's conformance
/// tests do). Each instance makes segments of its own, so the bodies never
/// name a backend.
pub(crate) trait Sut {
    /// The backend under test.
    const BACKEND: Backend;
    /// The permission bits of a segment [`Sut::create`] makes.
    const MODE: u32;

    /// A new segment of `size` bytes, mapped read-write and
    /// owned by the handle, with a guard that removes it.
    fn create(tag: &str, size: u64) -> (Segment, Guard);

    /// The same segment mapped a second time in this process (another
    /// address, as another process would have).
    fn map_again(segment: &Segment) -> Segment;
}

/// A backend whose segments have names: create, open and remove by id.
pub(crate) trait NamedSut: Sut {
    /// An id no other test or run uses.
    fn id(tag: &str) -> SegmentId;
}

/// POSIX: `/dev/shm` names.
pub(crate) struct Posix;
/// System V: keys.
pub(crate) struct SysV;
/// memfd: anonymous, shared by descriptor.
pub(crate) struct Memfd;

fn create_named<S: NamedSut>(tag: &str, size: u64) -> (Segment, Guard) {
    let id = S::id(tag);
    let guard = Guard::new(&[&id]);
    let segment = Segment::create(&id, size, crate::DEFAULT_MODE).expect("create");
    (segment, guard)
}

fn map_named(segment: &Segment) -> Segment {
    Segment::open(segment.id().expect("a named segment")).expect("open again")
}

impl Sut for Posix {
    const BACKEND: Backend = Backend::Posix;
    const MODE: u32 = crate::DEFAULT_MODE;
    fn create(tag: &str, size: u64) -> (Segment, Guard) {
        create_named::<Self>(tag, size)
    }
    fn map_again(segment: &Segment) -> Segment {
        map_named(segment)
    }
}

impl NamedSut for Posix {
    fn id(tag: &str) -> SegmentId {
        posix_id(tag)
    }
}

impl Sut for SysV {
    const BACKEND: Backend = Backend::SysV;
    const MODE: u32 = crate::DEFAULT_MODE;
    fn create(tag: &str, size: u64) -> (Segment, Guard) {
        create_named::<Self>(tag, size)
    }
    fn map_again(segment: &Segment) -> Segment {
        map_named(segment)
    }
}

impl NamedSut for SysV {
    fn id(_tag: &str) -> SegmentId {
        sysv_id()
    }
}

impl Sut for Memfd {
    const BACKEND: Backend = Backend::Memfd;
    // `memfd_create` takes no mode.
    const MODE: u32 = 0o777;
    fn create(_tag: &str, size: u64) -> (Segment, Guard) {
        let segment = Segment::anonymous(size).expect("memfd");
        (segment, Guard::new(&[]))
    }
    fn map_again(segment: &Segment) -> Segment {
        let fd = segment.fd().expect("a descriptor").try_clone_to_owned();
        Segment::from_fd(fd.expect("dup")).expect("map the descriptor again")
    }
}

/// Instantiates generic test bodies once per backend: a module per backend
/// (`posix`, `sysv`, `memfd`), a `#[test]` per body in each. Bodies under
/// `every` are `fn body<S: Sut>()` and run for memfd too; bodies under
/// `named` are `fn body<S: NamedSut>()` and run for POSIX and System V.
///
/// ```text
/// conformance_tests! {
///     every: { test_name => body; }
///     named: { test_name => body; }
/// }
/// ```
macro_rules! conformance_tests {
    (named: $named:tt) => {
        $crate::test_util::conformance_tests! { every: {} named: $named }
    };
    (every: $every:tt named: $named:tt) => {
        mod posix {
            $crate::test_util::conformance_tests!(@tests Posix $every);
            $crate::test_util::conformance_tests!(@tests Posix $named);
        }
        mod sysv {
            $crate::test_util::conformance_tests!(@tests SysV $every);
            $crate::test_util::conformance_tests!(@tests SysV $named);
        }
        mod memfd {
            $crate::test_util::conformance_tests!(@tests Memfd $every);
        }
    };
    (@tests $sut:ident { $($test:ident => $body:ident;)* }) => {
        $(
            #[test]
            fn $test() {
                super::$body::<$crate::test_util::$sut>()
            }
        )*
    };
}
pub(crate) use conformance_tests;
