//! Keeping every provider's keys fresh: a periodic round, and a prompt re-fetch when a data
//! plane reports a `kid` it holds no key for — one fetch at a time per provider, and at most
//! one such re-fetch per provider per cooldown, so tokens with made-up `kid`s cannot make
//! the control plane hammer the provider.
//!
//! A failed refresh keeps the last good keys; the failure shows in `list identity-providers`
//! (from [`KeyStatus`], kept in memory: a restarted control plane starts with a fresh round).

use super::fetch::{fetch, Fetched};
use crate::store::{IdentityMutation, Mutation, ProviderRecord, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default of `--idp-refetch-cooldown`.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

/// The last refresh of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStatus {
    /// Unix ms of the last fetch that succeeded (0 = none since this control plane started).
    pub fetched_ms: u64,
    /// Unix ms of the last attempt.
    pub attempted_ms: u64,
    /// Why the last attempt failed; `None` when it succeeded.
    pub error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
}

/// What a refresh did.
#[derive(Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The keys or endpoints changed; stored under this revision.
    Changed(u64),
    Unchanged,
}

/// One provider's refresh counters since this control plane started, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMetrics {
    pub status: KeyStatus,
    /// Fetches by [`Keys`] (periodic, unknown-`kid`, explicit), not create/update's own.
    pub attempts: u64,
    /// Those that failed.
    pub failures_total: u64,
    /// Fetches started by a data plane's unknown-`kid` report.
    pub unknown_kid_fetches: u64,
}

#[derive(Default)]
struct PerProvider {
    status: KeyStatus,
    attempts: u64,
    failures_total: u64,
    unknown_kid_fetches: u64,
    /// Held while a fetch of this provider runs.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// When the last fetch prompted by an unknown `kid` started.
    last_prompted: Option<Instant>,
}

/// Fetches and stores providers' keys; shared by the admin service, the Sync service and
/// the periodic task.
pub struct Keys {
    store: Store,
    cooldown: Duration,
    providers: Mutex<HashMap<String, PerProvider>>,
}

