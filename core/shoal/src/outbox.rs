//! Transmits leave through per-destination sender tasks, in order, off the protocol loop, and
//! bounded in memory.
//!
//! A send may wait: a reliable one for a TCP connect or a slow peer, a best-effort one for a full
//! socket or, in TCP-only mode, for a connection too. The protocol loop never awaits one: each
//! destination has two lanes, best-effort and reliable, and a lane with frames waiting has one
//! sender task that drains it in order (a transport promises order per peer only if frames reach
//! it in order) and ends when it is empty. The lanes are separate so that a ping never waits behind
//! a push-pull stuck in a connect. (The driver first tries a best-effort send inline, once, and
//! hands it to a task only if it would wait: most datagram sends complete at once.)
//!
//! Memory is bounded per lane of each destination and in total, so a dead peer costs only its own
//! share:
//! - a destination's reliable lane may hold [`Limits::per_destination`] bytes (an empty lane takes
//!   any one frame): a black-holed peer, whose sends wait out a connect timeout each, fills only
//!   that, and further frames to it are dropped;
//! - its best-effort lane may hold [`Limits::best_effort_per_destination`] bytes; when full, its
//!   oldest frames make way for new ones (a late probe is worth less than a fresh one);
//! - all lanes together hold at most [`Limits::total`] bytes. A best-effort frame that would pass
//!   it is dropped. For a reliable one, room is made first from best-effort frames (oldest first,
//!   from the lane holding the most), then from the reliable lane holding the most (newest first) as
//!   long as it holds more than the frame's own; otherwise the frame is dropped. A destination with
//!   little waiting, a healthy one, therefore always finds room, however many dead ones are full.
//!
//! A send the transport has not finished by its lane's deadline (see the driver's
//! `BEST_EFFORT_SEND_DEADLINE`) is given up, and the frames waiting behind it are dropped.
//!
//! Every frame refused, pushed out or shed is counted, per lane, like a lost packet: the protocol
//! probes again, sends push-pulls again and retries reliable messages until they are acknowledged.

use std::collections::VecDeque;
use std::sync::Mutex;

use foldhash::fast::FixedState;
use hashbrown::HashMap;

use super::signal::lock;
use shoal_core::addr::Addr;

/// Which path a frame takes. Each destination has a queue (and a sender task) per lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    BestEffort = 0,
    Reliable = 1,
}

/// What [`Outbox::push`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued behind a sender task that is already running for this lane.
    Queued,
    /// Queued; no task runs for this lane, so the caller must start one.
    StartSender,
    /// Over its lane's share, or over the total with no room to take: dropped.
    Dropped,
}

/// How many bytes may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Every lane of every destination together.
    pub total: usize,
    /// The reliable lane of one destination (an empty lane takes any one frame that fits in the
    /// total).
    pub per_destination: usize,
    /// The best-effort lane of one destination (likewise).
    pub best_effort_per_destination: usize,
}

/// The frames waiting in one lane of one destination, while its sender task runs.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Queue {
    fn pop_front(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }

    fn pop_back(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.pop_back()?;
        self.bytes -= frame.len();
        Some(frame)
    }
}

/// A destination's lanes, indexed by [`Lane`]; `Some` while the lane's sender task runs.
type Lanes = [Option<Queue>; 2];

#[derive(Debug)]
struct State {
    destinations: HashMap<Addr, Lanes, FixedState>,
    /// Bytes waiting in every lane.
    bytes: usize,
    /// Bytes waiting in best-effort lanes.
    best_effort_bytes: usize,
    /// Frames dropped, by lane.
    dropped: [u64; 2],
}

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    limits: Limits,
}

impl Outbox {
    /// `hash_seed` seeds the hashing of destinations (anything unpredictable to others).
    pub fn new(limits: Limits, hash_seed: u64) -> Self {
        let state = State {
            destinations: HashMap::with_hasher(FixedState::with_seed(hash_seed)),
            bytes: 0,
            best_effort_bytes: 0,
            dropped: [0; 2],
        };
        Outbox { state: Mutex::new(state), limits }
    }

