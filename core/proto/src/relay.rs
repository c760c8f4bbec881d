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
//! | page → relay, `POST /farewell` (HTTP body) | `[peer_len: u8][peer id][secret: 16 bytes]` then 0-16 × `[frame_len: u16 BE][member → relay frame]` |
//!
//! The relay always writes the source itself (from the WebSocket session or the UDP source address),
//! so a member cannot spoof another. A native member accepts a relay datagram only if it came from
//! the socket address named in the source's `relay://host:port` part.
//!
//! The first WebSocket message the relay sends after accepting a member is a "welcome": a frame
//! whose address is the member's own `relay://` address and whose packet is empty, or, for a
//! member that asked for a farewell secret (below), the 16-byte secret.
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
//!
//! **Farewells: a leave that outlives the page.** A browser member running in a Web Worker loses
//! its leave announcement when the tab closes and the worker is killed before sending it. The
//! page's main thread can still hand the relay the leave packets, precomputed, in an HTTP request
//! the browser delivers after the page is gone (`navigator.sendBeacon`); the relay forwards them as
//! if the member had sent them over its WebSocket. The steps:
//!
//! 1. The member connects with `GET /ws?peer=P&token=T&farewell=1`. The relay's welcome then
//!    carries a fresh random [`FarewellSecret`] (16 bytes) as its packet, the secret of this
//!    connection. Without `farewell=1` the welcome's packet stays empty (members that predate
//!    farewells refuse a welcome with a packet); a relay that predates farewells ignores the
//!    parameter and sends an empty welcome, so an empty packet always means "no farewell here".
//! 2. The member prepares its leave packets, each as the WebSocket frame it would send
//!    (`[len][destination][packet]`), and the page keeps [`encode_farewell`]`(P, secret, frames)`.
//! 3. When the page goes away it sends that body in `POST /farewell` (no `Content-Type` needed).
//!    The relay ([`decode_farewell`]) accepts it only from the connection that holds the secret:
//!    the peer must be connected now, or its connection have ended by itself within the last few
//!    seconds (the worker's socket closes before the beacon arrives), with that secret, not yet
//!    used (a secret works once). It
//!    routes each frame exactly as a frame from that connection (same source stamp, same rate
//!    limits) and answers `204`; otherwise `400` (malformed), `403` (unknown peer, no secret, wrong
//!    or used secret: one status for all), `413` (over [`MAX_FAREWELL_BODY`] bytes or
//!    [`MAX_FAREWELL_FRAMES`] frames) or `503` (shutting down). The answer is informational:
//!    a beacon's response is never read.
//!
//! Signalling frames have no place in a farewell: a body carrying one is malformed.
use alloc::format;
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::addr::Addr;
use crate::identity::Address;

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

impl core::fmt::Display for RelayFrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RelayFrameError::Truncated => "relay frame truncated",
            RelayFrameError::NotRelay => "not a relay datagram",
            RelayFrameError::BadAddress => "relay frame carries an invalid address",
            RelayFrameError::BadSignal => "signalling frame of an unknown kind",
        })
    }
}

#[cfg(feature = "std")]
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
    // The split the move rule uses (`Address::relay_route`), with the peer id checked.
    let (relay, peer) = addr.relay_route()?;
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
    let addr = core::str::from_utf8(&rest[..len]).map_err(|_| RelayFrameError::BadAddress)?;
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

/// Bytes of a [`FarewellSecret`].
pub const FAREWELL_SECRET_LEN: usize = 16;
/// The secret a relay hands a connection in its welcome when asked (`farewell=1`); the page
/// presents it in `POST /farewell`. Random, single use, valid while that connection holds its
/// peer id.
pub type FarewellSecret = [u8; FAREWELL_SECRET_LEN];
/// Most frames one farewell carries.
pub const MAX_FAREWELL_FRAMES: usize = 16;
/// Largest farewell body, in bytes (header included). The relay answers `413` above it.
pub const MAX_FAREWELL_BODY: usize = 16 * 1024;

