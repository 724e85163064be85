//! `core-*` subcommands: segments and the header handshake.
//!
//! Each prints `key=value` lines on stdout for the test to check and exits 0
//! on success, 1 when what it checked was wrong, 2 on bad arguments or a
//! failed call, 3 when its own deadline passed.
//!
//! | subcommand | arguments | does |
//! |---|---|---|
//! | `core-write` | ID SIZE SEED | creates a raw segment, fills it with a pattern, leaves it |
//! | `core-read` | ID SIZE SEED | opens it, checks size and pattern |
//! | `core-race` | ID GATE | waits at the gate, then `Shared::open_or_create` |
//! | `core-init-hang` | ID | creates; its init prints `initializing` and sleeps 60 s |
//! | `core-slow-create` | ID GATE | creates; its init prints `initializing`, waits for the gate, sleeps 300 ms |
//! | `core-open` | ID TIMEOUT_MS | `Shared::open`; prints the value or the error, then `elapsed_ms=` |
//! | `core-denied` | ID | as `nobody` (if root), tries to open and remove |
//! | `core-read-only` | ID | as `nobody` (if root), inspects a `Cell` segment read-only and tries to write through the handle |
//! | `core-sigbus` | MODE ID | truncates a segment under its own mapping, after a sent `SIGBUS` or with the guard off |

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::shim::real::{AtomicU32, AtomicU64};
use shm_core::{
    AccessError, HeaderInfo, InitState, OpenError, Segment, SegmentId, Shared, SharedOptions,
    Snapshot,
};

/// What the handshake tests put in a segment: `[MAGIC_VALUE, creator pid]`.
pub type Cell = [AtomicU64; 2];

/// The value a creator's initializer writes into `Cell[0]`.
pub const MAGIC_VALUE: u64 = 0x5eed_c0de_0000_0001;

/// A start gate the test creates: `[arrived, go]`.
pub type Gate = [AtomicU32; 2];

/// How long a helper waits for the test to open its gate before giving up.
const GATE_DEADLINE: Duration = Duration::from_secs(30);

/// The byte at `i` of the pattern `core-write` writes and `core-read` checks.
pub fn pattern(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29);
    (x >> 56) as u8
}

