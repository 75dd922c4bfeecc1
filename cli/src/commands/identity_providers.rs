//! `create|list|update|delete identity-provider`: whose access tokens data planes accept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::args::{CreateIdpArgs, DeleteArgs, IdpSettings, UpdateIdpArgs};
use crate::commands::{send_mutation, wait_options, Ctx, Outcome};
use crate::conf_file::{read_json, ConfFileError};
use crate::error::CliError;
use crate::output::{now_ms, relative_time, table};

/// A provider file (`create identity-provider -c FILE`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_uri: Option<String>,
    subject_claim: Option<String>,
    groups_claim: Option<String>,
    #[serde(default)]
    algorithms: Vec<String>,
    /// A duration such as "60s".
    leeway: Option<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    /// Relative to the file's directory.
    ca_file: Option<PathBuf>,
    admin_group: Option<String>,
    admin_audience: Option<String>,
    cli_client_id: Option<String>,
}

fn read_ca(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn load_file(path: &Path) -> Result<pb::IdentityProviderSpec, CliError> {
    let f: ProviderFile = read_json(path)?;
    let invalid = |message: String| ConfFileError::Invalid {
        path: path.to_owned(),
        message,
    };
    let leeway_ms = match &f.leeway {
        Some(l) => {
            millis(crate::args::parse_duration(l).map_err(|e| invalid(format!("leeway: {e}")))?)
        }
        None => 0,
    };
    let ca_pem = match f.ca_file {
        Some(ca) => {
            let ca = match path.parent() {
                Some(dir) if ca.is_relative() => dir.join(ca),
                _ => ca,
            };
            read_ca(&ca)?
        }
        None => String::new(),
    };
    Ok(pb::IdentityProviderSpec {
        name: f.name,
        issuer: f.issuer,
        audiences: f.audiences,
        jwks_uri: f.jwks_uri.unwrap_or_default(),
        subject_claim: f.subject_claim.unwrap_or_default(),
        groups_claim: f.groups_claim.unwrap_or_default(),
        algorithms: f.algorithms,
        leeway_ms,
        ca_pem,
        required_scopes: f.required_scopes,
        admin_group: f.admin_group.unwrap_or_default(),
        admin_audience: f.admin_audience.unwrap_or_default(),
        cli_client_id: f.cli_client_id.unwrap_or_default(),
    })
}

/// Lays the flags given over `spec`.
fn apply_settings(spec: &mut pb::IdentityProviderSpec, s: IdpSettings) -> Result<(), CliError> {
    if let Some(v) = s.issuer {
        spec.issuer = v;
    }
    if !s.audiences.is_empty() {
        spec.audiences = s.audiences;
    }
    if let Some(v) = s.jwks_uri {
        spec.jwks_uri = v;
    }
    if let Some(v) = s.subject_claim {
        spec.subject_claim = v;
    }
    if let Some(v) = s.groups_claim {
        spec.groups_claim = v;
    }
    if let Some(v) = s.algorithms {
        spec.algorithms = v.split(',').map(|a| a.trim().to_owned()).collect();
    }
    if let Some(v) = s.leeway {
        spec.leeway_ms = millis(v).max(1);
    }
    if !s.required_scopes.is_empty() {
        spec.required_scopes = s.required_scopes;
    }
    if let Some(v) = s.admin_group {
        spec.admin_group = v;
    }
    if let Some(v) = s.admin_audience {
        spec.admin_audience = v;
    }
    if let Some(v) = s.cli_client_id {
        spec.cli_client_id = v;
    }
    if let Some(ca) = s.issuer_ca_file {
        spec.ca_pem = read_ca(&ca)?;
    }
    Ok(())
}

/// `list identity-providers` JSON: one object per provider (no CA certificates).
#[derive(Debug, Serialize)]
pub struct ProviderJson {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: String,
    pub subject_claim: String,
    pub groups_claim: String,
    pub algorithms: Vec<String>,
    pub leeway_ms: u64,
    pub required_scopes: Vec<String>,
    pub private_ca: bool,
    pub key_ids: Vec<String>,
    /// The revision that last changed the keys.
    pub keys_revision: u64,
    /// Unix ms of the last successful key fetch by this control plane (0 = none since it started).
    pub keys_fetched_ms: u64,
    /// Unix ms of the last refresh attempt.
    pub last_refresh_ms: u64,
    /// Why the last refresh failed (null when it succeeded).
    pub last_error: Option<String>,
    pub refresh_failures: u32,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// `canopy login --sso`: its admins' group, the Admin API audience (null = the control
    /// plane's public URL) and the CLI's client id (null = no CLI sign-in).
    pub admin_group: Option<String>,
    pub admin_audience: Option<String>,
    pub cli_client_id: Option<String>,
}

impl From<pb::IdentityProviderInfo> for ProviderJson {
    fn from(p: pb::IdentityProviderInfo) -> Self {
        let spec = p.spec.unwrap_or_default();
        Self {
            name: spec.name,
            issuer: spec.issuer,
            audiences: spec.audiences,
            jwks_uri: p.jwks_uri,
            subject_claim: spec.subject_claim,
            groups_claim: spec.groups_claim,
            algorithms: spec.algorithms,
            leeway_ms: spec.leeway_ms,
            required_scopes: spec.required_scopes,
            private_ca: !spec.ca_pem.is_empty(),
            key_ids: p.key_ids,
            keys_revision: p.keys_revision,
            keys_fetched_ms: p.keys_fetched_ms,
            last_refresh_ms: p.last_refresh_ms,
            last_error: Some(p.last_error).filter(|e| !e.is_empty()),
            refresh_failures: p.refresh_failures,
            authorization_endpoint: p.authorization_endpoint,
            token_endpoint: p.token_endpoint,
            admin_group: Some(spec.admin_group).filter(|v| !v.is_empty()),
            admin_audience: Some(spec.admin_audience).filter(|v| !v.is_empty()),
            cli_client_id: Some(spec.cli_client_id).filter(|v| !v.is_empty()),
        }
    }
}

pub async fn create(ctx: &Ctx, args: CreateIdpArgs) -> Result<(), CliError> {
    let spec = match (&args.conf, args.name) {
        (Some(path), _) => {
            if !args.settings.is_empty() {
                return Err(CliError::usage(
                    "give the provider either in a file (-c) or with flags, not both",
                ));
            }
            load_file(path)?
        }
        (None, Some(name)) => {
            canopy_core::name::validate_principal_name("identity provider", &name)?;
            if args.settings.issuer.is_none() {
                return Err(CliError::usage("--issuer is required"));
            }
            let mut spec = pb::IdentityProviderSpec {
                name,
                ..Default::default()
            };
            apply_settings(&mut spec, args.settings)?;
            spec
        }
        (None, None) => return Err(CliError::usage("give a provider name or -c FILE")),
    };
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(
            a.rpc
                .create_identity_provider(pb::CreateIdentityProviderRequest { spec: Some(spec) }),
        )
        .await?;
    let provider = ProviderJson::from(resp.provider.unwrap_or_default());
    ctx.emit(&provider, || {
        format!(
            "Identity provider '{}' created (revision {}): issuer {}, {} key(s) from {}.",
            provider.name,
            resp.revision,
            provider.issuer,
            provider.key_ids.len(),
            provider.jwks_uri
        )
    })
}

pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(
            a.rpc
                .list_identity_providers(pb::ListIdentityProvidersRequest {}),
        )
        .await?;
    let providers: Vec<ProviderJson> = resp.providers.into_iter().map(Into::into).collect();
    ctx.emit(&providers, || render(&providers, now_ms()))
}

