//! Relay-to-relay links, with no I/O: the handshake that authenticates two relays to each other,
//! the framing of what travels over a link afterwards, and the dialer's reconnection backoff.
//!
//! **Decoding never panics on input**: every function here that reads bytes from the other side
//! returns an error for anything it does not expect (a seeded random-bytes test backs this).
//!
//! # Handshake
//!
//! A link is one WebSocket, `GET /relay-link`, opened by one relay (the *dialer*) to another
//! (the *listener*). Both hold the same relay key `K` (at least [`MIN_RELAY_KEY_LEN`] bytes).
//! `D` and `L` are the relays' public `host:port` (what they write into `relay://` addresses),
//! `Nd` and `Ns` 16 fresh random bytes drawn by the dialer and the listener, and
//! `mac(label, parts)` is HMAC-SHA256 keyed by `K` over the label and each part prefixed with its
//! length (u16, big endian), so no two different inputs share an encoding.
//!
//! 1. Dialer → listener, in the upgrade request: the header [`LINK_HEADER`]
//!    `1 <D> <Nd as hex> <gate as hex>`, gate = `mac("shoal-relay-link/1 request", [D, Nd])`.
//!    The listener answers `404` if it has no key, `400` if the header is missing or malformed,
//!    `403` if the gate does not check out ([`check_request`]). The gate only keeps strangers
//!    from opening WebSockets: it proves nothing fresh (it can be replayed), the next two steps do.
//! 2. Listener → dialer, the first WebSocket message, the *challenge*:
//!    `[0x01][version 1][len u8][L][Ns: 16][mac("shoal-relay-link/1 listener", [D, L, Nd, Ns])]`.
//!    The dialer checks it ([`Dialer::on_challenge`]): the listener knows `K` and answered the
//!    dialer's fresh `Nd`, and `L` is the address the listener's members are stamped under.
//! 3. Dialer → listener, the *proof*: `[0x02][mac("shoal-relay-link/1 dialer", [D, L, Nd, Ns])]`.
//!    The listener checks it ([`Listener::on_proof`]): the dialer knows `K` and answered the
//!    listener's fresh `Ns`, so a recorded handshake cannot be replayed. The labels differ per
//!    role, so neither side's answer can be reflected as the other's.
//! 4. Listener → dialer: `[0x03]` (*ready*) once the listener took the link into its routing
//!    table, or a close frame saying why not (a link between the two exists already).
//!
//! Each side then knows the other's public address, authenticated by the key: it is the only
//! address under which the link may stamp sources, and the address whose members the link reaches.
//!
//! # Frames
//!
//! After the handshake every binary message on a link is one frame, either way:
//!
//! | tag | frame |
//! |---|---|
//! | `0x10` | `[0x10][src_len u8][relay://<sender's relay>/<P>][dst_len u8][Q][packet]` |
//! | `0x11` | `[0x11][src_len u8][relay://<sender's relay>/<P>][dst_len u8][Q][kind u8][body]` |
//!
//! `Q` is a peer id of the receiving relay; the receiver delivers the packet (or WebRTC signal of
//! [`SignalKind`] `kind`) to `Q` as the relay envelope says, with the source as stamped, once it
//! checked that the stamp's relay is the link's authenticated address ([`decode_frame`] checks the
//! shape only).

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shoal_core::relay::{valid_peer_id, SignalKind};

use crate::config::valid_public_addr;

/// The path of the link endpoint.
pub const LINK_PATH: &str = "/relay-link";
/// The request header carrying the dialer's address, nonce and gate.
pub const LINK_HEADER: &str = "x-shoal-relay-link";
/// Shortest relay key accepted, in bytes.
pub const MIN_RELAY_KEY_LEN: usize = 16;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;
/// The handshake's version, in the header and the challenge.
const VERSION: u8 = 1;

const CHALLENGE: u8 = 0x01;
const PROOF: u8 = 0x02;
const READY: u8 = 0x03;
const PACKET: u8 = 0x10;
const SIGNAL: u8 = 0x11;

const LABEL_REQUEST: &[u8] = b"shoal-relay-link/1 request";
const LABEL_LISTENER: &[u8] = b"shoal-relay-link/1 listener";
const LABEL_DIALER: &[u8] = b"shoal-relay-link/1 dialer";

/// Bytes a link frame adds to the packet or signal it carries, at most: tag, two lengths, a
/// source address of up to 255 bytes and a peer id.
pub const MAX_LINK_OVERHEAD: usize = 3 + 255 + shoal_core::relay::MAX_PEER_ID_LEN;

