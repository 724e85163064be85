//! `shm ls`, `shm stat`, `shm create` and `shm rm`.

use serde_json::Value;
use shm_core::list::{Listing, SegmentInfo};
use shm_core::{Backend, HeaderInfo, OpenError, Owner, ProcessId, Segment, SegmentId};

use crate::render::{Users, human_size, opt, perm_string, pid_list, segment_json, table, time};
use crate::{CliError, CliResult, emit, warn};

/// The listing, with its warnings printed on stderr.
pub fn listing() -> Result<Listing, CliError> {
    let listing = shm_core::list::segments()
        .map_err(|e| CliError::new(format!("cannot list segments: reading /proc failed: {e}")))?;
    Ok(listing)
}

/// One row of the `ls` table.
fn row(e: &SegmentInfo, users: &Users) -> Vec<String> {
    vec![
        e.backend.to_string(),
        e.display_name(),
        opt(e.id),
        human_size(e.size),
        users.name(e.uid),
        perm_string(e.mode),
        e.nattch.to_string(),
        opt(e.cpid),
        opt(e.lpid),
        e.kind.clone().unwrap_or_else(|| "-".into()),
        pid_list(&e.pids),
    ]
}

/// The `ls` table of `entries`.
pub fn ls_table(entries: &[&SegmentInfo]) -> String {
    let users = Users::load();
    let rows: Vec<Vec<String>> = entries.iter().map(|e| row(e, &users)).collect();
    table(
        &[
            "TYPE", "SEGMENT", "ID", "SIZE", "OWNER", "PERMS", "NATTCH", "CPID", "LPID", "KIND",
            "PIDS",
        ],
        &rows,
    )
}

/// The header of a System V segment, read by attaching (which the listing
/// never does). Only `stat` does this, after taking the kernel's numbers;
/// read-only (`SHM_RDONLY`), so read permission is enough.
fn sysv_header(id: &SegmentId) -> Result<Option<HeaderInfo>, OpenError> {
    let seg = Segment::open_read_only(id)?;
    Ok(HeaderInfo::read(&seg).ok())
}

/// Finds `id` in a fresh listing, or says it does not exist.
pub fn find(id: &SegmentId) -> Result<(Listing, SegmentInfo), CliError> {
    let listing = listing()?;
    match listing.find(id).cloned() {
        Some(e) => Ok((listing, e)),
        None => Err(OpenError::NotFound {
            segment: id.to_string(),
        }
        .into()),
    }
}

/// `shm stat SEG [--json]`.
pub fn stat(id: &SegmentId, json: bool) -> CliResult {
    let (listing, mut e) = find(id)?;
    // What could not be read, less what concerns only other segments.
    for w in &listing.warnings {
        let other = listing
            .entries
            .iter()
            .any(|o| !o.matches(id) && o.header_error.as_ref() == Some(w));
        if !other {
            warn(w);
        }
    }
    if e.backend == Backend::SysV {
        match sysv_header(id) {
            Ok(Some(h)) => {
                e.kind = Some(h.kind.clone());
                e.header = Some(h);
            }
            Ok(None) => {}
            Err(err) => warn(&format!("its kind is unknown: {err}")),
        }
    }
    let queue = crate::queue_stats(id, &e);
    if json {
        let mut obj = segment_json(&e);
        if let (Some(q), Value::Object(map)) = (queue.as_ref().map(|q| q.json()), &mut obj) {
            map.insert("queue".into(), q);
        }
        return emit(&format!("{obj}\n"));
    }
    let users = Users::load();
    let mut lines: Vec<(String, String)> = vec![
        ("segment".into(), e.display_name()),
        ("backend".into(), e.backend.to_string()),
    ];
    if e.backend == Backend::SysV {
        lines.push((
            "key".into(),
            e.key
                .map_or_else(|| "-".into(), |k| format!("{:#010x}", k as u32)),
        ));
        lines.push(("shmid".into(), opt(e.id)));
    }
    lines.push((
        "size".into(),
        format!("{} bytes ({})", e.size, human_size(e.size)),
    ));
    lines.push((
        "owner".into(),
        format!("{} (uid {}), gid {}", users.name(e.uid), e.uid, e.gid),
    ));
    lines.push((
        "mode".into(),
        format!("{:04o} ({})", e.mode, perm_string(e.mode)),
    ));
    lines.push(("nattch".into(), e.nattch.to_string()));
    if e.backend == Backend::SysV {
        lines.push(("cpid".into(), opt(e.cpid)));
        lines.push(("lpid".into(), opt(e.lpid)));
    }
    lines.push(("pids".into(), pid_list(&e.pids)));
    lines.push((
        "kind".into(),
        match (&e.kind, &e.header_error) {
            (Some(k), _) => k.clone(),
            (None, Some(_)) => "unknown (header unreadable)".into(),
            (None, None) => "foreign (no header of this library)".into(),
        },
    ));
    if let Some(h) = &e.header {
        lines.push(("creator".into(), creator_text(&h.creator)));
        lines.push(("state".into(), format!("{:?}", h.state).to_lowercase()));
    }
    lines.push(("atime".into(), time(e.atime)));
    if let Some(d) = e.dtime {
        lines.push(("dtime".into(), time(d)));
    }
    lines.push(("ctime".into(), time(e.ctime)));
    if let Some(q) = &queue {
        lines.extend(q.lines());
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    emit(&out)
}

/// `pid 123 (running)` or `pid 123 (gone)`.
pub fn creator_text(p: &ProcessId) -> String {
    format!(
        "pid {} ({})",
        p.pid,
        if p.is_alive() { "running" } else { "gone" }
    )
}

/// `shm create SEG --size BYTES [--mode OCTAL]`.
pub fn create(id: &SegmentId, size: u64, mode: u32) -> CliResult {
    let mut seg = Segment::create(id, size, mode)?;
    // Leave it behind: that is the point of this command.
    seg.set_owner(false);
    let shmid = seg
        .shmid()
        .map(|s| format!(", shmid {s}"))
        .unwrap_or_default();
    emit(&format!(
        "created {id}: {size} bytes ({}), mode {mode:04o}{shmid}\n",
        human_size(size)
    ))
}

/// The owner of `id` from the listing, for messages that lack it.
fn owner_of(id: &SegmentId) -> Option<Owner> {
    let listing = shm_core::list::segments().ok()?;
    listing.find(id).map(|e| Owner {
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
    })
}

/// Removes one segment; the error says what and why.
pub fn remove_one(id: &SegmentId) -> Result<(), String> {
    match shm_core::remove(id) {
        Ok(()) => Ok(()),
        Err(OpenError::PermissionDenied { segment, owner }) => {
            let owner = owner.or_else(|| owner_of(id));
            Err(format!(
                "permission denied removing {segment}{}: only its owner or root may remove it",
                owner.map(|o| format!(" ({o})")).unwrap_or_default()
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `shm rm SEG...`: removes each; reports every failure, exit 1 if any.
pub fn rm(ids: &[SegmentId]) -> CliResult {
    let mut failed = false;
    for id in ids {
        if let Err(msg) = remove_one(id) {
            crate::error_line(&msg);
            failed = true;
        }
    }
    if failed {
        Err(CliError::reported())
    } else {
        Ok(())
    }
}
