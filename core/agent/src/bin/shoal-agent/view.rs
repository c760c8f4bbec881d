//! View digests (`--publish-view SECS`): every period the agent broadcasts, on topic
//! [`VIEW_TOPIC`], a checksum of its view of the cluster, so a dashboard can tell whether every
//! member sees the same membership (ringpop's checksum idea).
//!
//! The view is the set of live members including ourselves, one line each, `name state incarnation`
//! (state `alive` or `suspect`; failed and left members are out of the view), sorted by name and
//! joined with `\n`; the digest is its 32-bit FNV-1a hash as 8 lowercase hex digits. The dashboard
//! computes the same digest over its own view (www/src/live/digest.ts). The payload is JSON:
//! `{"digest":"8c1f0a2e","members":5,"health":0,"seq":17}` (`members` counts the view's lines,
//! `health` is the Lifeguard local health score).

use std::time::Duration;

use shoal::{Addr, Cluster};
use shoal_core::{Member, MemberState};

/// Topic of the view digests.
pub const VIEW_TOPIC: &str = "shoal/view";

/// FNV-1a, 32 bits.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The digest and the number of live members (ourselves included) of a view.
pub fn digest<'a>(local: &Member<Addr>, members: impl IntoIterator<Item = &'a Member<Addr>>) -> (String, usize) {
    let mut lines = vec![format!("{} alive {}", local.id.as_str(), local.incarnation)];
    for m in members {
        let state = match m.state {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead | MemberState::Left => continue,
        };
        lines.push(format!("{} {state} {}", m.id.as_str(), m.incarnation));
    }
    lines.sort();
    (format!("{:08x}", fnv1a(lines.join("\n").as_bytes())), lines.len())
}

/// Broadcasts our view digest every `period` until the cluster shuts down.
pub async fn publish(cluster: Cluster, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0u64.. {
        tick.tick().await;
        let members = cluster.members();
        let (digest, count) = digest(&cluster.local_member(), &members);
        let health = cluster.metrics().health_score;
        let payload = format!(r#"{{"digest":"{digest}","members":{count},"health":{health},"seq":{seq}}}"#);
        if cluster.broadcast_keyed(VIEW_TOPIC, b"view", payload.as_bytes()).is_err() {
            return; // shut down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Instant;

    fn member(name: &str, state: MemberState, incarnation: u32) -> Member<Addr> {
        Member {
            id: name.try_into().unwrap(),
            addr: Addr::parse("udp://127.0.0.1:1").unwrap(),
            incarnation,
            state,
            meta_complete: true,
            versions: (1, 1),
            state_since: Instant::ZERO,
            meta: Default::default(),
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn two_members_with_the_same_view_publish_the_same_digest() {
        let a = member("a", MemberState::Alive, 1);
        let b = member("b", MemberState::Alive, 3);
        let c = member("c", MemberState::Dead, 2);
        let from_a = digest(&a, [&b, &c]);
        let from_b = digest(&b, [&c, &a]);
        assert_eq!(from_a, from_b);
        assert_eq!(from_a.1, 2);
        assert_eq!(from_a.0, format!("{:08x}", fnv1a(b"a alive 1\nb alive 3")));
    }

    #[test]
    fn a_suspicion_or_a_newer_incarnation_changes_the_digest() {
        let a = member("a", MemberState::Alive, 1);
        let base = digest(&a, [&member("b", MemberState::Alive, 3)]).0;
        assert_ne!(base, digest(&a, [&member("b", MemberState::Suspect, 3)]).0);
        assert_ne!(base, digest(&a, [&member("b", MemberState::Alive, 4)]).0);
        assert_ne!(base, digest(&a, [&member("b", MemberState::Left, 3)]).0);
    }
}
