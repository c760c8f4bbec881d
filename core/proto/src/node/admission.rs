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

impl<A: Address> Node<A> {
    /// Installs `policy`, asked about every member before it is added or its record replaced (see
    /// the [`admission`](self) module). Call it right after [`Node::new`], before joining: members
    /// already known are not asked again.
    pub fn set_admission(&mut self, policy: impl Fn(&Candidate<'_, A>) -> bool + Send + Sync + 'static) {
        self.admission = Some(Box::new(policy));
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
