//! A provider's verification keys, parsed once from its JWKS.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use thiserror::Error;

/// The asymmetric algorithms a provider may be allowed. HMAC is never one of them: a
/// provider's keys are public, and an HMAC "signature" keyed with a public key is the
/// classic algorithm-confusion forgery. `none` has no `Algorithm` at all.
pub const ASYMMETRIC: &[Algorithm] = &[
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

/// The JOSE name of an algorithm (`Algorithm`'s `Debug` is that name).
pub fn alg_name(a: Algorithm) -> String {
    format!("{a:?}")
}

/// The asymmetric algorithm named `name` (surrounding spaces ignored), if it is one.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    let name = name.trim();
    ASYMMETRIC.iter().copied().find(|a| alg_name(*a) == name)
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("JWKS is not a JSON object with a `keys` array: {0}")]
pub struct JwksError(String);

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The key's own `alg`, when its JWK names one: then only that algorithm may use it.
    pub alg: Option<Algorithm>,
    pub family: AlgorithmFamily,
    pub key: DecodingKey,
}

impl Key {
    /// Whether a token signed with `alg` may be checked with this key.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

/// The usable signing keys of a JWKS document. What cannot be used (an unreadable key, an
/// encryption or symmetric key, a key restricted to an algorithm not accepted here) is
/// logged under `provider` and left out, so fewer tokens verify (fail closed); a document
/// without a `keys` array is an error.
pub fn parse_jwks(provider: &str, json: &str) -> Result<Vec<Key>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(json).map_err(|e| JwksError(e.to_string()))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for raw in set.keys {
        let jwk: Jwk = match serde_json::from_value(raw) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(provider, error = %e, "skipping unreadable JWKS key");
                continue;
            }
        };
        if let Some(k) = key_of(provider, &jwk) {
            keys.push(k);
        }
    }
    Ok(keys)
}

fn key_of(provider: &str, jwk: &Jwk) -> Option<Key> {
    let kid = jwk.common.key_id.clone();
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
        // A symmetric key has no business in a public key set.
        AlgorithmParameters::OctetKey(_) => {
            tracing::warn!(provider, kid = ?kid, "skipping symmetric key in JWKS");
            return None;
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        // `KeyAlgorithm`'s `Debug` is its JOSE name.
        Some(ka) => match format!("{ka:?}").parse::<Algorithm>() {
            Ok(a) if ASYMMETRIC.contains(&a) && a.family() == family => Some(a),
            // A key restricted to an algorithm we do not accept (or of another family)
            // can verify nothing here.
            _ => return None,
        },
    };
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => Some(Key {
            kid,
            alg,
            family,
            key,
        }),
        Err(e) => {
            tracing::warn!(provider, kid = ?kid, error = %e, "skipping unusable JWKS key");
            None
        }
    }
}
