//! loom's atomics and a loom-modelled futex.
//!
//! The futex is a table of sleeping waiters, keyed by the word's address,
//! behind one loom mutex and condvar (loom resets the `lazy_static` for every
//! execution). `wait` checks the word and enqueues itself under the table
//! lock, as the kernel does under its hash-bucket lock; `wake` marks up to
//! `n` waiters of that address as woken. A waiter returns `Woken` only if a
//! `wake` picked it, so a protocol that loses a wake-up deadlocks the model
//! and loom reports it. A wait with a deadline yields once and then either
//! was woken or times out, so both outcomes are explored.

use std::time::{Duration, Instant};

use loom::sync::{Condvar, Mutex};

use super::{AtomicU32, AtomicU64, Ordering};
use crate::futex::WaitResult;

/// No spinning under loom: it only multiplies the states to explore.
pub(crate) struct Spin;

impl Spin {
    pub(crate) fn new() -> Self {
        Spin
    }

    pub(crate) fn spin(&mut self) -> bool {
        false
    }

    pub(crate) fn pause(&mut self) -> bool {
        false
    }
}

/// No slices under loom: a sleep lasts until the caller's own deadline, so
/// that a lost wake-up is a deadlock the model reports instead of a delay.
pub(crate) fn slice_end(deadline: Option<Instant>, _every: Duration) -> Option<Instant> {
    deadline
}

/// Time does not pass under loom: a deadline passes only when the modelled
/// futex says it timed out (the caller learns that from the sleep's
/// result, which keeps every execution deterministic).
pub(crate) fn passed(_at: Instant) -> bool {
    false
}

struct Waiter {
    addr: usize,
    id: usize,
    woken: bool,
}

#[derive(Default)]
struct Table {
    next_id: usize,
    waiters: Vec<Waiter>,
}

struct Futexes {
    table: Mutex<Table>,
    cv: Condvar,
}

loom::lazy_static! {
    static ref FUTEXES: Futexes = Futexes {
        table: Mutex::new(Table::default()),
        cv: Condvar::new(),
    };
}

fn addr<T>(word: &T) -> usize {
    word as *const T as usize
}

fn is_woken(t: &Table, id: usize) -> bool {
    t.waiters.iter().any(|w| w.id == id && w.woken)
}

/// The modelled `FUTEX_WAIT_BITSET`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitResult {
    wait_at(
        addr(word),
        || word.load(Ordering::SeqCst) == expected,
        deadline,
    )
}

/// The modelled wait on the low half of a 64-bit word.
pub(crate) fn futex_wait_low(
    word: &AtomicU64,
    expected: u32,
    deadline: Option<Instant>,
) -> WaitResult {
    wait_at(
        addr(word),
        || word.load(Ordering::SeqCst) as u32 == expected,
        deadline,
    )
}

/// The modelled wake of sleepers on the low half of a 64-bit word.
pub(crate) fn futex_wake_low(word: &AtomicU64, n: u32) -> usize {
    wake_at(addr(word), n)
}

/// Checks `unchanged` and queues the waiter atomically (under the table
/// lock, as the kernel does under its hash-bucket lock).
fn wait_at(a: usize, unchanged: impl Fn() -> bool, deadline: Option<Instant>) -> WaitResult {
    let f = &*FUTEXES;
    let mut t = f.table.lock().unwrap();
    if !unchanged() {
        return WaitResult::ValueChanged;
    }
    let id = t.next_id;
    t.next_id += 1;
    t.waiters.push(Waiter {
        addr: a,
        id,
        woken: false,
    });
    if deadline.is_some() {
        drop(t);
        loom::thread::yield_now();
        t = f.table.lock().unwrap();
    } else {
        while !is_woken(&t, id) {
            t = f.cv.wait(t).unwrap();
        }
    }
    let woken = is_woken(&t, id);
    t.waiters.retain(|w| w.id != id);
    if woken {
        WaitResult::Woken
    } else {
        WaitResult::TimedOut
    }
}

/// The modelled `FUTEX_WAKE`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    wake_at(addr(word), n)
}

fn wake_at(a: usize, n: u32) -> usize {
    let f = &*FUTEXES;
    let mut t = f.table.lock().unwrap();
    let mut count = 0;
    for w in t.waiters.iter_mut() {
        if count as u32 >= n {
            break;
        }
        if w.addr == a && !w.woken {
            w.woken = true;
            count += 1;
        }
    }
    if count > 0 {
        f.cv.notify_all();
    }
    count
}
