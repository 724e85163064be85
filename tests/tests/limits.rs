//! Other users and kernel limits, through real processes: a child that drops
//! to uid 65534 is refused with a message that says why; creation modes are
//! applied exactly, whatever the umask, and decide what the other user may
//! do; a tiny tmpfs over `/dev/shm` (private mount namespace) and small
//! System V limits (private IPC namespace) give typed errors, never a
//! `SIGBUS` or a panic; wrong sizes and segments of another kind are refused.
//!
//! Needs root (to drop to another uid, to mount and to write
//! `kernel.shm*` inside a namespace) and util-linux `unshare`. Where one of
//! them is missing the tests fail and say so: passing without having run
//! would prove nothing.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::shim::real::AtomicU64;
use shm_core::{OpenError, Segment, SegmentId, Shared, SharedOptions};
use shm_queue::{Queue, QueueOptions};
use shm_tests::{Cleanup, helper_path, spawn, unique_posix, unique_sysv};

/// Watchdog for one child.
const LIMIT: Duration = Duration::from_secs(60);

/// The unprivileged user the children become (`nobody`/`nogroup`).
const OTHER: &str = "65534";

/// What a child did: its status and its output.
struct Ran {
    what: String,
    status: ExitStatus,
    out: String,
    err: String,
}

impl Ran {
    /// The value of the first `key=` line (a `message=` runs to the end of
    /// its line; other lines may hold several `key=value` words).
    fn get(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.out.lines().find_map(|l| {
            if key == "message" {
                return l.strip_prefix(&prefix);
            }
            l.split_whitespace().find_map(|w| w.strip_prefix(&prefix))
        })
    }

    fn field(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key}= in {self}"))
    }

    /// Exited normally with `code`: not killed by a signal (a `SIGBUS` on a
    /// full `/dev/shm`), not a panic (101).
    fn assert_code(&self, code: i32) {
        assert_eq!(
            (self.status.code(), self.status.signal()),
            (Some(code), None),
            "expected exit {code} from {self}"
        );
    }

    /// The library returned the error `variant` (exit 1) and its message
    /// contains each of `needles`. Returns the message.
    fn assert_error(&self, variant: &str, needles: &[&str]) -> &str {
        self.assert_code(1);
        assert_eq!(self.field("error"), variant, "in {self}");
        let msg = self.field("message");
        for n in needles {
            assert!(msg.contains(n), "message {msg:?} does not contain {n:?}");
        }
        msg
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ({}); stdout:\n{}\nstderr:\n{}",
            self.what, self.status, self.out, self.err
        )
    }
}

/// Runs the helper binary directly (shm_tests::spawn: reaped, watchdog).
fn helper(args: &[&str]) -> Ran {
    let (status, out) = spawn(args).wait(LIMIT);
    Ran {
        what: args.join(" "),
        status,
        out,
        err: String::from("(inherited)"),
    }
}

/// The helper as user 65534, dropped inside the helper (`limits-as`).
fn as_other(args: &[&str]) -> Ran {
    let mut all = vec!["limits-as", OTHER, OTHER];
    all.extend_from_slice(args);
    let r = helper(&all);
    assert_eq!(
        r.get("uid"),
        Some(OTHER),
        "the helper did not drop to uid {OTHER}: {r}"
    );
    r
}

/// A child that is not the helper itself (`sh`, `unshare`): killed and
/// reaped when dropped, so a failing test leaves no process behind.
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `program args` to the end with both outputs captured, under the
/// watchdog.
fn external(program: &str, args: &[&str]) -> Ran {
    let what = format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e} (is util-linux installed?)"));
    let mut guard = Reaped(Some(child));
    let child = guard.0.as_mut().expect("child");
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = pipe(child.stdout.take().map(|p| Box::new(p) as _));
    let err = pipe(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            start.elapsed() < LIMIT,
            "watchdog: `{what}` hung for more than {LIMIT:?}; killing it"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    guard.0 = None;
    Ran {
        what,
        status,
        out: out.join().unwrap_or_default(),
        err: err.join().unwrap_or_default(),
    }
}

/// `sh -c SCRIPT`, where `$H` in the script is the helper binary.
fn sh(wrapper: &[&str], script: &str) -> Ran {
    let helper = helper_path();
    let helper = helper.to_str().expect("helper path is UTF-8");
    assert!(
        !helper.contains('\''),
        "helper path {helper:?} cannot be quoted"
    );
    let script = format!("H='{helper}'; {script}");
    let mut args: Vec<&str> = wrapper.to_vec();
    args.extend(["sh", "-c", &script]);
    let (program, rest) = args.split_first().expect("a program");
    external(program, rest)
}

