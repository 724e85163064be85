//! The slot protocol: claiming, committing, releasing, and recovering the
//! claims of dead processes, with no lock (see the state table in
//! [`crate::layout`]).
//!
//! Everything here works on a [`Ring`]: the control block, the slot
//! headers and who we are. It never touches a payload (the sides do that
//! between claim and commit) and never sleeps (the blocking loop in
//! [`crate::wait`] does). Every value read from the segment is checked: an
//! impossible one is a [`Bad`], never a panic, an out-of-bounds access or
//! an endless loop.

use crate::kill_points::kill_point;
use crate::layout::{
    Control, EMPTY, FULL, MAX_PEERS, MAX_POS, Registration, SKIP, SlotHeader, decode, process_of,
    slot_index, state,
};
use shm_sync::WaitWord;

use shm_sync::shim::Ordering;

/// An impossible value read from the segment, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad(pub(crate) String);

/// Where the slot headers are: the segment, or (in the loom models) a
/// vector.
pub(crate) trait Slots {
    /// The header of slot `index` (`index < capacity`).
    fn header(&self, index: usize) -> Result<&SlotHeader, Bad>;
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Positions `start..start+n` are ours, and published in our record.
    /// `wake`: the index CAS found sleepers of the other side, to be woken
    /// once the claim is committed (or released).
    Got { start: u64, n: usize, wake: bool },
    /// Nothing to take (or no room): wait on `on` while it holds `seen`.
    Wait { on: WaitOn, seen: u64 },
}

/// What a waiter sleeps on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOn {
    /// The other side's index (a consumer on `tail`, a producer on
    /// `head`): nothing will change for us before the other side claims,
    /// and its claim CAS sees our flag.
    Index,
    /// The slot of position `pos`, which another process has claimed (a
    /// producer still writing it, a consumer still reading the previous
    /// lap): its commit or release is a plain store that wakes us only if
    /// it sees our flag, so this sleep is a short nap. If that process is
    /// dead, recovery frees us.
    Held { pos: u64 },
}

/// Which side a claim is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Send,
    Recv,
}

/// The protocol over one queue, from one process.
pub(crate) struct Ring<'a, S: Slots> {
    pub(crate) ctl: &'a Control,
    pub(crate) slots: &'a S,
    /// Capacity, validated at open (never re-read from the segment).
    pub(crate) cap: u64,
    /// Our registration identity word.
    pub(crate) me: u64,
}

