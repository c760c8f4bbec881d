//! A sans-IO model of the network between simulated nodes.
//!
//! Packets handed to [`Network::send`] come back out of [`Network::poll_delivery`] once the virtual
//! clock reaches their arrival time, or never: best-effort packets are lost with the configured
//! probability, and a partition drops everything that crosses group boundaries, reliable frames
//! included. Latency is a base delay plus uniform jitter, so datagrams may be reordered.
//!
//! Reliable frames model a TCP stream: they are never lost to random loss, but every loss the link
//! would have inflicted costs a retransmission timeout instead (200 ms, doubling), a frame takes
//! `bytes / reliable_bandwidth` to transfer, and frames between one pair of nodes arrive in the order
//! they were sent (a frame waits behind a slow one before it). They arrive with twice the base
//! latency (a handshake's worth). So reliable frames are late relative to datagrams, as on a real
//! network, which is what exposes assumptions that they are not.
//!
//! Links are symmetric by default; [`Network::set_link_between`] overrides one direction of one pair
//! (an asymmetric route, a congested uplink).
//!
//! The model has its own seeded RNG: the same seed and the same sends give the same deliveries.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::{Ordering, Reverse};
use core::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use shoal_core::node::TransmitKind;
use shoal_core::time::Instant;

/// Link properties applied to every packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra one-way delay drawn uniformly from `[0, jitter]` per packet.
    pub jitter: Duration,
    /// Probability that a best-effort packet is lost, 0.0 to 1.0.
    pub loss: f64,
}

impl LinkModel {
    /// A data-centre LAN at millisecond resolution: 1 ms latency plus up to 1 ms jitter, no loss.
    pub const LAN: LinkModel =
        LinkModel { latency: Duration::from_millis(1), jitter: Duration::from_millis(1), loss: 0.0 };
    /// A lossy LAN: as [`LinkModel::LAN`] with 5% loss.
    pub const LOSSY_LAN: LinkModel =
        LinkModel { latency: Duration::from_millis(1), jitter: Duration::from_millis(1), loss: 0.05 };
    /// Wide-area links: 40 ms with 20 ms jitter, 1% loss.
    pub const WAN: LinkModel =
        LinkModel { latency: Duration::from_millis(40), jitter: Duration::from_millis(20), loss: 0.01 };
}

/// A packet on its way.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Virtual time it arrives (for a held packet, the time it is handed over again).
    pub at: Instant,
    /// Address of the sender: a node index, or any address for a packet injected from outside.
    pub from: u32,
    /// Address of the receiver (a node index).
    pub to: u32,
    /// The packet or frame as the sender encoded it.
    pub bytes: Vec<u8>,
    /// True for a reliable frame (the TCP-like stream), false for a best-effort datagram.
    pub reliable: bool,
    /// What the packet is for, as the sender labelled it (for traffic figures and tracing).
    pub kind: TransmitKind,
    /// Already held back once by a slow receiver (see [`Network::hold`]).
    pub held: bool,
}

#[derive(Debug)]
struct Queued(Delivery, u64);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.0.at, self.1) == (other.0.at, other.1)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0.at, self.1).cmp(&(other.0.at, other.1))
    }
}

/// What happened to a packet handed to [`Network::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It will arrive at the given time.
    Arrives(Instant),
    /// Random loss.
    Lost,
    /// Dropped at a partition boundary.
    Partitioned,
}

/// First retransmission timeout of a reliable frame that the link would have lost (TCP's minimum).
const RELIABLE_RTO: Duration = Duration::from_millis(200);

/// Counters over the network's lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Packets and frames handed to [`Network::send`], whatever became of them.
    pub sent: u64,
    /// Bytes of the packets and frames counted in `sent`.
    pub bytes_sent: u64,
    /// Best-effort packets dropped by random loss (reliable frames are never lost, only delayed).
    pub lost: u64,
    /// Packets and frames dropped at a partition boundary, when sent or when they arrived.
    pub partitioned: u64,
    /// Packets and frames handed out by [`Network::poll_delivery`], whether or not the receiver was
    /// up. A packet put back with [`Network::hold`] counts each time it comes out.
    pub delivered: u64,
}

/// The simulated network.
#[derive(Debug)]
pub struct Network {
    link: LinkModel,
    rng: SmallRng,
    in_flight: BinaryHeap<Reverse<Queued>>,
    order: u64,
    /// Partition group of each node; packets between different groups are dropped. Empty: no partition.
    groups: Vec<u16>,
    /// Per-direction overrides of `link`, keyed `(from, to)`.
    overrides: hashbrown::HashMap<(u32, u32), LinkModel>,
    /// Arrival time of the last reliable frame per `(from, to)`: frames of one stream stay in order.
    stream_tail: hashbrown::HashMap<(u32, u32), Instant>,
    /// Bytes per second a reliable stream carries; 0 means unlimited.
    reliable_bandwidth: u64,
    stats: NetworkStats,
}

