//! Store records → `Sync` wire messages. The only place the stream's prost types are built.

pub mod identity;

use crate::store::{Change, ChangeRecord, ClientRecord, Mode, ServerRecord, ServerSpec, Transport};
use canopy_proto::v1 as pb;

pub fn mode(m: Mode) -> pb::Mode {
    match m {
        Mode::Development => pb::Mode::Development,
        Mode::Enterprise => pb::Mode::Enterprise,
    }
}

fn transport(t: Transport) -> pb::Transport {
    match t {
        Transport::StreamableHttp => pb::Transport::StreamableHttp,
        Transport::Sse => pb::Transport::Sse,
        Transport::Stdio => pb::Transport::Stdio,
    }
}

/// The store owns the client's wire form: it keeps each client record in it.
pub fn client(c: &ClientRecord) -> pb::ClientState {
    crate::store::client_wire_state(c)
}

fn spec(s: &ServerSpec) -> pb::ServerSpec {
    pb::ServerSpec {
        name: s.name.clone(),
        transport: transport(s.transport) as i32,
        description: s.description.clone(),
        url: s.url.clone(),
        bearer_token: s.bearer_token.clone().unwrap_or_default(),
        headers: s.headers.clone().into_iter().collect(),
        command: s.command.clone(),
        args: s.args.clone(),
        env: s.env.clone().into_iter().collect(),
        timeout_ms: s.timeout_ms,
        audit_payload: crate::admin::audit_payload_to_pb(s.audit_payload).into(),
    }
}

pub fn server(s: &ServerRecord) -> pb::UpstreamState {
    pb::UpstreamState {
        spec: Some(spec(&s.spec)),
        tools_json: s.tools.iter().map(|t| t.get().to_owned()).collect(),
        prompts_json: s.prompts.iter().map(|p| p.get().to_owned()).collect(),
        protocol_version: s.protocol_version.clone(),
    }
}

pub fn change(r: &ChangeRecord) -> pb::Change {
    use pb::change::Kind;
    let kind = match &r.change {
        Change::ClientUpserted(c) => Kind::ClientUpsert(client(c)),
        Change::ClientDeleted { name } => Kind::ClientDelete(name.clone()),
        Change::ServerUpserted(s) => Kind::ServerUpsert(server(s)),
        Change::ServerDeleted { name } => Kind::ServerDelete(name.clone()),
        Change::UserUpserted { name, .. } => Kind::Other(pb::Other {
            what: format!("user {name} changed"),
        }),
        Change::UserDeleted { name } => Kind::Other(pb::Other {
            what: format!("user {name} deleted"),
        }),
        Change::ProviderUpserted(p) => Kind::IdentityProviderUpsert(identity::provider(p)),
        Change::ProviderDeleted { name } => Kind::IdentityProviderDelete(name.clone()),
        Change::RuleUpserted(r) => Kind::AccessRuleUpsert(identity::rule(r)),
        Change::RuleDeleted { name } => Kind::AccessRuleDelete(name.clone()),
        Change::SubjectRevoked(r) => Kind::SubjectRevoke(identity::revocation(r)),
        Change::SubjectUnrevoked(r) => Kind::SubjectUnrevoke(identity::revocation(r)),
    };
    pb::Change {
        revision: r.revision,
        kind: Some(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredToken;
    use canopy_core::TokenHash;

    #[test]
    fn client_carries_hashes_and_expiry_only() {
        let c = ClientRecord {
            name: "a".into(),
            description: "d".into(),
            allowed: vec!["gh".into()],
            tokens: vec![
                StoredToken {
                    hash: TokenHash([7; 32]),
                    expires_at_ms: None,
                },
                StoredToken {
                    hash: TokenHash([8; 32]),
                    expires_at_ms: Some(99),
                },
            ],
        };
        let pb = client(&c);
        assert_eq!(pb.tokens.len(), 2);
        assert_eq!(pb.tokens[0].hash, vec![7; 32]);
        assert_eq!(pb.tokens[0].expires_at_ms, 0);
        assert_eq!(pb.tokens[1].expires_at_ms, 99);
        assert_eq!(pb.allowed, vec!["gh".to_string()]);
    }
}
