//! `canopy login --sso`: signing a person in with the company's identity provider, and
//! keeping that sign-in fresh.
//!
//! The control plane says where (`GetSsoConfig`: issuer endpoints, the CLI's public client
//! id, the Admin API's audience, scopes; no secrets). The sign-in is the OAuth 2.1
//! authorization code flow with PKCE (S256) and a loopback redirect by default
//! ([`redirect`]), `--no-browser` (the person pastes the redirected URL or the code), or the
//! device authorization grant (`--device-code`, RFC 8628). The access token is checked with
//! `WhoAmI` before anything is saved; then it goes into the config file with the refresh
//! token ([`session`]), which [`renew_if_due`] uses when the access token expires.
//!
//! Nothing here prints or logs a token, a code or a verifier; what the person is told goes
//! to stderr, so `-o json` output on stdout stays one JSON document.

mod pkce;
mod provider;
mod redirect;
mod session;

pub use session::Session;

use std::io::Write;
use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::LoginArgs;
use crate::commands::Ctx;
use crate::config;
use crate::error::CliError;
use crate::output::role_name;
use provider::{ProviderError, Tokens};
use redirect::{Loopback, RedirectError};

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    #[error("the sign-in did not complete within {} (--timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cannot listen for the browser's redirect on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    #[error("cannot read the pasted URL or code: {0}")]
    Stdin(String),
    #[error(
        "your sign-in with identity provider '{idp}' has expired and could not be renewed ({source}); \
         run `canopy login --sso`"
    )]
    Renew { idp: String, source: ProviderError },
}

/// `e` and its sources on one line (reqwest hides the cause of "error sending request").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// What `login --sso` and `whoami` report about a signed-in person.
#[derive(Serialize)]
struct SignedInJson {
    name: String,
    role: &'static str,
    identity_provider: String,
    subject: String,
    config_path: String,
}

/// Tells the person what to do (stderr: stdout is the command's result).
fn tell(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

pub async fn login(ctx: &Ctx, args: LoginArgs) -> Result<(), CliError> {
    let registry = ctx.registry()?;
    let path = ctx.config_path()?;
    // Fail before the person signs in, not after.
    config::check_writable(&path)?;
    let mut anon = ctx.connect(&registry, None)?;
    let cfg = anon
        .at
        .call(anon.rpc.get_sso_config(pb::GetSsoConfigRequest {
            idp: args.idp.clone().unwrap_or_default(),
        }))
        .await?;
    let client = provider::Client::new().map_err(SsoError::from)?;
    let hint = args.login_hint.as_deref();
    let flow = async {
        if args.device_code {
            device_flow(&client, &cfg, hint).await
        } else {
            code_flow(&client, &cfg, hint, args.no_browser).await
        }
    };
    let tokens = tokio::time::timeout(args.timeout, flow)
        .await
        .map_err(|_| SsoError::Timeout(args.timeout))??;

    // The control plane must accept the token before it replaces a working login.
    let mut a = ctx.connect(&registry, Some(&tokens.access_token))?;
    let me = match a.at.call(a.rpc.who_am_i(pb::WhoAmIRequest {})).await {
        Ok(me) => me,
        Err(CliError::Rpc { status, .. }) if status.code() == tonic::Code::Unauthenticated => {
            return Err(CliError::Other(format!(
                "signed in with identity provider '{}', but the control plane at {registry} refuses the token: {}",
                cfg.idp,
                status.message()
            )));
        }
        Err(e) => return Err(e),
    };
    let now = session::now_secs();
    let saved = config::Config {
        sso: Some(Session {
            idp: cfg.idp.clone(),
            issuer: cfg.issuer.clone(),
            token_endpoint: cfg.token_endpoint.clone(),
            client_id: cfg.client_id.clone(),
            audience: cfg.audience.clone(),
            refresh_token: tokens.refresh_token,
            expires_at: session::expiry(&tokens.access_token, tokens.expires_in, now),
        }),
        ..ctx.session_config(&registry, tokens.access_token)
    };
    let renewable = saved
        .sso
        .as_ref()
        .is_some_and(|s| s.refresh_token.is_some());
    config::save(&path, &saved)?;
    let out = SignedInJson {
        name: me.name.clone(),
        role: role_name(me.role),
        identity_provider: me.identity_provider.clone(),
        subject: me.subject.clone(),
        config_path: path.display().to_string(),
    };
    ctx.emit(&out, || {
        let renew = if renewable {
            "it is renewed with the refresh token saved beside it"
        } else {
            "the provider gave no refresh token: sign in again when it expires"
        };
        format!(
            "Logged in to {registry} as '{}' through identity provider '{}' (role: {}).\n\
             The access token is saved in {}; {renew}.",
            out.subject, out.identity_provider, out.role, out.config_path
        )
    })
}

/// Authorization code + PKCE; the redirect comes to the loopback listener, or (with
/// `--no-browser`) is pasted — whichever arrives first.
async fn code_flow(
    client: &provider::Client,
    cfg: &pb::SsoConfig,
    hint: Option<&str>,
    no_browser: bool,
) -> Result<Tokens, SsoError> {
    let pkce = pkce::Pkce::new();
    let state = pkce::random_token();
    let loopback = Loopback::bind().await.map_err(SsoError::Listen)?;
    let url = provider::authorize_url(cfg, loopback.redirect_uri(), &state, &pkce.challenge, hint)?;
    let code = if no_browser {
        tell(&format!(
            "Open this URL in a browser and sign in with '{}':\n\n    {url}\n\n\
             Then paste the URL the browser was sent to (it starts with {}) or just its code:",
            cfg.idp,
            loopback.redirect_uri()
        ));
        tokio::select! {
            code = loopback.wait(&state) => code?,
            pasted = read_line() => redirect::code_from_pasted(&pasted?, &state)?,
        }
    } else {
        let opened = open_browser(&url);
        tell(&format!(
            "{} sign in with '{}'. If no browser opened, visit:\n\n    {url}\n\nWaiting for the browser...",
            if opened { "A browser opened to" } else { "Open a browser to" },
            cfg.idp
        ));
        loopback.wait(&state).await?
    };
    Ok(client
        .exchange_code(cfg, &code, &pkce.verifier, loopback.redirect_uri())
        .await?)
}

/// The device authorization grant: show a URL and a code, poll until the person entered it.
async fn device_flow(
    client: &provider::Client,
    cfg: &pb::SsoConfig,
    hint: Option<&str>,
) -> Result<Tokens, SsoError> {
    let start = client.start_device(cfg, hint).await?;
    let direct = start
        .verification_uri_complete
        .as_deref()
        .map(|u| format!("\n(or open {u} directly)"))
        .unwrap_or_default();
    tell(&format!(
        "To sign in with '{}', visit {} on any device and enter the code:\n\n    {}\n{direct}\n\
         Waiting for the sign-in...",
        cfg.idp, start.verification_uri, start.user_code
    ));
    Ok(client.poll_device(cfg, &start).await?)
}

/// One line from stdin, read on a blocking thread (the loopback listener runs meanwhile).
async fn read_line() -> Result<String, SsoError> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| (n, line))
    });
    match read.await {
        Ok(Ok((0, _))) => Err(SsoError::Stdin("stdin is closed".into())),
        Ok(Ok((_, line))) => Ok(line),
        Ok(Err(e)) => Err(SsoError::Stdin(e.to_string())),
        Err(e) => Err(SsoError::Stdin(e.to_string())),
    }
}

