//! Subcommands of the `shm-test-helper` binary, one module per area. Each
//! `run` returns `None` for a subcommand it does not know.

pub mod core;
pub mod life;
pub mod limits;
pub mod queue;
#[allow(unsafe_code)]
pub mod storm;
pub mod sync;
pub mod typed;

/// Runs subcommand `cmd` with `args`; the exit code, or `None` if unknown.
pub fn dispatch(cmd: &str, args: &[String]) -> Option<i32> {
    core::run(cmd, args)
        .or_else(|| sync::run(cmd, args))
        .or_else(|| queue::run(cmd, args))
        .or_else(|| limits::run(cmd, args))
        .or_else(|| storm::run(cmd, args))
        .or_else(|| life::run(cmd, args))
        .or_else(|| typed::run(cmd, args))
}
