//! Output helpers: human-readable sizes, permission strings, user names,
//! aligned tables, and the JSON form of a segment.

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

/// User names by uid, from `/etc/passwd` (numbers where it has none).
pub struct Users(HashMap<u32, String>);

impl Users {
    /// Reads `/etc/passwd`; an unreadable file gives numbers only.
    pub fn load() -> Self {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let map = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                (!name.is_empty()).then(|| (uid, name.to_owned()))
            })
            .collect();
        Users(map)
    }

    /// The user's name, or the uid as text.
    pub fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
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

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`; `-` for 0.
pub fn time(secs: i64) -> String {
    if secs <= 0 {
        return "-".into();
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20 UTC");
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
