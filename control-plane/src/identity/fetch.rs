//! One fetch of a provider: its discovery document, then its JWKS. Nothing is stored here.

use super::policy::check_url;
use crate::store::{Endpoints, ProviderSpec};
use reqwest::Url;
use serde_json::{Map, Value};
use std::time::Duration;
use thiserror::Error;

/// Per-request deadline: a provider that hangs must not hang `create identity-provider`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents and key sets are small; a larger answer is not one.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer a {what}: {reason}")]
    Garbage {
        url: String,
        what: &'static str,
        reason: String,
    },
    #[error("no discovery document for issuer {issuer}: tried {tried}")]
    NoDiscovery { issuer: String, tried: String },
    #[error("the discovery document at {url} names issuer '{found}', not '{expected}'")]
    IssuerMismatch {
        url: String,
        found: String,
        expected: String,
    },
}

/// What one fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub endpoints: Endpoints,
    /// The key set as served (validated, not rewritten).
    pub jwks_json: String,
}

/// Reads the provider's discovery document and key set.
pub async fn fetch(spec: &ProviderSpec) -> Result<Fetched, FetchError> {
    let issuer = check_url("issuer", &spec.issuer).map_err(FetchError::Config)?;
    let client = client(spec.ca_pem.as_deref())?;
    let (url, doc) = discover(&client, &issuer, &spec.issuer).await?;
    let found = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if found != spec.issuer {
        return Err(FetchError::IssuerMismatch {
            url: url.to_string(),
            found: found.to_owned(),
            expected: spec.issuer.clone(),
        });
    }
    let text = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let jwks_uri = match &spec.jwks_uri {
        Some(uri) => uri.clone(),
        None => text("jwks_uri"),
    };
    if jwks_uri.is_empty() {
        return Err(FetchError::Garbage {
            url: url.to_string(),
            what: "discovery document",
            reason: "it has no jwks_uri (give one with --jwks-uri)".into(),
        });
    }
    let jwks_url = check_url("jwks_uri", &jwks_uri).map_err(FetchError::Config)?;
    let jwks_json = key_set(&client, &jwks_url).await?;
    Ok(Fetched {
        endpoints: Endpoints {
            jwks_uri,
            authorization_endpoint: text("authorization_endpoint"),
            token_endpoint: text("token_endpoint"),
            device_authorization_endpoint: text("device_authorization_endpoint"),
            registration_endpoint: text("registration_endpoint"),
        },
        jwks_json,
    })
}

fn client(ca_pem: Option<&str>) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        // A redirect could leave https or loopback; providers serve these documents directly.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("canopy-control-plane/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| FetchError::Config(format!("the CA file is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(FetchError::Config(
                "the CA file holds no certificate".into(),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| FetchError::Config(format!("cannot build the HTTP client: {e}")))
}

/// The candidate discovery URLs of `issuer`, in the order tried: OpenID Connect
/// (appended), then RFC 8414 (inserted before the path), then OpenID path-inserted.
fn discovery_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let at = |p: String| {
        let mut u = issuer.clone();
        u.set_path(&p);
        u
    };
    let mut urls = vec![
        at(format!("{path}/.well-known/openid-configuration")),
        at(format!("/.well-known/oauth-authorization-server{path}")),
    ];
    if !path.is_empty() {
        urls.push(at(format!("/.well-known/openid-configuration{path}")));
    }
    urls
}

async fn discover(
    client: &reqwest::Client,
    issuer: &Url,
    raw_issuer: &str,
) -> Result<(Url, Map<String, Value>), FetchError> {
    let mut tried = Vec::new();
    // An answer that is not a discovery document says more than the 404s of the others.
    let mut garbage = None;
    for url in discovery_urls(issuer) {
        match get_json(client, &url, "discovery document").await {
            Ok(Value::Object(doc)) => return Ok((url, doc)),
            Ok(_) => {
                garbage.get_or_insert(FetchError::Garbage {
                    url: url.to_string(),
                    what: "discovery document",
                    reason: "not a JSON object".into(),
                });
            }
            // Nothing listens: no other well-known path will do better.
            Err(e @ FetchError::Unreachable { .. }) => return Err(e),
            Err(e @ FetchError::Garbage { .. }) => {
                garbage.get_or_insert(e);
            }
            Err(_) => {}
        }
        tried.push(url.to_string());
    }
    Err(garbage.unwrap_or_else(|| FetchError::NoDiscovery {
        issuer: raw_issuer.to_owned(),
        tried: tried.join(", "),
    }))
}

