//! `core-*` subcommands: segments and the header handshake.

/// Runs a `core-*` subcommand.
pub fn run(cmd: &str, args: &[String]) -> Option<i32> {
    let _ = (cmd, args);
    None
}
