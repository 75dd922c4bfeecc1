//! The data plane as an OAuth 2.1 resource server: JWT access tokens from the identity
//! providers the control plane streams, checked from memory.
//!
//! The [`Directory`] (providers with their parsed keys, access rules, revoked subjects) is
//! replaced as a whole by the sync writer on every change, under a new generation; the
//! request path reads it with one `arc-swap` load. A verified token is cached under the
//! keyed hash the static-token index uses (see [`cache`]), so the steady state costs what
//! a static token costs. Nothing here touches the network: unknown signing keys are
//! reported to the control plane (rate-limited), which fetches the JWKS and streams it.

mod cache;
mod provider;
mod resource;
mod rules;
#[cfg(test)]
pub(crate) mod tests;
mod verify;

use arc_swap::ArcSwap;
use canopy_core::{AllowEntry, AllowList, TokenHash};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use cache::DEFAULT_CAPACITY;
pub use provider::{Provider, ProviderDef, ProviderError, ASYMMETRIC};
pub use resource::{Resource, ResourceError, WELL_KNOWN};
pub use rules::RuleDef;
pub use verify::{Audiences, Principal, Rejection};

use crate::state::Scope;
use cache::{Grant, VerifiedCache};

type Revoked = HashMap<String, HashSet<String>>;

/// Everything a JWT is checked against, as of one generation.
#[derive(Default)]
pub struct Directory {
    generation: u64,
    providers: BTreeMap<Arc<str>, Arc<Provider>>,
    by_issuer: HashMap<String, Arc<Provider>>,
    rules: Arc<[RuleDef]>,
    /// provider → revoked subjects
    revoked: Arc<Revoked>,
    /// Scopes by their sorted allow-list entries: people with the same grants share one
    /// (and its cached filtered lists).
    scopes: Mutex<HashMap<Box<[String]>, Arc<Scope>, foldhash::fast::RandomState>>,
}

impl Directory {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    pub(crate) fn provider_by_issuer(&self, iss: &str) -> Option<&Arc<Provider>> {
        self.by_issuer.get(iss)
    }

    pub(crate) fn is_revoked(&self, provider: &str, subject: &str) -> bool {
        self.revoked
            .get(provider)
            .is_some_and(|s| s.contains(subject))
    }

