//! Application state in anti-entropy, as memberlist's `LocalState` and `MergeRemoteState`.
//!
//! An application may hand the node an opaque blob with [`Node::set_local_state`]: the part of its
//! own state that other members should converge on (a version vector, a table of leases, the
//! schema a service speaks). Every push-pull the node takes part in carries the latest blob, in
//! requests and answers alike, and the receiver hands it to its application as
//! [`Event::RemoteState`], to merge as the application sees fit. The protocol never interprets the
//! bytes and keeps only its own.
//!
//! What that buys:
//! - A member that joins gets its seeds' state in their answers (`join: true`), and they get its
//!   state in its request: nothing depends on broadcasts sent before it arrived.
//! - A member that missed an update, or came back from a partition, gets it at its next push-pull
//!   with a member that has it: within about one push-pull period (`push_pull_interval`, longer in
//!   large clusters), with no retransmission of its own.
//!
//! Bounds: the blob is at most half of `max_reliable_size`, so that membership records always keep
//! room in the frame. A path with smaller reliable frames (a relay) carries it only when it fits
//! half of that path's frame; otherwise the push-pull goes without it and the omission is counted
//! (`Stats::local_states_omitted`). A state that arrives outside a push-pull frame, or from a
//! member the admission policy refused, is dropped and counted (`Stats::remote_states_dropped`).
//!
//! Wire compatibility: the blob travels as a message type of its own (`Message::AppState`, right
//! after the push-pull). Members built without the `app-state` feature (older versions, the npm
//! package's wasm) skip it as an unknown message and take the rest of the frame.

use alloc::vec::Vec;

use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::wire::{bytes_len, Message, Writer};

use super::{CommandError, Node};

/// Bytes of a frame the message around the state takes beyond the state itself: tag and length.
const FRAMING: usize = 1 + 5;

impl<A: Address> Node<A> {
    /// Sets the application state this member hands to every push-pull it takes part in (empty:
    /// none). Call it whenever that state changes; the node keeps the latest bytes only, and the
    /// next push-pull in either direction carries them. Other members receive them as
    /// [`Event::RemoteState`]. Refused with [`CommandError::TooLarge`] above half of
    /// `max_reliable_size`. See the `app_state` module docs.
    pub fn set_local_state(&mut self, state: &[u8]) -> Result<(), CommandError> {
        let max = self.config.max_reliable_size / 2;
        if state.len() > max {
            return Err(CommandError::TooLarge { size: state.len(), max });
        }
        self.local_state = state.to_vec();
        Ok(())
    }

    /// The application state set with [`Node::set_local_state`].
    pub fn local_state(&self) -> &[u8] {
        &self.local_state
    }

    /// Bytes our state takes in a push-pull frame of at most `limit` bytes: 0 when we have none or
    /// when it does not fit half the frame (the push-pull then goes without it).
    pub(super) fn local_state_room(&self, limit: usize) -> usize {
        let size = bytes_len(self.local_state.len()) + FRAMING;
        if self.local_state.is_empty() || size > limit / 2 {
            0
        } else {
            size
        }
    }

    /// Appends our state to a push-pull frame of at most `limit` bytes, right after the push-pull
    /// message, or counts its omission when it does not fit.
    pub(super) fn write_local_state(&mut self, w: &mut Writer, limit: usize) {
        if self.local_state.is_empty() {
            return;
        }
        if self.local_state_room(limit) == 0 {
            self.stats.local_states_omitted += 1;
            return;
        }
        Message::<A>::AppState { state: self.local_state.clone() }.encode(w);
    }

    /// A push-pull frame from `sender` was admitted (`join` as its flag said): a state that follows
    /// it in the frame is that member's.
    pub(super) fn expect_remote_state(&mut self, sender: &NodeId, join: bool) {
        self.frame.state_from = Some((sender.clone(), join));
    }

    /// Hands a remote member's state to the application, or counts it dropped when no admitted
    /// push-pull came before it in the frame.
    pub(super) fn handle_app_state(&mut self, state: Vec<u8>) {
        match self.frame.state_from.take() {
            Some((from, join)) => {
                self.stats.remote_states_received += 1;
                self.emit(Event::RemoteState { from, join, state });
            }
            None => self.stats.remote_states_dropped += 1,
        }
    }
}
