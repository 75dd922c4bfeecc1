//! Token hash → client index: the one structure every authenticated request reads.
//!
//! Choice of map (1M clients must fit in ≤300 MB and a change must cost O(change)):
//! * `dashmap` stores `(key, value)` inline in sharded hashbrown tables: 48 bytes per
//!   token plus control bytes, no per-entry allocation. A write holds one shard's lock
//!   for a single insert/remove; with 128 shards a resize touches ~1/128 of the tokens
//!   (~8k entries at 1M, tens of µs), so no writer holds a lock readers wait on for long.
//! * `papaya` is lock-free for readers but allocates every entry separately (plus its
//!   reclamation header), roughly doubling bytes per token at 1M clients.
//! * An `arc-swap` of a persistent (im-style) map gives lock-free reads but costs a
//!   path copy and several allocations per change and ~3× the memory per entry.
//!
//! Keys are keyed BLAKE3 hashes, uniformly random and not choosable by an attacker
//! who lacks the key, so the map hashes them by taking 8 of their bytes instead of
//! running SipHash over 32 bytes.

use canopy_core::TokenHash;
use dashmap::DashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::scope::Scope;

/// One MCP client as the request path sees it.
pub struct ClientEntry {
    pub name: Arc<str>,
    pub scope: Arc<Scope>,
    pub(crate) tokens: Tokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenSlot {
    pub hash: TokenHash,
    /// Unix ms; 0 = never.
    pub expires_at_ms: u64,
}

/// A client's tokens. Almost every client has exactly one, kept inline (no allocation);
/// several exist only while an old token is in its grace period.
#[derive(Debug, Clone)]
pub(crate) enum Tokens {
    One(TokenSlot),
    Many(Box<[TokenSlot]>),
}

impl Tokens {
    pub(crate) fn from_vec(mut v: Vec<TokenSlot>) -> Self {
        if v.len() == 1 {
            if let Some(t) = v.pop() {
                return Tokens::One(t);
            }
        }
        Tokens::Many(v.into_boxed_slice())
    }

    pub(crate) fn as_slice(&self) -> &[TokenSlot] {
        match self {
            Tokens::One(t) => std::slice::from_ref(t),
            Tokens::Many(v) => v,
        }
    }

    fn contains(&self, hash: &TokenHash) -> bool {
        self.as_slice().iter().any(|t| t.hash == *hash)
    }
}

impl std::fmt::Debug for ClientEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEntry")
            .field("name", &self.name)
            .field("tokens", &self.tokens.as_slice().len())
            .finish()
    }
}

/// The index's value. What a request needs — the token's expiry and the client's scope —
/// sits in the map's own bucket, so an auth decision touches that bucket and the scope
/// (shared by many clients, so usually cached) but not the client's own allocation: at a
/// million clients that is one cache and TLB miss fewer per request. The client pointer
/// identifies whose token it is for updates and removals.
struct Slot {
    /// Unix ms; 0 = never.
    expires_at_ms: u64,
    scope: Arc<Scope>,
    client: Arc<ClientEntry>,
}

/// Takes 8 bytes of an already uniformly distributed key.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }
    fn write_usize(&mut self, _len: usize) {
        // The array length prefix carries no entropy.
    }
}

const SHARDS: usize = 128;

pub struct TokenIndex {
    map: DashMap<TokenHash, Slot, BuildHasherDefault<PrehashedHasher>>,
}

impl Default for TokenIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl TokenIndex {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                n,
                BuildHasherDefault::default(),
                SHARDS,
            ),
        }
    }

    /// The scope of the client holding `hash`, unless that token expired before `now_ms`:
    /// the auth decision of the request path.
    pub fn lookup(&self, hash: &TokenHash, now_ms: u64) -> Option<Arc<Scope>> {
        let slot = self.map.get(hash)?;
        let exp = slot.expires_at_ms;
        (exp == 0 || exp > now_ms).then(|| slot.scope.clone())
    }

    /// As [`TokenIndex::lookup`], with the client's name (for the audit trail: it costs a
    /// read of the client's own allocation, which `lookup` avoids).
    pub fn lookup_named(&self, hash: &TokenHash, now_ms: u64) -> Option<(Arc<Scope>, Arc<str>)> {
        let slot = self.map.get(hash)?;
        let exp = slot.expires_at_ms;
        (exp == 0 || exp > now_ms).then(|| (slot.scope.clone(), slot.client.name.clone()))
    }

    /// As [`TokenIndex::lookup`], the whole client (tests check whose token it is).
    #[cfg(test)]
    pub(crate) fn lookup_client(&self, hash: &TokenHash, now_ms: u64) -> Option<Arc<ClientEntry>> {
        let slot = self.map.get(hash)?;
        let exp = slot.expires_at_ms;
        (exp == 0 || exp > now_ms).then(|| slot.client.clone())
    }

    /// Points every token of `new` at it, then unlinks the tokens `old` had and `new`
    /// has not. Inserting first means a token kept across the update never misses.
    pub(crate) fn replace(&self, old: Option<&Arc<ClientEntry>>, new: &Arc<ClientEntry>) {
        for t in new.tokens.as_slice() {
            self.map.insert(
                t.hash,
                Slot {
                    expires_at_ms: t.expires_at_ms,
                    scope: new.scope.clone(),
                    client: new.clone(),
                },
            );
        }
        if let Some(old) = old {
            for t in old.tokens.as_slice() {
                if !new.tokens.contains(&t.hash) {
                    self.map
                        .remove_if(&t.hash, |_, v| Arc::ptr_eq(&v.client, old));
                }
            }
        }
    }

    pub(crate) fn remove(&self, old: &Arc<ClientEntry>) {
        for t in old.tokens.as_slice() {
            self.map
                .remove_if(&t.hash, |_, v| Arc::ptr_eq(&v.client, old));
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
