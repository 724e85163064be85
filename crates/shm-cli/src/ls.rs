//! `shm ls`: every segment, and with `--all` every other shared memory
//! object (shared anonymous mappings, memfds, POSIX segments removed while
//! mapped) with resident and swapped sizes; filters, column selection,
//! sorting and per-user totals, in the manner of `lsipc` and `ps`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shm_core::Backend;
use shm_core::list::{Holder, SegmentInfo, SharedMemory, ShmKind, ShmObject};

use crate::render::{Users, human_size, opt, perm_string, pid_list, segment_json, table, time};
use crate::segment_cmds::listing;
use crate::{CliError, CliResult, emit, warn};

/// What `shm ls` was asked for.
#[derive(Debug, Default)]
pub struct LsOpts {
    /// One JSON array (or, with `totals`, one object).
    pub json: bool,
    /// Only POSIX segments.
    pub posix: bool,
    /// Only System V segments.
    pub sysv: bool,
    /// Unnamed shared memory too, and resident/swapped sizes.
    pub all: bool,
    /// Only objects of this user (name or uid).
    pub user: Option<String>,
    /// Only objects this process maps.
    pub pid: Option<u32>,
    /// Only objects of this type (`posix`, `sysv`, `anon`, ...) or kind
    /// (`queue`, ...).
    pub kind: Option<String>,
    /// Only names matching this glob (`*`, `?`).
    pub pattern: Option<String>,
    /// Comma-separated column names.
    pub output: Option<String>,
    /// No header line.
    pub noheadings: bool,
    /// Cells separated by one space, not aligned, spaces in cells escaped.
    pub raw: bool,
    /// Sizes in bytes.
    pub bytes: bool,
    /// Sort by this column.
    pub sort: Option<String>,
    /// Per-user and machine totals instead of the rows.
    pub totals: bool,
}

/// Every column `-o` accepts, with what it shows.
pub const COLUMNS: [(&str, &str); 19] = [
    ("TYPE", "posix, sysv, anon, hugepage, memfd or deleted"),
    ("SEGMENT", "the name (/NAME, sysv:0xKEY, memfd:NAME, ...)"),
    ("ID", "System V shmid; the inode for unnamed objects"),
    ("KEY", "System V key"),
    ("SIZE", "size (unnamed: the largest mapped extent)"),
    ("RSS", "resident bytes mapped by some process (sum of Pss)"),
    ("SWAP", "swapped-out bytes"),
    (
        "OWNER",
        "owner's user name (unnamed: of the lowest holder PID)",
    ),
    ("UID", "owner's uid"),
    ("PERMS", "permission bits"),
    (
        "NATTCH",
        "attach count (POSIX and unnamed: mapping processes)",
    ),
    ("CPID", "System V creator PID"),
    ("LPID", "System V last attach/detach PID"),
    ("KIND", "the kind of a segment of this library (queue, ...)"),
    ("PIDS", "every process that maps it"),
    ("DEV", "device of the mappings"),
    ("INODE", "inode of the mappings"),
    (
        "ATIME",
        "last attach (System V) or access (POSIX), local time",
    ),
    ("CTIME", "last change, local time"),
];

const DEFAULT: [&str; 11] = [
    "TYPE", "SEGMENT", "ID", "SIZE", "OWNER", "PERMS", "NATTCH", "CPID", "LPID", "KIND", "PIDS",
];
const DEFAULT_ALL: [&str; 11] = [
    "TYPE", "SEGMENT", "ID", "SIZE", "RSS", "SWAP", "OWNER", "PERMS", "NATTCH", "KIND", "PIDS",
];

/// One row: a named segment or an unnamed object.
#[derive(Debug, Clone, Default)]
struct Row {
    typ: &'static str,
    name: String,
    json_name: Option<String>,
    key: Option<i32>,
    id: Option<i64>,
    size: u64,
    rss: Option<u64>,
    swap: Option<u64>,
    uid: Option<u32>,
    mode: Option<u32>,
    nattch: u64,
    cpid: Option<i32>,
    lpid: Option<i32>,
    kind: Option<String>,
    pids: Vec<u32>,
    dev: Option<String>,
    inode: Option<u64>,
    atime: Option<i64>,
    ctime: Option<i64>,
    holders: Vec<Holder>,
    /// The `ls --json` object of a named segment.
    json: Option<Value>,
}