/// Fetches and validates a JWKS: a JSON object whose `keys` is a non-empty array of
/// asymmetric JWKs.
async fn key_set(client: &reqwest::Client, url: &Url) -> Result<String, FetchError> {
    let (value, text) = get(client, url, "JSON Web Key Set").await?;
    let garbage = |reason: String| FetchError::Garbage {
        url: url.to_string(),
        what: "JSON Web Key Set",
        reason,
    };
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| garbage("no \"keys\" array".into()))?;
    if keys.is_empty() {
        return Err(garbage("the key set is empty".into()));
    }
    for key in keys {
        match key.get("kty").and_then(Value::as_str) {
            Some("RSA" | "EC" | "OKP") => {}
            Some("oct") => return Err(garbage("it holds a symmetric (oct) key".into())),
            Some(other) => return Err(garbage(format!("unsupported key type '{other}'"))),
            None => return Err(garbage("a key has no \"kty\"".into())),
        }
    }
    Ok(text)
}

async fn get_json(
    client: &reqwest::Client,
    url: &Url,
    what: &'static str,
) -> Result<Value, FetchError> {
    get(client, url, what).await.map(|(v, _)| v)
}

/// GETs `url` and parses its JSON body (bounded), returning it parsed and as text.
async fn get(
    client: &reqwest::Client,
    url: &Url,
    what: &'static str,
) -> Result<(Value, String), FetchError> {
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Unreachable {
            url: url.to_string(),
            reason: canopy_core::error_chain(&e),
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let garbage = |reason: String| FetchError::Garbage {
        url: url.to_string(),
        what,
        reason,
    };
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| garbage(canopy_core::error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(garbage(format!(
                "the answer is larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|_| garbage("the answer is not UTF-8".into()))?;
    let value = serde_json::from_str(&text).map_err(|e| garbage(format!("invalid JSON: {e}")))?;
    Ok((value, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_candidates() {
        let u = |s: &str| Url::parse(s).unwrap();
        let list = |s: &str| {
            discovery_urls(&u(s))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            list("https://idp.example"),
            vec![
                "https://idp.example/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server",
            ]
        );
        assert_eq!(
            list("https://idp.example/realms/acme/"),
            vec![
                "https://idp.example/realms/acme/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/realms/acme",
                "https://idp.example/.well-known/openid-configuration/realms/acme",
            ]
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod fetch_tests {
    use super::*;
    use crate::identity::test_server::TestServer;

    fn spec(issuer: &str) -> ProviderSpec {
        ProviderSpec::for_tests("corp", issuer)
    }

    #[tokio::test]
    async fn rfc8414_path_inserted_and_issuer_checked() {
        let server = TestServer::start().await;
        let issuer = format!("{}/tenant", server.url);
        server.set(
            "/.well-known/oauth-authorization-server/tenant",
            200,
            &format!(
                r#"{{"issuer":"{issuer}","jwks_uri":"{}/keys"}}"#,
                server.url
            ),
        );
        server.set("/keys", 200, r#"{"keys":[{"kty":"EC","kid":"e"}]}"#);
        let found = fetch(&spec(&issuer)).await.unwrap();
        assert_eq!(found.endpoints.jwks_uri, format!("{}/keys", server.url));
        // The same document under another issuer name is refused.
        let other = format!("{}/tenant/", server.url);
        assert!(matches!(
            fetch(&spec(&other)).await,
            Err(FetchError::IssuerMismatch { .. }) | Err(FetchError::NoDiscovery { .. })
        ));
    }

    #[tokio::test]
    async fn bad_key_sets_are_refused() {
        let server = TestServer::start().await;
        for (jwks, says) in [
            (r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, "symmetric"),
            (r#"{"nokeys":1}"#, "keys"),
            (r#"{"keys":[{"kid":"x"}]}"#, "kty"),
            ("[1,2", "invalid JSON"),
        ] {
            server.provider(jwks);
            let err = fetch(&spec(&server.url)).await.unwrap_err().to_string();
            assert!(err.contains(says), "{jwks}: {err}");
        }
        // A JWKS URI over plain http to a non-loopback host is never fetched.
        let mut s = spec(&server.url);
        s.jwks_uri = Some("http://keys.example/jwks".into());
        server.provider(r#"{"keys":[{"kty":"RSA"}]}"#);
        assert!(matches!(fetch(&s).await, Err(FetchError::Config(_))));
    }
}
