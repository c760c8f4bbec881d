//! The node's timers: a min-heap of deadlines that are never cancelled.
//!
//! Stale timers wait for their deadline and then do nothing, so the heap holds every timer set within
//! the longest deadline ahead: a suspicion refuted at once still leaves its timer for the maximum
//! suspicion timeout, minutes at WAN settings. Under heavy churn that is thousands of entries, so
//! the node sweeps the heap now and then ([`Timers::retain`]), dropping the timers whose handler
//! would find nothing current to act on. The sweep only removes no-ops; it never changes what fires.
//!
//! Each timer names what it is about (a probe sequence number, a member and incarnation, a round
//! counter). When it fires, the handler checks that the thing it refers to is still current and does
//! nothing otherwise. That keeps cancellation out of the state machine entirely and makes a spurious
//! or late `handle_timeout` harmless.

use alloc::collections::BinaryHeap;
use core::cmp::{Ordering, Reverse};

use crate::identity::NodeId;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Start the next probe (`round` guards against duplicates).
    Probe {
        round: u64,
    },
    /// The direct ack for probe `seq` is overdue: ask for indirect probes.
    ProbeTimeout {
        seq: u32,
    },
    /// The protocol period of probe `seq` is over: suspect the target unless an ack arrived.
    ProbeEnd {
        seq: u32,
    },
    /// We probe on someone's behalf with our `seq`: send a nack if the target is still silent.
    IndirectNack {
        seq: u32,
    },
    /// Forget our indirect probe `seq`.
    IndirectExpire {
        seq: u32,
    },
    /// The suspicion of `id` at `incarnation` may have run out.
    Suspicion {
        id: NodeId,
        incarnation: u32,
    },
    /// The deadline of our query `id` (of this life).
    #[cfg(any(feature = "queries", test))]
    QueryDeadline {
        id: u64,
    },
    /// A keyed value's time to live may have run out (see `broadcast::Log::expire`).
    StateExpiry,
    Gossip,
    PushPull,
    Reannounce,
    /// Reap, expire broadcasts, sweep timers (see the `housekeeping` module).
    Housekeeping,
    /// Join attempt `attempt` may have timed out.
    JoinTimeout {
        attempt: u32,
    },
    /// Catch-up push-pull `round` after the first join or a move between relays.
    CatchUp {
        round: u32,
    },
    /// Pull `round` of the moves between relays we missed (see `relay_move`).
    #[cfg(any(feature = "member-digests", test))]
    PullMoves {
        round: u32,
    },
    /// Attempt `attempt` of reliable message `id` may be overdue for its acknowledgement.
    ReliableRetry {
        id: u64,
        attempt: u32,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    at: Instant,
    order: u64,
    timer: Timer,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Pending timers, earliest first; ties fire in the order they were set.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    order: u64,
}

impl Timers {
    pub fn set(&mut self, at: Instant, timer: Timer) {
        self.order += 1;
        self.heap.push(Reverse(Entry { at, order: self.order, timer }));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// Removes and returns one timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.heap.peek()?.0.at <= now {
            self.heap.pop().map(|e| e.0.timer)
        } else {
            None
        }
    }

    /// Pending timers, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the timers `current(at, timer)` accepts. Call with a test that rejects only timers
    /// whose handler would do nothing.
    pub fn retain(&mut self, mut current: impl FnMut(Instant, &Timer) -> bool) {
        self.heap.retain(|Reverse(e)| current(e.at, &e.timer));
    }
}

impl<A: crate::identity::Address> super::Node<A> {
    /// Drops stale timers (see the module docs) once they outnumber the current ones several times.
    pub(super) fn sweep_timers(&mut self) {
        let current = 16 + self.suspicions.len() + 2 * self.indirect.len() + self.reliable.pending();
        if self.timers.len() <= 4 * current {
            return;
        }
        let (suspicions, indirect, probe, probe_round) =
            (&self.suspicions, &self.indirect, &self.probe, self.probe_round);
        let (join_attempt, reliable, now) = (self.join.attempt, &self.reliable, self.now);
        self.timers.retain(|at, timer| match timer {
            Timer::Probe { round } => *round >= probe_round,
            Timer::ProbeTimeout { seq } | Timer::ProbeEnd { seq } => probe.as_ref().is_some_and(|p| p.seq == *seq),
            Timer::IndirectNack { seq } | Timer::IndirectExpire { seq } => indirect.contains_key(seq),
            // A confirmation moved the deadline earlier and set a timer there: later ones are spent,
            // unless the deadline has passed: then the accusation was deferred (our link was down or
            // we stalled) to a timer past it, which is the one that will settle it.
            Timer::Suspicion { id, incarnation } => suspicions
                .get(id)
                .is_some_and(|s| s.incarnation == *incarnation && (at <= s.deadline() || s.deadline() <= now)),
            Timer::JoinTimeout { attempt } => *attempt == join_attempt,
            Timer::ReliableRetry { id, attempt } => reliable.waits_for(*id, *attempt),
            Timer::Gossip | Timer::PushPull | Timer::Reannounce | Timer::Housekeeping | Timer::CatchUp { .. } => true,
            // At most two, each fires once.
            #[cfg(any(feature = "member-digests", test))]
            Timer::PullMoves { .. } => true,
            // At most a few: one is set only when earlier than the one pending.
            Timer::StateExpiry => true,
            // At most `MAX_PENDING_QUERIES`, each fires once.
            #[cfg(any(feature = "queries", test))]
            Timer::QueryDeadline { .. } => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_earliest_first_and_only_when_due() {
        let mut t = Timers::default();
        t.set(Instant::from_millis(20), Timer::Gossip);
        t.set(Instant::from_millis(10), Timer::PushPull);
        t.set(Instant::from_millis(10), Timer::Reannounce);
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(10)));
        assert_eq!(t.pop_due(Instant::from_millis(5)), None);
        assert_eq!(t.pop_due(Instant::from_millis(15)), Some(Timer::PushPull));
        assert_eq!(t.pop_due(Instant::from_millis(15)), Some(Timer::Reannounce));
        assert_eq!(t.pop_due(Instant::from_millis(15)), None);
        assert_eq!(t.len(), 1);
    }
}
