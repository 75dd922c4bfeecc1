//! What both eras' connection setup exchanges: the `initialize` offer, the
//! `server/discover` probe, and what we keep from their answers.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{UpstreamConfig, UpstreamError};
use crate::jsonrpc::ErrorObject;
use crate::protocol::MODERN_VERSION;

/// Offered in `initialize`; the server may answer any version it speaks and we accept it.
pub(crate) const INITIALIZE_PARAMS: &str = concat!(
    r#"{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"canopy","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}"#
);

/// Params of the 2026-07-28 `server/discover` probe.
pub(crate) const DISCOVER_PARAMS: &str = concat!(
    r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"canopy","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}}"#
);

/// What a connection learned about the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    pub protocol_version: String,
    /// Whether the server declared the `prompts` capability; `None` when it sent no capabilities.
    pub prompts: Option<bool>,
}

#[derive(Deserialize)]
struct Capabilities<'a> {
    #[serde(borrow, default)]
    prompts: Option<&'a RawValue>,
}

fn prompts_of(caps: Option<Capabilities<'_>>) -> Option<bool> {
    caps.map(|c| c.prompts.is_some_and(|p| p.get().trim() != "null"))
}

/// Reads an `initialize` result.
pub(crate) fn parse_initialize(result: &RawValue) -> Result<ConnInfo, String> {
    #[derive(Deserialize)]
    struct InitResult<'a> {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
        #[serde(borrow, default)]
        capabilities: Option<Capabilities<'a>>,
    }
    let r: InitResult<'_> = serde_json::from_str(result.get())
        .map_err(|_| "initialize result has no protocolVersion string".to_owned())?;
    Ok(ConnInfo {
        protocol_version: r.protocol_version,
        prompts: prompts_of(r.capabilities),
    })
}

/// [`INITIALIZE_PARAMS`] as raw params, for the transports that send params as a `RawValue`.
pub(crate) fn initialize_params(cfg: &UpstreamConfig) -> Result<Box<RawValue>, UpstreamError> {
    RawValue::from_string(INITIALIZE_PARAMS.to_owned())
        .map_err(|_| cfg.protocol_error("cannot encode initialize".into()))
}

/// The upstream's answer to `initialize`: its JSON-RPC error, or what the connection learned.
pub(crate) fn read_initialize(
    cfg: &UpstreamConfig,
    outcome: Result<Box<RawValue>, ErrorObject>,
) -> Result<ConnInfo, UpstreamError> {
    let result = outcome.map_err(|e| UpstreamError::Rpc {
        server: cfg.name.clone(),
        method: "initialize".into(),
        code: e.code,
        message: e.message,
    })?;
    parse_initialize(&result).map_err(|r| cfg.protocol_error(r))
}

/// Reads a `server/discover` result; `Some` only when the server speaks 2026-07-28.
pub(crate) fn parse_discover(result: &RawValue) -> Option<ConnInfo> {
    #[derive(Deserialize)]
    struct DiscoverResult<'a> {
        #[serde(rename = "supportedVersions", default)]
        supported: Vec<String>,
        #[serde(borrow, default)]
        capabilities: Option<Capabilities<'a>>,
    }
    let r: DiscoverResult<'_> = serde_json::from_str(result.get()).ok()?;
    r.supported
        .iter()
        .any(|v| v == MODERN_VERSION)
        .then(|| ConnInfo {
            protocol_version: MODERN_VERSION.to_owned(),
            prompts: prompts_of(r.capabilities),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("test JSON")
    }

    #[test]
    fn constants_are_valid_json() {
        assert!(serde_json::from_str::<serde_json::Value>(INITIALIZE_PARAMS).is_ok());
        let d: serde_json::Value = serde_json::from_str(DISCOVER_PARAMS).expect("json");
        assert_eq!(
            d["_meta"]["io.modelcontextprotocol/protocolVersion"],
            MODERN_VERSION
        );
    }

    #[test]
    fn initialize_result() {
        let i = parse_initialize(&raw(
            r#"{"protocolVersion":"2025-03-26","capabilities":{"tools":{}}}"#,
        ))
        .expect("ok");
        assert_eq!(
            i,
            ConnInfo {
                protocol_version: "2025-03-26".into(),
                prompts: Some(false)
            }
        );
        assert!(parse_initialize(&raw("{}")).is_err());
    }

    #[test]
    fn discover_result() {
        assert!(parse_discover(&raw(r#"{"supportedVersions":["2025-11-25"]}"#)).is_none());
        let d = parse_discover(&raw(
            r#"{"supportedVersions":["2026-07-28"],"capabilities":{"prompts":{}}}"#,
        ));
        assert_eq!(
            d,
            Some(ConnInfo {
                protocol_version: MODERN_VERSION.into(),
                prompts: Some(true)
            })
        );
    }
}
