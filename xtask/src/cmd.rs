//! Running commands: the [`Xtask`] context (workspace root, cargo, target
//! directory) that builds `cargo` commands, and the helpers every task runs
//! them through, which print each command as a shell line before running it
//! and turn a failed exit into an [`Error`].

use std::env;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::{Error, Result, failed};

/// Where things are and which cargo to run.
pub(crate) struct Xtask {
    pub(crate) root: PathBuf,
    cargo: OsString,
    /// The base target directory (`$CARGO_TARGET_DIR` or `<root>/target`).
    pub(crate) target_base: PathBuf,
    /// Whether `$CARGO_TARGET_DIR` was set: then children get it made
    /// absolute, since they start in the root, not where we were started.
    target_from_env: bool,
}

impl Xtask {
    pub(crate) fn from_env() -> Xtask {
        let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(manifest_dir);
        let cargo = env::var_os("CARGO")
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "cargo".into());
        let target_env = env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty());
        let target_from_env = target_env.is_some();
        let target_base = match target_env {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    // Cargo resolves a relative target dir against the
                    // directory it was started in; our children start in the
                    // root, so make it absolute now.
                    env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
                }
            }
            None => root.join("target"),
        };
        Xtask {
            root,
            cargo,
            target_base,
            target_from_env,
        }
    }

    /// A `cargo` command that runs in the workspace root.
    pub(crate) fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.cargo);
        cmd.args(args).current_dir(&self.root);
        if self.target_from_env {
            cmd.env("CARGO_TARGET_DIR", &self.target_base);
        }
        cmd
    }
}

/// Prints and runs `cmd` with inherited stdio.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result {
    println!("$ {}", show(cmd));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| start_error(cmd, &e))?;
    check_status(cmd, status)
}

/// Like [`run_cmd`], but also returns what the command printed on stdout
/// (while still showing it as it comes).
pub(crate) fn run_cmd_tee(cmd: &mut Command) -> Result<String> {
    println!("$ {}", show(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| start_error(cmd, &e))?;
    let mut captured = String::new();
    if let Some(out) = child.stdout.take() {
        let mut reader = BufReader::new(out);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    print!("{text}");
                    captured.push_str(&text);
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!("reading output of `{}`: {e}", show(cmd))));
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| failed(format!("waiting for `{}`: {e}", show(cmd))))?;
    check_status(cmd, status)?;
    Ok(captured)
}

pub(crate) fn start_error(cmd: &Command, e: &std::io::Error) -> Error {
    failed(format!(
        "could not start `{}`: {e}",
        cmd.get_program().to_string_lossy()
    ))
}

pub(crate) fn check_status(cmd: &Command, status: ExitStatus) -> Result {
    if status.success() {
        return Ok(());
    }
    let why = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    };
    Err(failed(format!("`{}` failed ({why})", show(cmd))))
}

/// The command as a shell line: env overrides, program, arguments.
pub(crate) fn show(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!(
                "{}={}",
                k.to_string_lossy(),
                quote(&v.to_string_lossy())
            ));
        }
    }
    let program = cmd.get_program();
    let program = if Path::new(program).ends_with("cargo") {
        "cargo".into()
    } else {
        program.to_string_lossy()
    };
    parts.push(program.into_owned());
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:+,@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_commands() {
        let mut cmd = Command::new("/x/bin/cargo");
        cmd.args(["test", "a b"]).env("RUSTFLAGS", "--cfg shm_loom");
        assert_eq!(show(&cmd), "RUSTFLAGS='--cfg shm_loom' cargo test 'a b'");
    }
}
