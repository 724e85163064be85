//! `limits-*` subcommands: other users, modes and kernel limits.

/// Runs a `limits-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let _ = (cmd, args);
    None
}
