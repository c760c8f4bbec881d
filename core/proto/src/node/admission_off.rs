//! Without the `admission` feature every member is admitted, every address conflict is rejected,
//! and no code is spent asking.

use crate::identity::{Address, NodeId};

use super::Node;

impl<A: Address> Node<A> {
    /// Always true: no policy can be installed in this build.
    #[inline(always)]
    pub(super) fn admits(&mut self, _id: &NodeId, _addr: &A, _meta: Option<&[u8]>, _versions: (u8, u8)) -> bool {
        true
    }

    /// Always false: no conflict policy can be installed in this build.
    #[inline(always)]
    pub(super) fn takes_claim(&mut self, _id: &NodeId, _known: (&A, u32), _claimed: (&A, u32)) -> bool {
        false
    }
}