impl Network {
    /// A network where every pair of nodes sees `link`, with no partition, unlimited reliable
    /// bandwidth, and its own RNG seeded with `seed`. [`crate::Simulation::new`] builds one; call
    /// this to use the network model on its own.
    pub fn new(link: LinkModel, seed: u64) -> Self {
        Network {
            link,
            rng: SmallRng::seed_from_u64(seed),
            in_flight: BinaryHeap::new(),
            order: 0,
            groups: Vec::new(),
            overrides: hashbrown::HashMap::new(),
            stream_tail: hashbrown::HashMap::new(),
            reliable_bandwidth: 0,
            stats: NetworkStats::default(),
        }
    }

    /// Overrides the link model for packets from `from` to `to` only (`None` restores the default).
    pub fn set_link_between(&mut self, from: u32, to: u32, link: Option<LinkModel>) {
        match link {
            Some(l) => self.overrides.insert((from, to), l),
            None => self.overrides.remove(&(from, to)),
        };
    }

    /// Sets how many bytes per second a reliable stream carries (0: unlimited), so large frames take
    /// time to arrive.
    pub fn set_reliable_bandwidth(&mut self, bytes_per_sec: u64) {
        self.reliable_bandwidth = bytes_per_sec;
    }

    /// The link model packets from `from` to `to` see.
    pub fn link_between(&self, from: u32, to: u32) -> LinkModel {
        self.overrides.get(&(from, to)).copied().unwrap_or(self.link)
    }

    /// The default link model: what every pair without an override from
    /// [`Network::set_link_between`] sees.
    pub fn link(&self) -> LinkModel {
        self.link
    }

    /// Changes latency, jitter or loss for packets sent from now on.
    pub fn set_link(&mut self, link: LinkModel) {
        self.link = link;
    }

    /// Splits the nodes into groups (`group_of[i]` for node `i`); only packets within a group arrive.
    pub fn partition(&mut self, group_of: Vec<u16>) {
        self.groups = group_of;
    }

    /// Removes any partition.
    pub fn heal(&mut self) {
        self.groups.clear();
    }

    /// True when the current partition puts nodes `a` and `b` in different groups, so packets between
    /// them are dropped. A node beyond the end of the partition's group list is never cut off.
    pub fn is_partitioned(&self, a: u32, b: u32) -> bool {
        match (self.groups.get(a as usize), self.groups.get(b as usize)) {
            (Some(x), Some(y)) => x != y,
            _ => false,
        }
    }

    /// Hands a packet to the network at `now`.
    pub fn send(
        &mut self,
        now: Instant,
        from: u32,
        to: u32,
        bytes: Vec<u8>,
        reliable: bool,
        kind: TransmitKind,
    ) -> Fate {
        self.stats.sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        if self.is_partitioned(from, to) {
            self.stats.partitioned += 1;
            return Fate::Partitioned;
        }
        let link = self.link_between(from, to);
        if !reliable && link.loss > 0.0 && self.rng.random::<f64>() < link.loss {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        let base = if reliable { link.latency * 2 } else { link.latency };
        let jitter_ms = shoal_core::time::duration_millis(link.jitter);
        let extra = if jitter_ms > 0 { self.rng.random_range(0..=jitter_ms) } else { 0 };
        let mut at = now + base + Duration::from_millis(extra);
        if reliable {
            at = self.reliable_arrival(from, to, at, bytes.len(), link.loss);
        }
        self.order += 1;
        self.in_flight.push(Reverse(Queued(Delivery { at, from, to, bytes, reliable, kind, held: false }, self.order)));
        Fate::Arrives(at)
    }

    /// When a reliable frame that would arrive at `at` on a fast, lossless link really arrives: after
    /// its transfer time, one retransmission timeout per loss the link inflicts, and never before the
    /// previous frame of the same stream.
    fn reliable_arrival(&mut self, from: u32, to: u32, mut at: Instant, len: usize, loss: f64) -> Instant {
        if let Some(ms) = (len as u64 * 1_000).checked_div(self.reliable_bandwidth) {
            at += Duration::from_millis(ms);
        }
        let mut rto = RELIABLE_RTO;
        // Bounded: a link that loses everything still delivers after six timeouts (12.6 s).
        for _ in 0..6 {
            if loss <= 0.0 || self.rng.random::<f64>() >= loss {
                break;
            }
            at += rto;
            rto *= 2;
        }
        let tail = self.stream_tail.entry((from, to)).or_insert(Instant::ZERO);
        at = at.max(*tail);
        *tail = at;
        at
    }

    /// Arrival time of the next packet in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|q| q.0 .0.at)
    }

