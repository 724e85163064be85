//! One test body per behaviour, run for every backend it applies to
//! (`crate::test_util::conformance_tests!`, so the backends cannot drift
//! apart unnoticed), plus the few things only one backend has.
// The tests call `Segment::view`, an `unsafe fn`.
#![allow(unsafe_code)]

use super::*;
use crate::error::{AccessError, BoundsError};
use crate::shim::real::AtomicU64;
use crate::test_util::{
    Guard, NamedSut, Sut, assert_names, conformance_tests, exists, posix_id, sysv_id,
};
use nix::fcntl::OFlag;

/// Effective uid and gid, field 2 of `Uid:` and `Gid:` in
/// `/proc/self/status`.
fn effective(field: &str) -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn euid() -> u32 {
    effective("Uid:")
}

/// Mapped twice in one process: different addresses that show each
/// other's writes, fresh pages zero, bounds and alignment refused, stat.
fn mapped_twice<S: Sut>() {
    let (mut seg, _g) = S::create("mapped-twice", 8192);
    assert_eq!(seg.backend(), S::BACKEND);
    assert_eq!(seg.len(), 8192);
    assert!(!seg.is_empty());

    // Fresh pages are zero.
    let mut buf = [0xffu8; 64];
    seg.read_at(8192 - 64, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 64]);

    // Mapped twice in one process: different addresses, same bytes.
    let mut a = S::map_again(&seg);
    let mut b = S::map_again(&seg);
    assert!(!a.is_owner() && !b.is_owner());
    assert_eq!(a.len(), 8192);
    assert_ne!(a.as_ptr(), b.as_ptr());
    assert_ne!(a.as_ptr(), seg.as_ptr());
    a.write_at(100, b"through a").unwrap();
    let mut got = [0u8; 9];
    b.read_at(100, &mut got).unwrap();
    assert_eq!(&got, b"through a");
    seg.read_at(100, &mut got).unwrap();
    assert_eq!(&got, b"through a");
    b.write_at(8192 - 3, b"end").unwrap();
    let mut end = [0u8; 3];
    a.read_at(8192 - 3, &mut end).unwrap();
    assert_eq!(&end, b"end");
    // A value placed with `view` is shared too.
    // SAFETY: bytes 4096..4104 are touched only through these two
    // views, one per mapping, while they live.
    let (x, y) = unsafe {
        (
            a.view::<AtomicU64>(4096).unwrap(),
            b.view::<AtomicU64>(4096).unwrap(),
        )
    };
    x.store(0xdead_beef, Ordering::SeqCst);
    assert_eq!(y.load(Ordering::SeqCst), 0xdead_beef);
    assert_ne!(std::ptr::from_ref(x), std::ptr::from_ref(y));

    // Out of bounds and misaligned accesses are refused, not performed.
    let e = a.write_at(8190, b"abc").unwrap_err();
    assert_eq!(
        e,
        AccessError::OutOfBounds(BoundsError {
            offset: 8190,
            len: 3,
            segment_len: 8192,
            align: 1
        })
    );
    assert!(e.to_string().contains("8192-byte segment"), "{e}");
    assert!(a.read_at(usize::MAX, &mut [0u8; 2]).is_err());
    assert!(a.read_at(8193, &mut []).is_err());
    assert!(a.read_at(8192, &mut []).is_ok());
    // SAFETY: no other reference of this process covers the last
    // eight bytes of `a` or its bytes 4..12 (`x` is dead).
    unsafe {
        match a.view::<AtomicU64>(8188) {
            Err(AccessError::OutOfBounds(b)) => assert_eq!(b.align, 8),
            other => panic!("view at 8188: {other:?}"),
        }
        assert!(a.view::<AtomicU64>(8192 - 8).is_ok());
        assert!(a.view::<AtomicU64>(4).is_err(), "misaligned view");
    }
    assert!(a.ptr_at(8192, 1).is_err());
    assert_eq!(a.ptr_at(10, 1).unwrap(), a.as_ptr().wrapping_add(10));
    let mut after = [0u8; 2];
    a.read_at(8190, &mut after).unwrap();
    assert_eq!(after, [b'n', b'd'], "a refused write wrote nothing");

    let st = seg.stat().expect("stat");
    assert_eq!(st.backend, S::BACKEND);
    assert_eq!(st.size, 8192);
    assert_eq!(st.mode, S::MODE);
    assert_eq!(st.uid, euid());
    assert_eq!(a.stat().expect("stat of the second mapping").size, 8192);
}