fn named_row(e: &SegmentInfo, mem: Option<&SharedMemory>) -> Row {
    let obj: Option<&ShmObject> = mem.and_then(|m| match e.backend {
        Backend::SysV => e.id.and_then(|id| m.sysv(id)),
        _ => e.name.as_deref().and_then(|n| {
            shm_core::list::posix_inode(n)
                .ok()
                .and_then(|ino| m.posix(n, ino))
        }),
    });
    Row {
        typ: match e.backend {
            Backend::Posix => "posix",
            Backend::SysV => "sysv",
            Backend::Memfd => "memfd",
        },
        name: e.display_name(),
        json_name: e.name.clone(),
        key: e.key,
        id: e.id.map(i64::from),
        size: e.size,
        rss: mem.map(|_| obj.map_or(0, |o| o.rss)),
        swap: mem.map(|_| obj.map_or(0, |o| o.swap)),
        uid: Some(e.uid),
        mode: Some(e.mode),
        nattch: e.nattch,
        cpid: e.cpid,
        lpid: e.lpid,
        kind: e.kind.clone(),
        pids: e.pids.clone(),
        dev: obj.map(|o| o.dev.to_string()),
        inode: obj.map(|o| o.inode),
        atime: Some(e.atime),
        ctime: Some(e.ctime),
        holders: obj.map(|o| o.holders.clone()).unwrap_or_default(),
        json: Some(segment_json(e)),
    }
}

fn unnamed_row(o: &ShmObject) -> Row {
    let (name, json_name) = match &o.kind {
        ShmKind::Memfd { name } => (format!("memfd:{name}"), Some(name.clone())),
        ShmKind::DeletedPosix { name } => (format!("{name} (deleted)"), Some(name.clone())),
        ShmKind::Hugepage => ("/anon_hugepage".into(), None),
        _ => ("/dev/zero".into(), None),
    };
    Row {
        typ: o.kind.word(),
        name,
        json_name,
        id: i64::try_from(o.inode).ok(),
        size: o.mapped_size,
        rss: Some(o.rss),
        swap: Some(o.swap),
        uid: o.holder_uid(),
        nattch: o.holders.len() as u64,
        pids: o.pids(),
        dev: Some(o.dev.to_string()),
        inode: Some(o.inode),
        holders: o.holders.clone(),
        ..Row::default()
    }
}

impl Row {
    fn cell(&self, col: &str, users: &Users, bytes: bool) -> String {
        let size = |v: u64| if bytes { v.to_string() } else { human_size(v) };
        match col {
            "TYPE" => self.typ.into(),
            "SEGMENT" => self.name.clone(),
            "ID" => opt(self.id),
            "KEY" => self
                .key
                .map_or_else(|| "-".into(), |k| format!("{:#010x}", k as u32)),
            "SIZE" => size(self.size),
            "RSS" => self.rss.map_or_else(|| "-".into(), size),
            "SWAP" => self.swap.map_or_else(|| "-".into(), size),
            "OWNER" => self.uid.map_or_else(|| "-".into(), |u| users.name(u)),
            "UID" => opt(self.uid),
            "PERMS" => self.mode.map_or_else(|| "-".into(), perm_string),
            "NATTCH" => self.nattch.to_string(),
            "CPID" => opt(self.cpid),
            "LPID" => opt(self.lpid),
            "KIND" => self.kind.clone().unwrap_or_else(|| "-".into()),
            "PIDS" => pid_list(&self.pids),
            "DEV" => opt(self.dev.clone()),
            "INODE" => opt(self.inode),
            "ATIME" => self.atime.map_or_else(|| "-".into(), time),
            "CTIME" => self.ctime.map_or_else(|| "-".into(), time),
            _ => "?".into(),
        }
    }

    /// The sort key of a column: numbers for numeric columns.
    fn sort_key(&self, col: &str, users: &Users) -> (u64, String) {
        let n = |v: Option<u64>| (v.unwrap_or(0), String::new());
        match col {
            "ID" => n(self.id.and_then(|v| u64::try_from(v).ok())),
            "KEY" => n(self.key.map(|k| u64::from(k as u32))),
            "SIZE" => n(Some(self.size)),
            "RSS" => n(self.rss),
            "SWAP" => n(self.swap),
            "UID" => n(self.uid.map(u64::from)),
            "PERMS" => n(self.mode.map(u64::from)),
            "NATTCH" => n(Some(self.nattch)),
            "CPID" => n(self.cpid.and_then(|v| u64::try_from(v).ok())),
            "LPID" => n(self.lpid.and_then(|v| u64::try_from(v).ok())),
            "PIDS" => n(self.pids.first().map(|&p| u64::from(p))),
            "INODE" => n(self.inode),
            "ATIME" => n(self.atime.and_then(|v| u64::try_from(v).ok())),
            "CTIME" => n(self.ctime.and_then(|v| u64::try_from(v).ok())),
            other => (0, self.cell(other, users, true)),
        }
    }

