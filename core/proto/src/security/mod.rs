//! Encryption and authentication of every packet and frame: AES-256-GCM with a keyring, the cluster
//! label bound as associated data, and replay windows per sender and nonce space.
//!
//! An encrypted packet is `[0xE1][nonce: 12][ciphertext][tag: 16]` (29 bytes of overhead). The
//! associated data is `"shoal/1" || len(label) || label`, so a packet sealed for another cluster fails
//! authentication even under the same key. Nonces are `prefix || counter`: the 8-byte prefix is drawn
//! from an AES-256 counter-mode CSPRNG that the host seeds (the core never asks the OS for randomness), the 4-byte
//! counter counts the packets sealed under that prefix; a new prefix is drawn when it wraps.
//!
//! A sender has two nonce spaces, each with its own prefix and counter: one for datagrams, one for
//! reliable frames (see `nonce`). Receivers remember accepted `(prefix, counter)` pairs per prefix
//! and drop replays (see `replay`), so each space gets its own window. The split exists because the
//! two paths arrive at different paces: the transport delivers a sender's reliable frames in order
//! per destination, but a frame that waited behind a TCP connect or a large frame can land after
//! datagrams sealed hundreds of packets later. Under a shared counter it would fall below the
//! datagrams' window and be refused as a replay. The replay table is bounded and holds two prefixes
//! per sender, so its capacity is twice `REPLAY_SENDERS`: a member remembers the windows of about
//! 4,096 recently heard senders (prefixes age out one at a time, least recently used first).
//!
//! [`SecurityMode`] supports turning encryption on in a running cluster without downtime: move every
//! member to `Transition { send_encrypted: false }` (accepts both, sends plaintext), then to
//! `Transition { send_encrypted: true }`, then to `Encrypted`.
//!
//! A packet that fails any check is dropped and counted; it never reaches the protocol.

mod keyring;
mod nonce;
mod replay;

use alloc::vec::Vec;
use core::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
pub use keyring::{Key, Keyring, KeyringError};
use nonce::NonceSource;
use replay::ReplayGuard;

/// First byte of an encrypted packet (plaintext packets start with a protocol version, 1 to 127).
pub const ENCRYPTED_MARKER: u8 = 0xE1;
/// Bytes an encrypted packet adds: marker, nonce and tag.
pub const OVERHEAD: usize = 1 + 12 + 16;
/// Longest cluster label, in bytes.
pub const MAX_LABEL_LEN: usize = 255;
/// Senders whose replay windows a member remembers at once. Each sender uses two prefixes (one per
/// nonce space), so the replay table holds twice as many.
const REPLAY_SENDERS: usize = 4_096;

/// Whether packets are encrypted, and what is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecurityMode {
    /// Packets are sent in plaintext. Encrypted packets are still opened when a keyring is
    /// installed (so a cluster can be migrated either way one member at a time), and dropped as
    /// [`SecurityError::NoKeyring`] without one.
    #[default]
    Plaintext,
    /// Migration: both plaintext and encrypted packets are accepted; packets are sent encrypted when
    /// `send_encrypted` is set. Needs a keyring.
    Transition {
        /// Send encrypted packets when set, plaintext ones otherwise; both are accepted either way.
        send_encrypted: bool,
    },
    /// Everything sent is encrypted and only authenticated packets are accepted. Needs a keyring.
    Encrypted,
}

impl SecurityMode {
    fn sends_encrypted(self) -> bool {
        matches!(self, SecurityMode::Encrypted | SecurityMode::Transition { send_encrypted: true })
    }

    fn accepts_plaintext(self) -> bool {
        !matches!(self, SecurityMode::Encrypted)
    }
}

/// Why an incoming packet was refused by the security layer. Always the sender's (or an attacker's)
/// fault; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityError {
    /// An encrypted packet arrived but this member has no keyring.
    NoKeyring,
    /// No installed key authenticates the packet: wrong key, another cluster's label, or tampering.
    Unauthenticated,
    /// Shorter than the encryption overhead.
    Truncated,
    /// This nonce was accepted before: a replayed packet.
    Replayed,
    /// A plaintext packet arrived while only encrypted packets are accepted.
    PlaintextRejected,
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityError::NoKeyring => "encrypted packet but no keyring installed",
            SecurityError::Unauthenticated => "packet failed authentication (wrong key or label, or tampered)",
            SecurityError::Truncated => "encrypted packet too short",
            SecurityError::Replayed => "replayed packet",
            SecurityError::PlaintextRejected => "plaintext packet while encryption is required",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SecurityError {}

