//! `shm gc`: remove what crashed programs left behind.
//!
//! A segment is stale when no process holds it and whoever created it is
//! gone:
//!
//! - POSIX, made by this library: no process maps it and the creator
//!   recorded in its header (PID and start time, so a recycled PID does not
//!   count) is not running.
//! - POSIX, foreign (no header of this library, or one that could not be
//!   read): nothing tells who made it, so one that no process maps is only
//!   listed as "foreign, unattached", and removed with `--all`.
//! - System V: the kernel's `nattch` is 0 and the creator PID (`cpid`) is
//!   not running.
//! - A queue whose name goes with its last attached handle (the default
//!   lifetime), of either backend: unmapped, and no live process left in
//!   its table of attached handles, even while its creator runs elsewhere
//!   (its peers died, so none of them removed the name).
//!
//! Before a POSIX candidate is removed, every `/proc/PID/fd` is read too:
//! a process may hold a segment open by a descriptor without mapping it
//! (between `shm_open` and `mmap`, or to map it again later). Such a
//! candidate is kept, and the output names the process and descriptor.
//! Each candidate's line says why it is or is not removed; a segment named
//! on the command line that is in use gets an `in use:` line saying why.
//!
//! The maps of some processes may not be readable (other users' processes
//! when not root; in some sandboxes, a supervisor more privileged than
//! root). `gc` names them in a warning and judges by what it can see:
//! removing a POSIX segment that an unseen process still maps removes only
//! its name, and that process's mapping stays valid.

use serde_json::Value;
use shm_core::list::SegmentInfo;
use shm_core::{Backend, ProcessId, SegmentId};

use crate::render::{pid_list, segment_json};
use crate::segment_cmds::{listing, remove_one};
use crate::{CliError, CliResult, emit, error_line, warn};

/// A segment `gc` would remove, or list.
struct Candidate {
    entry: SegmentInfo,
    reason: String,
    foreign: bool,
    /// Whether a process holds it open by a descriptor (so it is kept).
    held: bool,
    /// Whether this run removes it (or would, with `--dry-run`).
    remove: bool,
}

fn pid_alive(pid: i32) -> bool {
    // Start time 0: any process with this PID counts as alive, the
    // conservative reading.
    u32::try_from(pid).is_ok_and(|pid| ProcessId { pid, start: 0 }.is_alive())
}

/// Why `e` is stale, and whether it is foreign; `Err` says why it is in
/// use.
fn staleness(e: &SegmentInfo) -> Result<(String, bool), String> {
    match e.backend {
        Backend::SysV => {
            let Some(cpid) = e.cpid else {
                return Err("its creator is unknown".into());
            };
            if e.nattch != 0 {
                return Err(format!(
                    "{} attach(es) (pids {})",
                    e.nattch,
                    pid_list(&e.pids)
                ));
            }
            if pid_alive(cpid) {
                return match orphaned_queue(e) {
                    Some(why) => Ok((why, false)),
                    None => Err(format!("its creator pid {cpid} is running")),
                };
            }
            Ok((
                format!("nattch is 0 and its creator pid {cpid} is gone"),
                false,
            ))
        }
        Backend::Posix => {
            if !e.pids.is_empty() {
                return Err(format!("mapped by pid {}", pid_list(&e.pids)));
            }
            match &e.header {
                Some(h) if h.creator.is_alive() => match orphaned_queue(e) {
                    Some(why) => Ok((why, false)),
                    None => Err(format!("its creator pid {} is running", h.creator.pid)),
                },
                Some(h) => Ok((
                    format!(
                        "no process maps it and its creator pid {} is gone",
                        h.creator.pid
                    ),
                    false,
                )),
                None => Ok((
                    if e.header_error.is_some() {
                        "no process maps it; its header could not be read".to_owned()
                    } else {
                        "no process maps it; it has no header of this library".to_owned()
                    },
                    true,
                )),
            }
        }
        Backend::Memfd => Err("a memfd has no name to remove".into()),
    }
}

/// Why `e`, unmapped but with a live creator, is stale anyway: it is a
/// queue whose name goes with its last attached handle
/// (`Lifetime::LastPeer`) and no live process is attached to it any more
/// (they died, so none removed the name; the creator left it long ago).
/// `None` when it is not such a queue, or cannot be read.
fn orphaned_queue(e: &SegmentInfo) -> Option<String> {
    if e.kind.as_deref() != Some(shm_queue::KIND) {
        return None;
    }
    let stats = shm_queue::Queue::inspect(&e.segment_id()?).ok()?;
    (stats.lifetime == shm_queue::Lifetime::LastPeer && stats.attached == 0).then(|| {
        "a queue whose name goes with its last attached handle, and no live process is \
         attached to it any more"
            .to_owned()
    })
}