fn exists(id: &SegmentId) -> bool {
    match Segment::open(id) {
        Ok(_) => true,
        Err(OpenError::NotFound { .. }) => false,
        Err(e) => panic!("probing {id}: {e}"),
    }
}

fn byte0(id: &SegmentId) -> u8 {
    let mut b = [0u8; 1];
    Segment::open_read_only(id)
        .expect("root opens it")
        .read_at(0, &mut b)
        .expect("read byte 0");
    b[0]
}

// ---------------------------------------------------------------------
// 1. Another uid is refused, and told why.

fn another_uid_is_refused(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let mut seg = Segment::create(&id, 4096, 0o600).expect("root creates a 0600 segment");
    seg.write_at(0, b"r").unwrap();
    let name = id.to_string();
    let r = as_other(&["limits-open", &name]);
    r.assert_error(
        "PermissionDenied",
        &[
            "permission denied opening",
            &name,
            "mode 0600",
            "owner uid 0",
        ],
    );
    assert_eq!(byte0(&id), b'r', "the refused user changed the segment");
    // Root itself still can: the refusal is about the user, not the segment.
    helper(&["limits-open", &name]).assert_code(0);
}

#[test]
fn another_uid_is_refused_posix() {
    another_uid_is_refused(unique_posix("uid"));
}

#[test]
fn another_uid_is_refused_sysv() {
    another_uid_is_refused(unique_sysv());
}

#[test]
fn another_uid_is_refused_a_queue() {
    let id = unique_posix("uidq");
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let q = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(64))
        .expect("root creates a queue (default mode 0600)");
    assert_eq!(q.segment().stat().unwrap().mode, 0o600);
    let name = id.to_string();
    as_other(&["limits-open-queue", &name]).assert_error(
        "Open/PermissionDenied",
        &[
            "permission denied opening",
            &name,
            "mode 0600",
            "owner uid 0",
        ],
    );
    assert_eq!(q.stats().sent, 0, "the refused user sent a message");
}

// ---------------------------------------------------------------------
// 2. Modes: exact whatever the umask, and they decide what others may do.

const MODES: [u32; 3] = [0o640, 0o644, 0o666];

/// Runs the helper with umask 077, checking that the umask took.
fn with_umask_077(args: &[&str]) -> Ran {
    let r = sh(
        &[],
        &format!("umask 077; umask; exec \"$H\" {}", args.join(" ")),
    );
    assert_eq!(
        r.out.lines().next().map(str::trim),
        Some("0077"),
        "umask not set: {r}"
    );
    r
}

fn modes_are_exact_and_decide_access(new_id: fn() -> SegmentId) {
    for mode in MODES {
        let id = new_id();
        let _c = Cleanup::new(std::slice::from_ref(&id));
        let name = id.to_string();
        let octal = format!("{mode:04o}");
        let r = with_umask_077(&["limits-create", &name, "4096", &octal, "keep"]);
        r.assert_code(0);
        assert_eq!(r.field("mode"), octal, "mode seen by the creator: {r}");
        let st = Segment::open(&id).unwrap().stat().unwrap();
        assert_eq!(st.mode, mode, "mode seen by another process of {name}");
        let before = byte0(&id);
        let r = as_other(&["limits-open", &name]);
        if mode & 0o006 == 0o006 {
            // Others may read and write: our open asks for both, and gets it.
            r.assert_code(0);
            assert_eq!(r.field("wrote"), "u", "{r}");
            assert_eq!(byte0(&id), b'u', "the write of uid {OTHER} is not visible");
        } else {
            r.assert_error(
                "PermissionDenied",
                &[
                    "permission denied opening",
                    &format!("mode {octal}"),
                    "owner uid 0",
                ],
            );
            assert_eq!(byte0(&id), before, "refused, yet the segment changed");
        }
    }
}

#[test]
fn modes_are_exact_and_decide_access_posix() {
    modes_are_exact_and_decide_access(|| unique_posix("mode"));
}

#[test]
fn modes_are_exact_and_decide_access_sysv() {
    modes_are_exact_and_decide_access(unique_sysv);
}

#[test]
fn queue_modes_are_exact_and_decide_access() {
    for mode in MODES {
        let id = unique_posix("modeq");
        let _c = Cleanup::new(std::slice::from_ref(&id));
        let name = id.to_string();
        let octal = format!("{mode:04o}");
        let r = with_umask_077(&["limits-create-queue", &name, "4", "64", &octal, "keep"]);
        r.assert_code(0);
        assert_eq!(r.field("mode"), octal, "{r}");
        let q = Queue::open(&id).expect("root opens the queue");
        assert_eq!(q.segment().stat().unwrap().mode, mode);
        let r = as_other(&["limits-open-queue", &name]);
        if mode & 0o006 == 0o006 {
            r.assert_code(0);
            assert_eq!(r.field("sent"), "1", "{r}");
            let rx = q.receiver().unwrap();
            assert_eq!(
                rx.try_recv().expect("the message of the other user"),
                format!("from uid {OTHER}").into_bytes()
            );
        } else {
            r.assert_error(
                "Open/PermissionDenied",
                &["permission denied opening", &format!("mode {octal}")],
            );
            assert_eq!(q.len(), 0);
        }
    }
}

