//! The relay envelope: how packets travel between relayed members (browsers, edge runtimes) and
//! everyone else through a `shoal-relay` server. Pure encoding, no I/O: the relay server, the
//! native UDP and WebSocket transports and the wasm package all use these functions.
//!
//! A relayed member is addressed `relay://<relay host:port>/<peer id>`. Frames carry one address and
//! one Shoal packet, opaque to the relay:
//!
//! | path | frame |
//! |---|---|
//! | member → relay over WebSocket (binary message) | `[len: u8][destination address][packet]` |
//! | relay → member over WebSocket | `[len: u8][source address][packet]`; the relay stamps the source |
//! | native UDP member → relay UDP port | `[0xF0][len: u8][destination peer id][packet]` |
//! | relay UDP port → native UDP member | `[0xF0][len: u8][source address][packet]` |
//!
//! The relay always writes the source itself (from the WebSocket session or the UDP source address),
//! so a member cannot spoof another. A native member accepts a relay datagram only if it came from
//! the socket address named in the source's `relay://host:port` part.
//!
//! The first WebSocket message the relay sends after accepting a member is a "welcome": a frame
//! whose address is the member's own `relay://` address and whose packet is empty.
//!
//! **WebRTC signalling** rides the same WebSocket in frames of their own, told apart by a leading
//! zero byte (a packet frame starts with its address length, 1-255, so old members and relays
//! never produce one and drop it as malformed): `[0x00][len: u8][address][kind: u8][body]`, the
//! address being the destination on the way in and the relay-stamped source on the way out, as for
//! packets. [`SignalKind`] names the messages (offer, answer, candidate, bye, invite); bodies are opaque to the relay (the wasm package
//! and `shoal-webrtc` put an SDP or an ICE candidate there as JSON text). Two members that offer to
//! each other at once resolve the glare with [`offer_wins`]: the offer of the lower address stands,
//! the other side drops its own offer and answers.
//!
//! **Closing and reconnecting.** When the relay ends a member's connection it says why in the
//! WebSocket close frame ([`CloseCode`]). A member whose connection dropped reconnects with the same
//! peer id and gets the same address back, so the cluster sees no change of address; the one
//! exception is [`CloseCode::Replaced`]: another connection now holds the peer id (a second tab with
//! the same name, or a member that already reconnected), and reconnecting would only take it back
//! and start a tug of war.
use std::prelude::rust_2021::*;

use std::net::SocketAddr;

use crate::addr::Addr;

/// First byte of a relay datagram (Shoal packets start with a protocol version 1-127 or 0xE1).
pub const RELAY_DATAGRAM_MARKER: u8 = 0xF0;
/// Longest peer id, in bytes.
pub const MAX_PEER_ID_LEN: usize = 64;
/// The URL scheme of relayed addresses.
pub const RELAY_SCHEME: &str = "relay";
/// The largest reliable frame sent to a relayed member: under the relay's default 64 KiB frame cap
/// with room for the envelope. Push-pull state to relayed members is cut to fit.
pub const RELAYED_RELIABLE_LIMIT: usize = 60 * 1024;

/// First byte of a signalling frame on a relay WebSocket (see the module docs).
pub const SIGNAL_TAG: u8 = 0x00;

/// Why the relay closed a member's WebSocket: the close frame's code (its reason text is for
/// people). Codes 4000-4999 are the application's range in RFC 6455.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// The relay is shutting down (1001, "going away"). Reconnect: it may be restarting.
    ShuttingDown = 1001,
    /// A newer connection took this peer id. Do not reconnect.
    Replaced = 4001,
    /// The member did not read what was sent to it fast enough and its queue filled up. Reconnect.
    SlowConsumer = 4002,
}

impl CloseCode {
    /// The code of a close frame, if it is one of these.
    pub fn from_u16(code: u16) -> Option<CloseCode> {
        match code {
            1001 => Some(CloseCode::ShuttingDown),
            4001 => Some(CloseCode::Replaced),
            4002 => Some(CloseCode::SlowConsumer),
            _ => None,
        }
    }

    /// Whether a member whose connection closed with `code` should reconnect: every code but
    /// [`CloseCode::Replaced`], including codes that are none of these (a dropped TCP connection,
    /// a proxy's timeout).
    pub fn should_reconnect(code: u16) -> bool {
        code != CloseCode::Replaced as u16
    }

