//! Runs a parsed command line. One file per noun under `commands/`; this file holds what
//! they share: the resolved registry and config ([`Ctx`]) and the report every revoking or
//! re-scoping command ends with.
//!
//! To add `canopy start`: a `Start(commands::start::StartArgs)` variant in `args::Command`,
//! `pub mod start;` below, and one arm in [`run`] before the context is built (it needs
//! neither a registry nor a token).

pub mod access_rules;
pub mod audit;
pub mod clients;
pub mod data_planes;
pub mod identity_providers;
pub mod revocations;
pub mod servers;
pub mod session;
pub mod start;
pub mod tools;
pub mod users;

use std::path::PathBuf;
use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{
    AuditCommand, Cli, Command, CreateCommand, DeleteCommand, ExplainCommand, Format, ListCommand,
    RefreshCommand, RevokeCommand, UpdateCommand,
};
use crate::client::{self, Admin, Target};
use crate::config::{self, Config, ConfigError};
use crate::error::CliError;
use crate::output::{self, MutationReport};

/// Slack on top of `--wait` for the control plane to answer a waiting call.
const WAIT_SLACK: Duration = Duration::from_secs(30);

pub async fn run(cli: Cli) -> Result<(), CliError> {
    // `start` runs the services; it needs neither a registry nor a token.
    let command = match cli.command {
        Command::Start(a) => return start::run(a).await,
        other => other,
    };
    let mut ctx = Ctx::new(cli.registry, cli.ca_file, cli.output)?;
    // A saved SSO sign-in whose access token is (about to be) expired is renewed with its
    // refresh token first; commands that replace or ignore the saved token do not need it.
    if !matches!(
        command,
        Command::InitServer(_) | Command::Login(_) | Command::Version
    ) {
        crate::sso::renew_if_due(&mut ctx).await?;
    }
    match command {
        Command::InitServer(a) => session::init_server(&ctx, a).await,
        Command::Login(a) if a.sso => crate::sso::login(&ctx, a).await,
        Command::Login(a) => match a.sso_options_without_sso() {
            Some(flag) => Err(CliError::usage(format!("{flag} needs --sso"))),
            None => session::login(&ctx, a).await,
        },
        Command::Whoami => session::whoami(&ctx).await,
        Command::Version => session::version(&ctx).await,
        Command::Create(CreateCommand::McpClient(a)) => clients::create(&ctx, a).await,
        Command::Create(CreateCommand::User(a)) => users::create(&ctx, a).await,
        Command::List(ListCommand::McpClients) => clients::list(&ctx).await,
        Command::List(ListCommand::Users) => users::list(&ctx).await,
        Command::List(ListCommand::Servers) => servers::list(&ctx).await,
        Command::List(ListCommand::Tools(f)) => tools::list_tools(&ctx, f).await,
        Command::List(ListCommand::Prompts(f)) => tools::list_prompts(&ctx, f).await,
        Command::List(ListCommand::DataPlanes) => data_planes::list(&ctx).await,
        Command::Update(UpdateCommand::McpClient(a)) => clients::update(&ctx, a).await,
        Command::Update(UpdateCommand::User(a)) => users::update(&ctx, a).await,
        Command::Delete(DeleteCommand::McpClient(a)) => clients::delete(&ctx, a).await,
        Command::Delete(DeleteCommand::User(a)) => users::delete(&ctx, a).await,
        Command::Register(a) => servers::register(&ctx, a).await,
        Command::Deregister(a) => servers::deregister(&ctx, a).await,
        Command::Refresh(RefreshCommand::Server(a)) => servers::refresh(&ctx, a).await,
        Command::Usage(a) => tools::usage(&ctx, a).await,
        Command::Invoke(a) => tools::invoke(&ctx, a).await,
        Command::Create(CreateCommand::IdentityProvider(a)) => {
            identity_providers::create(&ctx, a).await
        }
        Command::List(ListCommand::IdentityProviders) => identity_providers::list(&ctx).await,
        Command::Update(UpdateCommand::IdentityProvider(a)) => {
            identity_providers::update(&ctx, a).await
        }
        Command::Delete(DeleteCommand::IdentityProvider(a)) => {
            identity_providers::delete(&ctx, a).await
        }
        Command::Create(CreateCommand::AccessRule(a)) => access_rules::create(&ctx, a).await,
        Command::List(ListCommand::AccessRules(f)) => access_rules::list(&ctx, f).await,
        Command::Update(UpdateCommand::AccessRule(a)) => access_rules::update(&ctx, a).await,
        Command::Delete(DeleteCommand::AccessRule(a)) => access_rules::delete(&ctx, a).await,
        Command::Explain(ExplainCommand::Access(a)) => access_rules::explain(&ctx, a).await,
        Command::Revoke(RevokeCommand::Subject(a)) => revocations::revoke(&ctx, a).await,
        Command::List(ListCommand::Revocations(f)) => revocations::list(&ctx, f).await,
        Command::Unrevoke(a) => revocations::unrevoke(&ctx, a).await,
        Command::Audit(AuditCommand::List(a)) => audit::list(&ctx, a).await,
        Command::Audit(AuditCommand::Tail(a)) => audit::tail(&ctx, a).await,
        Command::Audit(AuditCommand::Export(a)) => audit::export(&ctx, a).await,
        Command::Start(a) => start::run(a).await,
    }
}