/// The name of an `OpenError` variant, for the tests to match on.
pub fn variant(e: &OpenError) -> &'static str {
    match e {
        OpenError::InvalidName(_) => "InvalidName",
        OpenError::NotFound { .. } => "NotFound",
        OpenError::PermissionDenied { .. } => "PermissionDenied",
        OpenError::TooSmall { .. } => "TooSmall",
        OpenError::NotOurs { .. } => "NotOurs",
        OpenError::VersionMismatch { .. } => "VersionMismatch",
        OpenError::LayoutMismatch { .. } => "LayoutMismatch",
        OpenError::SizeMismatch { .. } => "SizeMismatch",
        OpenError::CreatorDied { .. } => "CreatorDied",
        OpenError::InitFailed { .. } => "InitFailed",
        OpenError::InitTimeout { .. } => "InitTimeout",
        OpenError::Corrupted { .. } => "Corrupted",
        OpenError::Create(_) => "Create",
        OpenError::Io { .. } => "Io",
        _ => "Other",
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(line: &str, code: i32) -> i32 {
    eprintln!("shm-test-helper: {line}");
    say(&format!("error={line}"));
    code
}

fn id_arg(args: &[String], i: usize) -> Result<SegmentId, String> {
    let text = args
        .get(i)
        .ok_or(format!("argument {i}: missing segment id"))?;
    text.parse().map_err(|e| format!("argument {i}: {e}"))
}

fn u64_arg(args: &[String], i: usize) -> Result<u64, String> {
    let text = args.get(i).ok_or(format!("argument {i}: missing number"))?;
    text.parse()
        .map_err(|e| format!("argument {i}: {text:?}: {e}"))
}

/// Opens the test's gate, says it arrived and waits until it is opened.
fn pass_gate(gate_id: &SegmentId) -> Result<(), i32> {
    let gate = Shared::<Gate>::open(gate_id, &SharedOptions::new())
        .map_err(|e| fail(&format!("gate {gate_id}: {e}"), 1))?;
    gate.get()[0].fetch_add(1, Ordering::AcqRel);
    let start = Instant::now();
    while gate.get()[1].load(Ordering::Acquire) == 0 {
        if start.elapsed() > GATE_DEADLINE {
            return Err(fail("the gate never opened", 3));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn init_cell(cell: &Cell) {
    cell[0].store(MAGIC_VALUE, Ordering::Relaxed);
    cell[1].store(u64::from(std::process::id()), Ordering::Relaxed);
}

fn report(cell: &Shared<Cell>, created: bool) {
    let creator = cell.header().map_or(0, |h| h.creator.pid);
    say(&format!(
        "created={created} value={:#x} pid={} creator={creator} me={}",
        cell.get()[0].load(Ordering::Acquire),
        cell.get()[1].load(Ordering::Acquire),
        std::process::id()
    ));
}

fn write(args: &[String]) -> Result<i32, String> {
    let (id, size, seed) = (id_arg(args, 0)?, u64_arg(args, 1)?, u64_arg(args, 2)?);
    let mut seg = Segment::create(&id, size, 0o600).map_err(|e| e.to_string())?;
    let data: Vec<u8> = (0..size).map(|i| pattern(seed, i)).collect();
    seg.write_at(0, &data).map_err(|e| e.to_string())?;
    // Leave it behind for the reader; the test removes it.
    seg.set_owner(false);
    say(&format!("written={size}"));
    Ok(0)
}

fn read(args: &[String]) -> Result<i32, String> {
    let (id, size, seed) = (id_arg(args, 0)?, u64_arg(args, 1)?, u64_arg(args, 2)?);
    let mut seg = Segment::open_read_only(&id).map_err(|e| e.to_string())?;
    if seg.len() as u64 != size {
        return Ok(fail(&format!("size {} instead of {size}", seg.len()), 1));
    }
    let mut data = vec![0u8; seg.len()];
    seg.read_at(0, &mut data).map_err(|e| e.to_string())?;
    if let Some(i) = (0..size).find(|&i| data[i as usize] != pattern(seed, i)) {
        return Ok(fail(
            &format!(
                "byte {i} is {:#04x}, expected {:#04x}",
                data[i as usize],
                pattern(seed, i)
            ),
            1,
        ));
    }
    say(&format!("verified={size}"));
    Ok(0)
}

fn race(args: &[String]) -> Result<i32, String> {
    let (id, gate) = (id_arg(args, 0)?, id_arg(args, 1)?);
    if let Err(code) = pass_gate(&gate) {
        return Ok(code);
    }
    let opts = SharedOptions::new().timeout(Duration::from_secs(20));
    match Shared::<Cell>::open_or_create(&id, &opts, |c| {
        init_cell(c);
        // Widen the window in which the others find it initializing.
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    }) {
        Ok((mut cell, created)) => {
            // Leave it for the processes still to come; the test removes it.
            cell.segment_mut().set_owner(false);
            report(&cell, created);
            Ok(0)
        }
        Err(e) => Ok(fail(&format!("{}: {e}", variant(&e)), 1)),
    }
}

fn init_hang(args: &[String]) -> Result<i32, String> {
    let id = id_arg(args, 0)?;
    let r = Shared::<Cell>::create(&id, &SharedOptions::new(), |c| {
        init_cell(c);
        say("initializing");
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    // Only reached if nobody killed us.
    Ok(fail(&format!("init finished: {:?}", r.map(|_| ())), 1))
}

fn slow_create(args: &[String]) -> Result<i32, String> {
    let (id, gate) = (id_arg(args, 0)?, id_arg(args, 1)?);
    let mut gate_code = 0;
    let r = Shared::<Cell>::create(&id, &SharedOptions::new(), |c| {
        say("initializing");
        if let Err(code) = pass_gate(&gate) {
            gate_code = code;
            return Err("the gate never opened".into());
        }
        std::thread::sleep(Duration::from_millis(300));
        init_cell(c);
        Ok(())
    });
    match r {
        Ok(mut cell) => {
            cell.segment_mut().set_owner(false);
            report(&cell, true);
            Ok(0)
        }
        Err(_) if gate_code != 0 => Ok(gate_code),
        Err(e) => Ok(fail(&e.to_string(), 1)),
    }
}

fn open(args: &[String]) -> Result<i32, String> {
    let (id, ms) = (id_arg(args, 0)?, u64_arg(args, 1)?);
    // First a raw look, so the test knows what the opener found.
    let seen = match Segment::open(&id) {
        Ok(seg) => match HeaderInfo::read(&seg) {
            Ok(h) if h.state == InitState::Initializing => "initializing".to_owned(),
            Ok(h) if h.state == InitState::Ready => "ready".to_owned(),
            Ok(_) => "failed".to_owned(),
            Err(e) => format!("unreadable ({e})"),
        },
        Err(e) => format!("unopenable ({})", variant(&e)),
    };
    say(&format!("state={seen}"));
    let opts = SharedOptions::new().timeout(Duration::from_millis(ms));
    let start = Instant::now();
    let r = Shared::<Cell>::open(&id, &opts);
    let elapsed = start.elapsed().as_millis();
    match r {
        Ok(cell) => {
            report(&cell, false);
            say(&format!("elapsed_ms={elapsed}"));
            Ok(0)
        }
        Err(e) => {
            say(&format!("error={}: {e}", variant(&e)));
            say(&format!("elapsed_ms={elapsed}"));
            Ok(1)
        }
    }
}

/// Drops to uid and gid 65534 (`nobody`) when run as root.
fn become_nobody() -> Result<(), String> {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    if Uid::effective().is_root() {
        setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        setgid(Gid::from_raw(65534)).map_err(|e| format!("setgid: {e}"))?;
        setuid(Uid::from_raw(65534)).map_err(|e| format!("setuid: {e}"))?;
    }
    say(&format!("uid={}", Uid::effective()));
    Ok(())
}

/// As `nobody` (when root), meets a `Cell` segment it may read but not
/// write: the read-write open is refused, the read-only one works (header,
/// a snapshot of the value, raw bytes), and every write through the
/// read-only handle is refused with a typed error rather than a `SIGSEGV`.
fn read_only(args: &[String]) -> Result<i32, String> {
    let id = id_arg(args, 0)?;
    become_nobody()?;
    let variant_of = |r: Result<(), AccessError>| match r {
        Ok(()) => "ok".to_owned(),
        Err(AccessError::ReadOnly { .. }) => "ReadOnly".to_owned(),
        Err(e) => format!("other ({e})"),
    };
    say(&format!(
        "open={}",
        Segment::open(&id).map_or_else(|e| variant(&e).to_owned(), |_| "ok".to_owned())
    ));
    let mut seg = match Segment::open_read_only(&id) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&format!("open_read_only={}: {e}", variant(&e)), 1)),
    };
    say(&format!("read_only={}", seg.is_read_only()));
    let header = HeaderInfo::read(&seg).map_err(|e| format!("header: {e}"))?;
    say(&format!("kind={} state={:?}", header.kind, header.state));
    let mut bytes = [0u8; 8];
    let off = header.data_offset as usize;
    seg.read_at(off, &mut bytes).map_err(|e| e.to_string())?;
    say(&format!("raw={:#x}", u64::from_ne_bytes(bytes)));
    let write = seg.write_at(off, &[0xff; 8]);
    if let Err(e) = &write {
        say(&format!("write-message: {e}"));
    }
    say(&format!("write={}", variant_of(write)));
    say(&format!(
        "view={}",
        variant_of(view_through_read_only(&seg, off))
    ));
    say(&format!("ptr={}", variant_of(seg.ptr_at(off, 8).map(drop))));
    drop(seg);
    match Snapshot::<Cell>::open(&id) {
        Ok(s) => say(&format!(
            "snapshot={:#x}",
            s.get()[0].load(Ordering::Relaxed)
        )),
        Err(e) => say(&format!("snapshot={}: {e}", variant(&e))),
    }
    Ok(0)
}

/// What `Segment::view` says on a read-only handle (it must refuse).
// This module's one `unsafe` call (`Segment::view` is an `unsafe fn`).
#[allow(unsafe_code)]
fn view_through_read_only(seg: &Segment, off: usize) -> Result<(), AccessError> {
    // SAFETY: no reference of this process covers the segment: `seg` is a
    // read-only handle, which gives none out (and this `view` is refused
    // before it forms one; should it not be, the reference is dropped at
    // once, and an atomic load races nothing).
    unsafe { seg.view::<AtomicU64>(off) }.map(drop)
}

/// Drops to uid and gid 65534 (`nobody`) when run as root, then tries to
/// open and remove a segment it should not be allowed to touch.
fn denied(args: &[String]) -> Result<i32, String> {
    let id = id_arg(args, 0)?;
    become_nobody()?;
    let show = |what: &str, r: Result<(), OpenError>| match r {
        Ok(()) => say(&format!("{what}=ok")),
        Err(e) => {
            say(&format!("{what}={}", variant(&e)));
            say(&format!("{what}-message: {e}"));
        }
    };
    show("open", Segment::open(&id).map(drop));
    show(
        "shared",
        Shared::<Cell>::open(&id, &SharedOptions::new()).map(drop),
    );
    show("remove", shm_core::remove(&id));
    Ok(0)
}

/// `core-sigbus MODE NAME`: maps a new 64 KiB POSIX segment `NAME`,
/// truncates it to one page and touches a page past the end. `kill` first
/// sends itself `SIGBUS` with `kill(2)`, as another process would; `off`
/// first calls `disable_sigbus_guard`; `plain` does neither (run it with
/// `SHM_SIGBUS_GUARD=0`). Prints what it saw; the test judges by the exit
/// status (a death by `SIGBUS` is the expected end without the guard).
fn sigbus(args: &[String]) -> Result<i32, String> {
    use nix::sys::signal::{Signal, kill};
    let mode = args.first().ok_or("mode")?.clone();
    let id = id_arg(args, 1)?;
    if mode == "off" {
        say(&format!("disabled={}", shm_core::disable_sigbus_guard()));
    }
    let mut seg = Segment::create(&id, 64 * 1024, 0o600).map_err(|e| e.to_string())?;
    seg.write_at(60_000, b"before").map_err(|e| e.to_string())?;
    say(&format!("installed={}", shm_core::sigbus_guard_installed()));
    if mode == "kill" {
        kill(nix::unistd::getpid(), Signal::SIGBUS).map_err(|e| format!("kill: {e}"))?;
        say("survived the sent SIGBUS");
    }
    let SegmentId::Posix(name) = &id else {
        return Err("a POSIX name".into());
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.file_name()))
        .and_then(|f| f.set_len(4096))
        .map_err(|e| format!("truncate: {e}"))?;
    let mut back = [0xffu8; 6];
    seg.read_at(60_000, &mut back).map_err(|e| e.to_string())?;
    say(&format!(
        "touched truncated={} bytes={back:?}",
        seg.is_truncated()
    ));
    Ok(0)
}

/// Runs a `core-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let r = match cmd {
        "core-write" => write(args),
        "core-read" => read(args),
        "core-race" => race(args),
        "core-init-hang" => init_hang(args),
        "core-slow-create" => slow_create(args),
        "core-open" => open(args),
        "core-denied" => denied(args),
        "core-sigbus" => sigbus(args),
        "core-read-only" => read_only(args),
        _ => return None,
    };
    Some(r.unwrap_or_else(|e| fail(&format!("{cmd}: {e}"), 2)))
}
