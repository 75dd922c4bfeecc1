//! Registering, refreshing and removing upstream servers; listing servers and data planes.
//!
//! Registration discovers the server's tools and prompts first and stores nothing unless
//! that succeeds.

use super::auth::Need;
use super::convert::{mutation_result, spec_from_pb, summary, upstream_config};
use super::{AdminError, AdminService};
use crate::store::{Mutation, ServerRecord, ServerSpec, StoreError};
use canopy_mcp::upstream::{Discovery, Upstream, UpstreamError};
use canopy_proto::v1 as pb;
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
            Err(AdminError::Upstream {
                action,
                server: spec.name.clone(),
                source,
            })
        }
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

impl AdminService {
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
        let name = req.into_inner().name;
        let revision = self
            .store
            .apply(Mutation::DeleteServer { name: name.clone() })
            .await?;
        self.upstreams.remove(&name);
        tracing::info!(revision, server = %name, "server deregistered");
        // Not a revocation: report the current tally without waiting.
        Ok(mutation_result(
            self.fleet.wait_for(revision, Duration::ZERO).await,
        ))
    }

    pub(super) fn server_list(
        &self,
        req: Request<pb::ListServersRequest>,
    ) -> Result<pb::ListServersResponse, AdminError> {
        self.authorize(req.metadata(), Need::Read)?;
        let servers = self.store.servers()?.iter().map(summary).collect();
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
