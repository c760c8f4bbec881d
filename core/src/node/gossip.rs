//! Outgoing packets and dissemination: every packet carries queued updates in its spare room,
//! dedicated gossip rounds push them to a few random members, and user broadcasts and direct
//! messages travel the same way.
//!
//! Membership updates take precedence over user broadcasts when a packet has room for only some:
//! failure detection must not starve behind application traffic.

use alloc::string::String;
use alloc::vec::Vec;

use crate::dissemination::UpdateKey;
use crate::event::{BroadcastId, Event, MessageKind};
use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::time::Instant;
use crate::wire::{begin_packet, Message, UserBroadcast, Writer, PROTOCOL_VERSION};

use super::timers::Timer;
use super::{CommandError, Node, Transmit, TransmitKind};

impl<A: Address> Node<A> {
    /// How many times each update is sent at the current cluster size (see
    /// [`crate::Config::retransmit_limit`]). Call when filling a packet: the size changes over time.
    pub(super) fn retransmit_limit(&self) -> u32 {
        self.config.retransmit_limit(self.cluster_size())
    }

    /// Builds a best-effort packet: `primary` writes the packet's own message(s), then queued updates
    /// fill the remaining room up to `max_packet_size`. Nothing is sent if the packet would be empty.
    pub(super) fn send_packet(&mut self, to: A, kind: TransmitKind, primary: impl FnOnce(&mut Writer)) {
        let max = self.packet_budget();
        let mut w = Writer::with_capacity(max.min(1_500));
        begin_packet(&mut w, PROTOCOL_VERSION);
        primary(&mut w);
        if w.len() > max {
            // Only a direct message can be this large, and `send_direct` checks sizes first.
            debug_assert!(false, "primary message exceeds the packet size");
            return;
        }
        let limit = self.retransmit_limit();
        self.membership_updates.fill(&mut w, max, limit);
        self.user_broadcasts.fill(&mut w, max, limit);
        if w.len() <= 1 {
            return;
        }
        self.push_transmit(to, w.into_vec(), false, kind);
    }

    pub(super) fn push_transmit(&mut self, to: A, bytes: Vec<u8>, reliable: bool, kind: TransmitKind) {
        let Some(bytes) = self.security.seal(bytes, reliable) else { return };
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        if reliable {
            self.stats.reliable_sent += 1;
        }
        self.outbox.push_back(Transmit { to, bytes, reliable, kind });
    }

    pub(super) fn on_gossip_tick(&mut self, now: Instant) {
        self.timers.set(now + self.config.gossip_interval, Timer::Gossip);
        self.gossip_round(now, self.config.gossip_nodes);
    }

    /// Sends queued updates to `fanout` random members: live ones, and ones that died recently enough
    /// that they may still refute (SWIM's "gossip to the dead").
    pub(super) fn gossip_round(&mut self, now: Instant, fanout: usize) {
        if self.membership_updates.is_empty() && self.user_broadcasts.is_empty() {
            return;
        }
        let dead_window = self.config.gossip_to_the_dead_time;
        let targets: Vec<A> = self
            .members
            .random_members(fanout, &mut self.rng, |m| {
                m.state.is_live()
                    || (m.state == MemberState::Dead && now.saturating_duration_since(m.state_since) < dead_window)
            })
            .into_iter()
            .map(|m| m.addr.clone())
            .collect();
        for to in targets {
            self.send_packet(to, TransmitKind::Gossip, |_| {});
        }
    }

    pub(super) fn start_broadcast(
        &mut self,
        topic: &str,
        payload: &[u8],
        key: Option<&[u8]>,
    ) -> Result<BroadcastId, CommandError> {
        Self::topic_ok(topic)?;
        let seq = self.broadcast_seq;
        let b = UserBroadcast {
            origin: self.local.id.clone(),
            epoch: self.broadcast_epoch,
            seq,
            topic: String::from(topic),
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
        };
        let bytes = Message::<A>::Broadcast(b).to_bytes();
        let max = self.packet_budget() - 1;
        if bytes.len() > max {
            return Err(CommandError::TooLarge { size: bytes.len(), max });
        }
        self.broadcast_seq += 1;
        // We never deliver our own broadcast, including echoes of it.
        self.dedupe.first_time(&self.local.id, self.broadcast_epoch, seq);
        let queue_key = key.map(|k| UpdateKey::Keyed {
            origin: self.local.id.clone(),
            topic: String::from(topic),
            key: k.to_vec(),
        });
        self.user_broadcasts.push(queue_key, seq, bytes);
        Ok(BroadcastId { epoch: self.broadcast_epoch, seq, keyed: key.is_some() })
    }

    pub(super) fn handle_broadcast(&mut self, b: UserBroadcast) {
        if !self.dedupe.first_time(&b.origin, b.epoch, b.seq) {
            return;
        }
        if let Some(key) = &b.key {
            let name = (b.origin.clone(), b.topic.clone(), key.clone());
            if !self.dedupe.newest_for_key(name, b.epoch, b.seq) {
                return; // a newer value under this key was delivered already
            }
        }
        self.stats.broadcasts_delivered += 1;
        let queue_key = b.key.as_ref().map(|k| UpdateKey::Keyed {
            origin: b.origin.clone(),
            topic: b.topic.clone(),
            key: k.clone(),
        });
        let (from, topic, payload, seq) = (b.origin.clone(), b.topic.clone(), b.payload.clone(), b.seq);
        // Re-encoding yields the same bytes the origin sent; keep spreading them.
        self.user_broadcasts.push(queue_key, seq, Message::<A>::Broadcast(b).to_bytes());
        self.emit(Event::Message { from, topic, payload, kind: MessageKind::Broadcast });
    }

    pub(super) fn send_direct(
        &mut self,
        to: A,
        topic: &str,
        payload: &[u8],
        reliable: bool,
    ) -> Result<(), CommandError> {
        Self::topic_ok(topic)?;
        let msg =
            Message::<A>::Direct { from: self.local.id.clone(), topic: String::from(topic), payload: payload.to_vec() };
        if reliable {
            let mut w = Writer::with_capacity(payload.len() + 64);
            begin_packet(&mut w, PROTOCOL_VERSION);
            msg.encode(&mut w);
            let max = self.config.max_reliable_size;
            if w.len() > max {
                return Err(CommandError::TooLarge { size: w.len(), max });
            }
            self.push_transmit(to, w.into_vec(), true, TransmitKind::Direct);
            return Ok(());
        }
        let bytes = msg.to_bytes();
        let max = self.packet_budget() - 1;
        if bytes.len() > max {
            return Err(CommandError::TooLarge { size: bytes.len(), max });
        }
        self.send_packet(to, TransmitKind::Direct, |w| w.raw(&bytes));
        Ok(())
    }

    pub(super) fn handle_direct(&mut self, from: NodeId, topic: String, payload: Vec<u8>) {
        self.stats.direct_delivered += 1;
        self.emit(Event::Message { from, topic, payload, kind: MessageKind::Direct });
    }
}
