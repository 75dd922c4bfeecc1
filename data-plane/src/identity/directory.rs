//! What a JWT is checked against at one generation: providers with their parsed keys,
//! access rules, revoked subjects. Replaced as a whole on every identity change, except
//! the revoked subjects: one set shared by every generation and changed in place, so a
//! revocation costs the same with ten or a million subjects already revoked (copying the
//! set per change made each `revoke subject` O(revocations) on every data plane). A
//! directory of an older generation thus sees revocations made after it, which only ever
//! refuses more.

use canopy_core::access::{self, AccessRule, Condition};
use canopy_core::{AllowEntry, AllowList};
use canopy_proto::v1 as pb;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use super::provider::Provider;
use super::verify::Principal;
use crate::state::Scope;

/// provider → subject → the revocation as received
type BySubject = HashMap<String, HashMap<String, pb::RevokedSubject>>;

/// The revoked subjects, changed in place by the sync writer only.
#[derive(Default)]
pub(super) struct RevokedSet(RwLock<BySubject>);

impl RevokedSet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BySubject> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BySubject> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn contains(&self, provider: &str, subject: &str) -> bool {
        self.read()
            .get(provider)
            .is_some_and(|s| s.contains_key(subject))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub(super) fn insert(&self, r: pb::RevokedSubject) {
        self.write()
            .entry(r.idp.clone())
            .or_default()
            .insert(r.subject.clone(), r);
    }

    pub(super) fn remove(&self, provider: &str, subject: &str) {
        let mut all = self.write();
        if let Some(s) = all.get_mut(provider) {
            s.remove(subject);
            if s.is_empty() {
                all.remove(provider);
            }
        }
    }

    pub(super) fn remove_provider(&self, provider: &str) {
        self.write().remove(provider);
    }

    /// Replaces every revocation at once (a snapshot).
    pub(super) fn replace(&self, revoked: Vec<pb::RevokedSubject>) {
        let mut next = BySubject::new();
        for r in revoked {
            next.entry(r.idp.clone())
                .or_default()
                .insert(r.subject.clone(), r);
        }
        *self.write() = next;
    }

    pub(super) fn to_vec(&self) -> Vec<pb::RevokedSubject> {
        self.read()
            .values()
            .flat_map(|s| s.values().cloned())
            .collect()
    }
}

/// An access rule: the shared matching form, and the message it came in (cache file).
pub(super) struct Rule {
    pub(super) idp: String,
    rule: AccessRule,
    pub(super) source: pb::AccessRuleState,
}

impl Rule {
    pub(super) fn new(source: pb::AccessRuleState) -> Self {
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
    pub(super) generation: u64,
    /// The generation at which providers or access rules last changed. A token verified
    /// at a generation of the same epoch was checked against these very keys and rules:
    /// only the revoked set can have changed for it since (see the cache).
    pub(super) epoch: u64,
    pub(super) providers: BTreeMap<Arc<str>, Arc<Provider>>,
    by_issuer: HashMap<String, Arc<Provider>>,
    /// By rule name.
    pub(super) rules: Arc<BTreeMap<String, Arc<Rule>>>,
    pub(super) revoked: Arc<RevokedSet>,
    /// Scopes by their allow-list entries: people with the same grants share one (and its
    /// cached filtered lists). Kept for as long as the epoch is.
    scopes: Arc<Scopes>,
}

type Scopes = Mutex<HashMap<Vec<String>, Arc<Scope>, foldhash::fast::RandomState>>;

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
        self.revoked.contains(provider, subject)
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

    pub(super) fn scope_for(&self, who: &Principal) -> Arc<Scope> {
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

    /// The directory of the next generation, at the same epoch (`new_epoch`: providers or
    /// rules are about to change).
    pub(super) fn next(&self, generation: u64, new_epoch: bool) -> Directory {
        Directory {
            generation,
            epoch: if new_epoch { generation } else { self.epoch },
            providers: self.providers.clone(),
            by_issuer: self.by_issuer.clone(),
            rules: self.rules.clone(),
            revoked: self.revoked.clone(),
            scopes: if new_epoch {
                Arc::default()
            } else {
                self.scopes.clone()
            },
        }
    }

    pub(super) fn index_issuers(&mut self) {
        self.by_issuer = self
            .providers
            .values()
            .map(|p| (p.issuer.clone(), p.clone()))
            .collect();
    }
}
