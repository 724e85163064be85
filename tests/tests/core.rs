//! Multi-process tests of shm-core through the `shm-test-helper` binary:
//! segments written by one process and read by another, many processes
//! racing `open_or_create`, a creator killed during init, an opener waiting
//! for a slow creator. Every test body runs for POSIX and System V.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::{Segment, SegmentId, Shared, SharedOptions};
use shm_tests::helper::core::{Gate, MAGIC_VALUE};
use shm_tests::{Cleanup, read_line, spawn, spawn_env, unique_posix};

/// Watchdog for one helper run.
const LIMIT: Duration = Duration::from_secs(60);

/// `key=value` out of a helper's line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A start gate `[arrived, go]` the helpers wait at.
fn gate() -> (SegmentId, Shared<Gate>) {
    let id = unique_posix("gate");
    let gate =
        Shared::<Gate>::create(&id, &SharedOptions::new(), |_| Ok(())).expect("create the gate");
    (id, gate)
}

/// Waits (with a watchdog) until `n` helpers arrived at the gate.
fn wait_arrivals(gate: &Shared<Gate>, n: u32) {
    let start = Instant::now();
    while gate.get()[0].load(Ordering::Acquire) < n {
        assert!(
            start.elapsed() < LIMIT,
            "watchdog: only {} of {n} helpers reached the gate",
            gate.get()[0].load(Ordering::Acquire)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn exists(id: &SegmentId) -> bool {
    match Segment::open(id) {
        Ok(_) => true,
        Err(shm_core::OpenError::NotFound { .. }) => false,
        Err(e) => panic!("probing {id}: {e}"),
    }
}

fn written_in_one_process_read_in_another(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let size = (1 << 20) + 123;
    let size_arg = size.to_string();
    let out = spawn(&["core-write", &name, &size_arg, "7"]).success(LIMIT);
    assert_eq!(out.trim(), format!("written={size}"));
    // The writer is gone; the segment and its bytes stay.
    let out = spawn(&["core-read", &name, &size_arg, "7"]).success(LIMIT);
    assert_eq!(out.trim(), format!("verified={size}"));
    // The reader really checks: another pattern or size is refused.
    let (status, out) = spawn(&["core-read", &name, &size_arg, "8"]).wait(LIMIT);
    assert_eq!(status.code(), Some(1), "wrong pattern accepted: {out}");
    assert!(out.contains("error=byte"), "{out}");
    let (status, out) = spawn(&["core-read", &name, "4096", "7"]).wait(LIMIT);
    assert_eq!(status.code(), Some(1), "wrong size accepted: {out}");
    // This process sees the same bytes.
    let mut seg = Segment::open_read_only(&id).expect("open in the test");
    let mut head = [0u8; 4];
    seg.read_at(0, &mut head).unwrap();
    let expected: Vec<u8> = (0..4)
        .map(|i| shm_tests::helper::core::pattern(7, i))
        .collect();
    assert_eq!(head.as_slice(), expected);
    drop(seg);
    shm_core::remove(&id).expect("remove what the writer left");
    let (status, out) = spawn(&["core-read", &name, &size_arg, "7"]).wait(LIMIT);
    assert!(!status.success(), "read a removed segment: {out}");
    assert!(out.contains("no segment"), "{out}");
}

fn racing_open_or_create(id: SegmentId) {
    const N: usize = 8;
    let (gate_id, gate) = gate();
    let _c = Cleanup::new(&[id.clone(), gate_id.clone()]);
    let (name, gate_name) = (id.to_string(), gate_id.to_string());
    let procs: Vec<_> = (0..N)
        .map(|_| spawn(&["core-race", &name, &gate_name]))
        .collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
    wait_arrivals(&gate, N as u32);
    gate.get()[1].store(1, Ordering::Release);
    let lines: Vec<String> = procs
        .into_iter()
        .map(|p| p.success(LIMIT).trim().to_owned())
        .collect();
    let creators: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "created") == "true")
        .collect();
    assert_eq!(
        creators.len(),
        1,
        "exactly one creator:\n{}",
        lines.join("\n")
    );
    let creator_pid = field(creators[0], "me");
    assert!(
        pids.iter().any(|p| p.to_string() == creator_pid),
        "creator {creator_pid} is one of {pids:?}"
    );
    for line in &lines {
        assert_eq!(field(line, "value"), format!("{MAGIC_VALUE:#x}"), "{line}");
        assert_eq!(field(line, "pid"), creator_pid, "init content: {line}");
        assert_eq!(
            field(line, "creator"),
            creator_pid,
            "header creator: {line}"
        );
    }
    assert!(exists(&id), "the helpers leave it for the test to remove");
    shm_core::remove(&id).expect("remove");
}

fn creator_killed_during_init(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let mut creator = spawn(&["core-init-hang", &name]);
    assert_eq!(read_line(&mut creator, LIMIT), "initializing");
    creator.kill();
    // The opener may find the creator not yet dead; it must keep looking
    // and report the death, not wait out its 10 s deadline.
    let (status, out) = spawn(&["core-open", &name, "10000"]).wait(LIMIT);
    assert_eq!(
        status.code(),
        Some(1),
        "opened a segment whose creator died: {out}"
    );
    assert!(
        out.contains("error=CreatorDied"),
        "expected CreatorDied, not a timeout:\n{out}"
    );
    assert!(out.contains(&name), "the message names the segment: {out}");
    let (status, _) = creator.wait(LIMIT);
    assert!(!status.success(), "the creator was killed");
    // A killed creator cannot clean up: the segment is still there.
    assert!(exists(&id));
    shm_core::remove(&id).expect("remove the dead creator's segment");
}

/// A creator killed in the middle of writing the header (kill point
/// `header:writing`: the magic and its PID written, the rest not) is
/// reported as `CreatorDied` naming it, like a death at any other stage of
/// init; it used to be `NotOurs` on POSIX (the checksum does not match).
fn creator_killed_while_writing_the_header(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let creator = spawn_env(
        &["core-init-hang", &name],
        &[("SHM_KILL_POINT", "header:writing")],
    );
    let pid = creator.pid();
    let (status, out) = creator.wait(LIMIT);
    assert!(
        !status.success() && !out.contains("initializing"),
        "the creator did not die at the kill point: {status} {out}"
    );
    assert!(exists(&id), "the dead creator left its segment");
    let (status, out) = spawn(&["core-open", &name, "10000"]).wait(LIMIT);
    assert!(
        out.contains("state=unreadable"),
        "a half-written header: {out}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "opened a half-written segment: {out}"
    );
    assert!(
        out.contains("error=CreatorDied"),
        "expected CreatorDied, not NotOurs or a timeout:\n{out}"
    );
    assert!(
        out.contains(&format!("(pid {pid})")),
        "names the creator: {out}"
    );
    shm_core::remove(&id).expect("remove the dead creator's segment");
}

fn opener_waits_for_a_slow_creator(id: SegmentId) {
    let (gate_id, gate) = gate();
    let _c = Cleanup::new(&[id.clone(), gate_id.clone()]);
    let (name, gate_name) = (id.to_string(), gate_id.to_string());
    let mut creator = spawn(&["core-slow-create", &name, &gate_name]);
    assert_eq!(read_line(&mut creator, LIMIT), "initializing");
    let mut opener = spawn(&["core-open", &name, "10000"]);
    // The creator is held at the gate, so the opener finds it initializing.
    assert_eq!(read_line(&mut opener, LIMIT), "state=initializing");
    wait_arrivals(&gate, 1);
    gate.get()[1].store(1, Ordering::Release);
    let opened = opener.success(LIMIT);
    let created = creator.success(LIMIT);
    let creator_pid = field(&created, "me").to_owned();
    assert_eq!(field(&created, "created"), "true");
    assert_eq!(field(&opened, "created"), "false");
    assert_eq!(
        field(&opened, "value"),
        format!("{MAGIC_VALUE:#x}"),
        "{opened}"
    );
    assert_eq!(field(&opened, "pid"), creator_pid, "{opened}");
    assert_eq!(field(&opened, "creator"), creator_pid, "{opened}");
    shm_core::remove(&id).expect("remove");
}

fn another_user_is_denied(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    // As root the helper drops to `nobody` and meets a 0600 segment; as
    // anyone else it stays itself and meets a 0000 one.
    let root = nix::unistd::Uid::effective().is_root();
    let mode = if root { 0o600 } else { 0o000 };
    let seg = Segment::create(&id, 4096, mode).expect("create");
    let out = spawn(&["core-denied", &id.to_string()]).success(LIMIT);
    let line = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_owned()
    };
    if root {
        assert_eq!(line("uid="), "65534", "{out}");
    }
    assert_eq!(line("open="), "PermissionDenied", "{out}");
    assert_eq!(line("shared="), "PermissionDenied", "{out}");
    let message = line("open-message: ");
    assert!(message.contains(&id.to_string()), "{message}");
    let me = nix::unistd::Uid::effective();
    assert!(
        message.contains(&format!("mode {mode:04o}, owner uid {me}")),
        "the message says who owns it: {message}"
    );
    if root {
        assert_eq!(line("remove="), "PermissionDenied", "{out}");
        assert!(line("remove-message: ").contains("owner uid 0"), "{out}");
        assert!(exists(&id), "a denied remove removed nothing");
    } else {
        // Its owner may remove it whatever the mode.
        assert_eq!(line("remove="), "ok", "{out}");
        assert!(!exists(&id));
    }
    drop(seg);
}