impl<S: Slots> Ring<'_, S> {
    /// The slot index of `pos` and the first position of its lap.
    #[inline]
    fn split(&self, pos: u64) -> (usize, u64) {
        slot_index(pos, self.cap)
    }

    /// The state value for position `pos` with `tag`.
    #[inline]
    pub(crate) fn st(&self, pos: u64, tag: u64) -> u64 {
        state(self.split(pos).1, tag)
    }

    /// The slot of `pos` and the lap start of `pos`.
    #[inline]
    fn at(&self, pos: u64) -> Result<(&SlotHeader, u64), Bad> {
        let (index, lap) = self.split(pos);
        Ok((self.slots.header(index)?, lap))
    }

    #[inline]
    fn slot(&self, pos: u64) -> Result<&SlotHeader, Bad> {
        Ok(self.at(pos)?.0)
    }

    /// `tail` (producers) or `head` (consumers).
    #[inline]
    pub(crate) fn index(&self, side: Side) -> &WaitWord {
        match side {
            Side::Send => &self.ctl.producer.tail,
            Side::Recv => &self.ctl.consumer.head,
        }
    }

    /// Loads `tail` or `head` (Acquire: the claims that moved it, and the
    /// records published before them, are visible), checked against
    /// overflow.
    #[inline]
    fn load_index(&self, side: Side) -> Result<u64, Bad> {
        self.checked(side, self.index(side).load())
    }

    /// `head` and `tail` (a snapshot, for stats and the blocking loop's
    /// decisions, not for claims).
    pub(crate) fn positions(&self) -> (u64, u64) {
        (self.ctl.consumer.head.load(), self.ctl.producer.tail.load())
    }

    /// The state word of the slot position `pos` lives in.
    #[inline]
    pub(crate) fn word(&self, pos: u64) -> Result<&WaitWord, Bad> {
        Ok(&self.slot(pos)?.state)
    }

    /// Whether some live process's record covers `pos` in `table`.
    fn claimed_by_live(&self, table: &[Registration; MAX_PEERS], pos: u64) -> bool {
        table.iter().any(|r| {
            let who = r.ident();
            who != 0
                && r.covers(pos)
                && (who == self.me || shm_sync::shim::is_alive(process_of(who)))
        })
    }

    /// Claims up to `max` positions at `tail` for writing, publishing them
    /// in `rec` first (`max == 0`: only says whether a claim would get one,
    /// as `Got` with `n == 0`, claiming nothing). With `recover`, a slot still held by a dead consumer
    /// is freed on the way.
    pub(crate) fn claim_send(
        &self,
        rec: &Registration,
        max: usize,
        recover: bool,
    ) -> Result<Claim, Bad> {
        let probe = max == 0;
        let max = (max.max(1) as u64).min(self.cap);
        let mut t = self.load_index(Side::Send)?;
        loop {
            let (slot, lap) = self.at(t)?;
            let word = &slot.state;
            let seen = word.load();
            let (seen_lap, tag) = decode(seen);
            if seen == state(lap, EMPTY) {
                let mut n = 1;
                while n < max && self.word(t + n)?.load() == self.st(t + n, EMPTY) {
                    n += 1;
                }
                if probe {
                    return Ok(Claim::Got {
                        start: t,
                        n: 0,
                        wake: false,
                    });
                }
                match self.take(Side::Send, rec, t, n)? {
                    Ok(got) => return Ok(got),
                    Err(now) => {
                        t = now;
                        continue;
                    }
                }
            }
            if lap >= self.cap && seen_lap == lap - self.cap {
                // The previous lap is still in the slot: the queue is full
                // (FULL or SKIP not yet taken, or being read), or position
                // `p` is still being written (EMPTY).
                let p = t - self.cap;
                let head = self.load_index(Side::Recv)?;
                let held = tag != EMPTY && head > p;
                if tag == EMPTY && head > p {
                    // `p` was committed, taken and released between our
                    // look at the slot and at `head`: loading `head` past
                    // `p` (Acquire) makes the next look see that, so look
                    // again (found by the loom model of two producers).
                    self.moved_on(word, seen, t, "head")?;
                    continue;
                }
                if held && recover && !self.claimed_by_live(&self.ctl.consumers, p) {
                    // A consumer took `p` and died before releasing it: the
                    // message is lost with it; the slot is ours to reuse.
                    self.recover(
                        word,
                        seen,
                        state(lap, EMPTY),
                        "recover:free",
                        "recover:freed",
                    );
                    continue;
                }
                let now = self.load_index(Side::Send)?;
                if now != t {
                    t = now;
                    continue;
                }
                return self.wait(head, t, t, seen, held, head);
            }
            // Anything else means `tail` moved on since we loaded it.
            let now = self.load_index(Side::Send)?;
            if now != t {
                t = now;
                continue;
            }
            return Err(self.impossible(t, seen, "tail"));
        }
    }

    /// Claims up to `max` committed messages (or tombstones) at `head`,
    /// publishing them in `rec` first (`max == 0`: a probe, as for
    /// [`Ring::claim_send`]). With `recover`, a position whose
    /// producer died before committing is turned into a tombstone.
    pub(crate) fn claim_recv(
        &self,
        rec: &Registration,
        max: usize,
        recover: bool,
    ) -> Result<Claim, Bad> {
        let probe = max == 0;
        let max = (max.max(1) as u64).min(self.cap);
        let mut h = self.load_index(Side::Recv)?;
        loop {
            let (slot, lap) = self.at(h)?;
            let word = &slot.state;
            let seen = word.load();
            let (seen_lap, tag) = decode(seen);
            if seen_lap == lap && (tag == FULL || tag == SKIP) {
                let mut n = 1;
                while n < max {
                    let (next, next_lap) = self.at(h + n)?;
                    let (q, tag) = decode(next.state.load());
                    if q != next_lap || (tag != FULL && tag != SKIP) {
                        break;
                    }
                    n += 1;
                }
                if probe {
                    return Ok(Claim::Got {
                        start: h,
                        n: 0,
                        wake: false,
                    });
                }
                match self.take(Side::Recv, rec, h, n)? {
                    Ok(got) => return Ok(got),
                    Err(now) => {
                        h = now;
                        continue;
                    }
                }
            }
            if seen_lap == lap && tag == EMPTY {
                let tail = self.load_index(Side::Send)?;
                let held = tail > h;
                if held && recover && !self.claimed_by_live(&self.ctl.producers, h) {
                    // A producer claimed `h` and died before committing: the
                    // send never returned, so nothing promised is lost.
                    self.recover(
                        word,
                        seen,
                        state(lap, SKIP),
                        "recover:skip",
                        "recover:skipped",
                    );
                    continue;
                }
                let now = self.load_index(Side::Recv)?;
                if now != h {
                    h = now;
                    continue;
                }
                return self.wait(h, tail, h, seen, held, tail);
            }
            if lap >= self.cap && seen_lap == lap - self.cap && tag != EMPTY {
                // The consumer of the previous lap has not released the
                // slot yet: nothing was written for `h`.
                let tail = self.load_index(Side::Send)?;
                if tail > h {
                    // A producer claimed `h` since our look at the slot, so
                    // the slot was released meanwhile (it needed EMPTY of
                    // `h` to claim): look again, or we would sleep on a
                    // `tail` whose claimer will not wake us.
                    self.moved_on(word, seen, h, "tail")?;
                    continue;
                }
                let now = self.load_index(Side::Recv)?;
                if now != h {
                    h = now;
                    continue;
                }
                if tail < h {
                    return Err(Bad(format!("tail {tail} is behind head {h}")));
                }
                return Ok(Claim::Wait {
                    on: WaitOn::Index,
                    seen: tail,
                });
            }
            let now = self.load_index(Side::Recv)?;
            if now != h {
                h = now;
                continue;
            }
            return Err(self.impossible(h, seen, "head"));
        }
    }

    /// The claim step both sides share: publish `at..at+n` in `rec`, then
    /// CAS the side's index from `at` to `at + n`. `Ok(Err(now))`: another
    /// claimer of the same side was first (the record is withdrawn; retry
    /// at `now`).
    #[inline]
    fn take(
        &self,
        side: Side,
        rec: &Registration,
        at: u64,
        n: u64,
    ) -> Result<Result<Claim, u64>, Bad> {
        let (published, claimed) = match side {
            Side::Send => ("send:published", "send:claimed"),
            Side::Recv => ("recv:published", "recv:claimed"),
        };
        rec.publish(at, n as u32);
        kill_point(published);
        match self.index(side).transition_deferred(at, at + n) {
            Ok(wake) => {
                kill_point(claimed);
                Ok(Ok(Claim::Got {
                    start: at,
                    n: n as usize,
                    wake,
                }))
            }
            Err(now) => {
                rec.withdraw();
                Ok(Err(self.checked(side, now)?))
            }
        }
    }

    /// A claim that must wait: on the slot of `pos` (state `seen`) if a
    /// live peer's claim holds it, else on the other side's index (value
    /// `index`), after checking that `head` and `tail` are possible.
    fn wait(
        &self,
        head: u64,
        tail: u64,
        pos: u64,
        seen: u64,
        held: bool,
        index: u64,
    ) -> Result<Claim, Bad> {
        if head > tail || tail - head > self.cap {
            return Err(Bad(format!(
                "head {head} and tail {tail} are impossible for capacity {}",
                self.cap
            )));
        }
        Ok(if held {
            Claim::Wait {
                on: WaitOn::Held { pos },
                seen,
            }
        } else {
            Claim::Wait {
                on: WaitOn::Index,
                seen: index,
            }
        })
    }

    /// After an index showed that the slot of `at` has moved on from
    /// `seen`: a slot that still holds `seen` is impossible (the index was
    /// loaded with Acquire after the change that let it move), so it is
    /// reported rather than looked at forever.
    fn moved_on(&self, word: &WaitWord, seen: u64, at: u64, index: &str) -> Result<(), Bad> {
        if word.load() == seen {
            let (lap, tag) = decode(seen);
            return Err(Bad(format!(
                "the slot for position {at} still holds tag {tag} of lap {lap} although the {index} moved past it"
            )));
        }
        Ok(())
    }

    /// Recovers a dead process's claim: one CAS from the exact state seen
    /// to `to`, so a claimer that finished meanwhile wins, and a recoverer
    /// killed before or after it leaves a state the next one handles.
    fn recover(&self, word: &WaitWord, seen: u64, to: u64, before: &str, after: &str) {
        kill_point(before);
        if word.transition(seen, to).is_ok() {
            self.ctl.recovered.fetch_add(1, Ordering::Relaxed);
            kill_point(after);
        }
    }

    #[inline]
    fn checked(&self, side: Side, at: u64) -> Result<u64, Bad> {
        if at > MAX_POS - self.cap {
            Err(Bad(format!(
                "{} {at} is beyond the largest position",
                side_name(side)
            )))
        } else {
            Ok(at)
        }
    }

    /// Producer: publishes the message written for claimed position `pos`
    /// (its length already stored). Fails if the claim was taken over.
    #[inline]
    pub(crate) fn commit(&self, pos: u64) -> Result<(), Bad> {
        self.word(pos)?
            .store_exclusive(self.st(pos, EMPTY), self.st(pos, FULL))
            .map_err(|now| self.taken_over(pos, now, "written"))
    }

    /// Producer: gives claimed position `pos` up unwritten (a tombstone).
    pub(crate) fn abandon(&self, pos: u64) -> Result<(), Bad> {
        self.word(pos)?
            .store_exclusive(self.st(pos, EMPTY), self.st(pos, SKIP))
            .map_err(|now| self.taken_over(pos, now, "written"))?;
        self.ctl.abandoned.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Consumer: the tag of claimed position `pos` (FULL or SKIP).
    #[inline]
    pub(crate) fn tag(&self, pos: u64) -> Result<u64, Bad> {
        let (slot, lap) = self.at(pos)?;
        let now = slot.state.load();
        match decode(now) {
            (q, tag) if q == lap && (tag == FULL || tag == SKIP) => Ok(tag),
            _ => Err(self.taken_over(pos, now, "read")),
        }
    }

    /// Consumer: frees claimed position `pos`, which held `tag`, for the
    /// producer of the next lap. Fails if the claim was taken over (then
    /// whatever was read from the slot may be torn: discard it).
    #[inline]
    pub(crate) fn release(&self, pos: u64, tag: u64) -> Result<(), Bad> {
        let (slot, lap) = self.at(pos)?;
        slot.state
            .store_exclusive(state(lap, tag), state(lap + self.cap, EMPTY))
            .map_err(|now| self.taken_over(pos, now, "read"))?;
        if tag == SKIP {
            self.ctl
                .consumer
                .tombstones_taken
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl<S: Slots> Ring<'_, S> {
    fn impossible(&self, at: u64, seen: u64, index: &str) -> Bad {
        let (index_of, _) = self.split(at);
        let (lap, tag) = decode(seen);
        Bad(format!(
            "the slot for position {at} (the {index}) holds tag {tag} of position {}",
            lap.wrapping_add(index_of as u64)
        ))
    }

    fn taken_over(&self, pos: u64, now: u64, doing: &str) -> Bad {
        let (index_of, _) = self.split(pos);
        let (lap, tag) = decode(now);
        Bad(format!(
            "the claim on position {pos} was taken over while it was being {doing} (the slot now holds tag {tag} of position {}): its holder was judged dead, or the segment was overwritten",
            lap.wrapping_add(index_of as u64)
        ))
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Send => "tail",
        Side::Recv => "head",
    }
}
