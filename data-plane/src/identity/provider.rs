//! One identity provider as the verifier holds it: what its tokens must say, and its
//! signing keys parsed once from the JWKS the control plane streamed.

use canopy_proto::v1 as pb;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use std::sync::Arc;
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

#[derive(Debug, Error, PartialEq, Eq)]
#[error("JWKS is not a JSON object with a `keys` array: {0}")]
pub struct JwksError(String);

/// One verification key.
pub(crate) struct Key {
    pub kid: Option<String>,
    /// The key's own `alg`, when its JWK names one: then only that algorithm may use it.
    pub alg: Option<Algorithm>,
    pub family: AlgorithmFamily,
    pub key: DecodingKey,
}

impl Key {
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// A provider ready to verify: what its tokens must say, and its parsed keys.
pub struct Provider {
    pub name: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    /// For `exp` and `nbf`, in whole seconds (rounded up from the configured ms).
    pub leeway_secs: u64,
    pub subject_claim: String,
    pub groups_claim: String,
    pub required_scopes: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) keys: Vec<Key>,
    /// As received, for the cache file.
    pub(crate) source: pb::IdentityProviderState,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Provider {
    /// Never fails: what cannot be used (an algorithm this build does not accept, a JWKS
    /// that does not parse, an encryption or symmetric key) is logged and left out, so the
    /// provider verifies fewer tokens or none (fail closed) and the sync stream goes on.
    pub fn new(src: pb::IdentityProviderState) -> Self {
        let mut algorithms = Vec::new();
        for a in &src.algorithms {
            match ASYMMETRIC.iter().find(|x| alg_name(**x) == a.trim()) {
                Some(alg) if !algorithms.contains(alg) => algorithms.push(*alg),
                Some(_) => {}
                None => {
                    tracing::warn!(provider = %src.name, algorithm = %a, "ignoring an algorithm that is not allowed")
                }
            }
        }
        let keys = match parse_jwks(&src.name, &src.jwks_json) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(provider = %src.name, error = %e, "JWKS unreadable: no token of this provider verifies until it is fixed");
                Vec::new()
            }
        };
        let or = |s: &str, d: &str| {
            if s.is_empty() {
                d.to_owned()
            } else {
                s.to_owned()
            }
        };
        Self {
            name: Arc::from(src.name.as_str()),
            issuer: src.issuer.clone(),
            audiences: src.audiences.clone(),
            leeway_secs: src.leeway_ms.div_ceil(1000),
            subject_claim: or(&src.subject_claim, "sub"),
            groups_claim: or(&src.groups_claim, "groups"),
            required_scopes: src.required_scopes.clone(),
            algorithms,
            keys,
            source: src,
        }
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// The JOSE name of an algorithm (`Algorithm`'s `Debug` is that name).
pub fn alg_name(a: Algorithm) -> String {
    format!("{a:?}")
}

fn parse_jwks(name: &str, json: &str) -> Result<Vec<Key>, JwksError> {
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
                tracing::warn!(provider = %name, error = %e, "skipping unreadable JWKS key");
                continue;
            }
        };
        if let Some(k) = key_of(name, &jwk) {
            keys.push(k);
        }
    }
    Ok(keys)
}

fn key_of(name: &str, jwk: &Jwk) -> Option<Key> {
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
            tracing::warn!(provider = %name, kid = ?kid, "skipping symmetric key in JWKS");
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
            tracing::warn!(provider = %name, kid = ?kid, error = %e, "skipping unusable JWKS key");
            None
        }
    }
}
