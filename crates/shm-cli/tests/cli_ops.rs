//! The `shm` command for the people who run machines (issue 13): all shared
//! memory and who holds it (`ls --all`), filters and output control, the
//! live view (`top`, in a real terminal through tmux), `gc` seeing
//! descriptor holders, queue framings, `peek` and `close`, completions and
//! the man page. Every process involved is real; sizes are checked against
//! what `/proc/PID/smaps` says, read here with a parser of this file's own.

use serde_json::Value;
use shm_tests::{Cleanup, unique_posix};

mod common;

use common::{Holder, LIMIT, shm, shm_input};

/// Makes one of each hidden kind, and a named segment, then prints `ready`:
///
/// - a shared anonymous mapping of 3 MiB, written, inherited by a forked
///   child;
/// - a POSIX segment of 1 MiB mapped, removed, then written (inherited);
/// - a named POSIX segment of 1.25 MiB, mapped and written (inherited);
/// - after the fork, a memfd of 2 MiB passed to the child over a Unix
///   socket; only the child maps it, and writes it all.
///
/// The child's PID goes to the file `argv[1]`. Closing stdin ends both (the
/// child sees the socket close, also when the parent is killed).
const PY_HIDDEN: &str = r#"
import mmap, os, socket, sys
out_path, gone_name, memfd_name, named = sys.argv[1:5]
MB = 1 << 20
anon = mmap.mmap(-1, 3 * MB)  # MAP_SHARED | MAP_ANONYMOUS
anon.write(b"a" * (3 * MB))
fd = os.open("/dev/shm/" + gone_name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, MB)
gone = mmap.mmap(fd, MB)
os.close(fd)
os.unlink("/dev/shm/" + gone_name)
gone.write(b"g" * MB)
fd = os.open("/dev/shm/" + named, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, 5 * MB // 4)
kept = mmap.mmap(fd, 5 * MB // 4)
os.close(fd)
kept.write(b"k" * (5 * MB // 4))
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    msg, fds, flags, addr = socket.recv_fds(b, 16, 1)
    m = mmap.mmap(fds[0], 2 * MB)
    os.close(fds[0])
    m.write(b"m" * (2 * MB))
    b.sendall(b"k")
    b.recv(1)
    os._exit(0)
b.close()
mfd = os.memfd_create(memfd_name)
os.ftruncate(mfd, 2 * MB)
socket.send_fds(a, [b"f"], [mfd])
os.close(mfd)
a.recv(1)
with open(out_path, "w") as f:
    f.write(str(pid))
print("ready", flush=True)
sys.stdin.read()
a.close()
os.waitpid(pid, 0)
"#;

/// A shared mapping in one process's smaps, as this test reads it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    inode: u64,
    len: u64,
    rss: u64,
}

/// The shared mappings of `pid`, from `/proc/PID/smaps`: a deliberately
/// plain parser, independent of the library's.
fn smaps(pid: u32) -> Vec<Seen> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut out: Vec<Seen> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5 && f[0].contains('-') && f[1].len() == 4 {
            let (s, e) = f[0].split_once('-').expect("range");
            let len = u64::from_str_radix(e, 16).unwrap() - u64::from_str_radix(s, 16).unwrap();
            if f[1].ends_with('s') {
                out.push(Seen {
                    path: f[5..].join(" "),
                    inode: f[4].parse().unwrap_or(0),
                    len,
                    rss: 0,
                });
            } else {
                out.push(Seen {
                    path: String::new(),
                    inode: 0,
                    len,
                    rss: 0,
                });
            }
        } else if let (Some(last), Some(kb)) = (out.last_mut(), line.strip_prefix("Rss:")) {
            let kb: u64 = kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
            last.rss = kb * 1024;
        }
    }
    out.retain(|s| !s.path.is_empty());
    out
}

/// The inode and the largest Rss over `pids` of the shared mapping whose
/// path is `path` (and, when given, whose length is `len`).
fn reference(pids: &[u32], path: &str, len: Option<u64>) -> (u64, u64) {
    let mut inode = None;
    let mut rss = 0;
    for &p in pids {
        for s in smaps(p)
            .into_iter()
            .filter(|s| s.path == path && len.is_none_or(|l| s.len == l))
        {
            assert!(inode.is_none_or(|i| i == s.inode), "two {path} in {pids:?}");
            inode = Some(s.inode);
            rss = rss.max(s.rss);
            assert!(s.len > 0);
        }
    }
    (
        inode.unwrap_or_else(|| panic!("{path} not mapped by {pids:?}")),
        rss,
    )
}

fn pids_of(v: &Value) -> Vec<u32> {
    v["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_u64().expect("pid") as u32)
        .collect()
}

fn within_10_percent(got: u64, want: u64, what: &str) {
    let diff = got.abs_diff(want);
    assert!(
        want > 0 && diff * 10 <= want,
        "{what}: shm says {got} bytes resident, smaps says {want}"
    );
}

fn ls_all(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["ls", "--all", "--json"];
    args.extend_from_slice(extra);
    match shm(&args).ok().json() {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    }
}

/// The hidden kinds, each with its exact PIDs and a resident size within
/// 10 % of smaps; the named segment with its RSS too.
#[test]
fn ls_all_reports_every_hidden_kind_with_exact_pids_and_resident_size() {
    let gone = unique_posix("ops-gone");
    let named = unique_posix("ops-named");
    let _cleanup = Cleanup::new(&[gone.clone(), named.clone()]);
    let memfd_name = format!("shmrs-test-memfd-{}", std::process::id());
    let pid_file = std::env::temp_dir().join(format!("shmrs-test-ops-{}", std::process::id()));
    let holder = Holder::python(
        PY_HIDDEN,
        &[
            pid_file.to_str().expect("utf-8 temp dir"),
            &gone.to_string()[1..],
            &memfd_name,
            &named.to_string()[1..],
        ],
    );
    let parent = holder.pid();
    let child: u32 = std::fs::read_to_string(&pid_file)
        .expect("child pid")
        .trim()
        .parse()
        .expect("pid");
    let _ = std::fs::remove_file(&pid_file);
    let both = {
        let mut v = vec![parent, child];
        v.sort_unstable();
        v
    };

    let list = ls_all(&[]);
    let (anon_inode, anon_rss) = reference(&both, "/dev/zero (deleted)", Some(3 << 20));
    let anon = list
        .iter()
        .find(|e| e["backend"] == "anon" && e["inode"] == anon_inode)
        .unwrap_or_else(|| panic!("no anon inode {anon_inode}: {list:?}"));
    assert_eq!(pids_of(anon), both, "{anon}");
    assert_eq!(anon["size"], 3 << 20, "{anon}");
    within_10_percent(anon["rss"].as_u64().unwrap(), anon_rss, "anon");

    let memfd_path = format!("/memfd:{memfd_name} (deleted)");
    let (memfd_inode, memfd_rss) = reference(&[child], &memfd_path, None);
    let memfd = list
        .iter()
        .find(|e| e["backend"] == "memfd" && e["name"] == memfd_name.as_str())
        .unwrap_or_else(|| panic!("no memfd {memfd_name}: {list:?}"));
    assert_eq!(memfd["inode"], memfd_inode);
    assert_eq!(
        pids_of(memfd),
        vec![child],
        "only the child maps it: {memfd}"
    );
    within_10_percent(memfd["rss"].as_u64().unwrap(), memfd_rss, "memfd");

    let gone_path = format!("/dev/shm{gone} (deleted)");
    let (gone_inode, gone_rss) = reference(&both, &gone_path, None);
    let deleted = list
        .iter()
        .find(|e| e["backend"] == "deleted" && e["name"] == gone.to_string())
        .unwrap_or_else(|| panic!("no deleted {gone}: {list:?}"));
    assert_eq!(deleted["inode"], gone_inode);
    assert_eq!(pids_of(deleted), both, "{deleted}");
    within_10_percent(deleted["rss"].as_u64().unwrap(), gone_rss, "deleted");

    let (_, named_rss) = reference(&both, &format!("/dev/shm{named}"), None);
    let n = list
        .iter()
        .find(|e| e["backend"] == "posix" && e["name"] == named.to_string())
        .unwrap_or_else(|| panic!("no {named}: {list:?}"));
    assert_eq!(pids_of(n), both);
    within_10_percent(n["rss"].as_u64().unwrap(), named_rss, "named");
    // Per-holder numbers are each process's own Rss.
    let h = n["holders"].as_array().expect("holders");
    assert_eq!(h.len(), 2);

    // Everything the child holds, and nothing else.
    let mine = ls_all(&["--pid", &child.to_string()]);
    let kinds: Vec<&str> = mine
        .iter()
        .map(|e| e["backend"].as_str().unwrap())
        .collect();
    for k in ["anon", "memfd", "deleted", "posix"] {
        assert!(kinds.contains(&k), "--pid {child} lacks {k}: {kinds:?}");
    }
    assert!(mine.iter().all(|e| pids_of(e).contains(&child)), "{mine:?}");
    // Without --all the hidden ones stay hidden.
    let plain = shm(&["ls", "--json"]).ok().json();
    assert!(
        plain
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["backend"] == "posix" || e["backend"] == "sysv"),
        "{plain}"
    );
    holder.finish();
    // The child is gone with the parent: its memfd is no longer listed.
    let after = ls_all(&["--kind", "memfd"]);
    assert!(
        after.iter().all(|e| e["name"] != memfd_name.as_str()),
        "{after:?}"
    );
}

/// `--user`, `--kind`, a pattern, `-o`, `--noheadings`, `--raw`, `--bytes`,
/// `--sort`, `--totals` and `--list-columns`, on segments of this test.
#[test]
fn ls_filters_columns_sorting_and_totals() {
    let small = unique_posix("ops-filter-a");
    let big = unique_posix("ops-filter-b");
    let _cleanup = Cleanup::new(&[small.clone(), big.clone()]);
    shm(&["create", &small.to_string(), "--size", "4096"]).ok();
    shm(&["create", &big.to_string(), "--size", "64K"]).ok();
    let stem = &format!("/shmrs-test-ops-filter-?-{}-*", std::process::id());
    let me = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    let uid = me.expect("uid").to_string();

    // Raw, headless, in bytes, sorted by size: exactly our two, small first.
    let out = shm(&[
        "ls",
        "--posix",
        "-u",
        &uid,
        stem,
        "-o",
        "segment,size",
        "--raw",
        "--noheadings",
        "--bytes",
        "--sort",
        "size",
    ])
    .ok();
    let want = format!("{small} 4096\n{big} 65536\n");
    assert_eq!(out.stdout, want);
    // Sorted the other way round by name, with the header, human sizes.
    let out = shm(&["ls", stem, "-o", "SIZE,Segment", "--sort", "segment"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0].starts_with("SIZE") && lines[0].ends_with("SEGMENT"));
    assert!(lines[1].starts_with("4K") && lines[2].starts_with("64K"));
    // Kind and type filters: raw segments have no kind.
    let out = shm(&["ls", stem, "--kind", "queue", "--noheadings"]).ok();
    assert_eq!(out.stdout, "");
    let out = shm(&[
        "ls",
        stem,
        "--kind",
        "posix",
        "--noheadings",
        "-o",
        "segment",
    ])
    .ok();
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");
    // Another user owns none of them (nobody, through NSS).
    let out = shm(&["ls", stem, "--user", "nobody", "--json"]).ok();
    assert_eq!(out.json(), Value::Array(vec![]));
    shm(&["ls", "--user", "no-such-user-here"]).error("no user");
    shm(&["ls", "-o", "segment,bogus"]).error("unknown column \"bogus\"");
    shm(&["ls", "--sort", "bogus"]).error("unknown column");
    // Totals of the two, per user and for the machine.
    let t = shm(&["ls", stem, "--totals", "--json", "--bytes"])
        .ok()
        .json();
    assert_eq!(t["total"]["objects"], 2, "{t}");
    assert_eq!(t["total"]["size"], 4096 + 65536, "{t}");
    assert_eq!(t["users"][0]["uid"].as_u64().unwrap().to_string(), uid);
    let text = shm(&["ls", stem, "--totals", "--bytes"]).ok().stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("total") && l.contains("69632")),
        "{text}"
    );
    let cols = shm(&["ls", "--list-columns"]).ok().stdout;
    for c in ["RSS", "SWAP", "DEV", "INODE", "ATIME"] {
        assert!(cols.contains(c), "{cols}");
    }
    // Times are local, as ipcs prints them.
    let out = shm(&["ls", stem, "-o", "ctime", "--noheadings", "--raw"]).ok();
    for l in out.stdout.lines() {
        assert_eq!(l.split("\\x20").filter(|s| !s.is_empty()).count(), 3, "{l}");
    }
}

