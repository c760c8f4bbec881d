//! What a member has delivered, per origin and epoch: exactly-once delivery and the holes left.
//!
//! Bounded everywhere: at most [`MAX_ORIGINS`] origins (the least recently active is forgotten), at
//! most [`MAX_EPOCHS`] lives per origin, at most [`MAX_HOLES`] holes per life and [`MAX_OPEN_HOLES`]
//! in all (past that the oldest are given up and reported), at most [`MAX_KEYS`] keyed values per
//! origin. A hole is never dropped silently: whether it expires, overflows a bound, or goes with the
//! life or origin that held it, the next [`Ledger::expire`] reports it.
//!
//! Origins are forgotten two ways: the least recently active makes room past [`MAX_ORIGINS`], and
//! a departed one (no longer a member) that sent nothing for a while goes at housekeeping
//! ([`Ledger::forget_quiet`]), so that a ledger and its digests hold the members present and the
//! recent past, not every member ever seen. Forgetting must not undo exactly-once: other members
//! keep its broadcasts for repair and list its lives in their digests long after we dropped it. So
//! the ledger keeps, for each life of a forgotten origin, where it stood ([`MAX_FORGOTTEN`] of
//! them, 40 bytes each): a broadcast or digest entry of such a life that brings nothing newer is
//! old news, and changes nothing; one that brings something newer brings the origin back,
//! expected from where it stood. Activity is what a member delivers (or receives again), never
//! what a digest lists: a digest lists every origin, so counting its entries would make every
//! origin as recent as any other, and the one forgotten could be the one delivered a moment ago.
//! Past [`MAX_FORGOTTEN`] the life forgotten the longest ago goes for good; a broadcast of it that
//! still circulated then would be delivered again.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::fingerprint::Fingerprint;
use crate::identity::NodeId;
use crate::time::Instant;
pub(crate) use crate::wire::DigestEntry;
use crate::wire::MAX_DIGEST_HOLES;

/// Origins remembered; past this the least recently active one is forgotten.
pub(crate) const MAX_ORIGINS: usize = 4_096;
/// Lives remembered per origin (a restarted origin starts a new one).
pub(crate) const MAX_EPOCHS: usize = 4;
/// Lives pushed out remembered per origin, by epoch: a broadcast or digest entry of one is old news,
/// never a life to start again (that would push out a newer one, and so on round).
pub(crate) const MAX_GONE: usize = 16;
/// Holes remembered per life; past this the oldest are given up.
pub(crate) const MAX_HOLES: usize = 4_096;
/// Holes remembered in all, every origin and life together (16 bytes each); past this, new holes are
/// given up (and reported) as they open.
pub(crate) const MAX_OPEN_HOLES: usize = 8_192;
/// Reports of given-up holes (a life and a count) kept for the next [`Ledger::expire`]; past this,
/// given-up holes are only counted.
pub(crate) const MAX_GIVEN_UP_REPORTS: usize = 1_024;
/// Keyed values remembered per origin.
pub(crate) const MAX_KEYS: usize = 1_024;
/// Lives of forgotten origins remembered (40 bytes each); past this the longest forgotten goes.
pub(crate) const MAX_FORGOTTEN: usize = 8_192;

/// What to do with an arriving broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: deliver it (and keep it for repair).
    Deliver,
    /// Delivered before.
    Duplicate,
    /// Sent before this member joined: not expected, not delivered.
    BeforeOurTime,
    /// A keyed value older than the one held for its key.
    Superseded,
    /// Impossible: an unkeyed sequence number no origin reaches (`u64::MAX`, past which `next` could
    /// not count). Hostile or corrupt input, dropped and counted by the caller.
    Invalid,
}

#[derive(Debug)]
struct Life {
    epoch: u32,
    /// Unkeyed sequence numbers below `start` are before our time.
    start: u64,
    next: u64,
    /// Holes, ascending: sequence number and when we noticed it. (A vector: holes are few, and opened
    /// in order, above every hole already there.)
    holes: Vec<(u64, Instant)>,
    /// Keyed values below this sequence number were delivered before the origin was forgotten (0
    /// for a life never forgotten): one arriving now for a key we hold nothing for is recorded,
    /// not delivered again.
    keyed_floor: u64,
}

impl Life {
    fn new(epoch: u32, start: u64) -> Self {
        Life { epoch, start, next: start, holes: Vec::new(), keyed_floor: 0 }
    }
}

/// One life of a forgotten origin: where it stood when the origin was forgotten.
#[derive(Clone, Copy, Debug)]
struct Forgotten {
    /// The origin's name, hashed (see [`Fingerprint::of_name`]).
    origin: u64,
    epoch: u32,
    /// Where its unkeyed sequence stood; [`u64::MAX`] for a life pushed out by newer ones, old
    /// news whatever it brings.
    next: u64,
    /// Keyed values below this were delivered (or superseded).
    keyed_next: u64,
    /// When it was forgotten, in lives forgotten before it: the oldest goes first.
    order: u64,
}

#[derive(Debug)]
struct Keyed {
    topic: String,
    key: Vec<u8>,
    epoch: u32,
    seq: u64,
}

