//! Mutations and how each one is applied inside ONE sled transaction.
//!
//! The transaction writes the entity (and the token index), takes the next value of the
//! global revision counter and appends the change record under that revision. The
//! closure may run several times on conflicts, so it only reads and writes sled: the
//! current time is fixed by the caller, nothing is logged or sent from inside.

use super::identity::IdentityMutation;
use super::open::{Trees, META_ADMINS, META_INITIALIZED, META_REVISION};
use super::records::{
    Change, ChangeRecord, ClientRecord, Principal, Role, ServerRecord, StoredToken, UserRecord,
};
use super::server_codec::{self, Keys};
use super::{client_codec, StoreError};
use canopy_core::TokenHash;
use serde_json::value::RawValue;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

/// A change the admin asked for. Token values are hashes already.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// First admin of an enterprise server; fails once the server is initialized.
    InitAdmin {
        name: String,
        token: TokenHash,
    },
    CreateUser {
        name: String,
        role: Role,
        token: TokenHash,
        /// Canonical allow-list entries.
        allowed: Vec<String>,
    },
    /// Replace the user's token (the old one stays valid for `grace_ms`, 0 = revoke now)
    /// and/or allow list (an admin's can only hold `*`), and/or change their role (the last
    /// admin cannot lose it).
    UpdateUser {
        name: String,
        token: Option<TokenHash>,
        grace_ms: u64,
        allowed: Option<Vec<String>>,
        role: Option<Role>,
    },
    DeleteUser {
        name: String,
    },
    CreateClient {
        name: String,
        description: String,
        allowed: Vec<String>,
        token: TokenHash,
    },
    UpdateClient {
        name: String,
        token: Option<TokenHash>,
        grace_ms: u64,
        allowed: Option<Vec<String>>,
        description: Option<String>,
    },
    DeleteClient {
        name: String,
    },
    /// Register a server; `replace` allows overwriting one of the same name.
    PutServer {
        record: ServerRecord,
        replace: bool,
    },
    /// New catalogue for an existing server (refresh); its spec stays as stored.
    UpdateCatalogue {
        name: String,
        tools: Vec<Box<RawValue>>,
        prompts: Vec<Box<RawValue>>,
        protocol_version: String,
    },
    DeleteServer {
        name: String,
    },
    /// Identity providers, access rules, revoked subjects (see `store/identity.rs`).
    Identity(IdentityMutation),
}

pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

pub(super) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(super) fn encode<T: serde::Serialize>(v: &T) -> TxResult<Vec<u8>> {
    serde_json::to_vec(v)
        .map_err(|e| ConflictableTransactionError::Abort(StoreError::Decode(e.to_string())))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> TxResult<T> {
    serde_json::from_slice(raw)
        .map_err(|e| ConflictableTransactionError::Abort(StoreError::Decode(e.to_string())))
}

/// The transactional views of every tree, in the order of [`Trees::apply`]'s tuple.
pub(super) struct Tx<'a> {
    users: &'a TransactionalTree,
    clients: &'a TransactionalTree,
    servers: &'a TransactionalTree,
    tokens: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    pub(super) identity: &'a TransactionalTree,
    secrets: &'a canopy_core::SealingKey,
    pub(super) now_ms: u64,
    /// Keys read before the transaction that it cannot scan for (see
    /// [`Trees::keys_to_scan`]).
    pub(super) scanned: &'a [sled::IVec],
}

impl Trees {
    /// Applies `m` in one transaction and returns the change with its revision.
    pub(super) fn apply(&self, m: &Mutation, now_ms: u64) -> Result<ChangeRecord, StoreError> {
        let scanned = self.keys_to_scan(m)?;
        let trees = (
            &self.users,
            &self.clients,
            &self.servers,
            &self.tokens,
            &self.meta,
            &self.changelog,
            &self.changelog_at,
            &self.identity,
        );
        let result = trees.transaction(
            |(users, clients, servers, tokens, meta, changelog, changelog_at, identity)| {
                let tx = Tx {
                    users,
                    clients,
                    servers,
                    tokens,
                    meta,
                    identity,
                    secrets: &self.secrets,
                    now_ms,
                    scanned: &scanned,
                };
                let revision = match meta.get(META_REVISION)? {
                    Some(raw) => read_u64(&raw)? + 1,
                    None => 1,
                };
                let change = tx.apply(m, revision)?;
                meta.insert(META_REVISION, &revision.to_be_bytes())?;
                let stored = server_codec::encode_change(&change, &self.secrets)
                    .map_err(ConflictableTransactionError::Abort)?;
                changelog.insert(&revision.to_be_bytes(), stored)?;
                changelog_at.insert(&revision.to_be_bytes(), &now_ms.to_be_bytes())?;
                Ok(ChangeRecord { revision, change })
            },
        );
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })
    }
}

/// Admins are not restricted (they could widen their own list anyway), so an admin's
/// stored allow list always holds `*`: a listing never shows a list that is not enforced.
fn check_user_scope(name: &str, role: Role, allowed: &[String]) -> TxResult<()> {
    if role == Role::Admin && !allowed.iter().any(|e| e == "*") {
        return abort(StoreError::AdminScope(name.to_owned()));
    }
    Ok(())
}

