//! Admission: an application's say in who becomes a member (memberlist's Alive and Merge
//! delegates, its `CIDRsAllowed`).
//!
//! A node with a policy ([`Node::set_admission`]) asks it about every member before adding it,
//! and again whenever a member announces a new record (new metadata, a new address after a
//! restart). A refused member is never added. A member admitted before whose new record is refused
//! is declared failed here ([`crate::Event::Failed`] by ourselves), a verdict that is not spread:
//! members that run the same policy reach it themselves. A join is the same question asked of the joiner's own record: a seed that refuses it
//! neither merges the joiner's view nor answers, so the joiner's `join` fails as if no seed had
//! answered, and a joiner that refuses the seed it reached keeps nothing from it. Every refusal
//! is counted in [`crate::Stats::members_refused`].
//!
//! The policy sees a member's record as announced: its name, the address it advertises, its
//! protocol versions and its metadata. Metadata larger than `max_gossip_meta` travels without its
//! bytes and is fetched later, so the policy sees `None` for it: keep the tags a policy decides on
//! small. Members of one cluster should run the same policy; one that differs splits views.
//!
//! # Address conflicts
//! By default an alive claim for the name of a live member from another address is rejected and
//! reported ([`crate::Event::AddressConflict`]): one packet must not move a member elsewhere. That
//! also holds up a member restarted on a new address (a rescheduled container) until its old
//! address is declared failed. A conflict policy ([`Node::set_conflict_policy`]) decides instead,
//! seeing both addresses and incarnations: it may take the claim, and the member moves to the new
//! address at once ([`crate::Event::Updated`], counted in `Stats::address_conflicts_taken`). Only a
//! claim with a newer incarnation than the one held is ever offered: a member refuting from its new
//! address has one, an echo of an old record does not. Our own name is never given away.
//!
//! The threat model is the one of every record: in plaintext anyone who can send us a packet can
//! make such a claim, so a policy that takes claims lets them take names. Take claims only with
//! encryption on (only key holders can then claim), or only for addresses you trust (a subnet).

use alloc::boxed::Box;

use crate::identity::{Address, NodeId};

use super::Node;

/// What a member announces about itself, as an admission policy sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Candidate<'a, A> {
    /// The member's name.
    pub id: &'a NodeId,
    /// The address it advertises: where everyone will send it packets.
    pub addr: &'a A,
    /// Its metadata; `None` while metadata too large for gossip is still to be fetched.
    pub meta: Option<&'a [u8]>,
    /// The protocol versions it speaks (min, max).
    pub versions: (u8, u8),
}

/// An admission policy: `true` admits the member.
pub type AdmissionPolicy<A> = Box<dyn Fn(&Candidate<'_, A>) -> bool + Send + Sync>;

/// An alive claim for a live member's name from another address, as a conflict policy sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Conflict<'a, A> {
    /// The member's name.
    pub id: &'a NodeId,
    /// The address we hold for it, and its incarnation there.
    pub known: (&'a A, u32),
    /// The address the claim names, and the claim's incarnation (always newer).
    pub claimed: (&'a A, u32),
}

/// A conflict policy: `true` takes the claim (the member moves to the claimed address).
pub type ConflictPolicy<A> = Box<dyn Fn(&Conflict<'_, A>) -> bool + Send + Sync>;

impl<A: Address> Node<A> {
    /// Installs `policy`, asked about every member before it is added or its record replaced (see
    /// the [`admission`](self) module). Call it right after [`Node::new`], before joining: members
    /// already known are not asked again.
    pub fn set_admission(&mut self, policy: impl Fn(&Candidate<'_, A>) -> bool + Send + Sync + 'static) {
        self.admission = Some(Box::new(policy));
    }

    /// Installs `policy`, asked about every alive claim with a newer incarnation for a live
    /// member's name from another address (see [Address conflicts](self#address-conflicts)). Call
    /// it right after [`Node::new`]. Without one, such claims are rejected.
    pub fn set_conflict_policy(&mut self, policy: impl Fn(&Conflict<'_, A>) -> bool + Send + Sync + 'static) {
        self.conflict_policy = Some(Box::new(policy));
    }

    /// Whether the conflict policy (if any) takes this claim; a taken claim is counted.
    pub(super) fn takes_claim(&mut self, id: &NodeId, known: (&A, u32), claimed: (&A, u32)) -> bool {
        let Some(policy) = &self.conflict_policy else {
            return false;
        };
        let taken = policy(&Conflict { id, known, claimed });
        if taken {
            self.stats.address_conflicts_taken += 1;
        }
        taken
    }

    /// Whether the policy (if any) admits this record; a refusal is counted.
    pub(super) fn admits(&mut self, id: &NodeId, addr: &A, meta: Option<&[u8]>, versions: (u8, u8)) -> bool {
        let Some(policy) = &self.admission else {
            return true;
        };
        let admitted = policy(&Candidate { id, addr, meta, versions });
        if !admitted {
            self.stats.members_refused += 1;
        }
        admitted
    }
}