    /// Queues a frame for `to` (see the module docs for when it is dropped instead).
    pub fn push(&self, to: Addr, lane: Lane, frame: Vec<u8>) -> Push {
        let mut s = lock(&self.state);
        let len = frame.len();
        let own = s.queue(&to, lane).map_or(0, |q| q.bytes);
        let fits = match lane {
            Lane::BestEffort => s.make_room_for_best_effort(&to, len, &self.limits),
            Lane::Reliable => s.make_room_for_reliable(&to, own, len, &self.limits),
        };
        if !fits {
            s.dropped[lane as usize] += 1;
            return Push::Dropped;
        }
        s.bytes += len;
        if lane == Lane::BestEffort {
            s.best_effort_bytes += len;
        }
        let lanes = s.destinations.entry(to).or_default();
        let (queue, push) = match &mut lanes[lane as usize] {
            Some(q) => (q, Push::Queued),
            empty @ None => (empty.insert(Queue::default()), Push::StartSender),
        };
        queue.bytes += len;
        queue.frames.push_back(frame);
        push
    }

    /// True when no sender task runs for this lane of `to` (nothing is queued there either).
    pub fn is_idle(&self, to: &Addr, lane: Lane) -> bool {
        lock(&self.state).queue(to, lane).is_none()
    }

    /// Marks a sender task as running for an idle lane (one started with a send already in hand).
    pub fn claim(&self, to: Addr, lane: Lane) {
        let mut s = lock(&self.state);
        s.destinations.entry(to).or_default()[lane as usize].get_or_insert_with(Queue::default);
    }

    /// The next frame for this lane of `to`. `None` ends the lane's sender task (and forgets the
    /// lane, so the next push starts a new task).
    pub fn pop(&self, to: &Addr, lane: Lane) -> Option<Vec<u8>> {
        let mut s = lock(&self.state);
        let next = s.destinations.get_mut(to).and_then(|lanes| lanes[lane as usize].as_mut()?.pop_front());
        match &next {
            Some(frame) => s.forget_bytes(lane, frame.len()),
            None => s.end_lane(to, lane),
        }
        next
    }

    /// The lane's sender task ended without draining it (its runtime dropped it): drops what waits
    /// there, counted, so that the next push starts a new task.
    pub fn abandon(&self, to: &Addr, lane: Lane) {
        let mut s = lock(&self.state);
        let Some(queue) = s.destinations.get_mut(to).and_then(|lanes| lanes[lane as usize].take()) else {
            return;
        };
        s.forget_bytes(lane, queue.bytes);
        s.dropped[lane as usize] += queue.frames.len() as u64;
        s.end_lane(to, lane);
    }

    /// A send of this lane of `to` was given up at its deadline: the peer, or the transport's way
    /// to it, is stuck, so what waits behind it is dropped (counted) rather than given the same
    /// wait each. The lane stays claimed by its sender task, which finds it empty and ends.
    pub fn shed(&self, to: &Addr, lane: Lane) {
        let mut s = lock(&self.state);
        let Some(queue) = s.destinations.get_mut(to).and_then(|lanes| lanes[lane as usize].as_mut()) else {
            return;
        };
        let (bytes, frames) = (queue.bytes, queue.frames.len());
        *queue = Queue::default();
        s.forget_bytes(lane, bytes);
        s.dropped[lane as usize] += frames as u64;
    }

    /// Bytes of best-effort frames waiting for their sender tasks.
    pub fn best_effort_waiting(&self) -> usize {
        lock(&self.state).best_effort_bytes
    }

    /// Frames of this lane dropped: refused at their lane's share or at the total, or pushed out to
    /// make room.
    pub fn dropped(&self, lane: Lane) -> u64 {
        lock(&self.state).dropped[lane as usize]
    }
}

impl State {
    fn queue(&self, to: &Addr, lane: Lane) -> Option<&Queue> {
        self.destinations.get(to)?[lane as usize].as_ref()
    }

    fn forget_bytes(&mut self, lane: Lane, len: usize) {
        self.bytes -= len;
        if lane == Lane::BestEffort {
            self.best_effort_bytes -= len;
        }
    }

