//! Checking an identity provider's JWT access token for the Admin API, from the keys the
//! control plane already holds (the JWKS stored with the provider; parsed once per key
//! revision, never fetched per call).
//!
//! The rules are the data plane's (`data-plane/src/identity/verify.rs`): only the
//! provider's asymmetric algorithms, the key named by `kid`, `iss` exactly, `exp`/`nbf`
//! with the provider's leeway, access tokens only (no ID tokens). The one difference is
//! the audience: the Admin API accepts only its own (the provider's `admin_audience`, else
//! the control plane's public URL), never a data plane's, so a token minted for a data
//! plane does not work here and the reverse.

use crate::store::ProviderRecord;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Never HMAC (a provider's keys are public: an HMAC keyed with one is a forgery) and
/// never `none` (which has no `Algorithm`).
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

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

/// One verification key.
struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when its JWK names one.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

impl Key {
    fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
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
    #[derive(serde::Deserialize)]
    struct Peek {
        iss: Option<String>,
    }
    // A JWT has three parts; anything else (a static token) is not looked at further.
    if token.split('.').count() != 3 {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Peek>(token)
        .ok()?
        .iss
}

/// Verifies `token` as an access token of `provider` for `audience`; its claims.
pub(in crate::admin) fn verify(
    cache: &KeyCache,
    provider: &ProviderRecord,
    audience: &str,
    token: &str,
) -> Result<Map<String, Value>, Refused> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
    let alg = header.alg;
    let allowed = provider
        .spec
        .algorithms
        .iter()
        .filter_map(|a| a.trim().parse::<Algorithm>().ok())
        .any(|a| a == alg);
    if !allowed || !ASYMMETRIC.contains(&alg) {
        return Err(Refused::Algorithm);
    }
    let set = cache.keys_of(provider);
    let candidates: Vec<&Key> = match header.kid.as_deref() {
        Some(kid) => match set.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
            Some(k) if k.fits(alg) => vec![k],
            Some(_) => return Err(Refused::Signature),
            None => {
                return Err(Refused::UnknownKid {
                    kid: kid.chars().take(128).collect(),
                })
            }
        },
        None => set.keys.iter().filter(|k| k.fits(alg)).collect(),
    };
    let mut v = Validation::new(alg);
    v.leeway = provider.spec.leeway_ms.div_ceil(1000);
    v.validate_nbf = true;
    v.validate_exp = true;
    v.validate_aud = true;
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.set_issuer(&[&provider.spec.issuer]);
    v.set_audience(&[audience]);
    let mut last = Refused::Signature;
    for k in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
            Ok(data) => {
                if !access_token_type(header.typ.as_deref()) || looks_like_id_token(&data.claims) {
                    return Err(Refused::IdToken);
                }
                return Ok(data.claims);
            }
            Err(e) => {
                last = refused(e.kind());
                if last != Refused::Signature {
                    // The signature held; the claims are what is wrong.
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

fn refused(kind: &jsonwebtoken::errors::ErrorKind) -> Refused {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature
        | K::InvalidAlgorithm
        | K::InvalidEcdsaKey
        | K::InvalidEddsaKey
        | K::InvalidRsaKey(_)
        | K::InvalidKeyFormat => Refused::Signature,
        K::ExpiredSignature => Refused::Expired,
        K::ImmatureSignature => Refused::NotYetValid,
        K::InvalidAudience => Refused::Audience,
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => Refused::Malformed,
        _ => Refused::Claims,
    }
}

fn access_token_type(typ: Option<&str>) -> bool {
    typ.is_none_or(|t| {
        ["at+jwt", "application/at+jwt", "JWT"]
            .iter()
            .any(|a| t.eq_ignore_ascii_case(a))
    })
}

fn looks_like_id_token(claims: &Map<String, Value>) -> bool {
    ["nonce", "at_hash", "c_hash"]
        .iter()
        .any(|c| claims.contains_key(*c))
        || claims.get("typ").and_then(Value::as_str) == Some("ID")
}

/// The usable signing keys of a stored JWKS; what cannot be used is left out (fail closed).
fn parse_jwks(name: &str, json: &str) -> Vec<Key> {
    let set: JwkSet = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(idp = %name, error = %e, "stored JWKS unreadable: no Admin API token of this provider verifies");
            return Vec::new();
        }
    };
    set.keys.iter().filter_map(key_of).collect()
}

fn key_of(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
        // A symmetric key has no business in a public key set.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        // `KeyAlgorithm`'s `Debug` is its JOSE name.
        Some(ka) => match format!("{ka:?}").parse::<Algorithm>() {
            Ok(a) if ASYMMETRIC.contains(&a) && a.family() == family => Some(a),
            _ => return None,
        },
    };
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        key: DecodingKey::from_jwk(jwk).ok()?,
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
    fn id_tokens_and_other_types_are_not_access_tokens() {
        assert!(access_token_type(None) && access_token_type(Some("at+JWT")));
        assert!(!access_token_type(Some("id_token+jwt")));
        let claims =
            |json: &str| serde_json::from_str::<Map<String, Value>>(json).unwrap_or_default();
        assert!(looks_like_id_token(&claims(r#"{"nonce":"n"}"#)));
        assert!(!looks_like_id_token(&claims(r#"{"scope":"openid"}"#)));
    }

    #[test]
    fn no_symmetric_keys_and_unreadable_sets_verify_nothing() {
        let set = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#;
        assert!(parse_jwks("corp", set).is_empty());
        assert!(parse_jwks("corp", "garbage").is_empty());
    }
}
