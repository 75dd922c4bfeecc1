//! Proto → data-plane types. Generated types stop here (STYLE §2).

use canopy_core::{AllowEntry, AllowList, TokenHash};
use canopy_mcp::upstream::{TransportKind, UpstreamConfig, DEFAULT_TIMEOUT};
use canopy_proto::v1 as pb;
use serde_json::value::RawValue;
use std::time::Duration;

use super::tokens::{TokenSlot, Tokens};
use super::ApplyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Enterprise,
}

impl Mode {
    pub(crate) fn from_proto(m: i32) -> Result<Self, ApplyError> {
        match pb::Mode::try_from(m) {
            Ok(pb::Mode::Development) => Ok(Mode::Development),
            Ok(pb::Mode::Enterprise) => Ok(Mode::Enterprise),
            _ => Err(ApplyError::BadMode(m)),
        }
    }

    pub(crate) fn to_proto(self) -> pb::Mode {
        match self {
            Mode::Development => pb::Mode::Development,
            Mode::Enterprise => pb::Mode::Enterprise,
        }
    }
}

pub(crate) fn token_key(bytes: &[u8], mode: Mode) -> Result<[u8; 32], ApplyError> {
    match <[u8; 32]>::try_from(bytes) {
        Ok(k) => Ok(k),
        // Development mode never hashes a token, so it may come without a key.
        Err(_) if mode == Mode::Development && bytes.is_empty() => Ok([0; 32]),
        Err(_) => Err(ApplyError::BadKey(bytes.len())),
    }
}

/// A client as the control plane sent it, validated. Borrows the message: the allow
/// list is parsed only when its scope is not interned yet (see `ScopeInterner`).
pub(crate) struct ClientDef<'a> {
    pub name: &'a str,
    pub tokens: Tokens,
    pub allowed: &'a [String],
}

fn slot(c: &pb::ClientState, t: &pb::TokenHash) -> Result<TokenSlot, ApplyError> {
    TokenHash::from_slice(&t.hash)
        .map(|hash| TokenSlot {
            hash,
            expires_at_ms: t.expires_at_ms,
        })
        .ok_or_else(|| ApplyError::BadTokenHash {
            client: c.name.clone(),
        })
}

impl<'a> TryFrom<&'a pb::ClientState> for ClientDef<'a> {
    type Error = ApplyError;

    fn try_from(c: &'a pb::ClientState) -> Result<Self, ApplyError> {
        let tokens = match c.tokens.as_slice() {
            [one] => Tokens::One(slot(c, one)?),
            many => Tokens::from_vec(
                many.iter()
                    .map(|t| slot(c, t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(ClientDef {
            name: &c.name,
            tokens,
            allowed: &c.allowed,
        })
    }
}

/// The allow list of `client` from its wire entries. An entry this build cannot read is
/// dropped rather than failing the whole sync: dropping it can only narrow the client's
/// access (fail closed).
pub(crate) fn allow_list(client: &str, allowed: &[String]) -> AllowList {
    let entries = allowed.iter().filter(|e| match AllowEntry::parse(e) {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(client = %client, entry = %e, error = %err, "ignoring unreadable allow-list entry");
            false
        }
    });
    AllowList::from_entries(entries).unwrap_or_default()
}

/// An upstream as the control plane sent it: how to reach it and its catalogue.
pub(crate) struct ServerDef {
    pub config: UpstreamConfig,
    pub tools: Vec<Box<RawValue>>,
    pub prompts: Vec<Box<RawValue>>,
    pub protocol_version: String,
    /// Kept as received for the cache file.
    pub source: pb::UpstreamState,
}

impl TryFrom<pb::UpstreamState> for ServerDef {
    type Error = ApplyError;

    fn try_from(u: pb::UpstreamState) -> Result<Self, ApplyError> {
        let spec = u.spec.clone().ok_or_else(|| ApplyError::BadServer {
            name: String::new(),
            reason: "missing spec".into(),
        })?;
        let bad = |reason: String| ApplyError::BadServer {
            name: spec.name.clone(),
            reason,
        };
        if canopy_core::name::validate_server_name(&spec.name).is_err() {
            return Err(bad("invalid server name".into()));
        }
        let transport = match pb::Transport::try_from(spec.transport) {
            Ok(pb::Transport::StreamableHttp) => TransportKind::StreamableHttp,
            Ok(pb::Transport::Sse) => TransportKind::Sse,
            Ok(pb::Transport::Stdio) => TransportKind::Stdio,
            _ if !spec.command.is_empty() => TransportKind::Stdio,
            _ if !spec.url.is_empty() => TransportKind::StreamableHttp,
            _ => return Err(bad("no transport, url or command".into())),
        };
        let raw = |list: &[String], what: &str| {
            list.iter()
                .map(|s| {
                    RawValue::from_string(s.clone())
                        .map_err(|e| bad(format!("{what} definition is not JSON: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let tools = raw(&u.tools_json, "tool")?;
        let prompts = raw(&u.prompts_json, "prompt")?;
        let config = UpstreamConfig {
            name: spec.name.clone(),
            transport,
            url: spec.url.clone(),
            bearer_token: (!spec.bearer_token.is_empty()).then(|| spec.bearer_token.clone()),
            headers: spec.headers.clone().into_iter().collect(),
            command: spec.command.clone(),
            args: spec.args.clone(),
            env: spec.env.clone().into_iter().collect(),
            timeout: if spec.timeout_ms == 0 {
                DEFAULT_TIMEOUT
            } else {
                Duration::from_millis(spec.timeout_ms)
            },
        };
        Ok(ServerDef {
            config,
            tools,
            prompts,
            protocol_version: u.protocol_version.clone(),
            source: u,
        })
    }
}
