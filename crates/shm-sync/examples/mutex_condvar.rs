//! Two processes share a struct behind a robust mutex and take turns,
//! waiting on a condition variable for the other's move.
//!
//! Run it with `cargo run -p shm-sync --example mutex_condvar`. The parent
//! creates the segment and plays 0; it starts itself again as player 1.
//!
//! What it shows:
//!
//! - a `#[repr(C)]` struct made shareable with `#[derive(ShmSafe)]` (no
//!   `unsafe` anywhere in this file);
//! - `Shared<T>`: only the creator initializes the mutex and the condvar,
//!   the other process opens the validated, ready segment;
//! - `Mutex::lock` with the owner-death case handled (a player killed
//!   holding the lock leaves `LockError::OwnerDied`, and the survivor
//!   repairs the data and marks the mutex consistent);
//! - `FutexCondvar::wait_while`: sleeps without CPU until it is our turn.

#[path = "../../shm-core/examples/support/peer.rs"]
mod support;

use support::Error;

use std::process::ExitCode;
use std::time::Duration;

use shm_core::{SegmentId, Shared, SharedOptions, ShmSafe, ShmShared};
use shm_sync::{FutexCondvar, LockError, Mutex, MutexGuard};

const ROUNDS: u64 = 1_000;

/// The data both processes change, under the lock.
#[derive(Clone, Copy, Debug, ShmSafe)]
#[repr(C)]
struct Board {
    /// Whose move it is: 0 or 1.
    turn: u64,
    /// Moves made so far.
    moves: u64,
    /// Sum of the players' numbers over all moves.
    total: u64,
}

/// What lives in the segment: the lock with its data, and the condvar.
#[derive(ShmSafe, ShmShared)]
#[repr(C)]
struct Table {
    board: Mutex<Board>,
    changed: FutexCondvar,
}

fn main() -> ExitCode {
    support::run("player", host, open_and_play)
}

fn host() -> Result<(), Error> {
    let name = format!("/shmrs-demo-mutex-{}", std::process::id());
    let id = SegmentId::posix(&name)?;
    // Create: the initializer runs before the segment is marked ready, so
    // the other process never sees an uninitialized mutex.
    let table = Shared::<Table>::create(&id, &SharedOptions::new(), |t| {
        t.board.init(Board {
            turn: 0,
            moves: 0,
            total: 0,
        })?;
        t.changed.init()?;
        Ok(())
    })?;
    println!("[player 0, pid {}] created {name}", std::process::id());
    let child = support::Peer::start("player", &name)?;
    play(table.get(), 0)?;
    let status = child.wait()?;
    let board = *lock(&table.get().board)?;
    // The creator owns the name; removing it says so explicitly.
    table.segment().remove()?;
    println!("[player 0] final board {board:?}; segment removed");
    if !status.success() {
        return Err(format!("player 1 failed: {status}").into());
    }
    // Player 0 adds 1 per move, player 1 adds 2.
    if board.moves != 2 * ROUNDS || board.total != 3 * ROUNDS {
        return Err(format!("wrong final board {board:?}").into());
    }
    Ok(())
}

fn open_and_play(name: &str) -> Result<(), Error> {
    // Open: validates the header (and the fingerprint of `Table`) and
    // waits, with a deadline, for the creator's init.
    let opts = SharedOptions::new().timeout(Duration::from_secs(10));
    let table = Shared::<Table>::open(&SegmentId::posix(name)?, &opts)?;
    println!("[player 1, pid {}] opened {name}", std::process::id());
    play(table.get(), 1)?;
    println!("[player 1] done");
    Ok(())
}

/// Locks, repairing the board if the previous holder died holding it.
fn lock(m: &Mutex<Board>) -> Result<MutexGuard<'_, Board>, Error> {
    match m.lock() {
        Ok(g) => Ok(g),
        Err(LockError::OwnerDied(mut g)) => {
            eprintln!("the other player died holding the lock; repairing");
            g.turn = 0;
            g.make_consistent()?;
            Ok(g)
        }
        Err(e) => Err(e.to_string().into()),
    }
}

fn play(t: &Table, me: u64) -> Result<(), Error> {
    for _ in 0..ROUNDS {
        let guard = lock(&t.board)?;
        // Sleep until it is our turn; the mutex is released while asleep.
        let mut board = t
            .changed
            .wait_while(guard, |b| b.turn != me)
            .map_err(|e| e.to_string())?;
        board.total += me + 1;
        board.moves += 1;
        board.turn = 1 - me;
        drop(board);
        t.changed.notify_all();
    }
    Ok(())
}
