//! Typed and serialized messages between real processes, with no `unsafe`
//! in the test or its helper (`#![forbid(unsafe_code)]` here), and the
//! serde form of the info types against the JSON `shm` prints.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shm_core::ShmSafe;
use shm_queue::{Queue, QueueOptions, RecvTimeoutError, SerdeError, TypedQueue};
use shm_tests::helper::typed::{Event, Reading};
use shm_tests::{Cleanup, spawn, unique_posix, wait_output};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn derived_struct_crosses_processes() {
    const N: u64 = 10_000;
    let id = unique_posix("typed-derive");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let q = TypedQueue::<Reading>::create(&id, &QueueOptions::new().capacity(64)).unwrap();
    let rx = q.receiver().unwrap();
    let child = spawn(&["typed-send", &id.to_string(), &N.to_string()]);
    let sender = child.pid();
    for seq in 0..N {
        let r = rx.recv_timeout(LIMIT).expect("a reading");
        assert_eq!(r, Reading::new(sender, seq));
    }
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
    child.success(LIMIT);
    // The derived id is part of the fingerprint: another type is refused.
    assert!(TypedQueue::<[u64; 5]>::open(&id).is_err());
    assert_eq!(size_of::<Reading>(), 40);
    assert_ne!(Reading::TYPE_ID, <[u64; 5]>::TYPE_ID);
}

#[test]
fn serialized_messages_cross_processes() {
    const N: u64 = 2_000;
    let id = unique_posix("typed-serde");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let q = Queue::create(&id, &QueueOptions::new().capacity(32).slot_size(64)).unwrap();
    let rx = q.receiver().unwrap();
    let child = spawn(&["serde-send", &id.to_string(), &N.to_string()]);
    for seq in 0..N {
        let e: Event = rx.recv_deserialized_timeout(LIMIT).expect("an event");
        assert_eq!(e, Event::order(seq));
    }
    // The malformed message is a typed error, not a panic.
    assert!(matches!(
        rx.recv_deserialized_timeout::<Event>(LIMIT),
        Err(SerdeError::Decode { len: 2, .. })
    ));
    assert_eq!(rx.recv_deserialized_timeout(LIMIT), Ok(Event::Done));
    child.success(LIMIT);
}

/// The `shm` binary: `$SHM_BIN`, or built next to this test binary.
fn shm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHM_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("shm");
    if !bin.exists() {
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(p) => p.to_owned(),
        };
        let target = dir.parent().expect("target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "-p", "shm-cli", "--bin", "shm"])
            .args(["--profile", &profile, "--target-dir"])
            .arg(target)
            .status()
            .expect("cargo build -p shm-cli");
        assert!(status.success(), "building shm failed: {status}");
    }
    bin
}

fn shm_json(args: &[&str]) -> Value {
    let child = Command::new(shm_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start shm");
    let out = wait_output(child, LIMIT);
    assert!(out.status.success(), "shm {args:?} failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("shm printed JSON")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// Every key `shm ls --json` and `shm stat --json` print is a field of the
/// serde form of `SegmentInfo` (and `Stats` for the `queue` object), with
/// the same value.
#[test]
fn serde_info_types_match_cli_json() {
    let id = unique_posix("typed-json");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let q = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(32)).unwrap();
    let tx = q.sender().unwrap();
    tx.send(b"one").unwrap();

    let name = id.to_string();
    let stat = shm_json(&["stat", &name, "--json"]);
    let listing = shm_core::list::segments().expect("listing");
    let info = listing
        .entries
        .iter()
        .find(|e| e.matches(&id))
        .expect("our segment is listed");
    let ours = serde_json::to_value(info).unwrap();
    let stats = serde_json::to_value(q.stats()).unwrap();

    let cli_queue = stat.get("queue").expect("a queue object").clone();
    let mut cli_seg = stat.clone();
    cli_seg.as_object_mut().unwrap().remove("queue");
    assert!(
        keys(&cli_seg).is_subset(&keys(&ours)),
        "shm stat --json keys {:?} not all in SegmentInfo's {:?}",
        keys(&cli_seg),
        keys(&ours)
    );
    assert!(
        keys(&cli_queue).is_subset(&keys(&stats)),
        "queue keys {:?} not all in Stats' {:?}",
        keys(&cli_queue),
        keys(&stats)
    );
    for k in keys(&cli_queue) {
        assert_eq!(cli_queue[&k], stats[&k], "queue field {k}");
    }
    for k in [
        "backend", "name", "key", "id", "size", "uid", "mode", "kind",
    ] {
        assert_eq!(cli_seg[k], ours[k], "segment field {k}");
    }

    // `shm ls --json` prints the same keys for every entry.
    let ls = shm_json(&["ls", "--json"]);
    let entry = ls
        .as_array()
        .expect("an array")
        .iter()
        .find(|e| e["name"] == Value::String(name.clone()))
        .expect("our segment in shm ls");
    assert!(keys(entry).is_subset(&keys(&ours)));

    // And the serde form reads back.
    let back: shm_core::list::SegmentInfo = serde_json::from_value(ours).unwrap();
    assert_eq!(&back, info);
}
