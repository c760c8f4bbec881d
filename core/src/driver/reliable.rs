//! Reliable transmits: in order per destination, off the protocol loop, and bounded.
//!
//! A reliable send may wait for a TCP connect or a slow peer, so the driver never awaits it inline.
//! Each destination with frames waiting gets one sender task that drains its queue in order (the
//! transport promises order per peer only if frames reach it in order), and the task ends when the
//! queue is empty.
//!
//! Memory is bounded twice, so that a dead peer costs only its own share:
//! - each destination may hold [`Limits::per_destination`] bytes waiting (an empty queue takes any
//!   one frame): a black-holed peer, whose sends wait out a connect timeout each, fills only that;
//! - all destinations together hold at most [`Limits::total`] bytes. When a frame would pass that,
//!   room is made at the expense of the destination holding the most (its newest frames go first),
//!   as long as it holds more than the frame's own destination; otherwise the frame is dropped. A
//!   destination with little waiting, a healthy one, therefore always finds room, however many dead
//!   ones are full.
//!
//! Every frame refused or pushed out is counted, like a lost packet: the protocol sends push-pulls
//! again and retries reliable messages until they are acknowledged.
use std::prelude::rust_2021::*;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::addr::Addr;
use super::signal::lock;

/// What [`ReliableOutbox::push`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued behind a sender task that is already running for this destination.
    Queued,
    /// Queued; no task runs for this destination, so the caller must start one.
    StartSender,
    /// Over its destination's share, or over the total with no larger queue to take room from:
    /// dropped.
    Dropped,
}

/// How many bytes may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// All destinations together.
    pub total: usize,
    /// One destination (an empty queue takes any one frame that fits in the total).
    pub per_destination: usize,
}

/// The frames waiting for one destination, while its sender task runs.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<Addr, Queue>,
    bytes: usize,
    dropped: u64,
}

#[derive(Debug)]
pub(crate) struct ReliableOutbox {
    state: Mutex<State>,
    limits: Limits,
}

impl ReliableOutbox {
    pub fn new(limits: Limits) -> Self {
        ReliableOutbox { state: Mutex::new(State::default()), limits }
    }

    pub fn push(&self, to: Addr, frame: Vec<u8>) -> Push {
        let mut s = lock(&self.state);
        let len = frame.len();
        let own = s.queues.get(&to).map_or(0, |q| q.bytes);
        if own > 0 && own + len > self.limits.per_destination {
            s.dropped += 1;
            return Push::Dropped;
        }
        let over = (s.bytes + len).saturating_sub(self.limits.total);
        // Room is taken only from destinations holding more than this one, and only down to what it
        // holds: refuse first if that cannot be enough, rather than push frames out for nothing.
        if over > 0 && s.room_above(&to, own) < over {
            s.dropped += 1;
            return Push::Dropped;
        }
        while s.bytes + len > self.limits.total {
            if !s.push_out_newest_of_largest(&to, own) {
                s.dropped += 1;
                return Push::Dropped;
            }
        }
        s.bytes += len;
        match s.queues.get_mut(&to) {
            Some(q) => {
                q.bytes += len;
                q.frames.push_back(frame);
                Push::Queued
            }
            None => {
                s.queues.insert(to, Queue { frames: VecDeque::from([frame]), bytes: len });
                Push::StartSender
            }
        }
    }

    /// The next frame for `to`. `None` ends that destination's sender task (and forgets the queue,
    /// so the next push starts a new task).
    pub fn pop(&self, to: &Addr) -> Option<Vec<u8>> {
        let mut s = lock(&self.state);
        let next = s.queues.get_mut(to).and_then(|q| {
            let frame = q.frames.pop_front()?;
            q.bytes -= frame.len();
            Some(frame)
        });
        match &next {
            Some(frame) => s.bytes -= frame.len(),
            None => {
                s.queues.remove(to);
            }
        }
        next
    }

    /// Frames dropped: refused at their destination's share or at the total, or pushed out to make
    /// room for a destination holding less.
    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }
}

impl State {
    /// Bytes that destinations other than `to` hold above `own`. Pushing out the newest frames of
    /// the largest queue, one at a time while any holds more than `own`, frees at least that much.
    fn room_above(&self, to: &Addr, own: usize) -> usize {
        self.queues.iter().filter(|(addr, _)| *addr != to).map(|(_, q)| q.bytes.saturating_sub(own)).sum()
    }

