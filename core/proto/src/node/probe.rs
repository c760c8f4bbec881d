//! Failure detection: the SWIM probe cycle with Lifeguard's health awareness and nacks.
//!
//! Once per protocol period (stretched by the local health multiplier) the node pings the next member
//! in round-robin order. No ack within the probe timeout: it asks `k` random members to ping the
//! target for it (ping-req). They forward the target's ack, or send a nack when the target stays
//! silent. At the end of the period, with no ack either way, the target becomes suspect.
//!
//! Missing nacks mean the fault may be ours (the helpers are alive and answered nobody in time, or
//! we are too slow to hear them): each raises our health score. A successful probe lowers it.

use core::time::Duration;

use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::suspicion::Check;
use crate::time::{duration_millis, Instant};
use crate::wire::{Message, Ping};

use super::timers::Timer;
use super::{IndirectProbe, Node, Probe, Status, TransmitKind};

impl<A: Address> Node<A> {
    /// The health multiplier if health-aware probing is on, else 1.
    fn probe_multiplier(&self) -> u32 {
        if self.config.lifeguard.health_aware_probing {
            self.health.multiplier()
        } else {
            1
        }
    }

    /// Moves the local health score (Lifeguard) and reports the change.
    pub(super) fn adjust_health(&mut self, delta: i32) {
        if !self.config.lifeguard.health_aware_probing {
            return;
        }
        if let Some(score) = self.health.apply(delta) {
            self.emit(Event::HealthChanged { score, multiplier: score + 1 });
        }
    }

    pub(super) fn on_probe_tick(&mut self, round: u64, now: Instant) {
        if round != self.probe_round {
            return;
        }
        self.probe_round += 1;
        // The previous period ends where this one starts; settle its probe first.
        if let Some(prev) = self.probe.as_ref().filter(|p| !p.acked && !p.concluded).map(|p| p.seq) {
            self.on_probe_end(prev, now);
        }
        let mult = self.probe_multiplier();
        let next = now + self.config.probe_interval * mult;
        self.timers.set(next, Timer::Probe { round: self.probe_round });
        // A member whose link is down would only hear silence (see `link`).
        if self.status != Status::Running || self.link_down() {
            return;
        }
        // Members left behind on a dead relay first (see `relay_move`), then round robin.
        let Some(target) = self.next_stranded().or_else(|| self.members.next_probe_target(&mut self.rng)) else {
            return;
        };
        let Some(m) = self.members.get(&target) else {
            return;
        };
        let (target_addr, suspect_incarnation) =
            (m.addr.clone(), (m.state == MemberState::Suspect).then_some(m.incarnation));
        let seq = self.next_seq();
        // Buddy system: a suspect hears about its suspicion from us directly, in the same packet.
        let buddy = suspect_incarnation.filter(|_| self.config.lifeguard.buddy_system);
        self.send_ping(&target, target_addr.clone(), seq, buddy);
        self.probe = Some(Probe {
            seq,
            target,
            target_addr,
            sent_at: now,
            acked: false,
            concluded: false,
            expected_nacks: 0,
            nacks: 0,
        });
        self.timers.set(now + self.config.probe_timeout * mult, Timer::ProbeTimeout { seq });
        self.timers.set(now + self.config.probe_interval * mult, Timer::ProbeEnd { seq });
    }

    /// Our own check of a member we hold suspect at `incarnation`, from its suspicion's timer
    /// before the deadline: the first time, one ping with the suspicion riding along as the buddy
    /// system sends it; the second, a probe timeout later, the verdict on that ping.
    ///
    /// Gossip reaches every member with high probability, not certainty: a member can miss every
    /// copy of a refutation while it hears the suspicion several times, and declare a healthy
    /// member failed. The suspect, hearing the claim in our ping, refutes it or, if it already did,
    /// answers with its newer record straight to us (see `answers`). A ping that goes unanswered
    /// is our own evidence: it confirms the suspicion (Lifeguard), and the confirmation is gossiped
    /// like any other, so a crash that many members check is declared at the minimum timeout
    /// instead of waiting for round-robin probes to find it. Not while our own health is poor (the
    /// silence may be ours) or our link is down. A dead suspect costs one ping per member holding
    /// the suspicion.
    pub(super) fn check_suspect(&mut self, id: &NodeId, incarnation: u32, now: Instant) {
        let Some(check) = self.suspicions.get(id).map(|s| s.check) else {
            return;
        };
        let healthy = self.status == Status::Running && !self.link_down();
        match check {
            Check::Planned if healthy => {
                let Some(addr) = self.members.get(id).map(|m| m.addr.clone()) else {
                    return;
                };
                let seq = self.next_seq();
                self.send_ping(id, addr, seq, Some(incarnation));
                self.stats.suspects_checked += 1;
                self.set_check(id, Check::Sent(seq));
                let wait = self.config.probe_timeout * self.probe_multiplier();
                self.timers.set(now + wait, Timer::Suspicion { id: id.clone(), incarnation });
            }
            Check::Sent(_) => {
                self.set_check(id, Check::Done);
                if healthy && self.health.score() == 0 {
                    self.stats.suspect_checks_failed += 1;
                    let me = self.local.id.clone();
                    self.apply_suspect(id, incarnation, me, None, now);
                }
            }
            _ => {}
        }
    }