/// Create, refuse a second create, open by name, remove: the name goes,
/// the mappings stay usable, the name is free again.
fn named_life<S: NamedSut>() {
    let id = S::id("named-life");
    let _g = Guard::new(&[&id]);
    let mut seg = Segment::create(&id, 8192, DEFAULT_MODE).expect("create");
    assert_eq!(seg.id(), Some(&id));
    assert_eq!(seg.describe(), id.to_string());
    assert_eq!(seg.backend(), id.backend());
    assert_eq!(id.backend(), S::BACKEND);
    assert!(seg.is_owner());
    assert!(seg.is_named());

    // A second exclusive create is refused and leaves the first alone.
    match Segment::create(&id, 8192, DEFAULT_MODE) {
        Err(e @ CreateError::AlreadyExists { .. }) => {
            assert_names(&e, &id);
            assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AlreadyExists);
        }
        other => panic!("second create: {other:?}"),
    }
    seg.write_at(100, b"by name").unwrap();
    let mut a = Segment::open(&id).expect("open a");
    let mut b = Segment::open(&id).expect("open b");
    assert!(!a.is_owner() && !b.is_owner());
    let mut got = [0u8; 7];
    a.read_at(100, &mut got).unwrap();
    assert_eq!(&got, b"by name");

    // Remove: the name goes, the mappings stay usable until dropped.
    seg.remove().expect("remove");
    assert!(!seg.is_owner());
    assert!(!seg.is_named());
    assert!(!exists(&id));
    a.write_at(0, b"still mapped").unwrap();
    let mut still = [0u8; 12];
    b.read_at(0, &mut still).unwrap();
    assert_eq!(&still, b"still mapped");
    match Segment::open(&id) {
        Err(e @ OpenError::NotFound { .. }) => {
            assert_names(&e, &id);
            assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
        }
        other => panic!("open after remove: {other:?}"),
    }
    match crate::remove(&id) {
        Err(e @ OpenError::NotFound { .. }) => assert_names(&e, &id),
        other => panic!("second remove: {other:?}"),
    }
    drop((seg, a, b));
    // The name is free again.
    let mut again = Segment::create(&id, 4096, DEFAULT_MODE).expect("re-create");
    let mut zero = [0xffu8; 12];
    again.read_at(0, &mut zero).unwrap();
    assert_eq!(zero, [0u8; 12], "a new segment, not the old bytes");
}

fn bad_sizes<S: NamedSut>() {
    let id = S::id("bad-sizes");
    let _g = Guard::new(&[&id]);
    for size in [0, MAX_SEGMENT_SIZE + 1, u64::MAX] {
        match Segment::create(&id, size, DEFAULT_MODE) {
            Err(e @ CreateError::InvalidSize { .. }) => {
                assert_names(&e, &id);
                assert!(e.to_string().contains(&size.to_string()), "{e}");
                assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
            }
            other => panic!("size {size}: {other:?}"),
        }
        match Segment::open_or_create(&id, size, DEFAULT_MODE) {
            Err(OpenError::Create(CreateError::InvalidSize { .. })) => {}
            other => panic!("open_or_create size {size}: {other:?}"),
        }
        assert!(!exists(&id), "a refused size left a segment behind");
    }
    // The smallest size works.
    let one = Segment::create(&id, 1, DEFAULT_MODE).expect("1 byte");
    assert_eq!(one.len(), 1);
    assert_eq!(one.stat().unwrap().size, 1);
}

