//! The gRPC connection to the control plane: the channel, the bearer-token interceptor
//! and the deadline every call runs under.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use canopy_proto::v1::admin_client::AdminClient;
use canopy_proto::v1::audit_client::AuditClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::CliError;

/// How long to wait for a TCP/HTTP2 connection before calling the control plane unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for a call when the command has no better idea. Generous because `register`
/// and `invoke` wait for an upstream server (whose own default deadline is 60 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Listings of large catalogues (tool definitions with full schemas) exceed tonic's 4 MiB default.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

pub type AdminRpc = AdminClient<InterceptedService<Channel, BearerAuth>>;
pub type AuditRpc = AuditClient<InterceptedService<Channel, BearerAuth>>;

/// An Admin client (and the Audit service's, on the same connection) plus what error
/// messages need to know about them.
pub struct Admin {
    pub rpc: AdminRpc,
    pub audit: AuditRpc,
    pub at: Target,
}

/// Where calls go; kept apart from `rpc` so `a.at.call(a.rpc.x(..))` borrows two fields.
#[derive(Clone)]
pub struct Target {
    pub registry: String,
    /// The config file that was read for a token and held none: an "unauthenticated"
    /// answer then names it.
    pub tokenless_config: Option<PathBuf>,
}

impl Target {
    /// Runs one call under the default deadline, mapping failures to `CliError`.
    pub async fn call<T, F>(&self, call: F) -> Result<T, CliError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_within(DEFAULT_CALL_TIMEOUT, call).await
    }

    /// Runs one call that may legitimately take up to `deadline`.
    ///
    /// The deadline is enforced here, on the client: a control plane that accepted the
    /// connection but never answers must not hang a script forever.
    pub async fn call_within<T, F>(&self, deadline: Duration, call: F) -> Result<T, CliError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => match &self.tokenless_config {
                Some(path) if status.code() == tonic::Code::Unauthenticated => {
                    Err(CliError::NotLoggedIn {
                        exists: path.exists(),
                        path: path.clone(),
                    })
                }
                _ => Err(CliError::Rpc {
                    status: http1_diagnosis(&self.registry, status).await,
                    registry: self.registry.clone(),
                }),
            },
            Err(_) => Err(CliError::Timeout {
                registry: self.registry.clone(),
                after: deadline,
            }),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

impl BearerAuth {
    fn new(token: Option<&str>) -> Result<Self, CliError> {
        let header = match token {
            None => None,
            Some(t) => {
                let mut v = MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| {
                    // Never echo the token: it may be a real secret pasted in the wrong place.
                    CliError::Usage(
                        "the access token contains characters that cannot be sent in a header; \
                         check the token you logged in with"
                            .into(),
                    )
                })?;
                // Keeps the value out of any debug output of the request.
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Self { header })
    }
}

/// Normalizes what the user typed as a registry: adds `http://` when there is no scheme,
/// lowercases the scheme and drops trailing slashes, so the config file and messages show
/// one canonical URL.
pub fn normalize_registry(raw: &str) -> Result<String, CliError> {
    let trimmed = raw.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(CliError::usage("--registry must not be empty"));
    }
    let url = match trimmed.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => format!("http://{trimmed}"),
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(CliError::usage(format!(
            "registry {url}: the URL must start with http:// or https://"
        )));
    }
    Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::usage(format!("registry {url} is not a valid URL: {e}")))?;
    Ok(url)
}

/// Whether `registry` (normalized) is reached over TLS.
pub fn is_https(registry: &str) -> bool {
    registry.starts_with("https://")
}

