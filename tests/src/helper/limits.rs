//! `limits-*` subcommands: other users, permission modes and kernel limits.
//!
//! Each prints `key=value` lines on stdout, one per line (a `message=` line
//! holds an error's `Display` and runs to the end of the line). Exit codes:
//! 0 when the call succeeded, 1 when it returned an error (then `error=`
//! names the variant and `message=` gives the text a user would see), 2 on
//! bad arguments or a failed step of the helper itself. A panic would exit
//! 101 and a signal would show as such: the tests take both for failures.
//!
//! | subcommand | arguments | does |
//! |---|---|---|
//! | `limits-as` | UID GID SUBCOMMAND ARGS... | drops to UID/GID (no supplementary groups), then runs SUBCOMMAND |
//! | `limits-create` | ID SIZE MODE \[keep\] | `Segment::create`; prints `mode=` and `size=` from `stat`; with `keep` leaves it behind |
//! | `limits-create-two` | ID1 ID2 SIZE | creates ID1 and, holding it, ID2; prints `first=ok` or the first error |
//! | `limits-open` | ID | `Segment::open`, writes `b"u"` at offset 0 and reads it back |
//! | `limits-create-queue` | ID CAPACITY SLOT MODE \[keep\] | `Queue::create` with `QueueOptions::mode` |
//! | `limits-open-queue` | ID | `Queue::open`, registers a sender and sends `b"from uid N"` |
//!
//! Setting the uid happens inside the helper, after it started: the helper
//! binary need not be reachable by the other user (its target directory may
//! be 0700), and no `unsafe` is needed (nix wraps `setresuid`).

use std::io::Write;

use nix::unistd::{Gid, Uid, getegid, geteuid, getgid, getgroups, getuid};
use shm_core::{CreateError, Segment, SegmentId};
use shm_queue::{Lifetime, Queue, QueueOpenError, QueueOptions};

use super::core::variant as open_variant;

/// The name of a `CreateError` variant, for the tests to match on.
pub fn create_variant(e: &CreateError) -> &'static str {
    match e {
        CreateError::InvalidName(_) => "InvalidName",
        CreateError::InvalidSize { .. } => "InvalidSize",
        CreateError::AlreadyExists { .. } => "AlreadyExists",
        CreateError::PermissionDenied { .. } => "PermissionDenied",
        CreateError::NoSpace { .. } => "NoSpace",
        CreateError::Limit { .. } => "Limit",
        CreateError::Init { .. } => "Init",
        CreateError::Io { .. } => "Io",
        _ => "Other",
    }
}