fn open_missing<S: NamedSut>() {
    let id = S::id("open-missing");
    match Segment::open(&id) {
        Err(e @ OpenError::NotFound { .. }) => {
            assert_names(&e, &id);
            assert!(e.to_string().contains("shm ls"), "{e}");
        }
        other => panic!("open of a missing segment: {other:?}"),
    }
    match Segment::open_with(&id, CreateMode::OpenExisting, 64, DEFAULT_MODE) {
        Err(OpenError::NotFound { .. }) => {}
        other => panic!("OpenExisting of a missing segment: {other:?}"),
    }
    match crate::remove(&id) {
        Err(e @ OpenError::NotFound { .. }) => assert_names(&e, &id),
        other => panic!("remove of a missing segment: {other:?}"),
    }
}

fn open_or_create_says_who_created<S: NamedSut>() {
    let id = S::id("open-or-create-says-who-created");
    let _g = Guard::new(&[&id]);
    let (mut first, created) = Segment::open_or_create(&id, 4096, DEFAULT_MODE).unwrap();
    assert!(created);
    assert!(first.is_owner());
    first.write_at(0, b"first").unwrap();
    // A second call opens what is there, whatever size it asks for.
    let (mut second, created) = Segment::open_or_create(&id, 999, DEFAULT_MODE).unwrap();
    assert!(!created);
    assert!(!second.is_owner());
    assert_eq!(second.len(), 4096);
    let mut got = [0u8; 5];
    second.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"first");
    let (third, created) =
        Segment::open_with(&id, CreateMode::OpenOrCreate, 4096, DEFAULT_MODE).unwrap();
    assert!(!created && !third.is_owner());
    let (fourth, created) =
        Segment::open_with(&id, CreateMode::OpenExisting, 1, DEFAULT_MODE).unwrap();
    assert!(!created && !fourth.is_owner());
    match Segment::open_with(&id, CreateMode::CreateExclusive, 4096, DEFAULT_MODE) {
        Err(OpenError::Create(CreateError::AlreadyExists { .. })) => {}
        other => panic!("CreateExclusive of an existing segment: {other:?}"),
    }
}

fn owner_drop_removes<S: NamedSut>() {
    // The owner's drop removes the name, even while others map it.
    let id = S::id("owner");
    let _g = Guard::new(&[&id]);
    let seg = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
    let other = Segment::open(&id).unwrap();
    drop(other);
    drop(seg);
    assert!(!exists(&id), "the owner's drop removes the segment");

    // An opener's drop does not.
    let seg = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
    drop(Segment::open(&id).unwrap());
    assert!(exists(&id), "an opener's drop removes nothing");

    // Giving the duty up leaves it behind.
    let mut seg = seg;
    seg.set_owner(false);
    assert!(!seg.is_owner());
    seg.write_at(0, b"left").unwrap();
    drop(seg);
    assert!(exists(&id), "set_owner(false) leaves the segment");

    // Another process (here: handle) takes the duty over.
    let mut heir = Segment::open(&id).unwrap();
    let mut got = [0u8; 4];
    heir.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"left");
    heir.set_owner(true);
    assert!(heir.is_owner());
    drop(heir);
    assert!(!exists(&id), "the heir's drop removes it");

    // The free function removes by id without mapping.
    let mut seg = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
    seg.set_owner(false);
    drop(seg);
    crate::remove(&id).expect("remove by id");
    assert!(!exists(&id));
}

fn mode_is_exact<S: NamedSut>() {
    let id = S::id("mode-is-exact");
    let _g = Guard::new(&[&id]);
    for mode in [0o600, 0o640, 0o644, 0o660, 0o666, 0o400, 0o040, 0o000] {
        let mut seg = Segment::create(&id, 4096, mode)
            .unwrap_or_else(|e| panic!("create with mode {mode:o}: {e}"));
        assert_eq!(seg.stat().unwrap().mode, mode, "mode {mode:o}");
        // The creator maps it read-write whatever the mode.
        seg.write_at(0, b"rw").unwrap();
        if let SegmentId::Posix(name) = &id {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(format!("/dev/shm/{}", name.file_name())).unwrap();
            assert_eq!(md.mode() & 0o7777, mode, "file mode {mode:o}");
        }
        seg.remove().unwrap();
    }
    // Bits beyond the permissions are not passed on.
    let seg = Segment::create(&id, 4096, 0o7640).unwrap();
    assert_eq!(seg.stat().unwrap().mode, 0o640);
}