    /// Forgets the lane if it is empty, and the destination once both lanes are.
    fn end_lane(&mut self, to: &Addr, lane: Lane) {
        let Some(lanes) = self.destinations.get_mut(to) else { return };
        if lanes[lane as usize].as_ref().is_some_and(|q| q.frames.is_empty()) {
            lanes[lane as usize] = None;
        }
        if lanes.iter().all(Option::is_none) {
            self.destinations.remove(to);
        }
    }

    /// A best-effort frame of `len` bytes for `to` fits in the total without taking anyone's room;
    /// in its own lane, the oldest frames make way for it.
    fn make_room_for_best_effort(&mut self, to: &Addr, len: usize, limits: &Limits) -> bool {
        if self.bytes + len > limits.total {
            return false;
        }
        let Some(queue) = self.destinations.get_mut(to).and_then(|lanes| lanes[Lane::BestEffort as usize].as_mut())
        else {
            return true;
        };
        let mut freed = (0, 0);
        while !queue.frames.is_empty() && queue.bytes + len > limits.best_effort_per_destination {
            if let Some(frame) = queue.pop_front() {
                freed = (freed.0 + frame.len(), freed.1 + 1);
            }
        }
        self.forget_bytes(Lane::BestEffort, freed.0);
        self.dropped[Lane::BestEffort as usize] += freed.1;
        true
    }

    /// A reliable frame of `len` bytes for `to`, whose lane holds `own`, fits its lane's share, and
    /// the total once room is made (best-effort frames first, then the largest reliable lanes
    /// holding more than `own`). False, with nothing pushed out, if it cannot fit.
    fn make_room_for_reliable(&mut self, to: &Addr, own: usize, len: usize, limits: &Limits) -> bool {
        if own > 0 && own + len > limits.per_destination {
            return false;
        }
        let over = (self.bytes + len).saturating_sub(limits.total);
        if over == 0 {
            return true;
        }
        if self.best_effort_bytes + self.reliable_room_above(to, own) < over {
            return false;
        }
        while self.bytes + len > limits.total {
            let pushed_out = if self.best_effort_bytes > 0 {
                self.push_out(Lane::BestEffort, |_, _| true)
            } else {
                self.push_out(Lane::Reliable, |addr, q| addr != to && q.bytes > own)
            };
            if !pushed_out {
                return false;
            }
        }
        true
    }

    /// Bytes that reliable lanes other than `to`'s hold above `own`. Pushing out the newest frames
    /// of the largest, one at a time while any holds more than `own`, frees at least that much.
    fn reliable_room_above(&self, to: &Addr, own: usize) -> usize {
        let lanes = self.destinations.iter().filter(|(addr, _)| *addr != to);
        lanes
            .filter_map(|(_, lanes)| lanes[Lane::Reliable as usize].as_ref())
            .map(|q| q.bytes.saturating_sub(own))
            .sum()
    }

