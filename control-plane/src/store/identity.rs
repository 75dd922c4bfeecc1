//! Identity providers, access rules and revoked subjects: their records, how their
//! mutations apply inside the store's one transaction, and how they are read.
//!
//! All three live in the `identity` tree under key prefixes, plus a per-provider index of
//! its rules, because a sled transaction cannot scan and deleting a provider deletes what
//! belongs to it in the same transaction:
//! * `p/<provider>` → [`ProviderRecord`]
//! * `r/<rule>` → [`RuleRecord`]
//! * `v/<provider>\0<subject>` → [`Revocation`]
//! * `i/<provider>` → the names of its rules (and, in stores written before revocations
//!   left the index, of subjects revoked then)
//!
//! Revocations are not indexed: a provider may collect any number of them, and keeping
//! their names in one value made each `revoke subject` rewrite it whole. A provider's
//! revocations are found by their key prefix when it is deleted, read before the
//! transaction ([`Trees::keys_to_scan`]): the store has one writer, so nothing changes
//! them in between.

use super::mutation::{abort, decode, encode, Tx, TxResult};
use super::open::Trees;
use super::records::Change;
use super::{Store, StoreError};
use canopy_core::access::Condition;
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// An identity provider as the admin described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSpec {
    pub name: String,
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `None` = the discovery document's `jwks_uri`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub subject_claim: String,
    pub groups_claim: String,
    pub algorithms: Vec<String>,
    pub leeway_ms: u64,
    /// Extra CA certificates (PEM) for reaching the issuer.
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Admin API sign-in (`canopy login --sso`): members of this group are admins.
    #[serde(default)]
    pub admin_group: Option<String>,
    /// The `aud` the Admin API accepts from this provider (`None` = the control plane's
    /// public URL).
    #[serde(default)]
    pub admin_audience: Option<String>,
    /// The public OAuth client the CLI signs in as (`None` = no CLI sign-in).
    #[serde(default)]
    pub cli_client_id: Option<String>,
}

#[cfg(test)]
impl ProviderSpec {
    /// A provider with the defaults `create identity-provider` gives (RS256 only), for tests.
    pub(crate) fn for_tests(name: &str, issuer: &str) -> Self {
        Self {
            name: name.into(),
            issuer: issuer.into(),
            audiences: vec![],
            jwks_uri: None,
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            algorithms: vec!["RS256".into()],
            leeway_ms: 60_000,
            ca_pem: None,
            required_scopes: vec![],
            admin_group: None,
            admin_audience: None,
            cli_client_id: None,
        }
    }
}

/// What discovery found (empty strings where the provider advertises nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: String,
    #[serde(default)]
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: String,
    #[serde(default)]
    pub registration_endpoint: String,
}

/// A provider, its endpoints and its last good key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub spec: ProviderSpec,
    pub endpoints: Endpoints,
    /// The JWKS document as fetched.
    pub jwks_json: String,
    /// The revision that last changed `jwks_json` (set by the store).
    #[serde(default)]
    pub keys_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleCondition {
    Subject(String),
    Email(String),
    EmailDomain(String),
    Group(String),
}

impl From<&RuleCondition> for Condition {
    fn from(c: &RuleCondition) -> Self {
        match c {
            RuleCondition::Subject(v) => Condition::Subject(v.clone()),
            RuleCondition::Email(v) => Condition::Email(v.clone()),
            RuleCondition::EmailDomain(v) => Condition::EmailDomain(v.clone()),
            RuleCondition::Group(v) => Condition::Group(v.clone()),
        }
    }
}

/// An access rule: who (conditions on a provider's claims) may use what (an allow list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub name: String,
    pub idp: String,
    pub conditions: Vec<RuleCondition>,
    /// Canonical allow-list entries.
    pub allowed: Vec<String>,
}

/// A subject whose tokens are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub idp: String,
    pub subject: String,
    pub revoked_at_ms: u64,
}

/// Changes to the identity state.
#[derive(Debug, Clone)]
pub enum IdentityMutation {
    /// Create (`create`) or replace a provider; discovery and keys were fetched already.
    PutProvider {
        record: ProviderRecord,
        create: bool,
    },
    /// New keys/endpoints from a refresh that read the provider as `spec`: refused with
    /// [`StoreError::Superseded`] if the provider changed meanwhile.
    SetKeys {
        spec: ProviderSpec,
        endpoints: Endpoints,
        jwks_json: String,
    },
    /// Deletes the provider with its rules and revocations.
    DeleteProvider {
        name: String,
    },
    CreateRule(RuleRecord),
    UpdateRule {
        name: String,
        conditions: Option<Vec<RuleCondition>>,
        allowed: Option<Vec<String>>,
    },
    DeleteRule {
        name: String,
    },
    Revoke {
        idp: String,
        subject: String,
    },
    Unrevoke {
        idp: String,
        subject: String,
    },
}