/// A read-only handle reads what the writer wrote, and refuses every
/// write with a typed error (never a `SIGSEGV` on the `PROT_READ`
/// pages): `write_at`, `view` (an atomic store through it would fault)
/// and `ptr_at`.
fn read_only_handles<S: NamedSut>() {
    let id = S::id("read-only-handles");
    let _g = Guard::new(&[&id]);
    let mut seg = Segment::create(&id, 8192, 0o644).unwrap();
    seg.write_at(100, b"seen").unwrap();
    let mut ro = Segment::open_read_only(&id).expect("open read-only");
    assert!(ro.is_read_only() && !seg.is_read_only() && !ro.is_owner());
    assert_eq!(ro.len(), 8192);
    let mut got = [0u8; 4];
    ro.read_at(100, &mut got).unwrap();
    assert_eq!(&got, b"seen");
    match ro.write_at(100, b"nope") {
        Err(e @ AccessError::ReadOnly { .. }) => {
            assert!(e.to_string().contains("opened read-only"), "{e}");
            assert!(e.to_string().contains(&id.to_string()), "{e}");
            assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);
        }
        other => panic!("write through a read-only handle: {other:?}"),
    }
    assert!(matches!(
        // SAFETY: refused before any reference is formed (and `ro`
        // gives out none).
        unsafe { ro.view::<AtomicU64>(0) },
        Err(AccessError::ReadOnly { .. })
    ));
    assert!(matches!(ro.ptr_at(0, 1), Err(AccessError::ReadOnly { .. })));
    // Populating reads nothing: allowed on either handle.
    ro.populate().expect("populate a read-only mapping");
    seg.populate().expect("populate a read-write mapping");
    assert!(
        ro.read_at(8190, &mut [0u8; 3]).is_err(),
        "bounds still hold"
    );
    // Later writes are seen through the read-only mapping.
    seg.write_at(100, b"more").unwrap();
    ro.read_at(100, &mut got).unwrap();
    assert_eq!(&got, b"more");
    assert_eq!(ro.stat().unwrap().size, 8192);
    drop(ro);
    match Segment::open_read_only(&crate::test_util::posix_id("ro-missing")) {
        Err(OpenError::NotFound { .. }) => {}
        other => panic!("read-only open of a missing segment: {other:?}"),
    }
}

conformance_tests! {
    every: {
        mapped_twice_at_two_addresses => mapped_twice;
    }
    named: {
        create_open_remove_by_name => named_life;
        zero_and_absurd_sizes_are_refused => bad_sizes;
        opening_a_missing_segment_is_not_found => open_missing;
        open_or_create_says_whether_it_created => open_or_create_says_who_created;
        ownership_is_explicit => owner_drop_removes;
        the_mode_is_applied_exactly => mode_is_exact;
        read_only_handles_refuse_writes_with_a_typed_error => read_only_handles;
    }
}

#[test]
fn the_umask_does_not_narrow_the_mode() {
    use nix::sys::stat::{Mode, umask};
    use std::os::unix::fs::MetadataExt;
    let id = posix_id("umask");
    let _g = Guard::new(&[&id]);
    let SegmentId::Posix(name) = &id else {
        unreachable!()
    };
    let path = format!("/dev/shm/{}", name.file_name());
    // Every create in this crate sets the mode with fchmod, so changing
    // the process-wide umask cannot disturb the tests running beside.
    let old = umask(Mode::from_bits_truncate(0o022));
    let r022 = Segment::create(&id, 4096, 0o640).map(|s| {
        let m = (
            s.stat().map(|s| s.mode),
            std::fs::metadata(&path).map(|m| m.mode()),
        );
        drop(s);
        m
    });
    umask(Mode::from_bits_truncate(0o077));
    let r077 = Segment::create(&id, 4096, 0o666).map(|s| {
        let m = (
            s.stat().map(|s| s.mode),
            std::fs::metadata(&path).map(|m| m.mode()),
        );
        drop(s);
        m
    });
    let r_default = Segment::create(&id, 4096, DEFAULT_MODE).map(|s| {
        let m = std::fs::metadata(&path).map(|m| m.mode());
        drop(s);
        m
    });
    umask(old);
    let (st, md) = r022.unwrap();
    assert_eq!(st.unwrap(), 0o640);
    assert_eq!(md.unwrap() & 0o7777, 0o640);
    let (st, md) = r077.unwrap();
    assert_eq!(st.unwrap(), 0o666, "umask 077 must not narrow 0666");
    assert_eq!(md.unwrap() & 0o7777, 0o666);
    assert_eq!(r_default.unwrap().unwrap() & 0o7777, 0o600);
    assert_eq!(DEFAULT_MODE, 0o600);
}

