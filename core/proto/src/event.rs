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
    /// A member is suspected of having failed (`by` raised the suspicion, or, for one learned from
    /// a push-pull, whose records do not say who raised it, the member that sent it).
    Suspected {
        /// The suspected member.
        id: NodeId,
        /// The member's incarnation the suspicion is about; it refutes by announcing a newer one.
        incarnation: u32,
        /// The member that raised the suspicion (see above).
        by: NodeId,
    },
    /// A suspected member refuted the suspicion and is alive.
    Alive {
        /// The member that refuted.
        id: NodeId,
        /// Its new incarnation, newer than the suspicion's.
        incarnation: u32,
    },
    /// A member was declared failed (`by` declared it; ourselves when our suspicion timed out).
    Failed {
        /// The failed member.
        id: NodeId,
        /// The member's incarnation it was declared failed at.
        incarnation: u32,
        /// The member that declared it failed: our own name when our suspicion timed out.
        by: NodeId,
    },
    /// A member left gracefully, or an operator forced it out after it failed
    /// ([`crate::Node::force_leave`]). A member already reported failed is reported again when we
    /// learn it left (its own leave arriving late, or a forced departure): it is not coming back.
    Left {
        /// The member that left.
        id: NodeId,
        /// The incarnation of its departure announcement.
        incarnation: u32,
    },
    /// A user broadcast or direct message arrived.
    Message {
        /// Who sent it: for a broadcast its origin (whoever relayed it to us), for a direct message
        /// the name the sender put in it.
        from: NodeId,
        /// The topic the sender chose, at most [`crate::wire::MAX_TOPIC_LEN`] bytes.
        topic: String,
        /// The application's bytes, as sent.
        payload: Vec<u8>,
        /// Whether it came as a broadcast or as a direct message.
        kind: MessageKind,
    },
    /// Our local health score changed (Lifeguard); `multiplier` stretches probe interval and timeout.
    HealthChanged {
        /// The new score: 0 is healthy, `awareness_max_multiplier - 1` the worst.
        score: u32,
        /// `score + 1`: the factor our probe interval and probe timeout are multiplied by.
        multiplier: u32,
    },
    /// A seed answered our join: we are part of a cluster.
    JoinSucceeded {
        /// The address the answer came from: a seed's, possibly another address than the one we
        /// asked it at.
        via: A,
    },
    /// No seed answered within `join_timeout`. Re-announcing to the seeds continues in the background.
    JoinFailed {
        /// Every seed address given to `join` so far (our own address left out): the ones
        /// re-announcing keeps trying.
        seeds: Vec<A>,
    },
    /// Someone claims the name of a live member from another address. The claim was rejected.
    AddressConflict {
        /// The name claimed; it may be ours.
        id: NodeId,
        /// The address we hold for that name (our own address when the name is ours).
        known: A,
        /// The other address the claim named.
        claimed: A,
    },
    /// We were suspected or declared dead (or another process used our name) and refuted it by moving
    /// to a newer incarnation (serial order, see [`crate::incarnation`]: it wraps past `u32::MAX`).
    Refuted {
        /// Our new incarnation.
        incarnation: u32,
    },
    /// One of our broadcasts was dropped from our full queue before it was sent its full number of
    /// times: members may not receive it. Send less at once, or raise `broadcast_queue_depth`.
    BroadcastDropped {
        /// The broadcast, as [`crate::Node::broadcast`] returned it.
        id: BroadcastId,
        /// Its topic.
        topic: String,
    },
    /// We learned that `origin` sent `count` broadcasts (in its life `epoch`) that never reached us
    /// and that no member can hand us any more (they are older than `broadcast_retention`).
    BroadcastsMissed {
        /// The member that sent them.
        origin: NodeId,
        /// The origin's life they belong to, drawn when it started (see [`BroadcastId::epoch`]).
        epoch: u32,
        /// How many broadcasts of that life were lost.
        count: u64,
    },
    /// A keyed value's time to live ran out (see [`crate::Node::broadcast_with_ttl`]): drop it.
    StateExpired {
        /// The member that set it.
        origin: NodeId,
        /// Its topic.
        topic: String,
        /// Its key.
        key: Vec<u8>,
    },
    /// A reliable message we sent to `to` (the `id` [`crate::Node::send_reliable`] returned) was not
    /// acknowledged after `reliable_attempts` tries: it may not have arrived. Also reported at once
    /// for the oldest message waiting for an acknowledgement when too many wait (more messages or
    /// bytes than the reliable sender keeps), to make room for a new one.
    SendFailed {
        /// The id [`crate::Node::send_reliable`] returned. Reliable messages sent with
        /// [`crate::Node::send_to_addr`] take their ids from the same count, though that call does
        /// not return them.
        id: u64,
        /// The address the message was sent to.
        to: A,
        /// Its topic.
        topic: String,
    },
    /// A member's application state arrived in a push-pull (see [`crate::Node::set_local_state`]):
    /// merge it into ours. Memberlist's `MergeRemoteState`. Feature `app-state`.
    #[cfg(any(feature = "app-state", test))]
    RemoteState {
        /// The member whose state it is.
        from: NodeId,
        /// True when it came with a join: the member joins through us, or answers our join.
        join: bool,
        /// The bytes it set, as it set them.
        state: Vec<u8>,
    },
    /// One of our direct probes was answered by an ack carrying the target's payload (see
    /// [`crate::Node::set_ack_payload`]), memberlist's `NotifyPingComplete`. Feature `coordinates`.
    #[cfg(any(feature = "coordinates", test))]
    PingComplete {
        /// The member probed.
        id: NodeId,
        /// The round trip, from our ping to its ack.
        rtt: core::time::Duration,
        /// The bytes its acks carry.
        payload: Vec<u8>,
    },
    /// A query selected us (see [`crate::Node::query`]): answer it with [`crate::Node::respond`]
    /// before its timeout, or not at all. Feature `queries`.
    #[cfg(any(feature = "queries", test))]
    Query {
        /// The query, to hand back to `respond`.
        inquiry: crate::node::Inquiry<A>,
        /// The topic the origin chose.
        topic: String,
        /// The origin's bytes.
        payload: Vec<u8>,
    },
    /// A member acked one of our queries: it was selected and received it.
    #[cfg(any(feature = "queries", test))]
    QueryAck {
        /// The query, as [`crate::Node::query`] returned it.
        id: crate::node::QueryId,
        /// The member.
        from: NodeId,
    },
    /// A member responded to one of our queries (once per member).
    #[cfg(any(feature = "queries", test))]
    QueryResponse {
        /// The query.
        id: crate::node::QueryId,
        /// The member.
        from: NodeId,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// One of our queries reached its deadline: no more acks or responses are taken.
    #[cfg(any(feature = "queries", test))]
    QueryDone {
        /// The query.
        id: crate::node::QueryId,
        /// Members that acked it.
        acks: u32,
        /// Members that responded.
        responses: u32,
    },
}

