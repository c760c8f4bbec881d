//! Protocol configuration: every knob of SWIM, dissemination, Lifeguard and push-pull, with presets.
//!
//! Start from a preset ([`Config::lan`], [`Config::wan`], [`Config::local`], [`Config::browser`]) and
//! change what you must; call [`Config::validate`] (the node does so on creation) to catch settings
//! that cannot work. Durations are wall-clock times; the protocol period is `probe_interval`.
//!
//! Several values scale with the cluster size `n` as the papers prescribe:
//! - retransmits per update: `retransmit_mult` times a factor that grows with `log10(n + 1)` and is
//!   never below 2 (the exact count is [`Config::retransmit_limit`]);
//! - suspicion timeout: from `suspicion_mult * max(1, log10(n)) * probe_interval` (min) up to
//!   `suspicion_max_timeout_mult` times that (max), shrinking with independent confirmations;
//! - push-pull period: `push_pull_interval`, stretched logarithmically beyond 32 members.

use alloc::string::String;
use core::fmt;
use core::time::Duration;

pub use crate::security::SecurityMode;

/// Which parts of Lifeguard are active. All on by default; switching them off reproduces plain SWIM
/// with memberlist-style fixed suspicion timeouts, which the simulator uses as a baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifeguard {
    /// Local health multiplier: a node that misses acks or nacks, or has to refute suspicions about
    /// itself, stretches its own probe interval and probe timeout (up to `awareness_max_multiplier`).
    pub health_aware_probing: bool,
    /// Indirect probers answer with a nack when the target stays silent, so the requester can tell
    /// "the target is down" from "I am the one who is slow".
    pub nacks: bool,
    /// Suspicion timeouts start at the maximum and shrink towards the minimum as independent members
    /// confirm the suspicion. Off: every suspicion uses the minimum timeout.
    pub suspicion_confirmations: bool,
    /// A prober that suspects its target tells the target directly in the ping, so it can refute at
    /// once instead of waiting for gossip to reach it.
    pub buddy_system: bool,
}

impl Lifeguard {
    /// Every Lifeguard extension on.
    pub const ON: Lifeguard =
        Lifeguard { health_aware_probing: true, nacks: true, suspicion_confirmations: true, buddy_system: true };
    /// Plain SWIM with suspicion.
    pub const OFF: Lifeguard =
        Lifeguard { health_aware_probing: false, nacks: false, suspicion_confirmations: false, buddy_system: false };
}

