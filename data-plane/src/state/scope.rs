//! A client's scope: its allow list, shared between every client with the same list.
//!
//! Most deployments have a handful of distinct allow lists and many clients, so scopes
//! are interned: a million clients with `--allow github` hold one `Arc<Scope>` (8 bytes
//! each) instead of a million copies of the list. The scope also caches the bytes of
//! its filtered `tools/list` and `prompts/list`, tagged with the catalogue generation
//! they were built from.

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use canopy_core::AllowList;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Scope {
    allow: AllowList,
    lists: ArcSwapOption<ScopedLists>,
}

/// The JSON arrays of tools and prompts this scope sees in one catalogue generation.
pub(crate) struct ScopedLists {
    pub generation: u64,
    pub tools: Bytes,
    pub prompts: Bytes,
}

impl Scope {
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow,
            lists: ArcSwapOption::empty(),
        }
    }

    pub fn allow(&self) -> &AllowList {
        &self.allow
    }

    pub(crate) fn cached_lists(&self, generation: u64) -> Option<Arc<ScopedLists>> {
        self.lists
            .load_full()
            .filter(|l| l.generation == generation)
    }

    pub(crate) fn store_lists(&self, lists: Arc<ScopedLists>) {
        self.lists.store(Some(lists));
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Scope")
            .field(&self.allow.to_strings())
            .finish()
    }
}

/// Writer-side table of live scopes, keyed by the allow-list entries as the control
/// plane sends them (canonical: sorted, de-duplicated). A hit costs one hash of the
/// entries and no allocation; only a new list is parsed.
#[derive(Default)]
pub(crate) struct ScopeInterner {
    by_key: HashMap<Box<[String]>, Arc<Scope>, foldhash::fast::RandomState>,
    since_prune: usize,
}

impl ScopeInterner {
    pub(crate) fn intern(&mut self, client: &str, allowed: &[String]) -> Arc<Scope> {
        if let Some(s) = self.by_key.get(allowed) {
            return s.clone();
        }
        self.since_prune += 1;
        if self.since_prune >= 1024 {
            self.prune();
        }
        let scope = Arc::new(Scope::new(super::convert::allow_list(client, allowed)));
        self.by_key.insert(allowed.into(), scope.clone());
        scope
    }

    /// Drops scopes no client holds any more (only this table references them).
    pub(crate) fn prune(&mut self) {
        self.by_key.retain(|_, s| Arc::strong_count(s) > 1);
        self.since_prune = 0;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}
