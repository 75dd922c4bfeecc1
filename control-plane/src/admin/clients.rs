//! MCP client management (enterprise mode only, admins only).

use super::allow_refs::Registered;
use super::auth::Need;
use super::convert::{allow_list, mutation_result, wait_duration};
use super::{new_token, AdminError, AdminService};
use crate::store::{ClientRecord, Mutation};
use canopy_core::name::validate_principal_name;
use canopy_core::TokenKind;
use canopy_proto::v1 as pb;
use tonic::Request;

fn to_pb(c: ClientRecord, registered: &Registered) -> pb::McpClient {
    pb::McpClient {
        unknown_entries: registered.unknown(&c.allowed),
        name: c.name,
        description: c.description,
        allowed_servers: c.allowed,
    }
}

impl AdminService {
    pub(super) async fn create_client(
        &self,
        req: Request<pb::CreateMcpClientRequest>,
    ) -> Result<pb::CreateMcpClientResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        validate_principal_name("MCP client", &req.name)
            .map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
        let allowed = allow_list(&req.allowed_servers)?;
        let registered = self.registered()?;
        if !req.force {
            registered.check(&allowed)?;
        }
        let unknown_entries = registered.unknown(&allowed);
        let (token, generated) = new_token(TokenKind::McpClient, req.access_token)?;
        let hash = self.store.hasher().hash(&token);
        let mutation = Mutation::CreateClient {
            name: req.name.clone(),
            description: req.description.clone(),
            allowed: allowed.clone(),
            token: hash,
        };
        let revision = self.store.apply(mutation).await?;
        tracing::info!(revision, client = %req.name, allowed = ?allowed, "MCP client created");
        Ok(pb::CreateMcpClientResponse {
            client: Some(pb::McpClient {
                name: req.name,
                description: req.description,
                allowed_servers: allowed,
                unknown_entries,
            }),
            access_token: if generated { token } else { String::new() },
            revision,
        })
    }

    pub(super) fn list_clients(
        &self,
        req: Request<pb::ListMcpClientsRequest>,
    ) -> Result<pb::ListMcpClientsResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let registered = self.registered()?;
        let clients = self
            .store
            .clients()
            .map(|c| c.map(|c| to_pb(c, &registered)))
            .collect::<Result<_, _>>()?;
        Ok(pb::ListMcpClientsResponse { clients })
    }

    pub(super) async fn update_client(
        &self,
        req: Request<pb::UpdateMcpClientRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        if req.access_token.is_none()
            && !req.new_token
            && req.allowed_servers.is_none()
            && req.description.is_none()
        {
            return Err(AdminError::InvalidArgument(
                "nothing to update: give a new access token, allow list or description".into(),
            ));
        }
        let (token, generated) = match (&req.access_token, req.new_token) {
            (Some(_), true) => {
                return Err(AdminError::InvalidArgument(
                    "give either a new access token or new_token, not both".into(),
                ))
            }
            (Some(t), false) => {
                canopy_core::token::validate_custom(t)
                    .map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
                (Some(self.store.hasher().hash(t)), None)
            }
            (None, true) => {
                let t = TokenKind::McpClient.generate();
                (Some(self.store.hasher().hash(&t)), Some(t))
            }
            (None, false) => (None, None),
        };
        let allowed = req
            .allowed_servers
            .as_ref()
            .map(|a| allow_list(&a.entries))
            .transpose()?;
        if let (Some(entries), false) = (&allowed, req.force) {
            self.registered()?.check(entries)?;
        }
        let token_changed = token.is_some();
        let mutation = Mutation::UpdateClient {
            name: req.name.clone(),
            token,
            grace_ms: req.grace_ms,
            allowed,
            description: req.description.clone(),
        };
        let revision = self.store.apply(mutation).await?;
        tracing::info!(
            revision,
            client = %req.name,
            token_changed,
            scope_changed = req.allowed_servers.is_some(),
            "MCP client updated"
        );
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(pb::MutationResult {
            access_token: generated.unwrap_or_default(),
            ..mutation_result(report)
        })
    }

    /// What allow-list entries may name now.
    fn registered(&self) -> Result<Registered, AdminError> {
        Ok(Registered::from_records(&self.store.servers()?))
    }

    pub(super) async fn delete_client(
        &self,
        req: Request<pb::DeleteMcpClientRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let revision = self
            .store
            .apply(Mutation::DeleteClient {
                name: req.name.clone(),
            })
            .await?;
        tracing::info!(revision, client = %req.name, "MCP client deleted");
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }
}