    /// The close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::ShuttingDown => "relay shutting down",
            CloseCode::Replaced => "replaced by a newer connection with the same peer id",
            CloseCode::SlowConsumer => "slow consumer: queue full",
        }
    }
}

/// The WebRTC signalling messages relayed between two members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// An SDP offer: the sender wants a direct connection.
    Offer = 1,
    /// The SDP answer to an offer.
    Answer = 2,
    /// One trickled ICE candidate.
    Candidate = 3,
    /// The sender closed its connection to the receiver (leave, page hidden, gave up).
    Bye = 4,
    /// The sender asks the receiver to offer: a native member (`shoal-webrtc`), which only answers,
    /// invites the browsers it has traffic for. The body names the sender's member address, which
    /// the receiver then uses for the channel's packets.
    Invite = 5,
}

impl SignalKind {
    /// The kind with wire value `b`.
    pub fn from_u8(b: u8) -> Option<SignalKind> {
        Some(match b {
            1 => SignalKind::Offer,
            2 => SignalKind::Answer,
            3 => SignalKind::Candidate,
            4 => SignalKind::Bye,
            5 => SignalKind::Invite,
            _ => return None,
        })
    }
}

/// `[0x00][len][address][kind][body]`, a signalling frame (both directions).
pub fn encode_signal_frame(addr: &str, kind: SignalKind, body: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(addr.len()).ok().filter(|l| *l > 0)?;
    let mut out = Vec::with_capacity(3 + addr.len() + body.len());
    out.extend_from_slice(&[SIGNAL_TAG, len]);
    out.extend_from_slice(addr.as_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    Some(out)
}

/// Parses a signalling frame into its address text, kind and body.
pub fn decode_signal_frame(frame: &[u8]) -> Result<(&str, SignalKind, &[u8]), RelayFrameError> {
    match frame.split_first() {
        Some((&SIGNAL_TAG, rest)) => {
            let (addr, payload) = decode_ws_frame(rest)?;
            let (&kind, body) = payload.split_first().ok_or(RelayFrameError::Truncated)?;
            Ok((addr, SignalKind::from_u8(kind).ok_or(RelayFrameError::BadSignal)?, body))
        }
        Some(_) => Err(RelayFrameError::NotRelay),
        None => Err(RelayFrameError::Truncated),
    }
}

/// Glare resolution: when `local` and `remote` have both sent an offer, whether `local`'s offer
/// stands. The lower address (byte order) wins, so exactly one side keeps its offer whatever the
/// timing; the other rolls back and answers.
pub fn offer_wins(local: &str, remote: &str) -> bool {
    local < remote
}

/// A frame that failed to parse. The sender's fault; drop it and count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayFrameError {
    /// Shorter than its header says.
    Truncated,
    /// Not starting with the datagram marker.
    NotRelay,
    /// The address is not valid UTF-8 or not a valid address / peer id.
    BadAddress,
    /// A signalling frame of an unknown kind.
    BadSignal,
}

impl std::fmt::Display for RelayFrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RelayFrameError::Truncated => "relay frame truncated",
            RelayFrameError::NotRelay => "not a relay datagram",
            RelayFrameError::BadAddress => "relay frame carries an invalid address",
            RelayFrameError::BadSignal => "signalling frame of an unknown kind",
        })
    }
}

impl std::error::Error for RelayFrameError {}

/// Whether a peer id is acceptable: 1-64 bytes of `[A-Za-z0-9._-]`.
pub fn valid_peer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PEER_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `relay://<relay>/<peer>`.
pub fn relay_addr(relay: &str, peer: &str) -> Option<Addr> {
    if !valid_peer_id(peer) {
        return None;
    }
    Addr::parse(&format!("{RELAY_SCHEME}://{relay}/{peer}")).ok()
}

/// Splits `relay://host:port/peer` into the relay's socket address (when it is an `ip:port`) and
/// the peer id.
pub fn split_relay_addr(addr: &Addr) -> Option<(&str, &str)> {
    if addr.scheme() != RELAY_SCHEME {
        return None;
    }
    let (relay, peer) = addr.rest().rsplit_once('/')?;
    valid_peer_id(peer).then_some((relay, peer))
}

/// The relay's socket address in a `relay://ip:port/peer` address.
pub fn relay_socket(addr: &Addr) -> Option<SocketAddr> {
    split_relay_addr(addr)?.0.parse().ok()
}

