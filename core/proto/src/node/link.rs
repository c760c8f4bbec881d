//! The member's own link: up, or known to be down.
//!
//! A member that reaches the cluster through one link it can watch (a browser tab's relay
//! connection) knows when that link is down. Every probe it sends then goes unanswered, and SWIM
//! alone would have it suspect, then declare failed, every member it probes: the fault is its own,
//! as Lifeguard puts it, not theirs. So while the link is down the member accuses nobody: it sends
//! no probe, settles none as failed, raises no suspicion and declares no failure. When the link
//! comes back it asks a random member at once for a push-pull, to catch up on what it missed.
//!
//! It accuses nobody for a grace period after that either: one probe interval, so that
//! refutations it could not hear arrive first, plus twice the outage, up to 5 s
//! ([`STRAGGLERS_MAX_MS`]). A relay that restarts cuts all its members off at once, and they come
//! back one by one: each retries on its own jittered, doubling schedule (`shoal-websocket` and the
//! npm package wait 250 ms, then twice as long each time, up to 5 s, each wait drawn between half
//! and all of that), so a member may come back up to about twice the outage, or 5 s, after the
//! first. Probed before then, a straggler would be suspected for an outage it shares. Suspicions
//! the member already held wait until the grace has passed: their timers fire again then.
//!
//! Members that cannot tell (a UDP socket never knows) never call [`Node::set_link_up`]: the link
//! is up, and nothing here changes their behaviour.
//!
//! A member that did not run at all is in the same position. A page frozen by the browser, a
//! process stopped by a debugger or starved of CPU, a laptop waking from sleep: when it runs again
//! its timers are overdue together, and the probe in flight and the suspicions it held would all
//! expire before it reads the answers waiting for it. So a timer that fires a whole probe interval
//! or more after its deadline counts as a stall ([`Stats::stalls`](crate::Stats::stalls)): nobody
//! is accused for one more probe interval (the probe in flight, settled meanwhile, raises no
//! suspicion: `on_probe_end` asks `may_accuse` first), and the
//! member asks a random member for a push-pull at once, which also tells it, within a round trip,
//! whether others suspected it meanwhile so that it refutes.

use core::time::Duration;

use crate::identity::Address;
use crate::time::Instant;

use super::Node;

/// The longest a member cut off by an outage may come back after another one cut off by the same
/// outage: the longest reconnect wait of the relay clients (see the module documentation).
const STRAGGLERS_MAX_MS: u64 = 5_000;

/// Whether the link is up, and since when the member may accuse again.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Link {
    /// When the link went down, while it is down.
    down_since: Option<Instant>,
    /// No failure is declared before this (the grace after the link came back).
    accuse_from: Instant,
}

impl<A: Address> Node<A> {
    /// Tells the node whether its own link to the cluster is up. Call with `false` when the
    /// transport knows the member reaches nobody (a relayed member whose relay connection
    /// dropped), and with `true` once it is connected again. Calls that change nothing are
    /// ignored. See the `link` module docs for what changes while it is down.
    pub fn set_link_up(&mut self, now: Instant, up: bool) {
        self.now = self.now.max(now);
        match (up, self.link.down_since) {
            (false, None) => {
                self.link.down_since = Some(now);
                // The probe in flight cannot be answered: it ends without a verdict.
                if let Some(p) = &mut self.probe {
                    p.concluded = true;
                }
            }
            (true, Some(since)) => {
                self.link.down_since = None;
                // In milliseconds: Duration arithmetic costs the wasm package more bytes.
                let stragglers =
                    now.as_millis().saturating_sub(since.as_millis()).saturating_mul(2).min(STRAGGLERS_MAX_MS);
                self.link.accuse_from = now + self.config.probe_interval + Duration::from_millis(stragglers);
                self.stats.link_outages += 1;
                self.catch_up_after_outage();
            }
            _ => {}
        }
    }

    /// Treats timers that fire a whole probe interval late as a stall of this member (see the module
    /// docs). Called by `handle_timeout` before it runs the timers due. (Not by `handle_packet`: a
    /// test or driver may hand packets over at times it has not run the timers for, and the swarm
    /// found that reading those as stalls perturbs members on the edge of a lossy link.)
    pub(super) fn notice_stall(&mut self, now: Instant) {
        let Some(due) = self.timers.next_deadline() else { return };
        // A timer set for a moment already past (a suspicion shortened by confirmations) is due at
        // once, not late: lateness counts from when the member last ran, if that was later.
        if now < due.max(self.now) + self.config.probe_interval {
            return;
        }
        self.stats.stalls += 1;
        self.link.accuse_from = self.link.accuse_from.max(now + self.config.probe_interval);
        if self.link.down_since.is_none() {
            self.catch_up_after_outage();
        }
    }

    /// True while the link is known to be down.
    pub fn link_down(&self) -> bool {
        self.link.down_since.is_some()
    }

    /// Whether the member may accuse anyone at `now`: its link is up, and was long enough to hear
    /// what it missed.
    pub(super) fn may_accuse(&self, now: Instant) -> bool {
        self.link.down_since.is_none() && now >= self.link.accuse_from
    }

    /// When a suspicion due at `now` may be settled instead, if not now.
    pub(super) fn accusation_deferred_to(&self, now: Instant) -> Option<Instant> {
        if self.may_accuse(now) {
            return None;
        }
        Some(match self.link.down_since {
            Some(_) => now + self.config.probe_interval,
            None => self.link.accuse_from,
        })
    }
}
