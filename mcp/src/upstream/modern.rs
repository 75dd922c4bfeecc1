//! 2026-07-28 request shaping: `_meta` injected into `params` and the `Mcp-Name` header.
//!
//! `params` is re-emitted member by member in its original order, each value byte for
//! byte; only `_meta` is (re)built.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::{
    META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION, MODERN_VERSION,
};

const DEFAULT_META: &str = concat!(
    r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientCapabilities":{}}"#
);

/// The top-level members of a JSON object, in order, values raw.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(4));
                while let Some(entry) = m.next_entry::<String, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A modern request's params and the value of its `Mcp-Name` header, if the method has one.
#[derive(Debug)]
pub(crate) struct Shaped {
    pub params: String,
    pub name: Option<String>,
}

/// Adds the per-request `_meta` (keeping any the caller sent, e.g. `progressToken`).
pub(crate) fn shape(method: &str, params: Option<&RawValue>) -> Result<Shaped, String> {
    let members = match params {
        Some(p) => serde_json::from_str::<Members<'_>>(p.get())
            .map_err(|_| "params must be a JSON object".to_owned())?,
        None => Members(Vec::new()),
    };
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    let mut name = None;
    let mut out =
        String::with_capacity(params.map_or(0, |p| p.get().len()) + DEFAULT_META.len() + 16);
    out.push('{');
    let has_meta = members.0.iter().any(|(k, _)| k == "_meta");
    if !has_meta {
        out.push_str("\"_meta\":");
        out.push_str(DEFAULT_META);
    }
    for (key, value) in &members.0 {
        if out.len() > 1 {
            out.push(',');
        }
        push_str(&mut out, key);
        out.push(':');
        if key == "_meta" {
            out.push_str(&merged_meta(value)?);
        } else {
            out.push_str(value.get());
        }
        if Some(key.as_str()) == name_key {
            name = serde_json::from_str::<String>(value.get()).ok();
        }
    }
    out.push('}');
    if name_key.is_some() && name.is_none() {
        return Err(format!(
            "{method} needs a string params.{}",
            name_key.unwrap_or_default()
        ));
    }
    Ok(Shaped { params: out, name })
}

fn merged_meta(existing: &RawValue) -> Result<String, String> {
    let mut meta: serde_json::Map<String, serde_json::Value> = serde_json::from_str(existing.get())
        .map_err(|_| "params._meta must be a JSON object".to_owned())?;
    // The version must agree with our header; capabilities are the caller's if it set them.
    meta.insert(META_PROTOCOL_VERSION.to_owned(), MODERN_VERSION.into());
    meta.entry(META_CLIENT_CAPABILITIES)
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    serde_json::to_string(&meta).map_err(|_| "params._meta cannot be encoded".to_owned())
}

/// The 2026-07-28 per-request envelope keys of `params._meta`.
const ENVELOPE_KEYS: [&str; 3] = [
    META_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
];

/// `params` for a handshake-era upstream: a 2026-07-28 client's envelope keys
/// (`_meta` protocolVersion / clientCapabilities / clientInfo) removed, `_meta` dropped when
/// nothing else is left in it. Handshake-era servers may refuse enveloped requests (the
/// Python SDK does: "this connection serves the handshake protocol era"). Everything else,
/// e.g. `progressToken`, is kept byte for byte. `None` = use `params` unchanged (the
/// common case: no envelope, no allocation).
pub(crate) fn without_envelope(params: Option<&RawValue>) -> Option<Box<RawValue>> {
    let text = params?.get();
    if !text.contains("io.modelcontextprotocol/") {
        return None;
    }
    let members = serde_json::from_str::<Members<'_>>(text).ok()?;
    let meta = members.0.iter().find(|(k, _)| k == "_meta")?.1;
    let meta_members = serde_json::from_str::<Members<'_>>(meta.get()).ok()?;
    if !meta_members
        .0
        .iter()
        .any(|(k, _)| ENVELOPE_KEYS.contains(&k.as_str()))
    {
        return None;
    }
    let kept: Vec<&(String, &RawValue)> = meta_members
        .0
        .iter()
        .filter(|(k, _)| !ENVELOPE_KEYS.contains(&k.as_str()))
        .collect();
    let mut out = String::with_capacity(text.len());
    out.push('{');
    for (key, value) in &members.0 {
        if key == "_meta" && kept.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        push_str(&mut out, key);
        out.push(':');
        if key == "_meta" {
            out.push('{');
            for (i, (k, v)) in kept.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(&mut out, k);
                out.push(':');
                out.push_str(v.get());
            }
            out.push('}');
        } else {
            out.push_str(value.get());
        }
    }
    out.push('}');
    RawValue::from_string(out).ok()
}

fn push_str(out: &mut String, s: &str) {
    // A str always serializes; the fallback only keeps this free of unwrap.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
}

/// `Mcp-Name` value: plain when it is safe visible ASCII, else `=?base64?…?=` of its UTF-8.
pub(crate) fn header_value(s: &str) -> String {
    use base64::Engine as _;
    let plain = !s.is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.starts_with("=?");
    if plain {
        s.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }
}

#[cfg(test)]
mod tests;
