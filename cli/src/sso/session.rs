//! The sign-in kept in the config file beside the access token: what renewing it needs.
//!
//! The refresh token is a secret like the access token: it lives only in the config file
//! (mode 0600, see `config.rs`) and never appears in output, errors or `Debug`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Renew this long before the access token expires, so a command does not start with a
/// token that dies on the way.
const RENEW_MARGIN_SECS: u64 = 30;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The identity provider's name on the control plane.
    pub idp: String,
    pub issuer: String,
    pub token_endpoint: String,
    pub client_id: String,
    /// The Admin API's audience (`resource` on refresh).
    pub audience: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds the access token expires at (`None`: unknown; never renewed ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("idp", &self.idp)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Session {
    pub fn needs_renewal(&self, now_secs: u64) -> bool {
        self.expires_at
            .is_some_and(|exp| now_secs.saturating_add(RENEW_MARGIN_SECS) >= exp)
    }
}

/// When the access token expires: `expires_in` from the token response, else the JWT's
/// own `exp` (read, not verified: it only decides when to renew).
pub fn expiry(access_token: &str, expires_in: Option<u64>, now_secs: u64) -> Option<u64> {
    if let Some(secs) = expires_in {
        return Some(now_secs.saturating_add(secs));
    }
    let payload = access_token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: Option<u64>) -> Session {
        Session {
            idp: "corp".into(),
            issuer: "https://idp".into(),
            token_endpoint: "https://idp/token".into(),
            client_id: "cli".into(),
            audience: "https://cp".into(),
            refresh_token: Some("rt-secret-value".into()),
            expires_at,
        }
    }

    #[test]
    fn renews_shortly_before_expiry_only_when_known() {
        assert!(!session(Some(1_000)).needs_renewal(900));
        assert!(session(Some(1_000)).needs_renewal(980));
        assert!(session(Some(1_000)).needs_renewal(2_000));
        assert!(!session(None).needs_renewal(u64::MAX));
    }

    #[test]
    fn expiry_from_response_or_jwt() {
        assert_eq!(expiry("opaque", Some(300), 1_000), Some(1_300));
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":4242,"sub":"a"}"#);
        assert_eq!(expiry(&format!("h.{payload}.s"), None, 1_000), Some(4242));
        assert_eq!(expiry("opaque", None, 1_000), None);
    }

    #[test]
    fn debug_redacts_the_refresh_token() {
        assert!(!format!("{:?}", session(None)).contains("rt-secret"));
    }
}
