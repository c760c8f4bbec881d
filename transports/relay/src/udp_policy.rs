//! [`UdpPolicy`]: who may send datagrams to relayed members through the relay's UDP port, where
//! relayed members may have the relay send datagrams, and how fast. No I/O; time is passed in.
//!
//! The relay learns which native sockets belong to the cluster from the traffic itself:
//!
//! - A **verified target** is a socket that sent the relay a datagram (one that passed this
//!   policy) within `known_ttl`. Relayed members send to verified targets at full rate (still
//!   limited per target). A target not verified is sent a few datagrams a second at most
//!   (`unverified_target`, and `unverified_targets` for all of them together): enough to join
//!   through a seed or probe a new member, which answers and becomes verified, and useless for
//!   making the relay flood someone. Loopback, unspecified, multicast and broadcast targets are
//!   refused outright, except loopback on a relay that is itself on loopback, or what
//!   `udp_allow` names.
//! - A **known source** of member M is a socket M sent a datagram to through the relay within
//!   `known_ttl` (the switchboard keeps these per member). Datagrams from a known source reach M
//!   at full rate (still limited per source and per destination). Datagrams from an unknown
//!   source pass at `unknown_source` per source IP and `unknown_sources` in all: a new native
//!   member's first probe gets through, and SWIM's indirect probes through members M already
//!   knows carry the rest until M answers it (which makes it known).
//! - Sockets inside `udp_allow` are trusted both ways; with `udp_allow_only`, nothing else is
//!   exchanged at all.
//!
//! Every refusal is a [`DropReason`], counted by the switchboard.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::cidr::{any_contains, canonical, is_special_target, Cidr};
use crate::config::{public_is_loopback, Limits, RelayConfig};
use crate::metrics::DropReason;
use crate::rate::{Bucket, BudgetLimit, BudgetTable, RateLimit, Recent};

/// Most source and target budgets tracked, each.
const BUDGETS_TRACKED: usize = 16_384;
/// Most strangers (unknown source IPs, unverified targets) tracked, each.
const STRANGERS_TRACKED: usize = 4_096;
/// Most verified targets remembered.
const VERIFIED_TRACKED: usize = 65_536;

/// A budget that counts frames only.
fn frames_only(frames: RateLimit) -> BudgetLimit {
    BudgetLimit { frames, bytes: RateLimit::new(u64::MAX, u64::MAX) }
}

/// The relay's UDP policy. See the module documentation.
#[derive(Debug)]
pub(crate) struct UdpPolicy {
    allow: Vec<Cidr>,
    allow_only: bool,
    /// The relay's public address is loopback: loopback targets are not special.
    on_loopback: bool,
    limits: Limits,
    sources: BudgetTable<SocketAddr>,
    targets: BudgetTable<SocketAddr>,
    unknown_by_ip: BudgetTable<IpAddr>,
    unknown_all: Bucket,
    unverified_by_target: BudgetTable<SocketAddr>,
    unverified_all: Bucket,
    verified: Recent<SocketAddr>,
}

impl UdpPolicy {
    /// The policy of a relay whose public address is `public`, with `config`'s lists and limits.
    pub(crate) fn new(public: &str, config: &RelayConfig, now: Instant) -> UdpPolicy {
        let limits = config.limits;
        UdpPolicy {
            allow: config.effective_udp_allow(public),
            allow_only: config.udp_allow_only,
            on_loopback: public_is_loopback(public),
            limits,
            sources: BudgetTable::new(limits.source, BUDGETS_TRACKED),
            targets: BudgetTable::new(limits.destination, BUDGETS_TRACKED),
            unknown_by_ip: BudgetTable::new(frames_only(limits.unknown_source), STRANGERS_TRACKED),
            unknown_all: Bucket::full(limits.unknown_sources, now),
            unverified_by_target: BudgetTable::new(frames_only(limits.unverified_target), STRANGERS_TRACKED),
            unverified_all: Bucket::full(limits.unverified_targets, now),
            verified: Recent::new(limits.known_ttl, VERIFIED_TRACKED),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        any_contains(&self.allow, ip)
    }

    /// Whether a datagram from `from` may go on to a member, given whether that member knows
    /// `from`. Call before the destination's own budget; on success `from` is a verified target.
    pub(crate) fn inbound(
        &mut self,
        from: SocketAddr,
        known_by_destination: bool,
        bytes: usize,
        now: Instant,
    ) -> Result<(), DropReason> {
        let trusted = self.trusted(from.ip());
        if self.allow_only && !trusted {
            return Err(DropReason::ForbiddenSource);
        }
        if !trusted && !known_by_destination {
            let ip = canonical(from.ip());
            if !self.unknown_by_ip.take(ip, 0, now) || !self.unknown_all.take(self.limits.unknown_sources, 1, now) {
                return Err(DropReason::UnknownSource);
            }
        }
        if !self.sources.take(from, bytes, now) {
            return Err(DropReason::SourceRate);
        }
        self.verified.note(from, now);
        Ok(())
    }

    /// Whether the relay may send anything at all to `to`: not a special address (unless trusted,
    /// or loopback on a relay on loopback), and inside `udp_allow` if `udp_allow_only`.
    pub(crate) fn permitted_target(&self, to: SocketAddr) -> Result<(), DropReason> {
        let ip = canonical(to.ip());
        let trusted = self.trusted(ip);
        if self.allow_only && !trusted {
            return Err(DropReason::ForbiddenTarget);
        }
        let special = is_special_target(ip) && !(self.on_loopback && ip.is_loopback());
        if to.port() == 0 || (special && !trusted) {
            return Err(DropReason::ForbiddenTarget);
        }
        Ok(())
    }

    /// Whether a datagram of `bytes` may leave for `to` now (already
    /// [permitted](Self::permitted_target)): the unverified targets' rate, then `to`'s budget.
    pub(crate) fn outbound(&mut self, to: SocketAddr, bytes: usize, now: Instant) -> Result<(), DropReason> {
        if !self.trusted(to.ip()) && !self.verified.contains(&to, now) {
            let per_target = self.unverified_by_target.take(to, 0, now);
            if !per_target || !self.unverified_all.take(self.limits.unverified_targets, 1, now) {
                return Err(DropReason::UnverifiedTarget);
            }
        }
        if !self.targets.take(to, bytes, now) {
            return Err(DropReason::DestinationRate);
        }
        Ok(())
    }

    /// Whether `addr` sent the relay a datagram within `known_ttl`.
    pub(crate) fn is_verified(&self, addr: SocketAddr, now: Instant) -> bool {
        self.verified.contains(&addr, now)
    }

    /// Addresses tracked now, every table together.
    pub(crate) fn tracked(&self) -> usize {
        self.sources.len()
            + self.targets.len()
            + self.unknown_by_ip.len()
            + self.unverified_by_target.len()
            + self.verified.len()
    }
}
