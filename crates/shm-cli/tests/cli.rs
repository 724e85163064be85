//! The `shm` command, run as a real process: listing checked against
//! `ipcs`, `lsipc` and `/proc/sysvipc/shm`; segments made and mapped by other
//! programs (python3, `ipcmk`) listed with the right PIDs; every
//! subcommand's happy path and its refusals, including another user's.
//!
//! The `shm` binary is the one cargo builds for these tests
//! (`env!("CARGO_BIN_EXE_shm")`, see `common/mod.rs`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shm_core::SegmentId;
use shm_tests::{Cleanup, unique_posix, unique_sysv};

mod common;

use common::{Holder, LIMIT, Out, run_program, shm, shm_as_nobody, shm_input, shm_path};

/// Maps `/dev/shm/NAME` read-write, as any program would.
const PY_MAP_POSIX: &str = r#"
import mmap, os, sys
fd = os.open("/dev/shm/" + sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
os.close(fd)
print("ready", flush=True)
sys.stdin.read()
"#;

/// Creates a POSIX segment with Python's own module and maps it.
const PY_CREATE_POSIX: &str = r#"
import sys
from multiprocessing import shared_memory
s = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.read()
s.close()
s.unlink()
"#;

/// Attaches a System V segment by shmid with libc's shmat.
const PY_ATTACH_SYSV: &str = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
addr = libc.shmat(int(sys.argv[1]), None, 0)
if addr is None or addr == ctypes.c_void_p(-1).value:
    print("shmat failed", ctypes.get_errno(), flush=True)
    sys.exit(1)
print("ready", flush=True)
sys.stdin.read()
"#;

/// `shm ls --json`, as an array.
fn ls_json(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["ls", "--json"];
    args.extend_from_slice(extra);
    match shm(&args).ok().json() {
        Value::Array(a) => a,
        other => panic!("ls --json is not an array: {other}"),
    }
}

fn find_posix<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["name"] == name)
}

fn find_sysv(list: &[Value], shmid: i64) -> Option<&Value> {
    list.iter()
        .find(|e| e["backend"] == "sysv" && e["id"] == shmid)
}

fn pids(v: &Value) -> Vec<u64> {
    v["pids"]
        .as_array()
        .expect("pids array")
        .iter()
        .map(|p| p.as_u64().expect("pid"))
        .collect()
}

/// This process's effective uid, from `/proc/self/status`.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .expect("Uid line")
}

fn name_of(id: &SegmentId) -> String {
    id.to_string()
}

fn key_of(id: &SegmentId) -> i32 {
    match id {
        SegmentId::SysV(k) => *k,
        _ => panic!("not a key"),
    }
}

/// The shmid of a System V key, from `/proc/sysvipc/shm`.
fn shmid_of(key: i32) -> i64 {
    let e = shm_core::list::sysv_entries()
        .expect("sysvipc")
        .into_iter()
        .find(|e| e.key == key)
        .expect("segment in /proc/sysvipc/shm");
    i64::from(e.shmid)
}

/// A number from lsipc's JSON, which prints some versions' numbers as
/// strings.
fn lsipc_num(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().expect("integer"),
        Value::String(s) => s.trim().parse().expect("numeric string"),
        other => panic!("not a number: {other}"),
    }
}

#[test]
fn sysv_listing_matches_ipcs_lsipc_and_proc() {
    let a = unique_sysv();
    let b = unique_sysv();
    let _cleanup = Cleanup::new(&[a.clone(), b.clone()]);
    shm(&["create", &name_of(&a), "--size", "8K", "--mode", "640"]).ok();
    shm(&["create", &name_of(&b), "--size", "12288"]).ok();
    let id_a = shmid_of(key_of(&a));
    let id_b = shmid_of(key_of(&b));
    // Another program holds `a` attached.
    let holder = Holder::python(PY_ATTACH_SYSV, &[&id_a.to_string()]);

    let list = ls_json(&["--sysv"]);
    assert!(list.iter().all(|e| e["backend"] == "sysv"));
    let ea = find_sysv(&list, id_a).expect("a listed");
    let eb = find_sysv(&list, id_b).expect("b listed");
    assert_eq!(ea["key"], key_of(&a));
    assert_eq!(ea["name"], Value::Null);
    assert_eq!(
        ea["kind"],
        Value::Null,
        "System V segments are never attached"
    );
    assert_eq!(ea["size"], 8192);
    assert_eq!(ea["mode"], 0o640);
    assert_eq!(ea["nattch"], 1);
    assert_eq!(pids(ea), vec![u64::from(holder.pid())]);
    assert_eq!(ea["lpid"], holder.pid());
    assert_eq!(eb["size"], 12288);
    assert_eq!(eb["mode"], 0o600);
    assert_eq!(eb["nattch"], 0);
    assert!(pids(eb).is_empty());

    // /proc/sysvipc/shm, field by field.
    for (e, id) in [(ea, &a), (eb, &b)] {
        let p = shm_core::list::sysv_entries()
            .expect("sysvipc")
            .into_iter()
            .find(|p| p.key == key_of(id))
            .expect("in /proc");
        assert_eq!(e["id"], p.shmid);
        assert_eq!(e["size"], p.size);
        assert_eq!(e["nattch"], p.nattch);
        assert_eq!(e["cpid"], p.cpid);
        assert_eq!(e["lpid"], p.lpid);
        assert_eq!(e["uid"], p.uid);
        assert_eq!(e["mode"], p.mode);
    }

    // `ipcs -m` (key, shmid, bytes, nattch) and `ipcs -m -p` (cpid, lpid).
    let ipcs = run_program(Path::new("ipcs"), &[], &["-m"], b"")
        .ok()
        .stdout;
    let ipcs_p = run_program(Path::new("ipcs"), &[], &["-m", "-p"], b"")
        .ok()
        .stdout;
    for e in [ea, eb] {
        let id = e["id"].as_i64().expect("id");
        let key = format!("{:#010x}", e["key"].as_i64().expect("key") as u32);
        let row: Vec<&str> = ipcs
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 6 && f[1] == id.to_string())
            .unwrap_or_else(|| panic!("shmid {id} not in ipcs -m:\n{ipcs}"));
        assert_eq!(row[0], key);
        assert_eq!(row[4], e["size"].to_string());
        assert_eq!(row[5], e["nattch"].to_string());
        let row: Vec<&str> = ipcs_p
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[0] == id.to_string())
            .unwrap_or_else(|| panic!("shmid {id} not in ipcs -m -p:\n{ipcs_p}"));
        assert_eq!(row[2], e["cpid"].to_string());
        assert_eq!(row[3], e["lpid"].to_string());
    }

    // `lsipc -m --json`.
    let lsipc = run_program(
        Path::new("lsipc"),
        &[],
        &[
            "-m",
            "--json",
            "--bytes",
            "-o",
            "KEY,ID,SIZE,NATTCH,CPID,LPID",
        ],
        b"",
    )
    .ok()
    .json();
    let rows = lsipc["sharedmemory"].as_array().expect("lsipc rows");
    for e in [ea, eb] {
        let row = rows
            .iter()
            .find(|r| lsipc_num(&r["id"]) == e["id"].as_i64().expect("id"))
            .expect("in lsipc");
        let key = row["key"].as_str().expect("key");
        let key = u32::from_str_radix(key.trim_start_matches("0x"), 16).expect("hex key") as i32;
        assert_eq!(Value::from(key), e["key"]);
        assert_eq!(lsipc_num(&row["size"]), e["size"].as_i64().expect("size"));
        for f in ["nattch", "cpid", "lpid"] {
            assert_eq!(lsipc_num(&row[f]), e[f].as_i64().expect(f), "{f}");
        }
    }
    holder.finish();
    let after = ls_json(&["--sysv"]);
    let ea = find_sysv(&after, id_a).expect("a listed");
    assert_eq!(ea["nattch"], 0);
    assert!(pids(ea).is_empty());
}

