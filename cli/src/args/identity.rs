//! Command-line types of identity providers, access rules and revocations.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use super::{parse_duration, WaitArg};

/// Settings of an identity provider shared by `create` and `update`.
#[derive(Debug, Args, Default)]
pub struct IdpSettings {
    /// The issuer URL (`iss` of its tokens); its discovery document is read from it
    /// (OpenID Connect or RFC 8414). https, or http on loopback only.
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// An extra accepted `aud` besides each data plane's own resource URL (repeatable;
    /// e.g. Entra ID's `api://...`). On `update`, replaces the list (`--audience ""` clears it).
    #[arg(long = "audience", value_name = "AUD")]
    pub audiences: Vec<String>,

    /// The JWKS URL, when discovery does not name one (or names the wrong one); on `update`,
    /// `""` goes back to the discovered one.
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,

    /// The claim that names the person (default `sub`).
    #[arg(long, value_name = "CLAIM")]
    pub subject_claim: Option<String>,

    /// The claim holding the person's groups, a string or a list (default `groups`;
    /// a dotted path such as `realm_access.roles` reads a nested claim).
    #[arg(long, value_name = "CLAIM")]
    pub groups_claim: Option<String>,

    /// Comma-separated JWS algorithms accepted (default RS256,ES256,EdDSA; also RS384,
    /// RS512, PS256, PS384, PS512, ES384). `none` and HS* are never accepted.
    #[arg(long, value_name = "LIST")]
    pub algorithms: Option<String>,

    /// Clock skew allowed on `exp` and `nbf` (default 60s, at most 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub leeway: Option<Duration>,

    /// A scope every token must carry (repeatable); a token without it gets 403
    /// insufficient_scope. On `update`, replaces the list (`--required-scope ""` clears it).
    #[arg(long = "required-scope", value_name = "SCOPE")]
    pub required_scopes: Vec<String>,

    /// PEM file of the CA certificate(s) that signed the issuer's https certificate (a
    /// private CA). On this command `--ca-file` is the issuer's CA, not the registry's.
    #[arg(
        long = "ca-file",
        id = "issuer_ca_file",
        alias = "issuer-ca-file",
        value_name = "FILE"
    )]
    pub issuer_ca_file: Option<PathBuf>,

    /// The registry's CA on this command, where `--ca-file` is the issuer's: the same
    /// as the global `--ca-file` (which may also be written before the subcommand),
    /// CANOPY_CA_FILE or the one saved in the config file.
    ///
    /// Its id is the global `--ca-file`'s: clap then keeps the global flag out of this
    /// command (so `--ca-file` here is free for the issuer) and merges this value with
    /// the global one into `Cli::ca_file`.
    #[arg(
        long = "registry-ca-file",
        id = "ca_file",
        env = "CANOPY_CA_FILE",
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub registry_ca_file: Option<PathBuf>,

    /// `canopy login --sso`: people whose groups claim holds this group are admins on the
    /// Admin API, everyone else signed in through this provider is a user. Empty ("")
    /// clears it (then nobody signed in through this provider is an admin).
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,

    /// `canopy login --sso`: the `aud` the Admin API accepts from this provider (default:
    /// the control plane's `--public-url`). Must not be one of the data planes' audiences.
    #[arg(long, value_name = "AUD")]
    pub admin_audience: Option<String>,

    /// `canopy login --sso`: the OAuth client id the CLI signs in as, registered at the
    /// provider as a public (native) client with the redirect URI
    /// `http://127.0.0.1/callback` (any port) and, for `--device-code`, the device grant.
    /// Empty ("") turns CLI sign-in with this provider off.
    #[arg(long, value_name = "ID")]
    pub cli_client_id: Option<String>,
}

impl IdpSettings {
    pub fn is_empty(&self) -> bool {
        self.issuer.is_none()
            && self.audiences.is_empty()
            && self.jwks_uri.is_none()
            && self.subject_claim.is_none()
            && self.groups_claim.is_none()
            && self.algorithms.is_none()
            && self.leeway.is_none()
            && self.required_scopes.is_empty()
            && self.issuer_ca_file.is_none()
            && self.admin_group.is_none()
            && self.admin_audience.is_none()
            && self.cli_client_id.is_none()
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "conf"])))]
pub struct CreateIdpArgs {
    /// Unique provider name (letters, digits, '_' and '-').
    pub name: Option<String>,

