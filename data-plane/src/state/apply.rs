//! Applying what the control plane sends: snapshots (built aside, swapped at `last`)
//! and change batches (in revision order, in place, O(size of the change)).

use canopy_core::TokenHasher;
use canopy_mcp::upstream::Upstream;
use canopy_proto::v1 as pb;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::catalog::{Catalog, Server};
use super::convert::{self, ClientDef, Mode, ServerDef};
use super::scope::ScopeInterner;
use super::tokens::{ClientEntry, TokenIndex};
use super::{ApplyError, ClientMap, State, View, Writer};
use crate::identity::Sources;

/// A snapshot being received. Nothing is visible to requests until [`State::finish_snapshot`].
pub struct SnapshotBuilder {
    revision: u64,
    mode: Mode,
    key: [u8; 32],
    clients: ClientMap,
    tokens: TokenIndex,
    scopes: ScopeInterner,
    servers: Vec<ServerDef>,
    /// Identity providers, access rules and revocations (first chunk only).
    identity: Sources,
    done: bool,
}

impl SnapshotBuilder {
    /// Starts from a chunk with `first` set.
    pub fn new(first: &pb::SnapshotChunk) -> Result<Self, ApplyError> {
        if !first.first {
            return Err(ApplyError::SnapshotOrder(
                "snapshot does not start with a first chunk",
            ));
        }
        let mode = Mode::from_proto(first.mode)?;
        let key = convert::token_key(&first.token_hash_key, mode)?;
        // Sized once for the whole snapshot when the sender says how big it is (growing
        // to a million entries chunk by chunk rehashed both tables ~8 times).
        let total = usize::try_from(first.total_clients)
            .unwrap_or(0)
            .max(first.clients.len());
        Ok(Self {
            revision: first.revision,
            mode,
            key,
            clients: ClientMap::with_capacity(total),
            tokens: TokenIndex::with_capacity(total),
            scopes: ScopeInterner::default(),
            servers: Vec::new(),
            identity: Sources::default(),
            done: false,
        })
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Adds one chunk (the first one too). Returns true when it was the last.
    pub fn add(&mut self, chunk: pb::SnapshotChunk) -> Result<bool, ApplyError> {
        if self.done {
            return Err(ApplyError::SnapshotOrder("chunk after the last one"));
        }
        if chunk.revision != self.revision {
            return Err(ApplyError::SnapshotOrder(
                "chunks of one snapshot carry different revisions",
            ));
        }
        // A record this build cannot read is skipped (and logged) rather than failing
        // the sync: retrying would fail the same way forever. Skipping a client denies
        // it, which is the safe side.
        for c in &chunk.clients {
            self.add_client(c);
        }
        // One message reused for every encoded client: its buffers keep their capacity.
        let mut state = pb::ClientState::default();
        for raw in &chunk.encoded_clients {
            state.clear();
            match state.merge(raw.as_ref()) {
                Ok(()) => self.add_client(&state),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable client in snapshot"),
            }
        }
        if chunk.first {
            self.identity = Sources {
                providers: chunk.identity_providers,
                rules: chunk.access_rules,
                revoked: chunk.revoked_subjects,
            };
        }
        for s in chunk.servers {
            match ServerDef::try_from(s) {
                Ok(def) => self.servers.push(def),
                Err(e) => tracing::warn!(error = %e, "skipping unreadable server in snapshot"),
            }
        }
        self.done = chunk.last;
        Ok(chunk.last)
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    fn add_client(&mut self, c: &pb::ClientState) {
        match ClientDef::try_from(c) {
            Ok(def) => upsert_client(&mut self.clients, &self.tokens, &mut self.scopes, def),
            Err(e) => tracing::warn!(error = %e, "skipping unreadable client in snapshot"),
        }
    }
}

fn upsert_client(
    clients: &mut ClientMap,
    tokens: &TokenIndex,
    scopes: &mut ScopeInterner,
    def: ClientDef<'_>,
) {
    let name: Arc<str> = match clients.get(def.name) {
        Some(old) => old.name.clone(),
        None => Arc::from(def.name),
    };
    let entry = Arc::new(ClientEntry {
        scope: scopes.intern(def.name, def.allowed),
        name,
        tokens: def.tokens,
    });
    let old = clients.insert(entry.clone());
    tokens.replace(old.as_ref(), &entry);
}

fn delete_client(clients: &mut ClientMap, tokens: &TokenIndex, name: &str) {
    if let Some(old) = clients.remove(name) {
        tokens.remove(&old);
    }
}

fn spawn_shutdown(up: Upstream) {
    // Removing a server must not wait on its connections; outside a runtime (unit
    // tests) there is nothing running to stop.
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        h.spawn(async move { up.shutdown().await });
    }
}

impl State {
    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed)
    }

    /// The `Server` for `def`, reusing the running upstream connection when its
    /// configuration is unchanged (a catalogue refresh must not drop sessions).
    fn make_server(
        &self,
        def: ServerDef,
        existing: Option<&Arc<Server>>,
    ) -> (Arc<Server>, Option<Upstream>) {
        let metrics = self.metrics.upstream(&def.config.name);
        match existing {
            Some(old) if *old.upstream.config() == def.config => (
                Arc::new(Server::new(def, old.upstream.clone(), metrics)),
                None,
            ),
            _ => {
                let up = Upstream::new(def.config.clone());
                (
                    Arc::new(Server::new(def, up, metrics)),
                    existing.map(|o| o.upstream.clone()),
                )
            }
        }
    }

    fn remove_server(&self, w: &mut Writer, name: &str) {
        if let Some(gone) = w.servers.remove(name) {
            self.metrics.forget_upstream(name);
            spawn_shutdown(gone.upstream.clone());
        }
    }

    /// Installs a complete snapshot: one swap makes it visible.
    pub fn finish_snapshot(&self, b: SnapshotBuilder) -> Result<u64, ApplyError> {
        if !b.done {
            return Err(ApplyError::SnapshotOrder("snapshot has no last chunk"));
        }
        let mut guard = self.writer();
        let mut old_servers = guard
            .as_mut()
            .map(|w| std::mem::take(&mut w.servers))
            .unwrap_or_default();
        let mut servers = BTreeMap::new();
        for def in b.servers {
            let existing = old_servers.remove(def.config.name.as_str());
            let (server, retired) = self.make_server(def, existing.as_ref());
            if let Some(up) = retired {
                spawn_shutdown(up);
            }
            servers.insert(server.name.clone(), server);
        }
        for (name, gone) in old_servers {
            self.metrics.forget_upstream(&name);
            spawn_shutdown(gone.upstream.clone());
        }
        let catalog = Arc::new(Catalog::build(
            self.next_generation(),
            servers.values().cloned().collect(),
        ));
        let view = View {
            mode: b.mode,
            hasher: TokenHasher::new(b.key),
            catalog,
            tokens: Arc::new(b.tokens),
        };
        let mut scopes = b.scopes;
        scopes.prune();
        self.identities.replace_all(b.identity);
        *guard = Some(Writer {
            revision: b.revision,
            mode: b.mode,
            key: b.key,
            clients: b.clients,
            scopes,
            servers,
        });
        self.view.store(Some(Arc::new(view)));
        self.status.set_applied(b.revision);
        self.status.set_ready();
        drop(guard);
        self.changed.notify_one();
        Ok(b.revision)
    }

    /// Applies a batch in revision order. Changes at or below the applied revision are
    /// duplicates and skipped (several changes may share one revision: they are applied
    /// together). A revision beyond applied + 1 is a gap: nothing after it is applied
    /// and the caller must resync from the applied revision.
    ///
    /// Returns the applied revision after the batch when it advanced.
    pub fn apply_changes(&self, changes: Vec<pb::Change>) -> Result<Option<u64>, ApplyError> {
        let mut guard = self.writer();
        let w = guard.as_mut().ok_or(ApplyError::NoState)?;
        let view = self.view.load_full().ok_or(ApplyError::NoState)?;
        let start = w.revision;
        let mut current: Option<u64> = None;
        let mut servers_changed = false;
        let mut result = Ok(());
        for change in changes {
            let rev = change.revision;
            if rev <= w.revision && current != Some(rev) {
                continue;
            }
            if rev > w.revision + 1 {
                result = Err(ApplyError::Gap {
                    applied: w.revision,
                    got: rev,
                });
                break;
            }
            let Some(kind) = change.kind else {
                result = Err(ApplyError::EmptyChange(rev));
                break;
            };
            // As in snapshots, an unreadable record must not wedge the stream: the
            // client or server it describes is removed (fail closed) and logged.
            match kind {
                pb::change::Kind::ClientUpsert(c) => match ClientDef::try_from(&c) {
                    Ok(def) => upsert_client(&mut w.clients, &view.tokens, &mut w.scopes, def),
                    Err(e) => {
                        tracing::warn!(revision = rev, error = %e, "unreadable client change; removing the client");
                        delete_client(&mut w.clients, &view.tokens, &c.name);
                    }
                },
                pb::change::Kind::ClientDelete(name) => {
                    delete_client(&mut w.clients, &view.tokens, &name)
                }
                pb::change::Kind::ServerUpsert(s) => {
                    let name = s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    match ServerDef::try_from(s) {
                        Ok(def) => {
                            let existing = w.servers.get(def.config.name.as_str()).cloned();
                            let (server, retired) = self.make_server(def, existing.as_ref());
                            if let Some(up) = retired {
                                spawn_shutdown(up);
                            }
                            w.servers.insert(server.name.clone(), server);
                        }
                        Err(e) => {
                            tracing::warn!(revision = rev, error = %e, "unreadable server change; removing the server");
                            self.remove_server(w, &name);
                        }
                    }
                    servers_changed = true;
                }
                pb::change::Kind::ServerDelete(name) => {
                    self.remove_server(w, &name);
                    servers_changed = true;
                }
                pb::change::Kind::Other(_) => {}
                // Applied before the ack: a revocation holds once acknowledged.
                identity @ (pb::change::Kind::IdentityProviderUpsert(_)
                | pb::change::Kind::IdentityProviderDelete(_)
                | pb::change::Kind::AccessRuleUpsert(_)
                | pb::change::Kind::AccessRuleDelete(_)
                | pb::change::Kind::SubjectRevoke(_)
                | pb::change::Kind::SubjectUnrevoke(_)) => {
                    self.identities.apply(&identity);
                }
            }
            w.revision = rev;
            current = Some(rev);
        }
        if servers_changed {
            let catalog = Arc::new(Catalog::build(
                self.next_generation(),
                w.servers.values().cloned().collect(),
            ));
            self.view.store(Some(Arc::new(View {
                mode: view.mode,
                hasher: view.hasher.clone(),
                catalog,
                tokens: view.tokens.clone(),
            })));
        }
        let advanced = (w.revision > start).then_some(w.revision);
        self.status.set_applied(w.revision);
        drop(guard);
        if advanced.is_some() {
            self.changed.notify_one();
        }
        result.map(|()| advanced)
    }
}