/// Protocol configuration. See the module docs for how values scale with cluster size.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Protocol period: time between two probes started by this node. Range 10 ms to 60 s.
    /// Shorter detects failures sooner and costs more packets (one ping and one ack per period).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking `indirect_checks` members to probe for us.
    /// Must be shorter than `probe_interval`; set it above the 99th percentile round-trip time.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly (`k` in SWIM). 0 disables indirect probes. Typical 3.
    pub indirect_checks: usize,
    /// Retransmit multiplier `λ`: scales how many times each update is sent, see
    /// [`Config::retransmit_limit`]. Range 1-16.
    pub retransmit_mult: u32,
    /// Suspicion multiplier `α`: minimum suspicion timeout is `α * max(1, log10 n) * probe_interval`.
    pub suspicion_mult: u32,
    /// `β`: the maximum suspicion timeout (before any confirmation) is `β` times the minimum. >= 1.
    pub suspicion_max_timeout_mult: u32,
    /// `k` (Lifeguard): independent confirmations of a suspicion after which its timeout is down to
    /// the minimum; each one shrinks it logarithmically from the maximum. memberlist derives it
    /// from `α` (`α - 2`); here it is its own setting, so that a shorter minimum (a lower `α`)
    /// still needs as many members to agree before it applies. Ignored in clusters too small to
    /// give `k` confirmations (fewer than `k + 2` members), where the minimum applies.
    pub suspicion_confirmations: u32,
    /// Every member holding a suspicion pings the suspect itself, with the suspicion, between half
    /// and three quarters of the earliest deadline: a suspect whose refutation never reached this
    /// member by gossip answers it directly, and one that does not answer within the probe timeout
    /// counts as this member's confirmation (see `Node::check_suspect`). One ping per member
    /// holding a suspicion. On in every preset.
    pub suspect_checks: bool,
    /// Period of the dedicated gossip round that pushes queued updates to `gossip_nodes` random members.
    pub gossip_interval: Duration,
    /// Members picked per gossip round. 0 disables dedicated gossip (piggybacking remains).
    pub gossip_nodes: usize,
    /// Dead members keep receiving gossip for this long, so a falsely declared member can refute.
    pub gossip_to_the_dead_time: Duration,
    /// Base period of push-pull anti-entropy with one random member (scaled up beyond 32 members).
    /// Zero disables periodic push-pull (joins still use it).
    pub push_pull_interval: Duration,
    /// Periodic (and catch-up) push-pull requests carry a digest of our view, and the answer only
    /// the records that differ, instead of whole views both ways (see `node::member_digest`). On in
    /// every preset; off sends whole views, as the first release did.
    pub push_pull_digests: bool,
    /// Period of re-announcing ourselves to seeds that are not members and to members believed dead,
    /// so partitions heal without operator action. Zero disables it.
    pub reannounce_interval: Duration,
    /// How long `join` waits for any seed to answer before reporting [`crate::Event::JoinFailed`].
    pub join_timeout: Duration,
    /// Dead and left members are forgotten after this long (they stop being re-announced to).
    pub dead_member_reap_time: Duration,
    /// Largest best-effort packet, in bytes (UDP payload or data-channel message). 256 to 65,507.
    pub max_packet_size: usize,
    /// Largest best-effort packet between two relayed members (both addressed `relay://`), in
    /// bytes. Such a packet never travels as a datagram: it is a WebSocket message to the relay,
    /// a frame on a link between relays, or a data-channel message, and the relay's frame cap
    /// (64 KiB by default) is what bounds it. Above `max_packet_size`, gossip fills these packets
    /// further, so a burst of updates (every member of a dead relay moving at once) leaves the
    /// queues in a few packets instead of dozens, at the cost of that many more updates for each
    /// member to process a second. Broadcasts and direct messages are still held to
    /// `max_packet_size`, since they may have to cross a datagram. At most `max_reliable_size`;
    /// up to `max_packet_size` (every preset's value) it changes nothing. See BENCHMARKS.md, "Relay
    /// fleet", for what 8 KiB does to a failover and to members short of CPU.
    pub relayed_packet_size: usize,
    /// Largest reliable frame (push-pull, reliable direct messages), in bytes.
    pub max_reliable_size: usize,
    /// Metadata up to this size rides in gossip; larger metadata is fetched over a reliable exchange.
    pub max_gossip_meta: usize,
    /// Largest metadata a member may set, in bytes.
    pub max_meta_size: usize,
    /// Bound on queued membership updates; beyond it the most-sent (least useful) ones are dropped.
    pub membership_queue_depth: usize,
    /// Bound on queued user broadcasts; beyond it the most-sent, then oldest, ones are dropped.
    pub broadcast_queue_depth: usize,
    /// How long each member keeps the broadcasts it delivered, to hand them to members that missed
    /// them (push-pull carries them). Keep it above two push-pull periods at your cluster size;
    /// a member that misses a broadcast for longer reports it missed.
    pub broadcast_retention: Duration,
    /// Bound on broadcasts kept for repair (the newest are kept).
    pub broadcast_log_depth: usize,
    /// How long a reliable message waits for the receiver's acknowledgement before it is sent again.
    /// Allow for a connection setup and the transfer of `max_reliable_size` bytes.
    pub reliable_timeout: Duration,
    /// How many times a reliable message is sent before [`crate::Event::SendFailed`] reports it
    /// lost. At least 1.
    pub reliable_attempts: u32,
    /// Upper bound of the local health multiplier (Lifeguard); 1 pins probing to nominal speed.
    pub awareness_max_multiplier: u32,
    /// Lifeguard extensions, each switchable.
    pub lifeguard: Lifeguard,
    /// Encryption: off, migrating, or required (see [`SecurityMode`]). Encryption needs a keyring
    /// ([`crate::Node::set_keyring`]).
    pub security: SecurityMode,
    /// Cluster label, bound into every encrypted packet: members of clusters with different labels
    /// never accept each other's packets, even under the same key. At most 255 bytes.
    pub label: String,
}

