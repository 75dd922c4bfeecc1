//! Commands against an in-process mock of the Admin service (real gRPC over a loopback
//! socket): what goes on the wire (bearer metadata, wait options) and how answers turn
//! into output, saved config and exit codes. End-to-end tests with the real control plane
//! live in `testing/e2e`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use crate::args::{DeleteArgs, InitServerArgs, LoginArgs, WaitArg};
use canopy_proto::v1::admin_server::{Admin as AdminService, AdminServer};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

fn ctx() -> Ctx {
    Ctx {
        format: Format::Json,
        registry_flag: None,
        ca_flag: None,
        config_path: Err(ConfigError::NoHome),
        config: Config::default(),
    }
}

#[test]
fn pending_data_planes_fail_with_exit_3() {
    let r = pb::MutationResult {
        revision: 12,
        confirmed: 1,
        expected: 2,
        elapsed_ms: 5000,
        pending: vec!["dp-b".into()],
        ..Default::default()
    };
    let outcome = Outcome::new("x deleted; it no longer works.", "The deletion of x");
    let report = MutationReport::from(&r);
    let text = outcome.text(&report);
    assert!(
        text.starts_with(
            "The deletion of x is saved (revision 12) but not applied yet by data plane(s): dp-b;"
        ),
        "{text}"
    );
    assert!(!text.contains("no longer works"), "{text}");
    let err = finish_mutation(&ctx(), &outcome, &r, Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(&err, CliError::NotConfirmed { pending, .. } if pending == &["dp-b".to_owned()])
    );
    assert_eq!(err.exit_code(), std::process::ExitCode::from(3));
    let ok = pb::MutationResult {
        pending: vec![],
        confirmed: 2,
        ..r
    };
    assert!(outcome
        .text(&MutationReport::from(&ok))
        .starts_with("x deleted; it no longer works.\napplied on 2/2"));
    assert!(finish_mutation(&ctx(), &outcome, &ok, Duration::from_secs(5)).is_ok());
}

#[test]
fn registry_precedence() {
    let mut c = ctx();
    assert_eq!(c.registry().unwrap(), "http://127.0.0.1:9090");
    c.config.registry = Some("http://saved:1".into());
    assert_eq!(c.registry().unwrap(), "http://saved:1");
    c.registry_flag = Some("flag:2".into());
    assert_eq!(c.registry().unwrap(), "http://flag:2");
}

#[test]
fn waiting_deadline_covers_the_wait() {
    assert!(waiting_deadline(Duration::from_secs(600)) > Duration::from_secs(600));
    assert_eq!(
        waiting_deadline(Duration::ZERO),
        client::DEFAULT_CALL_TIMEOUT
    );
}

const GOOD_TOKEN: &str = "good-token-0123456789";

/// (rpc, `authorization` metadata) of one call the mock received.
type Seen = (String, Option<String>);

/// Records the `authorization` metadata of every call and answers a few RPCs.
#[derive(Clone, Default)]
struct Mock {
    auth: Arc<Mutex<Vec<Seen>>>,
    wait_ms: Arc<Mutex<Option<u64>>>,
}

impl Mock {
    fn record<T>(&self, rpc: &str, req: &Request<T>) -> Option<String> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.auth
            .lock()
            .unwrap()
            .push((rpc.to_owned(), auth.clone()));
        auth
    }
}

type R<T> = Result<Response<T>, Status>;

fn nope<T>() -> R<T> {
    Err(Status::unimplemented("not in the mock"))
}