    #[command(flatten)]
    pub settings: IdpSettings,

    /// Read the provider's definition from a JSON file instead of flags.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub conf: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpdateIdpArgs {
    /// The provider's name.
    pub name: String,

    #[command(flatten)]
    pub settings: IdpSettings,

    #[command(flatten)]
    pub wait: WaitArg,
}

/// Who an access rule applies to. Conditions of one kind are alternatives; different
/// kinds must all hold.
#[derive(Debug, Args, Default)]
pub struct RuleConditions {
    /// The person's subject claim equals this (repeatable).
    #[arg(long = "subject", value_name = "SUBJECT")]
    pub subjects: Vec<String>,
    /// The person's verified `email` equals this (repeatable; case-insensitive).
    #[arg(long = "email", value_name = "EMAIL")]
    pub emails: Vec<String>,
    /// The person's verified `email` is in this domain (repeatable).
    #[arg(long = "email-domain", value_name = "DOMAIN")]
    pub email_domains: Vec<String>,
    /// The person's groups claim contains this (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
}

impl RuleConditions {
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty()
            && self.groups.is_empty()
    }
}

#[derive(Debug, Args)]
pub struct CreateRuleArgs {
    /// Unique rule name (letters, digits, '_' and '-').
    pub name: String,

    /// The identity provider whose tokens this rule applies to.
    #[arg(long, value_name = "NAME")]
    pub idp: String,

    #[command(flatten)]
    pub conditions: RuleConditions,

    /// Comma-separated servers (`github`), single tools (`github__search`) or `*`: what the
    /// people it matches may use.
    #[arg(long, value_name = "LIST")]
    pub allow: String,
}

#[derive(Debug, Args)]
pub struct UpdateRuleArgs {
    /// The rule's name.
    pub name: String,

    /// Any condition given replaces all the rule's conditions.
    #[command(flatten)]
    pub conditions: RuleConditions,

    /// New allow list, replacing the old one ("" = nothing).
    #[arg(long, value_name = "LIST")]
    pub allow: Option<String>,

    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct IdpFilter {
    /// Only this identity provider's.
    #[arg(long, value_name = "NAME")]
    pub idp: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// Which access rules match a set of claims, and the scope they give — without a token.
    #[command(after_help = "\
Examples:
  canopy explain access --idp corp --claims '{\"sub\": \"u1\", \"email\": \"ann@corp.example\", \"groups\": [\"eng\"]}'
  canopy -o json explain access --idp corp --claims @claims.json")]
    Access(ExplainAccessArgs),
}

#[derive(Debug, Args)]
pub struct ExplainAccessArgs {
    /// The identity provider the claims come from.
    #[arg(long, value_name = "NAME")]
    pub idp: String,
    /// The token's claims: a JSON object, `@FILE`, or `-` for stdin.
    #[arg(long, value_name = "JSON")]
    pub claims: String,
}

#[derive(Debug, Subcommand)]
pub enum RevokeCommand {
    /// Refuse every token of a person on every data plane, although they have not expired.
    #[command(after_help = "\
Example:
  canopy revoke subject --idp corp 00u1abcd --wait 10s

Returns once every connected data plane refuses the person's tokens (or --wait ran
out: exit code 3). Lift it with `canopy unrevoke`.")]
    Subject(RevokeSubjectArgs),
}

#[derive(Debug, Args)]
pub struct RevokeSubjectArgs {
    /// The identity provider that issued the person's tokens.
    #[arg(long, value_name = "NAME")]
    pub idp: String,
    /// The person's subject claim value.
    pub subject: String,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct UnrevokeArgs {
    /// The identity provider of the revocation.
    #[arg(long, value_name = "NAME")]
    pub idp: String,
    /// The subject whose tokens work again.
    pub subject: String,
}
