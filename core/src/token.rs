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
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenHash(pub [u8; 32]);

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