    fn json(&self) -> Value {
        let mut v = self.json.clone().unwrap_or_else(|| {
            json!({
                "backend": self.typ,
                "name": self.json_name,
                "key": null,
                "id": null,
                "size": self.size,
                "uid": self.uid,
                "mode": null,
                "nattch": self.nattch,
                "cpid": null,
                "lpid": null,
                "pids": self.pids,
                "kind": null,
            })
        });
        if let (Value::Object(map), Some(rss)) = (&mut v, self.rss) {
            map.insert("rss".into(), rss.into());
            map.insert("swap".into(), self.swap.unwrap_or(0).into());
            map.insert("dev".into(), json!(self.dev));
            map.insert("inode".into(), json!(self.inode));
            let holders: Vec<Value> = self
                .holders
                .iter()
                .map(|h| {
                    json!({
                        "pid": h.pid,
                        "mapped": h.mapped,
                        "rss": h.rss,
                        "pss": h.pss,
                        "swap": h.swap,
                        "measured": h.measured,
                    })
                })
                .collect();
            map.insert("holders".into(), Value::Array(holders));
        }
        v
    }
}

/// `*` any run, `?` one character; everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear memory, no
    // recursion whatever the pattern.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The columns of `-o`, checked.
fn columns(opts: &LsOpts) -> Result<Vec<&'static str>, CliError> {
    let Some(list) = &opts.output else {
        return Ok(if opts.all {
            DEFAULT_ALL.to_vec()
        } else {
            DEFAULT.to_vec()
        });
    };
    list.split(',')
        .map(|c| column(c.trim()))
        .collect::<Result<Vec<_>, _>>()
}

fn column(name: &str) -> Result<&'static str, CliError> {
    let up = name.to_ascii_uppercase();
    COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .find(|c| *c == up)
        .ok_or_else(|| {
            CliError::new(format!(
                "unknown column {name:?}: use one of {}",
                COLUMNS.map(|(c, _)| c).join(", ")
            ))
        })
}

/// `shm ls`.
pub fn ls(mut opts: LsOpts) -> CliResult {
    // Everything one process holds includes its unnamed shared memory.
    if opts.pid.is_some() {
        opts.all = true;
    }
    let cols = columns(&opts)?;
    let sort = opts.sort.as_deref().map(column).transpose()?;
    let want_uid = opts
        .user
        .as_deref()
        .map(Users::uid_of)
        .transpose()
        .map_err(CliError::new)?;
    let (listing, mem) = if opts.all {
        let (l, m) = shm_core::list::segments_and_memory().map_err(|e| {
            CliError::new(format!("cannot list segments: reading /proc failed: {e}"))
        })?;
        (l, Some(m))
    } else {
        (listing()?, None)
    };
    for w in &listing.warnings {
        warn(w);
    }
    if let Some(m) = &mem {
        for w in &m.warnings {
            warn(w);
        }
    }
    let mut rows: Vec<Row> = listing
        .entries
        .iter()
        .filter(|e| e.backend != Backend::Memfd)
        .map(|e| named_row(e, mem.as_ref()))
        .collect();
    if let Some(m) = &mem {
        rows.extend(m.unnamed().map(unnamed_row));
    }
    rows.retain(|r| {
        (!opts.posix || r.typ == "posix" || r.typ == "deleted")
            && (!opts.sysv || r.typ == "sysv")
            && want_uid.is_none_or(|u| r.uid == Some(u))
            && opts.pid.is_none_or(|p| r.pids.contains(&p))
            && opts
                .kind
                .as_deref()
                .is_none_or(|k| r.typ == k || r.kind.as_deref() == Some(k))
            && opts.pattern.as_deref().is_none_or(|p| {
                glob(p, &r.name) || r.json_name.as_deref().is_some_and(|n| glob(p, n))
            })
    });
    let users = Users::load();
    if let Some(col) = sort {
        rows.sort_by_cached_key(|r| r.sort_key(col, &users));
    }
    if opts.totals {
        return emit(&totals(&rows, &users, &opts));
    }
    if opts.json {
        let arr = Value::Array(rows.iter().map(Row::json).collect());
        return emit(&format!("{arr}\n"));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| r.cell(c, &users, opts.bytes)).collect())
        .collect();
    emit(&render(&cols, &cells, opts.noheadings, opts.raw))
}