/// Counters of the security layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecurityStats {
    /// Packets and frames encrypted for sending, [`crate::Node::farewell`] packets included.
    pub encrypted_sent: u64,
    /// Encrypted packets accepted: authenticated by an installed key and not replayed.
    pub decrypted: u64,
    /// Encrypted packets no installed key authenticates (wrong key, another cluster's label, or
    /// tampering).
    pub unauthenticated: u64,
    /// Authenticated packets dropped because their nonce was accepted before.
    pub replays: u64,
    /// Plaintext packets dropped because the mode is `Encrypted`.
    pub plaintext_rejected: u64,
    /// Encrypted packets shorter than [`OVERHEAD`].
    pub truncated: u64,
    /// Encrypted packets dropped because no keyring is installed.
    pub no_keyring: u64,
    /// Packets not sent because encryption is required and no keyring is installed.
    pub unsendable: u64,
}

/// Seals one plaintext packet (`[version][messages...]`) as a member of the cluster labelled `label`
/// holding `keyring` would, with nonces drawn from `entropy`. For tools and tests that inject
/// traffic (the swarm simulation's forged claims); members seal their own packets. Feature
/// `wire-internals`.
#[cfg(feature = "wire-internals")]
pub fn seal_packet(keyring: &Keyring, label: &str, entropy: [u8; 32], packet: Vec<u8>) -> Vec<u8> {
    let mut s = Security::new(SecurityMode::Encrypted, label, 0);
    s.set_keyring(keyring.clone(), entropy);
    s.seal(packet.clone(), false).unwrap_or(packet)
}

/// The per-node security state: mode, label, keyring, nonce spaces and replay windows.
pub(crate) struct Security {
    mode: SecurityMode,
    aad: Vec<u8>,
    keyring: Option<Keyring>,
    nonces: Option<NonceSource>,
    replay: ReplayGuard,
    plaintext: Vec<u8>,
    pub stats: SecurityStats,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security").field("mode", &self.mode).field("keyring", &self.keyring).finish_non_exhaustive()
    }
}

/// What the node should do with an incoming packet after the security layer looked at it.
pub(crate) enum Opened {
    /// Plaintext packet, accepted as is.
    Plain,
    /// Decrypted into the buffer returned by [`Security::take_plaintext`].
    Decrypted,
}

impl Security {
    pub fn new(mode: SecurityMode, label: &str, hash_seed: u64) -> Self {
        let mut aad = Vec::with_capacity(8 + label.len());
        aad.extend_from_slice(b"shoal/1");
        aad.push(label.len() as u8);
        aad.extend_from_slice(label.as_bytes());
        Security {
            mode,
            aad,
            keyring: None,
            nonces: None,
            replay: ReplayGuard::new(2 * REPLAY_SENDERS, hash_seed),
            plaintext: Vec::new(),
            stats: SecurityStats::default(),
        }
    }

    pub fn set_mode(&mut self, mode: SecurityMode) {
        self.mode = mode;
    }