/// What every command needs: output format, registry, and the saved config.
pub struct Ctx {
    pub format: Format,
    /// `--registry` / `CANOPY_REGISTRY`, before falling back to the config file.
    registry_flag: Option<String>,
    /// `--ca-file` / `CANOPY_CA_FILE`, before falling back to the config file.
    ca_flag: Option<PathBuf>,
    config_path: Result<PathBuf, ConfigError>,
    pub config: Config,
}

impl Ctx {
    fn new(
        registry_flag: Option<String>,
        ca_flag: Option<PathBuf>,
        format: Format,
    ) -> Result<Self, CliError> {
        let config_path = config::default_path();
        let config = match &config_path {
            Ok(p) => config::load(p)?,
            // No HOME and no CANOPY_CONFIG: commands that only read still work with
            // --registry; saving reports the problem.
            Err(_) => Config::default(),
        };
        Ok(Self {
            format,
            registry_flag,
            ca_flag: ca_flag.filter(|p| !p.as_os_str().is_empty()),
            config_path,
            config,
        })
    }

    /// `--registry`, else the config file's, else the default; normalized.
    pub fn registry(&self) -> Result<String, CliError> {
        let raw = self
            .registry_flag
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .or(self.config.registry.as_deref())
            .unwrap_or(crate::args::DEFAULT_REGISTRY);
        client::normalize_registry(raw)
    }

    /// The CA file for `registry` (normalized): `--ca-file`, else the one saved with that
    /// same registry in the config file. Relative paths are made absolute, so a saved one
    /// works from any directory.
    pub fn ca_file(&self, registry: &str) -> Option<PathBuf> {
        if let Some(flag) = &self.ca_flag {
            return Some(std::path::absolute(flag).unwrap_or_else(|_| flag.clone()));
        }
        let saved_registry = self.config.registry.as_deref()?;
        let same = client::normalize_registry(saved_registry).is_ok_and(|r| r == registry);
        if same && client::is_https(registry) {
            self.config.ca_file.clone()
        } else {
            None
        }
    }

    /// A client for the resolved registry (with its CA file), authenticated with `token`.
    pub fn connect(&self, registry: &str, token: Option<&str>) -> Result<Admin, CliError> {
        client::admin(registry, self.ca_file(registry).as_deref(), token)
    }

    /// What `init-server` and `login` save: the registry, its CA file and the token (a
    /// static one: any earlier SSO sign-in is dropped).
    pub fn session_config(&self, registry: &str, token: String) -> Config {
        Config {
            registry: Some(registry.to_owned()),
            access_token: Some(token),
            ca_file: self.ca_file(registry),
            sso: None,
        }
    }

    pub fn config_path(&self) -> Result<PathBuf, CliError> {
        match &self.config_path {
            Ok(p) => Ok(p.clone()),
            Err(_) => Err(ConfigError::NoHome.into()),
        }
    }

