//! The records the store keeps and the change records it streams.
//!
//! Records are serialized with serde_json, except MCP clients, which are stored in their sync
//! wire form (see `client_codec`). Tokens appear only as keyed hashes.

use super::identity::{ProviderRecord, Revocation, RuleRecord};
use canopy_core::TokenHash;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Development (no auth) or enterprise (tokens, roles); remembered by the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Development,
    Enterprise,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Development => "development",
            Mode::Enterprise => "enterprise",
        }
    }

    pub(crate) fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"development" => Some(Mode::Development),
            b"enterprise" => Some(Mode::Enterprise),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// One valid token of a principal. Several exist while an old token is in its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub hash: TokenHash,
    /// Unix milliseconds after which the token no longer works; `None` = never.
    pub expires_at_ms: Option<u64>,
}

impl StoredToken {
    pub fn permanent(hash: TokenHash) -> Self {
        Self {
            hash,
            expires_at_ms: None,
        }
    }

    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub tokens: Vec<StoredToken>,
    /// Canonical allow-list entries for what the user may list and invoke. Records written
    /// before users had allow lists lack the field and keep their full access (`*`).
    #[serde(default = "allow_everything")]
    pub allowed: Vec<String>,
}

fn allow_everything() -> Vec<String> {
    vec!["*".to_owned()]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub name: String,
    pub description: String,
    /// Canonical allow-list entries (`*`, `server`, `server__tool`), sorted, de-duplicated.
    pub allowed: Vec<String>,
    pub tokens: Vec<StoredToken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    StreamableHttp,
    Sse,
    Stdio,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        }
    }
}

/// A registered upstream as the admin described it. Holds the upstream's own secrets,
/// which the control plane needs to call it; `Debug` redacts them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub transport: Transport,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Deadline of every call to the upstream; 0 = the default (60 s).
    #[serde(default)]
    pub timeout_ms: u64,
    /// What data planes record of this server's tool arguments and results in the audit
    /// trail (records of earlier versions: off).
    #[serde(default)]
    pub audit_payload: AuditPayload,
}

/// The per-server audit payload setting (`canopy register server --audit-payload`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditPayload {
    /// Nothing of arguments and results.
    #[default]
    Off,
    /// Their BLAKE3 hash.
    Hash,
    /// The JSON itself (bounded by the data plane).
    Full,
}

impl AuditPayload {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditPayload::Off => "off",
            AuditPayload::Hash => "hash",
            AuditPayload::Full => "full",
        }
    }
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("audit_payload", &self.audit_payload)
            .finish_non_exhaustive()
    }
}

/// A registered server and the catalogue discovered from it, kept as the upstream's raw
/// JSON so unknown fields survive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerRecord {
    pub spec: ServerSpec,
    pub tools: Vec<Box<RawValue>>,
    pub prompts: Vec<Box<RawValue>>,
    pub protocol_version: String,
}

/// Who a token belongs to (the value of the token index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Principal {
    User(String),
    Client(String),
}

/// One change, carrying the entity's full value after the change so that replaying
/// changes over a newer state converges to the same result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    ClientUpserted(ClientRecord),
    ClientDeleted { name: String },
    ServerUpserted(ServerRecord),
    ServerDeleted { name: String },
    UserUpserted { name: String, role: Role },
    UserDeleted { name: String },
    ProviderUpserted(ProviderRecord),
    ProviderDeleted { name: String },
    RuleUpserted(RuleRecord),
    RuleDeleted { name: String },
    SubjectRevoked(Revocation),
    SubjectUnrevoked(Revocation),
}

/// A change and the global revision it got.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub revision: u64,
    pub change: Change,
}
