//! Discovery: connect, then list tools and prompts following `nextCursor`.
//!
//! Definitions are kept as raw JSON so unknown fields survive. Pages are capped and a
//! repeated cursor is an error, so a looping server cannot keep us busy forever.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashSet;

use super::{Discovery, Upstream, UpstreamError};
use crate::jsonrpc::code;

/// Most pages we follow for one list.
pub(crate) const MAX_PAGES: usize = 1000;

pub(crate) async fn run(up: &Upstream) -> Result<Discovery, UpstreamError> {
    let info = up.connect().await?;
    let tools = list_all(up, "tools/list", "tools").await?;
    let prompts = if info.prompts == Some(false) {
        Vec::new()
    } else {
        match list_all(up, "prompts/list", "prompts").await {
            // A server without prompts may still not declare that; -32601 means "none".
            Err(UpstreamError::Rpc {
                code: code::METHOD_NOT_FOUND,
                ..
            }) => Vec::new(),
            other => other?,
        }
    };
    Ok(Discovery {
        protocol_version: info.protocol_version,
        tools,
        prompts,
    })
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tools: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    prompts: Option<Vec<Box<RawValue>>>,
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

async fn list_all(
    up: &Upstream,
    method: &str,
    field: &str,
) -> Result<Vec<Box<RawValue>>, UpstreamError> {
    let server = || up.config().name.clone();
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => {
                let body = serde_json::json!({ "cursor": c }).to_string();
                Some(
                    RawValue::from_string(body).map_err(|e| UpstreamError::Protocol {
                        server: server(),
                        reason: format!("cannot encode cursor: {e}"),
                    })?,
                )
            }
            None => None,
        };
        let resp = up.request(method, params.as_deref(), None).await?;
        let result = resp.outcome.map_err(|e| UpstreamError::Rpc {
            server: server(),
            method: method.to_owned(),
            code: e.code,
            message: e.message,
        })?;
        let page: Page =
            serde_json::from_str(result.get()).map_err(|_| UpstreamError::Protocol {
                server: server(),
                reason: format!("{method} result is not a list result"),
            })?;
        let list = if field == "tools" {
            page.tools
        } else {
            page.prompts
        };
        let list = list.ok_or_else(|| UpstreamError::Protocol {
            server: server(),
            reason: format!("{method} result has no '{field}' array"),
        })?;
        items.extend(list);
        match page.next_cursor {
            Some(next) => {
                if !seen.insert(next.clone()) {
                    return Err(UpstreamError::Protocol {
                        server: server(),
                        reason: format!("{method} pagination repeats a cursor"),
                    });
                }
                cursor = Some(next);
            }
            None => return Ok(items),
        }
    }
    Err(UpstreamError::Protocol {
        server: server(),
        reason: format!("{method} has more than {MAX_PAGES} pages"),
    })
}
