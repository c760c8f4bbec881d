//! How big a node's queues and tables are: every one is bounded by the configuration and the cluster
//! size, and [`Footprint`] lets tests, the swarm simulation and metrics check that they stay so.

use super::Node;
use crate::identity::Address;

/// Sizes of a node's internal queues and tables, for leak checks and metrics (see
/// [`Node::footprint`]). Each is bounded by the configuration and the cluster size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Known members in any state (bounded by reaping).
    pub members: usize,
    pub suspicions: usize,
    /// Pending timers, stale ones included (they expire on their own).
    pub timers: usize,
    /// Probes run on behalf of others.
    pub indirect_probes: usize,
    pub membership_queue: usize,
    pub broadcast_queue: usize,
    /// Transmits and events not yet drained by the driver.
    pub outbox: usize,
    pub events: usize,
    pub meta_requests: usize,
    /// Broadcast origins remembered for exactly-once delivery, and open holes among them.
    pub broadcast_origins: usize,
    pub broadcast_holes: usize,
    /// Lives of origins forgotten to make room, remembered so that none is delivered again.
    pub broadcast_forgotten: usize,
    /// Broadcasts kept to repair other members.
    pub broadcast_log: usize,
    /// Reliable messages waiting for an acknowledgement, and senders remembered for de-duplication.
    pub reliable_pending: usize,
    pub reliable_senders: usize,
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
            reliable_pending: self.reliable.pending(),
            reliable_senders: self.reliable.senders(),
        }
    }
}
