//! Tests of [`Shared`] and [`Snapshot`]: one body per behaviour, run for
//! every backend it applies to (`crate::test_util::conformance_tests!`),
//! plus the few things only one backend has.

use std::io;

use super::*;
use crate::header::checksum;
use crate::shim::Ordering;
use crate::shim::real::{
    AtomicBool as StdAtomicBool, AtomicI64 as StdAtomicI64, AtomicU8 as StdAtomicU8,
    AtomicU64 as StdAtomicU64,
};
use crate::test_util::{Guard, NamedSut, assert_names, conformance_tests, exists, posix_id};

fn quick() -> SharedOptions {
    SharedOptions::new().timeout(Duration::from_millis(300))
}

/// Deterministic junk: xorshift64.
fn junk(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn open_err<T: ShmShared>(id: &SegmentId, opts: &SharedOptions) -> OpenError {
    match Shared::<T>::open(id, opts) {
        Ok(_) => panic!("{id} opened"),
        Err(e) => {
            assert_names(&e, id);
            e
        }
    }
}

fn create_then_open<S: NamedSut>() {
    let id = S::id("create-open");
    let _g = Guard::new(&[&id]);
    let opts = SharedOptions::new().kind("counter").extra(1000);
    let mut ran = false;
    let mut a = Shared::<StdAtomicU64>::create(&id, &opts, |c| {
        assert_eq!(c.load(Ordering::Relaxed), 0, "fresh content is zero");
        c.store(41, Ordering::Relaxed);
        ran = true;
        Ok(())
    })
    .expect("create");
    assert!(ran);
    assert!(a.segment().is_owner());
    let h = a.header().unwrap();
    assert_eq!(h.state, InitState::Ready);
    assert_eq!(h.kind, "counter");
    assert_eq!(h.creator, ProcessId::current());
    assert_eq!(h.fingerprint, Fingerprint::of::<StdAtomicU64>());
    assert_eq!(h.total_size, a.segment().len() as u64);
    assert_eq!(h.data_offset, 128);
    assert_eq!(a.tail_offset(), 192);
    assert_eq!(a.tail_len(), 1000);
    assert_eq!(a.segment().stat().unwrap().mode, 0o600, "default mode");

    match Shared::<StdAtomicU64>::create(&id, &opts, |_| panic!("init of a second create")) {
        Err(e @ CreateError::AlreadyExists { .. }) => assert_names(&e, &id),
        other => panic!("second create: {other:?}"),
    }

    // Mapped twice: different addresses, one value.
    let mut b = Shared::<StdAtomicU64>::open(&id, &quick()).expect("open");
    assert!(!b.segment().is_owner());
    assert_ne!(std::ptr::from_ref(a.get()), std::ptr::from_ref(b.get()));
    assert_eq!(b.get().fetch_add(1, Ordering::SeqCst), 41);
    assert_eq!(a.get().load(Ordering::SeqCst), 42);
    assert_eq!(b.header().unwrap(), h);
    assert_eq!(b.tail_len(), 1000);
    let at = b.tail_offset() + 999;
    b.segment_mut().write_at(at, b"t").unwrap();
    let mut t = [0u8; 1];
    let at = a.tail_offset() + 999;
    a.segment_mut().read_at(at, &mut t).unwrap();
    assert_eq!(&t, b"t");

    // open_or_create of an existing segment opens and does not init.
    let (c, created) =
        Shared::<StdAtomicU64>::open_or_create(&id, &quick(), |_| panic!("re-init")).unwrap();
    assert!(!created);
    assert_eq!(c.get().load(Ordering::SeqCst), 42);
    drop((b, c));

    let seg = a.into_segment();
    assert!(seg.is_owner());
    drop(seg);
    assert!(!exists(&id), "the creator owns and removes it");
    match Shared::<StdAtomicU64>::open(&id, &quick()) {
        Err(e @ OpenError::NotFound { .. }) => assert_names(&e, &id),
        other => panic!("open after the owner dropped: {other:?}"),
    }
    // open_or_create of a missing segment creates, once.
    let mut calls = 0;
    let (d, created) = Shared::<StdAtomicU64>::open_or_create(&id, &quick(), |c| {
        calls += 1;
        c.store(7, Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    assert!(created && calls == 1);
    assert!(d.segment().is_owner());
    assert_eq!(d.get().load(Ordering::SeqCst), 7);
}

fn layout_mismatch<S: NamedSut>() {
    let id = S::id("layout");
    let _g = Guard::new(&[&id]);
    let _a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| Ok(())).unwrap();
    match open_err::<[StdAtomicU64; 2]>(&id, &quick()) {
        OpenError::LayoutMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, Fingerprint::of::<[StdAtomicU64; 2]>());
            assert_eq!(found, Fingerprint::of::<StdAtomicU64>());
        }
        e => panic!("opened as [AtomicU64; 2]: {e:?}"),
    }
    // Same size and alignment, another type: the type id tells.
    match open_err::<StdAtomicI64>(&id, &quick()) {
        OpenError::LayoutMismatch {
            expected, found, ..
        } => {
            assert_eq!((expected.size, expected.align), (found.size, found.align));
            assert_ne!(expected.type_id, found.type_id);
        }
        e => panic!("opened as u64: {e:?}"),
    }
}

fn not_ours<S: NamedSut>() {
    let id = S::id("not-ours");
    let _g = Guard::new(&[&id]);
    let mut raw = Segment::create(&id, 4096, 0o600).unwrap();
    raw.write_at(0, &junk(4096, 0x1234_5678_9abc_def1)).unwrap();
    let mut state = [0u8; 4];
    raw.read_at(12, &mut state).unwrap();
    assert_ne!(state, [0; 4], "the junk must not look like initializing");
    match open_err::<StdAtomicU64>(&id, &quick()) {
        OpenError::NotOurs { detail, .. } => assert!(detail.contains("magic"), "{detail}"),
        e => panic!("junk opened: {e:?}"),
    }
    // Our magic but a wrong version.
    raw.write_at(0, &MAGIC.to_ne_bytes()).unwrap();
    raw.write_at(8, &2u32.to_ne_bytes()).unwrap();
    match open_err::<StdAtomicU64>(&id, &quick()) {
        OpenError::VersionMismatch {
            found: 2,
            expected: FORMAT_VERSION,
            ..
        } => {}
        e => panic!("version 2 opened: {e:?}"),
    }
}

fn too_small<S: NamedSut>() {
    let id = S::id("too-small");
    let _g = Guard::new(&[&id]);
    let mut raw = Segment::create(&id, 16, 0o600).unwrap();
    raw.write_at(0, &MAGIC.to_ne_bytes()).unwrap();
    // The default 5 s deadline: the error must come at once, not after
    // it (the watchdog of the test run catches a hang).
    match open_err::<StdAtomicU64>(&id, &SharedOptions::new()) {
        OpenError::TooSmall {
            size: 16, needed, ..
        } => {
            assert_eq!(needed, HEADER_SIZE as u64)
        }
        e => panic!("16 bytes opened: {e:?}"),
    }
    match Shared::<StdAtomicU64>::from_segment(raw) {
        Err(OpenError::TooSmall { size: 16, .. }) => {}
        other => panic!("from_segment of 16 bytes: {other:?}"),
    }
}

fn corrupted<S: NamedSut>() {
    let id = S::id("corrupted");
    let _g = Guard::new(&[&id]);
    let mut a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| Ok(())).unwrap();
    let seg = a.segment_mut();
    let mut good = [0u8; HEADER_SIZE];
    seg.read_at(0, &mut good).unwrap();
    let expect_corrupted = |what: &str| match open_err::<StdAtomicU64>(&id, &quick()) {
        OpenError::Corrupted { detail, .. } => {
            assert!(detail.contains(what), "{detail} lacks {what}")
        }
        e => panic!("{what}: {e:?}"),
    };
    // One byte of the fingerprint changed: the checksum no longer matches.
    seg.write_at(20, &[good[20] ^ 0x01]).unwrap();
    expect_corrupted("checksum");
    // A bad value behind a valid checksum.
    let mut b = good;
    b[100] = 9;
    let sum = checksum(&b);
    b[120..128].copy_from_slice(&sum.to_ne_bytes());
    seg.write_at(0, &b).unwrap();
    expect_corrupted("reserved");
    // A state word that is no state.
    seg.write_at(0, &good).unwrap();
    seg.write_at(12, &0xdead_u32.to_ne_bytes()).unwrap();
    expect_corrupted("state");
    // The creator reported failure.
    seg.write_at(12, &STATE_FAILED.to_ne_bytes()).unwrap();
    assert!(matches!(
        open_err::<StdAtomicU64>(&id, &quick()),
        OpenError::InitFailed { .. }
    ));
    // Repaired, it opens again.
    seg.write_at(0, &good).unwrap();
    Shared::<StdAtomicU64>::open(&id, &quick()).expect("repaired header opens");
}