/// `[len][address][packet]`, the WebSocket frame (both directions).
pub fn encode_ws_frame(addr: &str, packet: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(addr.len()).ok()?;
    let mut out = Vec::with_capacity(1 + addr.len() + packet.len());
    out.push(len);
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(packet);
    Some(out)
}

/// Parses a WebSocket frame into its address text and packet.
pub fn decode_ws_frame(frame: &[u8]) -> Result<(&str, &[u8]), RelayFrameError> {
    let (&len, rest) = frame.split_first().ok_or(RelayFrameError::Truncated)?;
    let len = usize::from(len);
    if rest.len() < len || len == 0 {
        return Err(RelayFrameError::Truncated);
    }
    let addr = std::str::from_utf8(&rest[..len]).map_err(|_| RelayFrameError::BadAddress)?;
    Ok((addr, &rest[len..]))
}

/// `[0xF0][len][address or peer id][packet]`, the UDP datagram (both directions).
pub fn encode_datagram(addr: &str, packet: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(addr.len()).ok()?;
    let mut out = Vec::with_capacity(2 + addr.len() + packet.len());
    out.push(RELAY_DATAGRAM_MARKER);
    out.push(len);
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(packet);
    Some(out)
}

/// Parses a relay datagram into its address text and packet.
pub fn decode_datagram(datagram: &[u8]) -> Result<(&str, &[u8]), RelayFrameError> {
    match datagram.split_first() {
        Some((&RELAY_DATAGRAM_MARKER, rest)) => decode_ws_frame(rest),
        Some(_) => Err(RelayFrameError::NotRelay),
        None => Err(RelayFrameError::Truncated),
    }
}