    /// OAuth scopes the providers require: the challenge's `scope` and the metadata's
    /// `scopes_supported`.
    pub fn required_scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .providers
            .values()
            .flat_map(|p| p.def.required_scopes.iter().cloned())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The issuers, for the metadata's `authorization_servers`.
    pub fn issuers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .providers
            .values()
            .map(|p| p.def.issuer.clone())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn scope_for(&self, who: &Principal) -> Arc<Scope> {
        let granted = rules::granted(&self.rules, who);
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = scopes.get(granted.as_slice()) {
            return s.clone();
        }
        let entries = granted.iter().filter(|e| match AllowEntry::parse(e) {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(entry = %e, error = %err, "ignoring unreadable access-rule entry");
                false
            }
        });
        let scope = Arc::new(Scope::new(
            AllowList::from_entries(entries).unwrap_or_default(),
        ));
        scopes.insert(granted.into_boxed_slice(), scope.clone());
        scope
    }

    fn next(&self, generation: u64) -> Directory {
        Directory {
            generation,
            providers: self.providers.clone(),
            by_issuer: self.by_issuer.clone(),
            rules: self.rules.clone(),
            revoked: self.revoked.clone(),
            scopes: Mutex::default(),
        }
    }

    fn index_issuers(&mut self) {
        self.by_issuer = self
            .providers
            .values()
            .map(|p| (p.def.issuer.clone(), p.clone()))
            .collect();
    }
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
        let dir = self.dir.load();
        if let Some(scope) = self.cache.get(hash, dir.generation, target, now_ms) {
            return Ok(scope);
        }
        let audiences = Audiences {
            gateway: resource.gateway_audiences(),
            server: target.map(|t| (t, resource.server_url(t))),
        };
        let who = match verify::verify(&dir, token, &audiences) {
            Ok(w) => w,
            Err(Rejection::InsufficientScope) => return Err(Denied::InsufficientScope),
            Err(r) => {
                if let Rejection::UnknownKid { provider, kid } = &r {
                    self.kids.report(provider, kid, now_ms);
                }
                return Err(Denied::Unauthorized(r));
            }
        };
        let scope = dir.scope_for(&who);
        let leeway_ms = dir
            .providers
            .get(&who.provider)
            .map_or(0, |p| p.def.leeway_secs.saturating_mul(1000));
        self.cache.insert(
            *hash,
            Grant {
                valid_until_ms: who.exp.saturating_mul(1000).saturating_add(leeway_ms),
                generation: dir.generation,
                scope: scope.clone(),
                only_server: who.only_server.as_deref().map(Arc::from),
            },
            now_ms,
        );
        Ok(scope)
    }

    // ---- the sync writer's side: each change is a new generation

    fn update(&self, change: impl FnOnce(&mut Directory)) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut next = self.dir.load().next(generation);
        change(&mut next);
        self.dir.store(Arc::new(next));
    }

    /// Replaces everything (a snapshot). Providers that cannot be used are skipped and
    /// returned: their tokens are refused, which is the safe side.
    pub fn replace_all(
        &self,
        providers: Vec<ProviderDef>,
        rules: Vec<RuleDef>,
        revoked: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<ProviderError> {
        let mut errors = Vec::new();
        let mut parsed = BTreeMap::new();
        for def in providers {
            match Provider::new(def) {
                Ok(p) => {
                    parsed.insert(p.name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(e),
            }
        }
        let mut set = Revoked::new();
        for (p, s) in revoked {
            set.entry(p).or_default().insert(s);
        }
        self.update(|d| {
            d.providers = parsed;
            d.index_issuers();
            d.rules = rules.into();
            d.revoked = Arc::new(set);
        });
        errors
    }

    pub fn upsert_provider(&self, def: ProviderDef) -> Result<(), ProviderError> {
        let p = Arc::new(Provider::new(def)?);
        self.update(|d| {
            d.providers.insert(p.name.clone(), p);
            d.index_issuers();
        });
        Ok(())
    }

    /// Also drops the provider's rules and revocations: they meant nothing without it.
    pub fn remove_provider(&self, name: &str) {
        self.update(|d| {
            d.providers.remove(name);
            d.index_issuers();
            d.rules = d
                .rules
                .iter()
                .filter(|r| r.provider != name)
                .cloned()
                .collect();
            if d.revoked.contains_key(name) {
                let mut revoked = (*d.revoked).clone();
                revoked.remove(name);
                d.revoked = Arc::new(revoked);
            }
        });
    }

    pub fn upsert_rule(&self, rule: RuleDef) {
        self.update(|d| {
            let mut rules: Vec<RuleDef> = d
                .rules
                .iter()
                .filter(|r| r.name != rule.name)
                .cloned()
                .collect();
            rules.push(rule);
            d.rules = rules.into();
        });
    }

    pub fn remove_rule(&self, name: &str) {
        self.update(|d| {
            d.rules = d.rules.iter().filter(|r| r.name != name).cloned().collect();
        });
    }

    pub fn revoke(&self, provider: &str, subject: &str) {
        self.update(|d| {
            let mut revoked = (*d.revoked).clone();
            revoked
                .entry(provider.to_owned())
                .or_default()
                .insert(subject.to_owned());
            d.revoked = Arc::new(revoked);
        });
    }

    pub fn unrevoke(&self, provider: &str, subject: &str) {
        self.update(|d| {
            let mut revoked = (*d.revoked).clone();
            if let Some(s) = revoked.get_mut(provider) {
                s.remove(subject);
                if s.is_empty() {
                    revoked.remove(provider);
                }
            }
            d.revoked = Arc::new(revoked);
        });
    }

    /// Unknown signing keys seen since the last call, for the control plane.
    pub fn take_unknown_kids(&self) -> Vec<(Arc<str>, String)> {
        self.kids.take()
    }
}

/// How often one provider's unknown keys are reported: a burst of forged or early
/// tokens must not turn into a burst of JWKS fetches.
const KID_REPORT_COOLDOWN_MS: u64 = 5_000;
/// Pending reports kept between sends; more are dropped (the next one still comes).
const KID_REPORT_MAX_PENDING: usize = 16;

#[derive(Default)]
struct KidReports {
    inner: Mutex<KidReportsInner>,
}

#[derive(Default)]
struct KidReportsInner {
    last_ms: HashMap<Arc<str>, u64>,
    pending: Vec<(Arc<str>, String)>,
}

impl KidReports {
    fn report(&self, provider: &Arc<str>, kid: &str, now_ms: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.last_ms
            .get(provider)
            .is_some_and(|t| now_ms.saturating_sub(*t) < KID_REPORT_COOLDOWN_MS)
            || g.pending.len() >= KID_REPORT_MAX_PENDING
        {
            return;
        }
        g.last_ms.insert(provider.clone(), now_ms);
        // The kid is attacker-chosen text: bounded before it is kept or sent.
        let kid: String = kid.chars().take(128).collect();
        g.pending.push((provider.clone(), kid));
    }

    fn take(&self) -> Vec<(Arc<str>, String)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut g.pending)
    }
}