#[derive(Debug)]
struct Origin {
    id: NodeId,
    /// In the order first seen: the last is the newest life.
    lives: Vec<Life>,
    /// The newest value delivered per `(topic, key)`: its life and sequence number.
    keyed: Vec<Keyed>,
    /// Epochs of the lives pushed out of `lives`: the latest [`MAX_GONE`], in a ring.
    gone: Vec<u32>,
    /// Lives pushed out so far (where the next goes in the ring).
    pushed_out: u32,
    /// When it last delivered a broadcast (or sent one again), on the ledger's clock.
    last_active: u64,
    /// When a broadcast of it last arrived; [`Instant::ZERO`] if none did (made from a digest).
    last_heard: Instant,
}

impl Origin {
    fn new(id: NodeId) -> Self {
        Origin {
            id,
            lives: Vec::new(),
            keyed: Vec::new(),
            gone: Vec::new(),
            pushed_out: 0,
            last_active: 0,
            last_heard: Instant::ZERO,
        }
    }

    /// Where the keyed values of life `epoch` stand: one past the newest held, at least its floor.
    fn keyed_next(&self, life: &Life) -> u64 {
        let held = self.keyed.iter().filter(|k| k.epoch == life.epoch).map(|k| k.seq.saturating_add(1)).max();
        held.unwrap_or(0).max(life.keyed_floor)
    }

    fn life_rank(&self, epoch: u32) -> Option<usize> {
        self.lives.iter().position(|l| l.epoch == epoch)
    }

    /// The life `epoch` of origin `id`, created (as the newest) if unknown; the oldest life makes
    /// room, its holes given up. `None` for a life pushed out before.
    fn life_mut(&mut self, id: &NodeId, epoch: u32, start: u64, tally: &mut Tally) -> Option<&mut Life> {
        let i = match self.life_rank(epoch) {
            Some(i) => i,
            None if self.gone.contains(&epoch) => return None,
            None => {
                if self.lives.len() >= MAX_EPOCHS {
                    let old = self.lives.remove(0);
                    tally.forget(id, &old);
                    let at = self.pushed_out as usize % MAX_GONE;
                    match self.gone.get_mut(at) {
                        Some(slot) => *slot = old.epoch,
                        None => self.gone.push(old.epoch),
                    }
                    self.pushed_out = self.pushed_out.wrapping_add(1);
                }
                self.lives.push(Life::new(epoch, start));
                self.lives.len() - 1
            }
        };
        Some(&mut self.lives[i])
    }
}

/// Holes given up: `(origin, epoch, count)`.
pub(crate) type Missed = (NodeId, u32, u64);

/// Holes given up since the last [`Ledger::expire`]: per life where there is room to say which (a
/// life may be listed more than once), and a bare count past that.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct GivenUp {
    pub per_life: Vec<Missed>,
    /// Given up past the [`MAX_GIVEN_UP_REPORTS`] listed: counted, not attributed.
    pub unattributed: u64,
}

/// The ledger's hole accounting: how many are open, and which were given up before they expired.
#[derive(Debug, Default)]
struct Tally {
    open: usize,
    given_up: GivenUp,
}

impl Tally {
    fn close(&mut self, n: usize) {
        #[cfg(test)]
        assert!(n <= self.open, "closing {n} of {} open holes", self.open);
        self.open = self.open.saturating_sub(n);
    }

    /// Records `count` holes of `origin`'s life `epoch` given up, for the next report.
    fn give_up(&mut self, origin: &NodeId, epoch: u32, count: u64) {
        if count == 0 {
            return;
        }
        let g = &mut self.given_up;
        if g.per_life.len() < MAX_GIVEN_UP_REPORTS {
            g.per_life.push((origin.clone(), epoch, count));
        } else {
            g.unattributed = g.unattributed.saturating_add(count);
        }
    }

    /// Gives up every hole of `life`, which goes.
    fn forget(&mut self, origin: &NodeId, life: &Life) {
        self.close(life.holes.len());
        self.give_up(origin, life.epoch, life.holes.len() as u64);
    }

    /// Records holes `[from, to)` in `life` of `origin`, within [`MAX_HOLES`] for the life and
    /// [`MAX_OPEN_HOLES`] in all: the newest are kept (the likeliest still held somewhere), the
    /// others given up at once.
    fn open_holes(&mut self, origin: &NodeId, life: &mut Life, from: u64, to: u64, now: Instant) {
        if from >= to {
            return;
        }
        let span = to - from;
        let room = MAX_OPEN_HOLES.saturating_sub(self.open).min(MAX_HOLES);
        let keep = (room as u64).min(span);
        let mut dropped = span - keep;
        life.holes.extend(((to - keep)..to).map(|seq| (seq, now)));
        self.open += keep as usize;
        if life.holes.len() > MAX_HOLES {
            let excess = life.holes.len() - MAX_HOLES;
            life.holes.drain(..excess);
            self.close(excess);
            dropped += excess as u64;
        }
        self.give_up(origin, life.epoch, dropped);
    }
}

/// Exactly-once delivery state of one member. See the module docs.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Sorted by name: a binary search finds one (a vector's code is far smaller than a hash map's
    /// in a wasm build, and new origins are rare).
    origins: Vec<Origin>,
    /// Lives of forgotten origins, sorted by `(origin, epoch)`. See the module docs.
    forgotten: Vec<Forgotten>,
    /// Lives forgotten so far (the next one's `order`).
    forgotten_count: u64,
    clock: u64,
    tally: Tally,
}

