//! Reliable direct messages: acknowledged end to end, retried, delivered at most once, and reported
//! when lost.
//!
//! A reliable transport (a TCP stream, a reliable data channel) can still lose a frame: the
//! connection breaks, the peer restarts, a driver's backlog overflows, a partition outlasts the
//! stream. So the sender keeps each reliable message until the receiver acknowledges it, sends it
//! again every `reliable_timeout` up to `reliable_attempts` times, and then reports
//! [`Event::SendFailed`] with the id [`Node::send_reliable`] returned. The receiver delivers each
//! `(sender, life, id)` once, acknowledges every copy (so the sender stops), and remembers the last
//! 1,024 ids per sender (the width of a replay window); a copy older than that is neither delivered
//! nor acknowledged, so the sender reports it failed rather than believing it delivered.
//! Acknowledgements are counted only from the address the message went to, and the copies a frame
//! carries are acknowledged together, in as few frames as fit.
//!
//! A sender's record is needed only while the sender may still send a copy. Housekeeping forgets a
//! record once its sender is no longer a member (reaped) and has been quiet for the retry horizon or
//! the reap time, whichever is longer; what is kept of it (24 bytes: the name hashed, the life, one
//! past the highest id) makes a copy that still arrives (its sender retries on a longer schedule
//! than ours, or came back) too old: refused, never delivered again. Records are bounded (4,096);
//! when all are still needed (a flood of made-up sender names), a message from a new sender is
//! refused, neither delivered nor acknowledged, rather than a record being forgotten early and a
//! message delivered twice.
//!
//! What waits for an acknowledgement is bounded (count and bytes); past the bound the oldest
//! message is reported failed at once instead of growing memory behind a dead peer.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::event::{Event, MessageKind};
use crate::identity::{Address, NodeId};
use crate::time::Instant;
use crate::window::{self, SeqWindow};
use crate::wire::{begin_packet, Message, Writer, PROTOCOL_VERSION};

use super::timers::Timer;
use super::{CommandError, Node, TransmitKind};

/// Ids remembered per sender for de-duplication.
#[cfg(test)]
pub(crate) const REMEMBERED_IDS: usize = crate::window::WINDOW as usize;
/// Senders remembered.
const MAX_SENDERS: usize = 4_096;
/// Messages waiting for an acknowledgement.
const MAX_PENDING: usize = 4_096;

#[derive(Debug)]
pub(crate) struct Outgoing<A> {
    id: u64,
    to: A,
    topic: String,
    /// The plaintext frame, sealed anew for each attempt.
    frame: Vec<u8>,
    attempt: u32,
}

/// Ids of one sender's life seen lately: delivered once, older ones refused.
#[derive(Debug)]
struct Seen {
    epoch: u32,
    ids: SeqWindow,
    /// Ids below this are refused as too old: the record was forgotten once, and brought back.
    floor: u64,
    /// When the sender's last message arrived: the record is needed until its retries are over.
    last: Instant,
}

impl Seen {
    fn new(epoch: u32, now: Instant) -> Self {
        Seen { epoch, ids: SeqWindow::starting_at(0), floor: 0, last: now }
    }
}

/// What is kept of a forgotten sender's record: its name hashed, its life, and one past the
/// highest id it had sent us. A copy that arrives after the record was forgotten is refused as
/// too old, never delivered again.
#[derive(Debug, Clone, Copy)]
struct ForgottenSender {
    name: u64,
    epoch: u32,
    floor: u64,
}

/// Forgotten senders remembered (24 bytes each); past this the longest forgotten goes.
const MAX_FORGOTTEN_SENDERS: usize = 4_096;

/// Both directions of reliable messaging for one node.
#[derive(Debug)]
pub(crate) struct Reliable<A> {
    next_id: u64,
    /// Ordered by id (ids only grow).
    pending: VecDeque<Outgoing<A>>,
    pending_bytes: usize,
    /// Per sender (a vector: searched once per reliable message).
    seen: Vec<(NodeId, Seen)>,
    /// Senders whose records were forgotten, oldest first.
    forgotten: Vec<ForgottenSender>,
    /// Acknowledgements owed for the frame being read: `(epoch, id)`, all to the frame's sender.
    acks_owed: Vec<(u32, u64)>,
}

impl<A> Reliable<A> {
    pub fn new() -> Self {
        Reliable {
            next_id: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            seen: Vec::new(),
            forgotten: Vec::new(),
            acks_owed: Vec::new(),
        }
    }

    /// Messages waiting for their acknowledgement.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// True while message `id` waits for the acknowledgement of attempt `attempt`.
    pub fn waits_for(&self, id: u64, attempt: u32) -> bool {
        self.position(id).is_some_and(|i| self.pending[i].attempt == attempt)
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.pending.binary_search_by_key(&id, |o| o.id).ok()
    }

    /// Senders remembered for de-duplication.
    pub fn senders(&self) -> usize {
        self.seen.len()
    }