impl<A> Event<A> {
    /// The event's name in Shoal's one vocabulary of events: the `type` of the npm package's event
    /// objects and the `event` of the agent's `--json` lines (and the word its text lines start
    /// with). Membership changes are verbs about another member (`join`, `update`, `suspect`,
    /// `alive`, `fail`, `leave`); `joined` and `join-failed` are about our own join.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Joined(_) => "join",
            Event::Updated(_) => "update",
            Event::Suspected { .. } => "suspect",
            Event::Alive { .. } => "alive",
            Event::Failed { .. } => "fail",
            Event::Left { .. } => "leave",
            Event::Message { .. } => "message",
            Event::HealthChanged { .. } => "health",
            Event::JoinSucceeded { .. } => "joined",
            Event::JoinFailed { .. } => "join-failed",
            Event::AddressConflict { .. } => "conflict",
            Event::Refuted { .. } => "refuted",
            Event::BroadcastDropped { .. } => "broadcast-dropped",
            Event::BroadcastsMissed { .. } => "broadcasts-missed",
            Event::SendFailed { .. } => "send-failed",
            Event::StateExpired { .. } => "expire",
            #[cfg(any(feature = "app-state", test))]
            Event::RemoteState { .. } => "state",
            #[cfg(any(feature = "coordinates", test))]
            Event::PingComplete { .. } => "ping",
            #[cfg(any(feature = "queries", test))]
            Event::Query { .. } => "query",
            #[cfg(any(feature = "queries", test))]
            Event::QueryAck { .. } => "query-ack",
            #[cfg(any(feature = "queries", test))]
            Event::QueryResponse { .. } => "query-response",
            #[cfg(any(feature = "queries", test))]
            Event::QueryDone { .. } => "query-done",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{MemberState, Metadata};

