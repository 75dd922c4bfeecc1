#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! The Audit service and the Admin service's events, on a whole control plane over a
//! loopback socket.

use crate::{serve, ControlPlaneConfig};
use canopy_proto::v1 as pb;
use pb::admin_client::AdminClient;
use pb::audit_client::AuditClient;
use pb::audit_event::Kind;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request};

const DP_TOKEN: &str = "dp-token-for-the-audit-tests-0123456789";

struct Cp {
    _dir: tempfile::TempDir,
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), crate::ControlPlaneError>>,
    admin_token: String,
}

impl Cp {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ControlPlaneConfig::new(dir.path());
        config.enterprise = true;
        config.data_plane_token = Some(DP_TOKEN.into());
        config.refresh_interval = None;
        config.idp_refresh_interval = None;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(config, listener, async move {
            let _ = stopped.await;
        }));
        let channel = loop {
            match Channel::from_shared(url.clone()).unwrap().connect().await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        let admin_token = AdminClient::new(channel.clone())
            .init_server(pb::InitServerRequest::default())
            .await
            .unwrap()
            .into_inner()
            .access_token;
        Self {
            _dir: dir,
            channel,
            stop: Some(stop),
            server,
            admin_token,
        }
    }

    fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    fn audit(&self) -> AuditClient<Channel> {
        AuditClient::new(self.channel.clone())
    }

    /// Every stored event that matches `filter`, newest first (polled until `want` of them
    /// are there: control-plane events are written off the caller's path).
    async fn events(&self, filter: pb::AuditFilter, want: usize) -> Vec<pb::AuditEvent> {
        for _ in 0..500 {
            let events = self
                .audit()
                .list_audit_events(with(
                    pb::ListAuditEventsRequest {
                        filter: Some(filter.clone()),
                        limit: 1000,
                        ..Default::default()
                    },
                    &self.admin_token,
                ))
                .await
                .unwrap()
                .into_inner()
                .events;
            if events.len() >= want {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("fewer than {want} events matching {filter:?}");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        self.server.await.unwrap().unwrap();
    }
}

fn with<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn kinds(k: &str) -> pb::AuditFilter {
    pb::AuditFilter {
        kinds: vec![k.into()],
        ..Default::default()
    }
}

fn change(e: &pb::AuditEvent) -> &pb::ChangeEvent {
    match &e.kind {
        Some(Kind::Change(c)) => c,
        other => panic!("not a change: {other:?}"),
    }
}

fn batch(seq: u64, ids: std::ops::Range<u32>) -> pb::AuditBatch {
    pb::AuditBatch {
        seq,
        node_id: "dp-test".into(),
        events: ids
            .map(|n| super::tests::request(n, "client-a", "files", "read", true))
            .collect(),
    }
}

#[tokio::test]
async fn admin_changes_are_recorded_with_redacted_secrets_and_refusals() {
    let cp = Cp::start().await;
    let admin = cp.admin_token.clone();
    let created = cp
        .admin()
        .create_mcp_client(with(
            pb::CreateMcpClientRequest {
                name: "c1".into(),
                allowed_servers: vec!["*".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let client_token = created.access_token.clone();
    cp.admin()
        .update_mcp_client(with(
            pb::UpdateMcpClientRequest {
                name: "c1".into(),
                description: Some("the first".into()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    // Refused after authorization: recorded with its error.
    let missing = cp
        .admin()
        .delete_mcp_client(with(
            pb::DeleteMcpClientRequest {
                name: "nobody".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Failed authentications: no token, a wrong one, a user's token on an admin call.
    let denied = cp
        .admin()
        .list_mcp_clients(pb::ListMcpClientsRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let wrong = "canopy_user_wrongwrongwrongwrongwrongwrong";
    assert!(cp
        .admin()
        .list_users(with(pb::ListUsersRequest {}, wrong))
        .await
        .is_err());
    let user_token = cp
        .admin()
        .create_user(with(
            pb::CreateUserRequest {
                name: "bob".into(),
                role: pb::Role::User.into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let refused = cp
        .admin()
        .delete_mcp_client(with(
            pb::DeleteMcpClientRequest {
                name: "c1".into(),
                ..Default::default()
            },
            &user_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // InitServer, CreateMcpClient, UpdateMcpClient, DeleteMcpClient (refused), CreateUser.
    let changes = cp.events(kinds("change"), 5).await;
    assert_eq!(changes.len(), 5, "{changes:#?}");
    let commands: Vec<_> = changes.iter().map(|e| change(e).command.as_str()).collect();
    assert_eq!(
        commands,
        [
            "CreateUser",
            "DeleteMcpClient",
            "UpdateMcpClient",
            "CreateMcpClient",
            "InitServer"
        ]
    );
    let create = change(&changes[3]);
    assert_eq!(create.object_kind, "mcp-client");
    assert_eq!(create.object_name, "c1");
    assert_eq!(create.before, "");
    assert_eq!(create.revision, created.revision);
    assert!(create.error.is_empty());
    let after: serde_json::Value = serde_json::from_str(&create.after).unwrap();
    assert_eq!(after["tokens"][0]["hash"], "redacted");
    assert!(matches!(
        create.actor.as_ref().and_then(|a| a.kind.as_ref()),
        Some(pb::audit_principal::Kind::User(u)) if u == "admin"
    ));
    assert!(create.client_address.starts_with("127.0.0.1:"));
    let update = change(&changes[2]);
    assert_eq!(update.before, create.after);
    assert!(update.after.contains("the first"));
    let refused_delete = change(&changes[1]);
    assert_eq!(refused_delete.revision, 0);
    assert!(
        refused_delete.error.contains("not found"),
        "{refused_delete:?}"
    );

    let failures = cp.events(kinds("auth-failure"), 3).await;
    let reasons: Vec<_> = failures
        .iter()
        .map(|e| match &e.kind {
            Some(Kind::AuthFailure(a)) => (a.command.as_str(), a.reason.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reasons[2], ("ListMcpClients", "missing token"));
    assert_eq!(reasons[1], ("ListUsers", "unknown or expired token"));
    assert_eq!(reasons[0].0, "DeleteMcpClient");
    assert!(reasons[0].1.starts_with("wrong role"), "{reasons:?}");

    // No token text anywhere in the trail.
    let all = cp.events(pb::AuditFilter::default(), 8).await;
    let text = format!("{all:?}");
    for secret in [&admin, &client_token, &user_token, &wrong.to_owned()] {
        assert!(!text.contains(secret.as_str()));
    }
    cp.stop().await;
}

#[tokio::test]
async fn ship_acks_after_the_write_and_counts_duplicates() {
    let cp = Cp::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = cp
        .audit()
        .ship(with(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            DP_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    tx.send(batch(1, 0..20)).await.unwrap();
    let first = acks.message().await.unwrap().unwrap();
    assert_eq!((first.seq, first.stored, first.duplicates), (1, 20, 0));
    // Acknowledged means stored: listed at once.
    let listed = cp.events(kinds("request"), 0).await;
    assert_eq!(listed.len(), 20);
    // The same batch again (a retry) and a new one overlapping it.
    tx.send(batch(2, 0..20)).await.unwrap();
    tx.send(batch(3, 15..25)).await.unwrap();
    let second = acks.message().await.unwrap().unwrap();
    assert_eq!((second.seq, second.stored, second.duplicates), (2, 0, 20));
    let third = acks.message().await.unwrap().unwrap();
    assert_eq!((third.seq, third.stored, third.duplicates), (3, 5, 5));
    // Too many events in one batch: a clear error ends the stream.
    tx.send(batch(4, 0..(super::MAX_BATCH_EVENTS as u32 + 1)))
        .await
        .unwrap();
    let too_large = acks.message().await.unwrap_err();
    assert_eq!(too_large.code(), Code::ResourceExhausted);
    assert!(too_large.message().contains("at most"), "{too_large}");
    drop(tx);
    assert_eq!(cp.events(kinds("request"), 25).await.len(), 25);
    cp.stop().await;
}

#[tokio::test]
async fn ship_needs_the_data_plane_token_and_listing_needs_an_admin() {
    let cp = Cp::start().await;
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::AuditBatch>(1);
    let refused = cp
        .audit()
        .ship(with(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &cp.admin_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::AuditBatch>(1);
    let anonymous = cp
        .audit()
        .ship(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // The data-plane token is no admin token; a user is no admin.
    let list = pb::ListAuditEventsRequest::default();
    let as_dp = cp
        .audit()
        .list_audit_events(with(list.clone(), DP_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(as_dp.code(), Code::Unauthenticated);
    let user = cp
        .admin()
        .create_user(with(
            pb::CreateUserRequest {
                name: "ann".into(),
                role: pb::Role::User.into(),
                ..Default::default()
            },
            &cp.admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let as_user = cp
        .audit()
        .list_audit_events(with(list.clone(), &user))
        .await
        .unwrap_err();
    assert_eq!(as_user.code(), Code::PermissionDenied);
    let tail_as_user = cp
        .audit()
        .tail_audit_events(with(pb::TailAuditEventsRequest::default(), &user))
        .await
        .unwrap_err();
    assert_eq!(tail_as_user.code(), Code::PermissionDenied);

    let failures = cp.events(kinds("auth-failure"), 5).await;
    let surfaces: Vec<_> = failures
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::AuthFailure(a)) => Some((a.surface.as_str(), a.command.as_str())),
            _ => None,
        })
        .collect();
    assert!(surfaces.contains(&("audit", "Ship")), "{surfaces:?}");
    assert!(
        surfaces.contains(&("admin", "ListAuditEvents")),
        "{surfaces:?}"
    );
    assert!(
        surfaces.contains(&("admin", "TailAuditEvents")),
        "{surfaces:?}"
    );
    cp.stop().await;
}

#[tokio::test]
async fn tail_sends_the_backlog_then_live_events_that_match() {
    let cp = Cp::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = cp
        .audit()
        .ship(with(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            DP_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    tx.send(batch(1, 0..3)).await.unwrap();
    acks.message().await.unwrap().unwrap();
    let mut tail = cp
        .audit()
        .tail_audit_events(with(
            pb::TailAuditEventsRequest {
                filter: Some(kinds("request")),
                backlog: 2,
            },
            &cp.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    // The last two stored, oldest first.
    let a = tail.message().await.unwrap().unwrap();
    let b = tail.message().await.unwrap().unwrap();
    assert!(a.time_unix_nanos < b.time_unix_nanos);
    assert_eq!(b.id, batch(0, 2..3).events[0].id);
    tx.send(batch(2, 10..11)).await.unwrap();
    acks.message().await.unwrap().unwrap();
    let live = tail.message().await.unwrap().unwrap();
    assert_eq!(live.id, batch(0, 10..11).events[0].id);
    drop(tail);
    drop(tx);
    cp.stop().await;
}