/// A handshake nonce.
pub type Nonce = [u8; NONCE_LEN];

/// The relay key shared by a fleet's relays. Its `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayKey(Box<[u8]>);

impl fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayKey(..)")
    }
}

impl RelayKey {
    /// The key made of `key`'s bytes, if it has at least [`MIN_RELAY_KEY_LEN`] of them.
    pub fn new(key: &str) -> Option<RelayKey> {
        (key.len() >= MIN_RELAY_KEY_LEN).then(|| RelayKey(key.as_bytes().into()))
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        for part in parts {
            // Parts are addresses (at most 255 bytes) and nonces: u16 always holds their length.
            mac.update(&(part.len() as u16).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn tag(&self, label: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
        self.mac(label, parts).finalize().into_bytes().into()
    }

    /// Compares in constant time.
    fn verify(&self, label: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(label, parts).verify_slice(tag).is_ok()
    }
}

/// Why a link request was refused before the upgrade ([`check_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateError {
    /// No [`LINK_HEADER`], or not `1 <addr> <nonce hex> <gate hex>` with a valid address (400).
    Malformed,
    /// The gate does not match: the dialer does not hold this relay's key (403).
    WrongKey,
    /// The dialer claims this relay's own address (a relay configured to link to itself) (403).
    OwnAddress,
}

/// Why a handshake failed after the upgrade. The other side's fault (or a wrong key); nothing
/// was registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not the message expected at this step, or truncated, or of another version.
    Malformed,
    /// The other side's answer does not match: it does not hold the key, or replayed an old one.
    BadProof,
    /// The listener claims the dialer's own address, or one that is not a valid `host:port`.
    BadAddress,
}

/// What a valid link request says ([`check_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    dialer: String,
    nonce: Nonce,
}

impl LinkRequest {
    /// The public address the dialer claims (authenticated only once the handshake completes).
    pub fn dialer(&self) -> &str {
        &self.dialer
    }
}

/// Checks the [`LINK_HEADER`] of a link request at the relay reached as `local`.
pub fn check_request(key: &RelayKey, local: &str, header: Option<&[u8]>) -> Result<LinkRequest, GateError> {
    let text = header.and_then(|h| std::str::from_utf8(h).ok()).ok_or(GateError::Malformed)?;
    let mut words = text.split(' ');
    let (Some("1"), Some(dialer), Some(nonce), Some(gate), None) =
        (words.next(), words.next(), words.next(), words.next(), words.next())
    else {
        return Err(GateError::Malformed);
    };
    let nonce: Nonce = hex_decode(nonce).ok_or(GateError::Malformed)?;
    let gate: [u8; MAC_LEN] = hex_decode(gate).ok_or(GateError::Malformed)?;
    if !valid_public_addr(dialer) {
        return Err(GateError::Malformed);
    }
    if !key.verify(LABEL_REQUEST, &[dialer.as_bytes(), &nonce], &gate) {
        return Err(GateError::WrongKey);
    }
    if dialer == local {
        return Err(GateError::OwnAddress);
    }
    Ok(LinkRequest { dialer: dialer.to_string(), nonce })
}

/// The dialer's side of a handshake.
#[derive(Debug)]
pub struct Dialer {
    key: RelayKey,
    local: String,
    nonce: Nonce,
}

impl Dialer {
    /// A handshake from the relay reached as `local`, with a fresh random `nonce`.
    pub fn new(key: RelayKey, local: &str, nonce: Nonce) -> Dialer {
        Dialer { key, local: local.to_string(), nonce }
    }

    /// The value of the [`LINK_HEADER`] to send in the upgrade request.
    pub fn request_header(&self) -> String {
        let gate = self.key.tag(LABEL_REQUEST, &[self.local.as_bytes(), &self.nonce]);
        format!("{VERSION} {} {} {}", self.local, hex(&self.nonce), hex(&gate))
    }

