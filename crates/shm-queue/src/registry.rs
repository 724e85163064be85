//! Who takes part: registering producers and consumers, leaving, and
//! clearing the entries of dead processes — each a single CAS on the
//! entry's identity word, with no lock (see [`crate::layout::Registration`]).

use crate::error::RegisterError;
use crate::kill_points::kill_point;
use crate::layout::{FLAG_HAD_CONSUMER, FLAG_HAD_PRODUCER, MAX_PEERS, process_of};
use crate::queue::{Inner, Queue};
use shm_sync::shim::Ordering;

/// Which table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Producer,
    Consumer,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Producer => "producers",
            Role::Consumer => "consumers",
        }
    }

    fn flag(self) -> u32 {
        match self {
            Role::Producer => FLAG_HAD_PRODUCER,
            Role::Consumer => FLAG_HAD_CONSUMER,
        }
    }

    pub(crate) fn is_producer(self) -> bool {
        self == Role::Producer
    }
}

impl Inner {
    /// Whether entry `ident` names a process that still runs (ourselves
    /// without a system call).
    fn holder_alive(&self, ident: u64) -> bool {
        ident == self.me_ident || process_of(ident).is_alive()
    }

    /// Takes a free entry of `role`'s table for this process.
    pub(crate) fn register(&self, role: Role) -> Result<usize, RegisterError> {
        self.check_fork()?;
        self.intact()?;
        for attempt in 0..2 {
            if attempt == 1 {
                self.reap_dead();
            }
            if self.is_closed() {
                return Err(RegisterError::Closed);
            }
            for index in 0..MAX_PEERS {
                let r = self.registration(role.is_producer(), index);
                if r.ident() != 0
                    || r.ident
                        .compare_exchange(0, self.me_ident, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                {
                    continue;
                }
                // A dead predecessor may have left a claim record: it is
                // ours now, and we claim nothing yet.
                r.withdraw();
                kill_point("register:taken");
                self.ctl().flags.fetch_or(role.flag(), Ordering::AcqRel);
                if self.is_closed() {
                    self.unregister(role, index);
                    return Err(RegisterError::Closed);
                }
                return Ok(index);
            }
        }
        Err(RegisterError::TooMany {
            queue: self.name.clone(),
            role: role.word(),
        })
    }

    /// Gives entry `index` back (its holder claims nothing by now), and
    /// wakes the other side, which may now be disconnected.
    pub(crate) fn unregister(&self, role: Role, index: usize) {
        // A child that inherited the handle across `fork` must not act
        // under its parent's identity.
        if std::process::id() != self.me.pid {
            return;
        }
        let r = self.registration(role.is_producer(), index);
        r.withdraw();
        if r.ident
            .compare_exchange(self.me_ident, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            kill_point("unregister:cleared");
        }
        self.nudge_all();
    }

    /// Clears the entries of dead processes in both tables; returns how
    /// many it cleared. A cleared entry's claim record is no longer live,
    /// so the dead process's claims become recoverable.
    pub(crate) fn reap_dead(&self) -> usize {
        let mut cleared = 0;
        for producer in [true, false] {
            for index in 0..MAX_PEERS {
                let r = self.registration(producer, index);
                let who = r.ident();
                if who == 0 || self.holder_alive(who) {
                    continue;
                }
                // A CAS, so an entry re-taken since the look stays.
                if r.ident
                    .compare_exchange(who, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    kill_point("reap:cleared");
                    cleared += 1;
                }
            }
        }
        if cleared > 0 {
            self.nudge_all();
        }
        cleared
    }

    /// Entries of `role` that are taken (no liveness check: cheap).
    pub(crate) fn registered(&self, role: Role) -> usize {
        (0..MAX_PEERS)
            .filter(|&i| self.registration(role.is_producer(), i).ident() != 0)
            .count()
    }

    /// Whether `role`'s side had members and all of them are gone: the
    /// other side's disconnect condition (dead members count until a sweep
    /// clears them).
    pub(crate) fn side_gone(&self, role: Role) -> bool {
        self.ctl().flags.load(Ordering::Acquire) & role.flag() != 0 && self.registered(role) == 0
    }
}

impl Queue {
    /// Registers this process as a producer and returns its [`Sender`],
    /// which keeps the queue open (it holds a clone of this handle).
    ///
    /// [`Sender`]: crate::Sender
    pub fn sender(&self) -> Result<crate::Sender, RegisterError> {
        let index = self.0.register(Role::Producer)?;
        Ok(crate::Sender::new(self.clone(), index))
    }

    /// Registers this process as a consumer and returns its
    /// [`Receiver`](crate::Receiver).
    pub fn receiver(&self) -> Result<crate::Receiver, RegisterError> {
        let index = self.0.register(Role::Consumer)?;
        Ok(crate::Receiver::new(self.clone(), index))
    }
}
