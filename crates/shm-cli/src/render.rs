//! Output helpers: human-readable sizes, permission strings, user names,
//! aligned tables, and the JSON form of a segment.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Value, json};
use shm_core::Backend;
use shm_core::list::SegmentInfo;

/// `4096` → `4K`, `1572864` → `1.5M`, like `lsipc`: powers of 1024, one
/// decimal below 10.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let rounded = (value * 10.0).round() / 10.0;
    if rounded < 10.0 && rounded.fract() != 0.0 {
        format!("{rounded:.1}{}", UNITS[unit])
    } else {
        format!("{:.0}{}", value.round(), UNITS[unit])
    }
}

/// `0o640` → `rw-r-----`.
pub fn perm_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// User names by uid, looked up through NSS (`getpwuid_r`, so LDAP and
/// systemd users resolve as `ls -l` resolves them), each uid once.
pub struct Users(RefCell<HashMap<u32, String>>);

impl Users {
    /// An empty cache.
    pub fn load() -> Self {
        Users(RefCell::new(HashMap::new()))
    }

    /// The user's name, or the uid as text when NSS has none.
    pub fn name(&self, uid: u32) -> String {
        self.0
            .borrow_mut()
            .entry(uid)
            .or_insert_with(
                || match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
                    Ok(Some(u)) => u.name,
                    _ => uid.to_string(),
                },
            )
            .clone()
    }

    /// The uid of a user name or number, through NSS.
    pub fn uid_of(text: &str) -> Result<u32, String> {
        if let Ok(uid) = text.parse::<u32>() {
            return Ok(uid);
        }
        match nix::unistd::User::from_name(text) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            Ok(None) => Err(format!("no user {text:?}")),
            Err(e) => Err(format!("cannot look up user {text:?}: {e}")),
        }
    }
}

/// Lays out rows under a header, each column as wide as its widest cell,
/// separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let pad = width.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<pad$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied(), &mut out);
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

/// `"posix"` or `"sysv"` (or `"memfd"`).
pub fn backend_word(b: Backend) -> String {
    b.to_string()
}

/// The JSON object of one segment: exactly the fields scripts rely on.
pub fn segment_json(e: &SegmentInfo) -> Value {
    json!({
        "backend": backend_word(e.backend),
        "name": e.name,
        "key": e.key,
        "id": e.id,
        "size": e.size,
        "uid": e.uid,
        "mode": e.mode,
        "nattch": e.nattch,
        "cpid": e.cpid,
        "lpid": e.lpid,
        "pids": e.pids,
        "kind": e.kind,
    })
}

/// `-` for a missing value.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// PIDs as `1, 2, 3`, or `-` for none.
pub fn pid_list(pids: &[u32]) -> String {
    if pids.is_empty() {
        "-".into()
    } else {
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Seconds since the epoch in local time as `ipcs -t` prints it
/// (`Dec  5 09:21:34`); `-` for 0 (never).
pub fn time(secs: i64) -> String {
    if secs <= 0 {
        return "-".into();
    }
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%b %e %H:%M:%S")
            .to_string(),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_lsipc() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(4096), "4K");
        assert_eq!(human_size(1536 * 1024), "1.5M");
        assert_eq!(human_size(10 << 30), "10G");
        assert_eq!(human_size(u64::MAX), "16E");
    }

    #[test]
    fn perms_and_times() {
        assert_eq!(perm_string(0o640), "rw-r-----");
        assert_eq!(perm_string(0o777), "rwxrwxrwx");
        assert_eq!(time(0), "-");
        // `Mon DD HH:MM:SS` in local time, as ipcs prints it.
        let t = time(1_700_000_000);
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("Nov 1"), "{t}");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
    }
}
