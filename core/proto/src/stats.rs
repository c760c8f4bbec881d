//! Counters a node keeps about its own work: traffic, probes, dissemination and rejected input.
//! Read them with [`crate::Node::stats`]; drivers export them as metrics.

/// Cumulative counters since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Packets and reliable frames handed to [`crate::Node::handle_packet`], counted before any
    /// check (the ones then dropped included).
    pub packets_received: u64,
    /// Bytes of those packets and frames as received, encryption overhead included.
    pub bytes_received: u64,
    /// Packets and reliable frames queued for the driver ([`crate::Node::poll_transmit`]), retries
    /// and acknowledgements included. Counted when queued, not when the driver sends them.
    pub packets_sent: u64,
    /// Bytes of those packets and frames, encryption overhead included.
    pub bytes_sent: u64,
    /// `packets_sent` by kind, in the order of [`crate::TransmitKind::ALL`].
    pub packets_sent_by_kind: [u64; 7],
    /// `bytes_sent` by kind, in the same order.
    pub bytes_sent_by_kind: [u64; 7],
    /// Of `packets_sent`, the frames for the reliable path: push-pulls, metadata and repair requests
    /// and their answers, reliable messages with their retries and acknowledgements.
    pub reliable_sent: u64,
    /// Packets dropped because they failed to decode (truncated, garbage, wrong version...).
    pub decode_errors: u64,
    /// Packets dropped because they exceeded the size limits.
    pub oversized_dropped: u64,
    /// Messages of a type this version does not know, skipped inside otherwise valid packets.
    pub unknown_messages_skipped: u64,
    /// Gossip updates skipped undecoded because this node had already applied the identical update.
    pub repeated_updates_skipped: u64,
    /// Pings addressed to another name (stale address or a misrouted packet).
    pub misdirected_pings: u64,
    /// Pings from members we did not know (or held as failed or gone), whose record we then asked for.
    pub unknown_pingers_asked: u64,
    /// Pings sent: our own probes, and the pings we send for members that asked us to probe
    /// (ping-req).
    pub pings_sent: u64,
    /// Acks received, for our own probes or for probes we run for others, late ones included.
    pub acks_received: u64,
    /// Indirect probe requests sent: one per member asked to help when a probe got no ack within
    /// the probe timeout.
    pub ping_reqs_sent: u64,
    /// Indirect probe requests received; each makes us ping the target for the requester.
    pub ping_reqs_served: u64,
    /// Indirect probe requests refused because we already run as many indirect probes as we
    /// hold room for (see `node::probe::max_indirect_probes`): a flood of requests cannot make us
    /// hold state without bound.
    pub ping_reqs_refused: u64,
    /// Nacks sent (Lifeguard): the target of a probe we ran for a requester that wants them did not
    /// ack in time.
    pub nacks_sent: u64,
    /// Nacks received from members helping with our probes, late ones included.
    pub nacks_received: u64,
    /// Probes that got neither a direct nor an indirect ack.
    pub probes_failed: u64,
    /// Suspicions this node raised from its own failed probes.
    pub suspicions_raised: u64,
    /// Suspects this node pinged itself before its suspicion could run out, so that a member whose
    /// refutation never reached us by gossip answers us directly.
    pub suspects_checked: u64,
    /// Of those, the ones that did not answer within the probe timeout: each confirmed the
    /// suspicion (Lifeguard) as our own evidence.
    pub suspect_checks_failed: u64,
    /// Members this node declared failed when a suspicion timed out.
    pub failures_declared: u64,
    /// Times our own link came back after the transport said it was down (see
    /// [`crate::Node::set_link_up`]).
    pub link_outages: u64,
    /// Times this node's timers fired a whole probe interval late: it did not run (a frozen page,
    /// a stopped or starved process), so it accused nobody until it had caught up.
    pub stalls: u64,
    /// Times this node refuted a suspicion or death about itself.
    pub refutations: u64,
    /// Membership updates dropped from the full membership queue (`membership_queue_depth`) before
    /// they were sent their full number of times.
    pub updates_dropped: u64,
    /// Broadcasts, ours and others', dropped from the full broadcast queue (`broadcast_queue_depth`)
    /// before they were sent their full number of times.
    pub broadcasts_dropped: u64,
    /// Broadcasts from other members delivered to the application as `Event::Message`, each once.
    pub broadcasts_delivered: u64,
    /// Broadcasts that never arrived and could no longer be repaired (see the `broadcast` module).
    pub broadcasts_missed: u64,
    /// Broadcasts dropped as impossible (a sequence number no origin reaches): hostile or corrupt.
    pub broadcasts_rejected: u64,
    /// Broadcasts received through push-pull or a repair request after gossip missed them.
    pub broadcasts_repaired: u64,
    /// Repair requests sent for broadcasts we had holes in.
    pub broadcast_pulls_sent: u64,
    /// Our own broadcasts dropped from our full queue before they were sent their full number of
    /// times (each also reported as `Event::BroadcastDropped`).
    pub own_broadcasts_dropped: u64,
    /// Reliable messages sent again because no acknowledgement came in time.
    pub reliable_retries: u64,
    /// Reliable messages reported lost (`Event::SendFailed`).
    pub reliable_failed: u64,
    /// Copies of reliable messages already delivered (acknowledged again, not delivered).
    pub reliable_duplicates: u64,
    /// Reliable messages too old to tell whether they were delivered: neither delivered nor
    /// acknowledged.
    pub reliable_stale: u64,
    /// Reliable messages refused because every de-duplication record was still needed (a flood of
    /// sender names): neither delivered nor acknowledged, so their senders report them failed.
    pub reliable_refused: u64,
    /// Reliable acknowledgements that came from somewhere other than the message's destination.
    pub reliable_acks_misdirected: u64,
    /// Direct messages delivered to the application as `Event::Message`: best-effort ones, and the
    /// first copy of each reliable one.
    pub direct_delivered: u64,
    /// Push-pull frames sent: requests (join, periodic, catch-up, re-announce) and answers, answers
    /// to requests for our record included.
    pub push_pulls_sent: u64,
    /// Push-pull frames received, requests and answers.
    pub push_pulls_received: u64,
    /// Push-pulls of [`Stats::push_pulls_sent`] that went as plain packets, not reliable frames: a
    /// digest request that fits a packet, and an answer to one that fits and is no larger.
    pub push_pulls_as_packets: u64,
    /// Periodic and catch-up push-pull requests that carried a digest of our view instead of the
    /// view (see `Config::push_pull_digests`).
    pub member_digests_sent: u64,
    /// Push-pull requests with a member digest that we answered with the records that differ.
    pub member_digests_answered: u64,
    /// Buckets that differed, summed over the digests we answered: each one cost its records in the
    /// answer.
    pub member_digest_buckets_differing: u64,
    /// Member digests that came without a push-pull request to belong to: dropped.
    pub member_digests_unused: u64,
    /// Keyed values whose time to live ran out here ([`crate::Event::StateExpired`]).
    pub keyed_values_expired: u64,
    /// Alive claims rejected because a live member already holds the name at another address.
    pub address_conflicts: u64,
    /// Alive claims for a live member's name from another address that the conflict policy took:
    /// the member moved to the claimed address.
    pub address_conflicts_taken: u64,
    /// Alive claims that moved a live member from one relay of the fleet to another (same peer id;
    /// see [`crate::Node::move_to`]).
    pub relay_moves: u64,
    /// Times our own address changed ([`crate::Node::move_to`]).
    pub moves: u64,
    /// Push-pulls run to pull the rest of a burst of moves between relays, after we took one of
    /// them and still held members at the relay it left (builds with member digests).
    pub moves_pulled: u64,
    /// Probes that went unanswered at an address their target has since moved away from: no
    /// suspicion, no change to our health.
    pub probes_of_moved_members: u64,
    /// Members ignored because they speak no protocol version we do.
    pub incompatible_members: u64,
    /// Records sent straight back to a member that spread a claim older than the record we hold
    /// (stale news gets answered, see the membership rules).
    pub stale_claims_answered: u64,
    /// Answers to stale claims held back by the rate limit (one per subject and destination per
    /// probe interval) or for lack of room.
    pub stale_answers_suppressed: u64,
    /// Requests for our record (`MetaRequest`) left unanswered: the same address asked again within
    /// a probe interval (a hostile sender could otherwise make us send our record, metadata and all,
    /// as fast as it sends small requests).
    pub meta_requests_refused: u64,
    /// Failed members this node turned into departed ones on the operator's word
    /// ([`crate::Node::force_leave`]).
    pub forced_leaves: u64,
    /// Member records the admission policy refused (see `node::admission`): new members not
    /// added, new records not taken, joins not answered.
    pub members_refused: u64,
    /// Application states received in push-pulls and handed to the application
    /// ([`crate::Event::RemoteState`]; feature `app-state`).
    pub remote_states_received: u64,
    /// Application states dropped: not in a push-pull frame, or from a member the admission policy
    /// refused.
    pub remote_states_dropped: u64,
    /// Push-pulls sent without our application state because it did not fit half the path's
    /// reliable frame (a relay's frames are smaller than ours).
    pub local_states_omitted: u64,
    /// Times our network coordinate moved after a measured round trip (feature `coordinates`).
    pub coordinate_updates: u64,
    /// Times our coordinate left its bounds and was reset to the origin (absurd measurements).
    pub coordinate_resets: u64,
    /// Coordinates and ack payloads not used: no ack of our own direct probe came before them in
    /// the packet (a forwarded or late ack, or a forged packet).
    pub ack_extras_unmatched: u64,
    /// Queries we started (feature `queries`).
    pub queries_sent: u64,
    /// Queries that selected us and were handed to the application.
    pub queries_received: u64,
    /// Queries that selected us but named an address for their origin other than the one we hold
    /// for it, live: not answered (a forged origin address would make every member ack a bystander).
    pub queries_refused: u64,
    /// Responses to our queries received (acks not counted).
    pub query_responses_received: u64,
    /// Answers dropped: past the query's deadline, to no query of ours, a second one from the same
    /// member, or in the name of no member we know.
    pub query_answers_dropped: u64,
}
