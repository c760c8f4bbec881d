//! What a simulation run measured, against the ground truth only the simulator knows.
//!
//! - **Detection**: for every crash, when the first member suspected the crashed node, when the first
//!   declared it failed, and when every member that is up had declared or learned its failure.
//! - **False positives**: `Failed` events about a node that was in fact up (counted per observer).
//! - **Traffic**: packets and bytes sent, by kind, for per-member-per-second figures.
//! - **Broadcasts**: when each tracked broadcast reached every node that was up.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use shoal_core::event::{Event, MessageKind};
use shoal_core::node::TransmitKind;
use shoal_core::time::Instant;

/// A member counts as healthy again this long after its last stall ended.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Detection of one crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// Index of the crashed node.
    pub target: usize,
    /// Virtual time of the crash.
    pub crashed_at: Instant,
    /// Crash to the first `Suspected` event anywhere.
    pub first_suspicion: Option<Duration>,
    /// Crash to the first `Failed` event anywhere.
    pub first_failure: Option<Duration>,
    /// Crash until every node that was up had the target failed.
    pub all_failed: Option<Duration>,
    observers: Vec<bool>,
    count: usize,
}

/// One tracked broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastTrack {
    /// Topic it was sent on.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Virtual time it was sent.
    pub sent_at: Instant,
    /// Nodes that received it so far, each counted once. The sender never receives its own, and
    /// only the nodes the world was built with count.
    pub delivered: usize,
    /// When the last node that was up received it.
    pub all_delivered: Option<Duration>,
    receivers: Vec<bool>,
}

/// Counters and timelines for one simulation run.
#[derive(Clone, Debug)]
pub struct Recorder {
    n: usize,
    up: Vec<bool>,
    left: Vec<bool>,
    detections: Vec<Detection>,
    open: Vec<Option<usize>>,
    false_positives: u64,
    false_positives_of_healthy: u64,
    stalled_until: Vec<Instant>,
    suspicions_of_live: u64,
    packets_by_kind: [u64; 7],
    bytes_by_kind: [u64; 7],
    bytes_sent: u64,
    packets_sent: u64,
    broadcasts: Vec<BroadcastTrack>,
}

/// Every transmit kind, in the order of [`Recorder::packets_by_kind`].
pub const KINDS: [TransmitKind; 7] = TransmitKind::ALL;

impl Recorder {
    /// A recorder for `n` nodes, every node counted down and every figure at zero.
    /// [`crate::Simulation::new`] builds the one it feeds; only the simulator can feed a recorder, so
    /// one made here stays empty.
    pub fn new(n: usize) -> Self {
        Recorder {
            n,
            up: vec![false; n],
            left: vec![false; n],
            detections: Vec::new(),
            open: vec![None; n],
            false_positives: 0,
            false_positives_of_healthy: 0,
            stalled_until: vec![Instant::ZERO; n],
            suspicions_of_live: 0,
            packets_by_kind: [0; 7],
            bytes_by_kind: [0; 7],
            bytes_sent: 0,
            packets_sent: 0,
            broadcasts: Vec::new(),
        }
    }

    fn up_count_except(&self, target: usize) -> usize {
        self.up.iter().enumerate().filter(|&(i, &u)| u && i != target).count()
    }

    pub(crate) fn on_up(&mut self, i: usize) {
        self.up[i] = true;
        self.left[i] = false;
        self.open[i] = None;
    }

    pub(crate) fn on_crash(&mut self, now: Instant, i: usize) {
        self.up[i] = false;
        self.detections.push(Detection {
            target: i,
            crashed_at: now,
            first_suspicion: None,
            first_failure: None,
            all_failed: None,
            observers: vec![false; self.n],
            count: 0,
        });
        self.open[i] = Some(self.detections.len() - 1);
        // Nodes that were waiting for this one to hear a broadcast no longer count.
        for b in &mut self.broadcasts {
            if b.all_delivered.is_none() && !b.receivers[i] {
                Self::check_broadcast_complete(b, &self.up, now);
            }
        }
    }

    pub(crate) fn on_stall(&mut self, i: usize, until: Instant) {
        self.stalled_until[i] = self.stalled_until[i].max(until);
    }

    pub(crate) fn on_leave(&mut self, _now: Instant, i: usize) {
        self.left[i] = true;
    }

    pub(crate) fn on_broadcast(&mut self, now: Instant, topic: &str, payload: &[u8]) {
        self.broadcasts.push(BroadcastTrack {
            topic: String::from(topic),
            payload: payload.to_vec(),
            sent_at: now,
            delivered: 0,
            all_delivered: None,
            receivers: vec![false; self.n],
        });
    }

