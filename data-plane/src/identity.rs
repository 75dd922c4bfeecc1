//! The data plane as an OAuth 2.1 resource server: JWT access tokens from the identity
//! providers the control plane streams, checked from memory.
//!
//! The [`Directory`] (providers with their parsed keys, access rules, revoked subjects) is
//! replaced as a whole by the sync writer on every change, under a new generation; the
//! request path reads it with one `arc-swap` load. A verified token is cached under the
//! keyed hash the static-token index uses (see [`cache`]), so the steady state costs what
//! a static token costs. Nothing here touches the network: unknown signing keys are
//! reported to the control plane (rate-limited), which fetches the JWKS and streams it.
//!
//! A revocation is the latency-critical change (`revoke subject` returns once every data
//! plane applied it): applying it costs one insert into the shared revoked set, cached
//! tokens of everybody else stay cached (see [`cache`]), and a token of a revoked subject
//! is refused before its signature is checked.

mod cache;
mod directory;
mod kid_reports;
mod provider;
mod resource;
#[cfg(test)]
pub(crate) mod tests;
mod verify;

use arc_swap::ArcSwap;
use canopy_core::TokenHash;
use canopy_proto::v1 as pb;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use cache::{SignedIn, DEFAULT_CAPACITY};
pub use directory::Directory;
pub use provider::{Provider, ASYMMETRIC};
pub use resource::{Resource, ResourceError, WELL_KNOWN};
pub use verify::{Audiences, Principal, Rejection};

use crate::state::Scope;
use cache::{Cached, Grant, VerifiedCache};
use directory::Rule;
use kid_reports::KidReports;

/// The identity part of a snapshot, as the control plane sent it (the cache file keeps it).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sources {
    pub providers: Vec<pb::IdentityProviderState>,
    pub rules: Vec<pb::AccessRuleState>,
    pub revoked: Vec<pb::RevokedSubject>,
}

/// Why a request's token is refused: 401 (with the challenge) or 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Unauthorized(Rejection),
    InsufficientScope,
}

/// The identity state of a data plane: the current directory and the verified-token cache.
pub struct Identities {
    dir: ArcSwap<Directory>,
    generation: AtomicU64,
    cache: VerifiedCache,
    kids: KidReports,
    /// JWTs verified (cache misses that passed) and refused, for `/metrics`.
    verified: AtomicU64,
    refused: AtomicU64,
}

impl Default for Identities {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Identities {
    pub fn with_capacity(cache_capacity: usize) -> Self {
        Self {
            dir: ArcSwap::from_pointee(Directory::default()),
            generation: AtomicU64::new(0),
            cache: VerifiedCache::new(cache_capacity),
            kids: KidReports::default(),
            verified: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.dir.load_full()
    }

    /// Whether any identity provider is configured (else JWTs are not even looked at).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        !self.dir.load().is_empty()
    }

    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// The request path: `hash` is the token's keyed hash (already computed for the
    /// static-token index). A cache hit is one map lookup; a miss verifies from memory.
    pub fn authorize(
        &self,
        token: &str,
        hash: &TokenHash,
        resource: &Resource,
        target: Option<&str>,
        now_ms: u64,
    ) -> Result<Arc<Scope>, Denied> {
        self.authorize_who(token, hash, resource, target, now_ms)
            .map(|(scope, _)| scope)
    }