/// The name of a queue `OpenError` variant, `Outer/Inner` when it wraps a
/// shm-core error (`Open/PermissionDenied`, `Create/NoSpace`).
pub fn queue_variant(e: &QueueOpenError) -> String {
    match e {
        QueueOpenError::Create(c) => format!("Create/{}", create_variant(c)),
        QueueOpenError::Open(o) => format!("Open/{}", open_variant(o)),
        QueueOpenError::InvalidConfig { .. } => "InvalidConfig".into(),
        QueueOpenError::WrongMessageType { .. } => "WrongMessageType".into(),
        QueueOpenError::Corrupted(_) => "Corrupted".into(),
        _ => "Other".into(),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reports an error the library returned: `error=VARIANT`, `message=TEXT`.
fn returned(variant: &str, message: &dyn std::fmt::Display) -> i32 {
    say(&format!("error={variant}"));
    say(&format!("message={message}"));
    1
}

fn id_arg(args: &[String], i: usize) -> Result<SegmentId, String> {
    let text = args
        .get(i)
        .ok_or(format!("argument {i}: missing segment id"))?;
    text.parse().map_err(|e| format!("argument {i}: {e}"))
}

fn num_arg(args: &[String], i: usize) -> Result<u64, String> {
    let text = args.get(i).ok_or(format!("argument {i}: missing number"))?;
    text.parse()
        .map_err(|e| format!("argument {i}: {text:?}: {e}"))
}

/// An octal mode such as `0640`.
fn mode_arg(args: &[String], i: usize) -> Result<u32, String> {
    let text = args.get(i).ok_or(format!("argument {i}: missing mode"))?;
    u32::from_str_radix(text, 8).map_err(|e| format!("argument {i}: mode {text:?}: {e}"))
}

fn keep_arg(args: &[String], i: usize) -> Result<bool, String> {
    match args.get(i).map(String::as_str) {
        None => Ok(false),
        Some("keep") => Ok(true),
        Some(other) => Err(format!("argument {i}: expected `keep`, got {other:?}")),
    }
}

/// Drops every privilege to `uid`/`gid`, then runs the rest of the command
/// line as another subcommand.
fn run_as(args: &[String]) -> Result<i32, String> {
    let uid = Uid::from_raw(num_arg(args, 0)? as u32);
    let gid = Gid::from_raw(num_arg(args, 1)? as u32);
    let Some((cmd, rest)) = args[2..].split_first() else {
        return Err("limits-as: missing subcommand".into());
    };
    // Groups first, then the gid, then the uid: once the uid is dropped the
    // process may no longer change the others.
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups([]): {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid({gid}): {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid({uid}): {e}"))?;
    // Make sure it took, saved ids included: a test that thinks it runs as
    // another user but does not would prove nothing.
    if (getuid(), geteuid(), getgid(), getegid()) != (uid, uid, gid, gid) {
        return Err(format!(
            "still uid {} euid {} gid {} egid {} after dropping to {uid}/{gid}",
            getuid(),
            geteuid(),
            getgid(),
            getegid()
        ));
    }
    if nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err("could become root again after dropping privileges".into());
    }
    let groups = getgroups().map_err(|e| format!("getgroups: {e}"))?;
    if !groups.is_empty() {
        return Err(format!("supplementary groups left: {groups:?}"));
    }
    say(&format!("uid={uid} gid={gid}"));
    match super::dispatch(cmd, rest) {
        Some(code) => Ok(code),
        None => Err(format!("limits-as: unknown subcommand {cmd:?}")),
    }
}

fn describe(seg: &Segment) -> Result<(), String> {
    let st = seg.stat().map_err(|e| format!("stat: {e}"))?;
    say(&format!("mode={:04o}", st.mode));
    say(&format!("uid={} gid={}", st.uid, st.gid));
    say(&format!("size={}", st.size));
    Ok(())
}

/// Touches every page: a segment whose pages were not really reserved would
/// die here with `SIGBUS` instead of having failed at create.
fn touch_all(seg: &mut Segment) -> Result<(), String> {
    let page = vec![0xa5u8; 4096];
    let mut off = 0;
    while off < seg.len() {
        let n = page.len().min(seg.len() - off);
        seg.write_at(off, &page[..n])
            .map_err(|e| format!("write_at({off}): {e}"))?;
        off += n;
    }
    say(&format!("touched={}", seg.len()));
    Ok(())
}

fn create(args: &[String]) -> Result<i32, String> {
    let (id, size, mode, keep) = (
        id_arg(args, 0)?,
        num_arg(args, 1)?,
        mode_arg(args, 2)?,
        keep_arg(args, 3)?,
    );
    match Segment::create(&id, size, mode) {
        Ok(mut seg) => {
            describe(&seg)?;
            touch_all(&mut seg)?;
            // Left behind for another process; the test removes it.
            seg.set_owner(!keep);
            say("created=ok");
            Ok(0)
        }
        Err(e) => Ok(returned(create_variant(&e), &e)),
    }
}

fn create_two(args: &[String]) -> Result<i32, String> {
    let (first, second, size) = (id_arg(args, 0)?, id_arg(args, 1)?, num_arg(args, 2)?);
    // Both are owned: dropping them at the end removes them.
    let held = match Segment::create(&first, size, 0o600) {
        Ok(seg) => seg,
        Err(e) => {
            say("first=failed");
            return Ok(returned(create_variant(&e), &e));
        }
    };
    say("first=ok");
    let r = match Segment::create(&second, size, 0o600) {
        Ok(_second) => {
            say("second=ok");
            0
        }
        Err(e) => returned(create_variant(&e), &e),
    };
    drop(held);
    Ok(r)
}

fn open(args: &[String]) -> Result<i32, String> {
    let id = id_arg(args, 0)?;
    match Segment::open(&id) {
        Ok(mut seg) => {
            say(&format!("opened size={}", seg.len()));
            // Opened read-write means writable: prove it.
            seg.write_at(0, b"u")
                .map_err(|e| format!("write_at(0): {e}"))?;
            let mut back = [0u8; 1];
            seg.read_at(0, &mut back)
                .map_err(|e| format!("read_at(0): {e}"))?;
            say(&format!("wrote={}", back[0] as char));
            Ok(0)
        }
        Err(e) => Ok(returned(open_variant(&e), &e)),
    }
}

fn create_queue(args: &[String]) -> Result<i32, String> {
    let (id, capacity, slot, mode, keep) = (
        id_arg(args, 0)?,
        num_arg(args, 1)?,
        num_arg(args, 2)?,
        mode_arg(args, 3)?,
        keep_arg(args, 4)?,
    );
    let opts = QueueOptions::new()
        .capacity(u32::try_from(capacity).map_err(|e| format!("capacity: {e}"))?)
        .slot_size(u32::try_from(slot).map_err(|e| format!("slot size: {e}"))?)
        .mode(mode)
        .lifetime(if keep {
            Lifetime::Persistent
        } else {
            Lifetime::Creator
        });
    match Queue::create(&id, &opts) {
        Ok(q) => {
            describe(q.segment())?;
            say("created=ok");
            Ok(0)
        }
        Err(e) => Ok(returned(&queue_variant(&e), &e)),
    }
}

fn open_queue(args: &[String]) -> Result<i32, String> {
    let id = id_arg(args, 0)?;
    match Queue::open(&id) {
        Ok(q) => {
            say(&format!("opened capacity={}", q.capacity()));
            let tx = q.sender().map_err(|e| format!("sender: {e}"))?;
            let msg = format!("from uid {}", getuid());
            tx.try_send(msg.as_bytes())
                .map_err(|e| format!("try_send: {e}"))?;
            say("sent=1");
            Ok(0)
        }
        Err(e) => Ok(returned(&queue_variant(&e), &e)),
    }
}

/// Runs a `limits-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let r = match cmd {
        "limits-as" => run_as(args),
        "limits-create" => create(args),
        "limits-create-two" => create_two(args),
        "limits-open" => open(args),
        "limits-create-queue" => create_queue(args),
        "limits-open-queue" => open_queue(args),
        _ => return None,
    };
    Some(r.unwrap_or_else(|e| {
        eprintln!("shm-test-helper {cmd}: {e}");
        say(&format!("helper-error={e}"));
        2
    }))
}