    /// The next packet that has arrived by `now`, if any. Packets crossing a partition that formed
    /// while they were in flight are dropped here.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Delivery> {
        loop {
            if self.in_flight.peek()?.0 .0.at > now {
                return None;
            }
            let Reverse(Queued(d, _)) = self.in_flight.pop()?;
            if self.is_partitioned(d.from, d.to) {
                self.stats.partitioned += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(d);
        }
    }

    /// Puts an arrived packet back to be delivered again at `at`, marked as held (a receiver that is
    /// slow to process its input).
    pub fn hold(&mut self, mut d: Delivery, at: Instant) {
        d.at = at;
        d.held = true;
        self.order += 1;
        self.in_flight.push(Reverse(Queued(d, self.order)));
    }

    /// Counters since the network was built.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    /// Packets currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_arrive_after_their_latency_in_time_order() {
        let link = LinkModel { latency: Duration::from_millis(10), jitter: Duration::ZERO, loss: 0.0 };
        let mut net = Network::new(link, 1);
        net.send(Instant::from_millis(5), 0, 1, alloc::vec![2], false, TransmitKind::Ping);
        net.send(Instant::ZERO, 0, 1, alloc::vec![1], false, TransmitKind::Ping);
        assert_eq!(net.next_arrival(), Some(Instant::from_millis(10)));
        assert!(net.poll_delivery(Instant::from_millis(9)).is_none());
        assert_eq!(net.poll_delivery(Instant::from_millis(20)).unwrap().bytes, [1]);
        assert_eq!(net.poll_delivery(Instant::from_millis(20)).unwrap().bytes, [2]);
    }

    #[test]
    fn loss_drops_about_the_configured_share_of_best_effort_packets_only() {
        let link = LinkModel { latency: Duration::from_millis(1), jitter: Duration::ZERO, loss: 0.2 };
        let mut net = Network::new(link, 9);
        let lost = (0..10_000)
            .filter(|_| net.send(Instant::ZERO, 0, 1, alloc::vec![], false, TransmitKind::Gossip) == Fate::Lost)
            .count();
        assert!((1_700..2_300).contains(&lost), "lost {lost}");
        let reliable_lost = (0..1_000)
            .filter(|_| net.send(Instant::ZERO, 0, 1, alloc::vec![], true, TransmitKind::PushPull) == Fate::Lost)
            .count();
        assert_eq!(reliable_lost, 0);
    }

    #[test]
    fn reliable_frames_of_one_stream_arrive_in_order_and_large_ones_take_time() {
        let link = LinkModel { latency: Duration::from_millis(5), jitter: Duration::from_millis(50), loss: 0.0 };
        let mut net = Network::new(link, 3);
        net.set_reliable_bandwidth(1_000_000);
        let big = net.send(Instant::ZERO, 0, 1, alloc::vec![0; 500_000], true, TransmitKind::Direct);
        assert!(matches!(big, Fate::Arrives(at) if at >= Instant::from_millis(510)), "{big:?}");
        let mut last = Instant::ZERO;
        for k in 0..50u8 {
            let Fate::Arrives(at) = net.send(Instant::ZERO, 0, 1, alloc::vec![k], true, TransmitKind::Direct) else {
                panic!("reliable frames are not lost");
            };
            assert!(at >= last, "frame {k} overtook the one before it");
            last = at;
        }
        let mut order = alloc::vec::Vec::new();
        while let Some(d) = net.poll_delivery(Instant::from_millis(60_000)) {
            order.push(d.bytes.len());
        }
        assert_eq!(order[0], 500_000, "the big frame was sent first and arrives first");
    }

    #[test]
    fn one_direction_of_a_link_can_be_worse_than_the_other() {
        let mut net = Network::new(LinkModel::LAN, 5);
        net.set_link_between(0, 1, Some(LinkModel { loss: 1.0, ..LinkModel::LAN }));
        assert_eq!(net.send(Instant::ZERO, 0, 1, alloc::vec![], false, TransmitKind::Ping), Fate::Lost);
        assert!(matches!(net.send(Instant::ZERO, 1, 0, alloc::vec![], false, TransmitKind::Ping), Fate::Arrives(_)));
        net.set_link_between(0, 1, None);
        assert!(matches!(net.send(Instant::ZERO, 0, 1, alloc::vec![], false, TransmitKind::Ping), Fate::Arrives(_)));
    }

    #[test]
    fn a_partition_drops_traffic_between_groups_until_healed() {
        let mut net = Network::new(LinkModel::LAN, 1);
        net.partition(alloc::vec![0, 0, 1]);
        assert_eq!(net.send(Instant::ZERO, 0, 2, alloc::vec![], true, TransmitKind::PushPull), Fate::Partitioned);
        assert!(matches!(net.send(Instant::ZERO, 0, 1, alloc::vec![], false, TransmitKind::Ping), Fate::Arrives(_)));
        net.heal();
        assert!(matches!(net.send(Instant::ZERO, 0, 2, alloc::vec![], false, TransmitKind::Ping), Fate::Arrives(_)));
    }
}