    /// As [`Identities::authorize`], with who the token names (for the audit trail).
    pub fn authorize_who(
        &self,
        token: &str,
        hash: &TokenHash,
        resource: &Resource,
        target: Option<&str>,
        now_ms: u64,
    ) -> Result<(Arc<Scope>, Arc<SignedIn>), Denied> {
        let dir = self.dir.load();
        match self.cache.get(hash, &dir, target, now_ms) {
            Cached::Hit(scope, who) => return Ok((scope, who)),
            Cached::Revoked => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Denied::Unauthorized(Rejection::Revoked));
            }
            Cached::Miss => {}
        }
        if !looks_like_jwt(token) {
            return Err(Denied::Unauthorized(Rejection::Malformed));
        }
        if names_revoked_subject(&dir, token) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Denied::Unauthorized(Rejection::Revoked));
        }
        let audiences = Audiences {
            gateway: resource.gateway_audiences(),
            server: target.map(|t| (t, resource.server_url(t))),
        };
        let who = match verify::verify(&dir, token, &audiences) {
            Ok(w) => w,
            Err(Rejection::InsufficientScope) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Denied::InsufficientScope);
            }
            Err(r) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                if let Rejection::UnknownKid { issuer, kid, .. } = &r {
                    self.kids.report(issuer, kid, now_ms);
                }
                return Err(Denied::Unauthorized(r));
            }
        };
        self.verified.fetch_add(1, Ordering::Relaxed);
        let scope = dir.scope_for(&who);
        // verify() refuses a token without a subject; a grant must name one, or the
        // revoked set could not be checked for it.
        let Some(subject) = who.claims.subject.as_deref() else {
            let signed_in = Arc::new(SignedIn {
                idp: who.provider.clone(),
                subject: "".into(),
            });
            return Ok((scope, signed_in));
        };
        let signed_in = Arc::new(SignedIn {
            idp: who.provider.clone(),
            subject: subject.into(),
        });
        let leeway_ms = dir
            .providers
            .get(&who.provider)
            .map_or(0, |p| p.leeway_secs.saturating_mul(1000));
        self.cache.insert(
            *hash,
            Grant {
                valid_until_ms: who.exp.saturating_mul(1000).saturating_add(leeway_ms),
                generation: AtomicU64::new(dir.generation),
                epoch: dir.epoch,
                scope: scope.clone(),
                only_server: who.only_server.as_deref().map(Arc::from),
                who: signed_in.clone(),
            },
            now_ms,
        );
        Ok((scope, signed_in))
    }

    /// Appends the identity metrics to a Prometheus text page.
    pub fn render_metrics(&self, o: &mut String) {
        use crate::metrics::{counter, gauge};
        counter(
            o,
            "canopy_jwt_verified_total",
            "JWT access tokens verified from memory (cache misses that passed).",
            &self.verified,
        );
        counter(
            o,
            "canopy_jwt_refused_total",
            "Bearer tokens that are no static token refused by the JWT verifier (the reason is logged at debug level).",
            &self.refused,
        );
        gauge(
            o,
            "canopy_jwt_cached",
            "Verified JWT access tokens held in the cache.",
            self.cache.len() as f64,
        );
        gauge(
            o,
            "canopy_identity_providers",
            "Identity providers this data plane holds.",
            self.dir.load().providers.len() as f64,
        );
    }

    // ---- the sync writer's side: each change is a new generation, so every cached
    // token is checked against it on its next request: verified again after a change of
    // providers or rules (a new epoch), looked up in the revoked set after a revocation

    fn update(&self, new_epoch: bool, change: impl FnOnce(&mut Directory)) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut next = self.dir.load().next(generation, new_epoch);
        change(&mut next);
        self.dir.store(Arc::new(next));
    }

    /// A change of the revoked set only: applied to the shared set before the new
    /// generation is published (see [`cache`]).
    fn update_revoked(&self, change: impl FnOnce(&directory::RevokedSet)) {
        self.update(false, |d| change(&d.revoked));
    }

    /// Replaces everything (a snapshot: what it does not name is gone).
    pub fn replace_all(&self, src: Sources) {
        let providers = src
            .providers
            .into_iter()
            .map(|p| {
                let p = Arc::new(Provider::new(p));
                (p.name.clone(), p)
            })
            .collect();
        let rules = src
            .rules
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(Rule::new(r))))
            .collect();
        self.update(true, |d| {
            d.providers = providers;
            d.index_issuers();
            d.rules = Arc::new(rules);
            d.revoked.replace(src.revoked);
        });
    }

    /// Applies one identity change; `false` when `kind` is not one.
    pub fn apply(&self, kind: &pb::change::Kind) -> bool {
        use pb::change::Kind;
        match kind {
            Kind::IdentityProviderUpsert(p) => {
                let p = Arc::new(Provider::new(p.clone()));
                tracing::info!(provider = %p.name, keys = p.key_count(), keys_revision = p.source.keys_revision, "identity provider updated");
                self.update(true, |d| {
                    d.providers.insert(p.name.clone(), p);
                    d.index_issuers();
                });
            }
            // Its rules and revocations go with it (the control plane deleted them too).
            Kind::IdentityProviderDelete(name) => {
                self.update(true, |d| {
                    d.providers.remove(name.as_str());
                    d.index_issuers();
                    if d.rules.values().any(|r| r.idp == *name) {
                        let mut rules = (*d.rules).clone();
                        rules.retain(|_, r| r.idp != *name);
                        d.rules = Arc::new(rules);
                    }
                });
                // Only once no directory with the provider is current: a request still
                // holding one keeps seeing its subjects revoked.
                self.dir.load().revoked.remove_provider(name);
            }
            Kind::AccessRuleUpsert(r) => {
                let rule = Arc::new(Rule::new(r.clone()));
                self.update(true, |d| {
                    let mut rules = (*d.rules).clone();
                    rules.insert(r.name.clone(), rule);
                    d.rules = Arc::new(rules);
                });
            }
            Kind::AccessRuleDelete(name) => self.update(true, |d| {
                let mut rules = (*d.rules).clone();
                rules.remove(name);
                d.rules = Arc::new(rules);
            }),
            Kind::SubjectRevoke(r) => self.update_revoked(|set| set.insert(r.clone())),
            Kind::SubjectUnrevoke(r) => {
                self.update_revoked(|set| set.remove(&r.idp, &r.subject));
            }
            _ => return false,
        }
        true
    }

    /// What the cache file keeps: the sets as received.
    pub fn sources(&self) -> Sources {
        let d = self.dir.load();
        Sources {
            providers: d.providers.values().map(|p| p.source.clone()).collect(),
            rules: d.rules.values().map(|r| r.source.clone()).collect(),
            revoked: d.revoked.to_vec(),
        }
    }

    /// Unknown signing keys seen since the last call: (issuer, kid) for the control plane.
    pub fn take_unknown_kids(&self) -> Vec<(String, String)> {
        self.kids.take()
    }

    /// Resolves when an unknown key has been reported since the last [`Self::take_unknown_kids`].
    pub async fn unknown_kid_reported(&self) {
        self.kids.wake.notified().await
    }
}

/// Whether the token names a revoked subject of the provider its `iss` names, read
/// before any signature check: a revoked subject's token is refused for the cost of
/// decoding its claims, not of verifying them (a forged one would be refused anyway, with
/// the same 401). Nothing is decoded while nobody is revoked.
fn names_revoked_subject(dir: &Directory, token: &str) -> bool {
    if dir.revoked.is_empty() {
        return false;
    }
    let Ok(claims) = jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token)
    else {
        return false;
    };
    let Some(provider) = claims
        .get("iss")
        .and_then(Value::as_str)
        .and_then(|iss| dir.provider_by_issuer(iss))
    else {
        return false;
    };
    let who = canopy_core::access::ClaimView::from_claims(
        &claims,
        &provider.subject_claim,
        &provider.groups_claim,
    );
    who.subject
        .as_deref()
        .is_some_and(|s| dir.is_revoked(&provider.name, s))
}

/// Three non-empty base64url parts separated by dots (a JWS in compact form): anything else
/// (an opaque token that is no static token) is refused without parsing.
fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}