    /// Checks the listener's challenge: the listener's public address and the proof to send.
    pub fn on_challenge(&self, message: &[u8]) -> Result<(String, Vec<u8>), HandshakeError> {
        let [CHALLENGE, VERSION, rest @ ..] = message else {
            return Err(HandshakeError::Malformed);
        };
        let (listener, rest) = split_text(rest).ok_or(HandshakeError::Malformed)?;
        if rest.len() != NONCE_LEN + MAC_LEN {
            return Err(HandshakeError::Malformed);
        }
        let (theirs, tag) = rest.split_at(NONCE_LEN);
        let parts: [&[u8]; 4] = [self.local.as_bytes(), listener.as_bytes(), &self.nonce, theirs];
        if !self.key.verify(LABEL_LISTENER, &parts, tag) {
            return Err(HandshakeError::BadProof);
        }
        if listener == self.local || !valid_public_addr(listener) {
            return Err(HandshakeError::BadAddress);
        }
        let mut proof = vec![PROOF];
        proof.extend_from_slice(&self.key.tag(LABEL_DIALER, &parts));
        Ok((listener.to_string(), proof))
    }
}

/// The listener's side of a handshake, once the request passed [`check_request`].
#[derive(Debug)]
pub struct Listener {
    key: RelayKey,
    local: String,
    request: LinkRequest,
    nonce: Nonce,
}

impl Listener {
    /// A handshake at the relay reached as `local` answering `request`, with a fresh random
    /// `nonce`, and the challenge to send first.
    pub fn new(key: RelayKey, local: &str, request: LinkRequest, nonce: Nonce) -> (Listener, Vec<u8>) {
        let listener = Listener { key, local: local.to_string(), request, nonce };
        let tag = listener.key.tag(LABEL_LISTENER, &listener.parts());
        let mut challenge = vec![CHALLENGE, VERSION, listener.local.len() as u8];
        challenge.extend_from_slice(listener.local.as_bytes());
        challenge.extend_from_slice(&listener.nonce);
        challenge.extend_from_slice(&tag);
        (listener, challenge)
    }

    fn parts(&self) -> [&[u8]; 4] {
        [self.request.dialer.as_bytes(), self.local.as_bytes(), &self.request.nonce, &self.nonce]
    }

    /// Checks the dialer's proof: the dialer's public address, now authenticated.
    pub fn on_proof(self, message: &[u8]) -> Result<String, HandshakeError> {
        let [PROOF, tag @ ..] = message else {
            return Err(HandshakeError::Malformed);
        };
        if tag.len() != MAC_LEN {
            return Err(HandshakeError::Malformed);
        }
        if !self.key.verify(LABEL_DIALER, &self.parts(), tag) {
            return Err(HandshakeError::BadProof);
        }
        Ok(self.request.dialer)
    }
}

/// The listener's last handshake message: the link is in its routing table.
pub fn ready() -> Vec<u8> {
    vec![READY]
}

/// Whether `message` is the listener's [`ready`].
pub fn is_ready(message: &[u8]) -> bool {
    message == [READY]
}

/// A frame that travels over a link, borrowing from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFrame<'a> {
    /// A Shoal packet from member `source` (a `relay://` address) for peer `peer` of the receiver.
    Packet {
        /// The sender, as its relay stamped it.
        source: &'a str,
        /// A peer id of the receiving relay.
        peer: &'a str,
        /// The packet, opaque.
        packet: &'a [u8],
    },
    /// A WebRTC signal from `source` for peer `peer` of the receiver.
    Signal {
        /// The sender, as its relay stamped it.
        source: &'a str,
        /// A peer id of the receiving relay.
        peer: &'a str,
        /// The signal's kind.
        kind: SignalKind,
        /// The body, opaque.
        body: &'a [u8],
    },
}

/// Why a link frame did not decode. The sending relay's fault (or a key holder's); dropped and
/// counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFrameError {
    /// Empty, shorter than its lengths say, or of an unknown tag.
    Malformed,
    /// An empty or non-UTF-8 source, or a destination that is not a peer id.
    BadAddress,
    /// A signal of an unknown kind.
    BadSignal,
}

/// `[0x10][src_len][source][dst_len][peer][packet]`; `None` if `source` is empty or longer than
/// 255 bytes, or `peer` is not a peer id.
pub fn encode_packet(source: &str, peer: &str, packet: &[u8]) -> Option<Vec<u8>> {
    let mut out = frame_head(PACKET, source, peer, packet.len())?;
    out.extend_from_slice(packet);
    Some(out)
}

/// `[0x11][src_len][source][dst_len][peer][kind][body]`; `None` as for [`encode_packet`].
pub fn encode_signal(source: &str, peer: &str, kind: SignalKind, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = frame_head(SIGNAL, source, peer, 1 + body.len())?;
    out.push(kind as u8);
    out.extend_from_slice(body);
    Some(out)
}