pub(super) fn read_u64(raw: &[u8]) -> TxResult<u64> {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .or_else(|_| abort(StoreError::Decode("counter is not 8 bytes".into())))
}

impl Tx<'_> {
    fn apply(&self, m: &Mutation, revision: u64) -> TxResult<Change> {
        match m {
            Mutation::Identity(m) => self.apply_identity(m, revision),
            Mutation::InitAdmin { name, token } => {
                if self.meta.get(META_INITIALIZED)?.is_some() {
                    return abort(StoreError::AlreadyInitialized);
                }
                self.meta.insert(META_INITIALIZED, b"1".as_slice())?;
                self.create_user(name, Role::Admin, *token, &["*".to_owned()])
            }
            Mutation::CreateUser {
                name,
                role,
                token,
                allowed,
            } => self.create_user(name, *role, *token, allowed),
            Mutation::UpdateUser {
                name,
                token,
                grace_ms,
                allowed,
                role,
            } => {
                let mut user: UserRecord = self.get(self.users, "user", name)?;
                let principal = Principal::User(name.clone());
                user.tokens = match token {
                    Some(token) => self.rotate(&principal, &user.tokens, *token, *grace_ms)?,
                    None => self.prune(&user.tokens)?,
                };
                if let Some(role) = role.filter(|r| *r != user.role) {
                    let mut admins = self.admins()?;
                    admins.retain(|a| a != name);
                    if role == Role::Admin {
                        admins.push(name.clone());
                        // Admins are not restricted: their list is always `*`.
                        user.allowed = vec!["*".to_owned()];
                    } else if admins.is_empty() {
                        return abort(StoreError::LastAdmin(name.clone()));
                    }
                    self.set_admins(&admins)?;
                    user.role = role;
                }
                if let Some(allowed) = allowed {
                    check_user_scope(name, user.role, allowed)?;
                    user.allowed = allowed.clone();
                }
                self.put(self.users, name, &user)?;
                Ok(Change::UserUpserted {
                    name: user.name,
                    role: user.role,
                })
            }
            Mutation::DeleteUser { name } => {
                let user: UserRecord = self.get(self.users, "user", name)?;
                if user.role == Role::Admin {
                    let mut admins = self.admins()?;
                    admins.retain(|a| a != name);
                    if admins.is_empty() {
                        return abort(StoreError::LastAdmin(name.clone()));
                    }
                    self.set_admins(&admins)?;
                }
                self.drop_tokens(&user.tokens)?;
                self.users.remove(name.as_bytes())?;
                Ok(Change::UserDeleted { name: name.clone() })
            }
            Mutation::CreateClient {
                name,
                description,
                allowed,
                token,
            } => {
                if self.clients.get(name.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists {
                        kind: "MCP client",
                        name: name.clone(),
                    });
                }
                self.claim_token(*token, &Principal::Client(name.clone()))?;
                let client = ClientRecord {
                    name: name.clone(),
                    description: description.clone(),
                    allowed: allowed.clone(),
                    tokens: vec![StoredToken::permanent(*token)],
                };
                self.clients
                    .insert(name.as_bytes(), client_codec::encode(&client))?;
                Ok(Change::ClientUpserted(client))
            }
            Mutation::UpdateClient {
                name,
                token,
                grace_ms,
                allowed,
                description,
            } => {
                let mut client = self.client(name)?;
                let principal = Principal::Client(name.clone());
                client.tokens = match token {
                    Some(token) => self.rotate(&principal, &client.tokens, *token, *grace_ms)?,
                    None => self.prune(&client.tokens)?,
                };
                if let Some(allowed) = allowed {
                    client.allowed = allowed.clone();
                }
                if let Some(description) = description {
                    client.description = description.clone();
                }
                self.clients
                    .insert(name.as_bytes(), client_codec::encode(&client))?;
                Ok(Change::ClientUpserted(client))
            }
            Mutation::DeleteClient { name } => {
                let client = self.client(name)?;
                self.drop_tokens(&client.tokens)?;
                self.clients.remove(name.as_bytes())?;
                Ok(Change::ClientDeleted { name: name.clone() })
            }
            Mutation::PutServer { record, replace } => {
                let name = &record.spec.name;
                if !replace && self.servers.get(name.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists {
                        kind: "server",
                        name: name.clone(),
                    });
                }
                self.put_server(record)?;
                Ok(Change::ServerUpserted(record.clone()))
            }
            Mutation::UpdateCatalogue {
                name,
                tools,
                prompts,
                protocol_version,
            } => {
                let mut server = self.server(name)?;
                server.tools = tools.clone();
                server.prompts = prompts.clone();
                server.protocol_version = protocol_version.clone();
                self.put_server(&server)?;
                Ok(Change::ServerUpserted(server))
            }
            Mutation::DeleteServer { name } => {
                if self.servers.remove(name.as_bytes())?.is_none() {
                    return abort(StoreError::NotFound {
                        kind: "server",
                        name: name.clone(),
                    });
                }
                Ok(Change::ServerDeleted { name: name.clone() })
            }
        }
    }

    fn client(&self, name: &str) -> TxResult<ClientRecord> {
        match self.clients.get(name.as_bytes())? {
            Some(raw) => client_codec::decode(&raw).map_err(ConflictableTransactionError::Abort),
            None => abort(StoreError::NotFound {
                kind: "MCP client",
                name: name.to_owned(),
            }),
        }
    }

    fn server(&self, name: &str) -> TxResult<ServerRecord> {
        match self.servers.get(name.as_bytes())? {
            Some(raw) => server_codec::decode(&raw, &Keys::current(self.secrets))
                .map_err(ConflictableTransactionError::Abort),
            None => abort(StoreError::NotFound {
                kind: "server",
                name: name.to_owned(),
            }),
        }
    }

    fn put_server(&self, record: &ServerRecord) -> TxResult<()> {
        let stored = server_codec::encode(record, self.secrets)
            .map_err(ConflictableTransactionError::Abort)?;
        self.servers.insert(record.spec.name.as_bytes(), stored)?;
        Ok(())
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        tree: &TransactionalTree,
        kind: &'static str,
        name: &str,
    ) -> TxResult<T> {
        match tree.get(name.as_bytes())? {
            Some(raw) => decode(&raw),
            None => abort(StoreError::NotFound {
                kind,
                name: name.to_owned(),
            }),
        }
    }

    fn put<T: serde::Serialize>(
        &self,
        tree: &TransactionalTree,
        name: &str,
        value: &T,
    ) -> TxResult<()> {
        tree.insert(name.as_bytes(), encode(value)?)?;
        Ok(())
    }

    fn create_user(
        &self,
        name: &str,
        role: Role,
        token: TokenHash,
        allowed: &[String],
    ) -> TxResult<Change> {
        if self.users.get(name.as_bytes())?.is_some() {
            return abort(StoreError::AlreadyExists {
                kind: "user",
                name: name.to_owned(),
            });
        }
        check_user_scope(name, role, allowed)?;
        self.claim_token(token, &Principal::User(name.to_owned()))?;
        if role == Role::Admin {
            let mut admins = self.admins()?;
            admins.push(name.to_owned());
            self.set_admins(&admins)?;
        }
        let user = UserRecord {
            name: name.to_owned(),
            role,
            tokens: vec![StoredToken::permanent(token)],
            allowed: allowed.to_vec(),
        };
        self.put(self.users, name, &user)?;
        Ok(Change::UserUpserted {
            name: user.name,
            role,
        })
    }

    /// Indexes `token` for `owner`; a token may belong to one principal only.
    fn claim_token(&self, token: TokenHash, owner: &Principal) -> TxResult<()> {
        if let Some(raw) = self.tokens.get(token.0)? {
            let current: Principal = decode(&raw)?;
            if &current != owner {
                return abort(StoreError::TokenInUse);
            }
        }
        self.tokens.insert(&token.0, encode(owner)?)?;
        Ok(())
    }

    fn drop_tokens(&self, tokens: &[StoredToken]) -> TxResult<()> {
        for t in tokens {
            self.tokens.remove(&t.hash.0)?;
        }
        Ok(())
    }

    /// Removes expired tokens (and their index entries).
    fn prune(&self, tokens: &[StoredToken]) -> TxResult<Vec<StoredToken>> {
        let (live, dead): (Vec<_>, Vec<_>) =
            tokens.iter().cloned().partition(|t| t.is_live(self.now_ms));
        self.drop_tokens(&dead)?;
        Ok(live)
    }

    /// New token `token`; current tokens expire after `grace_ms` (now when 0).
    fn rotate(
        &self,
        owner: &Principal,
        tokens: &[StoredToken],
        token: TokenHash,
        grace_ms: u64,
    ) -> TxResult<Vec<StoredToken>> {
        self.claim_token(token, owner)?;
        let mut kept = Vec::with_capacity(tokens.len() + 1);
        let mut revoked = Vec::new();
        for t in self.prune(tokens)? {
            if t.hash == token {
                continue; // re-set to the same value: it becomes the permanent token below
            }
            if grace_ms == 0 {
                revoked.push(t);
            } else {
                let until = self.now_ms.saturating_add(grace_ms);
                let expires_at_ms = Some(t.expires_at_ms.map_or(until, |e| e.min(until)));
                kept.push(StoredToken {
                    hash: t.hash,
                    expires_at_ms,
                });
            }
        }
        self.drop_tokens(&revoked)?;
        kept.push(StoredToken::permanent(token));
        Ok(kept)
    }

    /// Admin names, kept in `meta` because a transaction cannot scan the users tree.
    fn admins(&self) -> TxResult<Vec<String>> {
        match self.meta.get(META_ADMINS)? {
            Some(raw) => decode(&raw),
            None => Ok(Vec::new()),
        }
    }

    fn set_admins(&self, admins: &[String]) -> TxResult<()> {
        self.meta.insert(META_ADMINS, encode(&admins)?)?;
        Ok(())
    }
}
