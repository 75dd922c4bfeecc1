//! One identity provider as the verifier holds it: what its tokens must say, and its
//! signing keys parsed once from the JWKS the control plane streamed.

use canopy_jwt::{Algorithm, Key};
use canopy_proto::v1 as pb;
use std::sync::Arc;

pub use canopy_jwt::ASYMMETRIC;

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
            match canopy_jwt::algorithm(a) {
                Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
                Some(_) => {}
                None => {
                    tracing::warn!(provider = %src.name, algorithm = %a, "ignoring an algorithm that is not allowed")
                }
            }
        }
        let keys = match canopy_jwt::parse_jwks(&src.name, &src.jwks_json) {
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
