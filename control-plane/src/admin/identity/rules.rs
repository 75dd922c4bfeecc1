//! `create/list/update/delete access-rule` and `explain access`.

use super::super::auth::Need;
use super::super::convert::allow_list;
use super::super::convert::{mutation_result, wait_duration};
use super::super::{AdminError, AdminService};
use super::required;
use crate::store::{IdentityMutation, Mutation, RuleCondition, RuleRecord};
use crate::sync::convert::identity::{condition_from_pb, rule as rule_to_pb};
use canopy_core::access::{evaluate, AccessRule, ClaimView, Condition};
use canopy_core::name::validate_principal_name;
use canopy_core::AllowList;
use canopy_proto::v1 as pb;
use std::time::Duration;
use tonic::Request;

/// Validated conditions: at least one, none empty.
fn conditions(matches: &[pb::AccessMatch]) -> Result<Vec<RuleCondition>, AdminError> {
    if matches.is_empty() {
        return Err(AdminError::InvalidArgument(
            "a rule needs at least one of --subject, --email, --email-domain, --group".into(),
        ));
    }
    matches
        .iter()
        .map(|m| {
            let c = condition_from_pb(m).ok_or_else(|| {
                AdminError::InvalidArgument("a match condition has no kind".into())
            })?;
            Ok(match c {
                RuleCondition::Subject(v) => RuleCondition::Subject(required("--subject", &v)?),
                RuleCondition::Email(v) => RuleCondition::Email(required("--email", &v)?),
                RuleCondition::EmailDomain(v) => RuleCondition::EmailDomain(required(
                    "--email-domain",
                    v.trim().trim_start_matches('@'),
                )?),
                RuleCondition::Group(v) => RuleCondition::Group(required("--group", &v)?),
            })
        })
        .collect()
}

/// A stored rule as the shared matcher reads it.
pub(in crate::admin) fn matcher(r: &RuleRecord) -> Result<AccessRule, AdminError> {
    Ok(AccessRule {
        name: r.name.clone(),
        conditions: r.conditions.iter().map(Condition::from).collect(),
        allow: AllowList::from_entries(&r.allowed)
            .map_err(|e| AdminError::InvalidArgument(e.to_string()))?,
    })
}

fn rule_pb(r: &RuleRecord) -> pb::AccessRule {
    let s = rule_to_pb(r);
    pb::AccessRule {
        name: s.name,
        idp: s.idp,
        matches: s.matches,
        allowed: s.allowed,
    }
}

impl AdminService {
    pub(in crate::admin) async fn create_rule(
        &self,
        req: Request<pb::CreateAccessRuleRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let rule = req
            .into_inner()
            .rule
            .ok_or_else(|| AdminError::InvalidArgument("the rule is missing".into()))?;
        validate_principal_name("access rule", &rule.name)
            .map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
        let record = RuleRecord {
            name: rule.name,
            idp: required("--idp", &rule.idp)?,
            conditions: conditions(&rule.matches)?,
            allowed: allow_list(&rule.allowed)?,
        };
        let name = record.name.clone();
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::CreateRule(record)))
            .await?;
        tracing::info!(revision, rule = %name, "access rule created");
        // Granting needs no wait; the report says how many data planes hold it already.
        let report = self.fleet.wait_for(revision, Duration::ZERO).await;
        Ok(mutation_result(report))
    }

    pub(in crate::admin) fn list_rules(
        &self,
        req: Request<pb::ListAccessRulesRequest>,
    ) -> Result<pb::ListAccessRulesResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let idp = req.into_inner().idp;
        let rules = self
            .store
            .access_rules()?
            .iter()
            .filter(|r| idp.is_empty() || r.idp == idp)
            .map(rule_pb)
            .collect();
        Ok(pb::ListAccessRulesResponse { rules })
    }

    pub(in crate::admin) async fn update_rule(
        &self,
        req: Request<pb::UpdateAccessRuleRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        if req.matches.is_none() && req.allowed.is_none() {
            return Err(AdminError::InvalidArgument(
                "nothing to update: give new conditions or a new allow list".into(),
            ));
        }
        let conditions = req
            .matches
            .as_ref()
            .map(|m| conditions(&m.matches))
            .transpose()?;
        let allowed = req
            .allowed
            .as_ref()
            .map(|a| allow_list(&a.entries))
            .transpose()?;
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::UpdateRule {
                name: req.name.clone(),
                conditions,
                allowed,
            }))
            .await?;
        tracing::info!(revision, rule = %req.name, "access rule updated");
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }

    pub(in crate::admin) async fn delete_rule(
        &self,
        req: Request<pb::DeleteAccessRuleRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::DeleteRule {
                name: req.name.clone(),
            }))
            .await?;
        tracing::info!(revision, rule = %req.name, "access rule deleted");
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }

    pub(in crate::admin) fn explain(
        &self,
        req: Request<pb::ExplainAccessRequest>,
    ) -> Result<pb::ExplainAccessResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let provider =
            self.store
                .identity_provider(&req.idp)?
                .ok_or_else(|| AdminError::NotFound {
                    kind: "identity provider",
                    name: req.idp.clone(),
                })?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&req.claims_json).map_err(|e| {
                AdminError::InvalidArgument(format!("--claims is not a JSON object: {e}"))
            })?;
        let view = ClaimView::from_claims(
            &claims,
            &provider.spec.subject_claim,
            &provider.spec.groups_claim,
        );
        let rules = self
            .store
            .access_rules()?
            .iter()
            .filter(|r| r.idp == req.idp)
            .map(matcher)
            .collect::<Result<Vec<_>, _>>()?;
        let access = evaluate(&rules, &view);
        let subject = view.subject.unwrap_or_default();
        let revoked = !subject.is_empty() && self.store.is_revoked(&req.idp, &subject)?;
        Ok(pb::ExplainAccessResponse {
            subject,
            revoked,
            matched_rules: access.matched,
            allowed: access.allow.to_strings(),
        })
    }
}
