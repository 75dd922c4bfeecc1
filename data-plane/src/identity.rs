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
#[cfg(test)]
pub(crate) mod tests;
mod verify;

use arc_swap::ArcSwap;
use canopy_core::access::{self, AccessRule, Condition};
use canopy_core::{AllowEntry, AllowList, TokenHash};
use canopy_proto::v1 as pb;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub use cache::DEFAULT_CAPACITY;
pub use provider::{Provider, ASYMMETRIC};
pub use resource::{Resource, ResourceError, WELL_KNOWN};
pub use verify::{Audiences, Principal, Rejection};

use crate::state::Scope;
use cache::{Grant, VerifiedCache};

/// provider → subject → the revocation as received
type Revoked = HashMap<String, HashMap<String, pb::RevokedSubject>>;

/// An access rule: the shared matching form, and the message it came in (cache file).
struct Rule {
    idp: String,
    rule: AccessRule,
    source: pb::AccessRuleState,
}

impl Rule {
    fn new(source: pb::AccessRuleState) -> Self {
        let conditions = source
            .matches
            .iter()
            .filter_map(|m| match m.kind.as_ref()? {
                pb::access_match::Kind::Subject(v) => Some(Condition::Subject(v.clone())),
                pb::access_match::Kind::Email(v) => Some(Condition::Email(v.clone())),
                pb::access_match::Kind::EmailDomain(v) => Some(Condition::EmailDomain(v.clone())),
                pb::access_match::Kind::Group(v) => Some(Condition::Group(v.clone())),
            })
            .collect();
        let entries = source.allowed.iter().filter(|e| match AllowEntry::parse(e) {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(rule = %source.name, entry = %e, error = %err, "ignoring unreadable access-rule entry");
                false
            }
        });
        let allow = AllowList::from_entries(entries).unwrap_or_default();
        Self {
            idp: source.idp.clone(),
            rule: AccessRule {
                name: source.name.clone(),
                conditions,
                allow,
            },
            source,
        }
    }
}

