//! What members say and the oracles that judge it: the runner's observation of every event, and
//! each property's check (see the table in `oracle`).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{ms, Action, Owed, Runner, TOPIC_BROADCAST, TOPIC_KEYED, TOPIC_RELIABLE};
use crate::swarm::oracle::{self, Oracle};
use crate::swarm::scenario::FaultKind;
use crate::swarm::truth::SentBroadcast;
use shoal_core::event::{Event, MessageKind};
use shoal_core::identity::NodeId;
use shoal_core::member::MemberState;

/// Broadcasts an eager joiner sends the moment its join succeeds.
const EAGER_BURST: u32 = 3;

impl Runner {
    // ----- what members say ------------------------------------------------------------------------

    pub(super) fn observe(&mut self) {
        let watch = self.watch.clone();
        for (at, observer, event) in self.sim.drain_events() {
            let t = at.as_millis();
            if let Some(w) = &watch {
                // Debugging aid: `SHOAL_SWARM_WATCH=3` prints every event node 3 emits, and every
                // event about n3 that anyone emits.
                let me = format!("n{w}");
                let about = format!("{event:?}").contains(&format!("\"{me}\""));
                if w.parse() == Ok(observer) || about {
                    std::eprintln!("{t:>9} n{observer}: {event:?}");
                }
            }
            match event {
                Event::Failed { id, incarnation, by } => self.check_accuracy(t, observer, &id, incarnation, &by),
                Event::JoinSucceeded { via } => {
                    if let Some(l) = self.truth.lives[observer as usize].last_mut() {
                        l.joined.get_or_insert(t);
                    }
                    // The member that answered is one too: a seed that started alone becomes a
                    // member when the first joiner finds it, with no event of its own.
                    if let Some(l) = self.truth.life_at(via as usize, t) {
                        let seed = &mut self.truth.lives[via as usize][l];
                        if seed.joined.is_none() {
                            seed.joined = Some(t);
                            seed.found_by = Some(observer);
                        }
                    }
                    if self.s.eager_joiners {
                        let now = self.now();
                        self.broadcast_burst(observer, EAGER_BURST, 0, 16, now);
                    }
                }
                Event::Message { from, topic, payload, kind } => {
                    let Some(tag) = payload.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else {
                        continue;
                    };
                    let o = observer as usize;
                    let counts = match (kind, topic.as_str()) {
                        (MessageKind::Broadcast, TOPIC_BROADCAST | TOPIC_KEYED) => &mut self.truth.delivered[o],
                        (MessageKind::Direct, TOPIC_RELIABLE) => {
                            self.truth.reliable_ever.insert(tag);
                            &mut self.truth.reliable_delivered[o]
                        }
                        _ => continue,
                    };
                    let count = counts.entry(tag).or_insert(0);
                    *count += 1;
                    if *count == 2 {
                        let (oracle, what) = match kind {
                            MessageKind::Broadcast => (Oracle::Broadcast, "broadcast"),
                            MessageKind::Direct => (Oracle::Reliable, "reliable message"),
                        };
                        self.violation(oracle, format!("n{observer} delivered {what} #{tag} twice in one life"));
                    }
                    if topic == TOPIC_KEYED {
                        let key = self.truth.broadcasts.iter().find(|b| b.tag == tag).and_then(|b| b.key);
                        if let (Some(origin), Some(key)) = (Self::index(&from), key) {
                            self.truth.keyed[o].entry((origin, key)).or_default().push(tag);
                        }
                    }
                }
                Event::BroadcastDropped { id, .. } => {
                    let life = self.truth.lives[observer as usize].len().saturating_sub(1);
                    if let Some(b) = self.truth.broadcasts.iter_mut().find(|b| {
                        b.origin == observer
                            && b.life == life
                            && b.epoch == id.epoch
                            && b.seq == id.seq
                            && b.key.is_some() == id.keyed
                    }) {
                        b.reported_dropped = true;
                    }
                }
                Event::BroadcastsMissed { origin, epoch, count } => {
                    if let Some(origin) = Self::index(&origin) {
                        *self.truth.missed[observer as usize].entry((origin, epoch)).or_insert(0) += count;
                    }
                }
                Event::SendFailed { id, .. } => {
                    let life = self.truth.lives[observer as usize].len().saturating_sub(1);
                    if let Some(r) =
                        self.truth.reliable.iter_mut().find(|r| r.from == observer && r.life == life && r.id == id)
                    {
                        r.failed_reported = true;
                    }
                }
                _ => {}
            }
        }
    }

