//! `create|list|update|delete access-rule` and `explain access`: who may use what, from
//! an identity provider's claims.

use canopy_core::AllowList;
use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{
    CreateRuleArgs, DeleteArgs, ExplainAccessArgs, IdpFilter, RuleConditions, UpdateRuleArgs,
};
use crate::commands::{read_arg_source, send_mutation, wait_options, Ctx, Outcome};
use crate::error::CliError;
use crate::output::table;

fn matches(c: RuleConditions) -> Vec<pb::AccessMatch> {
    use pb::access_match::Kind;
    let of = |values: Vec<String>, kind: fn(String) -> Kind| {
        values.into_iter().map(move |v| pb::AccessMatch {
            kind: Some(kind(v)),
        })
    };
    of(c.subjects, Kind::Subject)
        .chain(of(c.emails, Kind::Email))
        .chain(of(c.email_domains, Kind::EmailDomain))
        .chain(of(c.groups, Kind::Group))
        .collect()
}

/// `subject=u1`, `group=eng` …: how listings show a condition.
fn condition_text(m: &pb::AccessMatch) -> String {
    use pb::access_match::Kind;
    match &m.kind {
        Some(Kind::Subject(v)) => format!("subject={v}"),
        Some(Kind::Email(v)) => format!("email={v}"),
        Some(Kind::EmailDomain(v)) => format!("email-domain={v}"),
        Some(Kind::Group(v)) => format!("group={v}"),
        None => "?".into(),
    }
}

/// `list access-rules` JSON: one object per rule.
#[derive(Debug, Serialize)]
pub struct RuleJson {
    pub name: String,
    pub idp: String,
    /// `kind=value` (kinds: subject, email, email-domain, group).
    pub conditions: Vec<String>,
    pub allowed: Vec<String>,
}

pub async fn create(ctx: &Ctx, args: CreateRuleArgs) -> Result<(), CliError> {
    canopy_core::name::validate_principal_name("access rule", &args.name)?;
    if args.conditions.is_empty() {
        return Err(CliError::usage(
            "give at least one of --subject, --email, --email-domain, --group",
        ));
    }
    let allowed = AllowList::parse_csv(&args.allow)?;
    let rule = pb::AccessRule {
        name: args.name.clone(),
        idp: args.idp,
        matches: matches(args.conditions),
        allowed: allowed.to_strings(),
    };
    let mut a = ctx.admin()?;
    let result =
        a.at.call(
            a.rpc
                .create_access_rule(pb::CreateAccessRuleRequest { rule: Some(rule) }),
        )
        .await?;
    let report = crate::output::MutationReport::from(&result);
    ctx.emit(&report, || {
        format!(
            "Access rule '{}' created (revision {}); it allows: {}.",
            args.name,
            result.revision,
            if allowed.is_empty() {
                "nothing".to_owned()
            } else {
                allowed.to_strings().join(", ")
            }
        )
    })
}

pub async fn list(ctx: &Ctx, filter: IdpFilter) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(a.rpc.list_access_rules(pb::ListAccessRulesRequest {
            idp: filter.idp.unwrap_or_default(),
        }))
        .await?;
    let rules: Vec<RuleJson> = resp
        .rules
        .into_iter()
        .map(|r| RuleJson {
            conditions: r.matches.iter().map(condition_text).collect(),
            name: r.name,
            idp: r.idp,
            allowed: r.allowed,
        })
        .collect();
    ctx.emit(&rules, || {
        let rows: Vec<Vec<String>> = rules
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.idp.clone(),
                    r.conditions.join(" "),
                    if r.allowed.is_empty() {
                        "(nothing)".into()
                    } else {
                        r.allowed.join(", ")
                    },
                ]
            })
            .collect();
        table(
            &["NAME", "IDP", "CONDITIONS", "ALLOWED"],
            &rows,
            "No access rules. Add one with `canopy create access-rule NAME --idp IDP --group G --allow LIST`.\n",
        )
    })
}

pub async fn update(ctx: &Ctx, args: UpdateRuleArgs) -> Result<(), CliError> {
    let conditions = (!args.conditions.is_empty()).then(|| matches(args.conditions));
    if conditions.is_none() && args.allow.is_none() {
        return Err(CliError::usage(
            "nothing to update: give --allow or conditions (--subject, --email, --email-domain, --group)",
        ));
    }
    let allowed = args
        .allow
        .as_deref()
        .map(AllowList::parse_csv)
        .transpose()?;
    let req = pb::UpdateAccessRuleRequest {
        name: args.name.clone(),
        matches: conditions.map(|matches| pb::AccessMatchList { matches }),
        allowed: allowed.map(|a| pb::AllowList {
            entries: a.to_strings(),
        }),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let headline = Outcome::new(
        format!("Access rule '{}' updated.", args.name),
        format!("The update of access rule '{}'", args.name),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.update_access_rule(req),
        &headline,
    )
    .await
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let req = pb::DeleteAccessRuleRequest {
        name: args.name.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let headline = Outcome::new(
        format!("Access rule '{}' deleted.", args.name),
        format!("The deletion of access rule '{}'", args.name),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.delete_access_rule(req),
        &headline,
    )
    .await
}

/// `explain access` JSON.
#[derive(Debug, Serialize)]
pub struct ExplainJson {
    pub subject: String,
    pub revoked: bool,
    pub matched_rules: Vec<String>,
    pub allowed: Vec<String>,
}

pub async fn explain(ctx: &Ctx, args: ExplainAccessArgs) -> Result<(), CliError> {
    let claims_json = read_arg_source(&args.claims)?;
    if !serde_json::from_str::<serde_json::Value>(&claims_json).is_ok_and(|v| v.is_object()) {
        return Err(CliError::usage("--claims must be a JSON object"));
    }
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(a.rpc.explain_access(pb::ExplainAccessRequest {
            idp: args.idp.clone(),
            claims_json,
        }))
        .await?;
    let out = ExplainJson {
        subject: resp.subject,
        revoked: resp.revoked,
        matched_rules: resp.matched_rules,
        allowed: resp.allowed,
    };
    ctx.emit(&out, || explain_text(&args.idp, &out))
}

fn explain_text(idp: &str, e: &ExplainJson) -> String {
    let subject = if e.subject.is_empty() {
        "(no subject claim)".to_owned()
    } else {
        e.subject.clone()
    };
    let mut s = format!("Subject {subject} of identity provider '{idp}'");
    if e.revoked {
        s.push_str(" is REVOKED: every token is refused, whatever the rules say.\n");
    } else {
        s.push_str(".\n");
    }
    if e.matched_rules.is_empty() {
        s.push_str("No access rule matches: this person sees nothing.");
    } else {
        s.push_str(&format!("Matching rules: {}\n", e.matched_rules.join(", ")));
        s.push_str(&format!("Allowed: {}", e.allowed.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_in_order_of_kind() {
        let m = matches(RuleConditions {
            groups: vec!["eng".into()],
            subjects: vec!["u1".into()],
            ..Default::default()
        });
        let text: Vec<String> = m.iter().map(condition_text).collect();
        assert_eq!(text, vec!["subject=u1", "group=eng"]);
    }

    #[test]
    fn explain_says_when_nothing_matches() {
        let e = ExplainJson {
            subject: "u1".into(),
            revoked: false,
            matched_rules: vec![],
            allowed: vec![],
        };
        assert!(explain_text("corp", &e).contains("sees nothing"));
    }
}