/// Asks the desktop to open `url`: `$BROWSER` if set, else the platform's opener. Whether
/// it worked cannot be known; `false` only when nothing could be started.
fn open_browser(url: &str) -> bool {
    use std::process::{Command, Stdio};
    let opener = match std::env::var("BROWSER") {
        Ok(b) if !b.trim().is_empty() => b,
        _ if cfg!(target_os = "macos") => "open".to_owned(),
        _ if cfg!(windows) => "explorer".to_owned(),
        _ => "xdg-open".to_owned(),
    };
    Command::new(opener.trim())
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}

/// Renews the saved SSO access token with the refresh token when it has expired (or is
/// about to) and saves the new tokens; a static-token config is left alone.
pub async fn renew_if_due(ctx: &mut Ctx) -> Result<(), CliError> {
    let Some(s) = ctx.config.sso.clone() else {
        return Ok(());
    };
    if !s.needs_renewal(session::now_secs()) {
        return Ok(());
    }
    let Some(refresh_token) = s.refresh_token.clone() else {
        return Err(CliError::Other(format!(
            "your sign-in with identity provider '{}' has expired; run `canopy login --sso`",
            s.idp
        )));
    };
    let renew = |source| SsoError::Renew {
        idp: s.idp.clone(),
        source,
    };
    let client = provider::Client::new().map_err(renew)?;
    let tokens = client
        .refresh(&s.token_endpoint, &s.client_id, &s.audience, &refresh_token)
        .await
        .map_err(renew)?;
    let now = session::now_secs();
    let mut next = s.clone();
    next.expires_at = session::expiry(&tokens.access_token, tokens.expires_in, now);
    // Providers that rotate refresh tokens send a new one; others keep the old one valid.
    if let Some(rt) = tokens.refresh_token {
        next.refresh_token = Some(rt);
    }
    ctx.config.access_token = Some(tokens.access_token);
    ctx.config.sso = Some(next);
    config::save(&ctx.config_path()?, &ctx.config)?;
    Ok(())
}
