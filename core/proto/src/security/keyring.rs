//! The keyring: every AES-256-GCM key a member accepts, and the one it encrypts with.
//!
//! Rotation across a live cluster, with no packet any member cannot read:
//! 1. `install` the new key on every member (all still encrypt with the old one, all accept both);
//! 2. `use_key` the new key on every member (all accept both, so the order does not matter);
//! 3. `remove` the old key on every member.

use alloc::vec::Vec;
use core::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};

/// A 256-bit key.
pub type Key = [u8; 32];

/// Why a keyring operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// The key is not installed.
    UnknownKey,
    /// The primary key cannot be removed; `use_key` another one first.
    RemovingPrimary,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::UnknownKey => f.write_str("key is not installed"),
            KeyringError::RemovingPrimary => f.write_str("the primary key cannot be removed"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyringError {}

pub(crate) struct Entry {
    pub key: Key,
    pub cipher: Aes256Gcm,
}

/// Installed keys, the primary first.
pub struct Keyring {
    /// `entries[0]` is the primary key.
    entries: Vec<Entry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring").field("keys", &self.entries.len()).finish()
    }
}

impl Clone for Keyring {
    fn clone(&self) -> Self {
        let mut k = Keyring::new(self.entries[0].key);
        for e in &self.entries[1..] {
            k.install(e.key);
        }
        k
    }
}

impl Keyring {
    /// A keyring holding `primary`, which encrypts everything sent.
    pub fn new(primary: Key) -> Self {
        Keyring { entries: alloc::vec![Entry { key: primary, cipher: Aes256Gcm::new(&primary.into()) }] }
    }

    /// Adds a key accepted for decryption. Installing an installed key changes nothing.
    pub fn install(&mut self, key: Key) {
        if !self.entries.iter().any(|e| e.key == key) {
            self.entries.push(Entry { key, cipher: Aes256Gcm::new(&key.into()) });
        }
    }

    /// Makes an installed key the primary (the only one that encrypts).
    pub fn use_key(&mut self, key: Key) -> Result<(), KeyringError> {
        let i = self.entries.iter().position(|e| e.key == key).ok_or(KeyringError::UnknownKey)?;
        self.entries.swap(0, i);
        Ok(())
    }

    /// Removes a key that is not the primary.
    pub fn remove(&mut self, key: Key) -> Result<(), KeyringError> {
        let i = self.entries.iter().position(|e| e.key == key).ok_or(KeyringError::UnknownKey)?;
        if i == 0 {
            return Err(KeyringError::RemovingPrimary);
        }
        self.entries.remove(i);
        Ok(())
    }

    /// The primary key.
    pub fn primary(&self) -> &Key {
        &self.entries[0].key
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.iter().map(|e| &e.key)
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_can_change_but_never_be_removed() {
        let mut k = Keyring::new([1; 32]);
        k.install([2; 32]);
        assert_eq!(k.remove([1; 32]), Err(KeyringError::RemovingPrimary));
        assert_eq!(k.use_key([3; 32]), Err(KeyringError::UnknownKey));
        k.use_key([2; 32]).unwrap();
        assert_eq!(k.primary(), &[2; 32]);
        k.remove([1; 32]).unwrap();
        assert_eq!(k.keys().count(), 1);
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let k = Keyring::new([0xAB; 32]);
        assert!(!alloc::format!("{k:?}").contains("171"));
    }
}