fn init_error<S: NamedSut>() {
    let id = S::id("init-error");
    let _g = Guard::new(&[&id]);
    match Shared::<StdAtomicU64>::create(&id, &quick(), |c| {
        c.store(1, Ordering::Relaxed);
        Err("no config file".into())
    }) {
        Err(e @ CreateError::Init { .. }) => {
            assert_names(&e, &id);
            assert!(e.to_string().contains("no config file"), "{e}");
            let source = std::error::Error::source(&e).expect("source wired");
            assert_eq!(source.to_string(), "no config file");
        }
        other => panic!("failing init: {other:?}"),
    }
    assert!(!exists(&id), "a failed init removes the segment");
    match Shared::<StdAtomicU64>::open_or_create(&id, &quick(), |_| Err("again".into())) {
        Err(OpenError::Create(CreateError::Init { .. })) => {}
        other => panic!("open_or_create with failing init: {other:?}"),
    }
    assert!(!exists(&id));
}

fn modes<S: NamedSut>() {
    let id = S::id("modes");
    let _g = Guard::new(&[&id]);
    let a = Shared::<StdAtomicU64>::create(&id, &quick().mode(0o640), |_| Ok(())).unwrap();
    assert_eq!(a.segment().stat().unwrap().mode, 0o640);
}