/// The table, or with `raw` one space between cells (spaces inside a cell
/// written `\x20`, as `lsipc --raw` does).
fn render(cols: &[&str], cells: &[Vec<String>], noheadings: bool, raw: bool) -> String {
    if raw {
        let mut out = String::new();
        let line = |cells: &mut dyn Iterator<Item = String>, out: &mut String| {
            let v: Vec<String> = cells.map(|c| c.replace(' ', "\\x20")).collect();
            out.push_str(&v.join(" "));
            out.push('\n');
        };
        if !noheadings {
            line(&mut cols.iter().map(|c| c.to_string()), &mut out);
        }
        for row in cells {
            line(&mut row.iter().cloned(), &mut out);
        }
        return out;
    }
    let t = table(cols, cells);
    if noheadings {
        t.split_once('\n')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default()
    } else {
        t
    }
}

/// Totals per user and for the machine.
fn totals(rows: &[Row], users: &Users, opts: &LsOpts) -> String {
    #[derive(Default, Clone, Copy)]
    struct Sum {
        objects: u64,
        size: u64,
        rss: u64,
        swap: u64,
    }
    let add = |s: &mut Sum, r: &Row| {
        s.objects += 1;
        s.size = s.size.saturating_add(r.size);
        s.rss = s.rss.saturating_add(r.rss.unwrap_or(0));
        s.swap = s.swap.saturating_add(r.swap.unwrap_or(0));
    };
    let mut per: BTreeMap<Option<u32>, Sum> = BTreeMap::new();
    let mut all = Sum::default();
    for r in rows {
        add(per.entry(r.uid).or_default(), r);
        add(&mut all, r);
    }
    if opts.json {
        let j =
            |s: &Sum| json!({"objects": s.objects, "size": s.size, "rss": s.rss, "swap": s.swap});
        let users_json: Vec<Value> = per
            .iter()
            .map(|(uid, s)| {
                let mut v = j(s);
                if let Value::Object(m) = &mut v {
                    m.insert("uid".into(), json!(uid));
                    m.insert("user".into(), json!(uid.map(|u| users.name(u))));
                }
                v
            })
            .collect();
        return format!("{}\n", json!({"users": users_json, "total": j(&all)}));
    }
    let size = |v: u64| {
        if opts.bytes {
            v.to_string()
        } else {
            human_size(v)
        }
    };
    let mut cells: Vec<Vec<String>> = per
        .iter()
        .map(|(uid, s)| {
            vec![
                uid.map_or_else(|| "-".into(), |u| users.name(u)),
                s.objects.to_string(),
                size(s.size),
                size(s.rss),
                size(s.swap),
            ]
        })
        .collect();
    cells.push(vec![
        "total".into(),
        all.objects.to_string(),
        size(all.size),
        size(all.rss),
        size(all.swap),
    ]);
    render(
        &["USER", "OBJECTS", "SIZE", "RSS", "SWAP"],
        &cells,
        opts.noheadings,
        opts.raw,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("*", ""));
        assert!(glob("/psm_*", "/psm_1f2e"));
        assert!(glob("memfd:?ool", "memfd:pool"));
        assert!(glob("*a*b*c", "xxaxxbxxc"));
        assert!(!glob("/psm_*", "/other"));
        assert!(!glob("a?", "a"));
        // Long patterns stay linear.
        let long = "*a".repeat(200);
        assert!(!glob(&long, &"b".repeat(2000)));
    }

    #[test]
    fn columns_are_checked_and_case_blind() {
        let o = LsOpts {
            output: Some("type,rss, PIDS".into()),
            ..LsOpts::default()
        };
        assert_eq!(columns(&o).unwrap(), vec!["TYPE", "RSS", "PIDS"]);
        let bad = LsOpts {
            output: Some("type,nope".into()),
            ..LsOpts::default()
        };
        assert!(columns(&bad).unwrap_err().message.contains("\"nope\""));
    }

    #[test]
    fn raw_and_headless_rendering() {
        let cells = vec![vec!["a b".to_string(), "c".to_string()]];
        assert_eq!(render(&["X", "Y"], &cells, false, true), "X Y\na\\x20b c\n");
        assert_eq!(render(&["X", "Y"], &cells, true, false), "a b  c\n");
    }
}