/// A farewell that failed to parse ([`decode_farewell`]). The sender's fault; the relay refuses
/// the whole body and changes nothing (the secret stays unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FarewellError {
    /// Longer than [`MAX_FAREWELL_BODY`].
    TooLarge,
    /// More than [`MAX_FAREWELL_FRAMES`] frames.
    TooManyFrames,
    /// Shorter than a header says, or bytes after the last frame that are not a whole frame.
    Truncated,
    /// The peer id is empty, longer than [`MAX_PEER_ID_LEN`] or not `[A-Za-z0-9._-]`.
    BadPeerId,
    /// A frame of length zero.
    EmptyFrame,
    /// A signalling frame (leading zero byte): a farewell carries packet frames only.
    SignalFrame,
    /// A frame that is not a packet frame `[len][destination][packet]`.
    BadFrame(RelayFrameError),
}

impl core::fmt::Display for FarewellError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FarewellError::TooLarge => write!(f, "farewell over {MAX_FAREWELL_BODY} bytes"),
            FarewellError::TooManyFrames => write!(f, "farewell with more than {MAX_FAREWELL_FRAMES} frames"),
            FarewellError::Truncated => f.write_str("farewell truncated"),
            FarewellError::BadPeerId => f.write_str("farewell names an invalid peer id"),
            FarewellError::EmptyFrame => f.write_str("farewell carries an empty frame"),
            FarewellError::SignalFrame => f.write_str("farewell carries a signalling frame"),
            FarewellError::BadFrame(e) => write!(f, "farewell carries a bad frame: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FarewellError {}

/// A decoded `POST /farewell` body, borrowing from it. Every frame was checked by
/// [`decode_farewell`]: [`frames`](Self::frames) yields them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Farewell<'a> {
    peer: &'a str,
    secret: FarewellSecret,
    frames: &'a [u8],
    count: usize,
}

impl<'a> Farewell<'a> {
    /// The peer id whose connection the farewell claims to come from.
    pub fn peer(&self) -> &'a str {
        self.peer
    }

    /// The secret presented (compare it in constant time).
    pub fn secret(&self) -> &FarewellSecret {
        &self.secret
    }

    /// How many frames it carries (0 to [`MAX_FAREWELL_FRAMES`]).
    pub fn frame_count(&self) -> usize {
        self.count
    }

    /// The frames, in order, each exactly as a member sends it over its WebSocket.
    pub fn frames(&self) -> FarewellFrames<'a> {
        FarewellFrames { rest: self.frames }
    }
}

/// The frames of a [`Farewell`], in order.
#[derive(Clone, Debug)]
pub struct FarewellFrames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FarewellFrames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        // Checked by decode_farewell; stop rather than panic if it somehow is not.
        let Ok((frame, rest)) = split_farewell_frame(self.rest) else {
            self.rest = &[];
            return None;
        };
        self.rest = rest;
        Some(frame)
    }
}