    // ----- oracles ---------------------------------------------------------------------------------

    pub(super) fn believes_live(&self, observer: u32, subject: u32) -> bool {
        self.sim
            .node(observer as usize)
            .and_then(|n| n.member(&Self::name(subject)))
            .is_some_and(|m| m.state.is_live() && m.addr == subject)
    }

    pub(super) fn observers(&self) -> Vec<u32> {
        let now = self.now();
        (0..self.s.nodes as u32).filter(|&o| self.truth.is_up(o as usize, now) && self.sim.is_up(o as usize)).collect()
    }

    pub(super) fn leaving(&self, j: u32) -> bool {
        let now = self.now();
        self.truth.life_at(j as usize, now).is_some() && !self.truth.is_up(j as usize, now)
    }

    /// The convergence oracle's check: the live sets agree, except that two members left alone on
    /// either end of a link that almost never carries anything one way need only each have seen
    /// the other live at some moment since the faults healed (`seen_live`, pairs observer and
    /// subject). With nobody else to carry gossip, SWIM has such a pair flap: each declares the
    /// other failed in turn, and the other rejoins. Both live at the same moment is then down to
    /// the phase of the flapping, not to the protocol; a member that never rejoins still fails.
    pub(super) fn live_sets_converged(&self, seen_live: &BTreeSet<(u32, u32)>) -> Result<(), String> {
        let observers = self.observers();
        let flapping = |o: u32, j: u32| {
            observers.len() == 2
                && self.s.asymmetric.iter().any(|&(a, b, loss)| loss >= 0.9 && ((a, b) == (o, j) || (a, b) == (j, o)))
        };
        self.live_sets_agree_where(&[], |o, j| flapping(o, j) && seen_live.contains(&(o, j)))
    }

    /// As the convergence oracle's check, ignoring the members in `skip`.
    pub(super) fn live_sets_agree_except(&self, skip: &[u32]) -> Result<(), String> {
        self.live_sets_agree_where(skip, |_, _| false)
    }

    /// As [`Runner::live_sets_agree_except`], also excusing observer `o` not listing a running `j`
    /// live when `excused(o, j)`.
    fn live_sets_agree_where(&self, skip: &[u32], excused: impl Fn(u32, u32) -> bool) -> Result<(), String> {
        let now = self.now();
        for o in self.observers().into_iter().filter(|o| !skip.contains(o)) {
            for j in (0..self.s.nodes as u32).filter(|&j| j != o && !self.leaving(j) && !skip.contains(&j)) {
                let expected = self.truth.is_up(j as usize, now);
                if self.believes_live(o, j) != expected && !(expected && excused(o, j)) {
                    let what = if expected { "running but not live" } else { "down but live" };
                    let held = self
                        .sim
                        .node(o as usize)
                        .and_then(|n| n.member(&Self::name(j)))
                        .map(|m| (m.state, m.incarnation, m.addr));
                    return Err(format!("n{o} lists n{j} as {what} (it holds {held:?})"));
                }
            }
        }
        Ok(())
    }