impl Keys {
    pub fn new(store: Store, cooldown: Duration) -> Self {
        Self {
            store,
            cooldown,
            providers: Mutex::default(),
        }
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut PerProvider) -> T) -> T {
        let mut map = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(map.entry(name.to_owned()).or_default())
    }

    pub fn status(&self, name: &str) -> KeyStatus {
        self.with(name, |p| p.status.clone())
    }

    /// `name`'s counters (all zero for a provider not fetched by [`Keys`] yet).
    pub fn metrics(&self, name: &str) -> KeyMetrics {
        let map = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(name)
            .map(|p| KeyMetrics {
                status: p.status.clone(),
                attempts: p.attempts,
                failures_total: p.failures_total,
                unknown_kid_fetches: p.unknown_kid_fetches,
            })
            .unwrap_or_default()
    }

    /// Records a successful fetch done elsewhere (create/update).
    pub fn record_success(&self, name: &str) {
        let now = crate::clock::now_ms();
        self.with(name, |p| {
            p.status = KeyStatus {
                fetched_ms: now,
                attempted_ms: now,
                error: None,
                failures: 0,
            }
        });
    }

    /// Forgets a deleted provider.
    pub fn forget(&self, name: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Fetches `name`'s keys now (waiting for a fetch already running) and stores them if
    /// they changed.
    pub async fn refresh(&self, name: &str) -> Result<Refreshed, String> {
        let lock = self.with(name, |p| Arc::clone(&p.fetching));
        let _fetching = lock.lock().await;
        self.refresh_locked(name).await
    }

    async fn refresh_locked(&self, name: &str) -> Result<Refreshed, String> {
        let record = match self.store.identity_provider(name) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(format!("identity provider '{name}' no longer exists")),
            Err(e) => return Err(e.to_string()),
        };
        let result = match fetch(&record.spec).await {
            Ok(fetched) => self.store_keys(&record, fetched).await,
            Err(e) => Err(e.to_string()),
        };
        let now = crate::clock::now_ms();
        self.with(name, |p| {
            p.status.attempted_ms = now;
            p.attempts += 1;
            match &result {
                Ok(_) => {
                    p.status.fetched_ms = now;
                    p.status.error = None;
                    p.status.failures = 0;
                }
                Err(e) => {
                    p.status.error = Some(e.clone());
                    p.status.failures = p.status.failures.saturating_add(1);
                    p.failures_total += 1;
                }
            }
        });
        result
    }

    async fn store_keys(
        &self,
        record: &ProviderRecord,
        found: Fetched,
    ) -> Result<Refreshed, String> {
        if found.jwks_json == record.jwks_json && found.endpoints == record.endpoints {
            return Ok(Refreshed::Unchanged);
        }
        let mutation = Mutation::Identity(IdentityMutation::SetKeys {
            spec: record.spec.clone(),
            endpoints: found.endpoints,
            jwks_json: found.jwks_json,
        });
        match self.store.apply(mutation).await {
            Ok(revision) => Ok(Refreshed::Changed(revision)),
            // Updated or deleted while we fetched: what is stored is newer than our fetch.
            Err(StoreError::Superseded { .. } | StoreError::NotFound { .. }) => {
                Ok(Refreshed::Unchanged)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A data plane saw a token of `issuer` signed with `kid`, which it holds no key for.
    /// Starts a re-fetch unless one runs, the cooldown has not passed, or the stored keys
    /// already hold `kid` (another data plane's report was served first).
    pub fn unknown_key(self: &Arc<Self>, issuer: &str, kid: &str) {
        let provider = match self.store.identity_providers() {
            Ok(all) => all.into_iter().find(|p| p.spec.issuer == issuer),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read identity providers for an unknown-key report");
                return;
            }
        };
        let Some(provider) = provider else {
            tracing::debug!(issuer, "unknown-key report for an issuer no provider has");
            return;
        };
        if holds_kid(&provider.jwks_json, kid) {
            return;
        }
        let name = provider.spec.name;
        let now = Instant::now();
        let lock = self.with(&name, |p| {
            if p.last_prompted
                .is_some_and(|t| now.duration_since(t) < self.cooldown)
            {
                return None;
            }
            let lock = Arc::clone(&p.fetching).try_lock_owned().ok()?;
            p.last_prompted = Some(now);
            p.unknown_kid_fetches += 1;
            Some(lock)
        });
        let Some(lock) = lock else {
            tracing::debug!(idp = %name, "unknown key reported; a fetch ran recently or is running");
            return;
        };
        let keys = Arc::clone(self);
        tracing::info!(idp = %name, kid, "a data plane reported an unknown key; fetching the provider's keys");
        tokio::spawn(async move {
            let _fetching = lock;
            match keys.refresh_locked(&name).await {
                Ok(Refreshed::Changed(revision)) => {
                    tracing::info!(idp = %name, revision, "identity provider keys changed")
                }
                Ok(Refreshed::Unchanged) => {
                    tracing::info!(idp = %name, "identity provider keys unchanged after an unknown-key report")
                }
                Err(e) => {
                    tracing::warn!(idp = %name, error = %e, "fetching identity provider keys failed; keeping the last good keys")
                }
            }
        });
    }

    /// Refreshes every provider on `interval`, the first round one interval after the start
    /// (create and update have just fetched what is stored). Abort the task to stop it.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.round().await;
        }
    }

    /// One pass over every provider, one at a time (there are few).
    pub async fn round(&self) {
        let providers = match self.store.identity_providers() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "key refresh: cannot read the identity providers");
                return;
            }
        };
        for p in providers {
            let name = p.spec.name;
            match self.refresh(&name).await {
                Ok(Refreshed::Changed(revision)) => {
                    tracing::info!(idp = %name, revision, "key refresh: identity provider keys changed")
                }
                Ok(Refreshed::Unchanged) => tracing::debug!(idp = %name, "key refresh: unchanged"),
                Err(e) => tracing::warn!(
                    idp = %name,
                    error = %e,
                    "key refresh failed; keeping the last good keys"
                ),
            }
        }
    }
}

