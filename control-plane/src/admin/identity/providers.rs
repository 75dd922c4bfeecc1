//! `create/list/update/delete identity-provider`.

use super::super::auth::Need;
use super::super::convert::{mutation_result, wait_duration};
use super::super::{AdminError, AdminService};
use super::required;
use crate::identity::{check_algorithms, check_url, fetch};
use crate::store::{IdentityMutation, Mutation, ProviderRecord, ProviderSpec};
use canopy_core::name::validate_principal_name;
use canopy_proto::v1 as pb;
use std::time::Duration;
use tonic::Request;

const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// More leeway than this would keep expired tokens working for a long time.
const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// Validates the admin's spec and fills defaults.
fn spec_from_pb(s: pb::IdentityProviderSpec) -> Result<ProviderSpec, AdminError> {
    let invalid = AdminError::InvalidArgument;
    validate_principal_name("identity provider", &s.name).map_err(|e| invalid(e.to_string()))?;
    let issuer = required("--issuer", &s.issuer)?;
    check_url("issuer", &issuer).map_err(invalid)?;
    let jwks_uri = match s.jwks_uri.trim() {
        "" => None,
        uri => {
            check_url("jwks_uri", uri).map_err(invalid)?;
            Some(uri.to_owned())
        }
    };
    let algorithms = check_algorithms(&s.algorithms).map_err(invalid)?;
    let leeway = match s.leeway_ms {
        0 => DEFAULT_LEEWAY,
        ms => Duration::from_millis(ms),
    };
    if leeway > MAX_LEEWAY {
        return Err(invalid(format!(
            "leeway {} is more than the maximum of {}",
            humantime::format_duration(leeway),
            humantime::format_duration(MAX_LEEWAY)
        )));
    }
    let claim = |v: &str, default: &str| match v.trim() {
        "" => default.to_owned(),
        c => c.to_owned(),
    };
    let list = |items: &[String]| -> Vec<String> {
        let mut out: Vec<String> = items
            .iter()
            .flat_map(|i| i.split([',', ' ']))
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        out
    };
    Ok(ProviderSpec {
        name: s.name,
        issuer,
        audiences: list(&s.audiences),
        jwks_uri,
        subject_claim: claim(&s.subject_claim, "sub"),
        groups_claim: claim(&s.groups_claim, "groups"),
        algorithms,
        leeway_ms: u64::try_from(leeway.as_millis()).unwrap_or(u64::MAX),
        ca_pem: Some(s.ca_pem).filter(|p| !p.trim().is_empty()),
        required_scopes: list(&s.required_scopes),
        admin_group: optional(&s.admin_group),
        admin_audience: match optional(&s.admin_audience) {
            Some(aud) if list(&s.audiences).contains(&aud) => {
                return Err(invalid(format!(
                    "--admin-audience {aud} is also one of the data planes' --audience values; \
                     a token for a data plane must not work on the Admin API"
                )))
            }
            other => other,
        },
        cli_client_id: optional(&s.cli_client_id),
    })
}

fn spec_to_pb(s: &ProviderSpec) -> pb::IdentityProviderSpec {
    pb::IdentityProviderSpec {
        name: s.name.clone(),
        issuer: s.issuer.clone(),
        audiences: s.audiences.clone(),
        jwks_uri: s.jwks_uri.clone().unwrap_or_default(),
        subject_claim: s.subject_claim.clone(),
        groups_claim: s.groups_claim.clone(),
        algorithms: s.algorithms.clone(),
        leeway_ms: s.leeway_ms,
        ca_pem: s.ca_pem.clone().unwrap_or_default(),
        required_scopes: s.required_scopes.clone(),
        admin_group: s.admin_group.clone().unwrap_or_default(),
        admin_audience: s.admin_audience.clone().unwrap_or_default(),
        cli_client_id: s.cli_client_id.clone().unwrap_or_default(),
    }
}