#[test]
fn posix_segment_of_another_program_is_listed_with_every_process_mapping_it() {
    let id = unique_posix("cli-py");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let name = name_of(&id);
    let file = &name[1..];
    let creator = Holder::python(PY_CREATE_POSIX, &[file, "20000"]);
    let mapper = Holder::python(PY_MAP_POSIX, &[file]);
    let mut expected = vec![u64::from(creator.pid()), u64::from(mapper.pid())];
    expected.sort_unstable();

    let list = ls_json(&["--posix"]);
    assert!(list.iter().all(|e| e["backend"] == "posix"));
    let e = find_posix(&list, &name).expect("listed");
    assert_eq!(pids(e), expected);
    assert_eq!(e["nattch"], 2);
    assert_eq!(e["kind"], Value::Null, "a foreign segment has no kind");
    assert_eq!(e["key"], Value::Null);
    assert_eq!(e["id"], Value::Null);
    assert_eq!(e["cpid"], Value::Null);
    assert_eq!(e["lpid"], Value::Null);
    assert_eq!(e["uid"], euid());
    assert!(e["size"].as_u64().expect("size") >= 20000);
    assert_eq!(
        shm_core::list::attached_pids_posix(&name).expect("pids"),
        expected.iter().map(|&p| p as u32).collect::<Vec<_>>()
    );
    // The table shows the same.
    let table = shm(&["ls", "--posix"]).ok().stdout;
    let row = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name.as_str()))
        .expect("row in the table");
    assert!(
        row.ends_with(&format!("{},{}", expected[0], expected[1])),
        "{row}"
    );
    assert!(table.starts_with("TYPE"), "{table}");

    mapper.finish();
    let e = ls_json(&["--posix"]);
    let e = find_posix(&e, &name).expect("listed");
    assert_eq!(pids(e), vec![u64::from(creator.pid())]);
    // A live mapper means gc leaves it alone, even with --all.
    let gc = shm(&["gc", "--dry-run", "--all", "--json", &name])
        .ok()
        .json();
    assert_eq!(gc, Value::Array(vec![]));
    creator.finish();
    assert!(find_posix(&ls_json(&["--posix"]), &name).is_none());
}

#[test]
fn sysv_segment_made_by_ipcmk_is_listed_attached_and_collected() {
    let out = run_program(Path::new("ipcmk"), &[], &["-M", "4096", "-p", "0600"], b"")
        .ok()
        .stdout;
    let shmid: i64 = out
        .split_whitespace()
        .last()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no shmid in ipcmk output {out:?}"));
    let id = SegmentId::SysVId(shmid as i32);
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let seg = format!("sysv-id:{shmid}");

    let list = ls_json(&[]);
    let e = find_sysv(&list, shmid).expect("listed");
    assert_eq!(e["nattch"], 0);
    let cpid = e["cpid"].as_i64().expect("cpid");
    assert!(cpid > 0);

    let holder = Holder::python(PY_ATTACH_SYSV, &[&shmid.to_string()]);
    let e = shm(&["stat", &seg, "--json"]).ok().json();
    assert_eq!(pids(&e), vec![u64::from(holder.pid())]);
    assert_eq!(e["nattch"], 1);
    assert!(e.get("queue").is_none());
    // Attached: not stale.
    let gc = shm(&["gc", "--dry-run", "--json", &seg]).ok().json();
    assert_eq!(gc, Value::Array(vec![]));
    holder.finish();

    // Unattached, creator (ipcmk) gone: stale.
    let gc = shm(&["gc", "--dry-run", "--json", &seg]).ok().json();
    let c = &gc[0];
    assert_eq!(c["id"], shmid);
    assert_eq!(c["action"], "remove");
    assert_eq!(c["removed"], false);
    assert_eq!(c["foreign"], false);
    assert!(
        c["reason"]
            .as_str()
            .expect("reason")
            .contains(&cpid.to_string())
    );
    assert!(
        find_sysv(&ls_json(&[]), shmid).is_some(),
        "dry run removed it"
    );
    let out = shm(&["gc", &seg]).ok();
    let key = format!("{:#010x}", c["key"].as_i64().expect("key") as u32);
    assert!(
        out.stdout.contains(&format!("removed sysv:{key}")),
        "{out:?}"
    );
    assert!(find_sysv(&ls_json(&[]), shmid).is_none());
}

