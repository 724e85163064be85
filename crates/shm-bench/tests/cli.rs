//! The benchmark binary end to end: a tiny run succeeds and prints its
//! tables; a corrupted transfer fails the run with a non-zero exit; nothing
//! is left in /dev/shm either way.

use std::process::{Command, Output};

fn bench(args: &[&str], corrupt: Option<&str>) -> (Output, u32) {
    let svg = std::env::temp_dir().join(format!("shm-bench-test-{}.svg", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shm-bench"));
    cmd.args(args).arg("--svg").arg(&svg);
    match corrupt {
        Some(seq) => cmd.env("SHM_BENCH_CORRUPT_SEQ", seq),
        None => cmd.env_remove("SHM_BENCH_CORRUPT_SEQ"),
    };
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn shm-bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait shm-bench");
    let _ = std::fs::remove_file(&svg);
    (out, pid)
}

fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("shmrs-bench-{pid}-");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn quick_run_prints_tables_and_cleans_up() {
    let (out, pid) = bench(
        &[
            "--quick",
            "--only",
            "pipe,spin-ring,condvar-ring,shm-queue,stream",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("### Streaming"), "{stdout}");
    assert!(stdout.contains("| shm-queue |"), "{stdout}");
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn corrupted_transfer_fails_the_run() {
    let (out, pid) = bench(
        &["--quick", "--only", "pipe,spin-ring-inplace,stream"],
        Some("7"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not match its pattern"), "{stderr}");
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert_eq!(leftovers(pid), Vec::<String>::new());
}