    /// Drops the newest frame of the destination holding the most bytes, if that is not `to` and
    /// holds more than `own` (what `to` holds). False if there is none.
    fn push_out_newest_of_largest(&mut self, to: &Addr, own: usize) -> bool {
        let largest = self
            .queues
            .iter_mut()
            .filter(|(addr, q)| *addr != to && q.bytes > own)
            .max_by_key(|(_, q)| q.bytes)
            .map(|(_, q)| q);
        let Some(frame) = largest.and_then(|q| {
            let frame = q.frames.pop_back()?;
            q.bytes -= frame.len();
            Some(frame)
        }) else {
            return false;
        };
        self.bytes -= frame.len();
        self.dropped += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Addr {
        Addr::parse(&format!("tcp://127.0.0.1:{port}")).unwrap()
    }

    #[test]
    fn frames_to_one_destination_leave_in_order_from_a_single_sender() {
        let out = ReliableOutbox::new(Limits { total: 1_000, per_destination: 1_000 });
        let a = Addr::parse("tcp://127.0.0.1:1").unwrap();
        assert_eq!(out.push(a.clone(), vec![1]), Push::StartSender);
        assert_eq!(out.push(a.clone(), vec![2]), Push::Queued);
        assert_eq!(out.pop(&a), Some(vec![1]));
        assert_eq!(out.pop(&a), Some(vec![2]));
        assert_eq!(out.pop(&a), None);
        assert_eq!(out.push(a, vec![3]), Push::StartSender, "an emptied queue needs a new sender");
    }

    #[test]
    fn frames_beyond_the_byte_limit_are_dropped_and_counted() {
        let out = ReliableOutbox::new(Limits { total: 10, per_destination: 10 });
        let a = addr(1);
        assert_eq!(out.push(a.clone(), vec![0; 8]), Push::StartSender);
        assert_eq!(out.push(a.clone(), vec![0; 8]), Push::Dropped);
        assert_eq!(out.dropped(), 1);
        out.pop(&a);
        assert_eq!(out.push(a, vec![0; 8]), Push::Queued, "room again once sent");
    }

    #[test]
    fn a_dead_destination_fills_only_its_own_share() {
        let out = ReliableOutbox::new(Limits { total: 100, per_destination: 10 });
        let (dead, healthy) = (addr(1), addr(2));
        assert_eq!(out.push(dead.clone(), vec![0; 6]), Push::StartSender);
        assert_eq!(out.push(dead.clone(), vec![0; 4]), Push::Queued);
        assert_eq!(out.push(dead.clone(), vec![0; 1]), Push::Dropped, "its share is full");
        assert_eq!(out.dropped(), 1);
        assert_eq!(out.push(healthy, vec![0; 10]), Push::StartSender);
        let big = ReliableOutbox::new(Limits { total: 100, per_destination: 10 });
        assert_eq!(big.push(dead, vec![0; 50]), Push::StartSender, "an empty queue takes any one frame");
    }

    #[test]
    fn a_healthy_destination_finds_room_when_dead_ones_have_taken_it_all() {
        let out = ReliableOutbox::new(Limits { total: 20, per_destination: 10 });
        let (dead1, dead2, healthy) = (addr(1), addr(2), addr(3));
        for _ in 0..5 {
            out.push(dead1.clone(), vec![1; 2]);
        }
        for _ in 0..3 {
            out.push(dead2.clone(), vec![2; 3]);
        }
        assert_eq!(out.dropped(), 0);
        // 19 of 20 bytes taken: room is made at the expense of the largest queue, newest first.
        assert_eq!(out.push(healthy.clone(), vec![3; 3]), Push::StartSender);
        assert_eq!(out.push(healthy.clone(), vec![3; 3]), Push::Queued);
        assert_eq!(out.dropped(), 2, "one frame of dead1 (10 bytes), then one of dead2 (9)");
        // Holding 6 of 20 against 8 and 6: making room for 3 more would take it below the others.
        assert_eq!(out.push(healthy.clone(), vec![3; 3]), Push::Dropped);
        assert_eq!(out.dropped(), 3, "refused without pushing anything out");
        assert_eq!(out.push(healthy.clone(), vec![3; 2]), Push::Queued);
        assert_eq!(out.dropped(), 4);
        assert_eq!(lock(&out.state).bytes, 20);
        let drained: Vec<_> = std::iter::from_fn(|| out.pop(&healthy)).collect();
        assert_eq!(drained, vec![vec![3; 3], vec![3; 3], vec![3; 2]], "in order");
        assert_eq!(std::iter::from_fn(|| out.pop(&dead1)).collect::<Vec<_>>(), vec![vec![1; 2]; 3]);
        assert_eq!(std::iter::from_fn(|| out.pop(&dead2)).collect::<Vec<_>>(), vec![vec![2; 3]; 2]);
        assert_eq!(lock(&out.state).bytes, 0);
    }
}
