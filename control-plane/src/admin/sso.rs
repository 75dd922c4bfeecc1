//! People signed in with an identity provider on the Admin API (`canopy login --sso`).
//!
//! `GetSsoConfig` (unauthenticated, no secrets) tells the CLI where to sign in: the
//! provider's endpoints, the CLI's public client id, the Admin API's audience and scopes.
//! The CLI then sends the provider's JWT access token like a static token; [`sso_caller`]
//! checks it from the stored keys ([`verify`]) and makes a [`Caller`]: an admin when the
//! provider's groups claim holds its `admin_group`, else a user whose scope is the union of
//! the provider's access rules that match (like on a data plane). A revoked subject is
//! refused here as on every data plane.
//!
//! [`sso_caller`]: AdminService::sso_caller

mod verify;

pub(super) use verify::KeyCache;

use super::auth::{Caller, SsoIdentity};
use super::identity::matcher;
use super::{AdminError, AdminService};
use crate::store::{ProviderRecord, Role};
use canopy_core::access::{evaluate, ClaimView};
use canopy_proto::v1 as pb;
use tonic::Request;
use verify::Refused;

/// Scopes the CLI asks for: an ID token is not needed, but `openid` makes OpenID providers
/// behave as documented; `offline_access` asks for the refresh token kept in the config file.
const CLI_SCOPES: &[&str] = &["openid", "offline_access"];

impl AdminService {
    /// The audience the Admin API accepts from `p`, if any.
    fn admin_audience(&self, p: &ProviderRecord) -> Option<String> {
        p.spec
            .admin_audience
            .clone()
            .or_else(|| self.public_url.clone())
    }

    pub(super) fn sso_config(
        &self,
        req: Request<pb::GetSsoConfigRequest>,
    ) -> Result<pb::SsoConfig, AdminError> {
        let wanted = req.into_inner().idp;
        let wanted = wanted.trim();
        let offered: Vec<ProviderRecord> = self
            .store
            .identity_providers()?
            .into_iter()
            .filter(|p| p.spec.cli_client_id.is_some())
            .collect();
        let provider = if wanted.is_empty() {
            match offered.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(AdminError::SsoNotOffered(
                        "no identity provider is set up for `canopy login --sso` \
                         (an admin sets one with `canopy update identity-provider NAME --cli-client-id ID`)"
                            .into(),
                    ))
                }
                many => {
                    let names: Vec<&str> = many.iter().map(|p| p.spec.name.as_str()).collect();
                    return Err(AdminError::InvalidArgument(format!(
                        "several identity providers offer sign-in; choose one with --idp ({})",
                        names.join(", ")
                    )));
                }
            }
        } else {
            offered
                .into_iter()
                .find(|p| p.spec.name == wanted)
                .ok_or_else(|| {
                    AdminError::SsoNotOffered(format!(
                        "identity provider '{wanted}' does not exist or is not set up for `canopy login --sso`"
                    ))
                })?
        };
        let audience = self.admin_audience(&provider).ok_or_else(|| {
            AdminError::SsoNotOffered(format!(
                "identity provider '{}' has no --admin-audience and the control plane no --public-url: \
                 the Admin API has no audience to accept tokens for",
                provider.spec.name
            ))
        })?;
        if provider.endpoints.authorization_endpoint.is_empty()
            || provider.endpoints.token_endpoint.is_empty()
        {
            return Err(AdminError::SsoNotOffered(format!(
                "identity provider '{}' advertises no authorization or token endpoint in its discovery document",
                provider.spec.name
            )));
        }
        let mut scopes: Vec<String> = CLI_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        scopes.extend(provider.spec.required_scopes.iter().cloned());
        Ok(pb::SsoConfig {
            idp: provider.spec.name,
            issuer: provider.spec.issuer,
            client_id: provider.spec.cli_client_id.unwrap_or_default(),
            audience,
            scopes,
            authorization_endpoint: provider.endpoints.authorization_endpoint,
            token_endpoint: provider.endpoints.token_endpoint,
            device_authorization_endpoint: provider.endpoints.device_authorization_endpoint,
        })
    }

    /// The person holding `token`, a JWT access token of one of the identity providers;
    /// `Ok(None)` when no provider issued it (the caller says "invalid token").
    pub(super) fn sso_caller(&self, token: &str) -> Result<Option<Caller>, AdminError> {
        let Some(iss) = verify::issuer_of(token) else {
            return Ok(None);
        };
        let Some(provider) = self
            .store
            .identity_providers()?
            .into_iter()
            .find(|p| p.spec.issuer == iss)
        else {
            return Ok(None);
        };
        let Some(audience) = self.admin_audience(&provider) else {
            return Err(AdminError::Unauthenticated(
                "the Admin API accepts no tokens of this identity provider (no admin audience configured)",
            ));
        };
        let claims = match verify::verify(&self.sso_keys, &provider, &audience, token) {
            Ok(c) => c,
            Err(refused) => {
                if let Refused::UnknownKid { kid } = &refused {
                    // The same prompt re-fetch (with its cooldown) a data plane's report starts.
                    self.keys.unknown_key(&iss, kid);
                }
                tracing::info!(idp = %provider.spec.name, reason = %refused, "Admin API refused an identity provider token");
                return Err(AdminError::Unauthenticated(refused.message()));
            }
        };
        let spec = &provider.spec;
        let view = ClaimView::from_claims(&claims, &spec.subject_claim, &spec.groups_claim);
        let Some(subject) = view.subject.clone().filter(|s| !s.is_empty()) else {
            return Err(AdminError::Unauthenticated(
                "the access token names no subject",
            ));
        };
        if self.store.is_revoked(&spec.name, &subject)? {
            tracing::info!(idp = %spec.name, subject = %subject, "Admin API refused a revoked subject");
            return Err(AdminError::Unauthenticated(
                "access revoked for this person (`canopy revoke subject`)",
            ));
        }
        let admin = spec
            .admin_group
            .as_deref()
            .is_some_and(|g| view.groups.iter().any(|have| have == g));
        let rules = self
            .store
            .access_rules()?
            .iter()
            .filter(|r| r.idp == spec.name)
            .map(matcher)
            .collect::<Result<Vec<_>, _>>()?;
        let allowed = evaluate(&rules, &view).allow;
        Ok(Some(Caller {
            name: Some(subject.clone()),
            role: if admin { Role::Admin } else { Role::User },
            allowed,
            sso: Some(SsoIdentity {
                idp: spec.name.clone(),
                subject,
            }),
        }))
    }
}