/// A configuration that cannot work, naming the field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config: {}: {}", self.field, self.reason)
    }
}

impl ConfigError {
    /// The error for `field`, with `reason` saying what is wrong ("must be at least 1"). For
    /// validators of configurations built on top of this one (the relay's, an application's), so
    /// that every configuration error of Shoal has one type.
    pub const fn new(field: &'static str, reason: &'static str) -> ConfigError {
        ConfigError { field, reason }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

const fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Config {
    /// A local network: sub-millisecond RTTs, one second protocol period (memberlist's LAN values,
    /// with a tighter probe timeout so the median first detection stays near SWIM's e/(e-1) periods),
    /// and a shorter suspicion than memberlist's that needs more members to agree: `α = 2` (3.4 s
    /// at 50 members) once three members confirm (`k = 3`), six times that before. Every member
    /// holding a suspicion checks the suspect itself, and an unanswered check confirms it, so a crash
    /// is declared by all 50 in 4.5 s (median; memberlist's `α = 4`: 8.9 s), while a suspicion that
    /// only one member raised waits 20 s for the refutation. The price: a member that does not run
    /// for about 4 s (a frozen VM, a starved container) is declared failed, and refutes when it
    /// runs again; raise `suspicion_mult` to 4 for memberlist's tolerance (see BENCHMARKS.md, issue
    /// 18's detection curve).
    pub fn lan() -> Self {
        Config {
            probe_interval: ms(1_000),
            probe_timeout: ms(400),
            indirect_checks: 3,
            retransmit_mult: 4,
            suspicion_mult: 2,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmations: 3,
            suspect_checks: true,
            gossip_interval: ms(200),
            gossip_nodes: 3,
            gossip_to_the_dead_time: ms(30_000),
            push_pull_interval: ms(30_000),
            push_pull_digests: true,
            reannounce_interval: ms(5_000),
            join_timeout: ms(5_000),
            dead_member_reap_time: ms(300_000),
            max_packet_size: 1_400,
            relayed_packet_size: 1_400,
            max_reliable_size: 16 << 20,
            max_gossip_meta: 256,
            max_meta_size: 64 << 10,
            membership_queue_depth: 4_096,
            broadcast_queue_depth: 256,
            broadcast_retention: ms(180_000),
            broadcast_log_depth: 1_024,
            reliable_timeout: ms(5_000),
            reliable_attempts: 3,
            awareness_max_multiplier: 8,
            lifeguard: Lifeguard::ON,
            security: SecurityMode::Plaintext,
            label: String::new(),
        }
    }

    /// Wide-area links: long probe period and timeout, more gossip fan-out, slower suspicion.
    pub fn wan() -> Self {
        Config {
            probe_interval: ms(5_000),
            probe_timeout: ms(3_000),
            gossip_interval: ms(500),
            gossip_nodes: 4,
            suspicion_mult: 6,
            suspicion_confirmations: 4,
            push_pull_interval: ms(60_000),
            reannounce_interval: ms(15_000),
            join_timeout: ms(15_000),
            gossip_to_the_dead_time: ms(60_000),
            dead_member_reap_time: ms(600_000),
            broadcast_retention: ms(360_000),
            reliable_timeout: ms(15_000),
            ..Config::lan()
        }
    }

    /// One machine (tests, demos): everything fast.
    pub fn local() -> Self {
        Config {
            probe_interval: ms(200),
            probe_timeout: ms(80),
            gossip_interval: ms(50),
            suspicion_mult: 3,
            suspicion_max_timeout_mult: 4,
            suspicion_confirmations: 1,
            push_pull_interval: ms(5_000),
            reannounce_interval: ms(1_000),
            join_timeout: ms(1_000),
            gossip_to_the_dead_time: ms(10_000),
            dead_member_reap_time: ms(60_000),
            broadcast_retention: ms(30_000),
            reliable_timeout: ms(2_000),
            ..Config::lan()
        }
    }

    /// Browser and edge members behind a relay, and the native members that watch them: a tab that
    /// vanishes (crash, killed process, lost network) must be declared failed by every member
    /// within 2 s, packets stay below typical data-channel and relay frame limits. A 300 ms probe
    /// period with a 150 ms timeout: a direct ping's round trip (through the relay and back) gets
    /// 150 ms, and the indirect probe that follows a lost one gets the other 150 ms for two round
    /// trips (prober, helper, target and back), so round trips up to about 75 ms never turn a
    /// lost packet into a suspicion (with a 200 ms timeout the indirect probe had 100 ms, and
    /// 25 ms links made healthy members suspects several times a second). Suspicions of 0.9-1.8 s below
    /// 10 members (growing with `log10 n` beyond): 1.2-1.5 s from a crash to the last member's
    /// `fail` with 3 agents watching, on one machine (README, `tests/e2e/detection-matrix.mjs`).
    pub fn browser() -> Self {
        Config {
            probe_interval: ms(300),
            probe_timeout: ms(150),
            gossip_interval: ms(100),
            suspicion_mult: 3,
            suspicion_max_timeout_mult: 2,
            suspicion_confirmations: 1,
            push_pull_interval: ms(15_000),
            reannounce_interval: ms(3_000),
            join_timeout: ms(5_000),
            gossip_to_the_dead_time: ms(15_000),
            dead_member_reap_time: ms(120_000),
            max_packet_size: 1_200,
            relayed_packet_size: 1_200,
            max_reliable_size: 4 << 20,
            broadcast_retention: ms(90_000),
            ..Config::lan()
        }
    }

    /// How many times each update (membership change or user broadcast) is sent before it leaves
    /// the queue, in a cluster of `cluster_size` members counting this one:
    /// `λ · max(2, ceil(log10(n + 1)))` with `λ = retransmit_mult`.
    ///
    /// SWIM prescribes `λ · log n` transmits so that every member hears an update with high
    /// probability. The floor of 2 keeps small clusters from losing an update to bad luck: with 5
    /// members, the bare factor of 1 lets about one broadcast in 200 miss a member. The node
    /// evaluates this each time it fills a packet, with its current cluster size; it matters when
    /// choosing `retransmit_mult`, which sets what an update costs in bandwidth and how surely it
    /// reaches everyone.
    pub fn retransmit_limit(&self, cluster_size: usize) -> u32 {
        let n = cluster_size as f64;
        let scale = libm::ceil(libm::log10(n + 1.0)).max(2.0) as u32;
        self.retransmit_mult.saturating_mul(scale)
    }

    /// The `(shortest, longest)` suspicion timeout in a cluster of `cluster_size` members (the
    /// local one included). A suspicion starts at the longest and shrinks towards the shortest as
    /// independent members confirm it (Lifeguard); without confirmations both are the same. Call
    /// it to size an application's own timeouts, for example how long to wait before acting on a
    /// suspect member.
    pub fn suspicion_timeouts(&self, cluster_size: usize) -> (Duration, Duration) {
        crate::suspicion::suspicion_bounds(self, cluster_size)
    }

    /// Checks that the settings can work together. [`crate::Node::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if self.probe_interval < ms(10) || self.probe_interval > ms(60_000) {
            return err("probe_interval", "must be between 10 ms and 60 s");
        }
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            return err("probe_timeout", "must be non-zero and shorter than probe_interval");
        }
        if self.indirect_checks > 16 {
            return err("indirect_checks", "must be at most 16");
        }
        if !(1..=16).contains(&self.retransmit_mult) {
            return err("retransmit_mult", "must be between 1 and 16");
        }
        if !(1..=64).contains(&self.suspicion_mult) {
            return err("suspicion_mult", "must be between 1 and 64");
        }
        if !(1..=64).contains(&self.suspicion_max_timeout_mult) {
            return err("suspicion_max_timeout_mult", "must be between 1 and 64");
        }
        if self.suspicion_confirmations > 64 {
            return err("suspicion_confirmations", "must be at most 64");
        }
        // The gossip tick also settles broadcast bookkeeping, so it runs with gossip_nodes = 0 too:
        // a zero interval would fire it again at the same instant, for ever.
        if self.gossip_interval < ms(1) {
            return err("gossip_interval", "must be at least 1 ms (gossip_nodes = 0 turns gossip off)");
        }
        if self.gossip_nodes > 64 {
            return err("gossip_nodes", "must be at most 64");
        }
        if !(256..=65_507).contains(&self.max_packet_size) {
            return err("max_packet_size", "must be between 256 and 65,507 bytes");
        }
        if self.max_reliable_size < self.max_packet_size {
            return err("max_reliable_size", "must be at least max_packet_size");
        }
        if self.relayed_packet_size > self.max_reliable_size {
            return err("relayed_packet_size", "must be at most max_reliable_size");
        }
        if self.max_gossip_meta > self.max_packet_size / 2 {
            return err("max_gossip_meta", "must be at most half of max_packet_size");
        }
        if self.max_meta_size > self.max_reliable_size / 4 {
            return err("max_meta_size", "must be at most a quarter of max_reliable_size");
        }
        if self.membership_queue_depth == 0 || self.broadcast_queue_depth == 0 {
            return err("membership_queue_depth", "queue depths must be at least 1");
        }
        if self.broadcast_log_depth == 0 {
            return err("broadcast_log_depth", "must be at least 1");
        }
        if self.reliable_timeout.is_zero() {
            return err("reliable_timeout", "must be non-zero");
        }
        if !(1..=16).contains(&self.reliable_attempts) {
            return err("reliable_attempts", "must be between 1 and 16");
        }
        if !(1..=64).contains(&self.awareness_max_multiplier) {
            return err("awareness_max_multiplier", "must be between 1 and 64");
        }
        if self.join_timeout.is_zero() {
            return err("join_timeout", "must be non-zero");
        }
        if self.label.len() > crate::security::MAX_LABEL_LEN {
            return err("label", "must be at most 255 bytes");
        }
        Ok(())
    }
}

