//! The `Admin` gRPC service the `canopy` CLI speaks.
//!
//! One file per concern: `auth` (who may call what), `scope` (which servers and tools a
//! person reaches), `users`, `clients`, `servers`, `tools`, `identity` (providers, access
//! rules, revocations), `sso` (people signed in with an identity provider), `upstreams` (live
//! connections for `invoke`), `convert` (protobuf ↔ store
//! types) and `error` (the one place errors become `tonic::Status`). The trait impl
//! below only routes.
//!
//! Tokens: plaintexts exist only in requests and in the one response that creates them;
//! they are hashed at once and never logged or echoed in errors.

mod allow_refs;
mod audited;
mod auth;
mod clients;
mod convert;
mod error;
mod identity;
mod scope;
mod servers;
mod sso;
mod tools;
mod upstreams;
mod users;

#[cfg(test)]
mod tests;

pub(crate) use convert::{audit_payload_to_pb, redact_url};
pub use error::AdminError;
pub(crate) use servers::{Refreshed, Refresher};

use crate::audit::change::Object;
use crate::audit::recorder::peer;
use crate::fleet::Fleet;
use crate::identity::{Keys, DEFAULT_REFETCH_COOLDOWN};
use crate::store::Store;
use canopy_core::{TokenHash, TokenKind};
use canopy_proto::v1 as pb;
use canopy_proto::v1::admin_server::Admin;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use upstreams::Upstreams;

pub struct AdminService {
    store: Store,
    fleet: Arc<Fleet>,
    /// Hash of the init token the control plane was started with, if any.
    init_token: Option<TokenHash>,
    upstreams: Arc<Upstreams>,
    /// Identity providers' keys: fetched at create/update, status for listings.
    keys: Arc<Keys>,
    /// Those keys parsed, for identity providers' tokens on the Admin API.
    sso_keys: sso::KeyCache,
    /// The control plane's public URL (`--public-url`): the Admin API's default audience.
    public_url: Option<String>,
    /// Where changes and failed authentications are recorded (`None` = no audit trail).
    audit: Option<crate::audit::Recorder>,
}

impl AdminService {
    /// `init_token`: when set, `InitServer` must present it.
    pub fn new(store: Store, fleet: Arc<Fleet>, init_token: Option<&str>) -> Self {
        let init_token = init_token.map(|t| store.hasher().hash(t));
        Self {
            keys: Arc::new(Keys::new(store.clone(), DEFAULT_REFETCH_COOLDOWN)),
            store,
            fleet,
            init_token,
            upstreams: Arc::default(),
            sso_keys: sso::KeyCache::default(),
            public_url: None,
            audit: None,
        }
    }

    /// Records every change and every failed authentication through `recorder`.
    pub fn with_audit(mut self, recorder: crate::audit::Recorder) -> Self {
        self.audit = Some(recorder);
        self
    }

    /// The URL people reach this control plane at: the audience its Admin API accepts in
    /// identity providers' tokens (unless a provider configures its own).
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url;
        self
    }

    /// Uses `keys` (shared with the Sync service and the periodic refresh) instead of the
    /// service's own.
    pub fn with_keys(mut self, keys: Arc<Keys>) -> Self {
        self.keys = keys;
        self
    }

    pub fn into_server(self) -> pb::admin_server::AdminServer<Self> {
        pb::admin_server::AdminServer::new(self)
    }

    /// The server for a service shared with others (the Audit service authorizes through it).
    pub fn shared_server(self: &Arc<Self>) -> pb::admin_server::AdminServer<Self> {
        pb::admin_server::AdminServer::from_arc(Arc::clone(self))
    }
}

/// The token to store: the admin's custom one (validated) or a generated one. The bool
/// says whether it was generated (and so must be returned, once).
fn new_token(kind: TokenKind, custom: String) -> Result<(String, bool), AdminError> {
    if custom.is_empty() {
        return Ok((kind.generate(), true));
    }
    canopy_core::token::validate_custom(&custom)
        .map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
    Ok((custom, false))
}

type Reply<T> = Result<Response<T>, Status>;

impl AdminService {
    fn server_info(&self) -> Result<pb::ServerInfo, AdminError> {
        let mode = match self.store.mode() {
            crate::store::Mode::Development => pb::Mode::Development,
            crate::store::Mode::Enterprise => pb::Mode::Enterprise,
        };
        Ok(pb::ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: mode.into(),
            initialized: self.store.initialized()?,
            revision: self.store.revision(),
        })
    }
}