/// A trimmed text field; empty = not set.
fn optional(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The `kid`s of a stored key set ("" for a key without one).
fn key_ids(jwks_json: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(jwks_json) else {
        return Vec::new();
    };
    value
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    k.get("kid")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

impl AdminService {
    fn provider_info(&self, r: &ProviderRecord) -> pb::IdentityProviderInfo {
        let status = self.keys.status(&r.spec.name);
        pb::IdentityProviderInfo {
            spec: Some(spec_to_pb(&r.spec)),
            jwks_uri: r.endpoints.jwks_uri.clone(),
            key_ids: key_ids(&r.jwks_json),
            keys_fetched_ms: status.fetched_ms,
            last_refresh_ms: status.attempted_ms,
            last_error: status.error.unwrap_or_default(),
            keys_revision: r.keys_revision,
            authorization_endpoint: r.endpoints.authorization_endpoint.clone(),
            token_endpoint: r.endpoints.token_endpoint.clone(),
            device_authorization_endpoint: r.endpoints.device_authorization_endpoint.clone(),
            registration_endpoint: r.endpoints.registration_endpoint.clone(),
            refresh_failures: status.failures,
        }
    }

    /// Fetches discovery and keys for `spec`; the record to store.
    async fn fetched_record(&self, spec: ProviderSpec) -> Result<ProviderRecord, AdminError> {
        let found = fetch(&spec)
            .await
            .map_err(|source| AdminError::IdentityProvider {
                name: spec.name.clone(),
                source,
            })?;
        Ok(ProviderRecord {
            spec,
            endpoints: found.endpoints,
            jwks_json: found.jwks_json,
            keys_revision: 0,
        })
    }

    /// Create (`create`) or replace a provider: checks the spec and whether the name is
    /// taken, fetches discovery and keys (nothing is stored if that fails), stores it.
    /// Returns its name and the revision.
    async fn put_provider(
        &self,
        spec: Option<pb::IdentityProviderSpec>,
        create: bool,
    ) -> Result<(String, u64), AdminError> {
        let spec =
            spec.ok_or_else(|| AdminError::InvalidArgument("the provider spec is missing".into()))?;
        let spec = spec_from_pb(spec)?;
        match (create, self.store.identity_provider(&spec.name)?.is_some()) {
            (true, true) => {
                return Err(AdminError::Store(crate::store::StoreError::AlreadyExists {
                    kind: "identity provider",
                    name: spec.name,
                }))
            }
            (false, false) => {
                return Err(AdminError::NotFound {
                    kind: "identity provider",
                    name: spec.name,
                })
            }
            _ => {}
        }
        let record = self.fetched_record(spec).await?;
        let name = record.spec.name.clone();
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::PutProvider {
                record,
                create,
            }))
            .await?;
        self.keys.record_success(&name);
        let done = if create { "created" } else { "updated" };
        tracing::info!(revision, idp = %name, "identity provider {done}");
        Ok((name, revision))
    }

    pub(in crate::admin) async fn create_provider(
        &self,
        req: Request<pb::CreateIdentityProviderRequest>,
    ) -> Result<pb::CreateIdentityProviderResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let (name, revision) = self.put_provider(req.into_inner().spec, true).await?;
        let stored = self
            .store
            .identity_provider(&name)?
            .ok_or_else(|| AdminError::NotFound {
                kind: "identity provider",
                name: name.clone(),
            })?;
        Ok(pb::CreateIdentityProviderResponse {
            provider: Some(self.provider_info(&stored)),
            revision,
        })
    }

    pub(in crate::admin) fn list_providers(
        &self,
        req: Request<pb::ListIdentityProvidersRequest>,
    ) -> Result<pb::ListIdentityProvidersResponse, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let providers = self
            .store
            .identity_providers()?
            .iter()
            .map(|r| self.provider_info(r))
            .collect();
        Ok(pb::ListIdentityProvidersResponse { providers })
    }

    pub(in crate::admin) async fn update_provider(
        &self,
        req: Request<pb::UpdateIdentityProviderRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let (_, revision) = self.put_provider(req.spec, false).await?;
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }

    pub(in crate::admin) async fn delete_provider(
        &self,
        req: Request<pb::DeleteIdentityProviderRequest>,
    ) -> Result<pb::MutationResult, AdminError> {
        self.authorize(req.metadata(), Need::IdentityAdmin)?;
        let req = req.into_inner();
        let revision = self
            .store
            .apply(Mutation::Identity(IdentityMutation::DeleteProvider {
                name: req.name.clone(),
            }))
            .await?;
        self.keys.forget(&req.name);
        tracing::info!(revision, idp = %req.name, "identity provider deleted with its access rules and revocations");
        let report = self
            .fleet
            .wait_for(revision, wait_duration(req.wait.as_ref()))
            .await;
        Ok(mutation_result(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(issuer: &str) -> pb::IdentityProviderSpec {
        pb::IdentityProviderSpec {
            name: "corp".into(),
            issuer: issuer.into(),
            ..Default::default()
        }
    }

    #[test]
    fn fills_defaults_and_validates() {
        let s = spec_from_pb(pb::IdentityProviderSpec {
            audiences: vec!["b, a".into(), "a".into()],
            ..spec("https://idp.example")
        })
        .unwrap();
        assert_eq!(s.subject_claim, "sub");
        assert_eq!(s.groups_claim, "groups");
        assert_eq!(s.algorithms, vec!["ES256", "EdDSA", "RS256"]);
        assert_eq!(s.leeway_ms, 60_000);
        assert_eq!(s.audiences, vec!["a", "b"]);
        assert_eq!(s.ca_pem, None);
        assert!(spec_from_pb(spec("http://idp.example")).is_err());
        assert!(spec_from_pb(spec("")).is_err());
        assert!(spec_from_pb(pb::IdentityProviderSpec {
            leeway_ms: 3_600_000,
            ..spec("https://idp.example")
        })
        .is_err());
        assert!(spec_from_pb(pb::IdentityProviderSpec {
            algorithms: vec!["HS256".into()],
            ..spec("https://idp.example")
        })
        .is_err());
    }

    #[test]
    fn lists_key_ids() {
        assert_eq!(
            key_ids(r#"{"keys":[{"kty":"RSA","kid":"k1"},{"kty":"EC"}]}"#),
            vec!["k1", ""]
        );
        assert!(key_ids("garbage").is_empty());
    }
}
