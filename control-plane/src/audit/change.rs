//! What a change event says about the object a command touched: its stored state as JSON,
//! with every secret replaced by `"redacted"`. This is the one place that decides what of a
//! record may appear in the trail.

use crate::store::{ClientRecord, ServerRecord, Store, StoredToken, UserRecord};
use serde_json::{json, Map, Value};

/// The word every secret is replaced by.
pub const REDACTED: &str = "redacted";

/// The object an Admin command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Client(String),
    User(String),
    Server(String),
    IdentityProvider(String),
    AccessRule(String),
    Revocation { idp: String, subject: String },
}

impl Object {
    /// The `object_kind` of the event.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Client(_) => "mcp-client",
            Object::User(_) => "user",
            Object::Server(_) => "server",
            Object::IdentityProvider(_) => "identity-provider",
            Object::AccessRule(_) => "access-rule",
            Object::Revocation { .. } => "revocation",
        }
    }

    /// The `object_name` of the event (`idp/subject` for a revocation).
    pub fn name(&self) -> String {
        match self {
            Object::Client(n)
            | Object::User(n)
            | Object::Server(n)
            | Object::IdentityProvider(n)
            | Object::AccessRule(n) => n.clone(),
            Object::Revocation { idp, subject } => format!("{idp}/{subject}"),
        }
    }

    /// The object's current state as redacted JSON text; "" when it does not exist (or
    /// cannot be read: the event then says less, the command is not held up).
    pub fn snapshot(&self, store: &Store) -> String {
        let value = match self.read(store) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, kind = self.kind(), "reading an object for its audit event failed");
                None
            }
        };
        value.map(|v| v.to_string()).unwrap_or_default()
    }

    fn read(&self, store: &Store) -> Result<Option<Value>, crate::store::StoreError> {
        Ok(match self {
            Object::Client(n) => store.client(n)?.map(|c| client(&c)),
            Object::User(n) => store.user(n)?.map(|u| user(&u)),
            Object::Server(n) => store.server(n)?.map(|s| server(&s)),
            Object::IdentityProvider(n) => store
                .identity_provider(n)?
                .and_then(|p| serde_json::to_value(&p.spec).ok()),
            Object::AccessRule(n) => store
                .access_rule(n)?
                .and_then(|r| serde_json::to_value(&r).ok()),
            Object::Revocation { idp, subject } => store
                .revocation(idp, subject)?
                .and_then(|r| serde_json::to_value(&r).ok()),
        })
    }
}

/// Tokens: only that they exist and when they expire.
fn tokens(tokens: &[StoredToken]) -> Value {
    tokens
        .iter()
        .map(|t| json!({ "hash": REDACTED, "expires_at_ms": t.expires_at_ms }))
        .collect()
}

fn client(c: &ClientRecord) -> Value {
    json!({
        "name": c.name,
        "description": c.description,
        "allowed_servers": c.allowed,
        "tokens": tokens(&c.tokens),
    })
}

fn user(u: &UserRecord) -> Value {
    json!({
        "name": u.name,
        "role": u.role.as_str(),
        "allowed_servers": u.allowed,
        "tokens": tokens(&u.tokens),
    })
}

/// Header and environment values may all be credentials: only their names are shown.
fn redacted_values(map: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        map.keys()
            .map(|k| (k.clone(), Value::from(REDACTED)))
            .collect::<Map<_, _>>(),
    )
}

fn names(defs: &[Box<serde_json::value::RawValue>]) -> Vec<String> {
    defs.iter()
        .filter_map(|d| {
            serde_json::from_str::<Value>(d.get())
                .ok()?
                .get("name")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn server(s: &ServerRecord) -> Value {
    let spec = &s.spec;
    json!({
        "name": spec.name,
        "transport": spec.transport.as_str(),
        "description": spec.description,
        "url": crate::admin::redact_url(&spec.url),
        "bearer_token": spec.bearer_token.as_ref().map(|_| REDACTED),
        "headers": redacted_values(&spec.headers),
        "command": spec.command,
        "args": spec.args,
        "env": redacted_values(&spec.env),
        "timeout_ms": spec.timeout_ms,
        "audit_payload": spec.audit_payload.as_str(),
        "tools": names(&s.tools),
        "prompts": names(&s.prompts),
        "protocol_version": s.protocol_version,
    })
}
