#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! The admin service in-process, through its trait methods (no socket).

use super::*;
use crate::store::{Mode, StoreOptions};
use tonic::Code;

struct Env {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    svc: AdminService,
}

async fn env(mode: Mode, init_token: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path(), mode))
        .await
        .unwrap();
    let svc = AdminService::new(store, Fleet::new(), init_token);
    Env {
        dir: dir.path().to_owned(),
        _dir: dir,
        svc,
    }
}

fn req<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

async fn init(svc: &AdminService) -> String {
    svc.init_server(req(pb::InitServerRequest::default(), None))
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// An enterprise-mode service, initialized: (env, the admin's token).
async fn enterprise() -> (Env, String) {
    let e = env(Mode::Enterprise, None).await;
    let admin = init(&e.svc).await;
    (e, admin)
}

async fn server_info(svc: &AdminService) -> pb::ServerInfo {
    svc.get_server_info(req(pb::GetServerInfoRequest {}, None))
        .await
        .unwrap()
        .into_inner()
}

async fn create_user(svc: &AdminService, admin: &str, name: &str, role: pb::Role) -> String {
    let r = pb::CreateUserRequest {
        name: name.into(),
        role: role.into(),
        ..Default::default()
    };
    svc.create_user(req(r, Some(admin)))
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// What a call on a missing entity answers when `auth` lets the caller through.
fn not_found_if_allowed(auth: Code) -> Code {
    if auth == Code::Ok {
        Code::NotFound
    } else {
        auth
    }
}

fn code<T: std::fmt::Debug>(r: Result<Response<T>, Status>) -> Code {
    r.map(|_| ())
        .map_err(|s| s.code())
        .err()
        .unwrap_or(Code::Ok)
}

#[tokio::test]
async fn role_matrix() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    assert!(admin.starts_with("canopy_usr_"));
    let alice = create_user(s, &admin, "alice", pb::Role::User).await;
    let client = s
        .create_mcp_client(req(
            pb::CreateMcpClientRequest {
                name: "bot".into(),
                ..Default::default()
            },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner()
        .access_token;

    for (who, expect_user_rpc, expect_admin_rpc) in [
        (Some(admin.as_str()), Code::Ok, Code::Ok),
        (Some(alice.as_str()), Code::Ok, Code::PermissionDenied),
        (
            Some(client.as_str()),
            Code::Unauthenticated,
            Code::Unauthenticated,
        ),
        (
            Some("not-a-real-token-at-all"),
            Code::Unauthenticated,
            Code::Unauthenticated,
        ),
        (None, Code::Unauthenticated, Code::Unauthenticated),
    ] {
        assert_eq!(
            code(s.who_am_i(req(pb::WhoAmIRequest {}, who)).await),
            expect_user_rpc,
            "{who:?}"
        );
        assert_eq!(
            code(s.list_servers(req(pb::ListServersRequest {}, who)).await),
            expect_user_rpc
        );
        assert_eq!(
            code(
                s.list_tools(req(pb::ListToolsRequest::default(), who))
                    .await
            ),
            expect_user_rpc
        );
        assert_eq!(
            code(
                s.list_prompts(req(pb::ListPromptsRequest::default(), who))
                    .await
            ),
            expect_user_rpc
        );
        let get = s
            .get_tool(req(
                pb::GetToolRequest {
                    name: "x__y".into(),
                },
                who,
            ))
            .await;
        assert_eq!(code(get), not_found_if_allowed(expect_user_rpc));
        assert_eq!(
            code(s.list_users(req(pb::ListUsersRequest {}, who)).await),
            expect_admin_rpc
        );
        assert_eq!(
            code(
                s.list_mcp_clients(req(pb::ListMcpClientsRequest {}, who))
                    .await
            ),
            expect_admin_rpc
        );
        assert_eq!(
            code(
                s.list_data_planes(req(pb::ListDataPlanesRequest {}, who))
                    .await
            ),
            expect_admin_rpc
        );
        let dereg = s
            .deregister_server(req(
                pb::DeregisterServerRequest {
                    name: "nope".into(),
                    wait: None,
                },
                who,
            ))
            .await;
        assert_eq!(code(dereg), not_found_if_allowed(expect_admin_rpc));
    }
    let denied = s
        .list_users(req(pb::ListUsersRequest {}, Some(&alice)))
        .await
        .unwrap_err();
    assert_eq!(
        denied.message(),
        "user 'alice' has role user; this command needs an admin"
    );
    let me = s
        .who_am_i(req(pb::WhoAmIRequest {}, Some(&alice)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((me.name.as_str(), me.role()), ("alice", pb::Role::User));
}

#[tokio::test]
async fn init_once_and_only_in_enterprise_mode() {
    let e = env(Mode::Enterprise, None).await;
    let info = server_info(&e.svc).await;
    assert!(!info.initialized);
    assert_eq!(
        code(e.svc.who_am_i(req(pb::WhoAmIRequest {}, None)).await),
        Code::FailedPrecondition
    );
    init(&e.svc).await;
    let again = e
        .svc
        .init_server(req(pb::InitServerRequest::default(), None))
        .await;
    assert_eq!(code(again), Code::AlreadyExists);
    let info = server_info(&e.svc).await;
    assert!(info.initialized && info.revision == 1 && info.mode() == pb::Mode::Enterprise);

    let dev = env(Mode::Development, None).await;
    let err = dev
        .svc
        .init_server(req(pb::InitServerRequest::default(), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn init_token_guard() {
    let e = env(Mode::Enterprise, Some("the-init-token-42")).await;
    for wrong in ["", "the-init-token-43"] {
        let r = e
            .svc
            .init_server(req(
                pb::InitServerRequest {
                    init_token: wrong.into(),
                },
                None,
            ))
            .await;
        assert_eq!(code(r), Code::PermissionDenied);
    }
    let ok = e
        .svc
        .init_server(req(
            pb::InitServerRequest {
                init_token: "the-init-token-42".into(),
            },
            None,
        ))
        .await;
    assert_eq!(code(ok), Code::Ok);
}

#[tokio::test]
async fn duplicates_unknowns_last_admin_and_bad_input() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    let mk = |name: &str, token: &str| pb::CreateMcpClientRequest {
        name: name.into(),
        allowed_servers: vec!["github, jira".into(), "*".into()],
        access_token: token.into(),
        // Neither server is registered here.
        force: true,
        ..Default::default()
    };
    let created = s
        .create_mcp_client(req(mk("bot", "custom-token-0123456"), Some(&admin)))
        .await
        .unwrap();
    let created = created.into_inner();
    assert_eq!(created.access_token, "", "custom tokens are not echoed");
    assert_eq!(
        created.client.unwrap().allowed_servers,
        vec!["*", "github", "jira"]
    );
    let dup = s
        .create_mcp_client(req(mk("bot", ""), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(
        (dup.code(), dup.message()),
        (Code::AlreadyExists, "MCP client 'bot' already exists")
    );
    let short = s
        .create_mcp_client(req(mk("bot2", "short"), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument);
    assert!(
        !short.message().contains("short"),
        "the token is never echoed"
    );
    let reused = s
        .create_mcp_client(req(mk("bot3", "custom-token-0123456"), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert!(!reused.message().contains("custom-token"));
    let bad_allow = pb::CreateMcpClientRequest {
        name: "b4".into(),
        allowed_servers: vec!["a b".into()],
        ..Default::default()
    };
    assert_eq!(
        code(s.create_mcp_client(req(bad_allow, Some(&admin))).await),
        Code::InvalidArgument
    );

    let gone = s
        .delete_mcp_client(req(
            pb::DeleteMcpClientRequest {
                name: "ghost".into(),
                wait: None,
            },
            Some(&admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (gone.code(), gone.message()),
        (Code::NotFound, "MCP client 'ghost' not found")
    );
    let nothing = pb::UpdateMcpClientRequest {
        name: "bot".into(),
        ..Default::default()
    };
    assert_eq!(
        code(s.update_mcp_client(req(nothing, Some(&admin))).await),
        Code::InvalidArgument
    );

    let last = s
        .delete_user(req(
            pb::DeleteUserRequest {
                name: "admin".into(),
                wait: None,
            },
            Some(&admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(last.code(), Code::FailedPrecondition);

    // Revoking calls report their revision and the (empty) fleet's confirmation.
    let wait = Some(pb::WaitOptions { wait_ms: 0 });
    let r = s
        .delete_mcp_client(req(
            pb::DeleteMcpClientRequest {
                name: "bot".into(),
                wait,
            },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.revision, r.confirmed, r.expected), (3, 0, 0));
}

#[tokio::test]
async fn rotated_user_token_and_grace() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    let alice = create_user(s, &admin, "alice", pb::Role::User).await;
    let update = |token: &str, grace_ms| pb::UpdateUserRequest {
        name: "alice".into(),
        access_token: token.into(),
        grace_ms,
        ..Default::default()
    };
    s.update_user(req(update("alice-second-token-1", 60_000), Some(&admin)))
        .await
        .unwrap();
    assert_eq!(
        code(s.who_am_i(req(pb::WhoAmIRequest {}, Some(&alice))).await),
        Code::Ok,
        "in grace"
    );
    assert_eq!(
        code(
            s.who_am_i(req(pb::WhoAmIRequest {}, Some("alice-second-token-1")))
                .await
        ),
        Code::Ok
    );
    s.update_user(req(update("alice-third-token-12", 0), Some(&admin)))
        .await
        .unwrap();
    assert_eq!(
        code(s.who_am_i(req(pb::WhoAmIRequest {}, Some(&alice))).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            s.who_am_i(req(pb::WhoAmIRequest {}, Some("alice-second-token-1")))
                .await
        ),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn development_mode() {
    let e = env(Mode::Development, None).await;
    let s = &e.svc;
    assert_eq!(
        code(s.list_servers(req(pb::ListServersRequest {}, None)).await),
        Code::Ok
    );
    let err = s
        .create_mcp_client(req(
            pb::CreateMcpClientRequest {
                name: "bot".into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "this command needs a server in enterprise mode (start it with --enterprise)"
    );
    assert_eq!(
        code(s.who_am_i(req(pb::WhoAmIRequest {}, None)).await),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn unreachable_upstream_stores_nothing() {
    let e = env(Mode::Development, None).await;
    let spec = pb::ServerSpec {
        name: "down".into(),
        url: "http://127.0.0.1:9/mcp".into(),
        timeout_ms: 2_000,
        ..Default::default()
    };
    let err = e
        .svc
        .register_server(req(
            pb::RegisterServerRequest {
                spec: Some(spec),
                force: false,
            },
            None,
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("'down'"), "{}", err.message());
    let servers = e
        .svc
        .list_servers(req(pb::ListServersRequest {}, None))
        .await
        .unwrap()
        .into_inner();
    assert!(servers.servers.is_empty());
    let info = server_info(&e.svc).await;
    assert_eq!(info.revision, 0);
}

#[tokio::test]
async fn tokens_never_reach_the_data_dir() {
    let (e, admin) = enterprise().await;
    let user = create_user(&e.svc, &admin, "bob", pb::Role::Admin).await;
    e.svc.store.flush().await.unwrap();
    for entry in walk(&e.dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for token in [&admin, &user] {
            let found = bytes.windows(token.len()).any(|w| w == token.as_bytes());
            assert!(!found, "token found in {}", entry.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Registers a server straight into the store (no upstream needed): tools `echo` and `add`,
/// prompt `greet`, at an address nothing listens on.
async fn put_fixture_server(svc: &AdminService) {
    let spec = serde_json::from_value(serde_json::json!({
        "name": "fx",
        "transport": "streamable_http",
        "url": "http://127.0.0.1:9/mcp",
        "timeout_ms": 2000,
    }))
    .unwrap();
    let raw = |name: &str| {
        serde_json::value::RawValue::from_string(format!(r#"{{"name":"{name}"}}"#)).unwrap()
    };
    let record = crate::store::ServerRecord {
        spec,
        tools: vec![raw("echo"), raw("add")],
        prompts: vec![raw("greet")],
        protocol_version: "2025-06-18".into(),
    };
    svc.store
        .apply(crate::store::Mutation::PutServer {
            record,
            replace: false,
        })
        .await
        .unwrap();
}

async fn create_scoped_user(
    svc: &AdminService,
    admin: &str,
    name: &str,
    role: pb::Role,
    allowed: Option<&[&str]>,
) -> Result<String, Status> {
    let r = pb::CreateUserRequest {
        name: name.into(),
        role: role.into(),
        allowed_servers: allowed.map(|a| pb::AllowList {
            entries: a.iter().map(|s| (*s).to_owned()).collect(),
        }),
        ..Default::default()
    };
    Ok(svc
        .create_user(req(r, Some(admin)))
        .await?
        .into_inner()
        .access_token)
}

async fn tool_names(svc: &AdminService, who: &str, server: &str) -> Result<Vec<String>, Status> {
    let r = pb::ListToolsRequest {
        server: server.into(),
    };
    let tools = svc.list_tools(req(r, Some(who))).await?.into_inner().tools;
    Ok(tools.into_iter().map(|t| t.name).collect())
}

async fn invoke_status(svc: &AdminService, who: &str, tool: &str) -> Status {
    let r = pb::InvokeToolRequest {
        name: tool.into(),
        arguments_json: String::new(),
    };
    svc.invoke_tool(req(r, Some(who))).await.unwrap_err()
}

async fn usage_status(svc: &AdminService, who: &str, tool: &str) -> Code {
    let r = pb::GetToolRequest { name: tool.into() };
    code(svc.get_tool(req(r, Some(who))).await)
}

fn update_scope(name: &str, allowed: &[&str]) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest {
        name: name.into(),
        allowed_servers: Some(pb::AllowList {
            entries: allowed.iter().map(|s| (*s).to_owned()).collect(),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn user_allow_list_limits_reads_and_invoke() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    put_fixture_server(s).await;
    let alice = create_scoped_user(s, &admin, "alice", pb::Role::User, Some(&["fx__echo"]))
        .await
        .unwrap();
    let bob = create_scoped_user(s, &admin, "bob", pb::Role::User, None)
        .await
        .unwrap();
    let carol = create_scoped_user(s, &admin, "carol", pb::Role::User, Some(&[]))
        .await
        .unwrap();

    // Outside the scope reads exactly like unknown: same code, same message.
    assert_eq!(tool_names(s, &alice, "").await.unwrap(), vec!["fx__echo"]);
    assert_eq!(tool_names(s, &alice, "fx").await.unwrap(), vec!["fx__echo"]);
    assert_eq!(usage_status(s, &alice, "fx__echo").await, Code::Ok);
    assert_eq!(usage_status(s, &alice, "fx__add").await, Code::NotFound);
    let hidden = invoke_status(s, &alice, "fx__add").await;
    let unknown = invoke_status(s, &alice, "fx__nope").await;
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::NotFound, "tool 'fx__add' not found")
    );
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::NotFound, "tool 'fx__nope' not found")
    );
    // In scope, the call goes to the upstream (which is down here).
    assert_eq!(
        invoke_status(s, &alice, "fx__echo").await.code(),
        Code::Unavailable
    );
    let prompts = s
        .list_prompts(req(pb::ListPromptsRequest::default(), Some(&alice)))
        .await
        .unwrap()
        .into_inner();
    assert!(prompts.prompts.is_empty(), "prompts need the whole server");
    let servers = s
        .list_servers(req(pb::ListServersRequest {}, Some(&alice)))
        .await
        .unwrap()
        .into_inner()
        .servers;
    assert_eq!(servers.len(), 1);
    assert_eq!((servers[0].tools, servers[0].prompts), (1, 0));

    // An empty list reaches nothing; the server itself is not found, like an unknown one.
    let carol_servers = s
        .list_servers(req(pb::ListServersRequest {}, Some(&carol)))
        .await
        .unwrap()
        .into_inner();
    assert!(carol_servers.servers.is_empty());
    let err = tool_names(s, &carol, "fx").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "server 'fx' not found")
    );
    assert!(tool_names(s, &carol, "").await.unwrap().is_empty());
    assert_eq!(
        invoke_status(s, &carol, "fx__echo").await.code(),
        Code::NotFound
    );

    // No --allow: everything, as before; admins are not restricted.
    for who in [&bob, &admin] {
        assert_eq!(
            tool_names(s, who, "").await.unwrap(),
            vec!["fx__echo", "fx__add"]
        );
        assert_eq!(
            invoke_status(s, who, "fx__add").await.code(),
            Code::Unavailable
        );
    }

    let users = s
        .list_users(req(pb::ListUsersRequest {}, Some(&admin)))
        .await
        .unwrap()
        .into_inner()
        .users;
    let shown: Vec<(&str, Vec<&str>)> = users
        .iter()
        .map(|u| {
            let allowed = u.allowed_servers.iter().map(String::as_str).collect();
            (u.name.as_str(), allowed)
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("admin", vec!["*"]),
            ("alice", vec!["fx__echo"]),
            ("bob", vec!["*"]),
            ("carol", vec![]),
        ]
    );
    let me = s
        .who_am_i(req(pb::WhoAmIRequest {}, Some(&alice)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.allowed_servers, vec!["fx__echo"]);

    // Updating the list takes effect on the next call; the token is kept.
    s.update_user(req(update_scope("alice", &["fx"]), Some(&admin)))
        .await
        .unwrap();
    assert_eq!(
        tool_names(s, &alice, "").await.unwrap(),
        vec!["fx__echo", "fx__add"]
    );
    let prompts = s
        .list_prompts(req(pb::ListPromptsRequest::default(), Some(&alice)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prompts.prompts.len(), 1);
    s.update_user(req(update_scope("bob", &["other"]), Some(&admin)))
        .await
        .unwrap();
    assert!(tool_names(s, &bob, "").await.unwrap().is_empty());
}

#[tokio::test]
async fn user_allow_list_bad_input() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    let bad = create_scoped_user(s, &admin, "dave", pb::Role::User, Some(&["a b"])).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let admin_scoped = create_scoped_user(s, &admin, "root", pb::Role::Admin, Some(&["fx"])).await;
    let err = admin_scoped.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("admins are not restricted"),
        "{}",
        err.message()
    );
    create_scoped_user(s, &admin, "root", pb::Role::Admin, Some(&["*"]))
        .await
        .unwrap();
    let err = s
        .update_user(req(update_scope("admin", &["fx"]), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let nothing = pb::UpdateUserRequest {
        name: "root".into(),
        ..Default::default()
    };
    assert_eq!(
        code(s.update_user(req(nothing, Some(&admin))).await),
        Code::InvalidArgument
    );
    let ghost = s
        .update_user(req(update_scope("ghost", &["fx"]), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(ghost.code(), Code::NotFound);
}

#[tokio::test]
async fn unregistered_allow_entries_are_refused_unless_forced_and_listed() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    let mk = |force| pb::CreateMcpClientRequest {
        name: "bot".into(),
        allowed_servers: vec!["pyhtp".into()],
        force,
        ..Default::default()
    };
    let refused = s
        .create_mcp_client(req(mk(false), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("'pyhtp'"),
        "{}",
        refused.message()
    );
    let created = s
        .create_mcp_client(req(mk(true), Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.client.unwrap().unknown_entries, vec!["pyhtp"]);
    let update = |force| pb::UpdateMcpClientRequest {
        name: "bot".into(),
        allowed_servers: Some(pb::AllowList {
            entries: vec!["*".into(), "gh__x".into()],
        }),
        force,
        wait: Some(pb::WaitOptions { wait_ms: 0 }),
        ..Default::default()
    };
    let refused = s
        .update_mcp_client(req(update(false), Some(&admin)))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("'gh__x'"),
        "{}",
        refused.message()
    );
    s.update_mcp_client(req(update(true), Some(&admin)))
        .await
        .unwrap();
    let listed = s
        .list_mcp_clients(req(pb::ListMcpClientsRequest {}, Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.clients[0].unknown_entries, vec!["gh__x"]);
}

#[tokio::test]
async fn new_tokens_are_generated_once_and_roles_change() {
    let (e, admin) = enterprise().await;
    let s = &e.svc;
    let old = create_user(s, &admin, "alice", pb::Role::User).await;
    let rotated = s
        .update_user(req(
            pb::UpdateUserRequest {
                name: "alice".into(),
                new_token: true,
                wait: Some(pb::WaitOptions { wait_ms: 0 }),
                ..Default::default()
            },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.access_token.starts_with("canopy_usr_"));
    assert_ne!(rotated.access_token, old);
    assert_eq!(
        code(s.who_am_i(req(pb::WhoAmIRequest {}, Some(&old))).await),
        Code::Unauthenticated
    );
    let role = |name: &str, role: pb::Role| pb::UpdateUserRequest {
        name: name.into(),
        role: role.into(),
        ..Default::default()
    };
    let promoted = s
        .update_user(req(role("alice", pb::Role::Admin), Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    assert!(promoted.access_token.is_empty() && promoted.revision > rotated.revision);
    let me = s
        .who_am_i(req(pb::WhoAmIRequest {}, Some(&rotated.access_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.role, pb::Role::Admin as i32);
    // Two admins: one may become a user; then the other is the last and may not.
    s.update_user(req(
        role("admin", pb::Role::User),
        Some(&rotated.access_token),
    ))
    .await
    .unwrap();
    let last = s
        .update_user(req(
            role("alice", pb::Role::User),
            Some(&rotated.access_token),
        ))
        .await
        .unwrap_err();
    assert_eq!(last.code(), Code::FailedPrecondition);
    assert!(last.message().contains("last admin"), "{}", last.message());

    let client = s
        .create_mcp_client(req(
            pb::CreateMcpClientRequest {
                name: "bot".into(),
                ..Default::default()
            },
            Some(&rotated.access_token),
        ))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let new = s
        .update_mcp_client(req(
            pb::UpdateMcpClientRequest {
                name: "bot".into(),
                new_token: true,
                wait: Some(pb::WaitOptions { wait_ms: 0 }),
                ..Default::default()
            },
            Some(&rotated.access_token),
        ))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    assert!(new.starts_with("canopy_mcp_") && new != client, "{new}");
}
