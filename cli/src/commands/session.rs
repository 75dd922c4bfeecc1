//! `init-server`, `login`, `whoami`, `version`: who this CLI talks to and as whom.

use std::io::Write;
use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{InitServerArgs, LoginArgs};
use crate::commands::Ctx;
use crate::config;
use crate::error::CliError;
use crate::output::{mode_name, role_name};

#[derive(Serialize)]
struct InitJson {
    user: String,
    config_path: String,
}

#[derive(Serialize)]
pub struct UserJson {
    pub name: String,
    pub role: &'static str,
    /// Signed in with `login --sso`: the identity provider and the token's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

pub async fn init_server(ctx: &Ctx, args: InitServerArgs) -> Result<(), CliError> {
    let registry = ctx.registry()?;
    let path = ctx.config_path()?;
    // The admin token is returned exactly once; make sure it can be saved before asking.
    config::check_writable(&path)?;

    // The only unauthenticated call: no token is sent even if an old one is saved.
    let mut a = ctx.connect(&registry, None)?;
    let req = pb::InitServerRequest {
        init_token: args.init_token.unwrap_or_default(),
    };
    let resp = a.at.call(a.rpc.init_server(req)).await?;
    if resp.access_token.is_empty() {
        return Err(CliError::Other(
            "the control plane answered init-server without an access token".into(),
        ));
    }

    let cfg = ctx.session_config(&registry, resp.access_token);
    if let Err(e) = config::save(&path, &cfg) {
        // The server is initialized now and will never hand this token out again. Losing it
        // would lock the admin out for good, so in this one case it goes to the terminal
        // (stderr, not stdout: scripts capturing stdout must not collect it by accident).
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "The control plane is initialized but its admin token could not be saved.\n\
             Store this token now; it will not be shown again:\n\n    {}\n",
            cfg.access_token.as_deref().unwrap_or_default()
        );
        return Err(e.into());
    }

    let path_text = path.display().to_string();
    ctx.emit(&InitJson { user: resp.user.clone(), config_path: path_text.clone() }, || {
        format!(
            "Initialized the control plane at {registry}: created admin user '{}'.\n\
             Its access token is saved in {path_text} (mode 0600); this CLI is now logged in as '{}'.\n\
             Keep that file safe: the token is the credential that manages this server.",
            resp.user, resp.user
        )
    })
}

pub async fn login(ctx: &Ctx, args: LoginArgs) -> Result<(), CliError> {
    // Surrounding whitespace is a copy-paste accident, never part of a token.
    let token = args.access_token.unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        return Err(CliError::usage("the access token is empty"));
    }
    let registry = ctx.registry()?;
    let mut a = ctx.connect(&registry, Some(&token))?;
    let me = match a.at.call(a.rpc.who_am_i(pb::WhoAmIRequest {})).await {
        Ok(me) => me,
        Err(CliError::Rpc { status, .. }) if status.code() == tonic::Code::Unauthenticated => {
            return Err(CliError::Other(format!(
                "the control plane at {registry} does not accept this access token (unknown, revoked or mistyped)"
            )));
        }
        Err(e) => return Err(e),
    };
    let path = ctx.config_path()?;
    config::save(&path, &ctx.session_config(&registry, token))?;
    let role = role_name(me.role);
    ctx.emit(
        &UserJson {
            name: me.name.clone(),
            role,
            identity_provider: None,
            subject: None,
        },
        || {
            format!(
                "Logged in to {registry} as '{}' (role: {role}).\nThe token is saved in {}.",
                me.name,
                path.display()
            )
        },
    )
}

pub async fn whoami(ctx: &Ctx) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let me = a.at.call(a.rpc.who_am_i(pb::WhoAmIRequest {})).await?;
    let role = role_name(me.role);
    let registry = a.at.registry.clone();
    let sso = Some(me.identity_provider.clone()).filter(|p| !p.is_empty());
    let text = match &sso {
        Some(idp) => format!(
            "{} (role: {role}) on {registry}, signed in with identity provider '{idp}' (subject {})",
            me.name, me.subject
        ),
        None => format!("{} (role: {role}) on {registry}", me.name),
    };
    ctx.emit(
        &UserJson {
            name: me.name.clone(),
            role,
            subject: sso.as_ref().map(|_| me.subject.clone()),
            identity_provider: sso,
        },
        || text,
    )
}

#[derive(Serialize)]
struct VersionJson {
    version: &'static str,
    registry: String,
    /// `null` when the control plane could not be reached.
    server: Option<ServerJson>,
}

#[derive(Serialize)]
struct ServerJson {
    version: String,
    mode: &'static str,
    initialized: bool,
    revision: u64,
}

/// The CLI's version always; the control plane's when it answers within a few seconds
/// (an unreachable server is a warning here, not a failure: the question was answered).
pub async fn version(ctx: &Ctx) -> Result<(), CliError> {
    const VERSION: &str = env!("CARGO_PKG_VERSION");
    let registry = ctx.registry()?;
    let mut a = ctx.connect(&registry, None)?;
    let server = match a
        .at
        .call_within(
            Duration::from_secs(3),
            a.rpc.get_server_info(pb::GetServerInfoRequest {}),
        )
        .await
    {
        Ok(info) => Some(ServerJson {
            version: info.version,
            mode: mode_name(info.mode),
            initialized: info.initialized,
            revision: info.revision,
        }),
        Err(e) => {
            crate::output::warn(&e.to_string());
            None
        }
    };
    let text = |s: &Option<ServerJson>| {
        let mut t = format!("canopy {VERSION}");
        if let Some(s) = s {
            // "initialized" only means something in enterprise mode (init-server).
            let init = match (s.mode, s.initialized) {
                ("enterprise", true) => ", initialized",
                ("enterprise", false) => ", not initialized: run `canopy init-server`",
                _ => "",
            };
            t.push_str(&format!(
                "\ncontrol plane at {registry}: {} ({} mode{init}, revision {})",
                s.version, s.mode, s.revision
            ));
        }
        t
    };
    let rendered = text(&server);
    ctx.emit(
        &VersionJson {
            version: VERSION,
            registry: registry.clone(),
            server,
        },
        || rendered,
    )
}