/// For a native member: the true source of a relay datagram that arrived from socket `from`, if it
/// is well formed and really came from the relay it names.
pub fn accept_relay_datagram(from: SocketAddr, datagram: &[u8]) -> Result<(Addr, &[u8]), RelayFrameError> {
    let (source, packet) = decode_datagram(datagram)?;
    let source = Addr::parse(source).map_err(|_| RelayFrameError::BadAddress)?;
    match relay_socket(&source) {
        Some(relay) if relay == from => Ok((source, packet)),
        _ => Err(RelayFrameError::BadAddress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_but_a_replacement_means_reconnect() {
        for code in [CloseCode::ShuttingDown, CloseCode::Replaced, CloseCode::SlowConsumer] {
            assert_eq!(CloseCode::from_u16(code as u16), Some(code));
        }
        assert!(!CloseCode::should_reconnect(CloseCode::Replaced as u16));
        assert!(CloseCode::should_reconnect(CloseCode::ShuttingDown as u16));
        assert!(CloseCode::should_reconnect(CloseCode::SlowConsumer as u16));
        assert!(CloseCode::should_reconnect(1006), "an abnormal close (no close frame) reconnects");
        assert_eq!(CloseCode::from_u16(1006), None);
    }

    #[test]
    fn relay_addresses_name_the_relay_and_the_peer() {
        let a = relay_addr("127.0.0.1:8080", "tab-7").unwrap();
        assert_eq!(a.as_str(), "relay://127.0.0.1:8080/tab-7");
        assert_eq!(split_relay_addr(&a), Some(("127.0.0.1:8080", "tab-7")));
        assert_eq!(relay_socket(&a), Some("127.0.0.1:8080".parse().unwrap()));
        assert!(relay_addr("h:1", "bad/id").is_none());
        assert!(relay_addr("h:1", "").is_none());
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let f = encode_ws_frame("udp://10.0.0.1:7946", b"\x01pkt").unwrap();
        assert_eq!(decode_ws_frame(&f).unwrap(), ("udp://10.0.0.1:7946", &b"\x01pkt"[..]));
        let d = encode_datagram("tab-7", b"\x01pkt").unwrap();
        assert_eq!(decode_datagram(&d).unwrap(), ("tab-7", &b"\x01pkt"[..]));
        assert_eq!(decode_ws_frame(&[]), Err(RelayFrameError::Truncated));
        assert_eq!(decode_ws_frame(&[9, b'a']), Err(RelayFrameError::Truncated));
        assert_eq!(decode_ws_frame(&[1, 0xff]), Err(RelayFrameError::BadAddress));
        assert_eq!(decode_datagram(&[1, 2, 3]), Err(RelayFrameError::NotRelay));
        assert!(encode_ws_frame(&"x".repeat(256), b"").is_none());
    }

    #[test]
    fn signalling_frames_round_trip_and_never_parse_as_packet_frames() {
        let f = encode_signal_frame("relay://h:1/tab-2", SignalKind::Offer, b"{\"sdp\":\"v=0\"}").unwrap();
        assert_eq!(f[0], SIGNAL_TAG);
        assert_eq!(
            decode_signal_frame(&f).unwrap(),
            ("relay://h:1/tab-2", SignalKind::Offer, &b"{\"sdp\":\"v=0\"}"[..])
        );
        assert_eq!(decode_ws_frame(&f), Err(RelayFrameError::Truncated), "old decoders drop it");
        let bye = encode_signal_frame("relay://h:1/tab-2", SignalKind::Bye, b"").unwrap();
        assert_eq!(decode_signal_frame(&bye).unwrap().1, SignalKind::Bye);
        let packet = encode_ws_frame("relay://h:1/tab-2", b"\x01").unwrap();
        assert_eq!(decode_signal_frame(&packet), Err(RelayFrameError::NotRelay));
    }

    #[test]
    fn signalling_frames_of_unknown_kind_or_without_kind_are_refused() {
        let mut f = encode_signal_frame("relay://h:1/p", SignalKind::Answer, b"x").unwrap();
        let kind_at = 2 + "relay://h:1/p".len();
        f[kind_at] = 9;
        assert_eq!(decode_signal_frame(&f), Err(RelayFrameError::BadSignal));
        f.truncate(kind_at);
        assert_eq!(decode_signal_frame(&f), Err(RelayFrameError::Truncated));
        assert!(encode_signal_frame("", SignalKind::Bye, b"").is_none());
        assert_eq!(decode_signal_frame(&[]), Err(RelayFrameError::Truncated));
    }

    #[test]
    fn exactly_one_side_of_a_glare_keeps_its_offer() {
        let (a, b) = ("relay://h:1/alice", "relay://h:1/bob");
        assert!(offer_wins(a, b));
        assert!(!offer_wins(b, a));
        for (x, y) in [("relay://h:1/tab-10", "relay://h:1/tab-9"), ("relay://h:1/A", "relay://h:1/a")] {
            assert_ne!(offer_wins(x, y), offer_wins(y, x), "{x} vs {y}");
        }
    }

    #[test]
    fn push_pull_state_sent_to_a_relayed_member_fits_the_relay_frame_limit() {
        use crate::{Config, Instant, Node, NodeId};
        let me = Addr::udp("10.0.0.1:7946".parse().unwrap());
        let mut node = Node::new(Config::lan(), NodeId::new("native").unwrap(), me, 1, Instant::ZERO).unwrap();
        let members = (0..5_000).map(|i| {
            let sa: SocketAddr = format!("10.1.{}.{}:7946", i / 250, i % 250).parse().unwrap();
            (NodeId::new(&format!("member-with-a-long-name-{i:05}")).unwrap(), Addr::udp(sa))
        });
        node.assume_alive(members, Instant::ZERO);
        let browser = relay_addr("127.0.0.1:8080", "tab-1").unwrap();
        node.join(&[browser, Addr::udp("10.0.0.2:7946".parse().unwrap())], Instant::ZERO).unwrap();
        let to_browser = node.poll_transmit().unwrap();
        let to_native = node.poll_transmit().unwrap();
        assert!(to_browser.reliable && to_browser.bytes.len() <= RELAYED_RELIABLE_LIMIT, "{}", to_browser.bytes.len());
        assert!(to_native.bytes.len() > RELAYED_RELIABLE_LIMIT * 3, "native peers get the whole state");
    }

    #[test]
    fn a_relay_datagram_is_accepted_only_from_the_relay_it_names() {
        let relay: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let d = encode_datagram("relay://127.0.0.1:8080/tab-7", b"\x01x").unwrap();
        let (src, pkt) = accept_relay_datagram(relay, &d).unwrap();
        assert_eq!(src.as_str(), "relay://127.0.0.1:8080/tab-7");
        assert_eq!(pkt, b"\x01x");
        let impostor: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert_eq!(accept_relay_datagram(impostor, &d).err(), Some(RelayFrameError::BadAddress));
    }
}
