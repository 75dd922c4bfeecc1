//! Verified JWTs by the keyed hash of the token: after the first request, a JWT costs
//! what a static token does (one keyed hash, one map lookup).
//!
//! An entry is valid while its token is (`exp` plus leeway) and while the identity
//! directory it was verified against is current: every provider, rule or revocation
//! change starts a new generation, so a revoked subject's cached tokens stop working at
//! once, without a scan. Entries of old generations are dropped when the cache is full.

use canopy_core::TokenHash;
use dashmap::DashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::state::{PrehashedHasher, Scope};

/// Upper bound on cached tokens (~100 bytes each): past it, verified tokens that do not
/// fit are verified again on their next request rather than evicting live ones.
pub const DEFAULT_CAPACITY: usize = 200_000;
/// A full cache is pruned of expired and outdated entries at most this often.
const PRUNE_INTERVAL_MS: u64 = 1_000;

pub(crate) struct Grant {
    /// Unix ms past which the token is no longer valid (its `exp` plus leeway).
    pub valid_until_ms: u64,
    pub generation: u64,
    pub scope: Arc<Scope>,
    /// Set when the token's audience is only `/servers/<name>/mcp`.
    pub only_server: Option<Arc<str>>,
    /// Who the token names (identity provider, subject), for the audit trail.
    pub who: Arc<SignedIn>,
}

/// A person or service signed in through an identity provider.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub idp: Arc<str>,
    pub subject: Box<str>,
}

pub(crate) struct VerifiedCache {
    map: DashMap<TokenHash, Grant, BuildHasherDefault<PrehashedHasher>>,
    capacity: usize,
    last_prune_ms: AtomicU64,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(BuildHasherDefault::default()),
            capacity,
            last_prune_ms: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn get(
        &self,
        hash: &TokenHash,
        generation: u64,
        target: Option<&str>,
        now_ms: u64,
    ) -> Option<(Arc<Scope>, Arc<SignedIn>)> {
        let g = self.map.get(hash)?;
        let fits = g.generation == generation
            && g.valid_until_ms > now_ms
            && g.only_server.as_deref().is_none_or(|s| Some(s) == target);
        fits.then(|| (g.scope.clone(), g.who.clone()))
    }

    pub(crate) fn insert(&self, hash: TokenHash, grant: Grant, now_ms: u64) {
        if self.map.len() >= self.capacity {
            let last = self.last_prune_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= PRUNE_INTERVAL_MS
                && self
                    .last_prune_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let generation = grant.generation;
                self.map
                    .retain(|_, g| g.generation == generation && g.valid_until_ms > now_ms);
            }
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(hash, grant);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