fn frame_head(tag: u8, source: &str, peer: &str, more: usize) -> Option<Vec<u8>> {
    let src_len = u8::try_from(source.len()).ok().filter(|l| *l > 0)?;
    if !valid_peer_id(peer) {
        return None;
    }
    let mut out = Vec::with_capacity(3 + source.len() + peer.len() + more);
    out.extend_from_slice(&[tag, src_len]);
    out.extend_from_slice(source.as_bytes());
    out.push(peer.len() as u8);
    out.extend_from_slice(peer.as_bytes());
    Some(out)
}

/// Parses a link frame. Checks its shape (a non-empty source, a valid peer id, a known signal
/// kind), not whom the source names: that is the receiving switchboard's check.
pub fn decode_frame(frame: &[u8]) -> Result<LinkFrame<'_>, LinkFrameError> {
    let (&tag, rest) = frame.split_first().ok_or(LinkFrameError::Malformed)?;
    if tag != PACKET && tag != SIGNAL {
        return Err(LinkFrameError::Malformed);
    }
    let (source, rest) = split_text(rest).ok_or(LinkFrameError::Malformed)?;
    let (peer, rest) = split_text(rest).ok_or(LinkFrameError::Malformed)?;
    if source.is_empty() || !valid_peer_id(peer) {
        return Err(LinkFrameError::BadAddress);
    }
    if tag == PACKET {
        return Ok(LinkFrame::Packet { source, peer, packet: rest });
    }
    let (&kind, body) = rest.split_first().ok_or(LinkFrameError::Malformed)?;
    let kind = SignalKind::from_u8(kind).ok_or(LinkFrameError::BadSignal)?;
    Ok(LinkFrame::Signal { source, peer, kind, body })
}

/// `[len u8][text]` off the front of `bytes`: the text (UTF-8, possibly empty) and what follows.
fn split_text(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = bytes.split_first()?;
    let len = usize::from(len);
    if rest.len() < len {
        return None;
    }
    let (text, rest) = rest.split_at(len);
    Some((std::str::from_utf8(text).ok()?, rest))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char]).collect()
}