    fn set_check(&mut self, id: &NodeId, check: Check) {
        if let Some(s) = self.suspicions.get_mut(id) {
            s.check = check;
        }
    }

    /// Pings `target` at `addr` with our sequence number `seq`. With `suspect_incarnation`, our
    /// suspicion of it at that incarnation rides in the same packet, so that it can refute at once.
    fn send_ping(&mut self, target: &NodeId, addr: A, seq: u32, suspect_incarnation: Option<u32>) {
        let me = self.local.id.clone();
        let ping = Message::<A>::Ping(Ping { seq, target: target.clone(), source: me.clone() });
        let claim =
            suspect_incarnation.map(|incarnation| Message::<A>::Suspect { id: target.clone(), incarnation, from: me });
        self.send_packet(addr, TransmitKind::Ping, |w| {
            ping.encode(w);
            if let Some(c) = &claim {
                c.encode(w);
            }
        });
        self.stats.pings_sent += 1;
    }

    pub(super) fn on_probe_timeout(&mut self, seq: u32, _now: Instant) {
        let (target, target_addr) = match &self.probe {
            Some(p) if p.seq == seq && !p.acked && !p.concluded && !self.link_down() => {
                (p.target.clone(), p.target_addr.clone())
            }
            _ => return,
        };
        let k = self.config.indirect_checks;
        let helpers: alloc::vec::Vec<A> = self
            .members
            .random_members(k, &mut self.rng, |m| m.state == MemberState::Alive && m.id != target)
            .into_iter()
            .map(|m| m.addr.clone())
            .collect();
        let want_nack = self.config.lifeguard.nacks;
        for helper in &helpers {
            let req = Message::PingReq { seq, target: target.clone(), target_addr: target_addr.clone(), want_nack };
            self.send_packet(helper.clone(), TransmitKind::PingReq, |w| req.encode(w));
            self.stats.ping_reqs_sent += 1;
        }
        if let Some(p) = &mut self.probe {
            p.expected_nacks = if want_nack { helpers.len() as u32 } else { 0 };
        }
    }

    pub(super) fn on_probe_end(&mut self, seq: u32, now: Instant) {
        let Some(p) = &mut self.probe else { return };
        if p.seq != seq || p.acked || p.concluded {
            return;
        }
        p.concluded = true;
        let (target, probed_at, expected, nacks) = (p.target.clone(), p.target_addr.clone(), p.expected_nacks, p.nacks);
        if !self.may_accuse(now) {
            // Our link was down during the probe: the silence says nothing about the target.
            return;
        }
        if self.members.get(&target).is_some_and(|m| m.addr != probed_at) {
            // The target moved to another relay while we probed its old address (see
            // `relay_move`): that silence says nothing about the new one, nor about us.
            self.stats.probes_of_moved_members += 1;
            return;
        }
        self.stats.probes_failed += 1;
        // Lifeguard: every nack that did not come suggests the problem is on our side.
        let delta = if expected > 0 { (expected - nacks.min(expected)) as i32 } else { 1 };
        self.adjust_health(delta);
        let Some(m) = self.members.get(&target) else {
            return;
        };
        if !m.state.is_live() {
            return;
        }
        let incarnation = m.incarnation;
        self.stats.suspicions_raised += 1;
        let me = self.local.id.clone();
        self.apply_suspect(&target, incarnation, me, None, now);
    }

    pub(super) fn handle_ping(&mut self, ping: Ping, from: &A, now: Instant) {
        if ping.target != self.local.id {
            self.stats.misdirected_pings += 1;
            return;
        }
        let ack = Message::<A>::Ack { seq: ping.seq };
        #[cfg(any(feature = "coordinates", test))]
        let extras = self.ack_extras();
        self.send_packet(from.clone(), TransmitKind::Ack, |w| {
            ack.encode(w);
            // Our coordinate and the application's payload ride right after the ack.
            #[cfg(any(feature = "coordinates", test))]
            w.raw(&extras);
        });
        // A member that knows us and that we do not know, or hold as failed or gone (we missed every
        // copy of its news: a join, a restart, a refutation): ask it for its record. The request and
        // the answer are both small, and rate limited per pinger address (whatever name it gives:
        // the one at that address answers with its own record), in a table of their own.
        if ping.source != self.local.id
            && self.members.get(&ping.source).map_or(true, |m| !m.state.is_live())
            && self.pinger_limit.allow(&self.local.id, from, now, self.config.probe_interval)
        {
            self.stats.unknown_pingers_asked += 1;
            let msg = Message::MetaRequest { from: self.local.id.clone() };
            self.send_reliable_message(from.clone(), &msg);
        }
    }