#[test]
fn an_owner_does_not_remove_a_new_segment_under_its_old_name() {
    let id = posix_id("reused");
    let _g = Guard::new(&[&id]);
    let old = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
    // Someone removes it (`shm rm`) and creates another under the name.
    crate::remove(&id).unwrap();
    let mut new = Segment::create(&id, 4096, DEFAULT_MODE).unwrap();
    new.set_owner(false);
    new.write_at(0, b"new").unwrap();
    assert!(old.is_owner());
    match old.remove() {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
        Ok(()) => panic!("removed a segment that is not its own"),
    }
    drop(old);
    let mut reopened = Segment::open(&id).expect("the new segment survives the old owner");
    let mut got = [0u8; 3];
    reopened.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"new");
    // Its own handle still removes it.
    drop(reopened);
    new.remove().expect("the new segment's handle removes it");
    assert!(!exists(&id));
}

#[test]
fn sysv_stat_reports_the_kernel_fields() {
    let id = sysv_id();
    let _g = Guard::new(&[&id]);
    let SegmentId::SysV(key) = id else {
        unreachable!()
    };
    let mut seg = Segment::create(&id, 10_000, 0o640).unwrap();
    let st = seg.stat().unwrap();
    assert_eq!(st.key, Some(key));
    assert_eq!(st.shmid, seg.shmid());
    assert!(seg.shmid().is_some());
    assert!(seg.fd().is_none());
    assert_eq!(st.size, 10_000);
    assert_eq!(st.mode, 0o640);
    assert_eq!(st.nattch, Some(1));
    assert_eq!(st.cpid, Some(std::process::id() as i32));
    assert_eq!(st.lpid, Some(std::process::id() as i32));
    assert_eq!(st.dtime, Some(0));
    assert!(st.ctime > 0 && st.atime > 0);
    {
        let other = Segment::open(&id).unwrap();
        assert_eq!(other.stat().unwrap().nattch, Some(2));
        assert_eq!(other.shmid(), seg.shmid());
    }
    let st = seg.stat().unwrap();
    assert_eq!(st.nattch, Some(1), "the drop detached");
    assert!(st.dtime.unwrap() > 0);

    // The same segment by shmid.
    let by_id = SegmentId::SysVId(seg.shmid().unwrap());
    let mut third = Segment::open(&by_id).unwrap();
    assert_eq!(third.len(), 10_000);
    assert_eq!(third.describe(), by_id.to_string());
    seg.write_at(5, b"key").unwrap();
    let mut got = [0u8; 3];
    third.read_at(5, &mut got).unwrap();
    assert_eq!(&got, b"key");
    match Segment::create(&by_id, 10, DEFAULT_MODE) {
        Err(e @ CreateError::InvalidName(_)) => assert_names(&e, &by_id),
        other => panic!("create by shmid: {other:?}"),
    }
    drop(third);
    // Removed by key, attachments survive; the key no longer finds it.
    crate::remove(&id).unwrap();
    assert!(!exists(&id));
    match Segment::open(&by_id) {
        // Marked for removal but still attached by `seg`: the kernel
        // may still let a shmid attach; after the last detach it is gone.
        Ok(s) => drop(s),
        Err(OpenError::NotFound { .. }) => {}
        Err(e) => panic!("open by shmid after remove: {e}"),
    }
    let shmid = seg.shmid().unwrap();
    drop(seg);
    match Segment::open(&SegmentId::SysVId(shmid)) {
        Err(OpenError::NotFound { .. }) => {}
        other => panic!("open by shmid after the last detach: {other:?}"),
    }
}

