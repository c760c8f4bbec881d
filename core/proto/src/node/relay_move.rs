//! Members that move between the relays of a fleet keep their names.
//!
//! A browser tab (or any member without UDP) reaches the cluster through a relay, and its address
//! names that relay: `relay://<relay>/<peer>`. When its relay dies, it reconnects through another
//! relay of the fleet with the same peer id and gets a new address there. Without help, the
//! cluster would keep the old address until it declares the member failed (an `AddressConflict`
//! for every claim from the new one until then), and an application would see a `fail` and a
//! `join` for a member that never went away.
//!
//! The rule: **an `Alive` claim for a live member at a newer incarnation moves it from
//! `relay://R1/P` to `relay://R2/P` (the same peer id) when R2 is a relay of the fleet**, that is, a
//! live member announces R2 in its metadata under the tag [`RELAY_TAG`] (`shoal-relay=R2`; the
//! relay's own member does this). The moving member calls [`Node::move_to`] with its new address;
//! that raises its incarnation and announces the new address like a refutation.
//!
//! # What a member that moved misses
//!
//! Until the news of our move reaches them, the others keep sending to our old address, through
//! the dead relay: whatever they gossip meanwhile is lost to us, and gossip sends each update a
//! bounded number of times. When a relay dies its members all move at once, so the news they miss
//! is mostly each other's moves: with 1,000 members and 334 moves (the `fleet_scale` tests), the
//! moves took a second or two to reach everyone, and of the (observer, moved member) pairs still
//! waiting 4 s after the relay died, two thirds had a moved member as the observer. The push-pull
//! a member runs when its link comes back is too early to carry the moves made after it. So a
//! member that moved also runs the push-pulls of a member that joins
//! ([`CATCH_UP_ROUNDS`](super::CATCH_UP_ROUNDS) of them, 1, 3 and 7 protocol periods after the
//! move, each with a random member), by which time its new address has spread, and so have the
//! other moves. Each asks with a member digest and gets back only the records that differ. Its
//! partners, in these and in any later push-pull, are never members it still addresses through
//! the relay it left: a third of the cluster when a relay of three dies, and a round lost with
//! each one picked.
//!
//! # Members pull the moves of a burst they missed
//!
//! When a relay dies its members all move at once, and every queue holds hundreds of moves: at
//! 1,000 members, 334 moves, about 40 to a 1,400-byte packet. Gossip sends each one a bounded
//! number of times to random members, so most pairs (observer, moved member) have the news within
//! a second or two, and a few hundred pairs receive their copies late, or none, and hold the
//! member at its dead relay for several seconds more (in the `fleet` bench, 224 pairs over 5 s and
//! the last at 9.9 s). A member that receives datagrams (a native member, `udp://` or `tcp://`)
//! is worse off when packets between relayed members are larger (see
//! [`Config::relayed_packet_size`](crate::Config::relayed_packet_size), off in every preset): the
//! queues drain faster than its datagrams sample them, and at 8 KiB it missed every copy of 1 in
//! 20 of the moves.
//!
//! So a member that takes a move pulls the rest of the burst: 3 to 3.5 protocol periods after
//! the first move it takes, and again 3 periods later, at most once every 10 periods, **if it
//! still holds members alive at addresses through the relay the move left**, it asks for their
//! records alone (a push-pull request with our own record and their names, at most
//! [`MAX_WANTED_RECORDS`](crate::wire::MAX_WANTED_RECORDS); the answer carries the partner's own record and its records of them).
//! By then gossip has carried nearly every move, so most members ask nothing, and those that ask
//! name a few members and get a few records back. The partner of the first pull is the member
//! whose move we took: it heard the other moves through its relay, and we know to hold it at its
//! new address. The second asks a random member that we do not address through the dead relay.
//! With these pulls the bench's last pair came back 4.5-5.6 s after the kill, and none later than
//! 5 s in 3 runs of 4.
//!
//! What fell short in the `fleet` bench: gossip alone left a few hundred pairs over 5 s. Pulling
//! with a member digest (back the records of every bucket that differs) 2 periods after the first
//! move caught the tail, but while moves and refutations are still spreading most buckets differ:
//! every member pulled most of a view at once, and acks came late enough for 10,000-16,000
//! suspicions of members that never moved.
//!
//! Only with the `member-digests` feature (the `shoal` crate's). The npm package's members are
//! built without it and rely on gossip alone.
//!
//! # Members left behind on a dead relay
//!
//! Gossip sends each update a bounded number of times to random members, so a member can miss
//! every copy of a move: in the `fleet_scale` runs an (observer, moved member) pair received 11
//! (300 members) to 15 (1,000 members) copies of the news on average, and one run in three at 300
//! members had one or two of its 30,200 pairs receive none. Such an observer holds the member
//! alive at its old address, and nothing corrects that soon: it says nothing about the member that
//! others could answer, its periodic push-pull comes every 150 s at 300 members, and its
//! round-robin probes reach the member after up to one protocol period per member (one such pair
//! was still stale 60 s after the relay died). Once the relay's own member fails or leaves and no
//! live member announces the relay any more, every address through it is unreachable: the members
//! we still hold alive there are probed next, before the round-robin order goes on. One that moved
//! without our hearing of it is then suspected at its old incarnation, whoever knows of the move
//! answers that stale suspicion with the newer record (see `answers`), and we take the move. One
//! that did not come back is suspected and declared failed as usual, a little sooner.
//!
//! # Threat model
//!
//! Who can make such a claim true? Packets from `relay://R2/P` come only from the connection that
//! holds peer id P on R2: the relay stamps every source. Whoever can open that connection (a holder
//! of R2's token) could already take P over on any relay of the fleet, whose relays each replace an
//! older connection by a newer one with the same peer id. So the rule adds no power to a token
//! holder, and none to anyone else:
//!
//! - A relay that is not a live member tagged as a relay (someone's own relay server, which can
//!   stamp any peer id under its own address) is not trusted: a claim through it stays a conflict.
//!   In an encrypted cluster, becoming that member takes the cluster key.
//! - The claim must be newer than the record held, so replaying an old move changes nothing.
//! - Gossip carries claims from any member: a key holder (any peer in a plaintext cluster) can
//!   forge a move, exactly as it can forge a suspicion today. The real member hears it and refutes
//!   from its real address (a newer claim, moved back by the same rule), and the forgery never
//!   receives the member's traffic beyond that.
//! - Only addresses through relays move this way. A member at `udp://` or `tcp://` whose address
//!   changes is a new life of the member: its old address is declared failed first, or an
//!   application installs a conflict policy (`Node::set_conflict_policy`).

