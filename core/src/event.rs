//! What the node tells its application: membership changes, messages, and local conditions.
//! Drain with [`crate::Node::poll_event`] after every input.

use alloc::string::String;
use alloc::vec::Vec;

use crate::identity::NodeId;
use crate::member::Member;

/// How a [`Event::Message`] travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A cluster-wide broadcast (delivered once to every member).
    Broadcast,
    /// A direct message (best-effort or reliable).
    Direct,
}

/// Identifies one of our own broadcasts: [`crate::Node::broadcast`] returns it and
/// [`Event::BroadcastDropped`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BroadcastId {
    /// Drawn when the node starts, so a restarted origin's broadcasts never collide with its
    /// previous life's.
    pub epoch: u32,
    /// Counts this life's broadcasts from 0; keyed and unkeyed broadcasts count separately.
    pub seq: u64,
    /// True for a broadcast with an invalidation key.
    pub keyed: bool,
}

/// An event for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<A> {
    /// A member joined, or came back after it had failed or left.
    Joined(Member<A>),
    /// A member's metadata changed.
    Updated(Member<A>),
    /// A member is suspected of having failed (`by` raised the suspicion).
    Suspected { id: NodeId, incarnation: u32, by: NodeId },
    /// A suspected member refuted the suspicion and is alive.
    Alive { id: NodeId, incarnation: u32 },
    /// A member was declared failed (`by` declared it; ourselves when our suspicion timed out).
    Failed { id: NodeId, incarnation: u32, by: NodeId },
    /// A member left gracefully.
    Left { id: NodeId, incarnation: u32 },
    /// A user broadcast or direct message arrived.
    Message { from: NodeId, topic: String, payload: Vec<u8>, kind: MessageKind },
    /// Our local health score changed (Lifeguard); `multiplier` stretches probe interval and timeout.
    HealthChanged { score: u32, multiplier: u32 },
    /// A seed answered our join: we are part of a cluster.
    JoinSucceeded { via: A },
    /// No seed answered within `join_timeout`. Re-announcing to the seeds continues in the background.
    JoinFailed { seeds: Vec<A> },
    /// Someone claims the name of a live member from another address. The claim was rejected.
    AddressConflict { id: NodeId, known: A, claimed: A },
    /// We were suspected or declared dead (or another process used our name) and refuted it by moving
    /// to a newer incarnation (serial order, see [`crate::incarnation`]: it wraps past `u32::MAX`).
    Refuted { incarnation: u32 },
    /// One of our broadcasts was dropped from our full queue before it was sent its full number of
    /// times: members may not receive it. Send less at once, or raise `broadcast_queue_depth`.
    BroadcastDropped { id: BroadcastId, topic: String },
    /// We learned that `origin` sent `count` broadcasts (in its life `epoch`) that never reached us
    /// and that no member can hand us any more (they are older than `broadcast_retention`).
    BroadcastsMissed { origin: NodeId, epoch: u32, count: u64 },
    /// A reliable message we sent to `to` (the `id` [`crate::Node::send_reliable`] returned) was not
    /// acknowledged after `reliable_attempts` tries: it may not have arrived.
    SendFailed { id: u64, to: A, topic: String },
}
