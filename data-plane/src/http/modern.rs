//! 2026-07-28 request validation, in the order mcp-wire.md gives:
//! `_meta` (400/-32602) → headers (400/-32020) → version (400/-32022) → method (404/-32601).

use canopy_mcp::protocol::{HEADER_METHOD, HEADER_NAME, MODERN_VERSION};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::checks::mcp_header;
use super::envelope::Params;
use super::reply::{Echo, Echoed, Failure};
use crate::json;

/// Methods a 2026-07-28 client may call here.
pub(crate) const METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    // Passed through on `/servers/<name>/mcp` only (see `mcp::request`).
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
];

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    version: Option<&'a RawValue>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", borrow, default)]
    capabilities: Option<&'a RawValue>,
}

fn is_object(v: &RawValue) -> bool {
    v.get().trim_start().starts_with('{')
}

/// `header_version` is the raw `MCP-Protocol-Version` value (`Err` = not valid text).
pub(crate) fn validate(
    headers: &HeaderMap,
    header_version: Result<&str, ()>,
    method: &str,
    params: Option<&Params<'_>>,
) -> Result<(), Failure> {
    // 1. _meta
    let params = params.ok_or(Failure::BadMeta("params must be an object"))?;
    let meta_raw = params
        .meta
        .ok_or(Failure::BadMeta("params._meta is required"))?;
    let meta: Meta<'_> = serde_json::from_str(meta_raw.get())
        .map_err(|_| Failure::BadMeta("params._meta must be an object"))?;
    let version = meta.version.and_then(json::as_str).ok_or(Failure::BadMeta(
        "_meta[\"io.modelcontextprotocol/protocolVersion\"] must be a string",
    ))?;
    match meta.capabilities {
        Some(c) if is_object(c) => {}
        _ => {
            return Err(Failure::BadMeta(
                "_meta[\"io.modelcontextprotocol/clientCapabilities\"] must be an object",
            ))
        }
    }

    // 2. headers
    let hv = header_version
        .map(|v| v.trim_matches(|c| c == ' ' || c == '\t'))
        .map_err(|()| Failure::HeaderMismatch("MCP-Protocol-Version header is not valid".into()))?;
    if hv != version {
        return Err(Failure::HeaderMismatch(format!(
            "MCP-Protocol-Version header '{}' does not match _meta protocolVersion '{}'",
            Echo(hv),
            Echo(&version)
        )));
    }
    check_header(
        headers,
        HEADER_METHOD,
        "Mcp-Method",
        Some(Cow::Borrowed(method)),
    )?;
    let named = match method {
        "tools/call" | "prompts/get" => Some(params.name),
        "resources/read" => Some(params.uri),
        _ => None,
    };
    if let Some(body_value) = named {
        check_header(
            headers,
            HEADER_NAME,
            "Mcp-Name",
            body_value.and_then(json::as_str),
        )?;
    }

    // 3. version
    if version != MODERN_VERSION {
        return Err(Failure::UnsupportedVersion(Echoed::new(&version)));
    }

    // 4. method
    if !METHODS.contains(&method) {
        return Err(Failure::MethodNotFound {
            method: Echoed::new(method),
            modern: true,
        });
    }
    Ok(())
}

/// The header must be present and equal the body's value. When the body lacks the
/// value the header cannot disagree with it; the method reports the missing param.
fn check_header(
    headers: &HeaderMap,
    name: &str,
    display: &str,
    body: Option<Cow<'_, str>>,
) -> Result<(), Failure> {
    match mcp_header(headers, name) {
        None => Err(Failure::HeaderMismatch(format!("missing {display} header"))),
        Some(Err(())) => Err(Failure::HeaderMismatch(format!(
            "{display} header is not valid"
        ))),
        Some(Ok(h)) => match body {
            Some(b) if *b != *h => Err(Failure::HeaderMismatch(format!(
                "{display} header '{}' does not match the body ('{}')",
                Echo(&h),
                Echo(&b)
            ))),
            _ => Ok(()),
        },
    }
}