    /// Keeps where `sender`'s record stood as it is forgotten.
    fn forget(&mut self, sender: &NodeId, seen: &Seen) {
        if self.forgotten.len() >= MAX_FORGOTTEN_SENDERS {
            self.forgotten.remove(0);
        }
        let floor = seen.ids.highest().saturating_add(1).max(seen.floor);
        self.forgotten.push(ForgottenSender {
            name: crate::broadcast::Fingerprint::of_name(sender),
            epoch: seen.epoch,
            floor,
        });
    }

    /// A new record for `sender`: where its forgotten one stood, if it was forgotten.
    fn record_for(&mut self, sender: &NodeId, epoch: u32, now: Instant) -> Seen {
        let mut seen = Seen::new(epoch, now);
        let name = crate::broadcast::Fingerprint::of_name(sender);
        if let Some(i) = self.forgotten.iter().rposition(|f| f.name == name) {
            let f = self.forgotten.remove(i);
            if f.epoch == epoch {
                seen.floor = f.floor;
            }
        }
        seen
    }
}

impl<A: Address> Node<A> {
    /// Sends a reliable message to `to` and tracks it until acknowledged. Returns its id.
    pub(super) fn send_reliable_to(
        &mut self,
        to: A,
        topic: &str,
        payload: &[u8],
        now: Instant,
    ) -> Result<u64, CommandError> {
        Self::topic_ok(topic)?;
        let id = self.reliable.next_id + 1;
        let msg = Message::<A>::Reliable {
            from: self.local.id.clone(),
            epoch: self.broadcast_epoch,
            id,
            topic: String::from(topic),
            payload: payload.to_vec(),
        };
        let mut w = Writer::with_capacity(payload.len() + 64);
        begin_packet(&mut w, PROTOCOL_VERSION);
        msg.encode(&mut w);
        let max = self.config.max_reliable_size;
        if w.len() > max {
            return Err(CommandError::TooLarge { size: w.len(), max });
        }
        self.reliable.next_id = id;
        let frame = w.into_vec();
        self.push_transmit(to.clone(), frame.clone(), true, TransmitKind::Direct);
        self.reliable.pending_bytes += frame.len();
        self.reliable.pending.push_back(Outgoing { id, to, topic: String::from(topic), frame, attempt: 1 });
        self.timers.set(now + self.config.reliable_timeout, Timer::ReliableRetry { id, attempt: 1 });
        // Bounded: past the limits the oldest is given up now rather than memory growing.
        let byte_limit = 4 * self.config.max_reliable_size;
        while self.reliable.pending.len() > MAX_PENDING || self.reliable.pending_bytes > byte_limit {
            let Some(oldest) = self.reliable.pending.front().map(|o| o.id) else { break };
            if oldest == id {
                break;
            }
            self.give_up_reliable(oldest);
        }
        Ok(id)
    }

    fn give_up_reliable(&mut self, id: u64) {
        let out = self.reliable.position(id).and_then(|i| self.reliable.pending.remove(i));
        if let Some(out) = out {
            self.reliable.pending_bytes -= out.frame.len();
            self.stats.reliable_failed += 1;
            self.emit(Event::SendFailed { id, to: out.to, topic: out.topic });
        }
    }

    /// The acknowledgement of attempt `attempt` of message `id` is overdue: send again, or give up.
    pub(super) fn on_reliable_retry(&mut self, id: u64, attempt: u32, now: Instant) {
        let Some(i) = self.reliable.position(id) else { return };
        let out = &mut self.reliable.pending[i];
        if out.attempt != attempt {
            return;
        }
        if attempt >= self.config.reliable_attempts {
            self.give_up_reliable(id);
            return;
        }
        out.attempt += 1;
        let (to, frame) = (out.to.clone(), out.frame.clone());
        self.stats.reliable_retries += 1;
        self.push_transmit(to, frame, true, TransmitKind::Direct);
        self.timers.set(now + self.config.reliable_timeout, Timer::ReliableRetry { id, attempt: attempt + 1 });
    }

    /// How long a sender's de-duplication record is needed after its last message: until every
    /// copy it may still send has arrived.
    fn retry_horizon(&self) -> core::time::Duration {
        self.config.reliable_timeout * (self.config.reliable_attempts + 1)
    }

