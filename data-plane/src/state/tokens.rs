//! Token hash → client index: the one structure every authenticated request reads.
//!
//! Choice of map (1M clients must fit in ≤300 MB and a change must cost O(change)):
//! * `dashmap` stores `(key, value)` inline in sharded hashbrown tables: 40 bytes per
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
    pub(crate) tokens: Box<[TokenSlot]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenSlot {
    pub hash: TokenHash,
    /// Unix ms; 0 = never.
    pub expires_at_ms: u64,
}

impl ClientEntry {
    fn expiry_of(&self, hash: &TokenHash) -> Option<u64> {
        self.tokens
            .iter()
            .find(|t| t.hash == *hash)
            .map(|t| t.expires_at_ms)
    }
}

impl std::fmt::Debug for ClientEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEntry")
            .field("name", &self.name)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Takes 8 bytes of an already uniformly distributed key.
#[derive(Default)]
pub(crate) struct PrehashedHasher(u64);

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
    map: DashMap<TokenHash, Arc<ClientEntry>, BuildHasherDefault<PrehashedHasher>>,
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

    /// The client holding `hash`, unless that token expired before `now_ms`.
    pub fn lookup(&self, hash: &TokenHash, now_ms: u64) -> Option<Arc<ClientEntry>> {
        let entry = self.map.get(hash)?.value().clone();
        match entry.expiry_of(hash) {
            Some(0) => Some(entry),
            Some(exp) if exp > now_ms => Some(entry),
            _ => None,
        }
    }

    /// Points every token of `new` at it, then unlinks the tokens `old` had and `new`
    /// has not. Inserting first means a token kept across the update never misses.
    pub(crate) fn replace(&self, old: Option<&Arc<ClientEntry>>, new: &Arc<ClientEntry>) {
        for t in new.tokens.iter() {
            self.map.insert(t.hash, new.clone());
        }
        if let Some(old) = old {
            for t in old.tokens.iter() {
                if new.expiry_of(&t.hash).is_none() {
                    self.map.remove_if(&t.hash, |_, v| Arc::ptr_eq(v, old));
                }
            }
        }
    }

    pub(crate) fn remove(&self, old: &Arc<ClientEntry>) {
        for t in old.tokens.iter() {
            self.map.remove_if(&t.hash, |_, v| Arc::ptr_eq(v, old));
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