/// A snapshot reads through a read-only mapping, copies the value, and
/// validates the header as `open` does.
fn snapshots<S: NamedSut>() {
    let id = S::id("snapshots");
    let _g = Guard::new(&[&id]);
    let a = Shared::<StdAtomicU64>::create(&id, &quick().extra(64), |c| {
        c.store(7, Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    let snap = Snapshot::<StdAtomicU64>::open(&id).expect("snapshot");
    assert!(snap.segment().is_read_only());
    assert_eq!(snap.get().load(Ordering::Relaxed), 7);
    assert_eq!(snap.header().kind, "shared");
    assert_eq!((snap.tail_offset(), snap.tail_len()), (a.tail_offset(), 64));
    // A private copy: later changes are not seen.
    a.get().store(8, Ordering::Relaxed);
    assert_eq!(snap.get().load(Ordering::Relaxed), 7);
    match Snapshot::<StdAtomicI64>::open(&id) {
        Err(OpenError::LayoutMismatch { .. }) => {}
        other => panic!("snapshot as another type: {other:?}"),
    }
    let raw = posix_id("snapshot-raw");
    let _g2 = Guard::new(&[&raw]);
    let mut r = Segment::create(&raw, 4096, 0o600).unwrap();
    r.write_at(0, b"not a header").unwrap();
    match Snapshot::<StdAtomicU64>::open(&raw) {
        Err(OpenError::NotOurs { .. }) => {}
        other => panic!("snapshot of a raw segment: {other:?}"),
    }
}

conformance_tests! {
    named: {
        create_open_and_open_or_create => create_then_open;
        another_type_is_a_layout_mismatch => layout_mismatch;
        junk_is_not_ours => not_ours;
        a_segment_smaller_than_the_header_is_too_small => too_small;
        damaged_headers_are_corrupted => corrupted;
        a_failing_initializer_removes_the_segment => init_error;
        shared_options_mode_is_applied => modes;
        a_snapshot_copies_through_a_read_only_mapping => snapshots;
    }
}

#[test]
fn a_grown_posix_segment_is_a_size_mismatch() {
    let id = posix_id("grown");
    let _g = Guard::new(&[&id]);
    let a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| Ok(())).unwrap();
    let SegmentId::Posix(name) = &id else {
        unreachable!()
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.file_name()))
        .unwrap();
    file.set_len(a.segment().len() as u64 + 4096).unwrap();
    match open_err::<StdAtomicU64>(&id, &quick()) {
        OpenError::SizeMismatch { header, actual, .. } => {
            assert_eq!(header, 192);
            assert_eq!(actual, 192 + 4096);
        }
        e => panic!("grown segment: {e:?}"),
    }
}

#[test]
fn all_zeros_without_a_creator_is_not_ours() {
    let id = posix_id("zeros");
    let _g = Guard::new(&[&id]);
    let _raw = Segment::create(&id, 4096, 0o600).unwrap();
    assert!(matches!(
        open_err::<StdAtomicU64>(&id, &quick()),
        OpenError::NotOurs { .. }
    ));
}

#[test]
fn a_locked_creator_is_waited_for_and_its_death_reported() {
    // The POSIX handshake in one process: the creator's descriptor holds
    // the OFD lock, an opener's own descriptor sees it.
    let id = posix_id("handshake");
    let _g = Guard::new(&[&id]);
    let mut creator = Segment::create_inner(&id, 192, 0o600, true).unwrap();
    let info = HeaderInfo {
        state: InitState::Initializing,
        fingerprint: Fingerprint::of::<StdAtomicU64>(),
        data_offset: 128,
        total_size: 192,
        creator: ProcessId::current(),
        kind: "shared".into(),
    };
    creator.write_at(0, &info.encode()).unwrap();
    let timeout = Duration::from_millis(50);
    match open_err::<StdAtomicU64>(&id, &quick().timeout(timeout)) {
        OpenError::InitTimeout { waited, .. } => {
            assert!(waited >= timeout, "waited {waited:?}, deadline {timeout:?}")
        }
        e => panic!("live creator: {e:?}"),
    }
    // The creator goes away without publishing: its lock goes with it.
    creator.set_owner(false);
    drop(creator);
    match open_err::<StdAtomicU64>(&id, &SharedOptions::new()) {
        OpenError::CreatorDied { pid, .. } => assert_eq!(pid, std::process::id()),
        e => panic!("dead creator: {e:?}"),
    }
}

#[test]
fn an_opener_racing_a_finishing_creator_never_calls_it_dead() {
    // The creator publishes ready and drops its lock while an opener is
    // between its look at the state and its look at the lock: the opener
    // must look at the state again, not report a dead creator.
    let id = posix_id("finish-race");
    let _g = Guard::new(&[&id]);
    let mut opened = 0;
    for round in 0..300u32 {
        let done = StdAtomicBool::new(false);
        std::thread::scope(|s| {
            let creator = s.spawn(|| {
                let spin = Instant::now();
                let a = Shared::<StdAtomicU64>::create(&id, &quick(), |_| {
                    while spin.elapsed() < Duration::from_micros(u64::from(round % 40)) {
                        std::hint::spin_loop();
                    }
                    Ok(())
                })
                .expect("create");
                while !done.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                drop(a);
            });
            let start = Instant::now();
            // No panic before `done` is set: the creator would wait
            // for it forever and the scope with it.
            let outcome = loop {
                match Shared::<StdAtomicU64>::open(&id, &SharedOptions::new()) {
                    Ok(_) => break Ok(()),
                    Err(OpenError::NotFound { .. })
                        if start.elapsed() < Duration::from_secs(10) =>
                    {
                        std::hint::spin_loop()
                    }
                    Err(e) => break Err(e),
                }
            };
            done.store(true, Ordering::Release);
            creator.join().expect("creator thread");
            if let Err(e) = outcome {
                panic!("round {round}: {e}");
            }
            opened += 1;
        });
    }
    assert_eq!(opened, 300);
}

#[test]
fn an_anonymous_shared_value_travels_by_descriptor() {
    let a = Shared::<[StdAtomicU64; 4]>::create_anonymous(&quick(), |v| {
        v[3].store(99, Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    let fd = a.segment().fd().unwrap().try_clone_to_owned().unwrap();
    let b = Shared::<[StdAtomicU64; 4]>::from_segment(Segment::from_fd(fd).unwrap()).unwrap();
    assert_ne!(std::ptr::from_ref(a.get()), std::ptr::from_ref(b.get()));
    assert_eq!(b.get()[3].load(Ordering::SeqCst), 99);
    let fd = a.segment().fd().unwrap().try_clone_to_owned().unwrap();
    match Shared::<StdAtomicU64>::from_segment(Segment::from_fd(fd).unwrap()) {
        Err(OpenError::LayoutMismatch { segment, .. }) => assert_eq!(segment, "memfd"),
        other => panic!("memfd as another type: {other:?}"),
    }
    match Shared::<StdAtomicU64>::create_anonymous(&quick(), |_| Err("nope".into())) {
        Err(CreateError::Init { segment, .. }) => assert_eq!(segment, "memfd"),
        other => panic!("failing anonymous init: {other:?}"),
    }
}

#[test]
fn the_kind_word_is_cut_to_printable_ascii() {
    let id = posix_id("kind");
    let _g = Guard::new(&[&id]);
    let opts = quick().kind(&format!("a b\u{e9}\n{}", "z".repeat(40)));
    let a = Shared::<StdAtomicU8>::create(&id, &opts, |_| Ok(())).unwrap();
    let kind = a.header().unwrap().kind;
    assert_eq!(kind, format!("ab{}", "z".repeat(30)));
    assert_eq!(kind.len(), 32);
}

#[test]
fn absurd_trailing_regions_are_refused() {
    let id = posix_id("extra");
    let _g = Guard::new(&[&id]);
    for extra in [u64::MAX, crate::MAX_SEGMENT_SIZE] {
        match Shared::<StdAtomicU8>::create(&id, &quick().extra(extra), |_| Ok(())) {
            Err(e @ CreateError::InvalidSize { .. }) => assert_names(&e, &id),
            other => panic!("extra {extra}: {other:?}"),
        }
    }
    assert!(!exists(&id));
}

#[test]
fn every_error_converts_into_io_error() {
    let id = posix_id("io");
    let e = io::Error::from(OpenError::InitTimeout {
        segment: id.to_string(),
        waited: Duration::from_secs(1),
    });
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(e.to_string().contains(&id.to_string()));
    let e = io::Error::from(OpenError::LayoutMismatch {
        segment: id.to_string(),
        expected: Fingerprint::of::<u8>(),
        found: Fingerprint::of::<u16>(),
    });
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let e = io::Error::from(OpenError::from(crate::NameError {
        name: "x".into(),
        reason: "because",
    }));
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