/// `[frame_len: u16 BE][frame]` off the front of `body`.
fn split_farewell_frame(body: &[u8]) -> Result<(&[u8], &[u8]), FarewellError> {
    let [hi, lo, rest @ ..] = body else {
        return Err(FarewellError::Truncated);
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len == 0 {
        return Err(FarewellError::EmptyFrame);
    }
    if rest.len() < len {
        return Err(FarewellError::Truncated);
    }
    Ok(rest.split_at(len))
}

/// A frame a farewell may carry: a packet frame, not a signalling one.
fn check_farewell_frame(frame: &[u8]) -> Result<(), FarewellError> {
    match frame.first() {
        None => Err(FarewellError::EmptyFrame),
        Some(&SIGNAL_TAG) => Err(FarewellError::SignalFrame),
        Some(_) => decode_ws_frame(frame).map(|_| ()).map_err(FarewellError::BadFrame),
    }
}

/// The body of `POST /farewell`: `[peer_len: u8][peer][secret: 16 bytes]` then, for each frame,
/// `[frame_len: u16 big-endian][frame]`, each frame being exactly what the member would send over
/// its WebSocket (`[len][destination][packet]`, as [`encode_ws_frame`] makes it). Call it while
/// the page is alive (when the leave packets are ready) and keep the bytes for the moment it goes
/// away. `None` if the relay would refuse it: an invalid peer id, more than
/// [`MAX_FAREWELL_FRAMES`] frames, an empty, signalling or malformed frame, or more than
/// [`MAX_FAREWELL_BODY`] bytes in all.
pub fn encode_farewell<F: AsRef<[u8]>>(peer: &str, secret: &FarewellSecret, frames: &[F]) -> Option<Vec<u8>> {
    if !valid_peer_id(peer) || frames.len() > MAX_FAREWELL_FRAMES {
        return None;
    }
    let mut total = 1 + peer.len() + FAREWELL_SECRET_LEN;
    for frame in frames {
        let frame = frame.as_ref();
        check_farewell_frame(frame).ok()?;
        u16::try_from(frame.len()).ok()?;
        total = total.saturating_add(2 + frame.len());
    }
    if total > MAX_FAREWELL_BODY {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    // valid_peer_id: at most MAX_PEER_ID_LEN (64) bytes.
    out.push(peer.len() as u8);
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(secret);
    for frame in frames {
        let frame = frame.as_ref();
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
    }
    Some(out)
}

/// Parses a `POST /farewell` body (see [`encode_farewell`]), checking every frame, so that what
/// it returns is whole. Never panics and allocates nothing, whatever the bytes.
pub fn decode_farewell(body: &[u8]) -> Result<Farewell<'_>, FarewellError> {
    if body.len() > MAX_FAREWELL_BODY {
        return Err(FarewellError::TooLarge);
    }
    let (&peer_len, rest) = body.split_first().ok_or(FarewellError::Truncated)?;
    let peer_len = usize::from(peer_len);
    if peer_len == 0 || peer_len > MAX_PEER_ID_LEN {
        return Err(FarewellError::BadPeerId);
    }
    if rest.len() < peer_len + FAREWELL_SECRET_LEN {
        return Err(FarewellError::Truncated);
    }
    let (peer, rest) = rest.split_at(peer_len);
    let peer = core::str::from_utf8(peer).ok().filter(|p| valid_peer_id(p)).ok_or(FarewellError::BadPeerId)?;
    let (secret, frames) = rest.split_at(FAREWELL_SECRET_LEN);
    let secret = FarewellSecret::try_from(secret).map_err(|_| FarewellError::Truncated)?;
    let (mut count, mut rest) = (0, frames);
    while !rest.is_empty() {
        let (frame, after) = split_farewell_frame(rest)?;
        count += 1;
        if count > MAX_FAREWELL_FRAMES {
            return Err(FarewellError::TooManyFrames);
        }
        check_farewell_frame(frame)?;
        rest = after;
    }
    Ok(Farewell { peer, secret, frames, count })
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
        let mut node = Node::new(Instant::ZERO, Config::lan(), NodeId::new("native").unwrap(), me, 1).unwrap();
        let members = (0..5_000).map(|i| {
            let sa: SocketAddr = format!("10.1.{}.{}:7946", i / 250, i % 250).parse().unwrap();
            (NodeId::new(&format!("member-with-a-long-name-{i:05}")).unwrap(), Addr::udp(sa))
        });
        node.assume_alive(Instant::ZERO, members);
        let browser = relay_addr("127.0.0.1:8080", "tab-1").unwrap();
        node.join(Instant::ZERO, &[browser, Addr::udp("10.0.0.2:7946".parse().unwrap())]).unwrap();
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

    const SECRET: FarewellSecret = *b"0123456789abcdef";

    fn leave_frames() -> Vec<Vec<u8>> {
        vec![
            encode_ws_frame("relay://127.0.0.1:8080/tab-2", b"\x01leave").unwrap(),
            encode_ws_frame("udp://10.0.0.1:7946", &[1u8; 300]).unwrap(),
        ]
    }

    #[test]
    fn a_farewell_round_trips_with_its_peer_secret_and_frames() {
        let frames = leave_frames();
        let body = encode_farewell("tab-7", &SECRET, &frames).unwrap();
        assert_eq!(&body[..6], b"\x05tab-7");
        assert_eq!(&body[6..22], &SECRET);
        assert_eq!(&body[22..24], &(frames[0].len() as u16).to_be_bytes());
        let f = decode_farewell(&body).unwrap();
        assert_eq!((f.peer(), f.secret(), f.frame_count()), ("tab-7", &SECRET, 2));
        assert_eq!(f.frames().collect::<Vec<_>>(), frames.iter().map(Vec::as_slice).collect::<Vec<_>>());
        // Slices work as well as vectors, and no frames at all is a farewell too.
        let slices: [&[u8]; 1] = [&frames[0]];
        assert_eq!(decode_farewell(&encode_farewell("p", &SECRET, &slices).unwrap()).unwrap().frame_count(), 1);
        let empty = encode_farewell::<&[u8]>("p", &SECRET, &[]).unwrap();
        assert_eq!(empty.len(), 1 + 1 + FAREWELL_SECRET_LEN);
        let f = decode_farewell(&empty).unwrap();
        assert_eq!((f.peer(), f.frame_count(), f.frames().next()), ("p", 0, None));
    }

    #[test]
    fn every_truncation_of_a_farewell_is_refused_or_ends_at_a_frame_boundary() {
        let frames = leave_frames();
        let body = encode_farewell("tab-7", &SECRET, &frames).unwrap();
        let header = 1 + 5 + FAREWELL_SECRET_LEN;
        let boundaries = [header, header + 2 + frames[0].len(), body.len()];
        for cut in 0..body.len() {
            match decode_farewell(&body[..cut]) {
                Ok(f) => {
                    let at = boundaries.iter().position(|b| *b == cut).expect("only whole frames decode");
                    assert_eq!(f.frame_count(), at, "cut at {cut}");
                }
                Err(e) => assert_eq!(e, FarewellError::Truncated, "cut at {cut}"),
            }
        }
    }

    #[test]
    fn a_farewell_with_trailing_garbage_is_refused() {
        let body = encode_farewell("tab-7", &SECRET, &leave_frames()).unwrap();
        for garbage in [&[0x01][..], &[0x00, 0x09, 0x01], &[0xff, 0xff]] {
            let mut b = body.clone();
            b.extend_from_slice(garbage);
            assert_eq!(decode_farewell(&b), Err(FarewellError::Truncated), "{garbage:?}");
        }
    }

    #[test]
    fn a_farewell_with_a_zero_length_frame_is_refused() {
        let mut body = encode_farewell::<&[u8]>("tab-7", &SECRET, &[]).unwrap();
        body.extend_from_slice(&[0, 0]);
        assert_eq!(decode_farewell(&body), Err(FarewellError::EmptyFrame));
        assert!(encode_farewell("tab-7", &SECRET, &[&[][..]]).is_none());
    }

    #[test]
    fn a_farewell_with_an_invalid_or_over_long_peer_id_is_refused() {
        let long = "x".repeat(MAX_PEER_ID_LEN + 1);
        assert!(encode_farewell::<&[u8]>(&long, &SECRET, &[]).is_none());
        assert!(encode_farewell::<&[u8]>("a/b", &SECRET, &[]).is_none());
        assert!(encode_farewell::<&[u8]>("", &SECRET, &[]).is_none());
        for (len, id) in [(65u8, long.as_bytes()), (255, long.as_bytes()), (0, &b""[..]), (3, b"a/b"), (2, b"\xff\xfe")]
        {
            let mut body = vec![len];
            body.extend_from_slice(id);
            body.extend_from_slice(&SECRET);
            body.extend_from_slice(&[0u8; 300]);
            assert_eq!(decode_farewell(&body), Err(FarewellError::BadPeerId), "{len} {id:?}");
        }
        let max = "x".repeat(MAX_PEER_ID_LEN);
        assert_eq!(decode_farewell(&encode_farewell::<&[u8]>(&max, &SECRET, &[]).unwrap()).unwrap().peer(), max);
    }

    #[test]
    fn a_farewell_carries_packet_frames_only() {
        let signal = encode_signal_frame("relay://h:1/p", SignalKind::Bye, b"").unwrap();
        assert!(encode_farewell("tab-7", &SECRET, &[&signal]).is_none());
        let mut body = encode_farewell::<&[u8]>("tab-7", &SECRET, &[]).unwrap();
        body.extend_from_slice(&(signal.len() as u16).to_be_bytes());
        body.extend_from_slice(&signal);
        assert_eq!(decode_farewell(&body), Err(FarewellError::SignalFrame));
        // A frame whose address runs past its end, or is not UTF-8, is not a packet frame.
        for bad in [&[9u8, b'a'][..], &[1, 0xff, 1]] {
            assert!(encode_farewell("tab-7", &SECRET, &[bad]).is_none());
            let mut body = encode_farewell::<&[u8]>("tab-7", &SECRET, &[]).unwrap();
            body.extend_from_slice(&(bad.len() as u16).to_be_bytes());
            body.extend_from_slice(bad);
            assert!(matches!(decode_farewell(&body), Err(FarewellError::BadFrame(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_farewell_is_limited_in_frames_and_bytes() {
        let frame = encode_ws_frame("relay://h:1/p", b"\x01").unwrap();
        let sixteen = vec![frame.clone(); MAX_FAREWELL_FRAMES];
        let body = encode_farewell("tab-7", &SECRET, &sixteen).unwrap();
        assert_eq!(decode_farewell(&body).unwrap().frame_count(), MAX_FAREWELL_FRAMES);
        assert!(encode_farewell("tab-7", &SECRET, &vec![frame.clone(); MAX_FAREWELL_FRAMES + 1]).is_none());
        let mut seventeen = body.clone();
        seventeen.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        seventeen.extend_from_slice(&frame);
        assert_eq!(decode_farewell(&seventeen), Err(FarewellError::TooManyFrames));
        // Bytes: one frame as large as fits, then one byte more.
        let room = MAX_FAREWELL_BODY - (1 + 5 + FAREWELL_SECRET_LEN + 2);
        let big = encode_ws_frame("relay://h:1/p", &vec![1u8; room - 1 - "relay://h:1/p".len()]).unwrap();
        let body = encode_farewell("tab-7", &SECRET, &[&big]).unwrap();
        assert_eq!(body.len(), MAX_FAREWELL_BODY);
        assert!(decode_farewell(&body).is_ok());
        let bigger = encode_ws_frame("relay://h:1/p", &vec![1u8; room - "relay://h:1/p".len()]).unwrap();
        assert!(encode_farewell("tab-7", &SECRET, &[&bigger]).is_none());
        let mut over = body;
        over.push(0);
        assert_eq!(decode_farewell(&over), Err(FarewellError::TooLarge));
        assert!(encode_farewell("tab-7", &SECRET, &[vec![1u8; 70_000]]).is_none(), "a frame over u16");
    }

    #[test]
    fn decoding_a_farewell_never_panics_on_arbitrary_or_mangled_bytes() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(0xfa2e);
        let valid = encode_farewell("tab-7", &SECRET, &leave_frames()).unwrap();
        let mut ok = 0;
        for i in 0..50_000 {
            let body = if i % 2 == 0 {
                let mut b = vec![0u8; rng.random_range(0..600usize)];
                rng.fill(&mut b[..]);
                if let Some(first) = b.first_mut() {
                    // Often a plausible peer id length, so the frames get parsed too.
                    *first = rng.random_range(0..70);
                }
                b
            } else {
                let mut b = valid.clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..b.len());
                    match rng.random_range(0..3) {
                        0 => b[at] = rng.random(),
                        1 => b.truncate(at),
                        _ => b.insert(at, rng.random()),
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                b
            };
            if let Ok(f) = decode_farewell(&body) {
                ok += 1;
                let frames: Vec<&[u8]> = f.frames().collect();
                assert_eq!(frames.len(), f.frame_count());
                assert!(frames.iter().all(|fr| decode_ws_frame(fr).is_ok() && fr[0] != SIGNAL_TAG));
                assert_eq!(encode_farewell(f.peer(), f.secret(), &frames).as_deref(), Some(&body[..]), "re-encodes");
            }
        }
        assert!(ok > 0, "some mangled bodies still decode");
    }
}
