//! Ground truth: what really happened to every member, which only the simulator knows, and what the
//! members said about it. The oracles compare the two.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// One process life of a member: `[start, end)`, `end` unset while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Life {
    pub start: u64,
    pub end: Option<u64>,
    /// When it started a graceful leave, if it did.
    pub leaving_since: Option<u64>,
    /// When it joined the cluster (its first `JoinSucceeded`, or its start when it began as a
    /// member); unset while it has not.
    pub joined: Option<u64>,
    /// The member whose join made this one a member: set for a seed that started alone, when
    /// the first joiner found it.
    pub found_by: Option<u32>,
}

impl Life {
    /// A life that starts at `start`, a member from then on if `joined` says so.
    pub fn starting(start: u64, joined: Option<u64>) -> Life {
        Life { start, end: None, leaving_since: None, joined, found_by: None }
    }
}

/// A broadcast that `broadcast()` accepted.
#[derive(Clone, Debug)]
pub(crate) struct SentBroadcast {
    pub origin: u32,
    /// Index into the origin's lives.
    pub life: usize,
    pub at: u64,
    /// Unique in the run; carried at the start of the payload.
    pub tag: u64,
    pub key: Option<u32>,
    pub epoch: u32,
    pub seq: u64,
    pub reported_dropped: bool,
}

/// A reliable direct message that `send_reliable()` accepted.
#[derive(Clone, Debug)]
pub(crate) struct SentReliable {
    pub from: u32,
    pub life: usize,
    pub to: u32,
    pub at: u64,
    pub tag: u64,
    pub id: u64,
    pub failed_reported: bool,
}

/// Everything the runner records.
#[derive(Debug, Default)]
pub(crate) struct Truth {
    pub lives: Vec<Vec<Life>>,
    /// `[from, to)` intervals per member.
    pub stalls: Vec<Vec<(u64, u64)>>,
    pub slow: Vec<Vec<(u64, u64)>>,
    /// Partitions: the cut-off side and `[from, to)`.
    pub partitions: Vec<(Vec<u32>, u64, u64)>,
    /// Forged accusations: `(about, at)`.
    pub forged: Vec<(u32, u64)>,
    pub broadcasts: Vec<SentBroadcast>,
    pub reliable: Vec<SentReliable>,
    /// Deliveries of broadcast tags per receiver's current life: tag -> count.
    pub delivered: Vec<BTreeMap<u64, u32>>,
    /// Reliable message tags delivered by any life of their receiver.
    pub reliable_ever: alloc::collections::BTreeSet<u64>,
    /// Keyed deliveries per receiver, in order: `(origin, key) -> tags`.
    pub keyed: Vec<BTreeMap<(u32, u32), Vec<u64>>>,
    /// Broadcasts each receiver reported missed, per `(origin, epoch)`.
    pub missed: Vec<BTreeMap<(u32, u32), u64>>,
    /// Reliable deliveries per receiver's current life: tag -> count.
    pub reliable_delivered: Vec<BTreeMap<u64, u32>>,
}

impl Truth {
    pub fn new(n: usize) -> Self {
        Truth {
            lives: vec![Vec::new(); n],
            stalls: vec![Vec::new(); n],
            slow: vec![Vec::new(); n],
            delivered: vec![BTreeMap::new(); n],
            keyed: vec![BTreeMap::new(); n],
            missed: vec![BTreeMap::new(); n],
            reliable_delivered: vec![BTreeMap::new(); n],
            ..Truth::default()
        }
    }

    /// A new life of member `i` starts: what it delivered is its previous life's business.
    pub fn new_life(&mut self, i: usize) {
        self.delivered[i].clear();
        self.keyed[i].clear();
        self.missed[i].clear();
        self.reliable_delivered[i].clear();
    }

    /// The life of member `i` running at `t`, if any.
    pub fn life_at(&self, i: usize, t: u64) -> Option<usize> {
        self.lives[i].iter().position(|l| l.start <= t && l.end.map_or(true, |e| t < e))
    }

    /// Member `i` runs at `t` and has not started leaving.
    pub fn is_up(&self, i: usize, t: u64) -> bool {
        self.life_at(i, t).is_some_and(|l| self.lives[i][l].leaving_since.map_or(true, |s| t < s))
    }

    /// Member `i` joined before `t` and ran, without a leave, from then until `to`, in one life.
    pub fn member_throughout(&self, i: usize, t: u64, to: u64) -> bool {
        self.lives[i].iter().any(|l| {
            l.joined.is_some_and(|j| j <= t)
                && l.end.map_or(true, |e| to < e)
                && l.leaving_since.map_or(true, |s| to < s)
        })
    }

    /// Member `i` was running, without a leave, over all of `[from, to]`, in one life.
    pub fn up_throughout(&self, i: usize, from: u64, to: u64) -> bool {
        self.lives[i]
            .iter()
            .any(|l| l.start <= from && l.end.map_or(true, |e| to < e) && l.leaving_since.map_or(true, |s| to < s))
    }

    /// Member `i` was stalled or slow to receive at some point in `[from, to]`.
    pub fn disturbed(&self, i: usize, from: u64, to: u64) -> bool {
        let overlaps = |&(a, b): &(u64, u64)| a <= to && from < b;
        self.stalls[i].iter().any(overlaps) || self.slow[i].iter().any(overlaps)
    }

    /// How long member `i` ran (was not stalled) between `from` and `to`. Time spent stalled does not
    /// count: a frozen process fires no timers, so nothing it owes can come due then.
    pub fn running_time(&self, i: usize, from: u64, to: u64) -> u64 {
        let stalled: u64 = self.stalls[i].iter().map(|&(a, b)| b.min(to).saturating_sub(a.max(from))).sum();
        to.saturating_sub(from).saturating_sub(stalled)
    }

    /// Member `r` was cut off from `origin` by a partition in force when `origin` sent at `at`, that
    /// lasted `at_least` or longer, and `origin`'s life `life` ended (crash or leave) before it
    /// healed: the case the broadcast ledger documents as its price (`Ledger::forget_quiet`), where
    /// the members that held the broadcast forgot its origin before `r` could hear of it.
    pub fn cut_off_while_origin_departed(&self, r: u32, origin: u32, life: usize, at: u64, at_least: u64) -> bool {
        let l = &self.lives[origin as usize][life];
        let departed = l.end.into_iter().chain(l.leaving_since).min();
        self.partitions.iter().any(|(side, s, e)| {
            side.contains(&r) != side.contains(&origin)
                && *s <= at
                && at < *e
                && e - s >= at_least
                && departed.is_some_and(|d| d < *e)
        })
    }

    /// Some partition was in force at some point in `[from, to]` (a partition touches every member:
    /// each is cut off from someone, and news of the other side's failure reaches everyone).
    pub fn any_partition(&self, from: u64, to: u64) -> bool {
        self.partitions.iter().any(|(_, s, e)| *s <= to && from < *e)
    }
}
