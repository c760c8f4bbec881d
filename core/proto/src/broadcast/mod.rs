//! User broadcasts: exactly-once delivery, gaps that are repaired or reported, and keyed state.
//!
//! # Identity and order
//! Every broadcast carries `(origin, epoch, seq)`. The epoch is drawn when the origin starts, so a
//! restarted origin never collides with its previous life. Unkeyed broadcasts (events) and keyed
//! broadcasts (state: a newer value under the same topic and key replaces the older) count `seq`
//! separately; unkeyed ones count without holes, which is what lets a receiver see what it missed.
//!
//! # Delivery ([`Ledger`])
//! For each origin and epoch, a receiver knows `next` (one past the highest sequence number it has
//! seen) and the set of numbers below `next` it has not received yet, each with the time it noticed
//! the hole. A broadcast is delivered if it fills a hole or raises `next`, never twice, and never by
//! its own origin (not even one of a life before a restart). Keyed values are delivered when newer
//! than the value held for their key, so an older value never follows a newer one (within a life, by
//! `seq`; across lives, the life seen later wins).
//!
//! # Arriving
//! A member does not expect what was sent before it arrived (in this life: a restarted member is new
//! too). The first push-pull digest it learns from tells it where each origin stood: the join
//! answer's or, for a member found without joining, the finder's request's or the answer to the
//! request it then sends at once. A seed that started alone and is found by a member new in its
//! life (a request with no digest) expects everything from then on: the finder brings no past, so
//! nothing anyone sends afterwards was sent before the seed was there.
//! Until then its push-pulls carry no digest, so the answers bring keyed values and no past events,
//! and a life it first hears of starts where it first sees it. A member restored out of band
//! ([`crate::Node::assume_alive`]) counts as arrived from its start.
//!
//! # Repair ([`Log`] and digests)
//! Gossip reaches every member with high probability, not certainty: loss, partitions and full
//! queues can leave holes. Each member keeps what it delivered for `broadcast_retention` (keyed
//! values for as long as their origin lives), and every push-pull repairs the initiator: its request
//! carries a digest (per origin and epoch: `next`, the holes, a hash of the keyed values held), and
//! the answer carries the retained broadcasts the digest lacks plus the answerer's own digest, from
//! which the initiator learns of broadcasts it never heard about at all. Members initiate push-pull
//! every period, so a hole closes within about one period of the member that has it.
//!
//! # Reporting
//! Nothing is lost silently. A hole still open `broadcast_retention` after it was noticed can no
//! longer be repaired; the receiver counts it (`Stats::broadcasts_missed`) and reports
//! [`crate::Event::BroadcastsMissed`]. An origin whose full queue drops one of its own broadcasts
//! before it was sent its full number of times reports [`crate::Event::BroadcastDropped`] (the
//! broadcast can still be repaired from its log).
//!
//! One bound: members forget an origin that departed once it has been quiet for twice their reap
//! time plus a retention (`Ledger::forget_quiet`; 150 s on `local`, 13 min on `lan`), and stop
//! listing it in their digests. A member cut off from every member that held such an origin's
//! broadcasts for longer than that, while the origin departed, hears nothing of them when it
//! comes back, so it cannot report them either.

mod fingerprint;
mod ledger;
mod log;

pub(crate) use fingerprint::Fingerprint;
pub(crate) use ledger::{Ledger, Verdict};
#[cfg(test)]
pub(crate) use ledger::{MAX_HOLES, MAX_OPEN_HOLES};
pub(crate) use log::{Log, Wanted};