use crate::identity::{Address, NodeId};
use crate::member::Metadata;
use crate::time::Instant;
#[cfg(any(feature = "member-digests", test))]
use crate::wire::MAX_WANTED_RECORDS;
#[cfg(any(feature = "member-digests", test))]
use alloc::vec::Vec;

use super::timers::Timer;
use super::Node;

/// A pull of the moves of a burst (see the module docs): until when a move we take schedules no
/// other, the member whose move scheduled it (the pull's partner), and the address we held that
/// member at before (through the relay the burst left).
#[cfg(any(feature = "member-digests", test))]
#[derive(Clone, Debug)]
pub(super) struct MovesPulled<A> {
    until: Instant,
    mover: NodeId,
    left: A,
}

/// The metadata tag a relay's member announces: `shoal-relay=<relay>`, where `<relay>` is the
/// `host:port` its members' addresses name (`relay://<relay>/<peer>`).
pub const RELAY_TAG: &str = "shoal-relay";

impl<A: Address> Node<A> {
    /// Our address changed: a relayed member reconnected through another relay of the fleet with
    /// the same peer id and was welcomed at `addr`. Call it once the new relay has welcomed us,
    /// before sending anything through it. Raises our incarnation and announces the new address as
    /// eagerly as a refutation; members that know the new relay as part of the fleet take the
    /// move when a live member announces the new relay under [`RELAY_TAG`] (the rule and its
    /// threat model: SECURITY.md, "Relay fleets"). A call with the address we have does nothing.
    ///
    /// The push-pulls that follow, once the move has had time to spread, fetch what the others
    /// gossiped to the old address meanwhile (see the module docs).
    pub fn move_to(&mut self, now: Instant, addr: A) {
        if addr == self.local.addr {
            return;
        }
        self.moved_from = Some(core::mem::replace(&mut self.local.addr, addr));
        let old_incarnation = self.local.incarnation;
        self.local.incarnation = crate::incarnation::next(old_incarnation);
        self.incarnation_moved(old_incarnation, self.local.incarnation);
        // Sent as often as a refutation: a member that misses it keeps probing the old address.
        let bytes = self.self_alive().to_bytes();
        let order = self.next_announcement();
        self.membership_updates.push_boosted(Some(self.local_key()), order, bytes);
        self.stats.moves += 1;
        // What the others sent to the old address until they heard of the move is lost to us.
        self.timers.set(now + self.config.probe_interval, Timer::CatchUp { round: 1 });
    }

