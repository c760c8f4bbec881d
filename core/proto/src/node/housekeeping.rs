//! Housekeeping, on its own timer every `Config::housekeeping_period()` (five protocol periods)
//! whatever else is configured (re-announcing, which it once rode on, may be off): forgetting members
//! dead or gone long enough, giving up broadcast holes that can no longer be repaired (and reporting
//! them) and forgetting kept broadcasts past retention, forgetting reliable senders whose retries are
//! over, and sweeping spent timers. Each is local work
//! that sends nothing.

use alloc::vec::Vec;

use rand::Rng;

use crate::identity::{Address, NodeId};
use crate::time::Instant;

use super::recent::RecentUpdates;
use super::timers::Timer;
use super::Node;

impl<A: Address> Node<A> {
    /// The housekeeping timer fired: does the rounds and sets the next.
    pub(super) fn on_housekeeping_tick(&mut self, now: Instant) {
        self.timers.set(now + self.config.housekeeping_period(), Timer::Housekeeping);
        self.reap(now);
        #[cfg(any(feature = "coordinates", test))]
        self.forget_coordinates();
        self.expire_broadcasts(now);
        self.forget_spent_senders(now);
        self.sweep_timers();
    }

    /// Forgets members that have been dead or gone longer than `dead_member_reap_time`.
    ///
    /// Forgetting a member also forgets the filter of recent updates: the filter skips a record seen
    /// before because applying it again would change nothing, and for a member no longer in the table
    /// that is false. After a partition longer than the reap time the other side comes back with the
    /// very `Alive` records we learned it from the first time; skipped as repeats, they would leave
    /// us relying on push-pull alone to relearn those members.
    fn reap(&mut self, now: Instant) {
        let horizon = self.config.dead_member_reap_time;
        let expired: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| !m.state.is_live() && now.saturating_duration_since(m.state_since) >= horizon)
            .map(|m| m.id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in expired {
            self.members.remove(&id);
            self.suspicions.remove(&id);
        }
        self.recent = RecentUpdates::new(self.rng.random());
    }
}