// ---------------------------------------------------------------------
// 3. A full /dev/shm: a tiny tmpfs in a private mount namespace.

/// Size of the tmpfs mounted over `/dev/shm`.
const TINY: u64 = 256 * 1024;

/// Runs `helper args` with a fresh 256 KiB tmpfs over `/dev/shm` in a
/// private mount namespace, then lists what is left in it. The helper's
/// exit code is the script's (a signal would be 128 + its number).
fn in_tiny_dev_shm(args: &[&str]) -> (Ran, String) {
    let script = format!(
        "mount -t tmpfs -o size={TINY} tmpfs /dev/shm || exit 97; \
         echo \"mounted=$(stat -f -c '%b*%S' /dev/shm)\"; \
         \"$H\" {}; rc=$?; \
         echo \"left=[$(ls -A /dev/shm | tr '\\n' ' ')]\"; exit $rc",
        args.join(" ")
    );
    let r = sh(&["unshare", "--mount"], &script);
    assert!(
        r.get("mounted").is_some(),
        "could not mount a tmpfs over /dev/shm in a private mount namespace \
         (needs root and util-linux `unshare --mount`): {r}"
    );
    let left = r
        .out
        .lines()
        .find_map(|l| l.strip_prefix("left=["))
        .and_then(|l| l.strip_suffix(']'))
        .unwrap_or_else(|| panic!("no listing of /dev/shm in {r}"))
        .trim()
        .to_owned();
    (r, left)
}

/// The N of "/dev/shm has N bytes free".
fn bytes_free(msg: &str) -> u64 {
    msg.split("/dev/shm has ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"/dev/shm has N bytes free\" in {msg:?}"))
}

#[test]
fn a_full_dev_shm_gives_no_space_not_sigbus() {
    let ids = [
        unique_posix("tiny"),
        unique_posix("tiny"),
        unique_posix("tiny"),
    ];
    // Removes them from the host too, should the namespace not have worked.
    let _c = Cleanup::new(&ids);
    let [fits, too_big, queue] = ids.each_ref().map(|i| i.to_string());

    // Control: what fits is created, and every page can be touched.
    let (r, left) = in_tiny_dev_shm(&["limits-create", &fits, "65536", "0600"]);
    r.assert_code(0);
    assert_eq!(r.field("touched"), "65536", "{r}");
    assert_eq!(r.field("mounted"), format!("{}*4096", TINY / 4096), "{r}");
    assert_eq!(left, "", "the owner's drop did not remove it");

    // 1 MiB in 256 KiB: refused at create, not a SIGBUS at first touch.
    let (r, left) = in_tiny_dev_shm(&["limits-create", &too_big, "1048576", "0600"]);
    let msg = r.assert_error(
        "NoSpace",
        &[
            &format!("no space to create {too_big} of 1048576 bytes"),
            &format!("bytes free of {TINY}"),
        ],
    );
    assert!(bytes_free(msg) <= TINY, "{msg}");
    assert_eq!(left, "", "a failed create left its name behind");

    // Two segments: the second does not fit in what the first left, and
    // the message gives what is really free.
    let (r, left) = in_tiny_dev_shm(&["limits-create-two", &fits, &too_big, "196608"]);
    assert_eq!(r.field("first"), "ok", "{r}");
    let msg = r.assert_error("NoSpace", &["no space to create", "/dev/shm has "]);
    assert!(
        bytes_free(msg) < 196608,
        "says {} bytes free, yet 196608 did not fit: {msg}",
        bytes_free(msg)
    );
    assert_eq!(left, "", "{r}");

    // A queue too large for it.
    let (r, left) = in_tiny_dev_shm(&["limits-create-queue", &queue, "4096", "256", "0600"]);
    r.assert_error("Create/NoSpace", &[&queue, "/dev/shm has "]);
    assert_eq!(left, "", "a failed queue create left its name behind");

    for id in &ids {
        assert!(!exists(id), "{id} leaked out of the mount namespace");
    }
}

// ---------------------------------------------------------------------
// 4. System V limits, in a private IPC namespace.

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .unwrap_or_else(|e| panic!("read kernel.{name}: {e}"))
        .trim()
        .to_owned()
}

