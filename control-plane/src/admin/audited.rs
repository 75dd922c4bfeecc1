//! The audit trail of the Admin API, in one place: every RPC runs through [`AdminService::observe`]
//! (reads) or [`AdminService::change`] (mutations), which set up the call's context (the
//! RPC name, the client address). `authorize` reports into that context: who the caller
//! is, or why they were refused (an `AuthFailureEvent`). A mutation then gets a
//! `ChangeEvent` with the object's state before and after (`crate::audit::change`
//! redacts secrets), its revision or the error the caller got.
//!
//! Events go to the recorder's queue; the call does not wait for their fsync.

use super::auth::Caller;
use super::{AdminError, AdminService, Reply};
use crate::audit::change::Object;
use canopy_proto::v1 as pb;
use pb::audit_event::Kind;
use pb::audit_principal::Kind as Who;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tonic::Response;

/// One Admin call, as the trail sees it.
struct CallContext {
    command: &'static str,
    client_address: String,
    /// Set once `authorize` let the caller in.
    actor: Mutex<Option<pb::AuditPrincipal>>,
}

tokio::task_local! {
    static CALL: Arc<CallContext>;
}

fn principal(kind: Who) -> pb::AuditPrincipal {
    pb::AuditPrincipal { kind: Some(kind) }
}

/// The actor of a caller `authorize` let in.
fn actor(caller: &Caller) -> pb::AuditPrincipal {
    principal(match (&caller.sso, &caller.name) {
        (Some(sso), _) => Who::Sso(pb::SsoPrincipal {
            idp: sso.idp.clone(),
            subject: sso.subject.clone(),
        }),
        (None, Some(name)) => Who::User(name.clone()),
        // Development mode: no users, anyone who reaches the port.
        (None, None) => Who::Anonymous(true),
    })
}

/// Why an authorization failed, without the credential; `None` for errors that are not
/// failed authentications (a server not initialized yet, development mode).
fn refusal_reason(e: &AdminError) -> Option<String> {
    match e {
        AdminError::Unauthenticated(m) if m.starts_with("missing") => Some("missing token".into()),
        AdminError::Unauthenticated(_) => Some("unknown or expired token".into()),
        AdminError::PermissionDenied(m) => Some(format!("wrong role: {m}")),
        AdminError::InitTokenMismatch => Some("wrong init token".into()),
        AdminError::InitTokenRequired => Some("missing init token".into()),
        _ => None,
    }
}

fn context(command: &'static str, client_address: String) -> Arc<CallContext> {
    Arc::new(CallContext {
        command,
        client_address,
        actor: Mutex::new(None),
    })
}

impl AdminService {
    /// What `authorize` decided, for the trail.
    pub(super) fn note_authorization(&self, result: &Result<Caller, AdminError>) {
        match result {
            Ok(caller) => self.note_actor(actor(caller)),
            Err(e) => self.note_refusal(e),
        }
    }

    /// The caller of this call is `who` (when `authorize` is not how it gets in).
    pub(super) fn note_actor(&self, who: pb::AuditPrincipal) {
        let _ = CALL.try_with(|c| {
            *c.actor.lock().unwrap_or_else(PoisonError::into_inner) = Some(who);
        });
    }

    pub(super) fn note_refusal(&self, e: &AdminError) {
        let (Some(recorder), Some(reason)) = (&self.audit, refusal_reason(e)) else {
            return;
        };
        let (command, address) = CALL
            .try_with(|c| (c.command, c.client_address.clone()))
            .unwrap_or_default();
        recorder.auth_failure("admin", command, &address, &reason);
    }

    /// Runs a call that changes nothing (only failed authentications are recorded).
    pub(super) async fn observe<T>(
        &self,
        command: &'static str,
        client_address: String,
        call: impl Future<Output = Result<T, AdminError>>,
    ) -> Reply<T> {
        let result = CALL.scope(context(command, client_address), call).await;
        result.map(Response::new).map_err(Into::into)
    }

    /// Runs a mutation and records its change event.
    pub(super) async fn change<T>(
        &self,
        command: &'static str,
        client_address: String,
        object: Object,
        revision: impl FnOnce(&T) -> u64,
        call: impl Future<Output = Result<T, AdminError>>,
    ) -> Reply<T> {
        let Some(recorder) = self.audit.clone() else {
            return self.observe(command, client_address, call).await;
        };
        let before = object.snapshot(&self.store);
        let ctx = context(command, client_address);
        let result = CALL.scope(Arc::clone(&ctx), call).await;
        let who = ctx
            .actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Not let in: the auth-failure event already says so.
        if let Some(who) = who {
            let (revision, error) = match &result {
                Ok(r) => (revision(r), String::new()),
                Err(e) => (0, e.to_string()),
            };
            recorder.record(Kind::Change(pb::ChangeEvent {
                actor: Some(who),
                command: command.to_owned(),
                object_kind: object.kind().to_owned(),
                object_name: object.name(),
                before,
                after: object.snapshot(&self.store),
                revision,
                error,
                client_address: ctx.client_address.clone(),
            }));
        }
        result.map(Response::new).map_err(Into::into)
    }

    /// `authorize` for another service's admin-only call (the Audit service's listings),
    /// recorded like an Admin call.
    pub(crate) fn authorize_admin(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        command: &'static str,
        client_address: String,
    ) -> Result<(), tonic::Status> {
        CALL.sync_scope(context(command, client_address), || {
            self.authorize(metadata, super::auth::Need::Admin)
        })
        .map(|_| ())
        .map_err(Into::into)
    }
}