    #[test]
    fn event_names_are_the_npm_packages_event_types() {
        let id = NodeId::new("b").unwrap();
        let member = Member {
            id: id.clone(),
            addr: 7u32,
            incarnation: 1,
            state: MemberState::Alive,
            meta_complete: true,
            versions: (1, 1),
            state_since: crate::Instant::ZERO,
            meta: Metadata::default(),
        };
        let query = crate::node::QueryId { epoch: 1, id: 2 };
        let all: [(Event<u32>, &str); 22] = [
            (Event::Joined(member.clone()), "join"),
            (Event::Updated(member), "update"),
            (Event::Suspected { id: id.clone(), incarnation: 1, by: id.clone() }, "suspect"),
            (Event::Alive { id: id.clone(), incarnation: 2 }, "alive"),
            (Event::Failed { id: id.clone(), incarnation: 2, by: id.clone() }, "fail"),
            (Event::Left { id: id.clone(), incarnation: 2 }, "leave"),
            (
                Event::Message { from: id.clone(), topic: "t".into(), payload: Vec::new(), kind: MessageKind::Direct },
                "message",
            ),
            (Event::HealthChanged { score: 1, multiplier: 2 }, "health"),
            (Event::JoinSucceeded { via: 7 }, "joined"),
            (Event::JoinFailed { seeds: alloc::vec![7] }, "join-failed"),
            (Event::AddressConflict { id: id.clone(), known: 7, claimed: 8 }, "conflict"),
            (Event::Refuted { incarnation: 3 }, "refuted"),
            (
                Event::BroadcastDropped { id: BroadcastId { epoch: 1, seq: 2, keyed: false }, topic: "t".into() },
                "broadcast-dropped",
            ),
            (Event::BroadcastsMissed { origin: id.clone(), epoch: 1, count: 2 }, "broadcasts-missed"),
            (Event::SendFailed { id: 1, to: 7, topic: "t".into() }, "send-failed"),
            (Event::StateExpired { origin: id.clone(), topic: "t".into(), key: Vec::new() }, "expire"),
            (Event::RemoteState { from: id.clone(), join: false, state: Vec::new() }, "state"),
            (Event::PingComplete { id: id.clone(), rtt: core::time::Duration::ZERO, payload: Vec::new() }, "ping"),
            (
                Event::Query {
                    inquiry: crate::node::Inquiry { origin: id.clone(), addr: 7, id: query },
                    topic: "t".into(),
                    payload: Vec::new(),
                },
                "query",
            ),
            (Event::QueryAck { id: query, from: id.clone() }, "query-ack"),
            (Event::QueryResponse { id: query, from: id.clone(), payload: Vec::new() }, "query-response"),
            (Event::QueryDone { id: query, acks: 1, responses: 1 }, "query-done"),
        ];
        for (event, name) in &all {
            assert_eq!(event.name(), *name, "{event:?}");
        }
    }
}