/// A client for `registry` (already normalized), authenticated with `token` if given.
/// An `https://` registry is verified with `ca_file` when given, else with the system's
/// trust store and the webpki roots; `ca_file` must not be given for `http://`.
///
/// The channel connects lazily: a stopped control plane surfaces on the first call as a
/// status with a transport source, which `error.rs` words as "cannot reach" (and a
/// failed TLS handshake as what to fix).
pub fn admin(
    registry: &str,
    ca_file: Option<&Path>,
    token: Option<&str>,
) -> Result<Admin, CliError> {
    let mut endpoint = Endpoint::from_shared(registry.to_owned())
        .map_err(|e| CliError::usage(format!("registry {registry} is not a valid URL: {e}")))?;
    if is_https(registry) {
        let tls = canopy_data_plane::tls::client_config(ca_file, None)
            .map_err(|e| CliError::Other(e.to_string()))?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| CliError::Other(format!("TLS setup for {registry}: {}", chain(&e))))?;
    } else if let Some(ca) = ca_file {
        // Someone meant TLS: talking plaintext instead would hide that.
        return Err(CliError::usage(format!(
            "--ca-file {} is for https:// registries, but the registry is {registry}; use https://",
            ca.display()
        )));
    }
    let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
    let channel = endpoint.connect_lazy();
    let auth = BearerAuth::new(token)?;
    let audit = AuditClient::with_interceptor(channel.clone(), auth.clone())
        .max_decoding_message_size(MAX_MESSAGE);
    let rpc = AdminClient::with_interceptor(channel, auth).max_decoding_message_size(MAX_MESSAGE);
    Ok(Admin {
        rpc,
        audit,
        at: Target {
            registry: registry.to_owned(),
            tokenless_config: None,
        },
    })
}

/// `e` and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A connection that closed during the HTTP/2 handshake may be an HTTP/1.1-only server (a data
/// plane's `/mcp` port serves HTTP/1.1 only and drops an HTTP/2 preface). Ask it once in
/// HTTP/1.1: if it answers, report the call as "plain HTTP, not gRPC" (see `cli/src/error.rs`)
/// instead of a lost connection. Any other status is returned as it was.
async fn http1_diagnosis(registry: &str, status: tonic::Status) -> tonic::Status {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let local = std::error::Error::source(&status).is_some();
    if !local || status.code() == tonic::Code::Unavailable {
        return status;
    }
    let Ok(url) = url::Url::parse(registry) else {
        return status;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return status;
    };
    if url.scheme() != "http" {
        return status;
    }
    let probe = async {
        let mut conn = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 32];
        let n = conn.read(&mut head).await.ok()?;
        let line = std::str::from_utf8(&head[..n]).ok()?;
        let code = line.strip_prefix("HTTP/1.")?.get(2..5)?;
        code.parse::<u16>().ok()
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Some(code)) => {
            tonic::Status::unimplemented(format!("{} {code}", crate::error::NOT_GRPC))
        }
        _ => status,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn registry_normalization() {
        assert_eq!(
            normalize_registry("http://cp:9090/").unwrap(),
            "http://cp:9090"
        );
        assert_eq!(
            normalize_registry("127.0.0.1:9090").unwrap(),
            "http://127.0.0.1:9090"
        );
        assert!(normalize_registry("").is_err());
        assert!(normalize_registry("ftp://x").is_err());
        assert_eq!(
            normalize_registry("HTTPS://cp:9090/").unwrap(),
            "https://cp:9090"
        );
    }

    #[tokio::test] // the lazy channel needs a runtime
    async fn ca_file_needs_https_and_must_be_readable() {
        let err = admin("http://127.0.0.1:1", Some(Path::new("/x/ca.pem")), None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is for https:// registries"), "{err}");
        let err = admin(
            "https://127.0.0.1:1",
            Some(Path::new("/nonexistent/ca.pem")),
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("cannot read CA file /nonexistent/ca.pem"),
            "{err}"
        );
        assert!(admin("https://127.0.0.1:1", None, None).is_ok());
    }

    #[test]
    fn interceptor_adds_bearer_only_with_token() {
        let mut auth = BearerAuth::new(Some("canopy_usr_abc")).unwrap();
        let req = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata()
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            "Bearer canopy_usr_abc"
        );
        let mut anon = BearerAuth::new(None).unwrap();
        assert!(anon
            .call(tonic::Request::new(()))
            .unwrap()
            .metadata()
            .get("authorization")
            .is_none());
    }

    #[test]
    fn bad_token_characters_are_not_echoed() {
        let Err(err) = BearerAuth::new(Some("secret\nvalue")) else {
            panic!("accepted a newline")
        };
        assert!(!err.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn unreachable_control_plane_is_reported_with_its_url() {
        // Port 1 on localhost: nothing listens there, so the connection is refused.
        let mut a = admin("http://127.0.0.1:1", None, None).unwrap();
        let err =
            a.at.call(
                a.rpc
                    .get_server_info(canopy_proto::v1::GetServerInfoRequest {}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot reach the control plane at http://127.0.0.1:1: is it running?"),
            "{err}"
        );
    }
}
