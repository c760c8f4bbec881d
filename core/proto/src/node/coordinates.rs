//! Network coordinates and the ack payload hook: what rides on acks besides the ack.
//!
//! With coordinates on ([`Node::set_coordinates`]), every ack we send carries our coordinate, and
//! every ack to one of our direct probes that carries the target's moves ours (see
//! [`crate::coordinate`]). Members' coordinates are kept while they are in the member table; with
//! them, [`Node::estimate_rtt`] estimates the round trip to any member we have heard a coordinate
//! from, and [`Node::nearest`] lists members by it. An ack forwarded by the helper of an indirect
//! probe carries nothing: its round trip went the long way round.
//!
//! The ack payload (memberlist's `PingDelegate`): bytes the application sets with
//! [`Node::set_ack_payload`] ride on every ack we send, and an ack to one of our direct probes that
//! carries some is reported as [`Event::PingComplete`] with the measured round trip.
//!
//! Both travel as message types of their own after the ack; members without the `coordinates`
//! feature skip them. A coordinate or payload that arrives without an ack of our own direct probe
//! before it in the packet is not used, and counted (`Stats::ack_extras_unmatched`).

use alloc::vec::Vec;
use core::time::Duration;

use rand::Rng;

use crate::coordinate::{Coordinate, RttFilter, DIMENSIONS};
use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::wire::{Message, Writer, MAX_ACK_PAYLOAD};

use super::{CommandError, FixedMap, Node};

/// What we know of members' coordinates.
#[derive(Debug, Default)]
pub(super) struct CoordinateBook {
    own: Coordinate,
    peers: FixedMap<NodeId, Peer>,
}

#[derive(Debug)]
struct Peer {
    coordinate: Coordinate,
    rtts: RttFilter,
}

impl<A: Address> Node<A> {
    /// Turns network coordinates on (our acks carry our coordinate, acks to our probes move it) or
    /// off (the coordinates held are forgotten). Off by default: a coordinate adds about 25 bytes
    /// to every ack. Turn it on in every member that should estimate round trips, or be estimated.
    pub fn set_coordinates(&mut self, on: bool) {
        match (on, self.coordinates.is_some()) {
            (true, false) => self.coordinates = Some(CoordinateBook::default()),
            (false, true) => self.coordinates = None,
            _ => {}
        }
    }

    /// Our network coordinate, while coordinates are on.
    pub fn coordinate(&self) -> Option<&Coordinate> {
        self.coordinates.as_ref().map(|b| &b.own)
    }

    /// The last coordinate `id` sent us, while coordinates are on and it is in the member table.
    pub fn coordinate_of(&self, id: &NodeId) -> Option<&Coordinate> {
        self.coordinates.as_ref()?.peers.get(id).map(|p| &p.coordinate)
    }

    /// The estimated round trip to `id`, from the two coordinates: for any member whose coordinate
    /// we hold, probed lately or not. `None` while coordinates are off or before `id` sent one.
    pub fn estimate_rtt(&self, id: &NodeId) -> Option<Duration> {
        let book = self.coordinates.as_ref()?;
        let other = &book.peers.get(id)?.coordinate;
        Some(millis(book.own.distance_ms(other)))
    }

    /// Up to `n` live members by estimated round trip, nearest first (members without a coordinate
    /// yet are left out). Empty while coordinates are off.
    pub fn nearest(&self, n: usize) -> Vec<(NodeId, Duration)> {
        let Some(book) = &self.coordinates else { return Vec::new() };
        let mut out: Vec<(NodeId, f32)> = book
            .peers
            .iter()
            .filter(|(id, _)| self.members.get(id).is_some_and(|m| m.state.is_live()))
            .map(|(id, p)| (id.clone(), book.own.distance_ms(&p.coordinate)))
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(n);
        out.into_iter().map(|(id, ms)| (id, millis(ms))).collect()
    }

    /// Sets the bytes every ack we send carries (empty: none), memberlist's `AckPayload`: members
    /// that probe us receive them as [`Event::PingComplete`]. Call it when they change; at most
    /// [`MAX_ACK_PAYLOAD`] bytes, else [`CommandError::TooLarge`].
    pub fn set_ack_payload(&mut self, payload: &[u8]) -> Result<(), CommandError> {
        if payload.len() > MAX_ACK_PAYLOAD {
            return Err(CommandError::TooLarge { size: payload.len(), max: MAX_ACK_PAYLOAD });
        }
        self.ack_payload = payload.to_vec();
        Ok(())
    }

    /// What follows our ack in the packet: our coordinate and the application's payload, if any.
    pub(super) fn ack_extras(&self) -> Vec<u8> {
        let mut w = Writer::default();
        if let Some(book) = &self.coordinates {
            Message::<A>::Coordinate { units: book.own.to_wire() }.encode(&mut w);
        }
        if !self.ack_payload.is_empty() {
            Message::<A>::AckPayload { payload: self.ack_payload.clone() }.encode(&mut w);
        }
        w.into_vec()
    }

    /// The ack of our direct probe of `target` arrived, `rtt` after the ping: a coordinate or
    /// payload that follows it in the packet is `target`'s.
    pub(super) fn expect_ack_extras(&mut self, target: NodeId, rtt: Duration) {
        self.frame.acked = Some((target, rtt));
    }

    /// A coordinate after an ack: updates the target's and moves ours.
    pub(super) fn handle_coordinate(&mut self, units: &[i64; DIMENSIONS + 2]) {
        let (Some((target, rtt)), Some(theirs)) = (self.frame.acked.clone(), Coordinate::from_wire(units)) else {
            self.stats.ack_extras_unmatched += 1;
            return;
        };
        let nudge: [f32; DIMENSIONS] = core::array::from_fn(|_| self.rng.random::<f32>() - 0.5);
        let Some(book) = &mut self.coordinates else { return };
        let peer = book.peers.entry(target).or_insert(Peer { coordinate: theirs, rtts: RttFilter::default() });
        peer.coordinate = theirs;
        let filtered = peer.rtts.push(rtt.as_micros() as f32 / 1_000.0);
        if book.own.update(&theirs, filtered, nudge) {
            self.stats.coordinate_updates += 1;
        } else {
            self.stats.coordinate_resets += 1;
        }
    }

    /// An application payload after an ack: reported with the round trip.
    pub(super) fn handle_ack_payload(&mut self, payload: Vec<u8>) {
        match self.frame.acked.clone() {
            Some((id, rtt)) => self.emit(Event::PingComplete { id, rtt, payload }),
            None => self.stats.ack_extras_unmatched += 1,
        }
    }

    /// Forgets the coordinates of members no longer in the table (at housekeeping).
    pub(super) fn forget_coordinates(&mut self) {
        if let Some(book) = &mut self.coordinates {
            let members = &self.members;
            book.peers.retain(|id, _| members.get(id).is_some());
        }
    }
}

fn millis(ms: f32) -> Duration {
    Duration::from_micros((ms.max(0.0) * 1_000.0) as u64)
}