/// Every RPC goes through `observe` (reads) or `change` (mutations): the audit trail's one
/// place (`admin/audited.rs`). The handlers themselves live in one file per noun.
#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_server_info(&self, r: Request<pb::GetServerInfoRequest>) -> Reply<pb::ServerInfo> {
        self.observe("GetServerInfo", peer(&r), async { self.server_info() })
            .await
    }
    async fn get_sso_config(&self, r: Request<pb::GetSsoConfigRequest>) -> Reply<pb::SsoConfig> {
        self.observe("GetSsoConfig", peer(&r), async { self.sso_config(r) })
            .await
    }
    async fn who_am_i(&self, r: Request<pb::WhoAmIRequest>) -> Reply<pb::UserInfo> {
        self.observe("WhoAmI", peer(&r), async { self.identify(r) })
            .await
    }
    async fn list_mcp_clients(
        &self,
        r: Request<pb::ListMcpClientsRequest>,
    ) -> Reply<pb::ListMcpClientsResponse> {
        self.observe("ListMcpClients", peer(&r), async { self.list_clients(r) })
            .await
    }
    async fn list_users(&self, r: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        self.observe("ListUsers", peer(&r), async { self.user_list(r) })
            .await
    }
    async fn list_servers(
        &self,
        r: Request<pb::ListServersRequest>,
    ) -> Reply<pb::ListServersResponse> {
        self.observe("ListServers", peer(&r), async { self.server_list(r) })
            .await
    }
    async fn list_tools(&self, r: Request<pb::ListToolsRequest>) -> Reply<pb::ListToolsResponse> {
        self.observe("ListTools", peer(&r), async { self.tool_list(r) })
            .await
    }
    async fn list_prompts(
        &self,
        r: Request<pb::ListPromptsRequest>,
    ) -> Reply<pb::ListPromptsResponse> {
        self.observe("ListPrompts", peer(&r), async { self.prompt_list(r) })
            .await
    }
    async fn get_tool(&self, r: Request<pb::GetToolRequest>) -> Reply<pb::ToolInfo> {
        self.observe("GetTool", peer(&r), async { self.tool_info(r) })
            .await
    }
    async fn list_data_planes(
        &self,
        r: Request<pb::ListDataPlanesRequest>,
    ) -> Reply<pb::ListDataPlanesResponse> {
        self.observe("ListDataPlanes", peer(&r), async {
            self.data_plane_list(r)
        })
        .await
    }
    async fn list_identity_providers(
        &self,
        r: Request<pb::ListIdentityProvidersRequest>,
    ) -> Reply<pb::ListIdentityProvidersResponse> {
        self.observe("ListIdentityProviders", peer(&r), async {
            self.list_providers(r)
        })
        .await
    }
    async fn list_access_rules(
        &self,
        r: Request<pb::ListAccessRulesRequest>,
    ) -> Reply<pb::ListAccessRulesResponse> {
        self.observe("ListAccessRules", peer(&r), async { self.list_rules(r) })
            .await
    }
    async fn explain_access(
        &self,
        r: Request<pb::ExplainAccessRequest>,
    ) -> Reply<pb::ExplainAccessResponse> {
        self.observe("ExplainAccess", peer(&r), async { self.explain(r) })
            .await
    }
    async fn list_revocations(
        &self,
        r: Request<pb::ListRevocationsRequest>,
    ) -> Reply<pb::ListRevocationsResponse> {
        self.observe("ListRevocations", peer(&r), async {
            self.revocation_list(r)
        })
        .await
    }
    async fn invoke_tool(
        &self,
        r: Request<pb::InvokeToolRequest>,
    ) -> Reply<pb::InvokeToolResponse> {
        self.observe("InvokeTool", peer(&r), self.invoke(r)).await
    }
    async fn init_server(
        &self,
        r: Request<pb::InitServerRequest>,
    ) -> Reply<pb::InitServerResponse> {
        let object = Object::User(users::FIRST_ADMIN.into());
        let address = peer(&r);
        self.change(
            "InitServer",
            address,
            object,
            |_| self.store.revision(),
            self.init(r),
        )
        .await
    }
    async fn create_mcp_client(
        &self,
        r: Request<pb::CreateMcpClientRequest>,
    ) -> Reply<pb::CreateMcpClientResponse> {
        let q = r.get_ref();
        let object = Object::Client(q.name.clone());
        let address = peer(&r);
        self.change(
            "CreateMcpClient",
            address,
            object,
            |r| r.revision,
            self.create_client(r),
        )
        .await
    }
    async fn update_mcp_client(
        &self,
        r: Request<pb::UpdateMcpClientRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::Client(q.name.clone());
        let address = peer(&r);
        self.change(
            "UpdateMcpClient",
            address,
            object,
            |r| r.revision,
            self.update_client(r),
        )
        .await
    }
    async fn delete_mcp_client(
        &self,
        r: Request<pb::DeleteMcpClientRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::Client(q.name.clone());
        let address = peer(&r);
        self.change(
            "DeleteMcpClient",
            address,
            object,
            |r| r.revision,
            self.delete_client(r),
        )
        .await
    }
    async fn create_user(
        &self,
        r: Request<pb::CreateUserRequest>,
    ) -> Reply<pb::CreateUserResponse> {
        let q = r.get_ref();
        let object = Object::User(q.name.clone());
        let address = peer(&r);
        self.change(
            "CreateUser",
            address,
            object,
            |r| r.revision,
            self.add_user(r),
        )
        .await
    }
    async fn update_user(&self, r: Request<pb::UpdateUserRequest>) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::User(q.name.clone());
        let address = peer(&r);
        self.change(
            "UpdateUser",
            address,
            object,
            |r| r.revision,
            self.change_user(r),
        )
        .await
    }
    async fn delete_user(&self, r: Request<pb::DeleteUserRequest>) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::User(q.name.clone());
        let address = peer(&r);
        self.change(
            "DeleteUser",
            address,
            object,
            |r| r.revision,
            self.remove_user(r),
        )
        .await
    }
    async fn register_server(
        &self,
        r: Request<pb::RegisterServerRequest>,
    ) -> Reply<pb::RegisterServerResponse> {
        let q = r.get_ref();
        let object = Object::Server(q.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default());
        let address = peer(&r);
        self.change(
            "RegisterServer",
            address,
            object,
            |r| r.revision,
            self.register(r),
        )
        .await
    }
    async fn deregister_server(
        &self,
        r: Request<pb::DeregisterServerRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::Server(q.name.clone());
        let address = peer(&r);
        self.change(
            "DeregisterServer",
            address,
            object,
            |r| r.revision,
            self.deregister(r),
        )
        .await
    }
    async fn refresh_server(
        &self,
        r: Request<pb::RefreshServerRequest>,
    ) -> Reply<pb::RegisterServerResponse> {
        let q = r.get_ref();
        let object = Object::Server(q.name.clone());
        let address = peer(&r);
        self.change(
            "RefreshServer",
            address,
            object,
            |r| r.revision,
            self.refresh(r),
        )
        .await
    }
    async fn create_identity_provider(
        &self,
        r: Request<pb::CreateIdentityProviderRequest>,
    ) -> Reply<pb::CreateIdentityProviderResponse> {
        let q = r.get_ref();
        let object =
            Object::IdentityProvider(q.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default());
        let address = peer(&r);
        self.change(
            "CreateIdentityProvider",
            address,
            object,
            |r| r.revision,
            self.create_provider(r),
        )
        .await
    }
    async fn update_identity_provider(
        &self,
        r: Request<pb::UpdateIdentityProviderRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object =
            Object::IdentityProvider(q.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default());
        let address = peer(&r);
        self.change(
            "UpdateIdentityProvider",
            address,
            object,
            |r| r.revision,
            self.update_provider(r),
        )
        .await
    }
    async fn delete_identity_provider(
        &self,
        r: Request<pb::DeleteIdentityProviderRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::IdentityProvider(q.name.clone());
        let address = peer(&r);
        self.change(
            "DeleteIdentityProvider",
            address,
            object,
            |r| r.revision,
            self.delete_provider(r),
        )
        .await
    }
    async fn create_access_rule(
        &self,
        r: Request<pb::CreateAccessRuleRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object =
            Object::AccessRule(q.rule.as_ref().map(|s| s.name.clone()).unwrap_or_default());
        let address = peer(&r);
        self.change(
            "CreateAccessRule",
            address,
            object,
            |r| r.revision,
            self.create_rule(r),
        )
        .await
    }
    async fn update_access_rule(
        &self,
        r: Request<pb::UpdateAccessRuleRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::AccessRule(q.name.clone());
        let address = peer(&r);
        self.change(
            "UpdateAccessRule",
            address,
            object,
            |r| r.revision,
            self.update_rule(r),
        )
        .await
    }
    async fn delete_access_rule(
        &self,
        r: Request<pb::DeleteAccessRuleRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::AccessRule(q.name.clone());
        let address = peer(&r);
        self.change(
            "DeleteAccessRule",
            address,
            object,
            |r| r.revision,
            self.delete_rule(r),
        )
        .await
    }
    async fn revoke_subject(
        &self,
        r: Request<pb::RevokeSubjectRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::Revocation {
            idp: q.idp.clone(),
            subject: q.subject.clone(),
        };
        let address = peer(&r);
        self.change(
            "RevokeSubject",
            address,
            object,
            |r| r.revision,
            self.revoke(r),
        )
        .await
    }
    async fn unrevoke_subject(
        &self,
        r: Request<pb::UnrevokeSubjectRequest>,
    ) -> Reply<pb::MutationResult> {
        let q = r.get_ref();
        let object = Object::Revocation {
            idp: q.idp.clone(),
            subject: q.subject.clone(),
        };
        let address = peer(&r);
        self.change(
            "UnrevokeSubject",
            address,
            object,
            |r| r.revision,
            self.unrevoke(r),
        )
        .await
    }
}
