//! Behaviour tests for [`Node`]: small clusters driven by a deterministic in-memory harness.
//!
//! The harness (`Cluster`) owns a handful of `Node<u32>` whose address is their index, a virtual
//! clock, and an in-memory network with per-link blocking, crashed (or paused) nodes and an optional
//! packet filter. Packets are delivered instantly; time only moves when `advance` steps to the next
//! timer deadline of some node. Every transmit is logged so tests can inspect what went on the wire.

use std::boxed::Box;
use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use core::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{CommandError, Node, PacketError, Transmit, TransmitKind};
use crate::config::{Config, Lifeguard};
use crate::event::{Event, MessageKind};
use crate::identity::NodeId;
use crate::member::{Member, MemberState};
use crate::time::Instant;
use crate::wire::{begin_packet, decode_packet, Alive, MemberRecord, Message, MetaField, Writer, PROTOCOL_VERSION};

mod admission;
mod app_state;
mod broadcasts;
mod coordinates;
mod findings;
#[cfg(feature = "relay")]
mod fleet_scale;
mod hostile;
mod keyed_state;
mod ledger_review;
mod link;
mod member_digest;
mod operations;
mod queries;
#[cfg(feature = "relay")]
mod relay_move;
mod reliable;

/// Bound on timer steps per `advance` call: a livelock fails the test instead of hanging it.
const MAX_STEPS: usize = 200_000;
/// Bound on delivery rounds per `deliver_all`: a packet storm fails the test.
const MAX_DELIVERY_ROUNDS: usize = 10_000;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// "a", "b", "c", ... for node indexes.
fn name_of(i: usize) -> String {
    assert!(i < 26, "the harness names at most 26 nodes");
    let c = char::from(b'a' + i as u8);
    format!("{c}")
}

fn seed_of(addr: u32, generation: u64) -> u64 {
    0x5eed_0000 ^ (u64::from(addr) * 7_919) ^ (generation << 32)
}

fn decode(bytes: &[u8]) -> Vec<Message<u32>> {
    let mut out = Vec::new();
    decode_packet(bytes, &mut out).expect("the protocol only sends decodable packets");
    out
}

/// One transmit as it went on the wire (whether or not the network delivered it).
#[derive(Clone, Debug)]
struct Sent {
    from: u32,
    to: u32,
    reliable: bool,
    kind: TransmitKind,
    bytes: Vec<u8>,
    /// How many events the sender had emitted when the transmit left it (events produced by the
    /// same input included): `events(from)[..sender_events]` is what it knew when it sent.
    sender_events: usize,
}

type DropRule = Box<dyn Fn(u32, &Transmit<u32>) -> bool>;
/// Rewrites the bytes a node receives, as a receiver's decoder sees them: `(from, to, bytes)`.
type Rewrite = Box<dyn Fn(u32, u32, &[u8]) -> Vec<u8>>;

struct Cluster {
    now: Instant,
    nodes: Vec<Node<u32>>,
    events: Vec<Vec<Event<u32>>>,
    /// Directed links `(from, to)` that drop every packet.
    blocked: HashSet<(u32, u32)>,
    /// Crashed (or paused) nodes: they run no timers and receive nothing.
    down: HashSet<u32>,
    /// Drops any transmit for which it returns true.
    drop_rule: Option<DropRule>,
    /// Applied to every delivered packet, after the drop rule.
    rewrite: Option<Rewrite>,
    in_flight: VecDeque<(u32, Transmit<u32>, usize)>,
    log: Vec<Sent>,
    generation: u64,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            now: Instant::from_millis(0),
            nodes: Vec::new(),
            events: Vec::new(),
            blocked: HashSet::new(),
            down: HashSet::new(),
            drop_rule: None,
            rewrite: None,
            in_flight: VecDeque::new(),
            log: Vec::new(),
            generation: 0,
        }
    }

    /// A new node named after its index.
    fn add(&mut self, config: Config) -> u32 {
        let name = name_of(self.nodes.len());
        self.add_named(&name, config)
    }

    /// A new node at the next address with the given name.
    fn add_named(&mut self, name: &str, config: Config) -> u32 {
        let addr = self.nodes.len() as u32;
        let node = Node::new(self.now, config, id(name), addr, seed_of(addr, 0)).unwrap();
        self.nodes.push(node);
        self.events.push(Vec::new());
        addr
    }

    /// `n` nodes; node 0 alone, every other one joins through it.
    fn start(n: usize, config: Config) -> Self {
        let mut c = Cluster::new();
        for _ in 0..n {
            c.add(config.clone());
        }
        let now = c.now;
        for i in 1..n {
            c.nodes[i].join(now, &[0]).unwrap();
            c.deliver_all();
        }
        c
    }

    /// `start`, then run until every node counts all `n` members.
    fn formed(n: usize, config: Config) -> Self {
        let mut c = Cluster::start(n, config.clone());
        // Gossip usually converges within a few hundred ms; a member that missed a newcomer's
        // announcement learns it at the next push-pull (5 to 10 s with `Config::local`).
        let converged = c.advance_until(20_000, |c| c.nodes.iter().all(|m| m.cluster_size() == n));
        assert!(converged, "a {n}-node cluster did not converge");
        // Let the catch-up push-pulls that follow each join run their course: tests that follow
        // start from a quiet cluster.
        let catch_up = config.probe_interval * ((1 << super::push_pull::CATCH_UP_ROUNDS) + 1);
        c.advance(catch_up.as_millis() as u64);
        c
    }

    fn node(&self, i: u32) -> &Node<u32> {
        &self.nodes[i as usize]
    }

    fn events(&self, i: u32) -> &[Event<u32>] {
        &self.events[i as usize]
    }

    fn count(&self, i: u32, pred: impl Fn(&Event<u32>) -> bool) -> usize {
        self.events(i).iter().filter(|e| pred(e)).count()
    }

    fn live(&self) -> Vec<u32> {
        (0..self.nodes.len() as u32).filter(|i| !self.down.contains(i)).collect()
    }

    fn clear_events(&mut self) {
        for e in &mut self.events {
            e.clear();
        }
    }

    /// Crashes a node: whatever it had not sent yet is lost, and it stops running.
    fn crash(&mut self, i: u32) {
        self.collect();
        self.down.insert(i);
        let node = &mut self.nodes[i as usize];
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        self.in_flight.retain(|(from, _, _)| *from != i);
    }

    /// Lets a paused node run again (its overdue timers fire at the next step).
    fn resume(&mut self, i: u32) {
        self.down.remove(&i);
    }

    /// Replaces a crashed node by a fresh process at the same address, running from now on.
    fn restart(&mut self, i: u32, name: &str, config: Config) {
        self.generation += 1;
        let node = Node::new(self.now, config, id(name), i, seed_of(i, self.generation)).unwrap();
        self.nodes[i as usize] = node;
        self.events[i as usize].clear();
        self.down.remove(&i);
    }

    /// Drains every running node's transmits into the network and its events into the capture.
    fn collect(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if self.down.contains(&(i as u32)) {
                continue;
            }
            while let Some(e) = node.poll_event() {
                self.events[i].push(e);
            }
            let sender_events = self.events[i].len();
            while let Some(t) = node.poll_transmit() {
                self.in_flight.push_back((i as u32, t, sender_events));
            }
        }
    }

    /// Delivers packets until no node has anything left to send.
    fn deliver_all(&mut self) {
        for _ in 0..MAX_DELIVERY_ROUNDS {
            self.collect();
            if self.in_flight.is_empty() {
                return;
            }
            while let Some((from, t, sender_events)) = self.in_flight.pop_front() {
                self.log.push(Sent {
                    from,
                    to: t.to,
                    reliable: t.reliable,
                    kind: t.kind,
                    bytes: t.bytes.clone(),
                    sender_events,
                });
                let dropped = self.blocked.contains(&(from, t.to))
                    || self.down.contains(&t.to)
                    || t.to as usize >= self.nodes.len()
                    || self.drop_rule.as_ref().is_some_and(|r| r(from, &t));
                if dropped {
                    continue;
                }
                let now = self.now;
                let bytes = match &self.rewrite {
                    Some(rewrite) => rewrite(from, t.to, &t.bytes),
                    None => t.bytes,
                };
                let result = self.nodes[t.to as usize].handle_packet(now, from, &bytes);
                assert_eq!(result, Ok(()), "{from} -> {}: {:?} packet rejected", t.to, t.kind);
            }
        }
        panic!("packets kept flowing for {MAX_DELIVERY_ROUNDS} rounds without time passing");
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.down.contains(&(*i as u32)))
            .filter_map(|(_, n)| n.poll_timeout())
            .min()
    }

    /// Steps through every timer deadline up to `end`, or until `stop` holds (checked after every
    /// step). Returns whether `stop` held.
    fn run(&mut self, end: Instant, mut stop: impl FnMut(&Cluster) -> bool) -> bool {
        self.deliver_all();
        if stop(self) {
            return true;
        }
        for _ in 0..MAX_STEPS {
            match self.next_deadline() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for (i, node) in self.nodes.iter_mut().enumerate() {
                        if self.down.contains(&(i as u32)) {
                            continue;
                        }
                        if node.poll_timeout().is_some_and(|d| d <= now) {
                            node.handle_timeout(now);
                        }
                    }
                    self.deliver_all();
                    if stop(self) {
                        return true;
                    }
                }
                _ => {
                    self.now = self.now.max(end);
                    return false;
                }
            }
        }
        panic!("more than {MAX_STEPS} timer steps in one advance: livelock");
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        self.run(end, |_| false);
    }

    /// Advances until `pred` holds, for at most `max_ms`. Returns whether it held.
    fn advance_until(&mut self, max_ms: u64, pred: impl FnMut(&Cluster) -> bool) -> bool {
        let end = self.now + Duration::from_millis(max_ms);
        self.run(end, pred)
    }

    /// Best-effort transmits, as logged.
    fn datagrams(&self) -> impl Iterator<Item = &Sent> {
        self.log.iter().filter(|s| !s.reliable)
    }
}