    /// Forgets the de-duplication records of senders that are no longer members (reaped: dead or
    /// gone for the reap time) and sent nothing for the retry horizon or the reap time, whichever
    /// is longer. Call from housekeeping:
    /// kept until the table filled, a record held memory for every member that ever sent one
    /// reliable message. A member's record stays, however quiet: a copy of its message may arrive
    /// late (behind a slow link or a stall here), and a record forgotten then would let it be
    /// delivered twice.
    pub(super) fn forget_spent_senders(&mut self, now: Instant) {
        // A sender we do not list may still be sending (we forgot it while it was cut off, and its
        // copies come through before its record does): a reap time of quiet, at least, first.
        let horizon = self.retry_horizon().max(self.config.dead_member_reap_time);
        let members = &self.members;
        let spent = |(sender, seen): &(NodeId, Seen)| {
            members.get(sender).is_none() && now.saturating_duration_since(seen.last) >= horizon
        };
        let mut i = self.reliable.seen.len();
        while i > 0 {
            i -= 1;
            if spent(&self.reliable.seen[i]) {
                let (sender, seen) = self.reliable.seen.swap_remove(i);
                self.reliable.forget(&sender, &seen);
            }
        }
    }

    /// The index of `sender`'s record, made if there is room; `None` when every record is still
    /// needed.
    fn seen_record(&mut self, sender: &NodeId, epoch: u32, now: Instant) -> Option<usize> {
        if let Some(i) = self.reliable.seen.iter().position(|(s, _)| s == sender) {
            return Some(i);
        }
        let fresh = self.reliable.record_for(sender, epoch, now);
        if self.reliable.seen.len() < MAX_SENDERS {
            self.reliable.seen.push((sender.clone(), fresh));
            return Some(self.reliable.seen.len() - 1);
        }
        // Full: reuse the record idle longest, if its sender can no longer send a copy.
        let horizon = self.retry_horizon();
        let (i, idle) = self.reliable.seen.iter().enumerate().min_by_key(|(_, (_, seen))| seen.last)?;
        if now.saturating_duration_since(idle.1.last) < horizon {
            return None;
        }
        let (old, seen) = core::mem::replace(&mut self.reliable.seen[i], (sender.clone(), fresh));
        self.reliable.forget(&old, &seen);
        Some(i)
    }

    /// A reliable message arrived: deliver it once, and owe its acknowledgement to the frame's
    /// sender (sent by [`Node::send_reliable_acks`] when the whole frame is read).
    pub(super) fn handle_reliable(
        &mut self,
        sender: NodeId,
        epoch: u32,
        id: u64,
        topic: String,
        payload: Vec<u8>,
        now: Instant,
    ) {
        let Some(at) = self.seen_record(&sender, epoch, now) else {
            self.stats.reliable_refused += 1;
            return;
        };
        let seen = &mut self.reliable.seen[at].1;
        if seen.epoch != epoch {
            *seen = Seen::new(epoch, now);
        }
        seen.last = now;
        let fresh = match if id < seen.floor { window::Seen::TooOld } else { seen.ids.classify(id) } {
            window::Seen::New => true,
            window::Seen::Before => false,
            window::Seen::TooOld => {
                // Too old to tell whether it was delivered: no delivery and no acknowledgement, so
                // the sender reports it failed instead of believing it arrived.
                self.stats.reliable_stale += 1;
                return;
            }
        };
        self.reliable.acks_owed.push((epoch, id));
        if fresh {
            self.stats.direct_delivered += 1;
            self.emit(Event::Message { from: sender, topic, payload, kind: MessageKind::Direct });
        } else {
            self.stats.reliable_duplicates += 1;
        }
    }

    /// Sends the acknowledgements a frame from `to` left owed, as many per frame as fit. Call once a
    /// whole frame is read.
    pub(super) fn send_reliable_acks(&mut self, to: &A) {
        if self.reliable.acks_owed.is_empty() {
            return;
        }
        let mut owed = core::mem::take(&mut self.reliable.acks_owed);
        let room = self.config.max_reliable_size;
        let mut w = Writer::with_capacity(64);
        begin_packet(&mut w, PROTOCOL_VERSION);
        let empty = w.len();
        for &(epoch, id) in &owed {
            let mut one = Writer::with_capacity(24);
            Message::<A>::ReliableAck { epoch, id }.encode(&mut one);
            if w.len() + one.len() > room && w.len() > empty {
                let full = core::mem::replace(&mut w, Writer::with_capacity(64));
                self.push_transmit(to.clone(), full.into_vec(), true, TransmitKind::Ack);
                begin_packet(&mut w, PROTOCOL_VERSION);
            }
            w.raw(one.as_slice());
        }
        self.push_transmit(to.clone(), w.into_vec(), true, TransmitKind::Ack);
        // Nothing adds to the list while it is sent: give its buffer back for the next frame.
        owed.clear();
        self.reliable.acks_owed = owed;
    }

    /// An acknowledgement arrived from `from`; it counts only if `from` is where the message went.
    pub(super) fn handle_reliable_ack(&mut self, from: &A, epoch: u32, id: u64) {
        if epoch != self.broadcast_epoch {
            return;
        }
        let Some(i) = self.reliable.position(id) else { return };
        if self.reliable.pending[i].to != *from {
            self.stats.reliable_acks_misdirected += 1;
            return;
        }
        if let Some(out) = self.reliable.pending.remove(i) {
            self.reliable.pending_bytes -= out.frame.len();
        }
    }
}