/// What belongs to a provider (kept beside it for deleting both in one transaction).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Owned {
    rules: Vec<String>,
    /// Only in stores written before revocations left the index (never added to now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revoked: Vec<String>,
}

fn provider_key(name: &str) -> Vec<u8> {
    [b"p/".as_slice(), name.as_bytes()].concat()
}
fn rule_key(name: &str) -> Vec<u8> {
    [b"r/".as_slice(), name.as_bytes()].concat()
}
fn index_key(idp: &str) -> Vec<u8> {
    [b"i/".as_slice(), idp.as_bytes()].concat()
}
fn revocation_key(idp: &str, subject: &str) -> Vec<u8> {
    [revocations_prefix(idp), subject.as_bytes().to_vec()].concat()
}
fn revocations_prefix(idp: &str) -> Vec<u8> {
    [b"v/".as_slice(), idp.as_bytes(), b"\0"].concat()
}

impl Trees {
    /// What the transaction of `m` must find by scanning (which a transaction cannot):
    /// a deleted provider's revocations.
    pub(super) fn keys_to_scan(&self, m: &super::Mutation) -> Result<Vec<sled::IVec>, StoreError> {
        match m {
            super::Mutation::Identity(IdentityMutation::DeleteProvider { name }) => Ok(self
                .identity
                .scan_prefix(revocations_prefix(name))
                .keys()
                .collect::<Result<_, _>>()?),
            _ => Ok(Vec::new()),
        }
    }
}

