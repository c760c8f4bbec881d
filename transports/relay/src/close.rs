//! [`CloseReason`]: why the relay ends a member's WebSocket, written into the close frame.
//!
//! Every close the relay decides carries a code and a reason text. The three codes members act on
//! are shared with them ([`CloseCode`] in `shoal-core`: 1001 shutting down, 4001 replaced, 4002
//! slow consumer); the others are the relay's own and tell people what happened. Members reconnect
//! after all of them but 4001 ([`CloseCode::should_reconnect`]).
//!
//! | code | reason | when |
//! |---|---|---|
//! | 1001 | relay shutting down | [`Switchboard::close_all`](crate::Switchboard::close_all) |
//! | 4001 | replaced | a newer connection took the peer id |
//! | 4002 | slow consumer | nothing taken from the member's queue for `stall_timeout` while frames waited |
//! | 4003 | idle | nothing (no frame, no pong) received for `idle_timeout` |
//! | 1009 | message too big | a message over four times `max_frame` |
//! | 1002 | protocol error | the WebSocket layer could not parse what the member sent |
//! | 4009 | link superseded | (links between relays only) another link between the two relays won |

use shoal_core::relay::CloseCode;

/// Why the relay closed a member's connection. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The relay is shutting down (1001).
    ShuttingDown,
    /// A newer connection took this peer id (4001).
    Replaced,
    /// The member stopped reading (4002).
    SlowConsumer,
    /// Nothing arrived from the member, not even a pong, for the idle timeout (4003).
    Idle,
    /// The member sent a message larger than the relay buffers (1009).
    MessageTooBig,
    /// The member broke the WebSocket protocol (1002).
    ProtocolError,
    /// A link to another relay gave way to another link between the same two relays (4009). The
    /// dialer of the closed link does not redial while the other link is up.
    LinkSuperseded,
}

impl CloseReason {
    /// The close frame's code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::ShuttingDown => CloseCode::ShuttingDown as u16,
            CloseReason::Replaced => CloseCode::Replaced as u16,
            CloseReason::SlowConsumer => CloseCode::SlowConsumer as u16,
            CloseReason::Idle => 4003,
            CloseReason::MessageTooBig => 1009,
            CloseReason::ProtocolError => 1002,
            CloseReason::LinkSuperseded => 4009,
        }
    }

    /// The close frame's reason text.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::ShuttingDown => CloseCode::ShuttingDown.reason(),
            CloseReason::Replaced => CloseCode::Replaced.reason(),
            CloseReason::SlowConsumer => CloseCode::SlowConsumer.reason(),
            CloseReason::Idle => "idle: nothing received, not even a pong",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::ProtocolError => "websocket protocol error",
            CloseReason::LinkSuperseded => "another link between these relays is in use",
        }
    }
}

impl From<CloseCode> for CloseReason {
    fn from(code: CloseCode) -> Self {
        match code {
            CloseCode::ShuttingDown => CloseReason::ShuttingDown,
            CloseCode::Replaced => CloseReason::Replaced,
            CloseCode::SlowConsumer => CloseReason::SlowConsumer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_codes_keep_their_values_and_texts_and_only_replaced_stops_reconnection() {
        for code in [CloseCode::ShuttingDown, CloseCode::Replaced, CloseCode::SlowConsumer] {
            let r = CloseReason::from(code);
            assert_eq!((r.code(), r.text()), (code as u16, code.reason()));
        }
        for r in
            [CloseReason::Idle, CloseReason::MessageTooBig, CloseReason::ProtocolError, CloseReason::LinkSuperseded]
        {
            assert!(CloseCode::should_reconnect(r.code()), "{r:?}");
            assert!(CloseCode::from_u16(r.code()).is_none(), "{r:?} must not reuse a shared code");
        }
    }
}
