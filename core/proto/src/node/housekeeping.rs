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
    ///
    /// The scan of the table is skipped until the earliest a member can be due (`reap_due`): the
    /// earliest deadline among the members gone at the last scan, or a whole reap time after it for
    /// members gone since (a member's state only moves later).
    fn reap(&mut self, now: Instant) {
        if now < self.reap_due {
            return;
        }
        let horizon = self.config.dead_member_reap_time;
        let mut due = now + horizon;
        let mut expired: Vec<NodeId> = Vec::new();
        for m in self.members.iter().filter(|m| !m.state.is_live()) {
            let deadline = m.state_since + horizon;
            if deadline <= now {
                expired.push(m.id.clone());
            } else {
                due = due.min(deadline);
            }
        }
        self.reap_due = due;
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
