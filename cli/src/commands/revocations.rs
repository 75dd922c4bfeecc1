//! `revoke subject`, `list revocations`, `unrevoke`: refusing a person's identity-provider
//! tokens before they expire.

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{IdpFilter, RevokeSubjectArgs, UnrevokeArgs};
use crate::commands::{send_mutation, wait_options, Ctx, Outcome};
use crate::error::CliError;
use crate::output::{now_ms, relative_time, table, MutationReport};

/// `list revocations` JSON: one object per revoked subject.
#[derive(Debug, Serialize)]
pub struct RevocationJson {
    pub idp: String,
    pub subject: String,
    /// Unix milliseconds.
    pub revoked_at_ms: u64,
}

pub async fn revoke(ctx: &Ctx, args: RevokeSubjectArgs) -> Result<(), CliError> {
    let req = pb::RevokeSubjectRequest {
        idp: args.idp.clone(),
        subject: args.subject.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let headline = Outcome::new(
        format!(
            "Subject '{}' of identity provider '{}' revoked; their tokens no longer work.",
            args.subject, args.idp
        ),
        format!(
            "The revocation of subject '{}' of identity provider '{}'",
            args.subject, args.idp
        ),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.revoke_subject(req),
        &headline,
    )
    .await
}

pub async fn list(ctx: &Ctx, filter: IdpFilter) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(a.rpc.list_revocations(pb::ListRevocationsRequest {
            idp: filter.idp.unwrap_or_default(),
        }))
        .await?;
    let list: Vec<RevocationJson> = resp
        .revocations
        .into_iter()
        .map(|r| RevocationJson {
            idp: r.idp,
            subject: r.subject,
            revoked_at_ms: r.revoked_at_ms,
        })
        .collect();
    let now = now_ms();
    ctx.emit(&list, || {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|r| {
                vec![
                    r.idp.clone(),
                    r.subject.clone(),
                    relative_time(now, r.revoked_at_ms),
                ]
            })
            .collect();
        table(
            &["IDP", "SUBJECT", "REVOKED"],
            &rows,
            "No revoked subjects.\n",
        )
    })
}

pub async fn unrevoke(ctx: &Ctx, args: UnrevokeArgs) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let result =
        a.at.call(a.rpc.unrevoke_subject(pb::UnrevokeSubjectRequest {
            idp: args.idp.clone(),
            subject: args.subject.clone(),
        }))
        .await?;
    let report = MutationReport::from(&result);
    ctx.emit(&report, || {
        format!(
            "Revocation of '{}' (identity provider '{}') lifted (revision {}); their unexpired tokens work again.",
            args.subject, args.idp, result.revision
        )
    })
}
