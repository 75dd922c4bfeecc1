//! The CLI's one error type, and the one place that turns errors into the line a person
//! reads on stderr and the process exit code.
//!
//! gRPC statuses are mapped here and nowhere else, so every command reports an expired
//! token, a missing right or a stopped control plane with the same words.

use std::error::Error as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tonic::Code;

/// Exit codes, documented in `canopy --help`.
pub mod exit {
    /// Any failure reported as `error: …`.
    pub const FAILURE: u8 = 1;
    /// The command line itself is wrong (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// The change is saved, but not every connected data plane confirmed it within `--wait`.
    pub const NOT_CONFIRMED: u8 = 3;
    /// `invoke`: the tool ran and answered with `isError: true` (its result is still printed).
    pub const TOOL_ERROR: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command line clap cannot reject on its own (e.g. a bad allow-list entry).
    #[error("{0}")]
    Usage(String),

    /// A status answered by (or on the way to) the control plane at `registry`.
    #[error("{}", describe_status(.status, .registry))]
    Rpc {
        status: tonic::Status,
        registry: String,
    },

    /// The control plane wants a token and the config file read held none.
    #[error(
        "not logged in: {} {}; run `canopy login <token>` (or set CANOPY_CONFIG to the file you logged in with)",
        .path.display(),
        if *.exists { "holds no access token" } else { "does not exist" }
    )]
    NotLoggedIn { path: PathBuf, exists: bool },

    #[error("the control plane at {registry} did not answer within {}", humantime::format_duration(*.after))]
    Timeout { registry: String, after: Duration },

    /// The change is committed at `revision` but these data planes had not applied it.
    #[error(
        "the change is saved (revision {revision}) but {} of {expected} data plane(s) had not applied it \
         within {}: {}; they apply it when they catch up or reconnect",
        .pending.len(),
        humantime::format_duration(*.waited),
        .pending.join(", ")
    )]
    NotConfirmed {
        revision: u64,
        expected: u32,
        waited: Duration,
        pending: Vec<String>,
    },

    #[error("tool '{0}' reported an error (isError: true)")]
    ToolError(String),

    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error(transparent)]
    ConfFile(#[from] crate::conf_file::ConfFileError),

    /// `login --sso` or renewing its token: talking to the identity provider.
    #[error(transparent)]
    Sso(#[from] crate::sso::SsoError),

    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::NotConfirmed { .. } => exit::NOT_CONFIRMED,
            CliError::ToolError(_) => exit::TOOL_ERROR,
            _ => exit::FAILURE,
        })
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }
}

impl From<canopy_core::ScopeError> for CliError {
    fn from(e: canopy_core::ScopeError) -> Self {
        CliError::Usage(format!("--allow: {e}"))
    }
}

impl From<canopy_core::NameError> for CliError {
    fn from(e: canopy_core::NameError) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl From<canopy_core::TokenError> for CliError {
    fn from(e: canopy_core::TokenError) -> Self {
        // TokenError never contains the token itself.
        CliError::Usage(format!("--access-token: {e}"))
    }
}

/// The one mapping from a gRPC status to a sentence a person can act on.
fn describe_status(status: &tonic::Status, registry: &str) -> String {
    // Statuses tonic makes up locally from a connection failure carry the transport error
    // as their source; statuses the control plane answered never do. That is how a refused
    // connection is told apart from a server that chose to say "unavailable".
    let local = status.source().is_some();
    let msg = status.message();
    if local {
        if let Some(failure) = canopy_data_plane::tls::classify(status) {
            return format!(
                "cannot connect to the control plane at {registry}: {}",
                failure.describe("--ca-file")
            );
        }
    }
    if let Some(http) = msg.strip_prefix(NOT_GRPC) {
        // An HTTP server answered (a data plane's /mcp port, a web server): no gRPC at all.
        return format!(
            "{registry} is not a Canopy control plane: it answered plain HTTP (status {}), not gRPC \
             (is that the data plane's HTTP port? the control plane's gRPC port is {} unless it was \
             started with another --grpc-listen)",
            http.trim(),
            default_grpc_port()
        );
    }
    match status.code() {
        Code::Unauthenticated => "not logged in or token invalid: run `canopy login <token>`".to_owned(),
        Code::PermissionDenied => format!("permission denied: {msg}"),
        Code::Unavailable if local || msg.is_empty() => {
            format!("cannot reach the control plane at {registry}: is it running? ({})", root_cause(status))
        }
        // The control plane's own sentences ("client 'x' not found", "register server 'gh'
        // failed: connection refused", "… timed out after 60s") are already what to show.
        Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::InvalidArgument
        | Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
            if !local && !msg.is_empty() =>
        {
            msg.to_owned()
        }
        Code::Unimplemented => format!(
            "the control plane at {registry} does not support this command (is it an older version?): {msg}"
        ),
        _ if local => {
            // A plaintext client talking to a TLS listener reads the TLS alert as a broken
            // HTTP/2 frame; say what is the likely cause.
            let hint = if registry.starts_with("http://") {
                " (if the control plane serves TLS, use an https:// registry URL)"
            } else {
                ""
            };
            format!(
                "lost the connection to the control plane at {registry}: {}{hint}",
                root_cause(status)
            )
        }
        code => format!("control plane error ({}): {msg}", code_name(code)),
    }
}

/// How tonic words a reply without gRPC status: an HTTP server that does not speak gRPC.
pub(crate) const NOT_GRPC: &str = "grpc-status header missing, mapped from HTTP status code";

fn default_grpc_port() -> &'static str {
    crate::args::DEFAULT_REGISTRY
        .rsplit_once(':')
        .map_or("9090", |(_, port)| port)
}