#[test]
fn stat_shows_raw_segments_and_queues() {
    let raw = unique_posix("cli-stat");
    let q = unique_posix("cli-statq");
    let key = unique_sysv();
    let _cleanup = Cleanup::new(&[raw.clone(), q.clone(), key.clone()]);
    shm(&["create", &name_of(&raw), "--size", "1M", "--mode", "0644"]).ok();
    shm(&["create", &name_of(&key), "--size", "4096"]).ok();
    shm(&[
        "queue",
        "create",
        &name_of(&q),
        "--capacity",
        "4",
        "--slot-size",
        "32",
    ])
    .ok();

    let e = shm(&["stat", &name_of(&raw), "--json"]).ok().json();
    assert_eq!(e["backend"], "posix");
    assert_eq!(e["name"], name_of(&raw));
    assert_eq!(e["size"], 1 << 20);
    assert_eq!(e["mode"], 0o644);
    assert_eq!(e["kind"], Value::Null);
    assert!(e.get("queue").is_none(), "not a queue: {e}");
    for f in [
        "backend", "name", "key", "id", "size", "uid", "mode", "nattch", "cpid", "lpid", "pids",
        "kind",
    ] {
        assert!(e.get(f).is_some(), "field {f} missing in {e}");
    }

    let text = shm(&["stat", &name_of(&raw)]).ok().stdout;
    assert!(text.contains("1048576 bytes (1M)"), "{text}");
    assert!(text.contains("0644 (rw-r--r--)"), "{text}");

    let e = shm(&["stat", &name_of(&key), "--json"]).ok().json();
    assert_eq!(e["backend"], "sysv");
    assert_eq!(e["key"], key_of(&key));
    assert_eq!(e["id"], shmid_of(key_of(&key)));
    assert_eq!(e["kind"], Value::Null, "a raw System V segment is foreign");

    shm_input(&["queue", "send", &name_of(&q)], b"a\nbb\n").ok();
    let e = shm(&["stat", &name_of(&q), "--json"]).ok().json();
    assert_eq!(e["kind"], "queue");
    let qs = &e["queue"];
    assert_eq!(qs["capacity"], 4);
    assert_eq!(qs["slot_size"], 32);
    assert_eq!(qs["len"], 2);
    assert_eq!(qs["sent"], 2);
    assert_eq!(qs["received"], 0);
    assert_eq!(qs["producers"], 0);
    assert_eq!(qs["consumers"], 0);
    assert_eq!(qs["closed"], false);
    assert_eq!(qs["recovered"], 0);
    let text = shm(&["stat", &name_of(&q)]).ok().stdout;
    assert!(text.contains("2 of 4 slots used"), "{text}");
    // `ls` tells the queue by its header.
    let list = ls_json(&["--posix"]);
    assert_eq!(
        find_posix(&list, &name_of(&q)).expect("listed")["kind"],
        "queue"
    );
}

#[test]
fn sysv_queue_kind_comes_from_stat_and_ls_leaves_it_untouched() {
    let key = unique_sysv();
    let _cleanup = Cleanup::new(std::slice::from_ref(&key));
    let kn = name_of(&key);
    shm(&[
        "queue",
        "create",
        &kn,
        "--capacity",
        "4",
        "--slot-size",
        "8",
    ])
    .ok();
    shm_input(&["queue", "send", &kn], b"x\n").ok();
    let kernel = || {
        shm_core::list::sysv_entries()
            .expect("sysvipc")
            .into_iter()
            .find(|e| e.key == key_of(&key))
            .expect("listed by the kernel")
    };
    let before = kernel();
    // `ls` never attaches: the kernel's lpid, atime and nattch stay.
    let list = ls_json(&["--sysv"]);
    let e = find_sysv(&list, i64::from(before.shmid)).expect("listed");
    assert_eq!(e["kind"], Value::Null);
    let after = kernel();
    assert_eq!(
        (after.lpid, after.atime, after.nattch),
        (before.lpid, before.atime, before.nattch)
    );
    // `stat` reports the kernel's numbers from before it attached, then
    // attaches to read the header.
    let s = shm(&["stat", &kn, "--json"]).ok().json();
    assert_eq!(s["kind"], "queue");
    assert_eq!(s["lpid"], before.lpid);
    assert_eq!(s["queue"]["len"], 1);
    assert_eq!(s["queue"]["slot_size"], 8);
    assert_ne!(kernel().lpid, before.lpid, "stat attached after reading");
    let out = shm(&["queue", "recv", &kn]).ok();
    assert_eq!(out.stdout, "x\n");
}