/// Exactly `N` bytes from `2N` hex digits.
fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// A dialer's wait before its next attempt: doubling from `min` up to `max`, each wait drawn
/// uniformly from its upper half so that relays restarted together do not dial in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// A backoff from `min` (at least 1 ms) to `max` (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff { min, max: max.max(min), ceiling: min }
    }

    /// The next wait, from `random` (any value: a random `u64`), and doubles the ceiling.
    pub fn next_wait(&mut self, random: u64) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(self.max);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_micros().max(1) as u64;
        half + Duration::from_micros(random % (spread + 1))
    }

    /// Back to `min`: after a link that worked for a while.
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const D: &str = "10.0.0.1:8080";
    const L: &str = "10.0.0.2:8080";

    fn key() -> RelayKey {
        RelayKey::new("a fleet's shared key").unwrap()
    }

    fn other_key() -> RelayKey {
        RelayKey::new("another fleet's key").unwrap()
    }

    /// Runs a whole handshake: the addresses each side learned.
    fn handshake(dialer_key: RelayKey, listener_key: RelayKey) -> Result<(String, String), String> {
        let dialer = Dialer::new(dialer_key, D, [1; NONCE_LEN]);
        let header = dialer.request_header();
        let request = check_request(&listener_key, L, Some(header.as_bytes())).map_err(|e| format!("{e:?}"))?;
        let (listener, challenge) = Listener::new(listener_key, L, request, [2; NONCE_LEN]);
        let (learned_by_dialer, proof) = dialer.on_challenge(&challenge).map_err(|e| format!("{e:?}"))?;
        let learned_by_listener = listener.on_proof(&proof).map_err(|e| format!("{e:?}"))?;
        Ok((learned_by_dialer, learned_by_listener))
    }

    #[test]
    fn two_relays_with_the_same_key_learn_each_others_public_address() {
        assert_eq!(handshake(key(), key()), Ok((L.to_string(), D.to_string())));
    }

    #[test]
    fn a_request_gated_with_another_key_is_refused_before_the_upgrade() {
        assert_eq!(handshake(other_key(), key()), Err("WrongKey".into()));
    }

    #[test]
    fn relay_keys_shorter_than_16_bytes_are_refused_and_never_shown() {
        assert!(RelayKey::new("fifteen bytes..").is_none());
        assert!(RelayKey::new("sixteen bytes...").is_some());
        assert_eq!(format!("{:?}", key()), "RelayKey(..)");
    }

    #[test]
    fn a_listener_without_the_key_cannot_answer_the_dialers_nonce() {
        // The gate was replayed or forged past a listener that skips it: the challenge still fails.
        let dialer = Dialer::new(key(), D, [1; NONCE_LEN]);
        let request = LinkRequest { dialer: D.into(), nonce: [1; NONCE_LEN] };
        let (_, challenge) = Listener::new(other_key(), L, request, [2; NONCE_LEN]);
        assert_eq!(dialer.on_challenge(&challenge), Err(HandshakeError::BadProof));
    }

    #[test]
    fn a_replayed_request_and_proof_fail_against_a_fresh_listener_nonce() {
        let dialer = Dialer::new(key(), D, [1; NONCE_LEN]);
        let header = dialer.request_header();
        let request = check_request(&key(), L, Some(header.as_bytes())).unwrap();
        let (_, challenge) = Listener::new(key(), L, request.clone(), [2; NONCE_LEN]);
        let (_, recorded_proof) = dialer.on_challenge(&challenge).unwrap();
        // An eavesdropper replays the header (it passes the gate) and the recorded proof.
        let replayed = check_request(&key(), L, Some(header.as_bytes())).expect("the gate alone proves nothing fresh");
        let (fresh, _) = Listener::new(key(), L, replayed, [3; NONCE_LEN]);
        assert_eq!(fresh.on_proof(&recorded_proof), Err(HandshakeError::BadProof));
    }

    #[test]
    fn a_listeners_answer_cannot_be_reflected_as_a_dialers_proof() {
        let dialer = Dialer::new(key(), D, [1; NONCE_LEN]);
        let request = check_request(&key(), L, Some(dialer.request_header().as_bytes())).unwrap();
        let (listener, challenge) = Listener::new(key(), L, request, [2; NONCE_LEN]);
        let tag = &challenge[challenge.len() - MAC_LEN..];
        let mut reflected = vec![PROOF];
        reflected.extend_from_slice(tag);
        assert_eq!(listener.on_proof(&reflected), Err(HandshakeError::BadProof));
    }

    #[test]
    fn the_listeners_address_is_bound_by_its_answer() {
        let dialer = Dialer::new(key(), D, [1; NONCE_LEN]);
        let request = check_request(&key(), L, Some(dialer.request_header().as_bytes())).unwrap();
        let (_, mut challenge) = Listener::new(key(), L, request, [2; NONCE_LEN]);
        // Swap the listener's address for another of the same length.
        let at = 3 + L.len() - 1;
        challenge[at] = b'1';
        assert_eq!(dialer.on_challenge(&challenge), Err(HandshakeError::BadProof));
    }

    #[test]
    fn a_dialer_claiming_the_listeners_own_address_is_refused() {
        let dialer = Dialer::new(key(), L, [1; NONCE_LEN]);
        let header = dialer.request_header();
        assert_eq!(check_request(&key(), L, Some(header.as_bytes())), Err(GateError::OwnAddress));
    }

    #[test]
    fn a_listener_claiming_the_dialers_own_address_is_refused() {
        let dialer = Dialer::new(key(), D, [1; NONCE_LEN]);
        let request = check_request(&key(), L, Some(dialer.request_header().as_bytes())).unwrap();
        let (_, challenge) = Listener::new(key(), D, request, [2; NONCE_LEN]);
        assert_eq!(dialer.on_challenge(&challenge), Err(HandshakeError::BadAddress));
    }

    #[test]
    fn malformed_request_headers_are_told_apart_from_wrong_keys() {
        let good = Dialer::new(key(), D, [1; NONCE_LEN]).request_header();
        let bad = |h: &str| check_request(&key(), L, Some(h.as_bytes()));
        assert_eq!(check_request(&key(), L, None), Err(GateError::Malformed));
        assert_eq!(bad(""), Err(GateError::Malformed));
        assert_eq!(bad(&good.replacen('1', "2", 1)), Err(GateError::Malformed), "another version");
        assert_eq!(bad(&format!("{good} extra")), Err(GateError::Malformed));
        assert_eq!(bad(&good[..good.len() - 1]), Err(GateError::Malformed), "a short gate");
        assert_eq!(bad(&good.replace(D, "no-port")), Err(GateError::Malformed));
        assert_eq!(check_request(&key(), L, Some(&[0xff, b' '])), Err(GateError::Malformed));
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(check_request(&key(), L, Some(&flipped)), Err(GateError::WrongKey));
    }

    #[test]
    fn packets_and_signals_survive_the_link_framing() {
        let src = "relay://10.0.0.1:8080/alice";
        let packet = encode_packet(src, "bob", b"\x01ping").unwrap();
        assert_eq!(decode_frame(&packet), Ok(LinkFrame::Packet { source: src, peer: "bob", packet: b"\x01ping" }));
        let signal = encode_signal(src, "bob", SignalKind::Offer, b"{sdp}").unwrap();
        assert_eq!(
            decode_frame(&signal),
            Ok(LinkFrame::Signal { source: src, peer: "bob", kind: SignalKind::Offer, body: b"{sdp}" })
        );
        assert!(encode_packet(src, "bad/id", b"").is_none());
        assert!(encode_packet("", "bob", b"").is_none());
        assert!(encode_packet(&"x".repeat(256), "bob", b"").is_none());
    }

    #[test]
    fn malformed_link_frames_are_refused_with_a_reason() {
        let src = "relay://10.0.0.1:8080/alice";
        assert_eq!(decode_frame(&[]), Err(LinkFrameError::Malformed));
        assert_eq!(decode_frame(&[READY]), Err(LinkFrameError::Malformed), "handshake messages are not frames");
        assert_eq!(decode_frame(&[PACKET, 5, b'a']), Err(LinkFrameError::Malformed));
        assert_eq!(decode_frame(&[PACKET, 0, 1, b'b']), Err(LinkFrameError::BadAddress));
        assert_eq!(decode_frame(&[PACKET, 1, b'a', 1, b'/']), Err(LinkFrameError::BadAddress));
        assert_eq!(decode_frame(&[PACKET, 1, 0xff, 1, b'b']), Err(LinkFrameError::Malformed));
        let mut signal = encode_signal(src, "bob", SignalKind::Bye, b"").unwrap();
        *signal.last_mut().unwrap() = 0x7f;
        assert_eq!(decode_frame(&signal), Err(LinkFrameError::BadSignal));
        signal.pop();
        assert_eq!(decode_frame(&signal), Err(LinkFrameError::Malformed));
    }

    #[test]
    fn random_bytes_never_panic_the_link_decoders() {
        let mut rng = SmallRng::seed_from_u64(0x5eed_f11e);
        let dialer = Dialer::new(key(), D, [1; NONCE_LEN]);
        let src = "relay://10.0.0.1:8080/alice";
        let valid = [
            encode_packet(src, "bob", b"\x01ping").unwrap(),
            encode_signal(src, "bob", SignalKind::Candidate, b"{}").unwrap(),
            Listener::new(key(), L, LinkRequest { dialer: D.into(), nonce: [1; NONCE_LEN] }, [2; NONCE_LEN]).1,
        ];
        let mut decoded = 0;
        for round in 0..100_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.random_range(0..64);
                (0..len).map(|_| rng.random()).collect()
            } else {
                // Mutations of valid messages reach deeper than pure noise.
                let mut b = valid[round % valid.len()].clone();
                for _ in 0..rng.random_range(1..4) {
                    match rng.random_range(0..3) {
                        0 if !b.is_empty() => {
                            let i = rng.random_range(0..b.len());
                            b[i] = rng.random();
                        }
                        1 if !b.is_empty() => b.truncate(rng.random_range(0..b.len())),
                        _ => b.push(rng.random()),
                    }
                }
                b
            };
            decoded += usize::from(decode_frame(&bytes).is_ok());
            let _ = dialer.on_challenge(&bytes);
            let request = LinkRequest { dialer: D.into(), nonce: [1; NONCE_LEN] };
            let listener = Listener { key: key(), local: L.into(), request, nonce: [2; NONCE_LEN] };
            let _ = listener.on_proof(&bytes);
            let _ = check_request(&key(), L, Some(&bytes));
            let _ = is_ready(&bytes);
        }
        assert!(decoded > 500, "mutations still produce some valid frames: {decoded}");
    }

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..6).map(|_| b.next_wait(u64::MAX)).collect();
        let ceilings = [100, 200, 400, 800, 1_000, 1_000];
        for (w, c) in waits.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*w >= c / 2 && *w <= c, "{w:?} within the upper half of {c:?}");
        }
        assert_eq!(b.next_wait(0), Duration::from_millis(500), "the lowest draw is half the ceiling");
        b.reset();
        assert!(b.next_wait(7) <= Duration::from_millis(100));
    }
}
