//! Who is calling: a static MCP-client token (opaque, looked up by its keyed hash) or a
//! JWT access token from an identity provider (verified from memory, then cached under
//! the same hash). Either way the answer is the caller's scope; the token itself goes no
//! further (it is never forwarded upstream).

use canopy_core::TokenHash;
use http::HeaderMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::checks;
use super::reply::{Challenge, Failure};
use crate::app::DataPlane;
use crate::audit::{Principal, Recorder};
use crate::identity::Denied;
use crate::state::{Scope, View};
use crate::status::now_ms;

/// The enterprise-mode auth decision for a request to `/mcp` (`target` `None`) or
/// `/servers/<target>/mcp`.
pub(crate) fn authorize(
    dp: &DataPlane,
    view: &View,
    headers: &HeaderMap,
    target: Option<&str>,
    rec: &mut Recorder,
) -> Result<Arc<Scope>, Failure> {
    // Who a refused request came from is not known: it is recorded as anonymous.
    rec.principal(|| Principal::Anonymous);
    let Some(token) = checks::bearer(headers) else {
        return Err(deny(dp, target, Challenge::Missing));
    };
    let now = now_ms();
    // Memory only: one keyed hash serves both indexes. The token is never logged.
    let hash: TokenHash = view.hasher.hash(token);
    if rec.is_on() {
        // The client's name costs a read `lookup` avoids; only the audit trail needs it.
        if let Some((scope, name)) = view.tokens.lookup_named(&hash, now) {
            rec.principal(|| Principal::Client(name));
            return Ok(scope);
        }
    } else if let Some(scope) = view.tokens.lookup(&hash, now) {
        return Ok(scope);
    }
    let ids = &dp.state.identities;
    if !ids.is_enabled() {
        return Err(deny(dp, target, Challenge::Invalid));
    }
    match ids.authorize_who(token, &hash, &dp.settings.resource, target, now) {
        Ok((scope, who)) => {
            rec.principal(|| Principal::SignedIn(who));
            Ok(scope)
        }
        Err(Denied::InsufficientScope) => Err(deny(dp, target, Challenge::InsufficientScope)),
        Err(Denied::Unauthorized(why)) => {
            // Debug-formatted: the reason may quote token text (a `kid`).
            tracing::debug!(reason = ?why.to_string(), "refused an access token");
            Err(deny(dp, target, Challenge::Invalid))
        }
    }
}

fn deny(dp: &DataPlane, target: Option<&str>, kind: Challenge) -> Failure {
    dp.state
        .metrics
        .auth_failures
        .fetch_add(1, Ordering::Relaxed);
    let path = match target {
        None => "/mcp".to_owned(),
        Some(name) => format!("/servers/{name}/mcp"),
    };
    let dir = dp.state.identities.directory();
    Failure::Auth {
        kind,
        metadata_url: dp.settings.resource.metadata_url(&path),
        scope: dir.required_scopes().join(" "),
    }
}
