//! Running the `shm` command in the CLI's tests: under a watchdog with its
//! exit status and output, and background holders that keep a segment
//! mapped until told to go.
//!
//! The binary is `env!("CARGO_BIN_EXE_shm")`: cargo builds it for the
//! integration tests of its own package, so no test runs cargo. Shared by
//! `cli.rs` and `cli_ops.rs`; what one of them does not use is not dead.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one `shm` invocation may take before it counts as a hang.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The `shm` binary cargo built for these tests.
pub fn shm_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shm"))
}

/// What a finished command left.
#[derive(Debug)]
pub struct Out {
    /// The exit status; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Out {
    /// Asserts exit 0.
    pub fn ok(self) -> Out {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    /// Exit 1 with exactly one `error:` line naming `needle`.
    pub fn error(self, needle: &str) -> Out {
        assert_eq!(self.code, Some(1), "expected exit 1: {self:#?}");
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "expected one error line: {self:#?}");
        assert!(
            errors[0].contains(needle),
            "error line lacks {needle:?}: {self:#?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self
    }

    /// Asserts a usage error: exit 2, clap's `error:` first.
    pub fn usage(self) -> Out {
        assert_eq!(self.code, Some(2), "expected a usage error: {self:#?}");
        assert!(self.stderr.starts_with("error:"), "{self:#?}");
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
}

/// Runs `program args` with `input` on stdin, under a watchdog.
pub fn run_program(program: &Path, pre: &[&str], args: &[&str], input: &[u8]) -> Out {
    let what = format!("{} {}", pre.join(" "), args.join(" "));
    let mut cmd = if pre.is_empty() {
        Command::new(program)
    } else {
        let mut c = Command::new(pre[0]);
        c.args(&pre[1..]).arg(program);
        c
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start `{what}`: {e}"));
    let mut stdin = child.stdin.take();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&input);
        }
    });
    let reader = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
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
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let _ = writer.join();
    Out {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `shm ARGS` with empty standard input.
pub fn shm(args: &[&str]) -> Out {
    run_program(shm_path(), &[], args, b"")
}

/// Runs `shm ARGS` with `input` on standard input.
pub fn shm_input(args: &[&str], input: &[u8]) -> Out {
    run_program(shm_path(), &[], args, input)
}

/// Runs `shm` as uid/gid 65534 with no supplementary groups.
pub fn shm_as_nobody(args: &[&str]) -> Out {
    run_program(
        shm_path(),
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        args,
        b"",
    )
}

/// A background process (python3, or `shm` itself) that prints `ready`
/// once it holds what it should, and exits when its stdin closes. Killed
/// and reaped when dropped.
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    what: String,
}

impl Holder {
    /// Starts `program args` and waits (30 s watchdog) for its `ready` line.
    pub fn start(program: &Path, args: &[&str]) -> Holder {
        let what = format!("{} {}", program.display(), args.join(" "));
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start `{what}`: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("watchdog: `{what}` did not get ready within 30 s"));
        assert_eq!(line.trim(), "ready", "`{what}` did not get ready");
        Holder { child, stdin, what }
    }

    /// Starts `python3 -c script args`.
    pub fn python(script: &str, args: &[&str]) -> Holder {
        let mut all = vec!["-c", script];
        all.extend_from_slice(args);
        Holder::start(Path::new("python3"), &all)
    }

    /// The holder's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin and waits (with a watchdog) for a clean exit.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(s) => {
                    assert!(s.success(), "`{}` exited with {s}", self.what);
                    return;
                }
                None if start.elapsed() > Duration::from_secs(30) => {
                    panic!("watchdog: `{}` did not exit within 30 s", self.what)
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
