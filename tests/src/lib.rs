//! Shared plumbing for the multi-process tests: unique segment names,
//! cleanup that runs even when a test fails, and children that are always
//! reaped, with a watchdog that turns a hang into a failure.
// `deny`, not `forbid`: the signal-storm helper installs one handler
// (`helper::storm`); besides it, the crate's only `unsafe` are the marker
// impls of the structs the sync helpers share (`helper::sync`) and one
// call of the `unsafe` `Segment::view` that must be refused
// (`helper::core`).
#![deny(unsafe_code)]

pub mod helper;
pub mod random;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shm_core::SegmentId;
use shm_core::shim::real::AtomicU32;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn nonce() -> u64 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (u64::from(std::process::id()) << 32) ^ (n << 20) ^ t
}

/// Prefix of every segment name the tests create; `cargo xtask` checks that
/// none is left behind.
pub const TEST_PREFIX: &str = "shmrs-test-";

/// A POSIX name no other test or run uses: `/shmrs-test-TAG-PID-N`.
pub fn unique_posix(tag: &str) -> SegmentId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    SegmentId::posix(&format!(
        "/{TEST_PREFIX}{tag}-{}-{n}-{:x}",
        std::process::id(),
        nonce() & 0xffff
    ))
    .expect("valid test name")
}

/// A System V key no other test uses: built from the PID and a counter,
/// with the top byte fixed to 0x5e so leftovers are recognisable.
pub fn unique_sysv() -> SegmentId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let low = (std::process::id() & 0xffff) << 8 | (n & 0xff);
    SegmentId::SysV((0x5e00_0000 | (low & 0x00ff_ffff)) as i32)
}

/// Removes the segments it was given when dropped, so a failing test
/// (a panic unwinds through it) still leaves nothing behind.
#[derive(Default)]
pub struct Cleanup(Vec<SegmentId>);

impl Cleanup {
    /// Removes `ids` on drop.
    pub fn new(ids: &[SegmentId]) -> Self {
        Cleanup(ids.to_vec())
    }

    /// Adds one more id.
    pub fn add(&mut self, id: &SegmentId) {
        self.0.push(id.clone());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.0 {
            // Already removed is the normal case.
            let _ = shm_core::remove(id);
        }
    }
}

/// A queue of `capacity` slots of `slot` bytes that stays until removed
/// (`Lifetime::Persistent`): the test's [`Cleanup`] guard removes it, even
/// on failure, whatever the processes using it did. Panics (failing the
/// test) if it cannot be created.
pub fn persistent_queue(id: &SegmentId, capacity: u32, slot: u32) -> shm_queue::Queue {
    shm_queue::Queue::create(
        id,
        &shm_queue::QueueOptions::new()
            .capacity(capacity)
            .slot_size(slot)
            .lifetime(shm_queue::Lifetime::Persistent),
    )
    .unwrap_or_else(|e| panic!("create queue {id}: {e}"))
}

/// A child process that is killed and reaped when dropped.
pub struct Proc {
    child: Option<Child>,
    what: String,
    reader: Option<std::thread::JoinHandle<String>>,
}

