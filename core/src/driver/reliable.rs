//! Reliable transmits: in order per destination, off the protocol loop, and bounded.
//!
//! A reliable send may wait for a TCP connect or a slow peer, so the driver never awaits it inline.
//! Each destination with frames waiting gets one sender task that drains its queue in order (the
//! transport promises order per peer only if frames reach it in order), and the task ends when the
//! queue is empty. All queues together hold at most `limit` bytes; a frame that would exceed that is
//! dropped and counted, like a lost packet, instead of growing memory behind a dead peer.
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
    /// Over the byte limit: dropped.
    Dropped,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<Addr, VecDeque<Vec<u8>>>,
    bytes: usize,
    dropped: u64,
}

#[derive(Debug)]
pub(crate) struct ReliableOutbox {
    state: Mutex<State>,
    limit: usize,
}

impl ReliableOutbox {
    pub fn new(limit: usize) -> Self {
        ReliableOutbox { state: Mutex::new(State::default()), limit }
    }

    pub fn push(&self, to: Addr, frame: Vec<u8>) -> Push {
        let mut s = lock(&self.state);
        if s.bytes + frame.len() > self.limit {
            s.dropped += 1;
            return Push::Dropped;
        }
        s.bytes += frame.len();
        match s.queues.get_mut(&to) {
            Some(q) => {
                q.push_back(frame);
                Push::Queued
            }
            None => {
                s.queues.insert(to, VecDeque::from([frame]));
                Push::StartSender
            }
        }
    }

    /// The next frame for `to`. `None` ends that destination's sender task (and forgets the queue,
    /// so the next push starts a new task).
    pub fn pop(&self, to: &Addr) -> Option<Vec<u8>> {
        let mut s = lock(&self.state);
        let next = s.queues.get_mut(to).and_then(VecDeque::pop_front);
        match &next {
            Some(frame) => s.bytes -= frame.len(),
            None => {
                s.queues.remove(to);
            }
        }
        next
    }

    /// Frames dropped for exceeding the limit.
    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_to_one_destination_leave_in_order_from_a_single_sender() {
        let out = ReliableOutbox::new(1_000);
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
        let out = ReliableOutbox::new(10);
        let a = Addr::parse("tcp://127.0.0.1:1").unwrap();
        assert_eq!(out.push(a.clone(), vec![0; 8]), Push::StartSender);
        assert_eq!(out.push(a.clone(), vec![0; 8]), Push::Dropped);
        assert_eq!(out.dropped(), 1);
        out.pop(&a);
        assert_eq!(out.push(a, vec![0; 8]), Push::Queued, "room again once sent");
    }
}
