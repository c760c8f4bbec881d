//! A snapshot of a member's counters and gauges, and its Prometheus text rendering.

use std::fmt::Write;

use shoal_core::addr::Addr;
use shoal_core::member::MemberState;
use shoal_core::node::Node;
use shoal_core::stats::Stats;
use shoal_transport::TransportCounters;

/// Counters and gauges of one member at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// What the protocol counted (packets, probes, suspicions, broadcasts, reliable messages).
    pub stats: Stats,
    /// What the security layer counted (sealed, opened, refused packets).
    pub security: shoal_core::security::SecurityStats,
    /// Traffic of every transport plugin, summed.
    pub transport: TransportCounters,
    /// Send and receive errors reported by transports.
    pub transport_errors: u64,
    /// Events dropped because a subscriber fell behind, since the member started (subscribers
    /// gone since included: it never goes down).
    pub dropped_events: u64,
    /// Reliable frames dropped because too many bytes were waiting for slow or dead peers.
    pub reliable_dropped: u64,
    /// Best-effort frames dropped because too many were waiting for a slow peer (or for all).
    pub best_effort_dropped: u64,
    /// Panics raised by `on_message` callbacks (each caught and logged; the member carried on).
    pub callback_panics: u64,
    /// Sends a transport had not finished by the send deadline (see
    /// [`crate::BEST_EFFORT_SEND_DEADLINE`] and [`crate::RELIABLE_SEND_DEADLINE`]): given up,
    /// counted as transport errors too, like lost packets.
    pub sends_abandoned: u64,
    /// Other members this member lists alive (a gauge).
    pub members_alive: u64,
    /// Members it lists suspect (a gauge).
    pub members_suspect: u64,
    /// Members it lists dead and not yet reaped (a gauge).
    pub members_dead: u64,
    /// Members it lists as left and not yet reaped (a gauge).
    pub members_left: u64,
    /// Membership updates waiting to be gossiped (a gauge).
    pub queued_membership_updates: u64,
    /// User broadcasts waiting to be gossiped (a gauge).
    pub queued_broadcasts: u64,
    /// Lifeguard's local health score: 0 is healthy; each step stretches the probe interval and
    /// timeout (a gauge).
    pub health_score: u64,
    /// This member's current incarnation (a gauge).
    pub incarnation: u64,
}

impl Metrics {
    pub(crate) fn collect(
        node: &Node<Addr>,
        transport: TransportCounters,
        transport_errors: u64,
        dropped: u64,
    ) -> Self {
        let mut m = Metrics {
            stats: node.stats(),
            security: node.security_stats(),
            transport,
            transport_errors,
            dropped_events: dropped,
            health_score: u64::from(node.health_score()),
            incarnation: u64::from(node.incarnation()),
            ..Metrics::default()
        };
        for member in node.members() {
            match member.state {
                MemberState::Alive => m.members_alive += 1,
                MemberState::Suspect => m.members_suspect += 1,
                MemberState::Dead => m.members_dead += 1,
                MemberState::Left => m.members_left += 1,
            }
        }
        let (membership, broadcasts) = node.queued_updates();
        m.queued_membership_updates = membership as u64;
        m.queued_broadcasts = broadcasts as u64;
        m
    }

