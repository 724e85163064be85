//! `sync-*` subcommands.

/// Runs a `sync-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let _ = (cmd, args);
    None
}
