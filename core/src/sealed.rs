//! Sealing secrets at rest: XChaCha20-Poly1305 with a random nonce per value.
//!
//! A sealed value is `version (1 byte) ‖ key id (4 bytes) ‖ nonce (24 bytes) ‖ ciphertext
//! and tag`. The key id lets a reader tell which key sealed a value (key rotation, a wrong
//! key file) without trying to open it; the caller's associated data binds a value to
//! where it is stored, so a sealed value copied to another record does not open.
//! The key itself lives in a file apart from what it protects; this module does no I/O.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use thiserror::Error;

/// The one sealed format so far. A new format gets a new number; readers keep the old ones.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Poly1305 tag.
const TAG_LEN: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is too short")]
    Truncated,
    #[error("sealed value has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("sealed with another key (key id {found}, this key is {expected})")]
    OtherKey { found: String, expected: String },
    #[error("value is too long to seal")]
    TooLong,
    #[error("sealed value does not open with this key (damaged, or moved from another record)")]
    Damaged,
}

/// A 256-bit sealing key. `Debug` shows only its id.
#[derive(Clone)]
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &hex(&self.id))
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SealingKey {
    pub fn new(key: [u8; 32]) -> Self {
        // The id is a one-way function of the key, so publishing it reveals nothing.
        let digest = blake3::derive_key("canopy sealing key id v1", &key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
            id,
        }
    }

    /// 32 random bytes for a new key file.
    pub fn generate() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    }

    /// The key id, in hex (for messages and logs).
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// Whether `sealed` says it was sealed with this key (it may still fail to open).
    pub fn sealed_this(&self, sealed: &[u8]) -> bool {
        sealed.len() > HEADER_LEN && sealed[1..1 + KEY_ID_LEN] == self.id
    }

    /// Seals `plaintext`; `aad` must be given again to open it.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        // Encryption fails only past the cipher's length limit (256 GiB for one value).
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::TooLong)?;
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a value sealed by [`SealingKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(SealError::Truncated);
        }
        if sealed[0] != VERSION {
            return Err(SealError::UnknownVersion(sealed[0]));
        }
        let id = &sealed[1..1 + KEY_ID_LEN];
        if id != self.id {
            return Err(SealError::OtherKey {
                found: hex(id),
                expected: self.id(),
            });
        }
        let nonce = XNonce::from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad,
                },
            )
            .map_err(|_| SealError::Damaged)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let key = SealingKey::new(SealingKey::generate());
        let a = key.seal(b"server:gh", b"ghp_secret").unwrap();
        let b = key.seal(b"server:gh", b"ghp_secret").unwrap();
        assert_ne!(a, b, "a nonce is never reused");
        assert!(!a.windows(10).any(|w| w == b"ghp_secret"));
        assert!(key.sealed_this(&a));
        assert_eq!(key.open(b"server:gh", &a).unwrap(), b"ghp_secret");
        assert_eq!(key.open(b"server:gh", &b).unwrap(), b"ghp_secret");
    }

    #[test]
    fn wrong_place_key_or_bytes_do_not_open() {
        let key = SealingKey::new([7; 32]);
        let other = SealingKey::new([8; 32]);
        let sealed = key.seal(b"server:gh", b"secret").unwrap();
        assert_eq!(key.open(b"server:x", &sealed), Err(SealError::Damaged));
        assert!(matches!(
            other.open(b"server:gh", &sealed),
            Err(SealError::OtherKey { .. })
        ));
        assert!(!other.sealed_this(&sealed));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(b"server:gh", &flipped), Err(SealError::Damaged));
        assert_eq!(key.open(b"", &sealed[..20]), Err(SealError::Truncated));
        let mut future = sealed;
        future[0] = 9;
        assert_eq!(
            key.open(b"server:gh", &future),
            Err(SealError::UnknownVersion(9))
        );
        assert!(!format!("{key:?}").contains("7, 7"));
    }
}
