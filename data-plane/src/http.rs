//! The HTTP surface: `/mcp`, `/servers/<name>/mcp`, the OAuth protected-resource
//! metadata, `/healthz`, `/readyz`, `/metrics`.

mod auth;
mod body;
mod checks;
mod envelope;
mod mcp;
mod metadata;
mod modern;
mod ops;
mod reply;
mod stamp;
mod stream;
#[cfg(test)]
mod tests;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::DataPlane;
use crate::identity::WELL_KNOWN;

/// The data plane's routes. No middleware sits in front of `/mcp`: every check it needs
/// (origin, media types, body limit, auth) runs inside the handler in a fixed order,
/// so each failure gets its JSON-RPC body and the hot path pays for no extra layers.
pub fn router(dp: Arc<DataPlane>) -> Router {
    Router::new()
        .route(
            "/mcp",
            post(post_mcp).get(not_allowed_mcp).delete(not_allowed_mcp),
        )
        .route(
            "/servers/{name}/mcp",
            post(post_server)
                .get(not_allowed_server)
                .delete(not_allowed_server),
        )
        .route(WELL_KNOWN, get(metadata_root))
        .route(&format!("{WELL_KNOWN}/mcp"), get(metadata_mcp))
        .route(
            &format!("{WELL_KNOWN}/servers/{{name}}/mcp"),
            get(metadata_server),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(dp)
}

async fn post_mcp(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    mcp::serve(&dp, None, &parts.headers, body, peer(&parts)).await
}

/// The client's address, as the listener put it on the request.
fn peer(parts: &http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

async fn post_server(
    State(dp): State<Arc<DataPlane>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    mcp::serve(&dp, Some(&name), &parts.headers, body, peer(&parts)).await
}

async fn metadata_root(State(dp): State<Arc<DataPlane>>) -> Response {
    metadata::serve(&dp, "")
}

async fn metadata_mcp(State(dp): State<Arc<DataPlane>>) -> Response {
    metadata::serve(&dp, "/mcp")
}

async fn metadata_server(State(dp): State<Arc<DataPlane>>, Path(name): Path<String>) -> Response {
    metadata::serve(&dp, &format!("/servers/{name}/mcp"))
}

/// Stateless: no GET stream, no session to DELETE.
async fn not_allowed_mcp(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    mcp::not_allowed(&dp, None, &parts.headers, peer(&parts))
}

async fn not_allowed_server(
    State(dp): State<Arc<DataPlane>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    mcp::not_allowed(&dp, Some(&name), &parts.headers, peer(&parts))
}