#[test]
fn refusals_bad_names_missing_segments_usage() {
    let missing = unique_posix("cli-missing");
    shm(&["stat", &name_of(&missing)]).error("no segment");
    shm(&["stat", "sysv-id:2147483647"]).error("no segment");
    shm(&["rm", &name_of(&missing)]).error("no segment");
    shm_input(&["queue", "send", &name_of(&missing)], b"x\n").error("no segment");
    shm(&["queue", "recv", &name_of(&missing)]).error("no segment");
    // Bad names and values are usage errors.
    for args in [
        &["stat", "nope"][..],
        &["stat", "/a/b"],
        &["stat", "sysv:zz"],
        &["stat", "sysv:0"],
        &["rm"],
        &["create", "/shmrs-test-x"],
        &["create", "/shmrs-test-x", "--size", "12Q"],
        &["create", "/shmrs-test-x", "--size", "1", "--mode", "999"],
        &["ls", "--posix", "--sysv"],
        &["frobnicate"],
        &[],
    ] {
        let out = shm(args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:#?}");
    }
    shm(&["stat", "/a/b"]).usage();
    // Refused by the library: exit 1 with its reason.
    let id = unique_posix("cli-zero");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    shm(&["create", &name_of(&id), "--size", "0"]).error("cannot be empty");
    shm(&["create", "sysv-id:5", "--size", "4096"]).error("by key");
}

#[test]
fn create_and_rm_happy_paths_and_conflicts() {
    let a = unique_posix("cli-rm-a");
    let b = unique_posix("cli-rm-b");
    let k = unique_sysv();
    let _cleanup = Cleanup::new(&[a.clone(), b.clone(), k.clone()]);
    let out = shm(&["create", &name_of(&a), "--size", "64K"]).ok();
    assert!(out.stdout.contains("65536 bytes"), "{out:?}");
    shm(&["create", &name_of(&a), "--size", "64K"]).error("already exists");
    shm(&["create", &name_of(&b), "--size", "4096", "--mode", "600"]).ok();
    let out = shm(&["create", &name_of(&k), "--size", "4096"]).ok();
    assert!(out.stdout.contains("shmid"), "{out:?}");
    let md = std::fs::metadata(format!("/dev/shm/{}", &name_of(&a)[1..])).expect("file");
    assert_eq!(md.len(), 65536);

    // One missing among several: the others are removed, exit 1.
    let missing = unique_posix("cli-rm-missing");
    let out = shm(&["rm", &name_of(&a), &name_of(&missing), &name_of(&k)]);
    out.error(&name_of(&missing));
    let list = ls_json(&[]);
    assert!(find_posix(&list, &name_of(&a)).is_none());
    assert!(
        shm_core::list::sysv_entries()
            .expect("sysv")
            .iter()
            .all(|e| e.key != key_of(&k))
    );
    shm(&["rm", &name_of(&b)]).ok();
    shm(&["rm", &name_of(&b)]).error("no segment");
}

#[test]
fn another_user_is_refused_with_mode_and_owner() {
    if euid() != 0 {
        // Becoming uid 65534 takes root; CI runs as root.
        eprintln!("another_user_is_refused_with_mode_and_owner needs root; not run");
        return;
    }
    let p = unique_posix("cli-other");
    let q = unique_posix("cli-otherq");
    let k = unique_sysv();
    let _cleanup = Cleanup::new(&[p.clone(), q.clone(), k.clone()]);
    shm(&["create", &name_of(&p), "--size", "4096", "--mode", "600"]).ok();
    shm(&["create", &name_of(&k), "--size", "4096", "--mode", "600"]).ok();
    shm(&[
        "queue",
        "create",
        &name_of(&q),
        "--capacity",
        "2",
        "--slot-size",
        "8",
        "--mode",
        "600",
    ])
    .ok();
    let shmid = shmid_of(key_of(&k));

    for seg in [name_of(&p), name_of(&k), format!("sysv-id:{shmid}")] {
        let out = shm_as_nobody(&["rm", &seg]).error("permission denied");
        assert!(
            out.stderr.contains("mode 0600, owner uid 0"),
            "{seg}: {out:#?}"
        );
    }
    let out = shm_as_nobody(&["queue", "recv", &name_of(&q), "--timeout-ms", "100"])
        .error("permission denied");
    assert!(out.stderr.contains("mode 0600, owner uid 0"), "{out:#?}");
    // What can be seen without permission is still shown, with a warning
    // for what cannot.
    let out = shm_as_nobody(&["stat", &name_of(&q), "--json"]).ok();
    assert_eq!(out.json()["kind"], Value::Null);
    assert!(out.stderr.contains("warning:"), "{out:#?}");
    assert!(out.stderr.contains("Permission denied"), "{out:#?}");
    // Nothing was removed.
    let list = ls_json(&[]);
    assert!(find_posix(&list, &name_of(&p)).is_some());
    assert!(find_sysv(&list, shmid).is_some());
    // gc as another user removes nothing that is not theirs.
    shm_as_nobody(&["gc", "--all", &name_of(&p)]).error("permission denied");
    assert!(find_posix(&ls_json(&[]), &name_of(&p)).is_some());
}

/// A user who may read a segment but not write it (mode 0644, uid 65534
/// through `setpriv`) inspects it: `shm stat` shows the kind, the header
/// and a queue's counters, `shm ls` the kind, all through read-only
/// mappings (`O_RDONLY` + `PROT_READ`, `SHM_RDONLY`), with no warning
/// about the segment.
/// Before, `stat` opened read-write: the counters and the System V kind
/// were missing, with a "permission denied" warning.
#[test]
fn a_reader_without_write_permission_can_stat_and_list() {
    if euid() != 0 {
        eprintln!("a_reader_without_write_permission_can_stat_and_list needs root; not run");
        return;
    }
    let q = unique_posix("cli-ro-q");
    let k = unique_sysv();
    let raw = unique_posix("cli-ro-raw");
    let _cleanup = Cleanup::new(&[q.clone(), k.clone(), raw.clone()]);
    for name in [name_of(&q), name_of(&k)] {
        shm(&[
            "queue",
            "create",
            &name,
            "--capacity",
            "4",
            "--slot-size",
            "16",
            "--mode",
            "644",
        ])
        .ok();
        shm_input(&["queue", "send", &name], b"one\ntwo\n").ok();
    }
    shm(&["create", &name_of(&raw), "--size", "4096", "--mode", "644"]).ok();
    for name in [name_of(&q), name_of(&k)] {
        let out = shm_as_nobody(&["stat", &name, "--json"]).ok();
        // (A warning that other users' /proc/PID/maps are unreadable is
        // expected; none about this segment.)
        assert!(!out.stderr.contains("queue's counters"), "{name}: {out:#?}");
        assert!(!out.stderr.contains("kind is unknown"), "{name}: {out:#?}");
        assert!(
            !out.stderr.contains("ermission denied opening"),
            "{name}: {out:#?}"
        );
        let s = out.json();
        assert_eq!(s["kind"], "queue", "{name}: {s}");
        assert_eq!(s["mode"], 0o644, "{name}: {s}");
        assert_eq!(s["queue"]["len"], 2, "{name}: {s}");
        assert_eq!(s["queue"]["slot_size"], 16, "{name}: {s}");
        assert_eq!(s["queue"]["sent"], 2, "{name}: {s}");
        let text = shm_as_nobody(&["stat", &name]).ok();
        assert!(text.stdout.contains("2 of 4 slots used"), "{text:#?}");
        // Nothing was taken or changed: root still receives both.
        assert_eq!(
            shm(&["stat", &name, "--json"]).ok().json()["queue"]["len"],
            2
        );
    }
    let out = shm_as_nobody(&["stat", &name_of(&raw), "--json"]).ok();
    assert!(!out.stderr.contains("ermission denied opening"), "{out:#?}");
    let out = shm_as_nobody(&["ls", "--json"]).ok();
    let list = match out.json() {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    };
    let e = find_posix(&list, &name_of(&q)).expect("the queue is listed");
    assert_eq!(e["kind"], "queue");
    assert!(find_posix(&list, &name_of(&raw)).is_some());
    // Writing is still refused, with the mode and owner.
    shm_input(&["queue", "send", &name_of(&q)], b"x\n").ok();
    let out = shm_as_nobody(&["queue", "recv", &name_of(&q), "--timeout-ms", "100"])
        .error("permission denied");
    assert!(out.stderr.contains("mode 0644, owner uid 0"), "{out:#?}");
}

#[test]
fn gc_removes_our_orphans_and_foreign_ones_only_with_all() {
    let orphan = unique_posix("cli-gc-orphan");
    let held = unique_posix("cli-gc-held");
    let foreign = unique_posix("cli-gc-foreign");
    let _cleanup = Cleanup::new(&[orphan.clone(), held.clone(), foreign.clone()]);
    for q in [&orphan, &held] {
        // The creating `shm` process exits at once: the creator is gone.
        shm(&[
            "queue",
            "create",
            &name_of(q),
            "--capacity",
            "2",
            "--slot-size",
            "8",
        ])
        .ok();
    }
    shm(&["create", &name_of(&foreign), "--size", "4096"]).ok();
    let holder = Holder::python(PY_MAP_POSIX, &[&name_of(&held)[1..]]);
    let segs = [name_of(&orphan), name_of(&held), name_of(&foreign)];
    let mut args = vec!["gc", "--dry-run", "--json"];
    args.extend(segs.iter().map(String::as_str));

    let v = shm(&args).ok().json();
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 2, "{v}");
    let o = arr.iter().find(|c| c["name"] == segs[0]).expect("orphan");
    assert_eq!(o["kind"], "queue");
    assert_eq!(o["action"], "remove");
    assert_eq!(o["foreign"], false);
    let f = arr.iter().find(|c| c["name"] == segs[2]).expect("foreign");
    assert_eq!(f["action"], "keep");
    assert_eq!(f["foreign"], true);
    let text = shm(&["gc", "--dry-run", &segs[0], &segs[1], &segs[2]])
        .ok()
        .stdout;
    assert!(
        text.contains(&format!("would remove {}", segs[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!("foreign, unattached: {}", segs[2])),
        "{text}"
    );

    let mut run: Vec<&str> = vec!["gc"];
    run.extend(segs.iter().map(String::as_str));
    let out = shm(&run).ok();
    assert!(
        out.stdout.contains(&format!("removed {}", segs[0])),
        "{out:?}"
    );
    let list = ls_json(&["--posix"]);
    assert!(find_posix(&list, &segs[0]).is_none());
    assert!(find_posix(&list, &segs[1]).is_some(), "a held one stays");
    assert!(find_posix(&list, &segs[2]).is_some(), "foreign needs --all");
    run.insert(1, "--all");
    shm(&run).ok();
    let list = ls_json(&["--posix"]);
    assert!(find_posix(&list, &segs[2]).is_none());
    assert!(find_posix(&list, &segs[1]).is_some(), "a held one stays");
    holder.finish();
    // Once nobody maps it, the queue whose creator is gone goes too.
    shm(&["gc", &segs[1]]).ok();
    assert!(find_posix(&ls_json(&["--posix"]), &segs[1]).is_none());
}

#[test]
fn doctor_gives_every_check_a_verdict_and_a_hint() {
    let out = shm(&["doctor", "--json"]);
    let v = out.json();
    let checks = v.as_array().expect("array");
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().expect("check name"))
        .collect();
    for want in [
        "/dev/shm space",
        "/dev/shm permissions",
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "RemoveIPC",
        "hugepages",
        "vm.max_map_count",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let mut failed = false;
    for c in checks {
        let verdict = c["verdict"].as_str().expect("verdict");
        assert!(["OK", "WARN", "FAIL"].contains(&verdict), "{c}");
        failed |= verdict == "FAIL";
        assert!(!c["hint"].as_str().expect("hint").is_empty(), "{c}");
        assert!(!c["value"].as_str().expect("value").is_empty(), "{c}");
    }
    assert_eq!(out.code, Some(if failed { 1 } else { 0 }), "{out:#?}");
    // /dev/shm here is a sticky tmpfs (the test machine's).
    let perms = checks
        .iter()
        .find(|c| c["check"] == "/dev/shm permissions")
        .expect("check");
    assert!(
        perms["value"].as_str().expect("value").contains("1777"),
        "{perms}"
    );
    let text = shm(&["doctor"]).stdout;
    assert!(text.contains("hint: "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("OK ") || l.starts_with("WARN")),
        "{text}"
    );
}

#[test]
fn queue_pipes_lines_from_one_shell_to_another() {
    let q = unique_posix("cli-pipe");
    let raw = unique_posix("cli-pipe-raw");
    let _cleanup = Cleanup::new(&[q.clone(), raw.clone()]);
    let qn = name_of(&q);
    shm(&[
        "queue",
        "create",
        &qn,
        "--capacity",
        "4",
        "--slot-size",
        "16",
    ])
    .ok();
    // A receiver waiting for the first producer, started before it.
    let recv = std::thread::spawn({
        let qn = qn.clone();
        move || shm(&["queue", "recv", &qn, "--timeout-ms", "20000"])
    });
    // Wait until the receiver registered, then send more lines than the
    // queue holds: the sender blocks until they are taken.
    let start = Instant::now();
    loop {
        let s = shm(&["stat", &qn, "--json"]).ok().json();
        if s["queue"]["consumers"] == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "receiver never joined"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    let input = format!("{}\n\nlast-no-newline", lines.join("\n"));
    shm_input(&["queue", "send", &qn], input.as_bytes()).ok();
    let out = recv.join().expect("receiver thread").ok();
    let mut want = lines.clone();
    want.push(String::new());
    want.push("last-no-newline".into());
    assert_eq!(out.stdout, format!("{}\n", want.join("\n")));

    // --count stops early; the rest stays queued.
    shm_input(&["queue", "send", &qn], b"a\nb\nc\n").ok();
    let out = shm(&["queue", "recv", &qn, "--count", "2"]).ok();
    assert_eq!(out.stdout, "a\nb\n");
    let s = shm(&["stat", &qn, "--json"]).ok().json();
    assert_eq!(s["queue"]["len"], 1);
    // Producers that came and went, queue drained: recv ends with exit 0.
    let out = shm(&["queue", "recv", &qn, "--count", "5"]).ok();
    assert_eq!(out.stdout, "c\n");

    // A line longer than the slot is refused, never truncated; earlier
    // lines were sent.
    let out = shm_input(
        &["queue", "send", &qn],
        b"ok\nthis line is longer than sixteen bytes\nnever\n",
    )
    .error("line 2 is longer than the 16-byte slots");
    assert!(out.stderr.contains("not sent"), "{out:?}");
    let out = shm(&["queue", "recv", &qn, "--timeout-ms", "200"]).ok();
    assert_eq!(out.stdout, "ok\n");

    // Full, and every consumer that joined has left: the sender is told
    // rather than left waiting.
    shm_input(
        &["queue", "send", &qn, "--timeout-ms", "5000"],
        b"1\n2\n3\n4\n5\n",
    )
    .error("every consumer of the queue is gone (4 lines were sent)");
    let out = shm(&["queue", "recv", &qn, "--count", "4"]).ok();
    assert_eq!(out.stdout, "1\n2\n3\n4\n");
    // Every producer that joined has left and the queue is drained: recv
    // ends at once with exit 0, timeout or not.
    let out = shm(&["queue", "recv", &qn, "--timeout-ms", "5000"]).ok();
    assert_eq!(out.stdout, "");

    // Wrong kind: a raw segment is not a queue.
    shm(&["create", &name_of(&raw), "--size", "4096"]).ok();
    let out = shm_input(&["queue", "send", &name_of(&raw)], b"x\n");
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    shm(&[
        "queue",
        "create",
        &qn,
        "--capacity",
        "4",
        "--slot-size",
        "16",
    ])
    .error("already exists");
    let z = unique_posix("cli-pipe-zero");
    let _c2 = Cleanup::new(std::slice::from_ref(&z));
    shm(&[
        "queue",
        "create",
        &name_of(&z),
        "--capacity",
        "0",
        "--slot-size",
        "16",
    ])
    .error("capacity");
}

#[test]
fn timeouts_on_a_fresh_queue() {
    let q = unique_posix("cli-fresh");
    let r = unique_posix("cli-fresh-r");
    let _cleanup = Cleanup::new(&[q.clone(), r.clone()]);
    let (qn, rn) = (name_of(&q), name_of(&r));
    for n in [&qn, &rn] {
        shm(&["queue", "create", n, "--capacity", "2", "--slot-size", "8"]).ok();
    }
    // No consumer has ever joined: a sender waits for room until its
    // timeout.
    shm_input(&["queue", "send", &qn, "--timeout-ms", "200"], b"1\n2\n3\n")
        .error("timed out sending line 3");
    let s = shm(&["stat", &qn, "--json"]).ok().json();
    assert_eq!(s["queue"]["len"], 2);
    assert_eq!(s["queue"]["sent"], 2);
    // No producer has ever joined: recv waits for the first, so only the
    // timeout ends it.
    shm(&["queue", "recv", &rn, "--timeout-ms", "200"]).error("no message arrived");
}

#[test]
fn demo_streams_between_two_processes_and_cleans_up() {
    let out = shm(&["demo", "--messages", "20000", "--pings", "200"]).ok();
    let text = &out.stdout;
    assert!(text.contains("checksum"), "{text}");
    assert!(text.contains("matches"), "{text}");
    assert!(text.contains("p50"), "{text}");
    // The listing printed while it ran shows the queue with three
    // processes: the demo, the producer and the consumer.
    let row = text
        .lines()
        .find(|l| l.starts_with("posix") && l.contains("/shmrs-demo-") && !l.contains("-pong"))
        .unwrap_or_else(|| panic!("no listing in {text}"));
    let pids = row.split_whitespace().last().expect("pids");
    assert_eq!(pids.split(',').count(), 3, "{row}");
    let name = row.split_whitespace().nth(1).expect("name");
    assert!(
        !Path::new(&format!("/dev/shm/{}", &name[1..])).exists(),
        "{name} left behind"
    );
    assert!(!out.stderr.contains("error"), "{out:#?}");
}

/// Address-space limit for the bounded-memory runs: a `shm` that buffers
/// without bound fails an allocation under it (and aborts) instead of
/// eating the machine.
const AS_LIMIT: u64 = 256 << 20;
/// Largest peak RSS any `shm` invocation of the input tests may reach.
const RSS_LIMIT_KB: u64 = 48 << 10;

/// Runs `shm args` under `prlimit --as` and `/usr/bin/time`, with `stdin`
/// as its standard input; the output, and the child's peak RSS in KiB
/// (`ru_maxrss`, taken by `time` from `wait4`). The `maxrss-kb` line is
/// removed from the stderr returned.
fn shm_measured(args: &[&std::ffi::OsStr], stdin: Stdio) -> (Out, u64) {
    let what = format!("shm {args:?}");
    let mut child = Command::new("prlimit")
        .arg(format!("--as={AS_LIMIT}"))
        .args(["/usr/bin/time", "-f", "maxrss-kb %M"])
        .arg(shm_path())
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start `{what}` (needs prlimit and /usr/bin/time): {e}"));
    let reader = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break s,
            None if start.elapsed() > LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("watchdog: `{what}` ran for more than {LIMIT:?}; killed it");
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let stderr = err.join().unwrap_or_default();
    let mut rss = None;
    let mut rest = String::new();
    for l in stderr.lines() {
        match l.strip_prefix("maxrss-kb ") {
            Some(kb) => rss = kb.trim().parse::<u64>().ok(),
            // `time`'s own note on a non-zero status.
            None if l.starts_with("Command exited with non-zero status") => {}
            None => {
                rest.push_str(l);
                rest.push('\n');
            }
        }
    }
    let rss = rss.unwrap_or_else(|| panic!("`{what}`: no maxrss line from time: {stderr:?}"));
    (
        Out {
            // `time` exits 128+N for a child killed by signal N.
            code: status.code(),
            stdout: out.join().unwrap_or_default(),
            stderr: rest,
        },
        rss,
    )
}

/// Exit 0, 1 with one `error:` line, or 2 with clap's `error:` first; never
/// a signal (which `time` reports as status 128+N and a "Command
/// terminated" line), a panic or a hang; and peak RSS under the limit.
fn check_outcome(what: &str, out: &Out, rss_kb: u64) {
    assert!(
        matches!(out.code, Some(0..=2)),
        "{what}: exit status {:?} (a signal or a crash): {out:#?}",
        out.code
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {out:#?}");
    assert!(
        !out.stderr.contains("Command terminated"),
        "{what}: {out:#?}"
    );
    let errors = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .count();
    match out.code {
        Some(0) => assert_eq!(errors, 0, "{what}: success with an error line: {out:#?}"),
        Some(1) => assert_eq!(errors, 1, "{what}: expected one error line: {out:#?}"),
        // A usage error: clap's one `error:` line, or the help when no
        // subcommand was given.
        _ => assert!(
            errors <= 1 && (errors == 1 || out.stderr.contains("Usage:")),
            "{what}: {out:#?}"
        ),
    }
    assert!(
        rss_kb < RSS_LIMIT_KB,
        "{what}: peak RSS {rss_kb} KiB, over {RSS_LIMIT_KB} KiB: {out:#?}"
    );
}

/// A line that never ends (`shm queue send /q < /dev/zero`) is refused as
/// soon as it is longer than a slot, with memory bounded by the slot size:
/// before the fix it buffered without limit (1.4 GB of RSS within a second
/// here), and under the address-space limit it aborted on a failed
/// allocation.
#[test]
fn queue_send_refuses_an_endless_line_in_bounded_memory() {
    let q = unique_posix("cli-zero-line");
    let _cleanup = Cleanup::new(std::slice::from_ref(&q));
    let qn = name_of(&q);
    for slot in ["16", "4096", "65536"] {
        shm(&[
            "queue",
            "create",
            &qn,
            "--capacity",
            "4",
            "--slot-size",
            slot,
        ])
        .ok();
        let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
        let words = ["queue", "send", qn.as_str(), "--timeout-ms", "1000"];
        let args: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
        let (out, rss) = shm_measured(&args, Stdio::from(zero));
        eprintln!("slot {slot}: /dev/zero refused with peak RSS {rss} KiB");
        check_outcome("send < /dev/zero", &out, rss);
        let out = out.error(&format!("line 1 is longer than the {slot}-byte slots"));
        assert!(out.stderr.contains("not sent"), "{out:#?}");
        // Nothing was sent.
        let s = shm(&["stat", &qn, "--json"]).ok().json();
        assert_eq!(s["queue"]["sent"], 0, "{s}");
        shm(&["rm", &qn]).ok();
    }
}

/// Every input of the `shm` command, fuzzed: arguments (valid, malformed,
/// not UTF-8, repeated), names, sizes, modes, counts and timeouts, and
/// standard input (random bytes, long lines, no newline at all). Each run
/// must end with status 0, 1 (one `error:` line) or 2 (usage), never a
/// signal, a panic or a hang, with its peak RSS bounded. Only segments of
/// this test are named, so nothing else on the machine is touched (`gc`
/// runs with `--dry-run` and a name). `SHM_FUZZ_SEED` replays a run,
/// `SHM_FUZZ_CASES` sets how many (default 120).
#[test]
fn fuzz_every_cli_input_exit_codes_one_error_line_bounded_memory() {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStrExt;
    let mut rng = shm_tests::random::Rng::from_env("SHM_FUZZ_SEED");
    let cases = shm_tests::random::env_u64("SHM_FUZZ_CASES").unwrap_or(120);
    let q = unique_posix("cli-fuzz-q");
    let raw = unique_posix("cli-fuzz-raw");
    let fresh = unique_posix("cli-fuzz-new");
    let key = unique_sysv();
    // A valid POSIX name that ends in `..`, unique to this run.
    let dots = SegmentId::posix(&format!("{}..", name_of(&unique_posix("cli-fuzz-dots"))))
        .expect("a name ending in .. is valid");
    // `sysv:-1` is among the names below, and `create sysv:-1 --size 1`
    // is a valid case (key 0xffffffff): remove what it makes too; the same
    // for the `..` name.
    let _cleanup = Cleanup::new(&[
        q.clone(),
        raw.clone(),
        fresh.clone(),
        key.clone(),
        dots.clone(),
        SegmentId::SysV(-1),
    ]);
    shm(&[
        "queue",
        "create",
        &name_of(&q),
        "--capacity",
        "8",
        "--slot-size",
        "32",
    ])
    .ok();
    shm(&["create", &name_of(&raw), "--size", "4096"]).ok();
    let long_name = format!("/{}", "n".repeat(300));
    let names: Vec<OsString> = vec![
        name_of(&q).into(),
        name_of(&raw).into(),
        name_of(&fresh).into(),
        key.to_string().into(),
        "".into(),
        "/".into(),
        "noslash".into(),
        "/a/b".into(),
        long_name.into(),
        "sysv:".into(),
        "sysv:0x".into(),
        "sysv:99999999999".into(),
        "sysv:-1".into(),
        "sysv-id:-1".into(),
        "sysv-id:abc".into(),
        "sysv-id:2147483647".into(),
        OsStr::from_bytes(b"/shmrs-test-\xff\xfe").into(),
        name_of(&dots).into(),
        "-".into(),
        "--".into(),
    ];
    let numbers: Vec<&str> = vec![
        "0",
        "1",
        "7",
        "32",
        "4096",
        "1K",
        "64k",
        "1M",
        "2T",
        "1099511627777",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "1X",
        "",
        " ",
        "1.5M",
        "0x10",
        "99999999999999999999999",
    ];
    let modes: Vec<&str> = vec![
        "600",
        "0644",
        "0o600",
        "777",
        "1777",
        "8",
        "-1",
        "",
        "abc",
        "99999999999",
        "0",
    ];
    // Capacities and slot sizes: the valid ones multiply to at most 16 MiB
    // (the others are refused), so no case fills /dev/shm.
    let geometry: Vec<&str> = vec![
        "0",
        "1",
        "7",
        "32",
        "4096",
        "1K",
        "2T",
        "1073741825",
        "4294967296",
        "-1",
        "1X",
        "",
        "0x10",
        "99999999999999999999999",
    ];
    // Every `recv` and `send` gets one: a recv on a queue no producer has
    // joined waits for the first, so only a timeout bounds it.
    let timeouts: Vec<&str> = vec!["0", "1", "20", "-5", "x", ""];
    let pick = |rng: &mut shm_tests::random::Rng, v: &[&str]| -> OsString {
        v[rng.below(v.len() as u64) as usize].into()
    };
    // `-0`, a `--framing` (valid or not), both, or none.
    let push_framing =
        |rng: &mut shm_tests::random::Rng, args: &mut Vec<OsString>| match rng.below(5) {
            0 => args.push("-0".into()),
            1 | 2 => {
                args.push("--framing".into());
                args.push(pick(
                    rng,
                    &["lines", "nul", "length", "length", "bogus", ""],
                ));
            }
            3 => args.extend(["-0".into(), "--framing".into(), "length".into()]),
            _ => {}
        };
    for case in 0..cases {
        let name = names[rng.below(names.len() as u64) as usize].clone();
        let mut args: Vec<OsString> = Vec::new();
        let mut input: Vec<u8> = Vec::new();
        let mut endless = false;
        match rng.below(11) {
            0 => {
                args.push("ls".into());
                for f in [
                    "--json",
                    "--posix",
                    "--sysv",
                    "--bogus",
                    "--all",
                    "--noheadings",
                    "--raw",
                    "--bytes",
                    "--totals",
                    "--list-columns",
                ] {
                    if rng.below(3) == 0 {
                        args.push(f.into());
                    }
                }
                let values: [(&str, &[&str]); 6] = [
                    ("--user", &["root", "0", "nobody", "no-such-user", "", "-1"]),
                    ("--pid", &["1", "0", "-1", "x", "4294967296"]),
                    ("--kind", &["queue", "anon", "memfd", "deleted", ""]),
                    (
                        "-o",
                        &["type,rss", "SEGMENT", "bogus", "", ",", "dev,inode,atime"],
                    ),
                    ("--sort", &["size", "rss", "bogus", ""]),
                    ("--", &["/shmrs-test-*", "*", "[", "memfd:*"]),
                ];
                for (flag, vals) in values {
                    if rng.below(4) == 0 {
                        args.push(flag.into());
                        args.push(pick(&mut rng, vals));
                    }
                }
            }
            1 => {
                args.extend(["stat".into(), name]);
                if rng.below(2) == 0 {
                    args.push("--json".into());
                }
            }
            2 => {
                args.extend(["create".into(), name]);
                if rng.below(5) != 0 {
                    args.extend(["--size".into(), pick(&mut rng, &numbers)]);
                }
                if rng.below(2) == 0 {
                    args.extend(["--mode".into(), pick(&mut rng, &modes)]);
                }
            }
            3 => args.extend(["rm".into(), name]),
            4 => args.extend(["gc".into(), "--dry-run".into(), name]),
            5 => {
                args.extend(["queue".into(), "create".into(), name]);
                if rng.below(6) != 0 {
                    args.extend(["--capacity".into(), pick(&mut rng, &geometry)]);
                }
                if rng.below(6) != 0 {
                    args.extend(["--slot-size".into(), pick(&mut rng, &geometry)]);
                }
                if rng.below(2) == 0 {
                    args.extend(["--mode".into(), pick(&mut rng, &modes)]);
                }
            }
            6 | 7 => {
                args.extend(["queue".into(), "send".into(), name]);
                args.extend(["--timeout-ms".into(), pick(&mut rng, &timeouts)]);
                push_framing(&mut rng, &mut args);
                // Random bytes, lines around the slot size, no newline,
                // or a line that never ends.
                endless = rng.below(5) == 0;
                let len = match rng.below(4) {
                    0 => rng.below(64),
                    1 => rng.below(4096),
                    2 => rng.range(30, 40),
                    _ => rng.below(1 << 20),
                } as usize;
                let newline_every = rng.range(1, 80);
                input = (0..len)
                    .map(|i| {
                        if rng.below(newline_every) == 0 && i % 2 == 0 {
                            b'\n'
                        } else {
                            rng.next_u64() as u8
                        }
                    })
                    .collect();
            }
            8 => {
                args.extend(["queue".into(), "recv".into(), name]);
                args.extend(["--timeout-ms".into(), pick(&mut rng, &timeouts)]);
                if rng.below(2) == 0 {
                    args.extend(["--count".into(), pick(&mut rng, &numbers)]);
                }
                push_framing(&mut rng, &mut args);
            }
            9 => match rng.below(8) {
                0..=3 => {
                    args.extend(["queue".into(), "peek".into(), name]);
                    if rng.below(2) == 0 {
                        args.extend(["--count".into(), pick(&mut rng, &numbers)]);
                    }
                    push_framing(&mut rng, &mut args);
                }
                // Rarely: a closed queue refuses every later send.
                4 => args.extend(["queue".into(), "close".into(), name]),
                5 => {
                    args.push("completions".into());
                    args.push(pick(
                        &mut rng,
                        &["bash", "zsh", "fish", "elvish", "tcsh", ""],
                    ));
                }
                6 => args.push("man".into()),
                _ => args.extend(["doctor".into()]),
            },
            _ => {
                // Junk: unknown subcommands and flags, empty and odd bytes.
                let junk: [&[u8]; 8] = [
                    b"frobnicate",
                    b"--help-me",
                    b"",
                    b"\xff",
                    b"queue",
                    b"-x",
                    b"stat",
                    b"--",
                ];
                for _ in 0..rng.range(0, 4) {
                    args.push(OsStr::from_bytes(junk[rng.below(8) as usize]).into());
                }
            }
        }
        let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let what = format!(
            "case {case}: shm {refs:?} ({} of input)",
            if endless {
                "/dev/zero".to_owned()
            } else {
                format!("{} bytes", input.len())
            }
        );
        let stdin = if endless {
            Stdio::from(std::fs::File::open("/dev/zero").expect("/dev/zero"))
        } else if input.is_empty() {
            Stdio::null()
        } else {
            let path = std::env::temp_dir()
                .join(format!("shmrs-fuzz-input-{}-{case}", std::process::id()));
            std::fs::write(&path, &input).expect("write the fuzz input");
            let f = std::fs::File::open(&path).expect("open the fuzz input");
            let _ = std::fs::remove_file(&path);
            Stdio::from(f)
        };
        let (out, rss) = shm_measured(&refs, stdin);
        check_outcome(&what, &out, rss);
        // Leave the named segments as they were meant to be for the next
        // cases: the queue and the raw segment exist, `fresh` may.
        if out.code == Some(0) && refs.first() == Some(&OsStr::new("rm")) {
            if refs.get(1) == Some(&OsStr::new(&name_of(&q))) {
                shm(&[
                    "queue",
                    "create",
                    &name_of(&q),
                    "--capacity",
                    "8",
                    "--slot-size",
                    "32",
                ])
                .ok();
            } else if refs.get(1) == Some(&OsStr::new(&name_of(&raw))) {
                shm(&["create", &name_of(&raw), "--size", "4096"]).ok();
            }
        }
    }
}

/// The keys of a JSON object.
fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// Every key `shm ls --json` and `shm stat --json` print is a field of the
/// serde form of `SegmentInfo` (and `Stats` for the `queue` object), with
/// the same value.
#[test]
fn serde_info_types_match_cli_json() {
    let id = unique_posix("cli-serde-json");
    let _cleanup = Cleanup::new(std::slice::from_ref(&id));
    let q = shm_queue::Queue::create(
        &id,
        &shm_queue::QueueOptions::new().capacity(4).slot_size(32),
    )
    .unwrap();
    let tx = q.sender().unwrap();
    tx.send(b"one").unwrap();

    let name = id.to_string();
    let stat = shm(&["stat", &name, "--json"]).ok().json();
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
    let ls = shm(&["ls", "--json"]).ok().json();
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