    pub(super) fn incarnations_agree(&self) -> Result<(), String> {
        let now = self.now();
        let observers = self.observers();
        for &o in &observers {
            let Some(node) = self.sim.node(o as usize) else { continue };
            for j in (0..self.s.nodes as u32).filter(|&j| j != o && !self.leaving(j)) {
                let m = node.member(&Self::name(j));
                if self.truth.is_up(j as usize, now) {
                    let own = self.sim.node(j as usize).map(|n| n.incarnation());
                    match m {
                        Some(m) if m.state == MemberState::Alive && Some(m.incarnation) == own && m.addr == j => {}
                        Some(m) => {
                            return Err(format!(
                                "n{o} lists n{j} as {:?} at incarnation {} (it holds {:?})",
                                m.state, m.incarnation, own
                            ))
                        }
                        None => return Err(format!("n{o} does not know running n{j}")),
                    }
                } else if m.is_some_and(|m| m.state.is_live()) {
                    return Err(format!("n{o} lists down n{j} as live"));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_formation(&mut self) {
        // Gossip reaches everyone with high probability, not certainty: at more than 5% loss a member
        // may miss a join and learn of it from anti-entropy (the convergence oracle's bound).
        if self.s.loss > 0.05 {
            return;
        }
        // A member behind a lossy one-way link joins late (its join frame waits out retransmission
        // timeouts); the bound is for the network the presets are made for.
        let lossy: Vec<u32> = self.s.asymmetric.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        if let Err(why) = self.live_sets_agree_except(&lossy) {
            let bound = ms(oracle::formation_bound(&self.s));
            self.violation(Oracle::Formation, format!("{bound} ms after the last member started: {why}"));
        }
    }

    pub(super) fn check_completeness(&mut self, victim: u32, crashed_at: u64, now: u64) {
        let restarted = self.truth.lives[victim as usize].iter().any(|l| l.start >= crashed_at);
        if restarted || self.truth.any_partition(crashed_at, now) || self.s.nodes < 3 {
            return;
        }
        for o in self.observers() {
            if !self.truth.up_throughout(o as usize, crashed_at, now)
                || self.truth.disturbed(o as usize, crashed_at, now)
            {
                continue;
            }
            if self.believes_live(o, victim) {
                let bound = now - crashed_at;
                self.violation(
                    Oracle::Completeness,
                    format!("n{o} still lists n{victim} as live {bound} ms after it crashed at {crashed_at} ms"),
                );
                return;
            }
        }
    }

    pub(super) fn check_identity(&mut self, node: u32, restarted_at: u64, now: u64) {
        let i = node as usize;
        if !self.truth.up_throughout(i, restarted_at, now)
            || self.truth.any_partition(restarted_at, now)
            || self.truth.disturbed(i, restarted_at, now)
        {
            return;
        }
        let lossy = |o: u32| self.s.asymmetric.iter().any(|&(a, b, _)| a == o || b == o || a == node || b == node);
        for o in self.observers() {
            if o == node
                || !self.truth.up_throughout(o as usize, restarted_at, now)
                || self.truth.disturbed(o as usize, restarted_at, now)
                || lossy(o)
            {
                continue;
            }
            if !self.believes_live(o, node) {
                let state = self
                    .sim
                    .node(o as usize)
                    .and_then(|n| n.member(&Self::name(node)))
                    .map(|m| (m.state, m.incarnation));
                self.violation(
                    Oracle::Identity,
                    format!(
                        "n{o} lists n{node} as {state:?} {} ms after it restarted at {restarted_at} ms",
                        now - restarted_at
                    ),
                );
                return;
            }
        }
    }

    pub(super) fn check_accuracy(&mut self, t: u64, observer: u32, id: &NodeId, incarnation: u32, by: &NodeId) {
        let (Some(x), Some(c)) = (Self::index(id), Self::index(by)) else { return };
        // Every member reports the same declaration as it hears of it; it was made by the first
        // report at the latest, and is judged then, whether the subject was up or down then. (A
        // member that was frozen while its subject crashed and restarted hears of the old life's
        // failure once it thaws, and reports it then, the new life's alive record next.)
        let first_report = *self.declarations.entry((c, x, incarnation)).or_insert(t);
        if !self.truth.is_up(x as usize, t) {
            return;
        }
        let at = t + ms(oracle::recovery_bound(&self.s));
        self.schedule(at, Action::CheckRecovery { observer, subject: x, failed_at: t });
        if first_report != t || self.s.loss > 0.05 {
            return;
        }
        let w = ms(oracle::accuracy_window(&self.s));
        let from = t.saturating_sub(w);
        let touched = |n: u32| self.s.asymmetric.iter().any(|&(a, b, _)| a == n || b == n);
        let life_start = |n: u32| self.truth.life_at(n as usize, t).map(|l| self.truth.lives[n as usize][l].start);
        let excused = touched(x)
            || touched(c)
            || self.truth.disturbed(x as usize, from, t)
            || self.truth.disturbed(c as usize, from, t)
            || self.truth.any_partition(from, t)
            || self.truth.forged.iter().any(|&(a, at)| a == x && at >= from)
            || life_start(x).is_some_and(|s| s >= from)
            || life_start(c).map_or(true, |s| s >= from);
        if !excused {
            self.violation(
                Oracle::Accuracy,
                format!("n{c} declared running n{x} failed (seen by n{observer}) at {t} ms"),
            );
        }
    }

    /// `observer` declared running `subject` failed at `failed_at`: by now it must list it live again,
    /// unless something stood between them meanwhile.
    pub(super) fn check_recovery(&mut self, observer: u32, subject: u32, failed_at: u64, now: u64) {
        let (o, x) = (observer as usize, subject as usize);
        let lossy = |n: u32| self.s.asymmetric.iter().any(|&(a, b, _)| a == n || b == n);
        // The storm of claims and refutations after a partition or a stall is the accuracy oracle's
        // business; this one asks for a quick repair of a failure declared in calm conditions.
        let from = failed_at.saturating_sub(ms(oracle::accuracy_window(&self.s)));
        if !self.truth.up_throughout(o, failed_at, now)
            || !self.truth.up_throughout(x, failed_at, now)
            || self.truth.any_partition(from, now)
            || self.truth.disturbed(o, from, now)
            || self.truth.disturbed(x, from, now)
            || lossy(observer)
            || lossy(subject)
        {
            return;
        }
        if !self.believes_live(observer, subject) {
            let state = self.sim.node(o).and_then(|n| n.member(&Self::name(subject))).map(|m| (m.state, m.incarnation));
            self.violation(
                Oracle::Recovery,
                format!(
                    "n{observer} still lists running n{subject} as {state:?} {} ms after declaring it failed at {failed_at} ms",
                    now - failed_at
                ),
            );
        }
    }

    /// Checks that node `i` refused no honest packet on arrival. Call before it stops, and at the end.
    pub(super) fn check_intake(&mut self, i: u32) {
        let Some(node) = self.sim.node(i as usize) else { return };
        let (st, sec) = (node.stats(), node.security_stats());
        // A member frozen while the key changed could not have applied the change in time.
        let rotation = self.s.faults.iter().find_map(|f| match f.kind {
            FaultKind::RotateKey { step_ms } => Some((f.at_ms, f.at_ms + 2 * step_ms)),
            _ => None,
        });
        let frozen_in_rotation = rotation.is_some_and(|(a, b)| self.truth.disturbed(i as usize, a, b));
        let refused = [
            ("undecodable", st.decode_errors),
            ("oversized", st.oversized_dropped),
            ("taken for replays", sec.replays),
            ("plaintext while encrypted", sec.plaintext_rejected),
            ("truncated", sec.truncated),
            ("without a keyring", sec.no_keyring),
            ("unsendable", sec.unsendable),
            ("unauthenticated", if frozen_in_rotation { 0 } else { sec.unauthenticated }),
        ];
        for (what, count) in refused {
            if count > 0 {
                self.violation(Oracle::Intake, format!("n{i} refused {count} honest packets as {what}"));
            }
        }
    }

    /// True when every tracked broadcast and reliable message has reached every member it must
    /// reach, or been reported lost.
    pub(super) fn settled(&self) -> bool {
        let now = self.now();
        if self.s.push_pull_off {
            return self.truth.reliable.iter().all(|r| r.failed_reported || self.truth.reliable_ever.contains(&r.tag));
        }
        let broadcasts_done = self.owed_broadcasts().iter().all(|(&(r, origin, epoch), (count, _, _))| {
            self.truth.missed[r as usize].get(&(origin, epoch)).copied().unwrap_or(0) >= *count
        });
        let mut latest: BTreeMap<(u32, u32), (u64, usize)> = BTreeMap::new();
        for b in &self.truth.broadcasts {
            if let Some(k) = b.key {
                latest.insert((b.origin, k), (b.tag, b.life));
            }
        }
        // Values of an origin whose life ended (it left, or was stopped) are gone from the
        // cluster's state: a member that comes later never gets them (as `check_keyed` has it).
        latest.retain(|&(origin, _), &mut (_, life)| self.truth.lives[origin as usize][life].end.is_none());
        let keyed_done = latest.iter().all(|(&(origin, key), &(tag, _))| {
            (0..self.s.nodes as u32)
                .filter(|&r| r != origin && self.truth.is_up(r as usize, now))
                .all(|r| self.truth.keyed[r as usize].get(&(origin, key)).and_then(|v| v.last()) == Some(&tag))
        });
        let reliable_done =
            self.truth.reliable.iter().all(|r| r.failed_reported || self.truth.reliable_ever.contains(&r.tag));
        broadcasts_done && keyed_done && reliable_done
    }

    /// The receiver must hold the broadcast: a member from before it was sent (long enough to be
    /// known) until the end, in one life. Broadcasts sent before a member joined are not its own.
    pub(super) fn eligible(&self, r: u32, sent_at: u64) -> bool {
        let now = self.now();
        let known_after = ms(oracle::formation_bound(&self.s));
        self.truth.member_throughout(r as usize, sent_at.saturating_sub(known_after), now)
    }

    /// Whether unkeyed broadcast `b` is owed to `r`: `r` was a member long enough before it was
    /// sent for its origin to know of it, or since before the origin's life joined (it joined a
    /// cluster `r` was in already: all it sends is `r`'s). Not to the member that found the origin
    /// when it was a seed alone: what the seed sent while alone was sent before that member
    /// arrived, and a member does not expect that.
    fn owed_to(&self, r: u32, b: &SentBroadcast) -> bool {
        let origin = &self.truth.lives[b.origin as usize][b.life];
        let joined_a_cluster_with_r =
            |j: u64| origin.found_by != Some(r) && self.truth.member_throughout(r as usize, j, self.now());
        self.eligible(r, b.at) || origin.joined.is_some_and(joined_a_cluster_with_r)
    }

    pub(super) fn calm(&self, a: u32, b: u32) -> bool {
        let now = self.now();
        self.s.loss <= 0.05
            && self.s.asymmetric.is_empty()
            && !self.truth.any_partition(0, now)
            && !self.truth.disturbed(a as usize, 0, now)
            && !self.truth.disturbed(b as usize, 0, now)
    }

    /// The unkeyed broadcasts owed to each eligible receiver that it neither delivered nor can blame
    /// on a drop its origin reported, per `(receiver, origin, epoch)`: how many, which tags, and
    /// whether any of them went missing on a calm network (where nothing excuses a loss).
    pub(super) fn owed_broadcasts(&self) -> Owed {
        let n = self.s.nodes as u32;
        let mut owed = Owed::new();
        // Members forget a departed origin's broadcasts (and stop listing it in their digests) once
        // it is quiet for twice the reap time and a retention; the shortest preset's bound.
        let forgotten_after = (0..n as usize)
            .map(|i| {
                let c = self.s.config_of(i);
                ms(c.dead_member_reap_time * 2 + c.broadcast_retention)
            })
            .min()
            .unwrap_or(u64::MAX);
        for b in self.truth.broadcasts.iter().filter(|b| b.key.is_none() && !b.reported_dropped) {
            let origin_ran_on = self.truth.lives[b.origin as usize][b.life].end.is_none();
            // A broadcast whose origin stopped is owed to everyone only if a member that still runs
            // holds it: what only stopped members knew is gone with them.
            let anyone =
                (0..n).any(|r| self.sim.is_up(r as usize) && self.truth.delivered[r as usize].contains_key(&b.tag));
            if !origin_ran_on && !anyone {
                continue;
            }
            for r in (0..n).filter(|&r| r != b.origin && self.owed_to(r, b)) {
                if self.truth.cut_off_while_origin_departed(r, b.origin, b.life, b.at, forgotten_after) {
                    continue;
                }
                if self.truth.delivered[r as usize].contains_key(&b.tag) {
                    continue;
                }
                let e = owed.entry((r, b.origin, b.epoch)).or_insert((0, Vec::new(), false));
                e.0 += 1;
                e.1.push(b.tag);
                e.2 |= origin_ran_on && self.calm(r, b.origin);
            }
        }
        owed
    }

    pub(super) fn check_broadcasts(&mut self) {
        let now = self.now();
        if self.s.push_pull_off {
            // Without push-pull nothing repairs or reports a lost broadcast: only at-most-once
            // (checked as they arrive) is promised.
            return;
        }
        for ((r, origin, epoch), (count, tags, calm)) in self.owed_broadcasts() {
            if calm {
                self.violation(
                    Oracle::Broadcast,
                    format!(
                        "n{r} never received {count} of n{origin}'s broadcasts (first #{}) on a calm network",
                        tags[0]
                    ),
                );
                continue;
            }
            let reported = self.truth.missed[r as usize].get(&(origin, epoch)).copied().unwrap_or(0);
            if reported < count {
                self.violation(
                    Oracle::Broadcast,
                    format!(
                        "n{r} silently missed {} of n{origin}'s broadcasts (first #{}; {reported} reported missed) at {now} ms",
                        count - reported,
                        tags[0]
                    ),
                );
            }
        }
    }

    pub(super) fn check_keyed(&mut self) {
        let n = self.s.nodes as u32;
        let repaired = !self.s.push_pull_off;
        for r in 0..n {
            let lists: Vec<((u32, u32), Vec<u64>)> =
                self.truth.keyed[r as usize].iter().map(|(k, v)| (*k, v.clone())).collect();
            for ((origin, key), tags) in lists {
                if tags.windows(2).any(|w| w[1] <= w[0]) {
                    self.violation(
                        Oracle::Keyed,
                        format!("n{r} got an older value of n{origin}'s key {key} after a newer one: {tags:?}"),
                    );
                }
            }
        }
        let mut latest: BTreeMap<(u32, u32), SentBroadcast> = BTreeMap::new();
        for b in &self.truth.broadcasts {
            if let Some(k) = b.key {
                latest.insert((b.origin, k), b.clone());
            }
        }
        for ((origin, key), b) in latest {
            if !repaired || b.reported_dropped || self.truth.lives[origin as usize][b.life].end.is_some() {
                continue;
            }
            let receivers: Vec<u32> = (0..n).filter(|&r| r != origin && self.eligible(r, b.at)).collect();
            for r in receivers {
                let last = self.truth.keyed[r as usize].get(&(origin, key)).and_then(|v| v.last().copied());
                if last != Some(b.tag) {
                    self.violation(
                        Oracle::Keyed,
                        format!("n{r} ends at value {last:?} of n{origin}'s key {key}, not the latest #{}", b.tag),
                    );
                }
            }
        }
    }

    pub(super) fn check_reliable(&mut self) {
        let now = self.now();
        let slow = self.s.slowest();
        let bound = ms(slow.reliable_timeout * slow.reliable_attempts) + ms(slow.probe_interval);
        for r in self.truth.reliable.clone() {
            let count = u32::from(self.truth.reliable_ever.contains(&r.tag));
            // A sender that was stopped, or frozen, before the last retry came due owes no report.
            let sender_lived = self.truth.lives[r.from as usize][r.life]
                .end
                .map_or(true, |e| self.truth.running_time(r.from as usize, r.at, e) >= bound);
            if count == 1 || !sender_lived {
                continue;
            }
            if !r.failed_reported {
                self.violation(
                    Oracle::Reliable,
                    format!(
                        "n{}'s reliable message #{} (id {}) to n{} sent at {} ms vanished without a failure report",
                        r.from, r.tag, r.id, r.to, r.at
                    ),
                );
            } else if self.truth.up_throughout(r.to as usize, r.at, now)
                && !self.truth.any_partition(r.at, now)
                && !self.truth.disturbed(r.to as usize, r.at, now)
                && self.calm(r.from, r.to)
            {
                self.violation(
                    Oracle::Reliable,
                    format!(
                        "n{}'s reliable message #{} to n{} failed although nothing stood in the way",
                        r.from, r.tag, r.to
                    ),
                );
            }
        }
    }

    pub(super) fn check_growth(&mut self) {
        let n = self.s.nodes;
        for o in self.up_nodes() {
            let c = self.s.config_of(o as usize);
            let Some(node) = self.sim.node(o as usize) else { continue };
            let f = node.footprint();
            // A member asks us at most once per its probe period, and we keep each request for two
            // of our probe intervals: one that probes faster than we do (a `local` member asking a
            // `wan` one) has up to `2 * ours / theirs` of them with us at a time.
            let own = c.probe_interval.as_millis().max(1);
            let per_asker = |j: usize| {
                let theirs = self.s.config_of(j).probe_interval.as_millis().max(1);
                (2 * own).div_ceil(theirs) as usize + 1
            };
            let asked: usize = (0..n).filter(|j| *j != o as usize).map(per_asker).sum();
            let indirect_bound = (2 * n * (c.indirect_checks + 1)).max(2 * asked) + 16;
            let timer_bound = 64 + 2 * indirect_bound + n * (c.suspicion_mult as usize + 2) + 4 * n;
            let checks = [
                ("members", f.members, n),
                ("suspicions", f.suspicions, n),
                ("timers", f.timers, timer_bound),
                ("indirect probes", f.indirect_probes, indirect_bound),
                ("membership queue", f.membership_queue, c.membership_queue_depth),
                ("broadcast queue", f.broadcast_queue, c.broadcast_queue_depth),
                ("undrained transmits", f.outbox, 0),
                ("undrained events", f.events, 0),
                ("metadata requests", f.meta_requests, n),
            ];
            for (what, size, bound) in checks {
                if size > bound {
                    self.violation(Oracle::Growth, format!("n{o} holds {size} {what} (bound {bound})"));
                }
            }
        }
    }
}
