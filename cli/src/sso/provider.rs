//! The identity provider's endpoints the CLI calls itself: the authorization URL it sends
//! the browser to, the token endpoint (code exchange, refresh, device polling) and the
//! device authorization endpoint (RFC 8628).
//!
//! Plain `reqwest` form posts rather than the `oauth2` crate: the CLI needs exactly three
//! small requests plus one URL, with RFC 8707's `resource` parameter on each (which the
//! crate only offers as a generic extra parameter) and it would bring its own HTTP-client
//! abstraction and a second copy of reqwest's types; `reqwest` (rustls) is already in the
//! tree. Errors name the endpoint and the provider's OAuth error, never a token or code.

use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::Deserialize;

/// Per request: an identity provider that does not answer must not hang the CLI.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 8628 §3.5: the default polling interval, and what `slow_down` adds.
const DEVICE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot reach the identity provider at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("the identity provider answered {url} with HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the identity provider's answer from {url} is not what OAuth prescribes")]
    Garbage { url: String },
    #[error("the identity provider's {what} endpoint {url} is not a valid URL")]
    BadEndpoint { what: &'static str, url: String },
    #[error("the identity provider does not offer the device flow (no device_authorization_endpoint); use the browser sign-in")]
    NoDeviceFlow,
    #[error("the code was not entered in time; start again")]
    DeviceExpired,
}

/// What a token endpoint handed out. The ID token, if any, is dropped: it is not a
/// credential for the Admin API and nothing here needs it.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds the access token lives, as the provider said.
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuthError {
    fn text(&self) -> String {
        let clean =
            |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(300).collect() };
        match &self.error_description {
            Some(d) => format!("{} ({})", clean(&self.error), clean(d)),
            None => clean(&self.error),
        }
    }
}

/// A device authorization (RFC 8628 §3.2). `device_code` is the secret polled with; the
/// user code and URLs are what the person is shown.
#[derive(Deserialize)]
pub struct DeviceStart {
    device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    #[serde(default)]
    interval: Option<u64>,
}

/// The scopes asked for, space-separated.
fn scope(cfg: &pb::SsoConfig) -> String {
    cfg.scopes.join(" ")
}

/// OpenID providers grant `offline_access` (the refresh token) only with `prompt=consent`
/// (OpenID Connect Core §11).
fn wants_consent(cfg: &pb::SsoConfig) -> bool {
    cfg.scopes.iter().any(|s| s == "offline_access")
}

/// The URL the browser is sent to: authorization code flow with PKCE (S256) and RFC 8707's
/// `resource` naming the Admin API.
pub fn authorize_url(
    cfg: &pb::SsoConfig,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
    login_hint: Option<&str>,
) -> Result<String, ProviderError> {
    let mut url =
        url::Url::parse(&cfg.authorization_endpoint).map_err(|_| ProviderError::BadEndpoint {
            what: "authorization",
            url: cfg.authorization_endpoint.clone(),
        })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scope(cfg))
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &cfg.audience);
        if wants_consent(cfg) {
            q.append_pair("prompt", "consent");
        }
        if let Some(hint) = login_hint {
            q.append_pair("login_hint", hint);
        }
    }
    Ok(url.into())
}

pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ProviderError::Unreachable {
                url: String::new(),
                reason: e.without_url().to_string(),
            })?;
        Ok(Self { http })
    }

    /// Posts a form; the parsed success body, or the provider's OAuth error.
    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Result<T, OAuthError>, ProviderError> {
        let resp = self
            .http
            .post(url)
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable {
                url: url.to_owned(),
                reason: crate::sso::chain(&e.without_url()),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ProviderError::Unreachable {
            url: url.to_owned(),
            reason: e.without_url().to_string(),
        })?;
        if status.is_success() {
            return serde_json::from_slice::<T>(&body).map(Ok).map_err(|_| {
                ProviderError::Garbage {
                    url: url.to_owned(),
                }
            });
        }
        match serde_json::from_slice::<OAuthError>(&body) {
            Ok(e) => Ok(Err(e)),
            Err(_) => Err(ProviderError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            }),
        }
    }

    async fn token(&self, url: &str, form: &[(&str, &str)]) -> Result<Tokens, ProviderError> {
        match self.post::<TokenReply>(url, form).await? {
            Ok(t) => Ok(t.into()),
            Err(e) => Err(ProviderError::Refused(e.text())),
        }
    }

    /// Exchanges the authorization code (with the PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        cfg: &pb::SsoConfig,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, ProviderError> {
        self.token(
            &cfg.token_endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", &cfg.client_id),
                ("code_verifier", verifier),
                ("resource", &cfg.audience),
            ],
        )
        .await
    }

    /// A new access token for the same audience from the refresh token.
    pub async fn refresh(
        &self,
        token_endpoint: &str,
        client_id: &str,
        audience: &str,
        refresh_token: &str,
    ) -> Result<Tokens, ProviderError> {
        self.token(
            token_endpoint,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
                ("resource", audience),
            ],
        )
        .await
    }

    /// Starts the device flow (RFC 8628 §3.1).
    pub async fn start_device(
        &self,
        cfg: &pb::SsoConfig,
        login_hint: Option<&str>,
    ) -> Result<DeviceStart, ProviderError> {
        if cfg.device_authorization_endpoint.is_empty() {
            return Err(ProviderError::NoDeviceFlow);
        }
        let scope = scope(cfg);
        let mut form = vec![
            ("client_id", cfg.client_id.as_str()),
            ("scope", scope.as_str()),
            ("resource", cfg.audience.as_str()),
        ];
        if wants_consent(cfg) {
            form.push(("prompt", "consent"));
        }
        if let Some(hint) = login_hint {
            form.push(("login_hint", hint));
        }
        match self
            .post::<DeviceStart>(&cfg.device_authorization_endpoint, &form)
            .await?
        {
            Ok(start) => Ok(start),
            Err(e) => Err(ProviderError::Refused(e.text())),
        }
    }

    /// Polls the token endpoint until the person has signed in (RFC 8628 §3.4/3.5). The
    /// caller bounds the total time.
    pub async fn poll_device(
        &self,
        cfg: &pb::SsoConfig,
        start: &DeviceStart,
    ) -> Result<Tokens, ProviderError> {
        let mut interval = start
            .interval
            .map_or(DEVICE_INTERVAL, Duration::from_secs)
            .max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(interval).await;
            let reply = self
                .post::<TokenReply>(
                    &cfg.token_endpoint,
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("device_code", &start.device_code),
                        ("client_id", &cfg.client_id),
                    ],
                )
                .await?;
            match reply {
                Ok(t) => return Ok(t.into()),
                Err(e) if e.error == "authorization_pending" => {}
                Err(e) if e.error == "slow_down" => interval += DEVICE_INTERVAL,
                Err(e) if e.error == "expired_token" => return Err(ProviderError::DeviceExpired),
                Err(e) => return Err(ProviderError::Refused(e.text())),
            }
        }
    }
}

impl From<TokenReply> for Tokens {
    fn from(t: TokenReply) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token.filter(|r| !r.is_empty()),
            expires_in: t.expires_in,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn cfg() -> pb::SsoConfig {
        pb::SsoConfig {
            idp: "corp".into(),
            issuer: "https://idp.example".into(),
            client_id: "cli".into(),
            audience: "https://cp.example".into(),
            scopes: vec!["openid".into(), "offline_access".into()],
            authorization_endpoint: "https://idp.example/authorize?tenant=a".into(),
            token_endpoint: "https://idp.example/token".into(),
            device_authorization_endpoint: String::new(),
        }
    }

    #[test]
    fn authorize_url_has_pkce_state_and_resource() {
        let u = authorize_url(
            &cfg(),
            "http://127.0.0.1:4000/callback",
            "st",
            "ch",
            Some("carol@example.com"),
        )
        .unwrap();
        let parsed = url::Url::parse(&u).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "a", "existing query kept");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cli");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:4000/callback");
        assert_eq!(q["scope"], "openid offline_access");
        assert_eq!(q["state"], "st");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["resource"], "https://cp.example");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["login_hint"], "carol@example.com");
        let bad = pb::SsoConfig {
            authorization_endpoint: "not a url".into(),
            ..cfg()
        };
        assert!(authorize_url(&bad, "x", "s", "c", None).is_err());
    }

    #[test]
    fn provider_errors_are_one_clean_line() {
        let e = OAuthError {
            error: "invalid_grant".into(),
            error_description: Some("grant\nrequest is invalid".into()),
        };
        assert_eq!(e.text(), "invalid_grant (grantrequest is invalid)");
    }
}