#[test]
fn posix_stat_and_fd() {
    let id = posix_id("stat");
    let _g = Guard::new(&[&id]);
    let seg = Segment::create(&id, 12_345, 0o600).unwrap();
    assert!(seg.fd().is_some() && seg.shmid().is_none());
    let st = seg.stat().unwrap();
    assert_eq!(
        (st.backend, st.size, st.mode, st.uid),
        (Backend::Posix, 12_345, 0o600, euid())
    );
    assert_eq!(st.gid, effective("Gid:"));
    assert_eq!(
        (st.key, st.shmid, st.nattch, st.cpid, st.lpid, st.dtime),
        (None, None, None, None, None, None)
    );
    // `posix_fallocate` reserved the pages: the blocks are there.
    use std::os::unix::fs::MetadataExt;
    let SegmentId::Posix(name) = &id else {
        unreachable!()
    };
    let md = std::fs::metadata(format!("/dev/shm/{}", name.file_name())).unwrap();
    assert_eq!(md.len(), 12_345);
    assert!(md.blocks() * 512 >= 12_345, "blocks {}", md.blocks());
}

#[test]
fn populate_faults_pages_in_and_notices_a_truncation() {
    let id = posix_id("populate");
    let _g = Guard::new(&[&id]);
    let mut seg = Segment::create(&id, 64 * 1024, DEFAULT_MODE).unwrap();
    seg.populate().expect("populate a whole segment");
    assert!(!seg.is_truncated());
    let SegmentId::Posix(name) = &id else {
        unreachable!()
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.file_name()))
        .and_then(|f| f.set_len(4096))
        .unwrap();
    // The kernel finds the lost pages; nothing was touched.
    let e = seg.populate().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT), "{e}");
    assert!(seg.is_truncated(), "populate records the truncation");
    // The guard still turns a touch of a lost page into private zeros.
    let mut got = [0xffu8; 4];
    seg.read_at(60_000, &mut got).unwrap();
    assert_eq!(got, [0; 4]);
}

#[test]
fn anonymous_segments_share_through_their_descriptor() {
    for size in [0, MAX_SEGMENT_SIZE + 1] {
        match Segment::anonymous(size) {
            Err(CreateError::InvalidSize { segment, .. }) => assert_eq!(segment, "memfd"),
            other => panic!("anonymous({size}): {other:?}"),
        }
    }
    let mut seg = Segment::anonymous(4096).unwrap();
    assert_eq!(seg.backend(), Backend::Memfd);
    assert_eq!(seg.id(), None);
    assert_eq!(seg.describe(), "memfd");
    assert!(!seg.is_owner());
    seg.set_owner(true);
    assert!(
        !seg.is_owner(),
        "an anonymous segment has no name to remove"
    );
    let fd = seg.fd().unwrap().try_clone_to_owned().unwrap();
    let mut other = Segment::from_fd(fd).unwrap();
    assert_eq!(other.len(), 4096);
    assert_ne!(other.as_ptr(), seg.as_ptr());
    seg.write_at(4000, b"memfd").unwrap();
    let mut got = [0u8; 5];
    other.read_at(4000, &mut got).unwrap();
    assert_eq!(&got, b"memfd");
    assert_eq!(seg.stat().unwrap().size, 4096);
    seg.remove().unwrap();
}

#[test]
fn open_or_create_gives_up_on_a_name_left_empty() {
    // A creator that died between `shm_open` and `posix_fallocate`
    // leaves an empty name; open_or_create must report it, not spin.
    let id = posix_id("empty");
    let _g = Guard::new(&[&id]);
    let SegmentId::Posix(name) = &id else {
        unreachable!()
    };
    let fd = crate::sys::posix::shm_open(
        name.as_c_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        0o600,
    )
    .unwrap();
    drop(fd);
    match Segment::open(&id) {
        Err(e @ OpenError::TooSmall { size: 0, .. }) => assert_names(&e, &id),
        other => panic!("open of an empty name: {other:?}"),
    }
    match Segment::open_or_create(&id, 4096, DEFAULT_MODE) {
        Err(e @ OpenError::TooSmall { size: 0, .. }) => assert_names(&e, &id),
        other => panic!("open_or_create of an empty name: {other:?}"),
    }
}
