//! Who is attached, and when the name goes away ([`crate::Lifetime`]).
//!
//! Every handle that takes part (a [`crate::Queue`] and what is made from
//! it) holds an entry in the table of attached processes, taken and
//! cleared by one CAS on its identity word, like a registration. In
//! [`crate::Lifetime::LastPeer`] mode the last handle to leave removes the
//! name; the difficulty is a newcomer that opens the name just then. The
//! leaver and the joiner each write one word and then read the other's,
//! with a sequentially consistent fence between (a Dekker handshake), so
//! at least one of them sees the other:
//!
//! - leaver: clear its entry; if no live entry remains, CAS `retire` from
//!   nobody to itself, fence, look at the table again: a newcomer there
//!   makes it give `retire` back and keep the name; otherwise it removes
//!   the name and marks `retire` done;
//! - joiner: take an entry, fence, read `retire`: nobody means joined (any
//!   later leaver sees the entry); done means the name is gone, so it
//!   gives the entry back and opens the name again; a live leaver means
//!   wait until it decides; a dead one is cleared (name still there) or
//!   marked done (name gone) — whichever the name says.
//!
//! A process killed at any step leaves either its entry (found dead and
//! cleared by the next leaver or joiner) or its `retire` mark (resolved by
//! the next joiner from whether the name still exists), never a queue that
//! newcomers join while its name is gone.

use std::time::{Duration, Instant};

use crate::error::QueueOpenError;
use crate::kill_points::kill_point;
use crate::layout::{MAX_ATTACHED, RETIRE_DONE, RETIRE_NONE, process_of};
use crate::queue::{Inner, Lifetime};
use shm_sync::shim::{Ordering, fence};

/// How long a joiner waits for a live leaver to decide before it reports
/// it (a leaver decides within a few system calls; one stopped with
/// `SIGSTOP` decides when it resumes).
const RETIRE_PATIENCE: Duration = Duration::from_secs(5);

impl Inner {
    /// Whether identity word `ident` names a live process (ourselves
    /// without a system call).
    fn ident_alive(&self, ident: u64) -> bool {
        ident == self.me_ident || shm_sync::shim::is_alive(process_of(ident))
    }

    /// Takes an entry in the table of attached handles. `Ok(None)`: the
    /// name was removed by its last peer as we opened it (open it again).
    pub(crate) fn attach(&self) -> Result<Option<usize>, QueueOpenError> {
        self.check_fork()?;
        let table = &self.ctl().attached;
        let mut index = None;
        for attempt in 0..2 {
            if attempt == 1 {
                self.reap_attached();
            }
            index = (0..MAX_ATTACHED).find(|&i| {
                table[i].load(Ordering::Relaxed) == 0
                    && table[i]
                        .compare_exchange(0, self.me_ident, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
            });
            if index.is_some() {
                break;
            }
        }
        let Some(index) = index else {
            return Err(QueueOpenError::TooManyAttached {
                queue: self.name.clone(),
            });
        };
        kill_point("attach:taken");
        // Our entry before their mark (see the module docs).
        fence(Ordering::SeqCst);
        let retire = &self.ctl().life.retire;
        let since = Instant::now();
        loop {
            let r = retire.load(Ordering::SeqCst);
            if r == RETIRE_NONE {
                return Ok(Some(index));
            }
            if r == RETIRE_DONE {
                self.clear_entry(index);
                return Ok(None);
            }
            if self.ident_alive(r) {
                // It sees our entry and gives the mark back, or it removed
                // the name before our entry was there and marks it done.
                if since.elapsed() > RETIRE_PATIENCE {
                    self.clear_entry(index);
                    return Err(QueueOpenError::Retiring {
                        queue: self.name.clone(),
                        pid: process_of(r).pid,
                    });
                }
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            // A leaver died deciding: the name says what it did.
            let now = if self.shared.segment().is_named() {
                RETIRE_NONE
            } else {
                RETIRE_DONE
            };
            let _ = retire.compare_exchange(r, now, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    fn clear_entry(&self, index: usize) {
        let _ = self.ctl().attached[index % MAX_ATTACHED].compare_exchange(
            self.me_ident,
            0,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }

    /// Clears the entries of dead processes; whether a live one remains.
    fn reap_attached(&self) -> bool {
        let mut live = false;
        for entry in &self.ctl().attached {
            let who = entry.load(Ordering::SeqCst);
            if who == 0 {
                continue;
            }
            if self.ident_alive(who) {
                live = true;
            } else if entry
                .compare_exchange(who, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                kill_point("attach:reaped");
            }
        }
        live
    }

    /// Gives our entry back and, as the last peer of a
    /// [`Lifetime::LastPeer`] queue, removes the name.
    fn leave(&self) {
        let Some(index) = self.attached else {
            return;
        };
        // A child that inherited the handle across `fork` must not act
        // under its parent's identity.
        if std::process::id() != self.me.pid {
            return;
        }
        self.clear_entry(index);
        kill_point("detach:cleared");
        if self.lifetime != Lifetime::LastPeer {
            return;
        }
        // Our cleared entry before their entries.
        fence(Ordering::SeqCst);
        if self.reap_attached() {
            return;
        }
        let retire = &self.ctl().life.retire;
        if retire
            .compare_exchange(
                RETIRE_NONE,
                self.me_ident,
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_err()
        {
            // Another leaver is deciding, or the name is gone already.
            return;
        }
        // Our mark before their entries (see the module docs).
        fence(Ordering::SeqCst);
        kill_point("retire:marked");
        if self.reap_attached() {
            // A newcomer joined: the name stays.
            let _ = retire.compare_exchange(
                self.me_ident,
                RETIRE_NONE,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
            return;
        }
        // Nothing to report to from a destructor; a name removed by
        // someone else already is fine.
        let _ = self.shared.segment().remove();
        kill_point("retire:removed");
        let _ = retire.compare_exchange(
            self.me_ident,
            RETIRE_DONE,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.leave();
    }
}
