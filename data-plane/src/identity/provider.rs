//! One identity provider as the verifier holds it: what its tokens must say, and its
//! signing keys parsed once from the JWKS the control plane streamed.

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

/// What the control plane says about a provider (its sync wire form, converted).
#[derive(Debug, Clone)]
pub struct ProviderDef {
    pub name: String,
    /// Exactly as the `iss` claim must carry it.
    pub issuer: String,
    /// Audiences accepted besides this data plane's own resource URLs (providers that
    /// mint their own formats, e.g. Entra ID's `api://…`).
    pub audiences: Vec<String>,
    /// Allowed signature algorithms, by their JOSE names (`RS256`, `ES256`, `EdDSA`…).
    pub algorithms: Vec<String>,
    pub leeway_secs: u64,
    pub subject_claim: String,
    pub groups_claim: String,
    /// OAuth scopes every token must carry (403 `insufficient_scope` otherwise).
    pub required_scopes: Vec<String>,
    /// The provider's JWKS document, as fetched by the control plane.
    pub jwks_json: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("identity provider '{name}': unknown or disallowed algorithm '{alg}' (allowed: asymmetric ones such as RS256, ES256, EdDSA)")]
    Algorithm { name: String, alg: String },
    #[error("identity provider '{name}' allows no algorithm")]
    NoAlgorithm { name: String },
    #[error("identity provider '{name}': JWKS is not a JSON object with a `keys` array: {reason}")]
    Jwks { name: String, reason: String },
    #[error("identity provider '{name}': empty issuer")]
    NoIssuer { name: String },
}

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

/// A provider ready to verify: the definition plus parsed keys.
pub struct Provider {
    pub name: Arc<str>,
    pub def: ProviderDef,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) keys: Vec<Key>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.def.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Provider {
    /// Parses the keys. Keys this build cannot use (encryption keys, symmetric keys,
    /// unknown types) are skipped, not fatal: one odd key must not lock everybody out.
    pub fn new(def: ProviderDef) -> Result<Self, ProviderError> {
        if def.issuer.is_empty() {
            return Err(ProviderError::NoIssuer { name: def.name });
        }
        let mut algorithms = Vec::new();
        for a in &def.algorithms {
            let alg = ASYMMETRIC
                .iter()
                .find(|x| alg_name(**x) == a.trim())
                .copied()
                .ok_or_else(|| ProviderError::Algorithm {
                    name: def.name.clone(),
                    alg: a.clone(),
                })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return Err(ProviderError::NoAlgorithm { name: def.name });
        }
        let keys = parse_jwks(&def.name, &def.jwks_json)?;
        Ok(Self {
            name: Arc::from(def.name.as_str()),
            def,
            algorithms,
            keys,
        })
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// The JOSE name of an algorithm (`Algorithm`'s `Debug` is that name).
pub fn alg_name(a: Algorithm) -> String {
    format!("{a:?}")
}

fn parse_jwks(name: &str, json: &str) -> Result<Vec<Key>, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(json).map_err(|e| ProviderError::Jwks {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
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