fn render(providers: &[ProviderJson], now: u64) -> String {
    let rows: Vec<Vec<String>> = providers
        .iter()
        .map(|p| {
            let refresh = match &p.last_error {
                Some(e) => format!("FAILED {}: {e}", relative_time(now, p.last_refresh_ms)),
                None if p.last_refresh_ms == 0 => "-".into(),
                None => format!("ok {}", relative_time(now, p.last_refresh_ms)),
            };
            vec![
                p.name.clone(),
                p.issuer.clone(),
                p.key_ids.len().to_string(),
                p.algorithms.join(","),
                refresh,
            ]
        })
        .collect();
    table(
        &["NAME", "ISSUER", "KEYS", "ALGORITHMS", "LAST REFRESH"],
        &rows,
        "No identity providers. Add one with `canopy create identity-provider NAME --issuer URL`.\n",
    )
}

pub async fn update(ctx: &Ctx, args: UpdateIdpArgs) -> Result<(), CliError> {
    if args.settings.is_empty() {
        return Err(CliError::usage(
            "nothing to update: give at least one setting (see --help)",
        ));
    }
    let mut a = ctx.admin()?;
    let current =
        a.at.call(
            a.rpc
                .list_identity_providers(pb::ListIdentityProvidersRequest {}),
        )
        .await?
        .providers
        .into_iter()
        .filter_map(|p| p.spec)
        .find(|s| s.name == args.name)
        .ok_or_else(|| CliError::Other(format!("identity provider '{}' not found", args.name)))?;
    let mut spec = current;
    apply_settings(&mut spec, args.settings)?;
    let req = pb::UpdateIdentityProviderRequest {
        spec: Some(spec),
        wait: wait_options(args.wait.wait),
    };
    let headline = Outcome::new(
        format!("Identity provider '{}' updated.", args.name),
        format!("The update of identity provider '{}'", args.name),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.update_identity_provider(req),
        &headline,
    )
    .await
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let req = pb::DeleteIdentityProviderRequest {
        name: args.name.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let headline = Outcome::new(
        format!(
            "Identity provider '{}' deleted with its access rules and revocations; its tokens no longer work.",
            args.name
        ),
        format!("The deletion of identity provider '{}'", args.name),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.delete_identity_provider(req),
        &headline,
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn file_is_strict_and_reads_ca_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        let path = dir.path().join("idp.json");
        std::fs::write(
            &path,
            r#"{"name": "corp", "issuer": "https://idp.example", "leeway": "30s", "ca_file": "ca.pem"}"#,
        )
        .unwrap();
        let spec = load_file(&path).unwrap();
        assert_eq!(spec.leeway_ms, 30_000);
        assert_eq!(spec.ca_pem, "PEM");
        std::fs::write(&path, r#"{"name": "corp", "issuer": "x", "audience": "a"}"#).unwrap();
        assert!(load_file(&path)
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
    }

    #[test]
    fn flags_replace_only_what_is_given() {
        let mut spec = pb::IdentityProviderSpec {
            name: "corp".into(),
            issuer: "https://a".into(),
            audiences: vec!["x".into()],
            ..Default::default()
        };
        apply_settings(
            &mut spec,
            IdpSettings {
                algorithms: Some("RS256, ES256".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(spec.issuer, "https://a");
        assert_eq!(spec.audiences, vec!["x"]);
        assert_eq!(spec.algorithms, vec!["RS256", "ES256"]);
    }
}