/// Everything a JWT is checked against, as of one generation.
#[derive(Default)]
pub struct Directory {
    generation: u64,
    providers: BTreeMap<Arc<str>, Arc<Provider>>,
    by_issuer: HashMap<String, Arc<Provider>>,
    /// By rule name.
    rules: Arc<BTreeMap<String, Arc<Rule>>>,
    revoked: Arc<Revoked>,
    /// Scopes by their allow-list entries: people with the same grants share one (and its
    /// cached filtered lists).
    scopes: Mutex<HashMap<Vec<String>, Arc<Scope>, foldhash::fast::RandomState>>,
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
            .is_some_and(|s| s.contains_key(subject))
    }

    /// OAuth scopes the providers require: the challenge's `scope` and the metadata's
    /// `scopes_supported`.
    pub fn required_scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .providers
            .values()
            .flat_map(|p| p.required_scopes.iter().cloned())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The issuers, for the metadata's `authorization_servers`.
    pub fn issuers(&self) -> Vec<String> {
        let mut out: Vec<String> = self.providers.values().map(|p| p.issuer.clone()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn scope_for(&self, who: &Principal) -> Arc<Scope> {
        let rules = self
            .rules
            .values()
            .filter(|r| *r.idp == *who.provider)
            .map(|r| &r.rule);
        let granted = access::evaluate(rules, &who.claims).allow;
        let key = granted.to_strings();
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes
            .entry(key)
            .or_insert_with(|| Arc::new(Scope::new(granted)))
            .clone()
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
            .map(|p| (p.issuer.clone(), p.clone()))
            .collect();
    }
}

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
                if let Rejection::UnknownKid { issuer, kid, .. } = &r {
                    self.kids.report(issuer, kid, now_ms);
                }
                return Err(Denied::Unauthorized(r));
            }
        };
        let scope = dir.scope_for(&who);
        let leeway_ms = dir
            .providers
            .get(&who.provider)
            .map_or(0, |p| p.leeway_secs.saturating_mul(1000));
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

    // ---- the sync writer's side: each change is a new generation, so every cached
    // token is checked against it (or verified again) on its next request

    fn update(&self, change: impl FnOnce(&mut Directory)) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut next = self.dir.load().next(generation);
        change(&mut next);
        self.dir.store(Arc::new(next));
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
        let mut revoked = Revoked::new();
        for r in src.revoked {
            revoked
                .entry(r.idp.clone())
                .or_default()
                .insert(r.subject.clone(), r);
        }
        self.update(|d| {
            d.providers = providers;
            d.index_issuers();
            d.rules = Arc::new(rules);
            d.revoked = Arc::new(revoked);
        });
    }

    /// Applies one identity change; `false` when `kind` is not one.
    pub fn apply(&self, kind: &pb::change::Kind) -> bool {
        use pb::change::Kind;
        match kind {
            Kind::IdentityProviderUpsert(p) => {
                let p = Arc::new(Provider::new(p.clone()));
                tracing::info!(provider = %p.name, keys = p.key_count(), keys_revision = p.source.keys_revision, "identity provider updated");
                self.update(|d| {
                    d.providers.insert(p.name.clone(), p);
                    d.index_issuers();
                });
            }
            // Its rules and revocations go with it (the control plane deleted them too).
            Kind::IdentityProviderDelete(name) => self.update(|d| {
                d.providers.remove(name.as_str());
                d.index_issuers();
                if d.rules.values().any(|r| r.idp == *name) {
                    let mut rules = (*d.rules).clone();
                    rules.retain(|_, r| r.idp != *name);
                    d.rules = Arc::new(rules);
                }
                if d.revoked.contains_key(name) {
                    let mut revoked = (*d.revoked).clone();
                    revoked.remove(name);
                    d.revoked = Arc::new(revoked);
                }
            }),
            Kind::AccessRuleUpsert(r) => {
                let rule = Arc::new(Rule::new(r.clone()));
                self.update(|d| {
                    let mut rules = (*d.rules).clone();
                    rules.insert(r.name.clone(), rule);
                    d.rules = Arc::new(rules);
                });
            }
            Kind::AccessRuleDelete(name) => self.update(|d| {
                let mut rules = (*d.rules).clone();
                rules.remove(name);
                d.rules = Arc::new(rules);
            }),
            Kind::SubjectRevoke(r) => self.update(|d| {
                let mut revoked = (*d.revoked).clone();
                revoked
                    .entry(r.idp.clone())
                    .or_default()
                    .insert(r.subject.clone(), r.clone());
                d.revoked = Arc::new(revoked);
            }),
            Kind::SubjectUnrevoke(r) => self.update(|d| {
                let mut revoked = (*d.revoked).clone();
                if let Some(s) = revoked.get_mut(&r.idp) {
                    s.remove(&r.subject);
                    if s.is_empty() {
                        revoked.remove(&r.idp);
                    }
                }
                d.revoked = Arc::new(revoked);
            }),
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
            revoked: d
                .revoked
                .values()
                .flat_map(|s| s.values().cloned())
                .collect(),
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

/// How often one (issuer, kid) is reported: a client spraying tokens must not turn into
/// a stream of reports (the control plane has its own fetch cooldown too).
const KID_REPORT_COOLDOWN_MS: u64 = 30_000;
/// Pending reports kept between sends; more are dropped (a later one still comes).
const KID_REPORT_MAX_PENDING: usize = 16;
/// Remembered (issuer, kid) pairs; past this, forgotten ones may be reported again.
const KID_REPORT_MEMORY: usize = 1024;

#[derive(Default)]
struct KidReports {
    inner: Mutex<KidReportsInner>,
    wake: Notify,
}

#[derive(Default)]
struct KidReportsInner {
    last_ms: HashMap<(String, String), u64>,
    pending: Vec<(String, String)>,
}

impl KidReports {
    fn report(&self, issuer: &str, kid: &str, now_ms: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.pending.len() >= KID_REPORT_MAX_PENDING {
            return;
        }
        // The kid is attacker-chosen text: bounded before it is kept or sent.
        let kid: String = kid.chars().take(128).collect();
        let key = (issuer.to_owned(), kid);
        if g.last_ms
            .get(&key)
            .is_some_and(|t| now_ms.saturating_sub(*t) < KID_REPORT_COOLDOWN_MS)
        {
            return;
        }
        if g.last_ms.len() >= KID_REPORT_MEMORY {
            g.last_ms
                .retain(|_, t| now_ms.saturating_sub(*t) < KID_REPORT_COOLDOWN_MS);
        }
        g.last_ms.insert(key.clone(), now_ms);
        g.pending.push(key);
        drop(g);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<(String, String)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut g.pending)
    }
}
