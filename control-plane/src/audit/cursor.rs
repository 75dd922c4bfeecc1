//! Page cursors: the key of the last event a page returned, with a keyed BLAKE3 tag so a
//! cursor that was not handed out (edited, truncated, from another control plane) is
//! refused instead of silently listing from some other place.

use super::key::{EventKey, KEY_LEN};
use super::AuditError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const CONTEXT: &[u8] = b"canopy audit cursor v1";

pub(super) struct CursorKey([u8; 32]);

impl CursorKey {
    pub fn new(raw: [u8; 32]) -> Self {
        Self(raw)
    }

    fn tag(&self, key: &EventKey) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(CONTEXT);
        h.update(key);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..TAG_LEN]);
        out
    }

    pub fn seal(&self, key: &EventKey) -> String {
        let mut raw = Vec::with_capacity(1 + KEY_LEN + TAG_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(key);
        raw.extend_from_slice(&self.tag(key));
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn open(&self, cursor: &str) -> Result<EventKey, AuditError> {
        let raw = URL_SAFE_NO_PAD
            .decode(cursor.trim())
            .map_err(|_| AuditError::Cursor)?;
        if raw.len() != 1 + KEY_LEN + TAG_LEN || raw[0] != VERSION {
            return Err(AuditError::Cursor);
        }
        let key = EventKey::try_from(&raw[1..1 + KEY_LEN]).map_err(|_| AuditError::Cursor)?;
        let tag = blake3::Hash::from_bytes({
            // Compared in constant time through blake3::Hash's Eq on the full 32 bytes.
            let mut full = [0u8; 32];
            full[..TAG_LEN].copy_from_slice(&raw[1 + KEY_LEN..]);
            full
        });
        let mut expected = [0u8; 32];
        expected[..TAG_LEN].copy_from_slice(&self.tag(&key));
        if tag != blake3::Hash::from_bytes(expected) {
            return Err(AuditError::Cursor);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let keys = CursorKey::new([7; 32]);
        let key = [3u8; KEY_LEN];
        let cursor = keys.seal(&key);
        assert_eq!(keys.open(&cursor).ok(), Some(key));
        // Another key (another control plane) does not accept it.
        assert!(matches!(
            CursorKey::new([8; 32]).open(&cursor),
            Err(AuditError::Cursor)
        ));
        // One changed position byte, garbage, an empty string.
        let mut raw = URL_SAFE_NO_PAD.decode(&cursor).unwrap_or_default();
        raw[5] ^= 1;
        assert!(keys.open(&URL_SAFE_NO_PAD.encode(&raw)).is_err());
        assert!(keys.open("not a cursor!").is_err());
        assert!(keys.open("").is_err());
    }
}