    /// The Prometheus text exposition format (version 0.0.4), metric names prefixed `shoal_`.
    pub fn to_prometheus(&self) -> String {
        let s = &self.stats;
        let sec = &self.security;
        let counters: &[(&str, &str, u64)] = &[
            ("packets_received_total", "Packets and frames received", s.packets_received),
            ("bytes_received_total", "Bytes received by the protocol", s.bytes_received),
            ("packets_sent_total", "Packets and frames sent", s.packets_sent),
            ("bytes_sent_total", "Bytes sent by the protocol", s.bytes_sent),
            ("decode_errors_total", "Packets dropped as undecodable", s.decode_errors),
            ("oversized_dropped_total", "Packets dropped as oversized", s.oversized_dropped),
            ("probes_total", "Direct probes (pings) sent", s.pings_sent),
            ("acks_received_total", "Acks received", s.acks_received),
            ("ping_reqs_sent_total", "Indirect probe requests sent", s.ping_reqs_sent),
            (
                "ping_reqs_refused_total",
                "Indirect probe requests refused: as many indirect probes running as there is room for",
                s.ping_reqs_refused,
            ),
            ("nacks_sent_total", "Nacks sent as indirect prober", s.nacks_sent),
            ("nacks_received_total", "Nacks received", s.nacks_received),
            ("probes_failed_total", "Probes with neither direct nor indirect ack", s.probes_failed),
            ("suspicions_raised_total", "Suspicions raised by this member", s.suspicions_raised),
            ("failures_declared_total", "Members declared failed by this member", s.failures_declared),
            (
                "link_outages_total",
                "Outages of this member's own link (relay connection) it came back from",
                s.link_outages,
            ),
            ("stalls_total", "Times this member did not run for a probe interval or more (frozen, stopped)", s.stalls),
            (
                "suspects_checked_total",
                "Suspects this member pinged itself before declaring them failed",
                s.suspects_checked,
            ),
            (
                "suspect_checks_failed_total",
                "Suspects that did not answer this member's check (each a confirmation)",
                s.suspect_checks_failed,
            ),
            ("refutations_total", "Suspicions of this member it refuted (false positives avoided)", s.refutations),
            ("updates_dropped_total", "Membership updates dropped from a full queue", s.updates_dropped),
            ("broadcasts_dropped_total", "Broadcasts dropped from a full queue", s.broadcasts_dropped),
            ("broadcasts_delivered_total", "Broadcasts delivered", s.broadcasts_delivered),
            ("direct_delivered_total", "Direct messages delivered", s.direct_delivered),
            (
                "broadcasts_missed_total",
                "Broadcasts that never arrived and could no longer be repaired",
                s.broadcasts_missed,
            ),
            (
                "broadcasts_rejected_total",
                "Broadcasts dropped as impossible (a sequence number no origin reaches)",
                s.broadcasts_rejected,
            ),
            ("broadcasts_repaired_total", "Broadcasts received through push-pull repair", s.broadcasts_repaired),
            ("broadcast_pulls_total", "Repair requests sent for broadcasts missed", s.broadcast_pulls_sent),
            (
                "own_broadcasts_dropped_total",
                "Own broadcasts dropped from a full queue before their last transmit",
                s.own_broadcasts_dropped,
            ),
            (
                "reliable_retries_total",
                "Reliable messages sent again for lack of an acknowledgement",
                s.reliable_retries,
            ),
            ("reliable_failed_total", "Reliable messages reported lost", s.reliable_failed),
            (
                "reliable_duplicates_total",
                "Repeated reliable messages acknowledged, not delivered",
                s.reliable_duplicates,
            ),
            ("reliable_stale_total", "Reliable messages too old to tell whether they were delivered", s.reliable_stale),
            ("reliable_refused_total", "Reliable messages refused: no de-duplication record free", s.reliable_refused),
            (
                "reliable_acks_misdirected_total",
                "Reliable acknowledgements from a source other than the destination",
                s.reliable_acks_misdirected,
            ),
            (
                "unknown_pingers_asked_total",
                "Pings from unknown members whose record was asked for",
                s.unknown_pingers_asked,
            ),
            ("push_pulls_total", "Push-pull exchanges started", s.push_pulls_sent),
            (
                "push_pulls_as_packets_total",
                "Push-pull requests and answers sent as plain packets (digest exchanges that fit one)",
                s.push_pulls_as_packets,
            ),
            (
                "member_digests_sent_total",
                "Periodic push-pull requests that carried a digest of our view instead of the view",
                s.member_digests_sent,
            ),
            (
                "member_digests_answered_total",
                "Push-pull requests with a member digest answered with the records that differ",
                s.member_digests_answered,
            ),
            (
                "member_digest_buckets_differing_total",
                "Buckets that differed in the member digests we answered",
                s.member_digest_buckets_differing,
            ),
            (
                "member_digests_unused_total",
                "Member digests dropped: no push-pull request in their frame",
                s.member_digests_unused,
            ),
            ("address_conflicts_total", "Alive claims rejected as address conflicts", s.address_conflicts),
            ("relay_moves_total", "Members moved from one relay of the fleet to another", s.relay_moves),
            (
                "moves_pulled_total",
                "Push-pulls that fetched the rest of a burst of moves between relays",
                s.moves_pulled,
            ),
            ("moves_total", "Times this member's own address changed", s.moves),
            (
                "probes_of_moved_members_total",
                "Unanswered probes of an address its member had moved away from",
                s.probes_of_moved_members,
            ),
            (
                "stale_claims_answered_total",
                "Newer records sent back to members spreading stale claims",
                s.stale_claims_answered,
            ),
            (
                "stale_answers_suppressed_total",
                "Answers to stale claims held back by the rate limit",
                s.stale_answers_suppressed,
            ),
            (
                "meta_requests_refused_total",
                "Requests for our record refused: the same address asked again within a probe interval",
                s.meta_requests_refused,
            ),
            ("forced_leaves_total", "Failed members forced out by this member (force_leave)", s.forced_leaves),
            ("members_refused_total", "Member records the admission policy refused", s.members_refused),
            ("remote_states_received_total", "Application states received in push-pulls", s.remote_states_received),
            (
                "remote_states_dropped_total",
                "Application states dropped: outside a push-pull, or from a refused member",
                s.remote_states_dropped,
            ),
            ("coordinate_updates_total", "Times our network coordinate moved after a round trip", s.coordinate_updates),
            ("coordinate_resets_total", "Times our coordinate left its bounds and was reset", s.coordinate_resets),
            (
                "ack_extras_unmatched_total",
                "Coordinates and ack payloads with no ack of our own probe before them",
                s.ack_extras_unmatched,
            ),
            ("queries_sent_total", "Queries we started", s.queries_sent),
            ("queries_received_total", "Queries that selected us", s.queries_received),
            (
                "queries_refused_total",
                "Queries not answered: their origin address is not the one we hold for it",
                s.queries_refused,
            ),
            ("query_responses_received_total", "Responses to our queries", s.query_responses_received),
            (
                "query_answers_dropped_total",
                "Query answers dropped: late, not ours, or a second one from a member",
                s.query_answers_dropped,
            ),
            (
                "local_states_omitted_total",
                "Push-pulls sent without our application state: too large for the path's frames",
                s.local_states_omitted,
            ),
            ("transport_errors_total", "Transport send and receive errors", self.transport_errors),
            ("dropped_events_total", "Events dropped for subscribers that fell behind", self.dropped_events),
            ("callback_panics_total", "Panics caught in on_message callbacks", self.callback_panics),
            (
                "best_effort_dropped_total",
                "Best-effort frames dropped behind slow peers or for want of room",
                self.best_effort_dropped,
            ),
            (
                "reliable_dropped_total",
                "Reliable frames dropped behind slow or dead peers or for want of room",
                self.reliable_dropped,
            ),
            ("sends_abandoned_total", "Transport sends given up after the send deadline", self.sends_abandoned),
            ("transport_send_errors_total", "Sends the transports reported failed", self.transport.send_errors),
            (
                "transport_dropped_in_total",
                "Received frames the transports dropped (inbox full, memory budget)",
                self.transport.dropped_in,
            ),
            ("transport_bytes_out_total", "Bytes written by transports", self.transport.bytes_out),
            ("transport_bytes_in_total", "Bytes read by transports", self.transport.bytes_in),
            (
                "security_unauthenticated_total",
                "Packets failing authentication (wrong key or label, tampered)",
                sec.unauthenticated,
            ),
            ("security_replays_total", "Replayed packets dropped", sec.replays),
            (
                "security_plaintext_rejected_total",
                "Plaintext packets refused while encryption is required",
                sec.plaintext_rejected,
            ),
            ("security_truncated_total", "Encrypted packets too short to open", sec.truncated),
            ("security_no_keyring_total", "Encrypted packets received without a keyring", sec.no_keyring),
        ];
        let mut out = String::with_capacity(4_096);
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP shoal_{name} {help}\n# TYPE shoal_{name} counter\nshoal_{name} {value}");
        }
        for (name, help, values) in [
            ("packets_sent_by_kind_total", "Packets and frames sent, by kind", s.packets_sent_by_kind),
            ("bytes_sent_by_kind_total", "Bytes sent, by kind of packet or frame", s.bytes_sent_by_kind),
        ] {
            let _ = writeln!(out, "# HELP shoal_{name} {help}\n# TYPE shoal_{name} counter");
            for kind in shoal_core::TransmitKind::ALL {
                let _ = writeln!(out, "shoal_{name}{{kind=\"{}\"}} {}", kind.name(), values[kind.index()]);
            }
        }
        let _ = writeln!(out, "# HELP shoal_members Known members by state\n# TYPE shoal_members gauge");
        for (state, v) in [
            ("alive", self.members_alive),
            ("suspect", self.members_suspect),
            ("dead", self.members_dead),
            ("left", self.members_left),
        ] {
            let _ = writeln!(out, "shoal_members{{state=\"{state}\"}} {v}");
        }
        let gauges = [
            ("queue_depth_membership", "Membership updates waiting for gossip", self.queued_membership_updates),
            ("queue_depth_broadcasts", "User broadcasts waiting for gossip", self.queued_broadcasts),
            ("local_health", "Lifeguard local health score (0 is healthy)", self.health_score),
            ("incarnation", "This member's incarnation", self.incarnation),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP shoal_{name} {help}\n# TYPE shoal_{name} gauge\nshoal_{name} {value}");
        }
        out
    }
}