/// Path of the helper binary: `$SHM_TEST_HELPER`, or `shm-test-helper` in
/// the target directory and profile of the running test executable
/// (`<target>/<profile>/deps/TEST-HASH` → `<target>/<profile>/shm-test-helper`).
///
/// Cargo builds the helper for every integration test of this package. A
/// test of another package (shm-cli's) finds it there once it has been
/// built in the same profile: `cargo build -p shm-tests` (`--release` for
/// release tests), which `cargo xtask test-multiproc` does first, passing
/// the path in `$SHM_TEST_HELPER`. Panics, saying so, if it is missing.
pub fn helper_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SHM_TEST_HELPER") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("test binary directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let path = dir.join("shm-test-helper");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p shm-tests` in the profile of this test \
         (`--release` for release tests), or set SHM_TEST_HELPER to its path",
        path.display()
    );
    path
}

/// Starts the helper binary with `args`; stdout is piped, stderr inherited.
pub fn spawn(args: &[&str]) -> Proc {
    spawn_env(args, &[])
}

/// Starts the helper binary with `args` and extra environment variables.
pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
    start(Command::new(helper_path()), args, env)
}

/// Starts the helper binary through `wrapper`, a program and its arguments
/// that end by `exec`ing the helper in the same process (for example
/// `unshare --time --boottime 86400`), so the PID is the helper's.
pub fn spawn_via(wrapper: &[&str], args: &[&str]) -> Proc {
    let Some((program, pre)) = wrapper.split_first() else {
        return spawn(args);
    };
    let mut cmd = Command::new(program);
    cmd.args(pre).arg(helper_path());
    let mut p = start(cmd, args, &[]);
    p.what = format!("{} {}", wrapper.join(" "), p.what);
    p
}

fn start(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shm-test-helper");
    Proc {
        child: Some(child),
        what: args.join(" "),
        reader: None,
    }
}

fn read_all(stdout: Option<std::process::ChildStdout>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut out) = stdout {
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
        }
        s
    })
}

impl Proc {
    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The exit status if the child has ended, without waiting.
    pub fn try_status(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Sends SIGKILL (the child is reaped on drop or by `wait`).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }

    /// Starts reading the child's stdout in the background now, so a child
    /// that prints a lot never blocks on a full pipe; `wait` returns it all.
    pub fn drain(&mut self) {
        if self.reader.is_none() {
            let stdout = self.child.as_mut().and_then(|c| c.stdout.take());
            self.reader = Some(read_all(stdout));
        }
    }

    /// Waits for the child with a watchdog: past `limit` it is killed and the
    /// test fails, naming the command, instead of hanging.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        self.drain();
        let reader = self.reader.take().expect("reader started");
        let mut child = self.child.take().expect("child present");
        let start = Instant::now();
        loop {
            match child.try_wait().expect("try_wait") {
                Some(status) => {
                    let out = reader.join().unwrap_or_default();
                    return (status, out);
                }
                None if start.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "watchdog: `{}` hung for more than {limit:?}; killed it",
                        self.what
                    );
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Waits and asserts a zero exit; returns stdout.
    pub fn success(self, limit: Duration) -> String {
        let what = self.what.clone();
        let (status, out) = self.wait(limit);
        assert!(
            status.success(),
            "`{what}` failed with {status}; stdout:\n{out}"
        );
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads one line from a child's stdout (for "ready" handshakes), with a
/// watchdog.
pub fn read_line(p: &mut Proc, limit: Duration) -> String {
    let out = p
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Byte by byte: a buffered reader would swallow what follows the
        // line, and the caller reads that later.
        let mut out = out;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = std::io::Read::read(&mut out, &mut byte) {
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let _ = tx.send((String::from_utf8_lossy(&line).into_owned(), out));
    });
    match rx.recv_timeout(limit) {
        Ok((line, out)) => {
            if let Some(c) = p.child.as_mut() {
                c.stdout = Some(out);
            }
            line.trim_end().to_owned()
        }
        Err(_) => panic!("watchdog: `{}` printed no line within {limit:?}", p.what),
    }
}

/// Waits for a child started outside [`spawn`] (another program), with a
/// watchdog: past `limit` it is killed and the test fails.
pub fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("watchdog: a child ran for more than {limit:?}; killed it");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Runs each multi-process test body once per backend: a module per
/// backend (`posix`, `sysv`), a `#[test]` per body in each, the body given
/// a fresh id of that backend. Defined once here for every test file.
///
/// ```text
/// shm_tests::for_every_backend! {
///     test_name => body;    // fn body(id: SegmentId)
/// }
/// ```
#[macro_export]
macro_rules! for_every_backend {
    ($($test:ident => $body:ident;)*) => {
        mod posix {
            $(
                #[test]
                fn $test() {
                    super::$body($crate::unique_posix(stringify!($test)))
                }
            )*
        }
        mod sysv {
            $(
                #[test]
                fn $test() {
                    super::$body($crate::unique_sysv())
                }
            )*
        }
    };
}
