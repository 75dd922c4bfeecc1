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
) -> Result<Arc<Scope>, Failure> {
    let Some(token) = checks::bearer(headers) else {
        return Err(deny(dp, target, Challenge::Missing));
    };
    let now = now_ms();
    // Memory only: one keyed hash serves both indexes. The token is never logged.
    let hash: TokenHash = view.hasher.hash(token);
    if let Some(scope) = view.tokens.lookup(&hash, now) {
        return Ok(scope);
    }
    let ids = &dp.state.identities;
    if !looks_like_jwt(token) || !ids.is_enabled() {
        return Err(deny(dp, target, Challenge::Invalid));
    }
    match ids.authorize(token, &hash, &dp.settings.resource, target, now) {
        Ok(scope) => Ok(scope),
        Err(Denied::InsufficientScope) => Err(deny(dp, target, Challenge::InsufficientScope)),
        Err(Denied::Unauthorized(why)) => {
            tracing::debug!(reason = %why, "refused an access token");
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

/// Three non-empty base64url parts separated by dots (a JWS in compact form). Static
/// tokens never contain a dot (they are base64url with a prefix, or admin-chosen text
/// without whitespace: one with two dots would be tried as a JWT and fail the same).
fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

#[cfg(test)]
mod tests {
    #[test]
    fn jwt_shape() {
        assert!(super::looks_like_jwt(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
        ));
        for t in [
            "canopy_mcp_abc",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b+c.d",
            "a.b.c=",
        ] {
            assert!(!super::looks_like_jwt(t), "{t}");
        }
    }
}