/// Whether an arrival about an origin we do not hold brings anything new.
enum Recall {
    /// We hold it: its index.
    Held(usize),
    /// Forgotten, and what arrived is no newer than where it stood.
    OldNews,
    /// Never known, or forgotten and what arrived is newer: hold it (again).
    Hold,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger { origins: Vec::new(), forgotten: Vec::new(), forgotten_count: 0, clock: 0, tally: Tally::default() }
    }

    /// Origins remembered.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    fn find(&self, origin: &NodeId) -> Option<&Origin> {
        self.origins.binary_search_by(|o| o.id.cmp(origin)).ok().map(|i| &self.origins[i])
    }

    /// Where `origin` stands: held, or forgotten and `old_news` says of its forgotten life
    /// `epoch` (`None` if that life is not among them) that what arrived is no newer.
    fn recall(&self, origin: &NodeId, epoch: u32, old_news: &dyn Fn(Option<&Forgotten>) -> bool) -> Recall {
        if let Ok(i) = self.origins.binary_search_by(|o| o.id.cmp(origin)) {
            return Recall::Held(i);
        }
        let h = Fingerprint::of_name(origin);
        let from = self.forgotten.partition_point(|f| f.origin < h);
        if !self.forgotten.get(from).is_some_and(|f| f.origin == h) {
            return Recall::Hold;
        }
        let life = self.forgotten[from..].iter().take_while(|f| f.origin == h).find(|f| f.epoch == epoch);
        if old_news(life) {
            Recall::OldNews
        } else {
            Recall::Hold
        }
    }

    /// Holds `origin`, which [`Ledger::recall`] said we do not: brought back with the lives it was
    /// forgotten with, if it was, or new. The least recently active origin makes room (and is
    /// forgotten). Returns its index.
    fn hold(&mut self, origin: &NodeId) -> usize {
        if self.origins.len() >= MAX_ORIGINS {
            let victim = (0..self.origins.len()).min_by_key(|&v| self.origins[v].last_active).unwrap_or(0);
            let gone = self.origins.remove(victim);
            self.forget(gone);
        }
        // Heard of, not yet heard from (`origin_index` marks it when a broadcast brought it): a
        // record a digest made must not keep a departed origin in every ledger, each one's digest
        // making it afresh in the others' after they forgot it.
        let mut o = Origin::new(origin.clone());
        let h = Fingerprint::of_name(origin);
        let from = self.forgotten.partition_point(|f| f.origin < h);
        let to = from + self.forgotten[from..].iter().take_while(|f| f.origin == h).count();
        // Taken out in the order they were forgotten, the order the lives had (a handful: at
        // most `MAX_EPOCHS + MAX_GONE`).
        let mut left = to - from;
        while left > 0 {
            let next = (from..from + left).min_by_key(|&i| self.forgotten[i].order).unwrap_or(from);
            let f = self.forgotten.remove(next);
            left -= 1;
            if f.next == u64::MAX {
                if o.gone.len() < MAX_GONE {
                    o.gone.push(f.epoch);
                    o.pushed_out += 1;
                }
            } else if o.lives.len() < MAX_EPOCHS {
                let mut life = Life::new(f.epoch, f.next);
                life.keyed_floor = f.keyed_next;
                o.lives.push(life);
            }
        }
        self.clock += 1;
        o.last_active = self.clock;
        let i = self.origins.binary_search_by(|x| x.id.cmp(origin)).unwrap_or_else(|i| i);
        self.origins.insert(i, o);
        i
    }

    /// Forgets origin `o` to make room: its holes are given up, and where each of its lives stood
    /// is remembered (see the module docs).
    fn forget(&mut self, o: Origin) {
        let h = Fingerprint::of_name(&o.id);
        let mut remember = Vec::with_capacity(o.lives.len() + o.gone.len());
        for &epoch in &o.gone {
            remember.push((epoch, u64::MAX, u64::MAX));
        }
        for life in &o.lives {
            self.tally.forget(&o.id, life);
            remember.push((life.epoch, life.next, o.keyed_next(life)));
        }
        for (epoch, next, keyed_next) in remember {
            if self.forgotten.len() >= MAX_FORGOTTEN {
                let oldest = (0..self.forgotten.len()).min_by_key(|&i| self.forgotten[i].order).unwrap_or(0);
                self.forgotten.remove(oldest);
            }
            let f = Forgotten { origin: h, epoch, next, keyed_next, order: self.forgotten_count };
            self.forgotten_count += 1;
            match self.forgotten.binary_search_by_key(&(h, epoch), |f| (f.origin, f.epoch)) {
                Ok(i) => self.forgotten[i] = f,
                Err(i) => self.forgotten.insert(i, f),
            }
        }
    }

    /// The index of `origin`, held now, or `None` for old news of a forgotten origin; marked active
    /// when `active` (a broadcast of it arrived).
    fn origin_index(
        &mut self,
        origin: &NodeId,
        epoch: u32,
        now: Instant,
        active: bool,
        old_news: &dyn Fn(Option<&Forgotten>) -> bool,
    ) -> Option<usize> {
        let i = match self.recall(origin, epoch, old_news) {
            Recall::Held(i) => i,
            Recall::OldNews => return None,
            Recall::Hold => self.hold(origin),
        };
        if active {
            self.clock += 1;
            self.origins[i].last_active = self.clock;
            self.origins[i].last_heard = now;
        }
        Some(i)
    }

    /// Decides about an unkeyed broadcast `(origin, epoch, seq)` and records it. `baseline`: whether
    /// this member knew, when it arrived, where the cluster's broadcasts stood (see [`Ledger::learn`];
    /// before that, a life first seen starts at `seq`; after, at 0, so everything it sent is expected).
    pub fn accept(&mut self, origin: &NodeId, epoch: u32, seq: u64, baseline: bool, now: Instant) -> Verdict {
        let Some(after) = seq.checked_add(1) else { return Verdict::Invalid };
        let start = if baseline { 0 } else { seq };
        // A forgotten life that reached past `seq` delivered it, or gave it up and reported it.
        let Some(i) = self.origin_index(origin, epoch, now, true, &|f| f.is_some_and(|f| seq < f.next)) else {
            return Verdict::Duplicate;
        };
        let (o, tally) = (&mut self.origins[i], &mut self.tally);
        // A life pushed out by newer ones: whatever it sent counts as handled.
        let Some(life) = o.life_mut(origin, epoch, start, tally) else { return Verdict::Duplicate };
        if seq < life.start {
            return Verdict::BeforeOurTime;
        }
        if seq < life.next {
            return match life.holes.binary_search_by_key(&seq, |h| h.0) {
                Ok(i) => {
                    life.holes.remove(i);
                    tally.close(1);
                    Verdict::Deliver
                }
                Err(_) => Verdict::Duplicate,
            };
        }
        let from = life.next;
        life.next = after;
        tally.open_holes(origin, life, from, seq, now);
        Verdict::Deliver
    }

    /// Decides about a keyed broadcast and records it when delivered.
    pub fn accept_keyed(
        &mut self,
        origin: &NodeId,
        epoch: u32,
        seq: u64,
        name: (&str, &[u8]),
        now: Instant,
    ) -> Verdict {
        let Some(i) = self.origin_index(origin, epoch, now, true, &|f| f.is_some_and(|f| seq < f.keyed_next)) else {
            return Verdict::Duplicate;
        };
        let o = &mut self.origins[i];
        // Keyed values do not use the unkeyed sequence; the life just has to be known.
        let next = o.life_rank(epoch).map_or(0, |i| o.lives[i].next);
        // A life pushed out by newer ones: its values are older than theirs.
        if o.life_mut(origin, epoch, next, &mut self.tally).is_none() {
            return Verdict::Superseded;
        }
        let rank = o.life_rank(epoch);
        let held = o.keyed.iter().position(|k| k.topic == name.0 && k.key == name.1);
        // Below the floor of a life brought back, a value for a key we hold nothing for was
        // delivered before the origin was forgotten: hold it again, do not deliver it again.
        let floor = rank.map_or(0, |r| o.lives[r].keyed_floor);
        let delivered_before = held.is_none() && seq < floor;
        if let Some(i) = held {
            let k = &o.keyed[i];
            let newer = if k.epoch == epoch { seq > k.seq } else { rank > o.life_rank(k.epoch) };
            if !newer {
                return if k.epoch == epoch && seq == k.seq { Verdict::Duplicate } else { Verdict::Superseded };
            }
            o.keyed[i].epoch = epoch;
            o.keyed[i].seq = seq;
        } else {
            if o.keyed.len() >= MAX_KEYS {
                o.keyed.remove(0);
            }
            o.keyed.push(Keyed { topic: String::from(name.0), key: name.1.to_vec(), epoch, seq });
        }
        if delivered_before {
            Verdict::Duplicate
        } else {
            Verdict::Deliver
        }
    }

    /// Learns from a digest that `origin`'s life `epoch` reached `next`. Call for every entry but
    /// our own lives.
    ///
    /// A member `arriving` (the first digest of its life) takes it as where its time starts in a
    /// life none of whose events it has seen: everything below `next` was sent before it came.
    /// Otherwise, and in a life whose events it has seen since it came, it opens holes for what it
    /// never saw, at most [`MAX_HOLES`] past what it holds per digest (a digest that claims more is
    /// believed a step at a time: a forged one cannot make us expect, or report missed, more than
    /// that at once). Holes are kept only for origins the caller knows as `member`s (in any state):
    /// for any other origin (a member forgotten while we were cut off, or a name made up) what we
    /// lack is given up at once, so that it is reported, not silently lost, and a forged digest
    /// cannot fill the hole bounds with lives nobody will ever repair.
    ///
    /// A digest entry is no activity of its origin: it never keeps an origin from being forgotten,
    /// and one that says no more than where a forgotten life stood changes nothing.
    pub fn learn(&mut self, origin: &NodeId, epoch: u32, next: u64, arriving: bool, member: bool, now: Instant) {
        // A forgotten life listed no further than it stood, or an old one listed at all: old news.
        let old_news = |f: Option<&Forgotten>| f.is_some_and(|f| next <= f.next);
        let Some(i) = self.origin_index(origin, epoch, now, false, &old_news) else { return };
        let (o, tally) = (&mut self.origins[i], &mut self.tally);
        let Some(life) = o.life_mut(origin, epoch, 0, tally) else { return };
        // No event of the life seen (it is new, or known from keyed values only): no hole either.
        if arriving && life.next == life.start {
            life.start = life.start.max(next);
            life.next = life.start;
            return;
        }
        let next = next.min(life.next.saturating_add(MAX_HOLES as u64));
        if next > life.next {
            let from = life.next;
            life.next = next;
            if member {
                tally.open_holes(origin, life, from, next, now);
            } else {
                tally.give_up(origin, epoch, next - from);
            }
        }
    }

    /// Gives up holes noticed `retention` ago or more, and returns them with those given up earlier
    /// (past a bound, or with a life or origin forgotten). Call periodically, and report them all.
    pub fn expire(&mut self, now: Instant, retention: Duration) -> GivenUp {
        let tally = &mut self.tally;
        for o in &mut self.origins {
            let id = &o.id;
            for life in &mut o.lives {
                let before = life.holes.len();
                life.holes.retain(|&(_, noticed)| now.saturating_duration_since(noticed) < retention);
                let gone = before - life.holes.len();
                tally.close(gone);
                tally.give_up(id, life.epoch, gone as u64);
            }
        }
        core::mem::take(&mut tally.given_up)
    }

    /// Forgets the origins that are no longer members (`member` says which are) and sent nothing
    /// for `quiet` (longer than broadcasts are kept anywhere for repair). Call periodically, before
    /// [`Ledger::expire`]: what holes such an origin had are given up and reported. Where each of
    /// its lives stood is remembered (see the module docs), for as long as room allows: members
    /// hand a broadcast on, and keep it for repair, each for its own retention from when it
    /// arrived, so no time is known after which none could bring it back.
    ///
    /// Without this the ledger held every origin that ever broadcast, up to [`MAX_ORIGINS`], and
    /// every push-pull digest listed them all. The price: a member cut off for longer than `quiet`
    /// no longer hears of the broadcasts it missed from members that departed meanwhile.
    pub fn forget_quiet(&mut self, now: Instant, quiet: Duration, member: impl Fn(&NodeId) -> bool) {
        let is_quiet = |o: &Origin| now.saturating_duration_since(o.last_heard) >= quiet && !member(&o.id);
        let mut i = self.origins.len();
        while i > 0 {
            i -= 1;
            if is_quiet(&self.origins[i]) {
                let o = self.origins.remove(i);
                self.forget(o);
            }
        }
    }

    /// An origin we have a hole in noticed `age` ago or more, if any.
    pub fn origin_with_hole_older_than(&self, now: Instant, age: Duration) -> Option<NodeId> {
        if self.tally.open == 0 {
            return None;
        }
        self.origins.iter().find_map(|o| {
            let id = &o.id;
            let old = o
                .lives
                .iter()
                .any(|l| l.holes.iter().any(|&(_, noticed)| now.saturating_duration_since(noticed) >= age));
            old.then(|| id.clone())
        })
    }

    /// The digest of the lives we have holes in: what a repair request asks for.
    pub fn digest_of_holes(&self) -> Vec<DigestEntry> {
        let mut d = self.digest();
        d.retain(|e| !e.holes.is_empty());
        d
    }

    /// Open holes, all origins together.
    pub fn holes(&self) -> usize {
        #[cfg(test)]
        assert_eq!(self.tally.open, self.origins.iter().flat_map(|o| &o.lives).map(|l| l.holes.len()).sum());
        self.tally.open
    }

    /// A hash of the keyed values held for `o`'s life `epoch`, the same whatever order they came in
    /// (a sum of per-value hashes) and on every member (a [`Fingerprint`]: members holding the same
    /// values agree, and their push-pulls send none of them). 0 when there are none.
    fn keyed_hash(o: &Origin, epoch: u32) -> u64 {
        let mut sum = 0u64;
        for k in o.keyed.iter().filter(|k| k.epoch == epoch) {
            let h = Fingerprint::new().field(k.topic.as_bytes()).field(&k.key).u64(k.seq).finish();
            sum = sum.wrapping_add(h | 1);
        }
        sum
    }

    /// This member's digest: every life it knows of, however old. A member cut off for longer than
    /// any retention still learns from it what it never heard of, and reports it missed: a digest
    /// that forgot quiet origins would let that loss go unnoticed.
    pub fn digest(&self) -> Vec<DigestEntry> {
        let mut out = Vec::new();
        for o in &self.origins {
            let id = &o.id;
            for life in o.lives.iter().rev() {
                out.push(DigestEntry {
                    origin: id.clone(),
                    epoch: life.epoch,
                    next: life.next,
                    holes: life.holes.iter().take(MAX_DIGEST_HOLES).map(|h| h.0).collect(),
                    keyed: Self::keyed_hash(o, life.epoch),
                });
            }
        }
        out
    }

    /// True when a digest saying that `origin`'s life `epoch` reached `next` would teach us nothing:
    /// we hold the life that far already (or it is gone, or forgotten that far).
    pub fn reached(&self, origin: &NodeId, epoch: u32, next: u64) -> bool {
        match self.find(origin) {
            Some(o) => o.gone.contains(&epoch) || o.life_rank(epoch).is_some_and(|r| o.lives[r].next >= next),
            None => matches!(self.recall(origin, epoch, &|f| f.is_some_and(|f| next <= f.next)), Recall::OldNews),
        }
    }

    /// True when `origin`'s life `epoch` was pushed out by newer ones: old news to us, and likely to a
    /// member whose digest does not list it either.
    pub fn is_gone(&self, origin: &NodeId, epoch: u32) -> bool {
        match self.find(origin) {
            Some(o) => o.gone.contains(&epoch),
            None => {
                let h = Fingerprint::of_name(origin);
                let i = self.forgotten.binary_search_by_key(&(h, epoch), |f| (f.origin, f.epoch));
                i.is_ok_and(|i| self.forgotten[i].next == u64::MAX)
            }
        }
    }

    /// Lives of forgotten origins remembered.
    pub fn forgotten(&self) -> usize {
        self.forgotten.len()
    }

    /// True when a member whose digest says `entry` (or nothing about this life, `None`) lacks the
    /// unkeyed broadcast `(epoch, seq)` we hold.
    pub fn lacks(entry: Option<&DigestEntry>, seq: u64) -> bool {
        match entry {
            None => true,
            Some(e) => seq >= e.next || e.holes.binary_search(&seq).is_ok(),
        }
    }

    /// True when a member whose digest says `entry` holds other keyed values than we do for
    /// `origin`'s life `epoch`.
    pub fn keyed_differs(&self, entry: Option<&DigestEntry>, origin: &NodeId, epoch: u32) -> bool {
        let ours = self.find(origin).map_or(0, |o| Self::keyed_hash(o, epoch));
        ours != entry.map_or(0, |e| e.keyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    const T: Instant = Instant::ZERO;

    #[test]
    fn every_broadcast_is_delivered_once_however_far_out_of_order() {
        let mut l = Ledger::new();
        let o = id("o");
        // Newest first, as a queue that sends the newest first would: 300 apart, all delivered.
        for seq in (0..300).rev() {
            assert_eq!(l.accept(&o, 7, seq, true, T), Verdict::Deliver, "seq {seq}");
        }
        for seq in 0..300 {
            assert_eq!(l.accept(&o, 7, seq, true, T), Verdict::Duplicate);
        }
        assert_eq!(l.holes(), 0);
    }

    #[test]
    fn the_last_sequence_number_is_invalid_and_changes_nothing() {
        let mut l = Ledger::new();
        let o = id("o");
        assert_eq!(l.accept(&o, 7, u64::MAX, true, T), Verdict::Invalid);
        assert_eq!(l.accept(&o, 7, u64::MAX - 1, false, T), Verdict::Deliver, "the one before is a number like any");
        assert_eq!(l.accept(&o, 7, u64::MAX, true, T), Verdict::Invalid);
        assert_eq!(l.holes(), 0);
    }

    #[test]
    fn a_hole_is_reported_once_when_it_expires() {
        let mut l = Ledger::new();
        let o = id("o");
        l.accept(&o, 7, 0, true, T);
        l.accept(&o, 7, 3, true, T);
        assert_eq!(l.holes(), 2);
        assert_eq!(l.expire(Instant::from_millis(999), Duration::from_secs(1)), GivenUp::default());
        assert_eq!(l.accept(&o, 7, 1, true, T), Verdict::Deliver, "a late arrival fills its hole");
        assert_eq!(l.expire(Instant::from_millis(1_000), Duration::from_secs(1)).per_life, [(o.clone(), 7, 1)]);
        assert_eq!(l.holes(), 0);
        assert_eq!(l.accept(&o, 7, 2, true, T), Verdict::Duplicate, "given up, it counts as handled");
    }

    #[test]
    fn a_member_joining_does_not_expect_what_was_sent_before_it() {
        let mut l = Ledger::new();
        let o = id("o");
        l.learn(&o, 7, 10, true, true, T);
        assert_eq!(l.accept(&o, 7, 9, true, T), Verdict::BeforeOurTime);
        assert_eq!(l.accept(&o, 7, 12, true, T), Verdict::Deliver);
        assert_eq!(l.holes(), 2, "10 and 11 were sent after it joined");
        // Before its join completed, the first broadcast it sees from a life marks where it starts.
        let p = id("p");
        assert_eq!(l.accept(&p, 1, 40, false, T), Verdict::Deliver);
        assert_eq!(l.holes(), 2);
    }

    #[test]
    fn a_life_heard_of_before_the_first_digest_is_expected_from_where_it_was_first_seen() {
        let mut l = Ledger::new();
        let o = id("o");
        assert_eq!(l.accept(&o, 7, 5, false, T), Verdict::Deliver, "first seen at 5");
        l.learn(&o, 7, 9, true, true, T);
        assert_eq!(l.holes(), 3, "6 to 8 were sent after we came");
        assert_eq!(l.accept(&o, 7, 4, true, T), Verdict::BeforeOurTime);
        assert_eq!(l.accept(&o, 7, 7, true, T), Verdict::Deliver);
    }

    #[test]
    fn what_a_digest_says_we_lack_of_an_origin_we_do_not_know_is_given_up_at_once() {
        let mut l = Ledger::new();
        let o = id("o");
        l.learn(&o, 7, 5, false, false, T);
        l.learn(&o, 7, 5, false, false, T);
        assert_eq!(l.holes(), 0);
        assert_eq!(l.expire(T, Duration::from_secs(1)).per_life, [(o.clone(), 7, 5)], "once");
        l.learn(&o, 7, u64::MAX, false, false, T);
        assert_eq!(l.expire(T, Duration::from_secs(1)).per_life, [(o, 7, MAX_HOLES as u64)], "a bounded step");
    }

    #[test]
    fn a_digest_reveals_broadcasts_a_member_never_heard_of() {
        let mut l = Ledger::new();
        let o = id("o");
        l.accept(&o, 7, 0, true, T);
        l.learn(&o, 7, 4, false, true, T);
        assert_eq!(l.holes(), 3);
        let d = l.digest();
        assert_eq!(d[0].next, 4);
        assert_eq!(d[0].holes, [1, 2, 3]);
        assert!(Ledger::lacks(Some(&d[0]), 2));
        assert!(!Ledger::lacks(Some(&d[0]), 0));
        assert!(Ledger::lacks(Some(&d[0]), 4));
    }

    #[test]
    fn keyed_values_only_move_forward_within_and_across_lives() {
        let mut l = Ledger::new();
        let o = id("o");
        let k = ("cursor", &b"x"[..]);
        assert_eq!(l.accept_keyed(&o, 1, 5, k, T), Verdict::Deliver);
        assert_eq!(l.accept_keyed(&o, 1, 4, k, T), Verdict::Superseded);
        assert_eq!(l.accept_keyed(&o, 1, 5, k, T), Verdict::Duplicate);
        assert_eq!(l.accept_keyed(&o, 2, 0, k, T), Verdict::Deliver, "a new life replaces the old one's value");
        assert_eq!(l.accept_keyed(&o, 1, 9, k, T), Verdict::Superseded, "the older life never comes back");
    }

    #[test]
    fn holes_of_every_life_together_stay_within_the_global_bound_and_the_rest_are_counted() {
        let mut l = Ledger::new();
        let lives = (MAX_OPEN_HOLES / MAX_HOLES + 2) as u32;
        for epoch in 0..lives {
            let o = id(&alloc::format!("o{epoch}"));
            l.accept(&o, epoch, 0, true, T);
            l.accept(&o, epoch, MAX_HOLES as u64 + 1, true, T);
        }
        assert_eq!(l.holes(), MAX_OPEN_HOLES);
        let given_up = l.expire(T, Duration::from_secs(1));
        let counted: u64 = given_up.per_life.iter().map(|m| m.2).sum();
        assert_eq!(counted, (lives as usize * MAX_HOLES - MAX_OPEN_HOLES) as u64);
        assert_eq!(given_up.unattributed, 0);
        let later = l.expire(Instant::from_millis(1_000), Duration::from_secs(1));
        assert_eq!(later.per_life.iter().map(|m| m.2).sum::<u64>(), MAX_OPEN_HOLES as u64);
        assert_eq!(l.holes(), 0);
    }

    #[test]
    fn a_life_pushed_out_gives_up_its_holes_and_counts_them() {
        let mut l = Ledger::new();
        let o = id("o");
        l.accept(&o, 0, 3, true, T);
        for epoch in 1..=MAX_EPOCHS as u32 {
            l.accept(&o, epoch, 0, true, T);
        }
        assert_eq!(l.holes(), 0);
        assert_eq!(l.expire(T, Duration::from_secs(1)).per_life, [(o, 0, 3)]);
    }

    #[test]
    fn a_life_pushed_out_by_newer_ones_never_comes_back() {
        let (o, k) = (id("o"), ("cursor", &b"x"[..]));
        let mut l = Ledger::new();
        assert_eq!(l.accept(&o, 1, 0, true, T), Verdict::Deliver);
        assert_eq!(l.accept_keyed(&o, 1, 0, k, T), Verdict::Deliver);
        for epoch in 2..=MAX_EPOCHS as u32 + 1 {
            l.accept(&o, epoch, 0, true, T);
            l.accept_keyed(&o, epoch, 0, k, T);
        }
        assert!(l.is_gone(&o, 1));
        l.learn(&o, 1, 9, false, true, T);
        assert_eq!(l.holes(), 0, "a digest listing it opens no hole");
        assert_eq!(l.accept(&o, 1, 3, true, T), Verdict::Duplicate);
        assert_eq!(l.accept_keyed(&o, 1, 7, k, T), Verdict::Superseded);
        assert!(l.digest().iter().all(|e| e.epoch != 1));
        assert_eq!(l.accept(&o, MAX_EPOCHS as u32 + 1, 1, true, T), Verdict::Deliver, "the newest is still there");
    }

    /// `MAX_ORIGINS + extra` origins, each of which delivered one broadcast (and a keyed value),
    /// with the push-pull digests of their members learned in between, as a long-lived member sees
    /// a cluster that more members than the ledger holds have passed through.
    fn overflowing(extra: usize) -> (Ledger, Vec<NodeId>) {
        let mut l = Ledger::new();
        let names: Vec<NodeId> = (0..MAX_ORIGINS + extra).map(|i| id(&alloc::format!("o{i}"))).collect();
        for (i, o) in names.iter().enumerate() {
            assert_eq!(l.accept(o, 1, 0, true, T), Verdict::Deliver, "{o}");
            assert_eq!(l.accept_keyed(o, 1, 0, ("k", b"v"), T), Verdict::Deliver, "{o}");
            if i % 256 == 0 {
                for e in l.digest() {
                    l.learn(&e.origin, e.epoch, e.next, false, true, T);
                }
            }
        }
        assert_eq!(l.len(), MAX_ORIGINS);
        (l, names)
    }

    #[test]
    fn a_broadcast_delivered_before_its_origin_was_forgotten_is_never_delivered_again() {
        let (mut l, names) = overflowing(500);
        for o in &names {
            assert_eq!(l.accept(o, 1, 0, true, T), Verdict::Duplicate, "{o}");
            assert_ne!(l.accept_keyed(o, 1, 0, ("k", b"v"), T), Verdict::Deliver, "{o}");
        }
        assert_eq!(l.expire(T, Duration::from_secs(1)), GivenUp::default());
    }

    #[test]
    fn the_digest_of_a_member_that_still_holds_forgotten_origins_reports_nothing_missed() {
        let (mut l, names) = overflowing(500);
        // Another member's digest still lists every origin, most of them gone from the member table.
        for o in &names {
            l.learn(o, 1, 1, false, false, T);
        }
        assert_eq!(l.expire(T, Duration::from_secs(1)), GivenUp::default());
        assert_eq!(l.holes(), 0);
        let first = &names[0];
        assert_eq!(l.accept(first, 1, 0, true, T), Verdict::Duplicate, "still remembered as delivered");
    }

    #[test]
    fn a_forgotten_origin_that_broadcasts_again_is_expected_from_where_it_was_forgotten() {
        let (mut l, names) = overflowing(500);
        let first = &names[0];
        assert_eq!(l.accept(first, 1, 3, true, T), Verdict::Deliver, "new since it was forgotten");
        assert_eq!(l.holes(), 2, "1 and 2 are holes; 0 was delivered before");
        assert_eq!(l.accept(first, 1, 1, true, T), Verdict::Deliver);
        assert_ne!(l.accept(first, 1, 0, true, T), Verdict::Deliver, "delivered before it was forgotten");
        assert_eq!(l.accept_keyed(first, 1, 1, ("k", b"v"), T), Verdict::Deliver, "a newer value");
        assert_eq!(l.accept(first, 2, 0, true, T), Verdict::Deliver, "a new life");
        assert_eq!(l.len(), MAX_ORIGINS);
    }

    #[test]
    fn forgotten_lives_stay_within_their_bound() {
        let (l, _) = overflowing(MAX_FORGOTTEN + 100);
        assert_eq!(l.forgotten.len(), MAX_FORGOTTEN);
    }

    #[test]
    fn an_origin_that_departed_and_went_quiet_is_forgotten_and_what_it_sent_stays_delivered() {
        let mut l = Ledger::new();
        let (gone, here) = (id("gone"), id("here"));
        let q = Duration::from_secs(10);
        l.accept(&gone, 1, 0, true, T);
        l.accept(&here, 1, 0, true, T);
        l.forget_quiet(Instant::from_millis(9_999), q, |o| *o == here);
        assert_eq!(l.len(), 2, "not quiet long enough");
        l.forget_quiet(Instant::from_millis(10_000), q, |o| *o == here);
        assert_eq!((l.len(), l.forgotten()), (1, 1), "the member stays, however quiet");
        assert!(l.digest().iter().all(|e| e.origin != gone), "no longer listed");
        // Another member that delivered it much later still keeps it, and hands it on (swarm seed
        // 400032: remembered for a while only, it was delivered again).
        let day = Instant::from_millis(86_400_000);
        l.forget_quiet(day, q, |o| *o == here);
        assert_eq!(l.accept(&gone, 1, 0, true, day), Verdict::Duplicate);
    }

    #[test]
    fn a_departed_origin_only_heard_of_in_digests_is_forgotten_at_once_and_not_made_again() {
        // Each member that made it from another's digest kept it as if just heard from, and listed
        // it in its own digest for a quiet period more: a departed origin went round for ever, and
        // each member that had forgotten it long enough counted its broadcasts missed again.
        let mut l = Ledger::new();
        let gone = id("gone");
        let q = Duration::from_secs(10);
        let late = Instant::from_millis(100_000);
        l.learn(&gone, 1, 1, false, false, late);
        assert_eq!(l.expire(late, q).per_life, [(gone.clone(), 1, 1)], "reported missed, once");
        l.forget_quiet(late, q, |_| false);
        assert_eq!(l.len(), 0);
        l.learn(&gone, 1, 1, false, false, late);
        assert_eq!((l.len(), l.expire(late, q)), (0, GivenUp::default()), "old news");
    }

    #[test]
    fn holes_beyond_the_bound_are_given_up_and_counted() {
        let mut l = Ledger::new();
        let o = id("o");
        l.accept(&o, 1, 0, true, T);
        l.accept(&o, 1, MAX_HOLES as u64 + 11, true, T);
        assert_eq!(l.holes(), MAX_HOLES);
        let missed = l.expire(T, Duration::from_secs(1));
        assert_eq!(missed.per_life, [(o, 1, 10)]);
    }
}
