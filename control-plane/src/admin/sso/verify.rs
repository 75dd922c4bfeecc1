//! Checking an identity provider's JWT access token for the Admin API, from the keys the
//! control plane already holds (the JWKS stored with the provider; parsed once per key
//! revision, never fetched per call).
//!
//! The rules are the data plane's, from the same code (`canopy-jwt`): only the provider's
//! asymmetric algorithms, the key named by `kid`, `iss` exactly, `exp`/`nbf` with the
//! provider's leeway, access tokens only (no ID tokens). The one difference is the
//! audience: the Admin API accepts only its own (the provider's `admin_audience`, else the
//! control plane's public URL), never a data plane's, so a token minted for a data plane
//! does not work here and the reverse.

use crate::store::ProviderRecord;
use canopy_jwt::{Key, Refusal, Rules};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a token is refused; never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::admin) enum Refused {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("algorithm not allowed for this identity provider")]
    Algorithm,
    #[error("signed with a key the control plane does not hold (yet)")]
    UnknownKid { kid: String },
    #[error("bad signature")]
    Signature,
    #[error("the token is not for the Admin API (audience)")]
    Audience,
    #[error("the token has expired; sign in again")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("an ID token is not an access token")]
    IdToken,
    #[error("the token's claims are not usable")]
    Claims,
}

impl Refused {
    /// The fixed text of the Unauthenticated status.
    pub(in crate::admin) fn message(&self) -> &'static str {
        match self {
            Refused::Malformed | Refused::Claims => "invalid access token",
            Refused::Algorithm | Refused::Signature => {
                "invalid access token (signature or algorithm not accepted)"
            }
            Refused::UnknownKid { .. } => {
                "access token signed with a key the control plane does not hold yet; try again shortly"
            }
            Refused::Audience => {
                "this access token is not for the Admin API (wrong audience); sign in with `canopy login --sso`"
            }
            Refused::Expired => "access token expired; sign in again with `canopy login --sso`",
            Refused::NotYetValid => "access token not valid yet (check the clocks)",
            Refused::IdToken => "an ID token is not an access token",
        }
    }
}

/// A provider's parsed key set, for one key revision.
struct KeySet {
    keys_revision: u64,
    keys: Vec<Key>,
}

/// Parsed key sets by provider name, replaced when the stored keys change.
#[derive(Default)]
pub(in crate::admin) struct KeyCache {
    sets: Mutex<HashMap<String, Arc<KeySet>>>,
}

impl KeyCache {
    fn keys_of(&self, p: &ProviderRecord) -> Arc<KeySet> {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = sets.get(&p.spec.name) {
            if set.keys_revision == p.keys_revision {
                return Arc::clone(set);
            }
        }
        let set = Arc::new(KeySet {
            keys_revision: p.keys_revision,
            keys: parse_jwks(&p.spec.name, &p.jwks_json),
        });
        sets.insert(p.spec.name.clone(), Arc::clone(&set));
        set
    }
}

/// The token's `iss`, unverified: which provider to check it against.
pub(in crate::admin) fn issuer_of(token: &str) -> Option<String> {
    // A JWT has three parts; anything else (a static token) is not looked at further.
    if token.split('.').count() != 3 {
        return None;
    }
    canopy_jwt::unverified_issuer(token).ok().flatten()
}

/// Verifies `token` as an access token of `provider` for `audience`; its claims.
pub(in crate::admin) fn verify(
    cache: &KeyCache,
    provider: &ProviderRecord,
    audience: &str,
    token: &str,
) -> Result<Map<String, Value>, Refused> {
    let header = canopy_jwt::decode_header(token).map_err(|_| Refused::Malformed)?;
    let allowed: Vec<canopy_jwt::Algorithm> = provider
        .spec
        .algorithms
        .iter()
        .filter_map(|a| canopy_jwt::algorithm(a))
        .collect();
    let set = cache.keys_of(provider);
    let rules = Rules {
        issuer: &provider.spec.issuer,
        audiences: &[audience],
        leeway_secs: provider.spec.leeway_ms.div_ceil(1000),
    };
    canopy_jwt::verify(token, &header, &allowed, &set.keys, &rules).map_err(refused)
}

/// The shared refusal in the Admin API's terms.
fn refused(r: Refusal) -> Refused {
    match r {
        Refusal::Malformed => Refused::Malformed,
        Refusal::Algorithm(_) => Refused::Algorithm,
        Refusal::UnknownKid(kid) => Refused::UnknownKid {
            kid: kid.chars().take(128).collect(),
        },
        // No key of the token's family: nothing can vouch for its signature.
        Refusal::NoKey | Refusal::Signature => Refused::Signature,
        Refusal::Audience => Refused::Audience,
        Refusal::Expired => Refused::Expired,
        Refusal::NotYetValid => Refused::NotYetValid,
        Refusal::IdToken => Refused::IdToken,
        Refusal::Issuer | Refusal::MissingClaim(_) | Refusal::Invalid(_) => Refused::Claims,
    }
}

/// The usable signing keys of a stored JWKS; what cannot be used is left out (fail closed).
fn parse_jwks(name: &str, json: &str) -> Vec<Key> {
    canopy_jwt::parse_jwks(name, json).unwrap_or_else(|e| {
        tracing::warn!(idp = %name, error = %e, "stored JWKS unreadable: no Admin API token of this provider verifies");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn jwt(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn issuer_is_read_only_from_jwts() {
        let t = jwt(r#"{"alg":"RS256"}"#, r#"{"iss":"https://idp","sub":"a"}"#);
        assert_eq!(issuer_of(&t).as_deref(), Some("https://idp"));
        assert_eq!(issuer_of("canopy_usr_static-token"), None);
        assert_eq!(
            issuer_of(&jwt(r#"{"alg":"RS256"}"#, r#"{"sub":"a"}"#)),
            None
        );
    }

    #[test]
    fn no_symmetric_keys_and_unreadable_sets_verify_nothing() {
        let set = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#;
        assert!(parse_jwks("corp", set).is_empty());
        assert!(parse_jwks("corp", "garbage").is_empty());
    }
}
