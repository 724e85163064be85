//! What every example shares (included with `#[path]` by the examples of
//! shm-core, shm-sync and shm-queue): the program runs either as the
//! parent, or as the peer the parent started by running itself again as
//! `PROGRAM ROLE NAME`, so one `cargo run --example` shows two real
//! processes. Errors end the process with one `error:` line, and a peer is
//! never left behind.

use std::process::{Child, Command, ExitCode, ExitStatus};

/// Any error of an example.
pub type Error = Box<dyn std::error::Error>;

/// Runs `peer(NAME)` when started as `PROGRAM ROLE NAME` (by
/// [`Peer::start`]), else `parent()`.
pub fn run(
    role: &str,
    parent: impl FnOnce() -> Result<(), Error>,
    peer: impl FnOnce(&str) -> Result<(), Error>,
) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1), args.get(2)) {
        (Some(r), Some(name)) if r == role => peer(name),
        _ => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The peer process: killed and reaped if the parent fails before it
/// waited for it.
pub struct Peer(Option<Child>);

impl Peer {
    /// Starts this program again as `PROGRAM ROLE NAME`.
    pub fn start(role: &str, name: &str) -> std::io::Result<Peer> {
        let child = Command::new(std::env::current_exe()?)
            .args([role, name])
            .spawn()?;
        Ok(Peer(Some(child)))
    }

    /// Waits for the peer to exit.
    pub fn wait(mut self) -> std::io::Result<ExitStatus> {
        match self.0.take() {
            Some(mut c) => c.wait(),
            None => Err(std::io::Error::other("the peer was already waited for")),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