/// Whether the key set (as stored) has a key with this `kid`.
fn holds_kid(jwks_json: &str, kid: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(jwks_json)
        .ok()
        .and_then(|v| {
            v.get("keys")?.as_array().map(|keys| {
                keys.iter()
                    .any(|k| k.get("kid").and_then(serde_json::Value::as_str) == Some(kid))
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::identity::test_server::TestServer;
    use crate::store::{Endpoints, Mode, ProviderSpec, StoreOptions};

    const K1: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","n":"x","e":"AQAB"}]}"#;
    const K2: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","n":"x","e":"AQAB"},{"kty":"OKP","kid":"k2","crv":"Ed25519","x":"y"}]}"#;

    async fn setup(cooldown: Duration) -> (Arc<Keys>, Store, TestServer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions::new(dir.path(), Mode::Enterprise))
            .await
            .unwrap();
        let server = TestServer::start().await;
        server.provider(K1);
        let spec = ProviderSpec::for_tests("corp", &server.url);
        let found = fetch(&spec).await.unwrap();
        store
            .apply(Mutation::Identity(IdentityMutation::PutProvider {
                record: ProviderRecord {
                    spec,
                    endpoints: found.endpoints,
                    jwks_json: found.jwks_json,
                    keys_revision: 0,
                },
                create: true,
            }))
            .await
            .unwrap();
        (
            Arc::new(Keys::new(store.clone(), cooldown)),
            store,
            server,
            dir,
        )
    }

    /// Waits (bounded) until `check` holds; a failure deadline, not a timing assertion.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..600 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not reached: {what}");
    }

    #[tokio::test]
    async fn unknown_kid_fetches_once_per_cooldown() {
        let (keys, store, server, _dir) = setup(Duration::from_secs(3600)).await;
        let before = server.hits("/jwks");
        server.set("/jwks", 200, K2);
        // A kid the stored keys hold: nothing to fetch.
        keys.unknown_key(&server.url, "k1");
        // Another issuer: ignored.
        keys.unknown_key("https://elsewhere.example", "k2");
        keys.unknown_key(&server.url, "k2");
        eventually("rotated keys stored", || {
            store
                .identity_provider("corp")
                .unwrap()
                .is_some_and(|p| p.jwks_json == K2)
        })
        .await;
        assert_eq!(server.hits("/jwks"), before + 1);
        assert!(
            store
                .identity_provider("corp")
                .unwrap()
                .unwrap()
                .keys_revision
                > 1
        );
        // Within the cooldown further reports of unknown kids fetch nothing.
        for _ in 0..5 {
            keys.unknown_key(&server.url, "k3");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.hits("/jwks"), before + 1);
        assert!(keys.status("corp").error.is_none());
    }

    #[tokio::test]
    async fn counts_attempts_failures_and_unknown_kid_fetches() {
        let (keys, _store, server, _dir) = setup(Duration::from_secs(3600)).await;
        assert_eq!(keys.metrics("corp"), KeyMetrics::default());
        server.set("/jwks", 200, "garbage");
        assert!(keys.refresh("corp").await.is_err());
        assert!(keys.refresh("corp").await.is_err());
        let m = keys.metrics("corp");
        assert_eq!((m.attempts, m.failures_total, m.status.failures), (2, 2, 2));
        assert_eq!(m.status.fetched_ms, 0);
        server.set("/jwks", 200, K2);
        keys.unknown_key(&server.url, "k2");
        eventually("the prompted fetch counted", || {
            let m = keys.metrics("corp");
            m.attempts == 3 && m.status.failures == 0
        })
        .await;
        let m = keys.metrics("corp");
        assert_eq!((m.failures_total, m.unknown_kid_fetches), (2, 1));
        assert!(m.status.fetched_ms > 0);
    }

    #[tokio::test]
    async fn failed_refresh_keeps_the_last_good_keys() {
        let (keys, store, server, _dir) = setup(DEFAULT_REFETCH_COOLDOWN).await;
        let revision = store.revision();
        server.set("/jwks", 500, "{}");
        assert!(keys.refresh("corp").await.unwrap_err().contains("500"));
        let status = keys.status("corp");
        assert_eq!(status.failures, 1);
        assert!(status.error.is_some());
        assert_eq!(
            store.identity_provider("corp").unwrap().unwrap().jwks_json,
            K1
        );
        // Unchanged keys store nothing.
        server.set("/jwks", 200, K1);
        assert_eq!(keys.refresh("corp").await.unwrap(), Refreshed::Unchanged);
        assert_eq!(store.revision(), revision);
        assert_eq!(keys.status("corp").failures, 0);
        // The endpoints are re-read too.
        assert_eq!(
            store.identity_provider("corp").unwrap().unwrap().endpoints,
            Endpoints {
                jwks_uri: format!("{}/jwks", server.url),
                token_endpoint: format!("{}/token", server.url),
                ..Default::default()
            }
        );
    }
}