fn is_failed(e: &Event<u32>, who: &NodeId) -> bool {
    matches!(e, Event::Failed { id, .. } if id == who)
}

fn view(node: &Node<u32>) -> Vec<Member<u32>> {
    let mut v: Vec<Member<u32>> = node.members().cloned().collect();
    v.sort_by(|x, y| x.id.cmp(&y.id));
    v
}

// ----- joining ----------------------------------------------------------------------------------

#[test]
fn nodes_that_join_through_a_seed_all_see_each_other() {
    let n = 5;
    let mut c = Cluster::start(n, Config::local());
    let converged = c.advance_until(20_000, |c| c.nodes.iter().all(|m| m.cluster_size() == n));
    assert!(converged, "every member counts all {n}");
    c.advance(1_000);

    for i in 0..n as u32 {
        let node = c.node(i);
        assert_eq!(node.cluster_size(), n, "node {i} counts everyone");
        assert!(node.is_joined(), "node {i} is joined");
        for j in 0..n as u32 {
            if i == j {
                continue;
            }
            let m = node.member(&id(&name_of(j as usize))).expect("member known");
            assert_eq!(m.state, MemberState::Alive);
            assert_eq!(m.addr, j);
        }
        let joined: HashSet<NodeId> = c
            .events(i)
            .iter()
            .filter_map(|e| match e {
                Event::Joined(m) => Some(m.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(joined.len(), n - 1, "node {i} reported every other member once");
        let succeeded = c.count(i, |e| matches!(e, Event::JoinSucceeded { via: 0 }));
        assert_eq!(succeeded, usize::from(i != 0), "node {i}: JoinSucceeded via the seed");
        assert_eq!(
            c.count(i, |e| matches!(e, Event::Suspected { .. } | Event::Failed { .. } | Event::JoinFailed { .. })),
            0,
            "node {i}: nothing goes wrong in a healthy cluster"
        );
    }
}

#[test]
fn join_reports_failure_when_no_seed_answers() {
    let config = Config::local();
    let join_timeout = config.join_timeout;
    let mut c = Cluster::new();
    c.add(config.clone());
    c.add(config);
    c.crash(0);

    let now = c.now;
    c.nodes[1].join(now, &[0]).unwrap();
    c.advance(join_timeout.as_millis() as u64 - 1);
    assert_eq!(c.count(1, |e| matches!(e, Event::JoinFailed { .. })), 0, "no failure before join_timeout");
    c.advance(2);
    assert_eq!(c.events(1), &[Event::JoinFailed { seeds: vec![0] }], "exactly one JoinFailed naming the seed");
    assert!(!c.node(1).is_joined());
    assert_eq!(c.node(1).cluster_size(), 1);

    // Nothing to join through: refused without side effects.
    let now = c.now;
    assert_eq!(c.nodes[1].join(now, &[]), Err(CommandError::NoSeeds));
    assert_eq!(c.nodes[1].join(now, &[1]), Err(CommandError::NoSeeds), "only ourselves");
    assert!(c.nodes[1].poll_transmit().is_none());

    // The seed comes up later: re-announcing finds it without another join call.
    c.resume(0);
    let joined = c.advance_until(5_000, |c| c.node(1).is_joined() && c.node(0).cluster_size() == 2);
    assert!(joined, "the background re-announce joins once the seed is up");
    assert_eq!(c.count(1, |e| matches!(e, Event::JoinSucceeded { via: 0 })), 1);
}

// ----- failure detection ------------------------------------------------------------------------

#[test]
fn a_suspected_member_refutes_with_a_higher_incarnation() {
    let mut c = Cluster::formed(3, Config::local());
    c.clear_events();
    let a = id("a");

    // Lose a's probes (direct and indirect) until one fails and a suspects its target. Everything
    // else still flows, so nobody has reason to suspect a.
    c.drop_rule = Some(Box::new(|from, t: &Transmit<u32>| {
        from == 0 && matches!(t.kind, TransmitKind::Ping | TransmitKind::PingReq)
    }));
    let suspected =
        c.advance_until(3_000, |c| c.events(0).iter().any(|e| matches!(e, Event::Suspected { by, .. } if *by == a)));
    assert!(suspected, "a's failed probe raises a suspicion");
    c.drop_rule = None;
    let x_id = c
        .events(0)
        .iter()
        .find_map(|e| match e {
            Event::Suspected { id, by, .. } if *by == a => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    let x = (0..3u32).find(|i| *c.node(*i).local_id() == x_id).unwrap();
    assert_ne!(x, 0);

    c.advance(3_000);

    let inc = c.node(x).incarnation();
    assert!(inc >= 1, "the suspect moved to a higher incarnation");
    assert!(
        c.events(x).iter().any(|e| matches!(e, Event::Refuted { incarnation } if *incarnation >= 1)),
        "the suspect reports its refutation: {:?}",
        c.events(x)
    );
    for i in 0..3u32 {
        if i != x {
            let m = c.node(i).member(&x_id).unwrap();
            assert_eq!(m.state, MemberState::Alive, "node {i} believes {x_id} alive again");
            assert_eq!(m.incarnation, inc, "node {i} holds the refuting incarnation");
        }
        assert_eq!(c.count(i, |e| matches!(e, Event::Failed { .. })), 0, "node {i}: nobody is declared failed");
    }
    assert!(
        c.events(0).iter().any(|e| matches!(e, Event::Alive { id, incarnation } if *id == x_id && *incarnation >= 1)),
        "the suspecter sees the refutation: {:?}",
        c.events(0)
    );
}

#[test]
fn an_indirect_probe_rescues_a_member_behind_a_broken_direct_link() {
    let mut c = Cluster::formed(4, Config::local());
    c.clear_events();
    c.blocked.insert((0, 1));
    c.blocked.insert((1, 0));

    c.advance(20 * 200);

    for i in 0..4u32 {
        assert_eq!(
            c.count(i, |e| matches!(e, Event::Suspected { .. } | Event::Failed { .. })),
            0,
            "node {i} suspects nobody: {:?}",
            c.events(i)
        );
    }
    assert_eq!(c.node(0).member(&id("b")).unwrap().state, MemberState::Alive);
    assert_eq!(c.node(1).member(&id("a")).unwrap().state, MemberState::Alive);
    assert!(c.node(0).stats().ping_reqs_sent > 0, "a asked for help");
    assert!(c.node(1).stats().ping_reqs_sent > 0, "b asked for help");
    assert!(
        c.node(2).stats().ping_reqs_served + c.node(3).stats().ping_reqs_served > 0,
        "helpers probed on their behalf"
    );
    assert_eq!(c.node(0).stats().probes_failed, 0);
    assert_eq!(c.node(1).stats().probes_failed, 0);
}

#[test]
fn helpers_send_a_nack_when_the_target_is_silent() {
    for nacks in [true, false] {
        let config = Config { lifeguard: Lifeguard { nacks, ..Lifeguard::ON }, ..Config::local() };
        let mut c = Cluster::formed(4, config);
        c.crash(3);
        c.advance(5 * 200);

        let requesters: Vec<u32> = (0..3u32).filter(|i| c.node(*i).stats().ping_reqs_sent > 0).collect();
        assert!(!requesters.is_empty(), "someone probed the crashed node indirectly");
        let sent: u64 = (0..3u32).map(|i| c.node(i).stats().nacks_sent).sum();
        let received: u64 = (0..3u32).map(|i| c.node(i).stats().nacks_received).sum();
        if nacks {
            for r in &requesters {
                assert!(c.node(*r).stats().nacks_received > 0, "requester {r} got nacks");
            }
            assert!(sent > 0);
            assert_eq!(sent, received, "every nack reaches its requester");
        } else {
            assert_eq!((sent, received), (0, 0), "no nacks unless asked for");
        }
    }
}

#[test]
fn a_crashed_member_is_declared_failed_by_every_member() {
    let mut c = Cluster::formed(5, Config::local());
    c.clear_events();
    let e = id("e");
    c.crash(4);

    let all_failed = c.advance_until(10_000, |c| (0..4u32).all(|i| c.events(i).iter().any(|ev| is_failed(ev, &e))));
    assert!(all_failed, "every live member declares e failed");
    c.advance(2_000);
    for i in 0..4u32 {
        assert_eq!(c.count(i, |ev| is_failed(ev, &e)), 1, "node {i}: Failed once");
        assert_eq!(c.count(i, |ev| matches!(ev, Event::Failed { .. })), 1, "node {i}: nobody else fails");
        assert_eq!(c.node(i).member(&e).unwrap().state, MemberState::Dead);
        assert_eq!(c.node(i).cluster_size(), 4);
    }
}

#[test]
fn the_buddy_system_tells_a_suspect_directly() {
    // Unit level: a learns from b that c is suspect, then probes c. With the buddy system the ping
    // itself carries a's own Suspect about c (gossip could only carry b's, since a has not yet
    // probed c and failed).
    for buddy in [true, false] {
        let config = Config { lifeguard: Lifeguard { buddy_system: buddy, ..Lifeguard::ON }, ..Config::local() };
        let mut now = Instant::from_millis(0);
        let mut a: Node<u32> = Node::new(now, config, id("a"), 0, 11).unwrap();
        a.assume_alive(now, [(id("b"), 1), (id("c"), 2)]);
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        Message::<u32>::Suspect { id: id("c"), incarnation: 0, from: id("b") }.encode(&mut w);
        a.handle_packet(now, 1, w.as_slice()).unwrap();
        assert_eq!(a.member(&id("c")).unwrap().state, MemberState::Suspect);

        let mut ping = None;
        for _ in 0..1_000 {
            now = a.poll_timeout().unwrap();
            a.handle_timeout(now);
            while let Some(t) = a.poll_transmit() {
                if t.kind == TransmitKind::Ping && t.to == 2 && ping.is_none() {
                    ping = Some(t);
                }
            }
            if ping.is_some() {
                break;
            }
        }
        let ping = ping.expect("a probes c while c is suspect");
        assert_eq!(a.member(&id("c")).unwrap().state, MemberState::Suspect);
        let messages = decode(&ping.bytes);
        assert!(matches!(&messages[0], Message::Ping(p) if p.target == id("c")));
        let from_a = messages
            .iter()
            .any(|m| matches!(m, Message::Suspect { id: s, from, .. } if *s == id("c") && *from == id("a")));
        assert_eq!(from_a, buddy, "buddy system {buddy}: the ping carries the prober's Suspect: {messages:?}");
    }

    // Cluster level: c is paused while a and b suspect it, long enough for the suspicion's gossip
    // to be used up, then resumes. Only a direct probe can still tell it; with the buddy system it
    // does, and c refutes before its (long) suspicion timeout. Without it c hears nothing until it
    // is declared dead. No indirect probes here (pings sent on another member's behalf carry no
    // buddy suspicion), and no push-pull to tell c either (the one c asks for when it notices its
    // stall is dropped; it would tell c, see `link`).
    let suspect_when_sent = |c: &Cluster, s: &Sent, who: &NodeId| {
        let mut suspect = false;
        for e in &c.events(s.from)[..s.sender_events] {
            match e {
                Event::Suspected { id, .. } if id == who => suspect = true,
                Event::Alive { id, .. } | Event::Failed { id, .. } if id == who => suspect = false,
                _ => {}
            }
        }
        suspect
    };
    for buddy in [true, false] {
        let config = Config {
            indirect_checks: 0,
            suspicion_mult: 20,
            push_pull_interval: Duration::from_secs(60),
            lifeguard: Lifeguard { buddy_system: buddy, ..Lifeguard::ON },
            // The check of a suspect is the buddy system's message sent once more, at a time of its
            // own: off, to see what the buddy system alone does.
            suspect_checks: false,
            ..Config::local()
        };
        let mut c = Cluster::formed(3, config);
        c.clear_events();
        let cid = id("c");
        let log_mark = c.log.len();
        c.down.insert(2);
        let quiet = c.advance_until(3_000, |c| {
            (0..2u32).all(|i| {
                let n = c.node(i);
                n.member(&cid).is_some_and(|m| m.state == MemberState::Suspect) && n.queued_updates().0 == 0
            })
        });
        assert!(quiet, "a and b suspect c and have nothing left to gossip");
        let resumed_at = c.log.len();
        c.drop_rule = Some(Box::new(|_, t: &Transmit<u32>| t.kind == TransmitKind::PushPull));
        c.resume(2);
        c.advance(6_000);

        let pings: Vec<&Sent> = c.log[log_mark..]
            .iter()
            .filter(|s| s.kind == TransmitKind::Ping && s.to == 2 && suspect_when_sent(&c, s, &cid))
            .collect();
        let carrying = pings
            .iter()
            .filter(|s| decode(&s.bytes).iter().any(|m| matches!(m, Message::Suspect { id, .. } if *id == cid)))
            .count();
        let failed = (0..2u32).map(|i| c.count(i, |e| is_failed(e, &cid))).sum::<usize>();
        if buddy {
            assert!(!pings.is_empty());
            assert_eq!(carrying, pings.len(), "every direct ping to the suspect carries the suspicion");
            assert!(
                c.log[resumed_at..].iter().any(|s| s.kind == TransmitKind::Ping && s.to == 2),
                "c was probed after it resumed"
            );
            assert_eq!(failed, 0, "c refuted in time");
        } else {
            assert!(failed > 0, "without the buddy system c could not learn of the suspicion in time");
        }
        // Either way c comes back: refuting the suspicion, or the Dead announcement gossiped to it.
        assert!(c.count(2, |e| matches!(e, Event::Refuted { .. })) > 0, "buddy system {buddy}: c refutes");
        for i in 0..2u32 {
            let m = c.node(i).member(&cid).unwrap();
            assert_eq!(m.state, MemberState::Alive, "buddy system {buddy}, node {i}");
            assert_eq!(m.incarnation, c.node(2).incarnation());
        }
    }
}

#[test]
fn a_restarted_member_declared_dead_takes_over_with_a_higher_incarnation() {
    let config = Config::local();
    let mut c = Cluster::formed(4, config.clone());
    let d = id("d");
    c.nodes[3].set_metadata(b"first life").unwrap();
    c.advance(1_000);
    for i in 0..3u32 {
        assert_eq!(c.node(i).member(&d).unwrap().incarnation, 1);
    }
    c.clear_events();

    c.crash(3);
    let all_failed = c.advance_until(10_000, |c| (0..3u32).all(|i| c.events(i).iter().any(|e| is_failed(e, &d))));
    assert!(all_failed);
    let dead_incarnation = (0..3u32).map(|i| c.node(i).member(&d).unwrap().incarnation).max().unwrap();
    assert_eq!(dead_incarnation, 1);

    c.restart(3, "d", config);
    assert_eq!(c.node(3).incarnation(), 0);
    let now = c.now;
    c.nodes[3].join(now, &[0]).unwrap();
    let back = c.advance_until(5_000, |c| {
        (0..3u32).all(|i| c.node(i).member(&d).is_some_and(|m| m.state == MemberState::Alive))
    });
    assert!(back, "the restarted member is alive again everywhere");
    c.advance(1_000);

    let new_incarnation = c.node(3).incarnation();
    assert!(new_incarnation > dead_incarnation, "took over above the dead incarnation: {new_incarnation}");
    assert!(c.count(3, |e| matches!(e, Event::Refuted { .. })) > 0);
    assert_eq!(c.node(3).cluster_size(), 4);
    for i in 0..3u32 {
        let m = c.node(i).member(&d).unwrap();
        assert_eq!(m.state, MemberState::Alive, "node {i}");
        assert_eq!(m.incarnation, new_incarnation, "node {i}");
        assert_eq!(m.addr, 3);
        assert!(m.meta.is_empty(), "node {i}: the old life's metadata is gone");
        let failed_at = c.events(i).iter().position(|e| is_failed(e, &d)).unwrap();
        let joined_at = c
            .events(i)
            .iter()
            .position(|e| matches!(e, Event::Joined(m) if m.id == d))
            .expect("Joined reported for the new life");
        assert!(joined_at > failed_at);
    }
}

#[test]
fn a_member_that_left_and_restarts_under_the_same_name_rejoins() {
    let config = Config::local();
    let mut c = Cluster::formed(4, config.clone());
    let d = id("d");
    let now = c.now;
    c.nodes[3].leave(now);
    let gone = c.advance_until(3_000, |c| {
        c.node(3).leave_disseminated()
            && (0..3u32).all(|i| c.node(i).member(&d).is_some_and(|m| m.state == MemberState::Left))
    });
    assert!(gone);
    let left_incarnation = c.node(0).member(&d).unwrap().incarnation;
    assert!(left_incarnation >= 1);
    c.crash(3);
    c.advance(1_000);
    c.clear_events();

    c.restart(3, "d", config);
    let now = c.now;
    c.nodes[3].join(now, &[0]).unwrap();
    let back = c.advance_until(5_000, |c| {
        (0..3u32).all(|i| c.node(i).member(&d).is_some_and(|m| m.state == MemberState::Alive))
    });
    let views: Vec<_> = (0..3u32).map(|i| c.node(i).member(&d).map(|m| (m.state, m.incarnation))).collect();
    assert!(
        back,
        "the new life of d is accepted: d's incarnation {}, left at {left_incarnation}, views {views:?}, d's events {:?}",
        c.node(3).incarnation(),
        c.events(3)
    );
    assert!(c.node(3).incarnation() > left_incarnation);
    for i in 0..3u32 {
        assert!(c.events(i).iter().any(|e| matches!(e, Event::Joined(m) if m.id == d)), "node {i}");
    }
}

#[test]
fn a_healed_partition_merges_back_without_operator_action() {
    let mut c = Cluster::formed(4, Config::local());
    let (left, right) = ([0u32, 1], [2u32, 3]);
    for l in left {
        for r in right {
            c.blocked.insert((l, r));
            c.blocked.insert((r, l));
        }
    }
    let split = c.advance_until(20_000, |c| left.iter().chain(&right).all(|i| c.node(*i).cluster_size() == 2));
    assert!(split, "each side declares the other failed");
    // Long enough that the dead are no longer gossiped to: only re-announcing can heal it.
    c.advance(c.node(0).config().gossip_to_the_dead_time.as_millis() as u64);
    c.blocked.clear();
    c.clear_events();

    let agreed = |c: &Cluster| {
        (0..4u32).all(|i| {
            (0..4u32).filter(|j| *j != i).all(|j| {
                c.node(i)
                    .member(&id(&name_of(j as usize)))
                    .is_some_and(|m| m.state == MemberState::Alive && m.incarnation == c.node(j).incarnation())
            })
        })
    };
    let healed = c.advance_until(20_000, |c| c.nodes.iter().all(|n| n.cluster_size() == 4));
    assert!(healed, "the halves find each other again");
    let settled = c.advance_until(10_000, agreed);
    let views: Vec<Vec<_>> =
        (0..4u32).map(|i| c.node(i).members().map(|m| (m.id.clone(), m.state, m.incarnation)).collect()).collect();
    assert!(settled, "everyone agrees on everyone's latest incarnation: {views:?}");
}

/// Housekeeping skips its scan of the table until a gone member can be due: whenever members go
/// (before a scan that found none, between scans, or while others wait), each is forgotten within
/// one housekeeping period of its reap time, never before.
#[test]
fn every_member_gone_is_reaped_within_one_housekeeping_period_of_its_reap_time_whenever_it_went() {
    let config = Config {
        push_pull_interval: Duration::ZERO,
        dead_member_reap_time: Duration::from_secs(20),
        ..Config::local()
    };
    let (horizon, period) = (config.dead_member_reap_time, config.housekeeping_period());
    for seed in 0..8u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut now = Instant::from_millis(0);
        let mut a: Node<u32> = Node::new(now, config.clone(), id("a"), 0, seed).unwrap();
        let names: Vec<NodeId> = (1..=30).map(|i| id(&format!("m{i}"))).collect();
        a.assume_alive(now, names.iter().cloned().zip(1..));
        // Deaths at random moments over three reap times; a's own unanswered probes add more.
        let mut deaths: Vec<Instant> =
            (0..names.len()).map(|_| Instant::from_millis(rng.random_range(0..60_000))).collect();
        let end = Instant::from_millis(100_000);
        // State-since of every member gone, as of the last step.
        let mut gone: Vec<(NodeId, Instant)> = Vec::new();
        while now < end {
            now = a.poll_timeout().unwrap().min(end);
            for (i, at) in deaths.iter_mut().enumerate() {
                if *at <= now {
                    *at = Instant::from_millis(u64::MAX);
                    if let Some(m) = a.member(&names[i]) {
                        let dead = Message::Dead {
                            id: names[i].clone(),
                            incarnation: m.incarnation,
                            from: id("z"),
                            left: false,
                        };
                        a.handle_packet(now, 99, &packet_of(&[dead])).unwrap();
                    }
                }
            }
            a.handle_timeout(now);
            while a.poll_transmit().is_some() {}
            while a.poll_event().is_some() {}
            for (name, since) in &gone {
                let due = *since + horizon;
                match a.member(name) {
                    None => assert!(now >= due, "seed {seed}: {name} reaped at {now:?}, before its reap time {due:?}"),
                    Some(_) => {
                        assert!(now <= due + period, "seed {seed}: {name} still kept at {now:?}, reap time {due:?}")
                    }
                }
            }
            gone = a.members().filter(|m| !m.state.is_live()).map(|m| (m.id.clone(), m.state_since)).collect();
        }
        assert!(a.members().count() < names.len(), "seed {seed}: some members were reaped");
    }
}

#[test]
fn a_reaped_member_is_relearned_from_the_same_alive_record_it_was_first_learned_from() {
    let config = Config { push_pull_interval: Duration::ZERO, ..Config::local() };
    let mut now = Instant::from_millis(0);
    let mut a: Node<u32> = Node::new(now, config.clone(), id("a"), 0, 11).unwrap();
    a.assume_alive(now, [(id("b"), 1)]);
    let packet = |m: Message<u32>| {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        m.encode(&mut w);
        w.into_vec()
    };
    let alive_c = packet(Message::Alive(crate::wire::Alive {
        id: id("c"),
        addr: 2,
        incarnation: 0,
        meta: crate::wire::MetaField::Included(Vec::new()),
        min_version: crate::wire::MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
    }));
    a.handle_packet(now, 1, &alive_c).unwrap();
    assert!(a.member(&id("c")).is_some(), "a learns c from b's gossip");
    let dead_c = packet(Message::Dead { id: id("c"), incarnation: 0, from: id("b"), left: false });
    a.handle_packet(now, 1, &dead_c).unwrap();
    assert_eq!(a.member(&id("c")).unwrap().state, MemberState::Dead);

    // Run a's timers (b answers nothing) until c has been dead long enough to be reaped.
    let reap_by = now + config.dead_member_reap_time + config.reannounce_interval * 3;
    while a.member(&id("c")).is_some() && now < reap_by {
        now = a.poll_timeout().unwrap();
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        while a.poll_event().is_some() {}
    }
    assert!(a.member(&id("c")).is_none(), "c was reaped");

    // c comes back with the very record it was first announced with: news again, not a repeat.
    let skipped_before = a.stats().repeated_updates_skipped;
    a.handle_packet(now, 1, &alive_c).unwrap();
    let skipped = a.stats().repeated_updates_skipped - skipped_before;
    assert!(
        a.member(&id("c")).is_some_and(|m| m.state == MemberState::Alive),
        "c is relearned ({skipped} skipped as a repeat)"
    );
    assert!(matches!(a.poll_event(), Some(Event::Joined(m)) if m.id == id("c")));
}

#[test]
fn an_alive_claim_from_another_address_for_a_live_name_is_reported_not_accepted() {
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    let b = id("b");

    let impostor = c.add_named("b", config);
    assert_eq!(impostor, 3);
    let now = c.now;
    c.nodes[3].join(now, &[0]).unwrap();
    c.advance(3_000);

    for i in [0u32, 2] {
        let conflict = Event::AddressConflict { id: b.clone(), known: 1, claimed: 3 };
        assert!(c.events(i).contains(&conflict), "node {i} reports the conflict: {:?}", c.events(i));
        assert!(c.node(i).stats().address_conflicts > 0);
        let m = c.node(i).member(&b).unwrap();
        assert_eq!(m.addr, 1, "node {i} keeps the old address");
        assert_eq!(m.state, MemberState::Alive);
        assert_eq!(c.node(i).cluster_size(), 3, "node {i}: no extra member");
    }
    for i in 0..3u32 {
        assert_eq!(c.count(i, |e| matches!(e, Event::Failed { .. })), 0);
    }
}

#[test]
fn graceful_leave_is_seen_as_left_not_failed() {
    let mut c = Cluster::formed(4, Config::local());
    c.clear_events();
    let d = id("d");
    let now = c.now;
    c.nodes[3].leave(now);
    assert!(!c.node(3).leave_disseminated(), "nothing sent yet");
    let pings_at_leave = c.node(3).stats().pings_sent;
    assert_eq!(c.nodes[3].broadcast("t", b"x", None), Err(CommandError::NotRunning));

    let done = c.advance_until(3_000, |c| c.node(3).leave_disseminated());
    assert!(done, "the leave announcement finishes spreading");
    c.advance(3_000);
    for i in 0..3u32 {
        assert_eq!(c.count(i, |e| matches!(e, Event::Left { id, .. } if *id == d)), 1, "node {i}: {:?}", c.events(i));
        assert_eq!(c.count(i, |e| matches!(e, Event::Failed { .. })), 0);
        assert_eq!(c.node(i).member(&d).unwrap().state, MemberState::Left);
        assert_eq!(c.node(i).cluster_size(), 3);
    }
    assert_eq!(c.node(3).stats().pings_sent, pings_at_leave, "a leaving node stops probing");
}

/// Every node in `watchers` reported `leaver` left once and never failed.
fn assert_seen_leaving(c: &Cluster, watchers: core::ops::Range<u32>, leaver: &NodeId, shift: u64) {
    for i in watchers {
        assert_eq!(c.count(i, |e| matches!(e, Event::Left { id, .. } if id == leaver)), 1, "shift {shift}: node {i}");
        assert_eq!(c.count(i, |e| matches!(e, Event::Failed { id, .. } if id == leaver)), 0, "shift {shift}: node {i}");
    }
}

#[test]
fn a_member_that_leaves_and_stops_at_once_is_seen_as_left_by_every_live_member_even_beside_the_recently_dead() {
    // A tab leaving on `pagehide` gets one gossip round before it is gone. That round went to 3
    // members drawn among the live and those that died lately (gossip to the dead): with a few
    // crashes just before, it could tell nobody alive, and the others declared the tab failed.
    for shift in 0..20u64 {
        let mut c = Cluster::formed(10, Config::browser());
        c.advance(shift * 37);
        for i in 4..10 {
            c.crash(i);
        }
        let dead: Vec<NodeId> = (4..10).map(|i| id(&name_of(i))).collect();
        let declared = c.advance_until(20_000, |c| {
            (0..4u32).all(|i| dead.iter().all(|d| c.node(i).member(d).is_some_and(|m| m.state == MemberState::Dead)))
        });
        assert!(declared, "shift {shift}: the crashes were declared");
        c.clear_events();
        let now = c.now;
        c.nodes[3].leave(now);
        c.advance(0); // its first round goes out...
        c.crash(3); // ...and it is gone
        c.advance(5_000);
        let leaver = id(&name_of(3));
        assert_seen_leaving(&c, 0..3, &leaver, shift);
    }
}

#[test]
fn a_farewell_sent_for_a_member_that_is_then_gone_makes_every_live_member_see_it_leave_not_fail() {
    // A tab's member runs in a worker the browser kills when the tab closes; the page posts the
    // farewell the member built beforehand. Across shifts, building it changes nothing until it is
    // sent, and once sent every live member reports a leave and no failure.
    for shift in 0..10u64 {
        let mut c = Cluster::formed(10, Config::browser());
        c.advance(shift * 41);
        c.clear_events();
        let leaver = id(&name_of(9));
        let incarnation = c.node(9).incarnation();
        let farewell = c.nodes[9].farewell(8);
        assert_eq!(farewell.len(), 8, "shift {shift}: one packet to each of 8 live members");
        assert!(farewell.iter().all(|t| !t.reliable && t.to != 9));
        assert_eq!(c.node(9).incarnation(), incarnation, "building a farewell does not leave");
        assert!(c.nodes[9].poll_transmit().is_none(), "nor sends anything");
        c.advance(100);
        assert!(
            (0..9u32).all(|i| c.count(i, |e| matches!(e, Event::Left { .. })) == 0),
            "shift {shift}: unsent, it says nothing"
        );

        c.crash(9);
        for t in farewell {
            c.in_flight.push_back((9, t, 0));
        }
        c.advance(10_000);
        assert_seen_leaving(&c, 0..9, &leaver, shift);
    }
}

#[test]
fn a_member_that_left_or_knows_nobody_builds_no_farewell() {
    let mut c = Cluster::formed(3, Config::local());
    let now = c.now;
    assert_eq!(c.nodes[2].farewell(8).len(), 2);
    c.nodes[2].leave(now);
    assert!(c.nodes[2].farewell(8).is_empty(), "leaving: the leave itself is under way");
    let mut alone: Node<u32> = Node::new(now, Config::local(), id("alone"), 7, 7).unwrap();
    assert!(alone.farewell(8).is_empty());
}

// ----- broadcasts and messages ------------------------------------------------------------------

#[test]
fn a_broadcast_is_delivered_exactly_once_to_every_other_member() {
    // Broadcasts spread by gossip alone (push-pull does not carry them), so reaching everyone is a
    // matter of probability: with the default λ = 4 a 5-node cluster leaves some member without a
    // given broadcast in roughly 1 run of 200. λ = 8 makes that negligible; this test is about
    // exactly-once delivery and the sender's exclusion, not about gossip coverage.
    let config = Config { retransmit_mult: 8, ..Config::local() };
    let mut c = Cluster::formed(5, config);
    c.clear_events();
    c.nodes[2].broadcast("news", b"hello", None).unwrap();
    c.advance(3_000);

    let expected = Event::Message {
        from: id("c"),
        topic: String::from("news"),
        payload: b"hello".to_vec(),
        kind: MessageKind::Broadcast,
    };
    for i in 0..5u32 {
        let got = c.count(i, |e| *e == expected);
        let any = c.count(i, |e| matches!(e, Event::Message { .. }));
        if i == 2 {
            assert_eq!(any, 0, "the sender does not receive its own broadcast");
        } else {
            assert_eq!((got, any), (1, 1), "node {i} gets it exactly once");
        }
    }
}

#[test]
fn a_newer_keyed_broadcast_replaces_the_older_one_in_the_queue() {
    let mut c = Cluster::formed(4, Config::local());
    c.clear_events();
    c.deliver_all();
    let before = c.node(0).queued_updates().1;
    c.nodes[0].broadcast("cfg", b"v1", Some(b"k")).unwrap();
    c.nodes[0].broadcast("cfg", b"v2", Some(b"k")).unwrap();
    assert_eq!(c.node(0).queued_updates().1, before + 1, "one queued value per key");
    let log_mark = c.log.len();
    c.advance(3_000);

    for i in 1..4u32 {
        let messages: Vec<&Event<u32>> = c.events(i).iter().filter(|e| matches!(e, Event::Message { .. })).collect();
        assert_eq!(
            messages,
            [&Event::Message {
                from: id("a"),
                topic: String::from("cfg"),
                payload: b"v2".to_vec(),
                kind: MessageKind::Broadcast,
            }],
            "node {i}"
        );
    }
    let v1_sent = c.log[log_mark..]
        .iter()
        .any(|s| decode(&s.bytes).iter().any(|m| matches!(m, Message::Broadcast(b) if b.payload == b"v1")));
    assert!(!v1_sent, "the replaced value never went on the wire");
}

#[test]
fn a_direct_message_arrives_and_unknown_members_are_refused() {
    let mut c = Cluster::formed(3, Config::local());
    c.clear_events();
    let max = c.node(0).config().max_packet_size;
    c.nodes[0].send(c.now, &id("b"), "greet", b"hi", false).unwrap();
    let bulk = vec![7u8; 10_000];
    c.nodes[0].send(c.now, &id("b"), "bulk", &bulk, true).unwrap();
    c.deliver_all();

    let direct = |topic: &str, payload: &[u8]| Event::Message {
        from: id("a"),
        topic: String::from(topic),
        payload: payload.to_vec(),
        kind: MessageKind::Direct,
    };
    assert_eq!(c.count(1, |e| *e == direct("greet", b"hi")), 1);
    assert_eq!(c.count(1, |e| *e == direct("bulk", &bulk)), 1);
    assert_eq!(c.count(2, |e| matches!(e, Event::Message { .. })), 0);
    assert_eq!(c.node(1).stats().direct_delivered, 2);
    assert!(c.log.iter().any(|s| s.reliable && s.kind == TransmitKind::Direct && s.to == 1));

    let now = c.now;
    let a = &mut c.nodes[0];
    assert_eq!(a.send(now, &id("zed"), "t", b"x", false), Err(CommandError::UnknownMember(id("zed"))));
    match a.send(now, &id("b"), "t", &vec![0u8; 2_000], false) {
        Err(CommandError::TooLarge { size, max: limit }) => {
            assert!(size > limit);
            assert_eq!(limit, max - 1);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(a.send(now, &id("b"), &"t".repeat(256), b"x", false), Err(CommandError::TopicTooLong));
    assert!(a.poll_transmit().is_none(), "refused commands send nothing");

    // The largest accepted best-effort message still fits in one packet.
    let mut size = max;
    while a.send(now, &id("b"), "t", &vec![1u8; size], false).is_err() {
        size -= 1;
    }
    let t = a.poll_transmit().unwrap();
    assert!(!t.reliable);
    assert!(t.bytes.len() <= max, "{} > {max}", t.bytes.len());
}

#[test]
fn large_metadata_reaches_members_through_a_reliable_fetch() {
    let mut c = Cluster::formed(3, Config::local());
    c.clear_events();
    let max = c.node(0).config().max_packet_size;
    let meta: Vec<u8> = (0..4_096u32).map(|i| (i % 251) as u8).collect();
    let b = id("b");
    c.nodes[1].set_metadata(&meta).unwrap();
    assert_eq!(c.node(1).metadata(), &meta[..]);

    let done = c.advance_until(5_000, |c| {
        [0u32, 2]
            .iter()
            .all(|i| c.node(*i).member(&b).is_some_and(|m| m.meta_complete && m.meta.as_bytes() == &meta[..]))
    });
    assert!(done, "every member holds the full metadata");
    for i in [0u32, 2] {
        let m = c.node(i).member(&b).unwrap();
        assert_eq!(m.incarnation, 1);
        assert!(
            c.events(i).iter().any(|e| matches!(
                e,
                Event::Updated(m) if m.id == b && m.meta_complete && m.meta.as_bytes() == &meta[..]
            )),
            "node {i} reports the update with the full metadata"
        );
    }
    assert!(
        c.log.iter().any(|s| s.reliable && s.from == 1 && s.bytes.len() > meta.len()),
        "the metadata travelled reliably"
    );
    for s in c.datagrams() {
        assert!(s.bytes.len() <= max, "{:?} of {} bytes", s.kind, s.bytes.len());
    }
}

#[test]
fn no_packet_exceeds_the_configured_size() {
    let config = Config { max_packet_size: 512, ..Config::local() };
    let max = config.max_packet_size;
    let mut c = Cluster::formed(6, config);
    let mut rng = SmallRng::seed_from_u64(99);
    let mut queued = 0;
    for i in 0..6usize {
        let meta: Vec<u8> = vec![i as u8; 200];
        c.nodes[i].set_metadata(&meta).unwrap();
        for k in 0..40u32 {
            let len = rng.random_range(1..480usize);
            let key = (k % 3 == 0).then(|| k.to_le_bytes());
            if c.nodes[i].broadcast("load", &vec![k as u8; len], key.as_ref().map(|k| &k[..])).is_ok() {
                queued += 1;
            }
        }
    }
    assert!(queued > 200, "most broadcasts fit: {queued}");
    c.advance(3_000);

    let mut count = 0;
    let mut largest = 0;
    for s in c.datagrams() {
        count += 1;
        largest = largest.max(s.bytes.len());
        assert!(s.bytes.len() <= max, "{:?} of {} bytes", s.kind, s.bytes.len());
    }
    assert!(count > 100, "a busy run: {count} datagrams");
    assert!(largest > max * 3 / 4, "packets were filled up: largest {largest}");
    let delivered: u64 = (0..6u32).map(|i| c.node(i).stats().broadcasts_delivered).sum();
    assert!(delivered > 0);
}

// ----- robustness --------------------------------------------------------------------------------

#[test]
fn garbage_packets_change_nothing() {
    let mut c = Cluster::formed(3, Config::local());
    c.advance(1_000);
    c.deliver_all();

    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![1],
        vec![2, 1, 1, 0],
        vec![1, 1],
        vec![1, 2, 200],
        vec![1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![0xff; 64],
    ];
    // Every truncation of real packets that no longer decodes.
    for s in c.log.iter().take(40) {
        for len in 0..s.bytes.len() {
            let prefix = &s.bytes[..len];
            if decode_packet::<u32>(prefix, &mut Vec::new()).is_err() {
                garbage.push(prefix.to_vec());
            }
        }
    }
    let mut rng = SmallRng::seed_from_u64(7);
    while garbage.len() < 2_000 {
        let len = rng.random_range(0..80usize);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if !bytes.is_empty() && rng.random_bool(0.7) {
            bytes[0] = PROTOCOL_VERSION;
        }
        if decode_packet::<u32>(&bytes, &mut Vec::new()).is_err() {
            garbage.push(bytes);
        }
    }

    let node = &mut c.nodes[0];
    let before_view = view(node);
    let before_stats = node.stats();
    let before_deadline = node.poll_timeout();
    let before_incarnation = node.incarnation();
    let now = c.now;
    let mut undecodable = 0u64;
    for (k, g) in garbage.iter().enumerate() {
        let from = 1 + (k % 2) as u32;
        match node.handle_packet(now, from, g) {
            Err(PacketError::Decode(_)) => undecodable += 1,
            // Packets starting with the encryption marker are refused before decoding (no keyring).
            Err(PacketError::Security(_)) if g.first() == Some(&crate::security::ENCRYPTED_MARKER) => {}
            other => panic!("{g:?} gave {other:?}"),
        }
    }
    let oversized = vec![PROTOCOL_VERSION; node.config().max_reliable_size + crate::security::OVERHEAD + 1];
    assert_eq!(node.handle_packet(now, 1, &oversized), Err(PacketError::Oversized(oversized.len())));

    let after = node.stats();
    assert_eq!(after.decode_errors, before_stats.decode_errors + undecodable);
    assert!(undecodable > garbage.len() as u64 / 2);
    assert_eq!(after.oversized_dropped, before_stats.oversized_dropped + 1);
    assert_eq!(after.packets_sent, before_stats.packets_sent);
    assert_eq!(view(node), before_view, "the member list is unchanged");
    assert_eq!(node.incarnation(), before_incarnation);
    assert_eq!(node.poll_timeout(), before_deadline);
    assert!(node.poll_transmit().is_none(), "no transmit");
    assert!(node.poll_event().is_none(), "no event");

    // And the node still works afterwards.
    c.advance(2_000);
    assert_eq!(c.node(0).cluster_size(), 3);
}

#[test]
fn local_health_rises_when_nacks_go_missing() {
    let nacks_dropped: fn() -> Option<DropRule> =
        || Some(Box::new(|_, t: &Transmit<u32>| t.kind == TransmitKind::Nack));
    let d = id("d");

    // Nacks are lost: whoever probes the crashed member blames itself a little.
    let mut c = Cluster::formed(4, Config::local());
    c.clear_events();
    c.crash(3);
    c.drop_rule = nacks_dropped();
    let rose = c.advance_until(3_000, |c| {
        (0..3u32).any(|i| c.events(i).iter().any(|e| matches!(e, Event::HealthChanged { score, .. } if *score > 0)))
    });
    assert!(rose, "a HealthChanged with a positive score");
    let who = (0..3u32).find(|i| c.count(*i, |e| matches!(e, Event::HealthChanged { .. })) > 0).unwrap();
    assert!(c.node(who).health_score() > 0);
    assert!(matches!(
        c.events(who).iter().find(|e| matches!(e, Event::HealthChanged { .. })),
        Some(Event::HealthChanged { score, multiplier }) if *multiplier == score + 1
    ));

    // Control: the same crash with nacks arriving leaves everyone healthy.
    let mut c = Cluster::formed(4, Config::local());
    c.clear_events();
    c.crash(3);
    let failed = c.advance_until(10_000, |c| (0..3u32).all(|i| c.events(i).iter().any(|e| is_failed(e, &d))));
    assert!(failed);
    for i in 0..3u32 {
        assert_eq!(c.count(i, |e| matches!(e, Event::HealthChanged { .. })), 0, "node {i}");
        assert_eq!(c.node(i).health_score(), 0);
    }

    // Health-aware probing off: the score never moves.
    let config = Config { lifeguard: Lifeguard { health_aware_probing: false, ..Lifeguard::ON }, ..Config::local() };
    let mut c = Cluster::formed(4, config);
    c.clear_events();
    c.crash(3);
    c.drop_rule = nacks_dropped();
    let failed = c.advance_until(10_000, |c| (0..3u32).all(|i| c.events(i).iter().any(|e| is_failed(e, &d))));
    assert!(failed);
    for i in 0..3u32 {
        assert_eq!(c.count(i, |e| matches!(e, Event::HealthChanged { .. })), 0, "node {i}");
        assert_eq!(c.node(i).health_score(), 0);
    }
}

#[test]
fn with_every_preset_the_helpers_nacks_reach_the_prober_within_its_protocol_period() {
    // A helper waited 80% of the probe timeout before its nack, whatever the period: with `wan`
    // (5 s period, 3 s timeout) and a browser preset whose period is under 1.8 timeouts, every nack
    // came after the prober's period ended, and every probe of a crashed member made the prober
    // blame itself (its health score rose, and it slowed its own probing down).
    let d = id("d");
    for (name, config) in
        [("lan", Config::lan()), ("wan", Config::wan()), ("local", Config::local()), ("browser", Config::browser())]
    {
        let mut c = Cluster::formed(4, config);
        c.clear_events();
        c.crash(3);
        let failed = c.advance_until(120_000, |c| (0..3u32).all(|i| c.events(i).iter().any(|e| is_failed(e, &d))));
        assert!(failed, "{name}: the crash was declared");
        for i in 0..3u32 {
            assert!(c.node(i).stats().nacks_received > 0 || c.node(i).stats().ping_reqs_sent == 0, "{name}: node {i}");
            assert_eq!(c.count(i, |e| matches!(e, Event::HealthChanged { .. })), 0, "{name}: node {i} blamed itself");
        }
    }
}

#[test]
fn a_spurious_or_early_timeout_call_is_harmless() {
    let mut c = Cluster::formed(3, Config::local());
    c.advance(500);
    c.deliver_all();
    let now = c.now;
    for i in c.live() {
        let node = &mut c.nodes[i as usize];
        let deadline = node.poll_timeout().unwrap();
        assert!(deadline > now);
        let packets_before = node.stats().packets_sent;

        // Early: nothing is due.
        for _ in 0..3 {
            node.handle_timeout(now);
        }
        assert!(node.poll_transmit().is_none(), "node {i}: early call sent something");
        assert!(node.poll_event().is_none());
        assert_eq!(node.poll_timeout(), Some(deadline));

        // Due once: whatever it sends, calling again at the same time sends nothing more.
        node.handle_timeout(deadline);
        let first: Vec<Transmit<u32>> = core::iter::from_fn(|| node.poll_transmit()).collect();
        let next = node.poll_timeout().unwrap();
        assert!(next > deadline, "node {i}: every due timer ran");
        for _ in 0..5 {
            node.handle_timeout(deadline);
            node.handle_timeout(now);
        }
        assert!(node.poll_transmit().is_none(), "node {i}: repeated call sent more");
        assert_eq!(node.poll_timeout(), Some(next));
        assert_eq!(node.stats().packets_sent, packets_before + first.len() as u64);
    }
}

// ----- hostile incarnations ---------------------------------------------------------------------

/// The frame as a member that skips some messages reads it (an older decoder skips a message of
/// a type it does not know): every message but those `skipped` picks, in order.
fn frame_without(bytes: &[u8], skipped: impl Fn(&Message<u32>) -> bool) -> Vec<u8> {
    packet_of(&decode(bytes).into_iter().filter(|m| !skipped(m)).collect::<Vec<_>>())
}

/// A packet carrying `messages`, encoded with the crate's wire types (to forge claims in tests).
fn packet_of(messages: &[Message<u32>]) -> Vec<u8> {
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    for m in messages {
        m.encode(&mut w);
    }
    w.into_vec()
}

/// A forged `Suspect` of `who` at `incarnation`, as if `by` had sent it.
fn forged_suspect(who: &str, incarnation: u32, by: &str) -> Vec<u8> {
    packet_of(&[Message::Suspect { id: id(who), incarnation, from: id(by) }])
}

/// Half the incarnation circle: claims further ahead than this are stale.
const HALF: u32 = 1 << 31;

/// True when every member other than `x` holds `x` alive at `x`'s own current incarnation.
fn everyone_holds_alive(c: &Cluster, x: u32) -> bool {
    let x_id = c.node(x).local_id().clone();
    let inc = c.node(x).incarnation();
    c.live()
        .into_iter()
        .filter(|i| *i != x)
        .all(|i| c.node(i).member(&x_id).is_some_and(|m| m.state == MemberState::Alive && m.incarnation == inc))
}

/// Claims from just after `from` up to `to`, each at most a quarter of the circle ahead of the one
/// before, so that old (integer) and new (serial) incarnation rules agree that each is newer.
fn claims_up_to(from: u32, to: u32) -> Vec<u32> {
    let mut claims = Vec::new();
    let mut cur = from;
    while to.wrapping_sub(cur) > HALF / 2 {
        cur = cur.wrapping_add(HALF / 2);
        claims.push(cur);
    }
    claims.push(to);
    claims
}

/// Forges claims against node `x` (sent to `x` itself from `from`) that make it refute its way up to
/// `target`, then waits until every member holds the new incarnation.
fn raise_incarnation(c: &mut Cluster, x: u32, from: u32, target: u32) {
    let (who, by) = (name_of(x as usize), name_of(from as usize));
    for claim in claims_up_to(c.node(x).incarnation(), target - 1) {
        let now = c.now;
        c.nodes[x as usize].handle_packet(now, from, &forged_suspect(&who, claim, &by)).unwrap();
        assert_eq!(c.node(x).incarnation(), claim + 1, "{who} refutes the claim at {claim}");
        assert!(c.advance_until(2_000, |c| everyone_holds_alive(c, x)), "everyone learns {who}'s refutation");
    }
}

#[test]
fn leave_and_metadata_after_a_refutation_past_u32_max_wrap_to_newer_incarnations() {
    // Found by the `node_inputs` fuzz target: a claim about us at u32::MAX made us refute at the
    // ceiling, and a later metadata change or leave overflowed the incarnation. Incarnations are
    // serial numbers now: from the upper half of the circle (where u32::MAX is a newer claim) the
    // refutation wraps to 0, which is newer than u32::MAX, and the metadata change and the leave
    // keep moving on from there without overflow.
    let now = Instant::from_millis(0);
    let mut a: Node<u32> = Node::new(now, Config::local(), id("a"), 0, 11).unwrap();
    let mut b: Node<u32> = Node::new(now, Config::local(), id("b"), 1, 12).unwrap();
    a.assume_alive(now, [(id("b"), 1)]);
    b.assume_alive(now, [(id("a"), 0)]);
    for claim in claims_up_to(0, u32::MAX) {
        let forged = forged_suspect("a", claim, "b");
        b.handle_packet(now, 0, &forged).unwrap();
        a.handle_packet(now, 1, &forged).unwrap();
    }
    assert_eq!(b.member(&id("a")).unwrap().incarnation, u32::MAX, "b believes every claim");
    assert_eq!(a.incarnation(), 0, "the refutation of the claim at u32::MAX wraps to 0");
    assert!(crate::incarnation::is_newer(0, u32::MAX));

    a.set_metadata(b"role=web").unwrap();
    assert_eq!(a.incarnation(), 1);
    a.leave(now);
    assert_eq!(a.incarnation(), 2);
    let mut announced_leave = false;
    while let Some(t) = a.poll_transmit() {
        announced_leave |= decode(&t.bytes)
            .iter()
            .any(|m| matches!(m, Message::Dead { id: d, left: true, incarnation: 2, .. } if *d == id("a")));
        if t.to == 1 {
            b.handle_packet(now, 0, &t.bytes).unwrap();
        }
    }
    assert!(announced_leave, "the departure is announced at the wrapped incarnation");
    let seen = b.member(&id("a")).unwrap();
    assert_eq!((seen.state, seen.incarnation), (MemberState::Left, 2), "the leave wins over the claim at u32::MAX");
}

#[test]
fn a_member_accused_at_u32_max_refutes_and_is_alive_again_everywhere() {
    let config = Config::local();
    let mut c = Cluster::formed(4, config.clone());
    let x = 2u32;
    let x_id = id("c");
    // c sits in the upper half of the circle, where a claim at u32::MAX is newer than its own.
    raise_incarnation(&mut c, x, 1, HALF + HALF / 2);
    c.clear_events();

    // One forged claim of a dozen plaintext bytes, as if b sent it, lands at a.
    let forged = forged_suspect("c", u32::MAX, "b");
    assert!(forged.len() <= 14, "{} bytes", forged.len());
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &forged).unwrap();
    assert_eq!(c.node(0).member(&x_id).unwrap().state, MemberState::Suspect);

    // The refutation must win before anyone's suspicion could time out.
    let (min_timeout, max_timeout) = crate::suspicion::suspicion_bounds(&config, 4);
    let refuted = c.advance_until(min_timeout.as_millis() as u64, |c| {
        c.count(x, |e| matches!(e, Event::Refuted { .. })) > 0 && everyone_holds_alive(c, x)
    });
    let views: Vec<_> =
        (0..4u32).filter(|i| *i != x).map(|i| c.node(i).member(&x_id).map(|m| (m.state, m.incarnation))).collect();
    assert!(
        refuted,
        "c refutes the claim at u32::MAX and everyone holds it alive at {}: views {views:?}",
        c.node(x).incarnation()
    );
    assert_eq!(c.node(x).incarnation(), 0, "the refutation wrapped to 0");

    // And it stays that way: nobody's suspicion of c survives.
    c.advance(2 * max_timeout.as_millis() as u64);
    assert!(everyone_holds_alive(&c, x));
    for i in 0..4u32 {
        assert_eq!(c.count(i, |e| is_failed(e, &x_id)), 0, "node {i} never declares c failed");
    }
}

#[test]
fn a_claim_more_than_half_the_circle_ahead_is_ignored_as_stale() {
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    let x_id = id("c");
    // From incarnation 0, u32::MAX and HALF + 1 lie behind: an absurd jump is not news.
    for claim in [u32::MAX, HALF + 1] {
        let now = c.now;
        c.nodes[0].handle_packet(now, 1, &forged_suspect("c", claim, "b")).unwrap();
        c.nodes[2].handle_packet(now, 1, &forged_suspect("c", claim, "b")).unwrap();
        let m = c.node(0).member(&x_id).unwrap();
        assert_eq!((m.state, m.incarnation), (MemberState::Alive, 0), "a ignores the claim at {claim}");
        assert_eq!(c.node(2).incarnation(), 0, "c does not jump after the claim at {claim}");
    }
    let (_, max_timeout) = crate::suspicion::suspicion_bounds(&config, 3);
    c.advance(2 * max_timeout.as_millis() as u64);
    for i in 0..3u32 {
        assert_eq!(c.count(i, |e| matches!(e, Event::Suspected { .. } | Event::Failed { .. })), 0, "node {i}");
    }
    assert!(everyone_holds_alive(&c, 2));
}

#[test]
fn a_member_at_a_high_incarnation_keeps_refuting_across_the_wrap() {
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    let x = 2u32;
    let x_id = id("c");
    raise_incarnation(&mut c, x, 1, u32::MAX - 1);

    // Now genuine suspicions, again and again: c's acks get lost until someone suspects it.
    let (min_timeout, _) = crate::suspicion::suspicion_bounds(&config, 3);
    let mut incarnations = vec![c.node(x).incarnation()];
    for round in 0..4 {
        c.clear_events();
        let before = c.node(x).incarnation();
        c.drop_rule = Some(Box::new(move |from, t: &Transmit<u32>| from == x && t.kind == TransmitKind::Ack));
        let suspected = c.advance_until(3_000, |c| {
            (0..2u32).any(|i| c.events(i).iter().any(|e| matches!(e, Event::Suspected { id, .. } if *id == x_id)))
        });
        assert!(suspected, "round {round}: c is suspected");
        c.drop_rule = None;
        let refuted = c.advance_until(min_timeout.as_millis() as u64, |c| {
            crate::incarnation::is_newer(c.node(x).incarnation(), before) && everyone_holds_alive(c, x)
        });
        let views: Vec<_> = (0..2u32).map(|i| c.node(i).member(&x_id).map(|m| (m.state, m.incarnation))).collect();
        assert!(
            refuted,
            "round {round}: c refutes from {before} (now at {}) and everyone holds it alive: {views:?}",
            c.node(x).incarnation()
        );
        incarnations.push(c.node(x).incarnation());
    }
    let wrapped = incarnations.windows(2).any(|w| w[1] < w[0]);
    assert!(wrapped, "the incarnation wrapped past u32::MAX: {incarnations:?}");
    for i in 0..2u32 {
        assert_eq!(c.count(i, |e| is_failed(e, &x_id)), 0, "node {i} never declared c failed");
    }
}

// ----- stale news --------------------------------------------------------------------------------

/// Whether transmit `t` carries an `Alive` about `who` at an incarnation newer than `than`.
fn carries_newer_alive(t: &Transmit<u32>, who: &NodeId, than: u32) -> bool {
    decode(&t.bytes)
        .iter()
        .any(|m| matches!(m, Message::Alive(a) if a.id == *who && crate::incarnation::is_newer(a.incarnation, than)))
}

/// The local preset without periodic push-pull or re-announcing within a test: only gossip, and
/// what members send straight to one another, can repair a member that missed a refutation.
fn without_anti_entropy() -> Config {
    Config { push_pull_interval: Duration::ZERO, reannounce_interval: Duration::from_secs(3_600), ..Config::local() }
}

#[test]
fn a_member_that_missed_a_refutation_is_answered_when_it_spreads_the_stale_failure() {
    let config = without_anti_entropy();
    let n = 20;
    let mut c = Cluster::formed(n, config.clone());
    c.clear_events();
    let (x, m) = (3u32, 7u32);
    let x_id = id(&name_of(x as usize));
    let before = c.node(x).incarnation();
    let pulls_before = c.node(m).stats().push_pulls_received;

    // x's acks get lost until someone suspects it; every copy of its refutation to m gets lost until m
    // has declared it failed.
    let acks_lost = Rc::new(Cell::new(true));
    let refutation_lost = Rc::new(Cell::new(true));
    let (acks, refutation, who) = (acks_lost.clone(), refutation_lost.clone(), x_id.clone());
    c.drop_rule = Some(Box::new(move |from, t: &Transmit<u32>| {
        (acks.get() && from == x && t.kind == TransmitKind::Ack)
            || (refutation.get() && t.to == m && carries_newer_alive(t, &who, before))
    }));
    let suspected = c.advance_until(3_000, |c| {
        (0..n as u32).any(|i| c.events(i).iter().any(|e| matches!(e, Event::Suspected { id, .. } if *id == x_id)))
    });
    assert!(suspected, "x is suspected");
    acks_lost.set(false);

    let (_, max_timeout) = crate::suspicion::suspicion_bounds(&config, n);
    let failed =
        c.advance_until(2 * max_timeout.as_millis() as u64, |c| c.events(m).iter().any(|e| is_failed(e, &x_id)));
    assert!(failed, "m, deaf to the refutation, declares x failed");
    assert!(crate::incarnation::is_newer(c.node(x).incarnation(), before), "x refuted");
    let others_alive = (0..n as u32).filter(|i| *i != x && *i != m).all(|i| {
        c.node(i)
            .member(&x_id)
            .is_some_and(|mm| mm.state == MemberState::Alive && mm.incarnation == c.node(x).incarnation())
    });
    assert!(others_alive, "everyone but m got the refutation");
    refutation_lost.set(false);

    // m gossips its stale Dead claim at its next gossip tick, at most one gossip interval away; the
    // members it reaches hold x's newer record and answer at once. Three intervals leave room for a
    // round whose answers were held back by the rate limit.
    let bound = config.gossip_interval * 3;
    let repaired = c.advance_until(bound.as_millis() as u64, |c| {
        c.node(m)
            .member(&x_id)
            .is_some_and(|mm| mm.state == MemberState::Alive && mm.incarnation == c.node(x).incarnation())
    });
    let view = c.node(m).member(&x_id).map(|mm| (mm.state, mm.incarnation));
    assert!(repaired, "m sees x alive at {} within {bound:?}: it holds {view:?}", c.node(x).incarnation());
    assert_eq!(c.node(m).stats().push_pulls_received, pulls_before, "no push-pull did the repair");
    let answered: u64 = (0..n as u32).map(|i| c.node(i).stats().stale_claims_answered).sum();
    assert!(answered > 0, "the repair came from answers to the stale claim");
}

#[test]
fn a_member_answers_a_stale_claim_against_it_to_the_sender_and_the_claimant_once_per_interval() {
    let config = Config::local();
    let mut now = Instant::from_millis(0);
    let mut a: Node<u32> = Node::new(now, config.clone(), id("a"), 0, 11).unwrap();
    a.assume_alive(now, [(id("b"), 1), (id("c"), 2)]);
    a.handle_packet(now, 1, &forged_suspect("a", 0, "b")).unwrap();
    assert_eq!(a.incarnation(), 1, "a refuted a first claim");
    while a.poll_transmit().is_some() {}

    let answers_to = |a: &mut Node<u32>| -> Vec<u32> {
        let mut to: Vec<u32> = core::iter::from_fn(|| a.poll_transmit())
            .filter(|t| {
                decode(&t.bytes)
                    .iter()
                    .any(|m| matches!(m, Message::Alive(al) if al.id == id("a") && al.incarnation == 1))
            })
            .map(|t| t.to)
            .collect();
        to.sort_unstable();
        to
    };
    // c's old claim, relayed by b: both hear a's current record at once.
    let stale = packet_of(&[Message::Dead { id: id("a"), incarnation: 0, from: id("c"), left: false }]);
    a.handle_packet(now, 1, &stale).unwrap();
    assert_eq!(answers_to(&mut a), [1, 2], "answered to the sender and to the claimant");
    assert_eq!(a.stats().stale_claims_answered, 2);

    // More stale copies within the probe interval: no more answers, each one counted.
    now += config.probe_interval / 2;
    a.handle_packet(now, 1, &forged_suspect("a", 0, "c")).unwrap();
    assert_eq!(answers_to(&mut a), [] as [u32; 0], "rate limited");
    assert_eq!(a.stats().stale_answers_suppressed, 2);

    now += config.probe_interval;
    // (A claim with other bytes: repeats of the very same bytes are skipped before decoding.)
    let another = packet_of(&[Message::Dead { id: id("a"), incarnation: 0, from: id("b"), left: false }]);
    a.handle_packet(now, 2, &another).unwrap();
    assert_eq!(answers_to(&mut a), [1, 2], "a probe interval later, answers flow again");
    assert_eq!(a.incarnation(), 1, "stale claims never raise the incarnation");
}

#[test]
fn a_stale_claim_about_a_live_member_is_answered_with_the_newer_record() {
    let mut now = Instant::from_millis(0);
    let mut a: Node<u32> = Node::new(now, Config::local(), id("a"), 0, 11).unwrap();
    a.assume_alive(now, [(id("b"), 1)]);
    let newer = Alive {
        id: id("c"),
        addr: 2,
        incarnation: 5,
        meta: MetaField::Included(b"role=db".to_vec()),
        min_version: crate::wire::MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
    };
    a.handle_packet(now, 2, &packet_of(&[Message::Alive(newer.clone())])).unwrap();
    while a.poll_transmit().is_some() {}

    now += Duration::from_millis(10);
    a.handle_packet(now, 1, &forged_suspect("c", 4, "b")).unwrap();
    let m = a.member(&id("c")).unwrap();
    assert_eq!((m.state, m.incarnation), (MemberState::Alive, 5), "the stale claim changes nothing");
    let answers: Vec<Transmit<u32>> = core::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!((answers[0].to, answers[0].kind), (1, TransmitKind::Gossip));
    assert!(decode(&answers[0].bytes).contains(&Message::Alive(newer)), "b gets c's newer record");

    // The same stale claim inside a push-pull exchange is not answered: the exchange carries our state.
    let records = vec![crate::wire::MemberRecord {
        id: id("c"),
        addr: 2,
        incarnation: 4,
        state: MemberState::Dead,
        meta: Vec::new(),
        min_version: crate::wire::MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
    }];
    let pp = packet_of(&[Message::PushPull { from: id("b"), join: false, reply: true, members: records }]);
    now += Duration::from_secs(5);
    a.handle_packet(now, 1, &pp).unwrap();
    assert!(a.poll_transmit().is_none());
    assert_eq!(a.stats().stale_claims_answered, 1);
}

// ----- checks of suspects ------------------------------------------------------------------------

/// The crash of member `x` in a formed cluster: ms from the first `Suspected` anywhere to the last
/// live member's `Failed`, or `None` if not every live member declared it within 30 s.
fn suspicion_to_all_failed(c: &mut Cluster, x: u32) -> Option<u64> {
    let x_id = id(&name_of(x as usize));
    c.clear_events();
    c.crash(x);
    let suspected = |c: &Cluster| {
        c.live().iter().any(|&i| c.events(i).iter().any(|e| matches!(e, Event::Suspected { id, .. } if *id == x_id)))
    };
    if !c.advance_until(30_000, suspected) {
        return None;
    }
    let first = c.now;
    let all = |c: &Cluster| c.live().iter().all(|&i| c.events(i).iter().any(|e| is_failed(e, &x_id)));
    c.advance_until(30_000, all).then(|| c.now.saturating_duration_since(first).as_millis() as u64)
}

#[test]
fn a_crash_is_declared_by_everyone_soon_after_the_minimum_timeout_because_every_member_checks_the_suspect() {
    // With three confirmations needed (the LAN preset's `k`), waiting for round-robin probes to
    // find the crashed member gave a slow tail: each member probes it once per cluster-size periods,
    // so the third independent suspicion came seconds after the first. Every member that holds the
    // suspicion now pings the suspect itself; an unanswered check is a confirmation, gossiped.
    let config = Config { suspicion_mult: 2, suspicion_confirmations: 3, ..Config::local() };
    let n = 20;
    let (min, _) = crate::suspicion::suspicion_bounds(&config, n);
    // The minimum from hearing the suspicion, its gossip before that, and the Dead's after.
    let bound = min.as_millis() as u64 + 2 * config.probe_interval.as_millis() as u64;
    let mut slowest = 0;
    for trial in 0..12u64 {
        let mut c = Cluster::formed(n, config.clone());
        c.advance(trial * 37);
        let x = (trial * 7 % n as u64) as u32;
        let took = suspicion_to_all_failed(&mut c, x).expect("every member declares the crash");
        slowest = slowest.max(took);
        let checks_failed: u64 = c.live().iter().map(|&i| c.node(i).stats().suspect_checks_failed).sum();
        assert!(checks_failed > 0, "trial {trial}: no check confirmed the suspicion");
    }
    assert!(slowest <= bound, "the slowest of 12 crashes took {slowest} ms from the first suspicion; bound {bound} ms");
}
