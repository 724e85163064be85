//! Property tests: decoding a header from arbitrary bytes, name and id
//! parsing, and size validation. Nothing here may panic; garbage is never
//! accepted.

use proptest::prelude::*;
use shm_core::{
    CreateError, Fingerprint, HEADER_SIZE, HeaderInfo, InitState, MAX_POSIX_NAME, MAX_SEGMENT_SIZE,
    PosixName, ProcessId, Segment, SegmentId,
};

const STATE_READY: u32 = 0x5245_4459;
const STATE_FAILED: u32 = 0x4641_494c;

fn state() -> impl Strategy<Value = InitState> {
    prop_oneof![
        Just(InitState::Initializing),
        Just(InitState::Ready),
        Just(InitState::Failed)
    ]
}

/// Any header `encode` can write and `decode` must accept: a power-of-two
/// alignment up to a page, the data offset that follows from it, a total size
/// that holds the content and stays under the limit, a printable kind word
/// of at most 32 bytes.
fn valid_info() -> impl Strategy<Value = HeaderInfo> {
    (
        state(),
        any::<u64>(),
        0u64..(1 << 36),
        0u32..=12,
        0u64..(1 << 36),
        any::<u32>(),
        any::<u64>(),
        "[!-~]{0,32}",
    )
        .prop_map(
            |(state, type_id, size, align_log, slack, pid, start, kind)| {
                let align = 1u32 << align_log;
                let data_offset = (HEADER_SIZE as u64).next_multiple_of(u64::from(align));
                let tail = (data_offset + size).next_multiple_of(64);
                HeaderInfo {
                    state,
                    fingerprint: Fingerprint {
                        size,
                        align,
                        type_id,
                    },
                    data_offset,
                    total_size: (tail + slack).min(MAX_SEGMENT_SIZE),
                    creator: ProcessId { pid, start },
                    kind,
                }
            },
        )
}

/// The naming rule, written out independently of `PosixName::new`.
fn rule_accepts(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= MAX_POSIX_NAME
        && !rest.contains('/')
        && rest != "."
        && rest != ".."
        && !rest.bytes().any(|b| b < 0x20 || b == 0x7f)
}

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "/[a-z./]{0,4}",
        "/[\\x00-\\x7f]{0,6}",
        "[a-z/]{0,3}/?[a-z]{0,3}",
        "/[a-z]{250,260}",
        "/\\PC{60,90}",
        Just("/.".to_owned()),
        Just("/..".to_owned()),
        Just("/...".to_owned()),
    ]
}

fn ids() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("sysv:{s}")),
        any::<String>().prop_map(|s| format!("sysv-id:{s}")),
        any::<i64>().prop_map(|n| format!("sysv:{n}")),
        any::<u64>().prop_map(|n| format!("sysv:{n:#x}")),
        any::<i64>().prop_map(|n| format!("sysv-id:{n}")),
        "sysv(-id)?:(0[xX])?[-+]?[0-9a-fA-F]{0,10}",
        names(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_of_arbitrary_bytes_never_panics_nor_accepts(
        bytes in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        prop_assert!(HeaderInfo::decode(&bytes).is_err());
    }

    #[test]
    fn decode_with_our_magic_and_junk_after_never_accepts(
        tail in proptest::collection::vec(any::<u8>(), 120..200)
    ) {
        // Get past the magic and version so the later checks are exercised.
        let mut bytes = u64::from_le_bytes(*b"SHMRSv1\0").to_ne_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        bytes[8..12].copy_from_slice(&shm_core::FORMAT_VERSION.to_ne_bytes());
        prop_assert!(HeaderInfo::decode(&bytes).is_err());
    }

    #[test]
    fn encode_then_decode_round_trips(info in valid_info()) {
        let bytes = info.encode();
        prop_assert_eq!(HeaderInfo::decode(&bytes), Ok(info));
    }

    #[test]
    fn any_single_byte_change_is_refused(
        info in valid_info(),
        at in 0..HEADER_SIZE,
        flip in 1u8..=255,
    ) {
        let mut bytes = info.encode();
        bytes[at] ^= flip;
        if (12..16).contains(&at) {
            let word = u32::from_ne_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
            prop_assume!(word != 0 && word != STATE_READY && word != STATE_FAILED);
        }
        prop_assert!(HeaderInfo::decode(&bytes).is_err(), "byte {} ^ {:#x} accepted", at, flip);
    }

    #[test]
    fn posix_names_follow_exactly_the_rule(name in names()) {
        let result = PosixName::new(&name);
        prop_assert_eq!(result.is_ok(), rule_accepts(&name), "{:?}: {:?}", name, result);
        match result {
            Ok(n) => {
                prop_assert_eq!(n.as_str(), name.as_str());
                prop_assert_eq!(n.file_name(), &name[1..]);
                let id = SegmentId::Posix(n);
                prop_assert_eq!(id.to_string().parse::<SegmentId>(), Ok(id));
            }
            Err(e) => {
                prop_assert_eq!(&e.name, &name);
                prop_assert!(!e.reason.is_empty());
            }
        }
    }

    #[test]
    fn segment_ids_never_panic_and_print_back(text in ids()) {
        if let Ok(id) = text.parse::<SegmentId>() {
            let key0 = matches!(id, SegmentId::SysV(0));
            prop_assert!(!key0, "key 0 accepted from {:?}", text);
            let negative = matches!(id, SegmentId::SysVId(n) if n < 0);
            prop_assert!(!negative, "negative shmid from {:?}", text);
            prop_assert_eq!(id.to_string().parse::<SegmentId>(), Ok(id));
        }
    }

    #[test]
    fn sysv_keys_print_and_parse_back(key in any::<i32>().prop_filter("not IPC_PRIVATE", |k| *k != 0)) {
        let id = SegmentId::SysV(key);
        let text = id.to_string();
        prop_assert!(text.starts_with("sysv:0x") && text.len() == 15, "{}", text);
        prop_assert_eq!(text.parse::<SegmentId>(), Ok(id));
        let decimal = format!("sysv:{}", key as u32);
        prop_assert_eq!(decimal.parse::<SegmentId>(), Ok(SegmentId::SysV(key)));
    }
}

proptest! {
    // Each case maps a real (anonymous) segment: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sizes_in_range_are_mapped_whole(size in 1u64..(1 << 20)) {
        let mut seg = Segment::anonymous(size).expect("anonymous segment");
        prop_assert_eq!(seg.len() as u64, size);
        prop_assert_eq!(seg.stat().unwrap().size, size);
        let last = size as usize - 1;
        seg.write_at(last, &[0xa5]).unwrap();
        prop_assert!(seg.write_at(last + 1, &[0]).is_err());
    }

    #[test]
    fn sizes_out_of_range_are_refused(
        size in prop_oneof![Just(0u64), (MAX_SEGMENT_SIZE + 1)..=u64::MAX]
    ) {
        match Segment::anonymous(size) {
            Err(CreateError::InvalidSize { size: s, .. }) => prop_assert_eq!(s, size),
            other => prop_assert!(false, "size {}: {:?}", size, other.map(|s| s.len())),
        }
        // And for a named segment, before any name is created.
        let id = SegmentId::posix(&format!("/shmrs-test-core-prop-size-{}", std::process::id())).unwrap();
        match Segment::create(&id, size, 0o600) {
            Err(CreateError::InvalidSize { .. }) => {}
            other => prop_assert!(false, "named size {}: {:?}", size, other.map(|s| s.len())),
        }
        let missing = matches!(Segment::open(&id), Err(shm_core::OpenError::NotFound { .. }));
        prop_assert!(missing, "a refused size left {} behind", id);
    }
}