    pub(super) fn handle_ack(&mut self, seq: u32, now: Instant) {
        self.stats.acks_received += 1;
        if let Some(p) = &mut self.probe {
            if p.seq == seq && !p.acked {
                p.acked = true;
                let (target, rtt) = (p.target.clone(), now.saturating_duration_since(p.sent_at));
                let concluded = p.concluded;
                if !concluded {
                    self.adjust_health(-1);
                }
                self.members.set_rtt(&target, rtt);
                #[cfg(any(feature = "coordinates", test))]
                self.expect_ack_extras(target, rtt);
                return;
            }
        }
        // An ack for a probe we run on someone's behalf: forward it.
        if let Some(ind) = self.indirect.get_mut(&seq) {
            if !ind.acked {
                ind.acked = true;
                let (to, their_seq) = (ind.requester.clone(), ind.their_seq);
                let ack = Message::<A>::Ack { seq: their_seq };
                self.send_packet(to, TransmitKind::Ack, |w| ack.encode(w));
            }
            return;
        }
        // The ack to our check of a suspect (rarer than the two above, and a scan): it runs.
        if let Some(s) = self.suspicions.values_mut().find(|s| s.check == Check::Sent(seq)) {
            s.check = Check::Done;
        }
    }

    pub(super) fn handle_ping_req(
        &mut self,
        their_seq: u32,
        target: NodeId,
        target_addr: A,
        want_nack: bool,
        from: &A,
        now: Instant,
    ) {
        if self.indirect.len() >= max_indirect_probes(self.members.live_count()) {
            self.stats.ping_reqs_refused += 1;
            return;
        }
        self.stats.ping_reqs_served += 1;
        let seq = self.next_seq();
        self.send_ping(&target, target_addr, seq, None);
        self.indirect.insert(seq, IndirectProbe { requester: from.clone(), their_seq, want_nack, acked: false });
        // The requester asked at its probe timeout, so the window `probe_interval - probe_timeout`
        // holds four one-way trips: to us, to the target, back to us, back to it. Our nack waits
        // half the window: a target up to a quarter window away answers us before it, and the nack
        // reaches a requester up to a quarter window away before its period ends. (At 80% of the
        // shorter of timeout and window, a nack came late past 15 ms links with the browser preset,
        // raising a healthy prober's health score.) In milliseconds: Duration arithmetic costs the
        // wasm package more bytes.
        let timeout = duration_millis(self.config.probe_timeout);
        let window = duration_millis(self.config.probe_interval).saturating_sub(timeout);
        self.timers.set(now + Duration::from_millis(window / 2), Timer::IndirectNack { seq });
        self.timers.set(now + self.config.probe_interval * 2, Timer::IndirectExpire { seq });
    }

    pub(super) fn on_indirect_nack(&mut self, seq: u32) {
        let Some(ind) = self.indirect.get(&seq) else {
            return;
        };
        if ind.acked || !ind.want_nack {
            return;
        }
        let (to, their_seq) = (ind.requester.clone(), ind.their_seq);
        let nack = Message::<A>::Nack { seq: their_seq };
        self.send_packet(to, TransmitKind::Nack, |w| nack.encode(w));
        self.stats.nacks_sent += 1;
    }

    pub(super) fn handle_nack(&mut self, seq: u32, now: Instant) {
        self.stats.nacks_received += 1;
        let Some(p) = &mut self.probe else { return };
        if p.seq != seq || p.acked || p.concluded {
            return;
        }
        p.nacks += 1;
        // Every helper reached us and none reached the target: no ack is coming, conclude now.
        if p.expected_nacks > 0 && p.nacks >= p.expected_nacks {
            self.on_probe_end(seq, now);
        }
    }
}

/// How many indirect probes we run for others at once, at most, in a cluster of `live` members
/// besides us. Each is kept for two of our probe intervals. An honest member asks us at most once
/// per its own probe period, so a cluster of one preset keeps a few per member; members that
/// probe much faster than we do (a `local` member asking a `wan` one) keep up to
/// `2 * our interval / theirs` each. The bound leaves room for that and for restarts, and stops a
/// sender that floods requests from making us hold state without end: requests past it are
/// refused and counted (`Stats::ping_reqs_refused`).
pub(crate) fn max_indirect_probes(live: usize) -> usize {
    256usize.max(live.saturating_mul(64))
}