/// The innermost error of a local status, which names the real problem
/// ("Connection refused", "dns error") instead of tonic's "transport error".
fn root_cause(status: &tonic::Status) -> String {
    let mut cause: &dyn std::error::Error = status;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() {
        status.message().to_owned()
    } else {
        text
    }
}

fn code_name(code: Code) -> String {
    // `Code`'s Debug is its name (`Internal`); Display is a long sentence.
    format!("{code:?}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const REG: &str = "http://127.0.0.1:9090";

    fn msg(status: tonic::Status) -> String {
        CliError::Rpc {
            status,
            registry: REG.into(),
        }
        .to_string()
    }

    #[test]
    fn maps_codes_to_actionable_messages() {
        assert_eq!(
            msg(tonic::Status::unauthenticated("bad token")),
            "not logged in or token invalid: run `canopy login <token>`"
        );
        assert_eq!(
            msg(tonic::Status::permission_denied("needs admin")),
            "permission denied: needs admin"
        );
        assert_eq!(
            msg(tonic::Status::not_found("no client 'x'")),
            "no client 'x'"
        );
        assert_eq!(msg(tonic::Status::already_exists("exists")), "exists");
        assert_eq!(
            msg(tonic::Status::failed_precondition("enterprise only")),
            "enterprise only"
        );
        assert_eq!(
            msg(tonic::Status::internal("boom")),
            "control plane error (Internal): boom"
        );
    }

    #[test]
    fn local_connection_failure_names_the_registry() {
        // What tonic builds when the TCP connect fails: Unavailable with the io error as source.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let mut status = tonic::Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(io));
        let m = msg(status);
        assert!(
            m.starts_with(
                "cannot reach the control plane at http://127.0.0.1:9090: is it running?"
            ),
            "{m}"
        );
        assert!(m.contains("Connection refused"), "{m}");
    }

    #[test]
    fn tls_failures_say_what_to_fix() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let mut status = tonic::Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(io));
        let m = CliError::Rpc {
            status,
            registry: "https://127.0.0.1:9090".into(),
        }
        .to_string();
        assert!(
            m.starts_with(
                "cannot connect to the control plane at https://127.0.0.1:9090: \
                 certificate not trusted: pass --ca-file"
            ),
            "{m}"
        );
    }

    #[test]
    fn an_http_server_is_not_a_control_plane() {
        let m = msg(tonic::Status::unimplemented(
            "grpc-status header missing, mapped from HTTP status code 404",
        ));
        assert!(
            m.starts_with(
                "http://127.0.0.1:9090 is not a Canopy control plane: it answered plain HTTP (status 404)"
            ),
            "{m}"
        );
        assert!(m.contains("the control plane's gRPC port is 9090"), "{m}");
        let gone = CliError::NotLoggedIn {
            path: "/h/.canopy.conf".into(),
            exists: false,
        };
        assert!(
            gone.to_string()
                .starts_with("not logged in: /h/.canopy.conf does not exist; run `canopy login"),
            "{gone}"
        );
    }

    #[test]
    fn server_sent_unavailable_keeps_its_message() {
        // e.g. the upstream a `register` names is down: not the control plane's fault.
        assert_eq!(
            msg(tonic::Status::unavailable(
                "register server 'gh' failed: connection refused"
            )),
            "register server 'gh' failed: connection refused"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::usage("x").exit_code(), ExitCode::from(2));
        let nc = CliError::NotConfirmed {
            revision: 7,
            expected: 2,
            waited: Duration::from_secs(5),
            pending: vec!["dp-b".into()],
        };
        assert_eq!(nc.exit_code(), ExitCode::from(3));
        assert_eq!(
            nc.to_string(),
            "the change is saved (revision 7) but 1 of 2 data plane(s) had not applied it within 5s: dp-b; \
             they apply it when they catch up or reconnect"
        );
        assert_eq!(
            CliError::ToolError("t".into()).exit_code(),
            ExitCode::from(4)
        );
    }
}