    /// A client authenticated with the saved token (if any; development-mode servers
    /// need none, so a missing token is the server's call, not ours).
    pub fn admin(&self) -> Result<Admin, CliError> {
        let token = self.config.access_token.as_deref();
        let mut admin = self.connect(&self.registry()?, token)?;
        if token.is_none() {
            admin.at.tokenless_config = self.config_path.as_ref().ok().cloned();
        }
        Ok(admin)
    }

    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        output::emit(self.format, value, text)
    }
}

/// `--wait` as the proto wants it.
pub fn wait_options(wait: Duration) -> Option<pb::WaitOptions> {
    Some(pb::WaitOptions {
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    })
}

/// `--grace` as the proto wants it (0: none).
pub fn grace_ms(grace: Option<Duration>) -> u64 {
    grace.map_or(0, |g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX))
}

/// Deadline for a call that waits up to `wait` on the control plane's side.
pub fn waiting_deadline(wait: Duration) -> Duration {
    wait.saturating_add(WAIT_SLACK)
        .max(client::DEFAULT_CALL_TIMEOUT)
}

/// How a command words its change, for both endings of the wait.
pub struct Outcome {
    /// When every connected data plane applied it: "MCP client 'x' deleted; its token no
    /// longer works."
    pub done: String,
    /// The change as a noun phrase, for when some have not: "The deletion of MCP client 'x'".
    pub change: String,
    /// Printed in both cases, after the report (e.g. a generated token, shown once).
    pub extra: Option<String>,
}

impl Outcome {
    pub fn new(done: impl Into<String>, change: impl Into<String>) -> Self {
        Self {
            done: done.into(),
            change: change.into(),
            extra: None,
        }
    }

    /// The text output: a success sentence only when no data plane is left pending.
    fn text(&self, report: &MutationReport) -> String {
        let mut t = if report.pending.is_empty() {
            format!("{}\n{}", self.done, report.text())
        } else {
            format!(
                "{} is saved (revision {}) but not applied yet by data plane(s): {}; \
                 until they apply it, they act on the previous state.\n{}",
                self.change,
                report.revision,
                report.pending.join(", "),
                report.text()
            )
        };
        if let Some(extra) = &self.extra {
            t.push_str("\n\n");
            t.push_str(extra);
        }
        t
    }
}

/// Prints the outcome of an acknowledged change and turns "some data planes had not
/// applied it" into exit code 3 with their ids on stderr.
pub fn finish_mutation(
    ctx: &Ctx,
    outcome: &Outcome,
    result: &pb::MutationResult,
    waited: Duration,
) -> Result<(), CliError> {
    let report = MutationReport::from(result);
    ctx.emit(&report, || outcome.text(&report))?;
    if report.pending.is_empty() {
        return Ok(());
    }
    Err(CliError::NotConfirmed {
        revision: report.revision,
        expected: report.expected,
        waited,
        pending: report.pending,
    })
}

/// Sends an acknowledged change (`call`, made with [`wait_options`]`(wait)`) under
/// [`waiting_deadline`]`(wait)` and reports it with [`finish_mutation`].
pub async fn send_mutation<F>(
    ctx: &Ctx,
    at: &Target,
    wait: Duration,
    call: F,
    outcome: &Outcome,
) -> Result<(), CliError>
where
    F: std::future::Future<Output = Result<tonic::Response<pb::MutationResult>, tonic::Status>>,
{
    let result = at.call_within(waiting_deadline(wait), call).await?;
    finish_mutation(ctx, outcome, &result, wait)
}

/// Reads `--input`/`--conf`-style arguments that may be `@file` or `-` (stdin).
pub fn read_arg_source(raw: &str) -> Result<String, CliError> {
    if raw == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|source| {
            CliError::Read {
                path: PathBuf::from("<stdin>"),
                source,
            }
        })?;
        return Ok(s);
    }
    if let Some(path) = raw.strip_prefix('@') {
        return std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: PathBuf::from(path),
            source,
        });
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests;
