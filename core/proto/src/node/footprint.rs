//! How big a node's queues and tables are: every one is bounded by the configuration and the cluster
//! size, and [`Footprint`] lets tests, the swarm simulation and metrics check that they stay so.

use super::Node;
use crate::identity::Address;

/// Sizes of a node's internal queues and tables, for leak checks and metrics (see
/// [`Node::footprint`]). Each is bounded by the configuration and the cluster size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Footprint {
    /// Known members in any state (bounded by reaping).
    pub members: usize,
    /// Open suspicions: suspect members whose suspicion timeout runs.
    pub suspicions: usize,
    /// Pending timers, stale ones included (they expire on their own).
    pub timers: usize,
    /// Probes run on behalf of others.
    pub indirect_probes: usize,
    /// Membership updates waiting in the gossip queue (at most `membership_queue_depth`).
    pub membership_queue: usize,
    /// User broadcasts, ours and others', waiting in the gossip queue (at most
    /// `broadcast_queue_depth`).
    pub broadcast_queue: usize,
    /// Transmits not yet drained by the driver ([`Node::poll_transmit`]).
    pub outbox: usize,
    /// Events not yet drained by the driver ([`Node::poll_event`]).
    pub events: usize,
    /// Members we asked for their metadata (too large for gossip). The list is gone through at every
    /// re-announce, which asks again those whose metadata has not come.
    pub meta_requests: usize,
    /// Broadcast origins remembered for exactly-once delivery.
    pub broadcast_origins: usize,
    /// Open holes among them, all origins together: unkeyed broadcasts we know were sent and have not
    /// received.
    pub broadcast_holes: usize,
    /// Lives of origins forgotten to make room, remembered so that none is delivered again.
    pub broadcast_forgotten: usize,
    /// Broadcasts kept to repair other members.
    pub broadcast_log: usize,
    /// Digest entries of lives whose origin is not a member yet, waiting for it to become one (at
    /// most 256).
    pub broadcast_stranger_lives: usize,
    /// Reliable messages waiting for an acknowledgement.
    pub reliable_pending: usize,
    /// Senders of reliable messages remembered for de-duplication.
    pub reliable_senders: usize,
}

impl Footprint {
    /// Every size with its name, in declaration order: for metrics, reports and leak checks that
    /// treat the sizes alike.
    pub fn fields(&self) -> [(&'static str, usize); 16] {
        [
            ("members", self.members),
            ("suspicions", self.suspicions),
            ("timers", self.timers),
            ("indirect_probes", self.indirect_probes),
            ("membership_queue", self.membership_queue),
            ("broadcast_queue", self.broadcast_queue),
            ("outbox", self.outbox),
            ("events", self.events),
            ("meta_requests", self.meta_requests),
            ("broadcast_origins", self.broadcast_origins),
            ("broadcast_holes", self.broadcast_holes),
            ("broadcast_forgotten", self.broadcast_forgotten),
            ("broadcast_log", self.broadcast_log),
            ("broadcast_stranger_lives", self.broadcast_stranger_lives),
            ("reliable_pending", self.reliable_pending),
            ("reliable_senders", self.reliable_senders),
        ]
    }

    /// The larger of each size in `self` and `other`. Call it on every sample to keep the peaks of
    /// a run.
    pub fn peak(self, other: Footprint) -> Footprint {
        Footprint {
            members: self.members.max(other.members),
            suspicions: self.suspicions.max(other.suspicions),
            timers: self.timers.max(other.timers),
            indirect_probes: self.indirect_probes.max(other.indirect_probes),
            membership_queue: self.membership_queue.max(other.membership_queue),
            broadcast_queue: self.broadcast_queue.max(other.broadcast_queue),
            outbox: self.outbox.max(other.outbox),
            events: self.events.max(other.events),
            meta_requests: self.meta_requests.max(other.meta_requests),
            broadcast_origins: self.broadcast_origins.max(other.broadcast_origins),
            broadcast_holes: self.broadcast_holes.max(other.broadcast_holes),
            broadcast_forgotten: self.broadcast_forgotten.max(other.broadcast_forgotten),
            broadcast_log: self.broadcast_log.max(other.broadcast_log),
            broadcast_stranger_lives: self.broadcast_stranger_lives.max(other.broadcast_stranger_lives),
            reliable_pending: self.reliable_pending.max(other.reliable_pending),
            reliable_senders: self.reliable_senders.max(other.reliable_senders),
        }
    }
}

impl<A: Address> Node<A> {
    /// Sizes of the node's queues and tables. Cheap; for leak checks and metrics.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            members: self.members.len(),
            suspicions: self.suspicions.len(),
            timers: self.timers.len(),
            indirect_probes: self.indirect.len(),
            membership_queue: self.membership_updates.len(),
            broadcast_queue: self.user_broadcasts.len(),
            outbox: self.outbox.len(),
            events: self.events.len(),
            meta_requests: self.meta_requests.len(),
            broadcast_origins: self.ledger.len(),
            broadcast_holes: self.ledger.holes(),
            broadcast_forgotten: self.ledger.forgotten(),
            broadcast_log: self.log.len(),
            broadcast_stranger_lives: self.stranger_lives.len(),
            reliable_pending: self.reliable.pending(),
            reliable_senders: self.reliable.senders(),
        }
    }
}