    /// Whether a live member at `known` may move to `claimed` (the claim being newer): both are
    /// addresses through relays with the same peer id, and `claimed`'s relay is announced by a live
    /// member or by ourselves (the relay's own member hears its members move in too).
    pub(super) fn is_relay_move(&self, known: &A, claimed: &A) -> bool {
        let (Some((_, from_peer)), Some((relay, to_peer))) = (known.relay_route(), claimed.relay_route()) else {
            return false;
        };
        from_peer == to_peer && self.relay_announced(relay.as_bytes())
    }

    /// Whether a live member, or we, announce `relay` under [`RELAY_TAG`].
    fn relay_announced(&self, relay: &[u8]) -> bool {
        announces_relay(&self.local.meta, relay)
            || self.members.iter().any(|m| m.state.is_live() && announces_relay(&m.meta, relay))
    }

    /// We took `mover`'s move between relays, away from `left` (the address we held it at). Pulls
    /// the other moves of the burst 3 to 3.5 protocol periods later and 3 periods after that, at
    /// most once every 10, each only if we still hold a member alive at an address through the
    /// relay `left` names (see the module docs).
    #[cfg(any(feature = "member-digests", test))]
    pub(super) fn pull_the_other_moves(&mut self, now: Instant, mover: &NodeId, left: A) {
        if self.moves_pulled.as_ref().is_some_and(|pull| now < pull.until) {
            return;
        }
        let period = self.config.probe_interval;
        self.moves_pulled = Some(MovesPulled { until: now + period * 10, mover: mover.clone(), left });
        let at = now + period * 3 + self.jitter(period / 2);
        self.timers.set(at, Timer::PullMoves { round: 1 });
    }

    /// Pull `round` (1 or 2) of the moves we missed, if we still hold members alive at addresses
    /// through the relay the burst left: a push-pull asking for their records alone, in round 1
    /// with the member whose move we took (it is reachable: we hold it at its new address, and it
    /// heard the other moves through its relay), in round 2 (or if it is gone) with a random
    /// member we do not address through that relay.
    #[cfg(any(feature = "member-digests", test))]
    pub(super) fn on_pull_moves(&mut self, round: u32, now: Instant) {
        let Some(pull) = self.moves_pulled.as_ref() else {
            return;
        };
        let stale = self.held_through_the_relay_of(&pull.left);
        if self.status != super::Status::Running || stale.is_empty() {
            return;
        }
        let mover = self.members.get(&pull.mover).filter(|m| round == 1 && m.state.is_live());
        let to = match mover {
            Some(m) => Some(m.addr.clone()),
            None => {
                let left = pull.left.clone();
                self.random_alive_addr_avoiding(Some(&left))
            }
        };
        if let Some(to) = to {
            self.send_push_pull_wanting(to, stale);
            self.stats.moves_pulled += 1;
        }
        if round == 1 {
            self.timers.set(now + self.config.probe_interval * 3, Timer::PullMoves { round: 2 });
        }
    }

