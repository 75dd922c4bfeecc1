//! The identity provider of the OAuth tests: `testing/node/idp.mjs`, the npm package
//! `oidc-provider` configured with resource indicators (JWT access tokens), PKCE, dynamic
//! registration, the device flow, client credentials, a `groups` claim and headless sign-in.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::listening::ListeningServer;
use crate::net::http_post;
use crate::paths::{node, node_tools, workspace_root};

/// The pre-registered confidential client of idp.mjs (client credentials).
pub const TEST_CLIENT: (&str, &str) = ("canopy-test", "canopy-test-secret");

pub struct IdentityProvider {
    server: ListeningServer,
    /// Keeps the private JWKS, so a restart on the same port serves the same (or rotated) keys.
    keys: TempDir,
    alg: String,
}

impl IdentityProvider {
    /// Access tokens signed with RS256.
    pub fn start() -> Self {
        Self::start_alg("RS256")
    }

    /// Access tokens signed with `alg` (`RS256`, `ES256` or `EdDSA`).
    pub fn start_alg(alg: &str) -> Self {
        let keys = tempfile::Builder::new()
            .prefix("canopy-idp-keys-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for the idp keys: {e:?}"));
        let server = spawn(&keys_file(&keys), 0, alg, false);
        Self {
            server,
            keys,
            alg: alg.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT`: the `iss` of its tokens.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn stderr_log(&self) -> String {
        self.server.stderr_log()
    }

    /// Stops it and starts it again on the same port with a new signing key of each algorithm
    /// in front (the old keys stay published): tokens minted from now on carry a `kid` the
    /// data planes have not seen.
    pub fn restart_rotated(&mut self) {
        let port = self.addr().port();
        self.server.kill9();
        self.server = spawn(&keys_file(&self.keys), port, &self.alg, true);
    }

    /// A token of its own making (`POST /test/mint`, see idp.mjs): `req` like
    /// `{"sub": "alice", "aud": URL, "exp_in": -60, "alg": "none"}`.
    pub fn mint(&self, req: &Value) -> String {
        let (status, body) = http_post(
            self.addr(),
            "/test/mint",
            "application/json",
            &[],
            &req.to_string(),
        )
        .unwrap_or_else(|| panic!("idp /test/mint did not answer"));
        assert_eq!(status, 200, "idp /test/mint: {body}");
        json_field(&body, "token")
    }

    /// Plays the user of the device flow (RFC 8628): opens the verification URL with
    /// `user_code`, submits the code and the confirmation, and signs in `login`. True when the
    /// provider accepted it (the client's polling then gets its tokens).
    pub fn approve_device(&self, user_code: &str, login: &str) -> bool {
        let req = serde_json::json!({"user_code": user_code, "login": login});
        let (status, body) = http_post(
            self.addr(),
            "/test/approve-device",
            "application/json",
            &[],
            &req.to_string(),
        )
        .unwrap_or_else(|| panic!("idp /test/approve-device did not answer"));
        assert_eq!(status, 200, "idp /test/approve-device: {body}");
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["approved"].as_bool())
            .unwrap_or(false)
    }

    /// An access token for `resource` from the client-credentials grant of [`TEST_CLIENT`]
    /// (its `sub` is the client id).
    pub fn client_credentials(&self, resource: &str) -> String {
        let form = format!(
            "grant_type=client_credentials&scope=mcp&resource={}",
            percent_encode(resource)
        );
        let basic = base64_basic(TEST_CLIENT.0, TEST_CLIENT.1);
        let (status, body) = http_post(
            self.addr(),
            "/token",
            "application/x-www-form-urlencoded",
            &[("Authorization", &format!("Basic {basic}"))],
            &form,
        )
        .unwrap_or_else(|| panic!("idp /token did not answer"));
        assert_eq!(status, 200, "idp /token: {body}");
        json_field(&body, "access_token")
    }
}

/// Run `testing/node/oauth_client.mjs <url> --login <account> <extra>`: the TypeScript SDK's
/// auth flow signs in at an [`IdentityProvider`] given only the URL. Returns its JSON document
/// `{"ok", "tools", "call", "error", "token_claims"}` (see the script).
pub fn node_oauth_client(url: &str, login: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new(node());
    cmd.arg(workspace_root().join("testing/node/oauth_client.mjs"))
        .args([url, "--login", login])
        .args(extra)
        .env("CANOPY_NODE_TOOLS", node_tools());
    crate::python::run_json_program("node oauth_client.mjs", cmd)
}

fn keys_file(dir: &TempDir) -> PathBuf {
    dir.path().join("jwks.json")
}

fn spawn(keys: &std::path::Path, port: u16, alg: &str, rotate: bool) -> ListeningServer {
    let mut cmd = Command::new(node());
    cmd.arg(workspace_root().join("testing/node/idp.mjs"))
        .args(["--port", &port.to_string(), "--alg", alg])
        .arg("--keys-file")
        .arg(keys)
        .env("CANOPY_NODE_TOOLS", node_tools());
    if rotate {
        cmd.arg("--rotate");
    }
    ListeningServer::start("node idp.mjs", cmd, "canopy-idp-", "identity provider")
}

fn json_field(body: &str, field: &str) -> String {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("idp answered no JSON ({e}): {body}"));
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("idp answer has no {field}: {body}"))
        .to_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