impl Tx<'_> {
    pub(super) fn apply_identity(&self, m: &IdentityMutation, revision: u64) -> TxResult<Change> {
        match m {
            IdentityMutation::PutProvider { record, create } => {
                let name = &record.spec.name;
                let existing = self.provider(name)?;
                let mut record = record.clone();
                match (&existing, create) {
                    (Some(_), true) => {
                        return abort(StoreError::AlreadyExists {
                            kind: "identity provider",
                            name: name.clone(),
                        })
                    }
                    (None, false) => return abort(not_found("identity provider", name)),
                    (Some(old), false) if old.jwks_json == record.jwks_json => {
                        record.keys_revision = old.keys_revision;
                    }
                    _ => record.keys_revision = revision,
                }
                self.identity.insert(provider_key(name), encode(&record)?)?;
                Ok(Change::ProviderUpserted(record))
            }
            IdentityMutation::SetKeys {
                spec,
                endpoints,
                jwks_json,
            } => {
                let Some(mut record) = self.provider(&spec.name)? else {
                    return abort(not_found("identity provider", &spec.name));
                };
                if &record.spec != spec {
                    return abort(StoreError::Superseded {
                        kind: "identity provider",
                        name: spec.name.clone(),
                    });
                }
                if &record.jwks_json != jwks_json {
                    record.keys_revision = revision;
                }
                record.endpoints = endpoints.clone();
                record.jwks_json = jwks_json.clone();
                self.identity
                    .insert(provider_key(&spec.name), encode(&record)?)?;
                Ok(Change::ProviderUpserted(record))
            }
            IdentityMutation::DeleteProvider { name } => {
                if self.identity.remove(provider_key(name))?.is_none() {
                    return abort(not_found("identity provider", name));
                }
                let owned = self.owned(name)?;
                for rule in &owned.rules {
                    self.identity.remove(rule_key(rule))?;
                }
                for subject in &owned.revoked {
                    self.identity.remove(revocation_key(name, subject))?;
                }
                for key in self.scanned {
                    self.identity.remove(key)?;
                }
                self.identity.remove(index_key(name))?;
                Ok(Change::ProviderDeleted { name: name.clone() })
            }
            IdentityMutation::CreateRule(rule) => {
                if self.provider(&rule.idp)?.is_none() {
                    return abort(not_found("identity provider", &rule.idp));
                }
                if self.identity.get(rule_key(&rule.name))?.is_some() {
                    return abort(StoreError::AlreadyExists {
                        kind: "access rule",
                        name: rule.name.clone(),
                    });
                }
                let mut owned = self.owned(&rule.idp)?;
                owned.rules.push(rule.name.clone());
                self.set_owned(&rule.idp, &owned)?;
                self.identity.insert(rule_key(&rule.name), encode(rule)?)?;
                Ok(Change::RuleUpserted(rule.clone()))
            }
            IdentityMutation::UpdateRule {
                name,
                conditions,
                allowed,
            } => {
                let Some(raw) = self.identity.get(rule_key(name))? else {
                    return abort(not_found("access rule", name));
                };
                let mut rule: RuleRecord = decode(&raw)?;
                if let Some(c) = conditions {
                    rule.conditions = c.clone();
                }
                if let Some(a) = allowed {
                    rule.allowed = a.clone();
                }
                self.identity.insert(rule_key(name), encode(&rule)?)?;
                Ok(Change::RuleUpserted(rule))
            }
            IdentityMutation::DeleteRule { name } => {
                let Some(raw) = self.identity.remove(rule_key(name))? else {
                    return abort(not_found("access rule", name));
                };
                let rule: RuleRecord = decode(&raw)?;
                let mut owned = self.owned(&rule.idp)?;
                owned.rules.retain(|r| r != name);
                self.set_owned(&rule.idp, &owned)?;
                Ok(Change::RuleDeleted { name: name.clone() })
            }
            IdentityMutation::Revoke { idp, subject } => {
                if self.identity.get(provider_key(idp))?.is_none() {
                    return abort(not_found("identity provider", idp));
                }
                let key = revocation_key(idp, subject);
                // Revoking again keeps the first time (and is still acknowledged).
                let revocation = match self.identity.get(&key)? {
                    Some(raw) => decode(&raw)?,
                    None => {
                        let revocation = Revocation {
                            idp: idp.clone(),
                            subject: subject.clone(),
                            revoked_at_ms: self.now_ms,
                        };
                        self.identity.insert(key, encode(&revocation)?)?;
                        revocation
                    }
                };
                Ok(Change::SubjectRevoked(revocation))
            }
            IdentityMutation::Unrevoke { idp, subject } => {
                let Some(raw) = self.identity.remove(revocation_key(idp, subject))? else {
                    return abort(StoreError::NotFound {
                        kind: "revocation",
                        name: format!("{idp}/{subject}"),
                    });
                };
                let revocation: Revocation = decode(&raw)?;
                let mut owned = self.owned(idp)?;
                if owned.revoked.iter().any(|s| s == subject) {
                    owned.revoked.retain(|s| s != subject);
                    self.set_owned(idp, &owned)?;
                }
                Ok(Change::SubjectUnrevoked(revocation))
            }
        }
    }

    fn provider(&self, name: &str) -> TxResult<Option<ProviderRecord>> {
        self.identity
            .get(provider_key(name))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    fn owned(&self, idp: &str) -> TxResult<Owned> {
        match self.identity.get(index_key(idp))? {
            Some(raw) => decode(&raw),
            None => Ok(Owned::default()),
        }
    }

    fn set_owned(&self, idp: &str, owned: &Owned) -> TxResult<()> {
        self.identity.insert(index_key(idp), encode(owned)?)?;
        Ok(())
    }
}

fn not_found(kind: &'static str, name: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

impl Store {
    fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.inner
            .trees
            .identity
            .scan_prefix(prefix)
            .values()
            .map(|v| super::decode(&v?))
            .collect()
    }

    pub fn identity_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        self.scan(b"p/")
    }

    pub fn identity_provider(&self, name: &str) -> Result<Option<ProviderRecord>, StoreError> {
        self.inner
            .trees
            .identity
            .get(provider_key(name))?
            .map(|v| super::decode(&v))
            .transpose()
    }

    pub fn access_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
        self.scan(b"r/")
    }

    pub fn access_rule(&self, name: &str) -> Result<Option<RuleRecord>, StoreError> {
        self.inner
            .trees
            .identity
            .get(rule_key(name))?
            .map(|v| super::decode(&v))
            .transpose()
    }

    pub fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.scan(b"v/")
    }

    pub fn revocation(&self, idp: &str, subject: &str) -> Result<Option<Revocation>, StoreError> {
        self.inner
            .trees
            .identity
            .get(revocation_key(idp, subject))?
            .map(|v| super::decode(&v))
            .transpose()
    }

    pub fn is_revoked(&self, idp: &str, subject: &str) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .trees
            .identity
            .contains_key(revocation_key(idp, subject))?)
    }
}