    /// The members we hold alive (or suspect) at addresses through the relay `addr` names, at most
    /// [`MAX_WANTED_RECORDS`] of them.
    #[cfg(any(feature = "member-digests", test))]
    fn held_through_the_relay_of(&self, addr: &A) -> Vec<NodeId> {
        let Some((relay, _)) = addr.relay_route() else {
            return Vec::new();
        };
        let through =
            |m: &&crate::member::Member<A>| m.state.is_live() && m.addr.relay_route().is_some_and(|(r, _)| r == relay);
        self.members.iter().filter(through).take(MAX_WANTED_RECORDS).map(|m| m.id.clone()).collect()
    }

    /// A member with metadata `meta` failed or left. If it announced a relay that no live member
    /// announces now, the members we hold alive at addresses through that relay are probed next
    /// (see the module docs).
    pub(super) fn member_gone(&mut self, meta: &Metadata) {
        let Some(relay) = announced_relay(meta) else {
            return;
        };
        if self.relay_announced(relay) {
            return;
        }
        for m in self.members.iter() {
            let through = m.addr.relay_route().is_some_and(|(r, _)| r.as_bytes() == relay);
            if through && m.state.is_live() && !self.stranded.contains(&m.id) {
                self.stranded.push(m.id.clone());
            }
        }
    }

    /// The next member to probe before the round-robin order: one still held alive at an address
    /// through a relay no live member announces (it did not move since, and the relay is not back).
    pub(super) fn next_stranded(&mut self) -> Option<NodeId> {
        while let Some(id) = self.stranded.pop() {
            let Some(m) = self.members.get(&id).filter(|m| m.state.is_live()) else {
                continue;
            };
            if m.addr.relay_route().is_some_and(|(relay, _)| !self.relay_announced(relay.as_bytes())) {
                return Some(id);
            }
        }
        None
    }
}

/// The relay that metadata in tag form announces under [`RELAY_TAG`], if any: its value, as
/// [`announces_relay`] reads it.
fn announced_relay(meta: &Metadata) -> Option<&[u8]> {
    meta.as_bytes().split(|b| *b == b',').find_map(|pair| pair.strip_prefix(RELAY_TAG.as_bytes())?.strip_prefix(b"="))
}

/// Whether metadata in tag form holds `shoal-relay=<relay>`. Read without decoding the tags: a
/// relay's `host:port` has no character that tags escape (`%`, `,`, `=`), so its escaped form is
/// itself.
fn announces_relay(meta: &Metadata, relay: &[u8]) -> bool {
    meta.as_bytes().split(|b| *b == b',').any(|pair| {
        pair.strip_prefix(RELAY_TAG.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .is_some_and(|value| value == relay)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::Tags;

    #[test]
    fn a_relay_tag_is_found_among_other_tags_and_only_as_a_whole_key_and_value() {
        let meta = |pairs: &[(&str, &str)]| Tags::from_pairs(pairs.iter().copied()).unwrap().to_metadata();
        let m = Metadata::new(&meta(&[("role", "relay"), (RELAY_TAG, "r2.example:443"), ("zone", "a")]));
        assert!(announces_relay(&m, b"r2.example:443"));
        assert!(!announces_relay(&m, b"r2.example:44"), "a prefix of the value");
        assert!(!announces_relay(&m, b"r2.example:4433"), "a longer value");
        let other_key = Metadata::new(&meta(&[("x-shoal-relay", "r2.example:443")]));
        assert!(!announces_relay(&other_key, b"r2.example:443"), "a key ending in the tag");
        let longer_key = Metadata::new(&meta(&[("shoal-relayed", "r2.example:443")]));
        assert!(!announces_relay(&longer_key, b"r2.example:443"), "a key starting with the tag");
        assert!(!announces_relay(&Metadata::new(b"\xff\x00shoal-relay=r2.example:443"), b"r2.example:443"));
        assert_eq!(announced_relay(&m), Some(&b"r2.example:443"[..]), "the relay it announces");
        assert_eq!(announced_relay(&other_key), None);
        assert_eq!(announced_relay(&longer_key), None);
    }
}
