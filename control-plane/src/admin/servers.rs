//! Registering, refreshing and removing upstream servers; listing servers and data planes.
//!
//! Registration discovers the server's tools and prompts first and stores nothing unless
//! that succeeds.

use super::auth::Need;
use super::convert::{
    count, mutation_result, spec_from_pb, summary, upstream_config, wait_duration,
};
use super::scope::caller_scope;
use super::tools::visible_counts;
use super::{AdminError, AdminService};
use crate::store::{Mutation, ServerRecord, ServerSpec, StoreError, Transport};
use canopy_mcp::upstream::{Discovery, Upstream, UpstreamError};
use canopy_proto::v1 as pb;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tonic::Request;

/// Ceiling of discovery during register/refresh, so an admin's command cannot hang for
/// a server's full (possibly long) call timeout.
const DISCOVERY_CEILING: Duration = Duration::from_secs(30);

async fn discover(
    action: &'static str,
    spec: &ServerSpec,
) -> Result<(Upstream, Discovery), AdminError> {
    let up = Upstream::new(upstream_config(spec));
    let limit = up.config().timeout.min(DISCOVERY_CEILING);
    let found = match tokio::time::timeout(limit, up.discover()).await {
        Ok(found) => found,
        Err(_) => Err(UpstreamError::Timeout {
            server: spec.name.clone(),
            timeout: limit,
        }),
    };
    match found {
        Ok(d) => Ok((up, d)),
        Err(source) => {
            up.shutdown().await;
            let server = spec.name.clone();
            Err(match transport_hint(spec, &source) {
                Some(hint) => AdminError::UpstreamHint {
                    action,
                    server,
                    source: Box::new(source),
                    hint,
                },
                None => AdminError::Upstream {
                    action,
                    server,
                    source,
                },
            })
        }
    }
}

/// A legacy HTTP+SSE endpoint answers a streamable-HTTP POST with 405 (it serves GET only).
fn transport_hint(spec: &ServerSpec, e: &UpstreamError) -> Option<&'static str> {
    match (spec.transport, e) {
        (Transport::StreamableHttp, UpstreamError::HttpStatus { status: 405, .. }) => Some(
            "it does not accept POST: if it is a legacy SSE endpoint, register it with --transport sse",
        ),
        _ => None,
    }
}

fn response(record: &ServerRecord, revision: u64) -> pb::RegisterServerResponse {
    let s = summary(record);
    pb::RegisterServerResponse {
        tools: s.tools,
        prompts: s.prompts,
        server: Some(s),
        revision,
    }
}

/// Whether a discovery found the catalogue `stored` already holds.
fn same_catalogue(stored: &ServerRecord, found: &Discovery) -> bool {
    let same = |a: &[Box<RawValue>], b: &[Box<RawValue>]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.get() == y.get())
    };
    stored.protocol_version == found.protocol_version
        && same(&stored.tools, &found.tools)
        && same(&stored.prompts, &found.prompts)
}

/// What the periodic re-discovery did for one server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refreshed {
    /// The catalogue changed and was stored under this revision.
    Changed(u64),
    Unchanged,
    /// Deregistered or re-registered while being discovered: left alone.
    Skipped,
}

/// Re-discovers registered servers for the periodic refresh (see `crate::refresh`),
/// sharing the admin service's live upstreams.
#[derive(Clone)]
pub(crate) struct Refresher {
    store: crate::store::Store,
    upstreams: Arc<super::upstreams::Upstreams>,
    /// A changed catalogue is a change of the control plane itself (actor `system`).
    audit: Option<crate::audit::Recorder>,
}

impl Refresher {
    pub(crate) fn store(&self) -> &crate::store::Store {
        &self.store
    }

    /// Re-discovers `stored` and stores a change only when its catalogue differs.
    /// A failure is returned (to be logged); the server stays registered as it was.
    pub(crate) async fn refresh(&self, stored: &ServerRecord) -> Result<Refreshed, AdminError> {
        let (up, found) = discover("refreshing", &stored.spec).await?;
        // Re-read: the server may have been removed or re-registered meanwhile.
        let current = match self.store.server(&stored.spec.name)? {
            Some(c) if c.spec == stored.spec => c,
            _ => {
                up.shutdown().await;
                return Ok(Refreshed::Skipped);
            }
        };
        if same_catalogue(&current, &found) {
            up.shutdown().await;
            return Ok(Refreshed::Unchanged);
        }
        let name = current.spec.name.clone();
        let object = crate::audit::change::Object::Server(name.clone());
        let before = self.audit.as_ref().map(|_| object.snapshot(&self.store));
        let mutation = Mutation::UpdateCatalogue {
            name: name.clone(),
            tools: found.tools,
            prompts: found.prompts,
            protocol_version: found.protocol_version,
        };
        match self.store.apply(mutation).await {
            Ok(revision) => {
                self.upstreams.replace(&name, up);
                if let (Some(recorder), Some(before)) = (&self.audit, before) {
                    recorder.system_change(
                        "PeriodicRefresh",
                        &object,
                        before,
                        &self.store,
                        revision,
                    );
                }
                Ok(Refreshed::Changed(revision))
            }
            Err(StoreError::NotFound { .. }) => {
                up.shutdown().await;
                Ok(Refreshed::Skipped)
            }
            Err(e) => {
                up.shutdown().await;
                Err(e.into())
            }
        }
    }
}

impl AdminService {
    /// A handle for the periodic refresh task.
    pub(crate) fn refresher(&self) -> Refresher {
        Refresher {
            store: self.store.clone(),
            upstreams: Arc::clone(&self.upstreams),
            audit: self.audit.clone(),
        }
    }

