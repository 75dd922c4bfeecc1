//! Access tokens: generation, validation of custom tokens, keyed hashing.
//!
//! Plaintext tokens exist only at creation time. Everything that is stored or streamed
//! is `BLAKE3-keyed(key, token)`; the key is created at the control plane's first start
//! and kept apart from the records.

use base64::Engine;
use rand::RngCore;
use thiserror::Error;

/// Random bytes in a generated token: 192 bits (the contract asks for at least 128).
const TOKEN_RANDOM_BYTES: usize = 24;
pub const MIN_CUSTOM_TOKEN_LEN: usize = 16;
pub const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    User,
    McpClient,
    DataPlane,
}

impl TokenKind {
    /// A recognizable prefix, so secret scanners can find leaked tokens.
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::User => "canopy_usr_",
            TokenKind::McpClient => "canopy_mcp_",
            TokenKind::DataPlane => "canopy_dp_",
        }
    }

    /// A new random token of this kind.
    pub fn generate(self) -> String {
        let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let mut s = String::with_capacity(self.prefix().len() + 32);
        s.push_str(self.prefix());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
        s
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("access token must be at least {MIN_CUSTOM_TOKEN_LEN} characters")]
    TooShort,
    #[error("access token must be at most {MAX_TOKEN_LEN} characters")]
    TooLong,
    #[error("access token must not contain whitespace or control characters")]
    Whitespace,
}

/// Checks a token chosen by an admin (never echoes it back in the error).
pub fn validate_custom(token: &str) -> Result<(), TokenError> {
    if token.chars().count() < MIN_CUSTOM_TOKEN_LEN {
        return Err(TokenError::TooShort);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::Whitespace);
    }
    Ok(())
}

/// The stored form of a token.
///
/// Serialized as a 64-character lowercase hex string (records hold millions of them and
/// serde's default for `[u8; 32]`, an array of 32 numbers, dominated snapshot decoding).
/// Deserializing also accepts that older array form, so existing data dirs still load.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Digit value of each byte; `INVALID` for bytes that are not hex digits. A table instead of
/// a `match`: snapshots decode a million hashes, and random digits make a branchy decoder
/// mispredict about once per byte pair (profiled at ~120 ns per hash).
const INVALID: u8 = 0xff;
const HEX_VALUES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

impl TokenHash {
    /// Parses the 64-character hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        // Any invalid digit sets the high bit of `bad`; checked once at the end.
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (hi, lo) = (
                HEX_VALUES[usize::from(pair[0])],
                HEX_VALUES[usize::from(pair[1])],
            );
            bad |= hi | lo;
            *o = (hi << 4) | (lo & 0x0f);
        }
        (bad & 0x80 == 0).then_some(TokenHash(out))
    }

    fn hex_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        out
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex_bytes();
        // Only ASCII hex digits were written.
        let text = std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?;
        s.serialize_str(text)
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TokenHash;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a token hash: 64 hex characters or an array of 32 bytes")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TokenHash, E> {
                TokenHash::from_hex(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<TokenHash, E> {
                TokenHash::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }

            // The form written before the hex encoding: `[u8; 32]` as a sequence.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TokenHash, A::Error> {
                let mut out = [0u8; 32];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(33, &self));
                }
                Ok(TokenHash(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl TokenHash {
    /// Constant-time comparison, for checks against one known hash.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(TokenHash)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A short fingerprint is enough to tell hashes apart in debug output.
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Hashes tokens with the deployment's secret key.
#[derive(Clone)]
pub struct TokenHasher {
    key: [u8; 32],
}

impl TokenHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn generate_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    }

    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    pub fn hash(&self, token: &str) -> TokenHash {
        TokenHash(*blake3::keyed_hash(&self.key, token.as_bytes()).as_bytes())
    }

    /// Constant-time check of `token` against a stored hash.
    pub fn verify(&self, token: &str, stored: &TokenHash) -> bool {
        self.hash(token).ct_eq(stored)
    }
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher { key: <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_and_random() {
        let a = TokenKind::McpClient.generate();
        let b = TokenKind::McpClient.generate();
        assert!(a.starts_with("canopy_mcp_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "canopy_mcp_".len() + 32);
        assert!(validate_custom(&a).is_ok());
        assert!(TokenKind::User.generate().starts_with("canopy_usr_"));
    }

    #[test]
    fn custom_token_rules() {
        assert_eq!(validate_custom("short"), Err(TokenError::TooShort));
        assert_eq!(validate_custom("sixteen-chars-ok"), Ok(()));
        assert_eq!(
            validate_custom("has a space in it!"),
            Err(TokenError::Whitespace)
        );
        assert_eq!(
            validate_custom("tab\there-is-long-enough"),
            Err(TokenError::Whitespace)
        );
    }

    #[test]
    fn token_hash_serializes_as_hex_and_reads_the_old_array_form() {
        let h = TokenHasher::new([3; 32]).hash("some-token-value-123");
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(json.len(), 66);
        assert!(json.starts_with('"'));
        let back: TokenHash = serde_json::from_str(&json).unwrap_or(TokenHash([0; 32]));
        assert_eq!(back, h);
        let old = serde_json::to_string(&h.0).unwrap_or_default();
        assert!(old.starts_with('['));
        let back: TokenHash = serde_json::from_str(&old).unwrap_or(TokenHash([0; 32]));
        assert_eq!(back, h);
        assert!(serde_json::from_str::<TokenHash>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<TokenHash>("[1,2,3]").is_err());
        assert!(serde_json::from_str::<TokenHash>(&format!("[{}0]", "1,".repeat(32))).is_err());
        assert_eq!(TokenHash::from_hex(&json[1..65]), Some(h));
    }

    #[test]
    fn from_hex_accepts_both_cases_and_rejects_anything_else() {
        let h = TokenHash([0xa5; 32]);
        let lower = "a5".repeat(32);
        assert_eq!(TokenHash::from_hex(&lower), Some(h));
        assert_eq!(TokenHash::from_hex(&lower.to_uppercase()), Some(h));
        let all: String = (0..32).map(|i| format!("{:02x}", i * 8)).collect();
        let parsed = TokenHash::from_hex(&all).expect("valid hex");
        assert_eq!(
            std::str::from_utf8(&parsed.hex_bytes()).ok(),
            Some(all.as_str())
        );
        for bad in ["g", "G", " ", "-", "\u{e9}"] {
            let mut s = lower.clone();
            s.replace_range(10..10 + bad.len(), bad);
            if s.len() == 64 {
                assert_eq!(TokenHash::from_hex(&s), None, "{bad:?}");
            }
        }
        assert_eq!(TokenHash::from_hex(&lower[..62]), None);
        assert_eq!(TokenHash::from_hex(&format!("{lower}00")), None);
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        let h1 = TokenHasher::new([1; 32]);
        let h2 = TokenHasher::new([2; 32]);
        let t = "some-token-value-123";
        assert!(h1.verify(t, &h1.hash(t)));
        assert!(!h1.verify("other-token-value-1", &h1.hash(t)));
        assert_ne!(h1.hash(t), h2.hash(t));
        assert!(!format!("{:?}", h1).contains('1'));
    }
}