impl Config {
    /// The first setting that differs between `self` and `other` and that a running node cannot
    /// change ([`crate::Node::set_config`]): the sizes of packets, metadata, queues and the
    /// broadcast log, which other members and the node's own buffers rely on; the health
    /// scale; encryption and the label; and turning periodic push-pull or re-announcing on or off
    /// (their periods may change).
    pub fn fixed_field_changed(&self, other: &Config) -> Option<&'static str> {
        let changed = [
            ("max_packet_size", self.max_packet_size != other.max_packet_size),
            ("max_reliable_size", self.max_reliable_size != other.max_reliable_size),
            ("max_gossip_meta", self.max_gossip_meta != other.max_gossip_meta),
            ("max_meta_size", self.max_meta_size != other.max_meta_size),
            ("membership_queue_depth", self.membership_queue_depth != other.membership_queue_depth),
            ("broadcast_queue_depth", self.broadcast_queue_depth != other.broadcast_queue_depth),
            ("broadcast_retention", self.broadcast_retention != other.broadcast_retention),
            ("broadcast_log_depth", self.broadcast_log_depth != other.broadcast_log_depth),
            ("awareness_max_multiplier", self.awareness_max_multiplier != other.awareness_max_multiplier),
            ("security", self.security != other.security),
            ("label", self.label != other.label),
            ("push_pull_interval", self.push_pull_interval.is_zero() != other.push_pull_interval.is_zero()),
            ("reannounce_interval", self.reannounce_interval.is_zero() != other.reannounce_interval.is_zero()),
        ];
        changed.iter().find(|(_, c)| *c).map(|(field, _)| *field)
    }

    /// How often a node does its housekeeping (forgets members dead long enough, gives up and
    /// reports broadcast holes that can no longer be repaired, sweeps spent timers): every five
    /// protocol periods, whatever else is on or off. Call it to bound how late a reap or a
    /// give-up can come after its deadline.
    pub fn housekeeping_period(&self) -> Duration {
        crate::time::scale(self.probe_interval, 5.0)
    }

    /// The period of push-pull anti-entropy in a cluster of `cluster_size` members (ourselves
    /// included): `push_pull_interval`, stretched beyond 32 members by `ceil(log2(n) - log2(32)) + 1`
    /// so that the cluster's total push-pull traffic grows like `n log n`, not `n²`. Zero when
    /// periodic push-pull is off.
    pub fn push_pull_period(&self, cluster_size: usize) -> Duration {
        let n = cluster_size as f64;
        let factor = if n <= 32.0 { 1.0 } else { libm::ceil(libm::log2(n) - libm::log2(32.0)) + 1.0 };
        if self.push_pull_interval.is_zero() {
            return Duration::ZERO;
        }
        crate::time::scale(self.push_pull_interval, factor)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for c in [Config::lan(), Config::wan(), Config::local(), Config::browser()] {
            assert_eq!(c.validate(), Ok(()), "{c:?}");
        }
    }

    #[test]
    fn a_probe_timeout_as_long_as_the_interval_is_rejected() {
        let c = Config { probe_timeout: ms(1_000), ..Config::lan() };
        assert_eq!(c.validate().unwrap_err().field, "probe_timeout");
    }

    #[test]
    fn the_retransmit_limit_is_lambda_times_the_decimal_log_of_n_plus_one_rounded_up_and_at_least_two() {
        // (n, the factor λ is multiplied by), worked out by hand from the formula in the doc comment.
        let factors = [(1, 2), (2, 2), (9, 2), (10, 2), (99, 2), (100, 3), (1000, 4)];
        for lambda in [1, 4, 16] {
            let c = Config { retransmit_mult: lambda, ..Config::lan() };
            for (n, factor) in factors {
                assert_eq!(c.retransmit_limit(n), lambda * factor, "λ = {lambda}, n = {n}");
            }
        }
    }

    #[test]
    fn a_packet_size_below_the_minimum_is_rejected() {
        let c = Config { max_packet_size: 100, ..Config::lan() };
        assert_eq!(c.validate().unwrap_err().field, "max_packet_size");
    }

    #[test]
    fn a_relayed_packet_size_above_the_reliable_size_is_rejected_and_one_below_the_datagram_size_is_harmless() {
        for c in [
            Config { relayed_packet_size: 20 << 20, ..Config::lan() },
            Config { relayed_packet_size: 8 << 10, max_reliable_size: 4_000, max_meta_size: 1_000, ..Config::lan() },
        ] {
            assert_eq!(c.validate().unwrap_err().field, "relayed_packet_size");
        }
        // Raising max_packet_size alone (a fixed field a running node refuses by name) needs no
        // change here.
        assert!(Config { max_packet_size: 9_000, ..Config::lan() }.validate().is_ok());
        for c in [Config::lan(), Config::wan(), Config::local(), Config::browser()] {
            assert!(c.validate().is_ok() && c.relayed_packet_size == c.max_packet_size, "off in every preset");
        }
        assert!(Config { relayed_packet_size: 8 << 10, ..Config::browser() }.validate().is_ok());
    }
}