    /// Installs the keyring and seeds the nonce generator from 32 bytes of host entropy; both nonce
    /// spaces start over under fresh prefixes.
    pub fn set_keyring(&mut self, keyring: Keyring, entropy: [u8; 32]) {
        self.nonces = Some(NonceSource::new(entropy));
        self.keyring = Some(keyring);
    }

    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.keyring.as_mut()
    }

    /// Bytes the envelope adds to what is sent, given the current mode.
    pub fn overhead(&self) -> usize {
        if self.mode.sends_encrypted() {
            OVERHEAD
        } else {
            0
        }
    }

    /// Wraps an outgoing packet as the mode requires. Call once per transmit, just before it leaves,
    /// with `reliable` set when it travels as a reliable frame (it then takes its nonce from the
    /// reliable space). `None`: it cannot be sent (no keyring).
    pub fn seal(&mut self, packet: Vec<u8>, reliable: bool) -> Option<Vec<u8>> {
        if !self.mode.sends_encrypted() {
            return Some(packet);
        }
        let (Some(keyring), Some(nonces)) = (&self.keyring, &mut self.nonces) else {
            self.stats.unsendable += 1;
            return None;
        };
        let nonce = nonces.next(reliable);
        let mut out = Vec::with_capacity(packet.len() + OVERHEAD);
        out.push(ENCRYPTED_MARKER);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&packet);
        let cipher = &keyring.entries()[0].cipher;
        let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), &self.aad, &mut out[13..]).ok()?;
        out.extend_from_slice(&tag);
        self.stats.encrypted_sent += 1;
        Some(out)
    }

    /// Checks an incoming packet. On `Decrypted`, the plaintext is in [`Security::take_plaintext`].
    pub fn open(&mut self, bytes: &[u8]) -> Result<Opened, SecurityError> {
        if bytes.first() != Some(&ENCRYPTED_MARKER) {
            if self.mode.accepts_plaintext() {
                return Ok(Opened::Plain);
            }
            self.stats.plaintext_rejected += 1;
            return Err(SecurityError::PlaintextRejected);
        }
        let Some(keyring) = &self.keyring else {
            self.stats.no_keyring += 1;
            return Err(SecurityError::NoKeyring);
        };
        if bytes.len() < OVERHEAD {
            self.stats.truncated += 1;
            return Err(SecurityError::Truncated);
        }
        let nonce = &bytes[1..13];
        let (body, tag) = bytes[13..].split_at(bytes.len() - 13 - 16);
        let mut opened = false;
        for entry in keyring.entries() {
            self.plaintext.clear();
            self.plaintext.extend_from_slice(body);
            let ok = entry
                .cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    &self.aad,
                    &mut self.plaintext,
                    Tag::from_slice(tag),
                )
                .is_ok();
            if ok {
                opened = true;
                break;
            }
        }
        if !opened {
            self.stats.unauthenticated += 1;
            return Err(SecurityError::Unauthenticated);
        }
        let prefix = u64::from_be_bytes(nonce[..8].try_into().unwrap_or([0; 8]));
        let counter = u64::from(u32::from_be_bytes(nonce[8..].try_into().unwrap_or([0; 4])));
        if !self.replay.accept(prefix, counter) {
            self.stats.replays += 1;
            return Err(SecurityError::Replayed);
        }
        self.stats.decrypted += 1;
        Ok(Opened::Decrypted)
    }

    /// The last decrypted packet. Give the buffer back with [`Security::put_plaintext`].
    pub fn take_plaintext(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.plaintext)
    }

    pub fn put_plaintext(&mut self, buf: Vec<u8>) {
        self.plaintext = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured(mode: SecurityMode, label: &str, key: Key) -> Security {
        let mut s = Security::new(mode, label, 1);
        s.set_keyring(Keyring::new(key), [9; 32]);
        s
    }

    fn open_to_vec(s: &mut Security, bytes: &[u8]) -> Result<Vec<u8>, SecurityError> {
        match s.open(bytes)? {
            Opened::Plain => Ok(bytes.to_vec()),
            Opened::Decrypted => Ok(s.take_plaintext()),
        }
    }

    #[test]
    fn a_sealed_packet_opens_to_the_same_bytes_and_only_once() {
        let mut a = secured(SecurityMode::Encrypted, "prod", [1; 32]);
        let mut b = secured(SecurityMode::Encrypted, "prod", [1; 32]);
        let sealed = a.seal(b"\x01hello".to_vec(), false).unwrap();
        assert_eq!(sealed.len(), 6 + OVERHEAD);
        assert_eq!(open_to_vec(&mut b, &sealed).unwrap(), b"\x01hello");
        assert_eq!(b.open(&sealed).err(), Some(SecurityError::Replayed));
    }

    #[test]
    fn another_clusters_label_fails_even_with_the_same_key() {
        let mut a = secured(SecurityMode::Encrypted, "prod", [1; 32]);
        let mut b = secured(SecurityMode::Encrypted, "staging", [1; 32]);
        let sealed = a.seal(b"\x01x".to_vec(), false).unwrap();
        assert_eq!(b.open(&sealed).err(), Some(SecurityError::Unauthenticated));
    }

    #[test]
    fn wrong_key_truncation_and_bit_flips_are_all_refused() {
        let mut a = secured(SecurityMode::Encrypted, "", [1; 32]);
        let mut wrong = secured(SecurityMode::Encrypted, "", [2; 32]);
        let sealed = a.seal(b"\x01payload".to_vec(), false).unwrap();
        assert_eq!(wrong.open(&sealed).err(), Some(SecurityError::Unauthenticated));
        let mut b = secured(SecurityMode::Encrypted, "", [1; 32]);
        assert_eq!(b.open(&sealed[..20]).err(), Some(SecurityError::Truncated));
        for bit in 8..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(b.open(&flipped).is_err(), "bit {bit}");
        }
        assert_eq!(b.stats.replays, 0, "failed packets never touch the replay window");
        assert!(b.open(&sealed).is_ok());
    }

    #[test]
    fn decryption_tries_every_installed_key() {
        let mut old = secured(SecurityMode::Encrypted, "", [1; 32]);
        let mut rotating = secured(SecurityMode::Encrypted, "", [2; 32]);
        rotating.keyring_mut().unwrap().install([1; 32]);
        assert!(rotating.open(&old.seal(b"\x01a".to_vec(), false).unwrap()).is_ok());
    }

    #[test]
    fn transition_mode_accepts_plaintext_and_encrypted_mode_does_not() {
        let mut t = secured(SecurityMode::Transition { send_encrypted: false }, "", [1; 32]);
        assert!(matches!(t.open(b"\x01plain"), Ok(Opened::Plain)));
        assert_eq!(t.seal(b"\x01p".to_vec(), false).unwrap(), b"\x01p", "sends plaintext until told otherwise");
        let mut e = secured(SecurityMode::Encrypted, "", [1; 32]);
        assert_eq!(e.open(b"\x01plain").err(), Some(SecurityError::PlaintextRejected));
        assert!(t.open(&e.seal(b"\x01x".to_vec(), false).unwrap()).is_ok());
    }

    #[test]
    fn without_a_keyring_nothing_encrypted_is_sent_or_accepted() {
        let mut s = Security::new(SecurityMode::Encrypted, "", 1);
        assert_eq!(s.seal(b"\x01x".to_vec(), false), None);
        assert_eq!(s.stats.unsendable, 1);
        let mut other = secured(SecurityMode::Encrypted, "", [1; 32]);
        assert_eq!(s.open(&other.seal(b"\x01x".to_vec(), false).unwrap()).err(), Some(SecurityError::NoKeyring));
    }

    #[test]
    fn a_reliable_frame_sealed_before_many_datagrams_is_still_accepted() {
        let mut a = secured(SecurityMode::Encrypted, "", [1; 32]);
        let mut b = secured(SecurityMode::Encrypted, "", [1; 32]);
        let frame = a.seal(b"\x01frame".to_vec(), true).unwrap();
        let datagrams: Vec<_> = (0..2_000).map(|_| a.seal(b"\x01ping".to_vec(), false).unwrap()).collect();
        for d in &datagrams {
            assert!(b.open(d).is_ok());
        }
        assert_eq!(open_to_vec(&mut b, &frame).unwrap(), b"\x01frame", "late, but never seen");
        assert_eq!(b.open(&frame).err(), Some(SecurityError::Replayed));
    }

    #[test]
    fn a_datagram_held_up_while_its_sender_sealed_nine_hundred_more_is_not_taken_for_a_replay() {
        // A receiver that was slow for a few seconds catches up out of order; a busy sender seals
        // about a hundred packets a second, for every destination.
        let mut a = secured(SecurityMode::Encrypted, "", [1; 32]);
        let mut b = secured(SecurityMode::Encrypted, "", [1; 32]);
        let late = a.seal(b"\x01late".to_vec(), false).unwrap();
        for _ in 0..900 {
            let newer = a.seal(b"\x01ping".to_vec(), false).unwrap();
            assert!(b.open(&newer).is_ok());
        }
        assert_eq!(open_to_vec(&mut b, &late).unwrap(), b"\x01late");
        assert_eq!(b.open(&late).err(), Some(SecurityError::Replayed));
    }

    #[test]
    fn nonces_never_repeat_within_a_life() {
        let mut a = secured(SecurityMode::Encrypted, "", [1; 32]);
        let n1 = a.seal(b"\x01x".to_vec(), false).unwrap()[1..13].to_vec();
        let n2 = a.seal(b"\x01x".to_vec(), false).unwrap()[1..13].to_vec();
        assert_ne!(n1, n2);
        let mut b = secured(SecurityMode::Encrypted, "", [1; 32]);
        b.set_keyring(Keyring::new([1; 32]), [10; 32]);
        assert_ne!(b.seal(b"\x01x".to_vec(), false).unwrap()[1..9], n1[..8], "different entropy, different prefix");
    }
}
