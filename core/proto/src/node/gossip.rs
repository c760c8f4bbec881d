//! Outgoing packets and dissemination: every packet carries queued updates in its spare room,
//! dedicated gossip rounds push them to a few random members, and user broadcasts and direct
//! messages travel the same way.
//!
//! Membership updates take precedence over user broadcasts when a packet has room for only some:
//! failure detection must not starve behind application traffic.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::broadcast::Verdict;
use crate::dissemination::UpdateKey;
use crate::event::{BroadcastId, Event, MessageKind};
use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::time::{duration_millis, Instant};
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
    /// fill the remaining room up to `max_packet_size` (`relayed_packet_size` between two relayed
    /// members). Nothing is sent if the packet would be empty.
    pub(super) fn send_packet(&mut self, to: A, kind: TransmitKind, primary: impl FnOnce(&mut Writer)) {
        let max = self.packet_budget_to(&to);
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
        self.stats.packets_sent_by_kind[kind.index()] += 1;
        self.stats.bytes_sent_by_kind[kind.index()] += bytes.len() as u64;
        if reliable {
            self.stats.reliable_sent += 1;
        }
        self.outbox.push_back(Transmit { to, bytes, reliable, kind });
    }

    pub(super) fn on_gossip_tick(&mut self, now: Instant) {
        self.timers.set(now + self.config.gossip_interval, Timer::Gossip);
        self.gossip_round(now, self.config.gossip_nodes, self.config.gossip_to_the_dead_time);
        self.settle_stranger_lives(now);
        self.pull_repairs(now);
    }

    /// Sends queued updates to `fanout` random members: live ones, and ones that died less than
    /// `dead_window` ago, so that they may still refute (SWIM's "gossip to the dead").
    pub(super) fn gossip_round(&mut self, now: Instant, fanout: usize, dead_window: Duration) {
        if self.membership_updates.is_empty() && self.user_broadcasts.is_empty() {
            return;
        }
        for to in self.gossip_targets(now, fanout, dead_window) {
            self.send_packet(to, TransmitKind::Gossip, |_| {});
        }
    }

    /// Up to `fanout` random members to gossip to: live ones, and ones that died less than
    /// `dead_window` ago.
    pub(super) fn gossip_targets(&mut self, now: Instant, fanout: usize, dead_window: Duration) -> Vec<A> {
        self.members
            .random_members(fanout, &mut self.rng, |m| {
                m.state.is_live()
                    || (m.state == MemberState::Dead && now.saturating_duration_since(m.state_since) < dead_window)
            })
            .into_iter()
            .map(|m| m.addr.clone())
            .collect()
    }

    pub(super) fn start_broadcast(
        &mut self,
        topic: &str,
        payload: &[u8],
        key: Option<&[u8]>,
        ttl: Option<Duration>,
    ) -> Result<BroadcastId, CommandError> {
        Self::topic_ok(topic)?;
        let keyed = key.is_some();
        // Only keyed values expire; at least a millisecond, at most what the wire holds.
        let ttl_ms = ttl.filter(|_| keyed).map(|t| u32::try_from(duration_millis(t)).unwrap_or(u32::MAX).max(1));
        let seq = if keyed { self.keyed_seq } else { self.broadcast_seq };
        let b = UserBroadcast {
            origin: self.local.id.clone(),
            epoch: self.broadcast_epoch,
            seq,
            topic: String::from(topic),
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            ttl_ms: None,
        };
        // Encoded once: the log keeps the value without its time to live (what is left of it goes
        // with it when the log hands it out); the queue spreads it with the whole of it.
        let plain = Message::<A>::Broadcast(b).to_bytes();
        let bytes = ttl_ms.map_or_else(|| plain.clone(), |ms| crate::wire::with_ttl(&plain, ms));
        let max = self.packet_budget() - 1;
        if bytes.len() > max {
            return Err(CommandError::TooLarge { size: bytes.len(), max });
        }
        let id = BroadcastId { epoch: self.broadcast_epoch, seq, keyed };
        if keyed {
            self.keyed_seq += 1;
        } else {
            self.broadcast_seq += 1;
        }
        // We never deliver our own broadcast, including echoes of it; we keep it to repair others.
        let (origin, epoch, now) = (self.local.id.clone(), self.broadcast_epoch, self.now);
        let name = key.map(|k| (topic, k));
        match name {
            Some(name) => self.ledger.accept_keyed(&origin, epoch, seq, name, now),
            None => self.ledger.accept(&origin, epoch, seq, true, now),
        };
        let expires = ttl_ms.map(|ms| now + Duration::from_millis(u64::from(ms)));
        self.log.add(&origin, epoch, seq, name, plain, now, expires);
        if let Some(at) = expires {
            self.schedule_state_expiry(at);
        }
        let queue_key = key.map(|k| UpdateKey::Keyed { origin, topic: String::from(topic), key: k.to_vec() });
        let own = Some((id, String::from(topic)));
        self.user_broadcasts.push_own(queue_key, seq, bytes, own);
        self.report_own_drops();
        Ok(id)
    }

    /// Reports our own broadcasts that our full queue dropped before sending them their full
    /// number of times.
    pub(super) fn report_own_drops(&mut self) {
        for (id, topic) in self.user_broadcasts.take_dropped_own() {
            self.stats.own_broadcasts_dropped += 1;
            self.emit(Event::BroadcastDropped { id, topic });
        }
    }

    /// A broadcast arrived, by gossip or in a push-pull repair.
    pub(super) fn handle_broadcast(&mut self, b: UserBroadcast, now: Instant) {
        if b.origin == self.local.id {
            // Ours: an echo of this life's, or one of a life before a restart. Never delivered.
            return;
        }
        let baseline = self.join.baseline;
        let verdict = match &b.key {
            Some(key) => self.ledger.accept_keyed(&b.origin, b.epoch, b.seq, (&b.topic, key), now),
            None => self.ledger.accept(&b.origin, b.epoch, b.seq, baseline, now),
        };
        match verdict {
            Verdict::Deliver => {}
            Verdict::Invalid => {
                self.stats.broadcasts_rejected += 1;
                return;
            }
            Verdict::Duplicate | Verdict::BeforeOurTime | Verdict::Superseded => return,
        }
        self.stats.broadcasts_delivered += 1;
        self.frame.delivered += 1;
        let queue_key = b.key.as_ref().map(|k| UpdateKey::Keyed {
            origin: b.origin.clone(),
            topic: b.topic.clone(),
            key: k.clone(),
        });
        let (from, topic, payload, seq, epoch) = (b.origin.clone(), b.topic.clone(), b.payload.clone(), b.seq, b.epoch);
        let key = b.key.clone();
        // A value with a time to live expires that long after it reached us (gossip takes a few
        // protocol periods, by which a late member's copy outlives the origin's).
        let ttl_ms = b.ttl_ms;
        let expires = ttl_ms.map(|ms| now + Duration::from_millis(u64::from(ms)));
        // Re-encoding (once, without the time to live, which the log adds back as it hands the
        // value out) yields the same bytes the origin sent; keep spreading them, and keep them.
        let kept = Message::<A>::Broadcast(UserBroadcast { ttl_ms: None, ..b }).to_bytes();
        let bytes = ttl_ms.map_or_else(|| kept.clone(), |ms| crate::wire::with_ttl(&kept, ms));
        self.log.add(&from, epoch, seq, key.as_deref().map(|k| (topic.as_str(), k)), kept, now, expires);
        if let Some(at) = expires {
            self.schedule_state_expiry(at);
        }
        self.user_broadcasts.push(queue_key, seq, bytes);
        self.report_own_drops();
        self.emit(Event::Message { from, topic, payload, kind: MessageKind::Broadcast });
    }

    /// Sends a best-effort direct message (reliable ones go through the `reliable` module).
    pub(super) fn send_direct(&mut self, to: A, topic: &str, payload: &[u8]) -> Result<(), CommandError> {
        Self::topic_ok(topic)?;
        let msg =
            Message::<A>::Direct { from: self.local.id.clone(), topic: String::from(topic), payload: payload.to_vec() };
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
