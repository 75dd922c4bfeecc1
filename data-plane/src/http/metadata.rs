//! RFC 9728 Protected Resource Metadata: how an OAuth client that was only given the
//! URL finds the authorization servers to get a token from. Served at the path-inserted
//! well-known URL of each endpoint (`/.well-known/oauth-protected-resource/mcp`,
//! `…/servers/<name>/mcp`) and at the root (the whole data plane). Enterprise mode only:
//! in development mode nothing asks for a token.
//!
//! The document is the same for any server name: answering 404 for unknown ones would
//! tell an unauthenticated caller which servers exist.

use axum::response::Response;
use http::header::CACHE_CONTROL;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::reply;
use crate::app::DataPlane;
use crate::state::Mode;

#[derive(Serialize)]
struct Metadata<'a> {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    bearer_methods_supported: [&'a str; 1],
    resource_name: &'a str,
}

/// `path` is the resource's path: `/mcp`, `/servers/<name>/mcp`, or `""` for the root.
pub(crate) fn serve(dp: &DataPlane, path: &str) -> Response {
    match dp.state.load_view().map(|v| v.mode) {
        Some(Mode::Enterprise) => {}
        Some(Mode::Development) => return plain(StatusCode::NOT_FOUND, "not found"),
        None => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "data plane has no state from the control plane yet",
            )
        }
    }
    let dir = dp.state.identities.directory();
    let doc = Metadata {
        resource: dp.settings.resource.url(path),
        authorization_servers: dir.issuers(),
        scopes_supported: dir.required_scopes(),
        bearer_methods_supported: ["header"],
        resource_name: "Canopy MCP gateway",
    };
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let mut r = reply::json(StatusCode::OK, body);
    // Short: providers come and go with the control plane's changes.
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    r
}

fn plain(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    reply::json(status, body)
}