/// The processes that hold POSIX segment `e` open by a descriptor without
/// mapping it, as `pid 12 (fd 3)`; `None` when there are none.
fn fd_holders_text(e: &SegmentInfo, warned: &mut bool) -> Option<String> {
    let name = e.name.as_deref()?;
    let holders = match shm_core::list::fd_holders(name) {
        Ok(h) => h,
        Err(err) => {
            warn(&format!("cannot read /proc/PID/fd: {err}"));
            return None;
        }
    };
    if !holders.complete() && !*warned {
        *warned = true;
        warn(&format!(
            "could not read /proc/PID/fd of {} process(es): a descriptor they hold on a \
             segment is not seen (other users' processes need root)",
            holders.denied.len()
        ));
    }
    if holders.holders.is_empty() {
        return None;
    }
    Some(
        holders
            .holders
            .iter()
            .map(|(pid, fds)| {
                let fds: Vec<String> = fds.iter().map(u32::to_string).collect();
                format!("pid {pid} (fd {})", fds.join(","))
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// `shm gc [--dry-run] [--all] [--json] [SEG...]`.
pub fn gc(dry_run: bool, all: bool, json: bool, only: &[SegmentId]) -> CliResult {
    let listing = listing()?;
    for w in &listing.warnings {
        warn(w);
    }
    if !listing.maps_complete {
        warn(
            "gc judges POSIX segments by the processes it could inspect; \
             one mapped only by a process above keeps working there, but loses its name",
        );
    }
    for id in only {
        if listing.find(id).is_none() {
            warn(&format!("no segment {id}"));
        }
    }
    let mut text = String::new();
    let mut fd_warned = false;
    let mut candidates: Vec<Candidate> = Vec::new();
    for e in listing
        .entries
        .iter()
        .filter(|e| only.is_empty() || only.iter().any(|id| e.matches(id)))
    {
        match staleness(e) {
            Ok((reason, foreign)) => {
                // Not mapped, but a process may hold it open to map it
                // (again): then it stays.
                let open_by = match e.backend {
                    Backend::Posix => fd_holders_text(e, &mut fd_warned),
                    _ => None,
                };
                let (reason, held) = match open_by {
                    Some(who) => (format!("{reason}, but {who} holds it open"), true),
                    None => (reason, false),
                };
                candidates.push(Candidate {
                    entry: e.clone(),
                    reason,
                    foreign,
                    held,
                    remove: !held && (!foreign || all),
                });
            }
            // Named on the command line: say why it stays.
            Err(why) if !only.is_empty() => {
                text.push_str(&format!("in use: {}: {why} (kept)\n", e.display_name()));
            }
            Err(_) => {}
        }
    }

    let mut removed = vec![false; candidates.len()];
    let mut failed = false;
    for (c, done) in candidates.iter().zip(removed.iter_mut()) {
        let name = c.entry.display_name();
        let foreign = if c.foreign {
            "foreign, unattached: "
        } else {
            ""
        };
        if c.held {
            text.push_str(&format!("kept {foreign}{name}: {}\n", c.reason));
            continue;
        }
        if !c.remove {
            text.push_str(&format!(
                "foreign, unattached: {name}: {} (kept; --all removes it)\n",
                c.reason
            ));
            continue;
        }
        if dry_run {
            text.push_str(&format!("would remove {foreign}{name}: {}\n", c.reason));
            continue;
        }
        let Some(id) = c.entry.segment_id() else {
            error_line(&format!(
                "cannot remove {name}: its name is not a valid segment name"
            ));
            failed = true;
            continue;
        };
        match remove_one(&id) {
            Ok(()) => {
                *done = true;
                text.push_str(&format!("removed {foreign}{name}: {}\n", c.reason));
            }
            Err(msg) => {
                error_line(&msg);
                failed = true;
            }
        }
    }
    if json {
        let arr: Vec<Value> = candidates
            .iter()
            .zip(&removed)
            .map(|(c, &done)| {
                let mut v = segment_json(&c.entry);
                if let Value::Object(map) = &mut v {
                    map.insert("reason".into(), c.reason.clone().into());
                    map.insert("foreign".into(), c.foreign.into());
                    map.insert(
                        "action".into(),
                        if c.remove { "remove" } else { "keep" }.into(),
                    );
                    map.insert("removed".into(), done.into());
                    map.insert("held_open".into(), c.held.into());
                }
                v
            })
            .collect();
        emit(&format!("{}\n", Value::Array(arr)))?;
    } else {
        if candidates.is_empty() {
            text.push_str("nothing to remove\n");
        }
        emit(&text)?;
    }
    if failed {
        Err(CliError::reported())
    } else {
        Ok(())
    }
}
