//! `queue-*` subcommands.

/// Runs a `queue-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let _ = (cmd, args);
    None
}
