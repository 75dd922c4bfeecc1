//! Verified JWTs by the keyed hash of the token: after the first request, a JWT costs
//! what a static token does (one keyed hash, one map lookup).
//!
//! An entry is valid while its token is (`exp` plus leeway) and while the identity
//! directory it was verified against is current: every provider, rule or revocation
//! change starts a new generation, so a revoked subject's cached tokens stop working at
//! once, without a scan. An entry of an older generation but of the current epoch (only
//! revocations changed since: see [`super::Directory`]) is checked against the revoked
//! set instead of being verified again: the revoked subject's token is refused without a
//! signature check (on every data plane, right after `revoke subject`), and everybody
//! else's token moves to the new generation for one set lookup instead of a verification.
//! Entries of old epochs are dropped when the cache is full.

use canopy_core::TokenHash;
use dashmap::DashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Directory;
use crate::state::{PrehashedHasher, Scope};

/// Upper bound on cached tokens (~100 bytes each): past it, verified tokens that do not
/// fit are verified again on their next request rather than evicting live ones.
pub const DEFAULT_CAPACITY: usize = 200_000;
/// A full cache is pruned of expired and outdated entries at most this often.
const PRUNE_INTERVAL_MS: u64 = 1_000;

pub(crate) struct Grant {
    /// Unix ms past which the token is no longer valid (its `exp` plus leeway).
    pub valid_until_ms: u64,
    /// The latest generation the grant is known to hold at (it only grows).
    pub generation: AtomicU64,
    /// The epoch of the directory the token was verified against.
    pub epoch: u64,
    pub scope: Arc<Scope>,
    /// Set when the token's audience is only `/servers/<name>/mcp`.
    pub only_server: Option<Arc<str>>,
    /// Who the token names (identity provider, subject): for the revoked set and the
    /// audit trail.
    pub who: Arc<SignedIn>,
}

/// A person or service signed in through an identity provider.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub idp: Arc<str>,
    pub subject: Box<str>,
}

/// What the cache says about a token.
#[derive(Debug)]
pub(crate) enum Cached {
    Hit(Arc<Scope>, Arc<SignedIn>),
    /// Verified before, but its subject is revoked now.
    Revoked,
    /// Not cached, expired, for another endpoint, or verified against other keys or rules.
    Miss,
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
        dir: &Directory,
        target: Option<&str>,
        now_ms: u64,
    ) -> Cached {
        let Some(g) = self.map.get(hash) else {
            return Cached::Miss;
        };
        if g.valid_until_ms <= now_ms || g.only_server.as_deref().is_some_and(|s| Some(s) != target)
        {
            return Cached::Miss;
        }
        let held_at = g.generation.load(Ordering::Acquire);
        if held_at == dir.generation {
            return Cached::Hit(g.scope.clone(), g.who.clone());
        }
        if g.epoch != dir.epoch {
            // Verified against other keys or rules: verify again.
            return Cached::Miss;
        }
        // The revoked set is read after the directory was loaded, and a revocation is
        // inserted there before its generation is published: a request that sees the new
        // generation sees the revocation.
        if dir.is_revoked(&g.who.idp, &g.who.subject) {
            return Cached::Revoked;
        }
        g.generation.fetch_max(dir.generation, Ordering::AcqRel);
        Cached::Hit(g.scope.clone(), g.who.clone())
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
                let epoch = grant.epoch;
                self.map
                    .retain(|_, g| g.epoch == epoch && g.valid_until_ms > now_ms);
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