    /// Drops one frame from the `lane` queue holding the most bytes among those `eligible`: the
    /// oldest best-effort frame, or the newest reliable one. False if none is eligible or nonempty.
    fn push_out(&mut self, lane: Lane, eligible: impl Fn(&Addr, &Queue) -> bool) -> bool {
        let largest = self
            .destinations
            .iter_mut()
            .filter_map(|(addr, lanes)| Some((addr, lanes[lane as usize].as_mut()?)))
            .filter(|(addr, q)| !q.frames.is_empty() && eligible(addr, q))
            .max_by_key(|(_, q)| q.bytes)
            .map(|(_, q)| q);
        let frame = largest.and_then(|q| match lane {
            Lane::BestEffort => q.pop_front(),
            Lane::Reliable => q.pop_back(),
        });
        let Some(frame) = frame else { return false };
        self.forget_bytes(lane, frame.len());
        self.dropped[lane as usize] += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Addr {
        Addr::parse(&format!("tcp://127.0.0.1:{port}")).unwrap()
    }

    fn outbox(total: usize, per_destination: usize, best_effort_per_destination: usize) -> Outbox {
        Outbox::new(Limits { total, per_destination, best_effort_per_destination }, 7)
    }

    fn drain(out: &Outbox, to: &Addr, lane: Lane) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| out.pop(to, lane)).collect()
    }

    const R: Lane = Lane::Reliable;
    const B: Lane = Lane::BestEffort;

    #[test]
    fn frames_to_one_destination_leave_in_order_from_a_single_sender() {
        let out = outbox(1_000, 1_000, 1_000);
        let a = addr(1);
        assert_eq!(out.push(a.clone(), R, vec![1]), Push::StartSender);
        assert_eq!(out.push(a.clone(), R, vec![2]), Push::Queued);
        assert_eq!(out.pop(&a, R), Some(vec![1]));
        assert_eq!(out.pop(&a, R), Some(vec![2]));
        assert_eq!(out.pop(&a, R), None);
        assert_eq!(out.push(a, R, vec![3]), Push::StartSender, "an emptied queue needs a new sender");
    }

    #[test]
    fn each_lane_of_a_destination_has_its_own_sender() {
        let out = outbox(1_000, 1_000, 1_000);
        let a = addr(1);
        assert!(out.is_idle(&a, B));
        assert_eq!(out.push(a.clone(), R, vec![1]), Push::StartSender);
        assert!(out.is_idle(&a, B), "a ping never waits behind a stuck push-pull");
        assert_eq!(out.push(a.clone(), B, vec![2]), Push::StartSender);
        assert_eq!(out.best_effort_waiting(), 1);
        assert_eq!(drain(&out, &a, B), vec![vec![2]]);
        assert_eq!(drain(&out, &a, R), vec![vec![1]]);
        out.claim(a.clone(), B);
        assert!(!out.is_idle(&a, B));
        assert_eq!(out.push(a.clone(), B, vec![3]), Push::Queued, "behind the claimed sender");
        assert_eq!(drain(&out, &a, B), vec![vec![3]]);
        assert!(out.is_idle(&a, B) && out.is_idle(&a, R));
        assert!(lock(&out.state).destinations.is_empty());
    }

    #[test]
    fn frames_beyond_the_byte_limit_are_dropped_and_counted() {
        let out = outbox(10, 10, 10);
        let a = addr(1);
        assert_eq!(out.push(a.clone(), R, vec![0; 8]), Push::StartSender);
        assert_eq!(out.push(a.clone(), R, vec![0; 8]), Push::Dropped);
        assert_eq!(out.dropped(R), 1);
        out.pop(&a, R);
        assert_eq!(out.push(a, R, vec![0; 8]), Push::Queued, "room again once sent");
    }

    #[test]
    fn a_dead_destination_fills_only_its_own_share() {
        let out = outbox(100, 10, 10);
        let (dead, healthy) = (addr(1), addr(2));
        assert_eq!(out.push(dead.clone(), R, vec![0; 6]), Push::StartSender);
        assert_eq!(out.push(dead.clone(), R, vec![0; 4]), Push::Queued);
        assert_eq!(out.push(dead.clone(), R, vec![0; 1]), Push::Dropped, "its share is full");
        assert_eq!(out.dropped(R), 1);
        assert_eq!(out.push(healthy, R, vec![0; 10]), Push::StartSender);
        let big = outbox(100, 10, 10);
        assert_eq!(big.push(dead, R, vec![0; 50]), Push::StartSender, "an empty queue takes any one frame");
    }

    #[test]
    fn a_healthy_destination_finds_room_when_dead_ones_have_taken_it_all() {
        let out = outbox(20, 10, 10);
        let (dead1, dead2, healthy) = (addr(1), addr(2), addr(3));
        for _ in 0..5 {
            out.push(dead1.clone(), R, vec![1; 2]);
        }
        for _ in 0..3 {
            out.push(dead2.clone(), R, vec![2; 3]);
        }
        assert_eq!(out.dropped(R), 0);
        // 19 of 20 bytes taken: room is made at the expense of the largest queue, newest first.
        assert_eq!(out.push(healthy.clone(), R, vec![3; 3]), Push::StartSender);
        assert_eq!(out.push(healthy.clone(), R, vec![3; 3]), Push::Queued);
        assert_eq!(out.dropped(R), 2, "one frame of dead1 (10 bytes), then one of dead2 (9)");
        // Holding 6 of 20 against 8 and 6: making room for 3 more would take it below the others.
        assert_eq!(out.push(healthy.clone(), R, vec![3; 3]), Push::Dropped);
        assert_eq!(out.dropped(R), 3, "refused without pushing anything out");
        assert_eq!(out.push(healthy.clone(), R, vec![3; 2]), Push::Queued);
        assert_eq!(out.dropped(R), 4);
        assert_eq!(lock(&out.state).bytes, 20);
        assert_eq!(drain(&out, &healthy, R), vec![vec![3; 3], vec![3; 3], vec![3; 2]], "in order");
        assert_eq!(drain(&out, &dead1, R), vec![vec![1; 2]; 3]);
        assert_eq!(drain(&out, &dead2, R), vec![vec![2; 3]; 2]);
        assert_eq!(lock(&out.state).bytes, 0);
    }

    #[test]
    fn a_full_best_effort_lane_makes_way_for_new_frames_oldest_first() {
        let out = outbox(100, 50, 5);
        let slow = addr(1);
        for i in 0..4 {
            out.push(slow.clone(), B, vec![i; 2]);
        }
        assert_eq!(out.dropped(B), 2);
        assert_eq!(out.best_effort_waiting(), 4);
        assert_eq!(drain(&out, &slow, B), vec![vec![2; 2], vec![3; 2]]);
        assert_eq!(out.best_effort_waiting(), 0);
        assert_eq!(out.push(slow.clone(), B, vec![9; 7]), Push::StartSender, "an empty lane takes any one frame");
    }

    #[test]
    fn best_effort_frames_make_way_for_reliable_ones_and_never_the_reverse() {
        let out = outbox(10, 10, 10);
        let (a, b) = (addr(1), addr(2));
        out.push(a.clone(), R, vec![1; 4]);
        out.push(a.clone(), B, vec![2; 3]);
        out.push(b.clone(), B, vec![3; 3]);
        assert_eq!(out.push(b.clone(), B, vec![4; 1]), Push::Dropped, "the total is full");
        assert_eq!(out.dropped(B), 1);
        // A reliable frame takes its room from best-effort frames first, though b holds less.
        assert_eq!(out.push(b.clone(), R, vec![5; 4]), Push::StartSender);
        assert_eq!((out.dropped(B), out.dropped(R)), (3, 0));
        assert_eq!(out.best_effort_waiting(), 0);
        assert_eq!(drain(&out, &a, R), vec![vec![1; 4]]);
        assert_eq!(drain(&out, &b, R), vec![vec![5; 4]]);
        assert!(drain(&out, &a, B).is_empty() && drain(&out, &b, B).is_empty());
        assert_eq!(lock(&out.state).bytes, 0);
    }

    #[test]
    fn a_shed_lane_drops_what_waits_counted_and_its_sender_ends() {
        let out = outbox(1 << 20, 1 << 16, 1 << 16);
        let to = addr(1);
        assert_eq!(out.push(to.clone(), Lane::BestEffort, vec![1; 10]), Push::StartSender);
        assert_eq!(out.pop(&to, Lane::BestEffort), Some(vec![1; 10]), "in flight");
        for _ in 0..3 {
            assert_eq!(out.push(to.clone(), Lane::BestEffort, vec![2; 10]), Push::Queued);
        }
        out.shed(&to, Lane::BestEffort);
        assert_eq!((out.dropped(Lane::BestEffort), out.best_effort_waiting()), (3, 0));
        assert_eq!(out.push(to.clone(), Lane::BestEffort, vec![3; 10]), Push::Queued, "the sender still runs");
        assert_eq!(drain(&out, &to, Lane::BestEffort), [vec![3; 10]]);
        assert_eq!(out.push(to.clone(), Lane::BestEffort, vec![4; 10]), Push::StartSender, "it ended");
    }

    #[test]
    fn an_abandoned_lane_drops_what_waits_and_starts_over() {
        let out = outbox(100, 100, 100);
        let a = addr(1);
        out.push(a.clone(), B, vec![1; 3]);
        out.push(a.clone(), B, vec![2; 3]);
        out.abandon(&a, B);
        assert_eq!(out.dropped(B), 2);
        assert_eq!((out.best_effort_waiting(), lock(&out.state).bytes), (0, 0));
        assert_eq!(out.push(a, B, vec![3]), Push::StartSender);
    }
}