/// Sets `kernel.NAME` to `value` in a fresh IPC namespace and runs
/// `helper args` there.
fn in_private_ipc(name: &str, value: &str, args: &[&str]) -> Ran {
    let host = sysctl(name);
    let script = format!(
        "echo {value} > /proc/sys/kernel/{name} || exit 97; \
         echo {name}=$(cat /proc/sys/kernel/{name}); exec \"$H\" {}",
        args.join(" ")
    );
    let r = sh(&["unshare", "--ipc"], &script);
    assert_eq!(
        r.get(name),
        Some(value),
        "could not set kernel.{name} in a private IPC namespace \
         (needs root and util-linux `unshare --ipc`): {r}"
    );
    assert_eq!(sysctl(name), host, "kernel.{name} of the host changed");
    r
}

#[test]
fn sysv_shmmax_gives_a_typed_limit_error() {
    let id = unique_sysv();
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let r = in_private_ipc("shmmax", "4096", &["limits-create", &name, "8192", "0600"]);
    r.assert_error("Limit", &[&name, "8192 bytes", "kernel.shmmax = 4096"]);
    assert!(!exists(&id), "created on the host instead");
}

#[test]
fn sysv_shmmni_gives_a_typed_limit_error() {
    let ids = [unique_sysv(), unique_sysv()];
    let _c = Cleanup::new(&ids);
    let [first, second] = ids.each_ref().map(|i| i.to_string());
    let r = in_private_ipc(
        "shmmni",
        "1",
        &["limits-create-two", &first, &second, "4096"],
    );
    assert_eq!(r.field("first"), "ok", "{r}");
    r.assert_error("Limit", &[&second, "kernel.shmmni = 1"]);
    for id in &ids {
        assert!(!exists(id), "{id} created on the host instead");
    }
}

// ---------------------------------------------------------------------
// 5. Wrong inputs through a process: typed errors, exit 1, no panic.

fn wrong_sizes(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    helper(&["limits-create", &name, "0", "0600"]).assert_error(
        "InvalidSize",
        &[
            &format!("cannot create {name} with size 0"),
            "cannot be empty",
        ],
    );
    assert!(!exists(&id));
    let absurd = (1u64 << 50).to_string();
    helper(&["limits-create", &name, &absurd, "0600"]).assert_error(
        "InvalidSize",
        &[
            &format!("with size {absurd}"),
            &format!("larger than the {} byte limit", shm_core::MAX_SEGMENT_SIZE),
        ],
    );
    assert!(!exists(&id));
}

#[test]
fn wrong_sizes_are_refused_posix() {
    wrong_sizes(unique_posix("size"));
}

#[test]
fn wrong_sizes_are_refused_sysv() {
    wrong_sizes(unique_sysv());
}

#[test]
fn a_queue_with_no_slots_is_refused() {
    let id = unique_posix("cap0");
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let r = helper(&["limits-create-queue", &name, "0", "64", "0600"]);
    r.assert_error("InvalidConfig", &[&format!("invalid queue {name}")]);
    assert!(!exists(&id));
}

fn foreign_segment_is_not_a_queue(id: SegmentId) {
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let mut raw = Segment::create(&id, 65536, 0o600).unwrap();
    raw.write_at(0, b"certainly not a queue header, just bytes")
        .unwrap();
    helper(&["limits-open-queue", &name]).assert_error(
        "Open/NotOurs",
        &[&format!("{name} was not made by this library"), "magic"],
    );
}

#[test]
fn foreign_segment_is_not_a_queue_posix() {
    foreign_segment_is_not_a_queue(unique_posix("raw"));
}

#[test]
fn foreign_segment_is_not_a_queue_sysv() {
    foreign_segment_is_not_a_queue(unique_sysv());
}

#[test]
fn an_all_zero_posix_segment_is_not_a_queue() {
    // Nobody holds its init lock, so it is not waited on.
    let id = unique_posix("zero");
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let _raw = Segment::create(&id, 65536, 0o600).unwrap();
    helper(&["limits-open-queue", &name])
        .assert_error("Open/NotOurs", &["all zeros", "not made by this library"]);
}

#[test]
fn another_type_is_not_a_queue() {
    let id = unique_posix("layout");
    let _c = Cleanup::new(std::slice::from_ref(&id));
    let name = id.to_string();
    let counter = Shared::<AtomicU64>::create(&id, &SharedOptions::new(), |c| {
        c.store(7, Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    helper(&["limits-open-queue", &name]).assert_error(
        "Open/LayoutMismatch",
        &[&format!("{name} holds another type or layout")],
    );
    assert_eq!(counter.get().load(Ordering::Relaxed), 7, "the opener wrote");
}
