//! Identity records → `Sync` wire messages (and access conditions both ways, which the
//! Admin API shares).

use crate::store::{ProviderRecord, Revocation, RuleCondition, RuleRecord};
use canopy_proto::v1 as pb;

pub fn provider(p: &ProviderRecord) -> pb::IdentityProviderState {
    pb::IdentityProviderState {
        name: p.spec.name.clone(),
        issuer: p.spec.issuer.clone(),
        audiences: p.spec.audiences.clone(),
        algorithms: p.spec.algorithms.clone(),
        leeway_ms: p.spec.leeway_ms,
        subject_claim: p.spec.subject_claim.clone(),
        groups_claim: p.spec.groups_claim.clone(),
        required_scopes: p.spec.required_scopes.clone(),
        jwks_json: p.jwks_json.clone(),
        keys_revision: p.keys_revision,
    }
}

pub fn rule(r: &RuleRecord) -> pb::AccessRuleState {
    pb::AccessRuleState {
        name: r.name.clone(),
        idp: r.idp.clone(),
        matches: r.conditions.iter().map(condition).collect(),
        allowed: r.allowed.clone(),
    }
}

pub fn revocation(r: &Revocation) -> pb::RevokedSubject {
    pb::RevokedSubject {
        idp: r.idp.clone(),
        subject: r.subject.clone(),
        revoked_at_ms: r.revoked_at_ms,
    }
}

pub fn condition(c: &RuleCondition) -> pb::AccessMatch {
    use pb::access_match::Kind;
    let kind = match c {
        RuleCondition::Subject(v) => Kind::Subject(v.clone()),
        RuleCondition::Email(v) => Kind::Email(v.clone()),
        RuleCondition::EmailDomain(v) => Kind::EmailDomain(v.clone()),
        RuleCondition::Group(v) => Kind::Group(v.clone()),
    };
    pb::AccessMatch { kind: Some(kind) }
}

/// `None` for a condition without a kind (sent by a newer or broken client).
pub fn condition_from_pb(m: &pb::AccessMatch) -> Option<RuleCondition> {
    use pb::access_match::Kind;
    Some(match m.kind.as_ref()? {
        Kind::Subject(v) => RuleCondition::Subject(v.clone()),
        Kind::Email(v) => RuleCondition::Email(v.clone()),
        Kind::EmailDomain(v) => RuleCondition::EmailDomain(v.clone()),
        Kind::Group(v) => RuleCondition::Group(v.clone()),
    })
}