#[tonic::async_trait]
impl AdminService for Mock {
    async fn get_server_info(&self, _: Request<pb::GetServerInfoRequest>) -> R<pb::ServerInfo> {
        nope()
    }
    async fn init_server(&self, req: Request<pb::InitServerRequest>) -> R<pb::InitServerResponse> {
        self.record("init_server", &req);
        if req.get_ref().init_token != "the-init-token" {
            return Err(Status::permission_denied("the init token does not match"));
        }
        Ok(Response::new(pb::InitServerResponse {
            user: "admin".into(),
            access_token: "canopy_usr_generated".into(),
        }))
    }
    async fn get_sso_config(&self, _: Request<pb::GetSsoConfigRequest>) -> R<pb::SsoConfig> {
        nope()
    }
    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> R<pb::UserInfo> {
        match self.record("who_am_i", &req) {
            Some(h) if h == format!("Bearer {GOOD_TOKEN}") => Ok(Response::new(pb::UserInfo {
                name: "alice".into(),
                role: pb::Role::User as i32,
                ..Default::default()
            })),
            _ => Err(Status::unauthenticated("unknown token")),
        }
    }
    async fn create_mcp_client(
        &self,
        _: Request<pb::CreateMcpClientRequest>,
    ) -> R<pb::CreateMcpClientResponse> {
        nope()
    }
    async fn list_mcp_clients(
        &self,
        req: Request<pb::ListMcpClientsRequest>,
    ) -> R<pb::ListMcpClientsResponse> {
        self.record("list_mcp_clients", &req);
        Err(Status::permission_denied(
            "user 'alice' has role user; this command needs an admin",
        ))
    }
    async fn update_mcp_client(
        &self,
        _: Request<pb::UpdateMcpClientRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn delete_mcp_client(
        &self,
        req: Request<pb::DeleteMcpClientRequest>,
    ) -> R<pb::MutationResult> {
        self.record("delete_mcp_client", &req);
        *self.wait_ms.lock().unwrap() = req.get_ref().wait.as_ref().map(|w| w.wait_ms);
        Ok(Response::new(pb::MutationResult {
            revision: 5,
            confirmed: 1,
            expected: 2,
            elapsed_ms: 1500,
            pending: vec!["dp-b".into()],
            ..Default::default()
        }))
    }
    async fn create_user(&self, _: Request<pb::CreateUserRequest>) -> R<pb::CreateUserResponse> {
        nope()
    }
    async fn list_users(&self, _: Request<pb::ListUsersRequest>) -> R<pb::ListUsersResponse> {
        nope()
    }
    async fn update_user(&self, _: Request<pb::UpdateUserRequest>) -> R<pb::MutationResult> {
        nope()
    }
    async fn delete_user(&self, _: Request<pb::DeleteUserRequest>) -> R<pb::MutationResult> {
        nope()
    }
    async fn register_server(
        &self,
        _: Request<pb::RegisterServerRequest>,
    ) -> R<pb::RegisterServerResponse> {
        nope()
    }
    async fn deregister_server(
        &self,
        _: Request<pb::DeregisterServerRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn refresh_server(
        &self,
        _: Request<pb::RefreshServerRequest>,
    ) -> R<pb::RegisterServerResponse> {
        nope()
    }
    async fn list_servers(&self, _: Request<pb::ListServersRequest>) -> R<pb::ListServersResponse> {
        nope()
    }
    async fn list_tools(&self, _: Request<pb::ListToolsRequest>) -> R<pb::ListToolsResponse> {
        nope()
    }
    async fn list_prompts(&self, _: Request<pb::ListPromptsRequest>) -> R<pb::ListPromptsResponse> {
        nope()
    }
    async fn get_tool(&self, _: Request<pb::GetToolRequest>) -> R<pb::ToolInfo> {
        nope()
    }
    async fn invoke_tool(&self, _: Request<pb::InvokeToolRequest>) -> R<pb::InvokeToolResponse> {
        nope()
    }
    async fn list_data_planes(
        &self,
        _: Request<pb::ListDataPlanesRequest>,
    ) -> R<pb::ListDataPlanesResponse> {
        nope()
    }
    async fn create_identity_provider(
        &self,
        _: Request<pb::CreateIdentityProviderRequest>,
    ) -> R<pb::CreateIdentityProviderResponse> {
        nope()
    }
    async fn list_identity_providers(
        &self,
        _: Request<pb::ListIdentityProvidersRequest>,
    ) -> R<pb::ListIdentityProvidersResponse> {
        nope()
    }
    async fn update_identity_provider(
        &self,
        _: Request<pb::UpdateIdentityProviderRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn delete_identity_provider(
        &self,
        _: Request<pb::DeleteIdentityProviderRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn create_access_rule(
        &self,
        _: Request<pb::CreateAccessRuleRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn list_access_rules(
        &self,
        _: Request<pb::ListAccessRulesRequest>,
    ) -> R<pb::ListAccessRulesResponse> {
        nope()
    }
    async fn update_access_rule(
        &self,
        _: Request<pb::UpdateAccessRuleRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn delete_access_rule(
        &self,
        _: Request<pb::DeleteAccessRuleRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
    async fn explain_access(
        &self,
        _: Request<pb::ExplainAccessRequest>,
    ) -> R<pb::ExplainAccessResponse> {
        nope()
    }
    async fn revoke_subject(&self, _: Request<pb::RevokeSubjectRequest>) -> R<pb::MutationResult> {
        nope()
    }
    async fn list_revocations(
        &self,
        _: Request<pb::ListRevocationsRequest>,
    ) -> R<pb::ListRevocationsResponse> {
        nope()
    }
    async fn unrevoke_subject(
        &self,
        _: Request<pb::UnrevokeSubjectRequest>,
    ) -> R<pb::MutationResult> {
        nope()
    }
}

/// Serves `mock` on a free loopback port; returns its URL.
async fn serve(mock: Mock) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(mock))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

fn ctx_at(registry: &str, dir: &std::path::Path, token: Option<&str>) -> Ctx {
    Ctx {
        format: Format::Json,
        registry_flag: Some(registry.to_owned()),
        ca_flag: None,
        config_path: Ok(dir.join("canopy.conf")),
        config: Config {
            registry: None,
            access_token: token.map(str::to_owned),
            ca_file: None,
            sso: None,
        },
    }
}

#[tokio::test]
async fn init_server_sends_no_token_and_saves_a_private_config() {
    let mock = Mock::default();
    let url = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // An old token in the config must not be sent to the one unauthenticated call.
    let ctx = ctx_at(&url, dir.path(), Some("old-token-0123456789"));
    let err = session::init_server(
        &ctx,
        InitServerArgs {
            init_token: Some("wrong".into()),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied: the init token does not match"
    );
    session::init_server(
        &ctx,
        InitServerArgs {
            init_token: Some("the-init-token".into()),
        },
    )
    .await
    .unwrap();
    assert!(mock
        .auth
        .lock()
        .unwrap()
        .iter()
        .all(|(_, auth)| auth.is_none()));
    let path = dir.path().join("canopy.conf");
    let saved = config::load(&path).unwrap();
    assert_eq!(saved.registry.as_deref(), Some(url.as_str()));
    assert_eq!(saved.access_token.as_deref(), Some("canopy_usr_generated"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test]
async fn login_checks_the_token_before_saving_it() {
    let mock = Mock::default();
    let url = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_at(&url, dir.path(), None);
    let err = session::login(
        &ctx,
        LoginArgs {
            access_token: Some("wrong-token-0123456789".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not accept this access token") && !msg.contains("wrong-token"),
        "{msg}"
    );
    assert!(!dir.path().join("canopy.conf").exists());

    session::login(
        &ctx,
        LoginArgs {
            access_token: Some(format!("  {GOOD_TOKEN}\n")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let saved = config::load(&dir.path().join("canopy.conf")).unwrap();
    assert_eq!(saved.access_token.as_deref(), Some(GOOD_TOKEN));
    let seen = mock.auth.lock().unwrap().clone();
    assert_eq!(
        seen.last().unwrap().1.as_deref(),
        Some(format!("Bearer {GOOD_TOKEN}").as_str())
    );
}

#[tokio::test]
async fn saved_token_is_sent_and_statuses_are_mapped() {
    let mock = Mock::default();
    let url = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    session::whoami(&ctx_at(&url, dir.path(), Some(GOOD_TOKEN)))
        .await
        .unwrap();
    // No token saved: the error names the config file that was read.
    let err = session::whoami(&ctx_at(&url, dir.path(), None))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "not logged in: {} does not exist; run `canopy login <token>` \
             (or set CANOPY_CONFIG to the file you logged in with)",
            dir.path().join("canopy.conf").display()
        )
    );
    let err = clients::list(&ctx_at(&url, dir.path(), Some(GOOD_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied: user 'alice' has role user; this command needs an admin"
    );
    assert_eq!(err.exit_code(), std::process::ExitCode::from(1));
}

#[tokio::test]
async fn revocation_passes_wait_and_reports_pending_data_planes() {
    let mock = Mock::default();
    let url = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_at(&url, dir.path(), Some(GOOD_TOKEN));
    let args = DeleteArgs {
        name: "claude".into(),
        wait: WaitArg {
            wait: Duration::from_millis(1500),
        },
    };
    let err = clients::delete(&ctx, args).await.unwrap_err();
    assert_eq!(*mock.wait_ms.lock().unwrap(), Some(1500));
    assert!(
        matches!(&err, CliError::NotConfirmed { revision: 5, expected: 2, pending, .. } if pending == &["dp-b"])
    );
    assert_eq!(err.exit_code(), std::process::ExitCode::from(3));
    assert!(err.to_string().contains("dp-b"));
}