/// Length-prefixed frames and NUL records round-trip binary messages,
/// newlines and NULs included; a frame longer than a slot is refused on
/// reading its length; `peek` shows without taking; `close` ends sends.
#[test]
fn queue_framings_peek_and_close() {
    let q = unique_posix("ops-queue");
    let _cleanup = Cleanup::new(std::slice::from_ref(&q));
    let qn = q.to_string();
    shm(&[
        "queue",
        "create",
        &qn,
        "--capacity",
        "8",
        "--slot-size",
        "16",
    ])
    .ok();
    // Length-prefixed: any bytes.
    let msgs: [&[u8]; 3] = [b"a\nb\0c", b"", &[1, 0, 10, 13]];
    let mut frames = Vec::new();
    for m in msgs {
        frames.extend_from_slice(&(m.len() as u32).to_be_bytes());
        frames.extend_from_slice(m);
    }
    shm_input(&["queue", "send", &qn, "--framing", "length"], &frames).ok();
    // Peek the first two without taking them, twice: the same both times.
    for _ in 0..2 {
        let out = shm(&["queue", "peek", &qn, "--count", "2", "--framing", "length"]).ok();
        assert_eq!(out.stdout.as_bytes(), &frames[..4 + 5 + 4], "{out:?}");
    }
    let s = shm(&["stat", &qn, "--json"]).ok().json();
    assert_eq!(s["queue"]["len"], 3, "peek took nothing: {s}");
    // `recv` gives them back framed the same way.
    let out = shm(&["queue", "recv", &qn, "--count", "3", "--framing", "length"]).ok();
    assert_eq!(out.stdout.as_bytes(), &frames[..], "{out:?}");
    // NUL records: newlines inside a message survive.
    shm_input(&["queue", "send", "-0", &qn], b"one\ntwo\0three\0").ok();
    let out = shm(&["queue", "peek", &qn, "-0", "--count", "9"]).ok();
    assert_eq!(out.stdout, "one\ntwo\0three\0");
    let out = shm(&["queue", "recv", &qn, "--null", "--count", "2"]).ok();
    assert_eq!(out.stdout, "one\ntwo\0three\0");
    // Empty queue: peek prints nothing and succeeds.
    assert_eq!(shm(&["queue", "peek", &qn]).ok().stdout, "");
    // A frame announcing more than a slot is refused before its bytes.
    let mut huge = vec![0xff, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[b'x'; 64]);
    let out = shm_input(&["queue", "send", &qn, "--framing", "length"], &huge)
        .error("frame 1 announces 4294967295 bytes, longer than the 16-byte slots");
    assert!(out.stderr.contains("not sent"));
    shm_input(
        &["queue", "send", &qn, "--framing", "length"],
        &[0, 0, 0, 9, b'x'],
    )
    .error("frame 1 is cut short");
    shm_input(&["queue", "send", &qn, "-0"], &[b'y'; 17]).error("record 1 is longer");
    shm(&["queue", "send", &qn, "-0", "--framing", "length"]).usage();
    // Close: later sends fail, what is left stays for attached receivers.
    shm_input(&["queue", "send", &qn], b"left\n").ok();
    let out = shm(&["queue", "close", &qn]).ok();
    assert!(out.stdout.contains("1 message(s) left"), "{out:?}");
    shm_input(&["queue", "send", &qn], b"late\n").error("closed");
    let s = shm(&["stat", &qn, "--json"]).ok().json();
    assert_eq!(s["queue"]["closed"], true, "{s}");
    assert_eq!(shm(&["queue", "peek", &qn]).ok().stdout, "left\n");
    // Peek on what is not a queue is refused with a reason.
    let raw = unique_posix("ops-not-a-queue");
    let _raw_cleanup = Cleanup::new(std::slice::from_ref(&raw));
    shm(&["create", &raw.to_string(), "--size", "4096"]).ok();
    let out = shm(&["queue", "peek", &raw.to_string()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    shm(&["queue", "peek", "/shmrs-test-ops-missing-queue"]).error("shmrs-test-ops-missing-queue");
}

/// Opens `/dev/shm/NAME` and holds the descriptor without mapping it.
const PY_OPEN_POSIX: &str = r#"
import os, sys
fd = os.open("/dev/shm/" + sys.argv[1], os.O_RDWR)
print("ready", flush=True)
sys.stdin.read()
"#;

/// Maps `/dev/shm/NAME`.
const PY_MAP_POSIX: &str = r#"
import mmap, os, sys
fd = os.open("/dev/shm/" + sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
os.close(fd)
print("ready", flush=True)
sys.stdin.read()
"#;

/// A segment nobody maps but a process holds open is kept, and `gc` says
/// who holds it and by which descriptor; once the descriptor is closed it
/// goes. A mapped one named on the command line gets an `in use:` line.
#[test]
fn gc_keeps_a_segment_held_open_by_a_descriptor_and_says_why() {
    let open = unique_posix("ops-gc-open");
    let mapped = unique_posix("ops-gc-mapped");
    let _cleanup = Cleanup::new(&[open.clone(), mapped.clone()]);
    let (on, mn) = (open.to_string(), mapped.to_string());
    shm(&["create", &on, "--size", "4096"]).ok();
    shm(&["create", &mn, "--size", "4096"]).ok();
    let holder = Holder::python(PY_OPEN_POSIX, &[&on[1..]]);
    let mapper = Holder::python(PY_MAP_POSIX, &[&mn[1..]]);
    let v = shm(&["gc", "--dry-run", "--all", "--json", &on])
        .ok()
        .json();
    let c = &v[0];
    assert_eq!(c["held_open"], true, "{v}");
    assert_eq!(c["action"], "keep", "{v}");
    let why = c["reason"].as_str().unwrap();
    assert!(why.contains(&format!("pid {} (fd ", holder.pid())), "{why}");
    // Not even --all removes it.
    let out = shm(&["gc", "--all", &on, &mn]).ok();
    assert!(
        out.stdout
            .contains(&format!("kept foreign, unattached: {on}")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!(
            "in use: {mn}: mapped by pid {} (kept)",
            mapper.pid()
        )),
        "{out:?}"
    );
    assert!(std::path::Path::new(&format!("/dev/shm{on}")).exists());
    holder.finish();
    mapper.finish();
    let out = shm(&["gc", "--all", &on, &mn]).ok();
    assert!(
        out.stdout
            .contains(&format!("removed foreign, unattached: {on}")),
        "{out:?}"
    );
    assert!(!std::path::Path::new(&format!("/dev/shm{on}")).exists());
}

/// A tmux server of this test's own (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 200x40 session. tmux is required:
    /// `.ci/run` installs it.
    fn start(command: &str) -> Tmux {
        let socket = format!("shmrs-test-tmux-{}", std::process::id());
        let status = std::process::Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "200", "-y", "40", "-s", "top", command])
            .status()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}): install it (.ci/run does)"));
        assert!(status.success(), "tmux new-session failed: {status}");
        Tmux { socket }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Polls the screen until `ok` holds for it (watchdog: 60 s).
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "watchdog: the screen never showed {what}:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The sample number in `shm top`'s title line.
fn sample_of(screen: &str) -> u64 {
    screen
        .lines()
        .find_map(|l| l.split(", sample ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `shm top` in a real terminal: it redraws in place (one title and one
/// header however many samples), shows the queue's counters as they move,
/// and quits on Ctrl-C.
#[test]
fn top_redraws_in_place_in_a_terminal() {
    let q = unique_posix("ops-top");
    let _cleanup = Cleanup::new(std::slice::from_ref(&q));
    let qn = q.to_string();
    shm(&[
        "queue",
        "create",
        &qn,
        "--capacity",
        "8",
        "--slot-size",
        "16",
    ])
    .ok();
    let bin = common::shm_path().display().to_string();
    let tmux = Tmux::start(&format!("{bin} top {qn} --interval-ms 100"));
    let first = tmux.wait_for("the queue row", |s| s.contains(&qn));
    assert!(
        first.contains("IN/s") && first.contains("BLK-SEND"),
        "{first}"
    );
    shm_input(&["queue", "send", &qn], b"1\n2\n3\n").ok();
    let moved = tmux.wait_for("3 messages sent", |s| {
        s.lines().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.first() == Some(&qn.as_str()) && c.get(1) == Some(&"3") && c.get(6) == Some(&"3")
        })
    });
    let later = tmux.wait_for("three more samples", |s| {
        sample_of(s) >= sample_of(&moved) + 3
    });
    assert_eq!(
        later.matches("shm top:").count(),
        1,
        "redrawn in place:\n{later}"
    );
    assert_eq!(later.matches("QUEUE").count(), 1, "one header:\n{later}");
    assert_eq!(later.matches(qn.as_str()).count(), 1, "one row:\n{later}");
    tmux.run(&["send-keys", "-t", "top", "C-c"]);
    let start = std::time::Instant::now();
    while tmux.run(&["list-sessions"]).contains("top:") {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "Ctrl-C did not end it"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Piped, `shm top` prints a header and one line per queue per interval.
#[test]
fn top_piped_prints_one_line_per_interval() {
    let q = unique_posix("ops-top-pipe");
    let _cleanup = Cleanup::new(std::slice::from_ref(&q));
    let qn = q.to_string();
    shm(&[
        "queue",
        "create",
        &qn,
        "--capacity",
        "4",
        "--slot-size",
        "8",
    ])
    .ok();
    shm_input(&["queue", "send", &qn], b"x\n").ok();
    let out = shm(&["top", &qn, "--iterations", "3", "--interval-ms", "10"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(
        lines[0].starts_with("TIME QUEUE LEN CAP FILL IN/s OUT/s"),
        "{out:?}"
    );
    for l in &lines[1..] {
        let c: Vec<&str> = l.split(' ').collect();
        assert_eq!(c.len(), 17, "{l}");
        assert_eq!(
            (c[1], c[2], c[3], c[4]),
            (qn.as_str(), "1", "4", "25%"),
            "{l}"
        );
    }
    let out = shm(&["top", &qn, "--iterations", "1", "-n", "--lines"]).ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    shm(&["top", "--interval-ms", "0"]).usage();
    shm(&["top", "--iterations", "0"]).usage();
}

/// Completion scripts parse in their shells (`bash -n`; zsh and fish when
/// installed) and know the new subcommands and flags; the man page renders
/// with `man -l` (when man is installed) and lists every subcommand, and
/// `--dir` writes one page per subcommand.
#[test]
fn completions_and_man_pages_are_generated_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("shmrs-test-man-{}", std::process::id()));
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(dir.clone());
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let script = shm(&["completions", shell]).ok().stdout;
        for word in ["top", "peek", "noheadings", "framing"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        let path = dir.join(format!("shm.{shell}"));
        std::fs::write(&path, &script).expect("write");
        match std::process::Command::new(check)
            .arg("-n")
            .arg(&path)
            .output()
        {
            Ok(o) => assert!(o.status.success(), "{check} -n: {o:?}"),
            // bash is always there; zsh and fish only where installed.
            Err(e) if shell != "bash" => eprintln!("{check} not run: {e}"),
            Err(e) => panic!("bash: {e}"),
        }
    }
    shm(&["completions", "nosuchshell"]).usage();
    let page = shm(&["man"]).ok().stdout;
    assert!(
        page.starts_with(".ie") || page.contains(".TH shm 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    for sub in [
        "shm\\-ls",
        "shm\\-top",
        "shm\\-queue",
        "shm\\-gc",
        "shm\\-completions",
    ] {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
    let path = dir.join("shm.1");
    std::fs::write(&path, &page).expect("write");
    match std::process::Command::new("man")
        .args(["-l"])
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "man -l: {o:?}");
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                text.contains("SUBCOMMANDS") && text.contains("shm-top(1)"),
                "{text}"
            );
        }
        Err(e) => eprintln!("man not run: {e}"),
    }
    let pages = dir.join("pages");
    std::fs::create_dir_all(&pages).expect("dir");
    shm(&["man", "--dir", pages.to_str().expect("utf-8")]).ok();
    for p in [
        "shm.1",
        "shm-ls.1",
        "shm-top.1",
        "shm-queue-peek.1",
        "shm-queue-close.1",
    ] {
        assert!(pages.join(p).exists(), "{p} not written");
    }
    let ls = std::fs::read_to_string(pages.join("shm-ls.1")).expect("shm-ls.1");
    for flag in ["\\-\\-all", "\\-\\-sort", "\\-\\-totals"] {
        assert!(ls.contains(flag), "shm-ls.1 lacks {flag}");
    }
    shm(&["man", "--dir", "/nonexistent/shmrs-test-dir"]).error("cannot write the man pages");
}

#[test]
fn gc_removes_a_last_peer_queue_whose_attached_processes_died_while_its_creator_runs() {
    let id = unique_posix("ops-gc-orphan-queue");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    // This process creates the queue (the default lifetime: the name goes
    // with the last attached handle) and stays alive as its creator.
    let q = shm_queue::Queue::create(
        &id,
        &shm_queue::QueueOptions::new().capacity(4).slot_size(16),
    )
    .expect("create");
    let mut peer = shm_tests::spawn(&["life-recv", &name, "1000"]);
    assert_eq!(shm_tests::read_line(&mut peer, LIMIT), "created false");
    assert_eq!(shm_tests::read_line(&mut peer, LIMIT), "registered");
    // The creator leaves; the peer keeps the name, and gc keeps the queue.
    drop(q);
    let v = shm(&["gc", "--dry-run", "--json", &name]).ok().json();
    assert_eq!(v, Value::Array(vec![]), "an attached queue is in use: {v}");
    // The peer dies: nobody is attached any more, although the creator
    // (this process) runs. Before, gc kept it for its live creator.
    peer.kill();
    let _ = peer.wait(LIMIT);
    let v = shm(&["gc", "--dry-run", "--json", &name]).ok().json();
    let c = &v[0];
    assert_eq!(c["action"], "remove", "{v}");
    let why = c["reason"].as_str().unwrap_or_default();
    assert!(why.contains("no live process is attached"), "{why}");
    shm(&["gc", &name]).ok();
    assert!(
        shm_queue::Queue::open(&id).is_err(),
        "gc left the orphaned queue"
    );
}
