//! `revoke subject`, `list revocations`, `unrevoke`.

use super::super::auth::Need;
use super::super::convert::{mutation_result, wait_duration};
use super::super::{AdminError, AdminService};
use super::required;
use crate::store::{IdentityMutation, Mutation};
use crate::sync::convert::identity::revocation;
use canopy_proto::v1 as pb;
use std::time::Duration;
use tonic::Request;

impl AdminService {
    pub(in crate::admin) async fn revoke(
        &self,
        req: Request<pb::RevokeSubjectRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let idp = required("--idp", &req.idp)?;
        let subject = required("the subject", &req.subject)?;
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::Revoke {
                idp: idp.clone(),
                subject: subject.clone(),
            }))
            .await?;
        tracing::info!(revision, idp = %idp, subject = %subject, "subject revoked");
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }

    pub(in crate::admin) fn revocation_list(
        &self,
        req: Request<pb::ListRevocationsRequest>,
    ) -> Result<pb::ListRevocationsResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let idp = req.into_inner().idp;
        let revocations = self
            .store
            .revocations()?
            .iter()
            .filter(|r| idp.is_empty() || r.idp == idp)
            .map(revocation)
            .collect();
        Ok(pb::ListRevocationsResponse { revocations })
    }

    pub(in crate::admin) async fn unrevoke(
        &self,
        req: Request<pb::UnrevokeSubjectRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::Unrevoke {
                idp: req.idp.clone(),
                subject: req.subject.clone(),
            }))
            .await?;
        tracing::info!(revision, idp = %req.idp, subject = %req.subject, "revocation lifted");
        let report = self.fleet.wait_for(revision, Duration::ZERO).await;
        Ok(mutation_result(report))
    }
}
