//! init-server, whoami and user management.

use super::auth::Need;
use super::convert::{allow_list, mutation_result, role_from_pb, role_to_pb, wait_duration};
use super::scope::{caller_scope, shown_allow_list};
use super::{new_token, AdminError, AdminService};
use crate::store::{Mode, Mutation};
use canopy_core::name::validate_principal_name;
use canopy_core::{AllowList, TokenKind};
use canopy_proto::v1 as pb;
use tonic::Request;

/// The first admin's name.
pub(super) const FIRST_ADMIN: &str = "admin";

impl AdminService {
    pub(super) async fn init(
        &self,
        req: Request<pb::InitServerRequest>,
    ) -> Result<pb::InitServerResponse, AdminError> {
        if self.store.mode() != Mode::Enterprise {
            return Err(AdminError::NeedsEnterprise);
        }
        if let Some(expected) = &self.init_token {
            let refused = if req.get_ref().init_token.is_empty() {
                Some(AdminError::InitTokenRequired)
            } else {
                let given = self.store.hasher().hash(&req.get_ref().init_token);
                (!given.ct_eq(expected)).then_some(AdminError::InitTokenMismatch)
            };
            if let Some(e) = refused {
                self.note_refusal(&e);
                return Err(e);
            }
        }
        // Whoever holds the init token (or reaches a control plane started without one).
        self.note_actor(canopy_proto::v1::AuditPrincipal {
            kind: Some(canopy_proto::v1::audit_principal::Kind::Anonymous(true)),
        });
        if self.store.initialized()? {
            return Err(crate::store::StoreError::AlreadyInitialized.into());
        }
        let token = TokenKind::User.generate();
        let hash = self.store.hasher().hash(&token);
        let revision = self
            .store
            .apply(Mutation::InitAdmin {
                name: FIRST_ADMIN.into(),
                token: hash,
            })
            .await?;
        tracing::info!(revision, user = FIRST_ADMIN, "server initialized");
        Ok(pb::InitServerResponse {
            user: FIRST_ADMIN.into(),
            access_token: token,
        })
    }

    pub(super) fn identify(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<pb::UserInfo, AdminError> {
        let caller = self.authorize(req.metadata(), Need::Identity)?;
        let (identity_provider, subject) = caller
            .sso
            .clone()
            .map(|s| (s.idp, s.subject))
            .unwrap_or_default();
        Ok(pb::UserInfo {
            allowed_servers: caller_scope(&caller).to_strings(),
            name: caller.name.unwrap_or_default(),
            role: role_to_pb(caller.role).into(),
            identity_provider,
            subject,
        })
    }

    pub(super) async fn add_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<pb::CreateUserResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        validate_principal_name("user", &req.name)
            .map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
        let role = role_from_pb(req.role)?;
        // No list given: everything, as before users had allow lists.
        let allowed = match &req.allowed_servers {
            Some(list) => allow_list(&list.entries)?,
            None => AllowList::everything().to_strings(),
        };
        let (token, generated) = new_token(TokenKind::User, req.access_token)?;
        let hash = self.store.hasher().hash(&token);
        let revision = self
            .store
            .apply(Mutation::CreateUser {
                name: req.name.clone(),
                role,
                token: hash,
                allowed: allowed.clone(),
            })
            .await?;
        tracing::info!(revision, user = %req.name, role = role.as_str(), allowed = ?allowed, "user created");
        Ok(pb::CreateUserResponse {
            user: Some(pb::UserInfo {
                name: req.name,
                role: role_to_pb(role).into(),
                allowed_servers: allowed,
                ..Default::default()
            }),
            access_token: if generated { token } else { String::new() },
            revision,
        })
    }

    pub(super) fn user_list(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<pb::ListUsersResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let users = self
            .store
            .users()?
            .into_iter()
            .map(|u| pb::UserInfo {
                allowed_servers: shown_allow_list(u.role, &u.allowed),
                name: u.name,
                role: role_to_pb(u.role).into(),
                ..Default::default()
            })
            .collect();
        Ok(pb::ListUsersResponse { users })
    }

    /// A new token (custom or generated), a new allow list and/or a new role. A token change is
    /// acknowledged like a revocation; a role or allow-list change alone is a plain write, since
    /// data planes hold neither.
    pub(super) async fn change_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let role = match req.role {
            0 => None,
            raw => Some(role_from_pb(raw)?),
        };
        let allowed = req
            .allowed_servers
            .as_ref()
            .map(|a| allow_list(&a.entries))
            .transpose()?;
        let (token, generated) = match (req.access_token.is_empty(), req.new_token) {
            (false, true) => {
                return Err(AdminError::InvalidArgument(
                    "give either a new access token or new_token, not both".into(),
                ))
            }
            (false, false) => {
                canopy_core::token::validate_custom(&req.access_token)
                    .map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
                (Some(self.store.hasher().hash(&req.access_token)), None)
            }
            (true, true) => {
                let t = TokenKind::User.generate();
                (Some(self.store.hasher().hash(&t)), Some(t))
            }
            (true, false) if role.is_some() || allowed.is_some() => (None, None),
            (true, false) => {
                return Err(AdminError::InvalidArgument(
                    "nothing to update: give a new access token, an allow list or a role".into(),
                ))
            }
        };
        let token_changed = token.is_some();
        let mutation = Mutation::UpdateUser {
            name: req.name.clone(),
            token,
            grace_ms: req.grace_ms,
            allowed,
            role,
        };
        let revision = self.store.apply(mutation).await?;
        tracing::info!(
            revision,
            user = %req.name,
            token_changed,
            role = role.map(|r| r.as_str()),
            grace_ms = req.grace_ms,
            scope_changed = req.allowed_servers.is_some(),
            "user updated"
        );
        if !token_changed {
            return Ok(pb::MutationResult {
                revision,
                ..Default::default()
            });
        }
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(pb::MutationResult {
            access_token: generated.unwrap_or_default(),
            ..mutation_result(report)
        })
    }

    pub(super) async fn remove_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let revision = self
            .store
            .apply(Mutation::DeleteUser {
                name: req.name.clone(),
            })
            .await?;
        tracing::info!(revision, user = %req.name, "user deleted");
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }
}