    pub(crate) fn on_transmit(&mut self, _from: usize, bytes: u32, kind: TransmitKind) {
        self.packets_sent += 1;
        self.bytes_sent += u64::from(bytes);
        self.packets_by_kind[kind.index()] += 1;
        self.bytes_by_kind[kind.index()] += u64::from(bytes);
    }

    pub(crate) fn on_event(&mut self, now: Instant, observer: usize, event: Event<u32>) {
        match event {
            Event::Suspected { id, .. } => {
                let Some(target) = parse_index(id.as_str(), self.n) else { return };
                match self.open[target] {
                    Some(d) => {
                        let det = &mut self.detections[d];
                        det.first_suspicion.get_or_insert(now.saturating_duration_since(det.crashed_at));
                    }
                    None if self.up[target] => self.suspicions_of_live += 1,
                    None => {}
                }
            }
            Event::Failed { id, .. } => {
                let Some(target) = parse_index(id.as_str(), self.n) else { return };
                match self.open[target] {
                    Some(d) => {
                        let needed = self.up_count_except(target);
                        let det = &mut self.detections[d];
                        det.first_failure.get_or_insert(now.saturating_duration_since(det.crashed_at));
                        if !det.observers[observer] {
                            det.observers[observer] = true;
                            det.count += 1;
                        }
                        if det.all_failed.is_none() && det.count >= needed {
                            det.all_failed = Some(now.saturating_duration_since(det.crashed_at));
                        }
                    }
                    None if self.up[target] && !self.left[target] => {
                        self.false_positives += 1;
                        if self.stalled_until[target] == Instant::ZERO
                            || now.saturating_duration_since(self.stalled_until[target]) > HEALTHY_AFTER
                        {
                            self.false_positives_of_healthy += 1;
                        }
                    }
                    None => {}
                }
            }
            Event::Message { topic, payload, kind: MessageKind::Broadcast, .. } => {
                let up = &self.up;
                if let Some(b) = self.broadcasts.iter_mut().find(|b| b.topic == topic && b.payload == payload) {
                    if !b.receivers[observer] {
                        b.receivers[observer] = true;
                        b.delivered += 1;
                        Self::check_broadcast_complete(b, up, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_broadcast_complete(b: &mut BroadcastTrack, up: &[bool], now: Instant) {
        if b.all_delivered.is_some() {
            return;
        }
        // The sender is the one up node that never receives its own broadcast.
        let missing = up.iter().zip(&b.receivers).filter(|&(&u, &r)| u && !r).count();
        if missing <= 1 {
            b.all_delivered = Some(now.saturating_duration_since(b.sent_at));
        }
    }

    /// Every crash and how it was detected, in crash order.
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }

    /// `Failed` events about nodes that were up.
    pub fn false_positives(&self) -> u64 {
        self.false_positives
    }

    /// False positives about members that had not been stalled for at least 10 s before (the
    /// Lifeguard paper's "healthy members"): accusations a slow node's own slowness cannot explain.
    pub fn false_positives_of_healthy(&self) -> u64 {
        self.false_positives_of_healthy
    }

    /// `Suspected` events about nodes that were up (each is refuted unless it becomes a false positive).
    pub fn suspicions_of_live(&self) -> u64 {
        self.suspicions_of_live
    }

    /// Packets and frames all nodes handed to the network, including those then lost or dropped at
    /// a partition, and those of nodes added with [`crate::Simulation::add_node`]. Packets injected
    /// with [`crate::Simulation::inject`] are not counted.
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Bytes of the packets and frames counted by [`Recorder::packets_sent`].
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Packets sent per kind, in the order of [`KINDS`].
    pub fn packets_by_kind(&self) -> [u64; 7] {
        self.packets_by_kind
    }

    /// Bytes sent per kind, in the order of [`KINDS`].
    pub fn bytes_by_kind(&self) -> [u64; 7] {
        self.bytes_by_kind
    }

    /// Every broadcast sent with [`crate::Simulation::broadcast`], in the order sent, with how far it
    /// spread.
    pub fn broadcasts(&self) -> &[BroadcastTrack] {
        &self.broadcasts
    }

    /// True when node `i` started a graceful leave in its current life. Only for the nodes the world
    /// was built with (panics beyond them); [`crate::Simulation::has_left`] covers every node.
    pub fn has_left(&self, i: usize) -> bool {
        self.left[i]
    }
}

/// `n{i}` back to `i`.
fn parse_index(name: &str, n: usize) -> Option<usize> {
    let i: usize = name.strip_prefix('n')?.parse().ok()?;
    (i < n).then_some(i)
}