    pub(super) async fn register(
        &self,
        req: Request<pb::RegisterServerRequest>,
    ) -> Result<pb::RegisterServerResponse, AdminError> {
        self.authorize(req.metadata(), Need::Admin)?;
        let req = req.into_inner();
        let spec = spec_from_pb(req.spec.unwrap_or_default())?;
        // Checked before discovery so a duplicate does not start a stdio child; the
        // transaction checks again.
        if !req.force && self.store.server(&spec.name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "server",
                name: spec.name,
            }
            .into());
        }
        let (up, found) = discover("registering", &spec).await?;
        let name = spec.name.clone();
        let record = ServerRecord {
            spec,
            tools: found.tools,
            prompts: found.prompts,
            protocol_version: found.protocol_version,
        };
        let revision = match self
            .store
            .apply(Mutation::PutServer {
                record: record.clone(),
                replace: req.force,
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                up.shutdown().await;
                return Err(e.into());
            }
        };
        self.upstreams.replace(&name, up);
        tracing::info!(revision, server = %name, tools = record.tools.len(), prompts = record.prompts.len(), "server registered");
        Ok(response(&record, revision))
    }

    pub(super) async fn refresh(
        &self,
        req: Request<pb::RefreshServerRequest>,
    ) -> Result<pb::RegisterServerResponse, AdminError> {
        self.authorize(req.metadata(), Need::Admin)?;
        let name = req.into_inner().name;
        let stored = self.store.server(&name)?.ok_or(AdminError::NotFound {
            kind: "server",
            name: name.clone(),
        })?;
        let (up, found) = discover("refreshing", &stored.spec).await?;
        let mutation = Mutation::UpdateCatalogue {
            name: name.clone(),
            tools: found.tools,
            prompts: found.prompts,
            protocol_version: found.protocol_version,
        };
        let revision = match self.store.apply(mutation).await {
            Ok(r) => r,
            Err(e) => {
                up.shutdown().await;
                return Err(e.into());
            }
        };
        self.upstreams.replace(&name, up);
        let record = self.store.server(&name)?.ok_or(AdminError::NotFound {
            kind: "server",
            name: name.clone(),
        })?;
        tracing::info!(revision, server = %name, tools = record.tools.len(), "server refreshed");
        Ok(response(&record, revision))
    }

    pub(super) async fn deregister(
        &self,
        req: Request<pb::DeregisterServerRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::Admin)?;
        let req = req.into_inner();
        let name = req.name;
        let revision = self
            .store
            .apply(Mutation::DeleteServer { name: name.clone() })
            .await?;
        self.upstreams.remove(&name);
        tracing::info!(revision, server = %name, "server deregistered");
        // It takes the server's tools away from every client: acknowledged like a revocation.
        Ok(mutation_result(
            self.fleet
                .wait_for(revision, wait_duration(req.wait.as_ref()))
                .await,
        ))
    }

    pub(super) fn server_list(
        &self,
        req: Request<pb::ListServersRequest>,
    ) -> Result<pb::ListServersResponse, AdminError> {
        let scope = caller_scope(&self.authorize(req.metadata(), Need::Read)?);
        let servers = self
            .servers_for("", &scope)?
            .iter()
            .map(|record| {
                if scope.allows_all() {
                    return summary(record);
                }
                let (tools, prompts) = visible_counts(record, &scope);
                pb::ServerSummary {
                    tools: count(tools),
                    prompts: count(prompts),
                    ..summary(record)
                }
            })
            .collect();
        Ok(pb::ListServersResponse { servers })
    }

    pub(super) fn data_plane_list(
        &self,
        req: Request<pb::ListDataPlanesRequest>,
    ) -> Result<pb::ListDataPlanesResponse, AdminError> {
        self.authorize(req.metadata(), Need::Admin)?;
        let revision = self.store.revision();
        let data_planes = self
            .fleet
            .list()
            .into_iter()
            .map(|d| pb::DataPlaneInfo {
                lag: revision.saturating_sub(d.applied_revision),
                node_id: d.node_id,
                address: d.address,
                applied_revision: d.applied_revision,
                last_seen_ms: d.last_seen_ms,
                connected: d.connected,
            })
            .collect();
        Ok(pb::ListDataPlanesResponse {
            data_planes,
            revision,
        })
    }
}

#[cfg(test)]
mod catalogue_tests {
    use super::*;
    use crate::store::Transport;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn same_catalogue_compares_tools_prompts_and_version() {
        let record = ServerRecord {
            spec: ServerSpec {
                name: "s".into(),
                transport: Transport::StreamableHttp,
                description: String::new(),
                url: "http://127.0.0.1:1/mcp".into(),
                bearer_token: None,
                headers: Default::default(),
                command: String::new(),
                args: Vec::new(),
                env: Default::default(),
                timeout_ms: 0,
                audit_payload: Default::default(),
            },
            tools: vec![raw(r#"{"name":"a"}"#)],
            prompts: vec![],
            protocol_version: "2025-06-18".into(),
        };
        let found = |tools: &[&str], version: &str| Discovery {
            protocol_version: version.into(),
            tools: tools.iter().map(|t| raw(t)).collect(),
            prompts: vec![],
        };
        assert!(same_catalogue(
            &record,
            &found(&[r#"{"name":"a"}"#], "2025-06-18")
        ));
        assert!(!same_catalogue(
            &record,
            &found(&[r#"{"name":"b"}"#], "2025-06-18")
        ));
        assert!(!same_catalogue(
            &record,
            &found(&[r#"{"name":"a"}"#, r#"{"name":"b"}"#], "2025-06-18")
        ));
        assert!(!same_catalogue(
            &record,
            &found(&[r#"{"name":"a"}"#], "2025-11-25")
        ));
    }
}