/// A user who may read a segment but not write it (mode 0644, another uid)
/// inspects it through a read-only handle, and every write through that
/// handle is refused with a typed error, not a `SIGSEGV`; the segment is
/// unchanged. Before `open_read_only`, such a user could not open it at all.
fn read_only_observer(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let root = nix::unistd::Uid::effective().is_root();
    let cell = Shared::<shm_tests::helper::core::Cell>::create(
        &id,
        &SharedOptions::new().mode(0o644),
        |c| {
            c[0].store(MAGIC_VALUE, Ordering::Relaxed);
            Ok(())
        },
    )
    .expect("create a 0644 segment");
    let (status, out) = spawn(&["core-read-only", &id.to_string()]).wait(LIMIT);
    assert_eq!(
        status.code(),
        Some(0),
        "no signal, no failure ({status}):\n{out}"
    );
    let has = |line: &str| {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    };
    if root {
        has("uid=65534");
        has("open=PermissionDenied");
    }
    has("read_only=true");
    has("kind=shared state=Ready");
    has(&format!("raw={MAGIC_VALUE:#x}"));
    has("write=ReadOnly");
    has("view=ReadOnly");
    has("ptr=ReadOnly");
    has(&format!("snapshot={MAGIC_VALUE:#x}"));
    assert!(out.contains("opened read-only"), "{out}");
    assert_eq!(
        cell.get()[0].load(Ordering::Relaxed),
        MAGIC_VALUE,
        "nothing was written"
    );
}

shm_tests::for_every_backend! {
    written_in_one_process_is_read_in_another => written_in_one_process_read_in_another;
    eight_processes_race_open_or_create => racing_open_or_create;
    a_creator_killed_during_init_is_reported => creator_killed_during_init;
    a_creator_killed_while_writing_the_header_is_reported =>
        creator_killed_while_writing_the_header;
    an_opener_waits_for_a_slow_live_creator => opener_waits_for_a_slow_creator;
    another_user_is_denied_with_the_owner_named => another_user_is_denied;
    a_reader_without_write_permission_inspects_read_only => read_only_observer;
}
