//! 2026-07-28 request shaping: `_meta` injected into `params` and the `Mcp-Name` header.
//!
//! `params` is never re-serialized: `_meta` is spliced into its text (or, when the caller
//! sent one, only that member's value is rewritten); every other byte is copied.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

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

/// The top-level members `shape` cares about, borrowed from the params text. Other members
/// are skipped without allocating; a repeated key keeps its last value (as before).
#[derive(Default)]
struct Top<'a> {
    meta: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    uri: Option<&'a RawValue>,
}

/// A top-level key, classified without allocating.
enum Key {
    Meta,
    Name,
    Uri,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "_meta" => Key::Meta,
                    "name" => Key::Name,
                    "uri" => Key::Uri,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut top = Top::default();
                while let Some(key) = m.next_key::<Key>()? {
                    let value = m.next_value::<&'de RawValue>()?;
                    match key {
                        Key::Meta => top.meta = Some(value),
                        Key::Name => top.name = Some(value),
                        Key::Uri => top.uri = Some(value),
                        Key::Other => {}
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

/// A modern request's params and the value of its `Mcp-Name` header, if the method has one.
#[derive(Debug)]
pub(crate) struct Shaped<'a> {
    pub params: String,
    pub name: Option<Cow<'a, str>>,
}

/// Adds the per-request `_meta` (keeping any the caller sent, e.g. `progressToken`).
///
/// `params` is not re-serialized: without a `_meta`, `"_meta":{…}` is spliced in after the
/// opening brace; with one, only the `_meta` value is replaced (its members kept in order,
/// byte for byte, the protocol version set and capabilities added if missing). Everything
/// else is copied unchanged.
pub(crate) fn shape<'a>(method: &str, params: Option<&'a RawValue>) -> Result<Shaped<'a>, String> {
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    let Some(p) = params else {
        if let Some(key) = name_key {
            return Err(format!("{method} needs a string params.{key}"));
        }
        let mut out = String::with_capacity(DEFAULT_META.len() + 10);
        out.push_str("{\"_meta\":");
        out.push_str(DEFAULT_META);
        out.push('}');
        return Ok(Shaped {
            params: out,
            name: None,
        });
    };
    let text: &'a str = p.get();
    let top = serde_json::from_str::<Top<'a>>(text)
        .map_err(|_| "params must be a JSON object".to_owned())?;
    let name = match name_key {
        None => None,
        Some(key) => {
            let raw = if key == "name" { top.name } else { top.uri };
            let name = raw.and_then(json_str);
            if name.is_none() {
                return Err(format!("{method} needs a string params.{key}"));
            }
            name
        }
    };
    let mut out = String::with_capacity(text.len() + DEFAULT_META.len() + 16);
    match top.meta {
        None => {
            // The text parsed as an object, so its first non-blank byte is `{`.
            let open = text.find('{').ok_or("params must be a JSON object")? + 1;
            let empty = text[open..].trim_start().starts_with('}');
            out.push_str(&text[..open]);
            out.push_str("\"_meta\":");
            out.push_str(DEFAULT_META);
            if !empty {
                out.push(',');
            }
            out.push_str(&text[open..]);
        }
        Some(meta) => {
            let span = subslice_range(text, meta.get())
                .ok_or_else(|| "params._meta must be a JSON object".to_owned())?;
            out.push_str(&text[..span.start]);
            merge_meta(&mut out, meta)?;
            out.push_str(&text[span.end..]);
        }
    }
    Ok(Shaped { params: out, name })
}

/// A JSON string's value, borrowed when it has no escapes.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

/// Where `part` (a slice of `whole`) lies in `whole`.
fn subslice_range(whole: &str, part: &str) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// Writes `existing` with the protocol version set to ours (the version must agree with our
/// header) and capabilities added when the caller set none; every other member is kept in
/// order, byte for byte.
fn merge_meta(out: &mut String, existing: &RawValue) -> Result<(), String> {
    let members = serde_json::from_str::<Members<'_>>(existing.get())
        .map_err(|_| "params._meta must be a JSON object".to_owned())?;
    let mut has_version = false;
    let mut has_caps = false;
    out.push('{');
    for (i, (key, value)) in members.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, key);
        out.push(':');
        if key == META_PROTOCOL_VERSION {
            has_version = true;
            push_str(out, MODERN_VERSION);
        } else {
            has_caps |= key == META_CLIENT_CAPABILITIES;
            out.push_str(value.get());
        }
    }
    for (missing, key, value) in [
        (!has_version, META_PROTOCOL_VERSION, None),
        (!has_caps, META_CLIENT_CAPABILITIES, Some("{}")),
    ] {
        if !missing {
            continue;
        }
        if !out.ends_with('{') {
            out.push(',');
        }
        push_str(out, key);
        out.push(':');
        match value {
            Some(v) => out.push_str(v),
            None => push_str(out, MODERN_VERSION),
        }
    }
    out.push('}');
    Ok(())
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

/// `Mcp-Method` value; the methods of the hot path are static (no allocation).
pub(crate) fn method_header(method: &str) -> Option<http::HeaderValue> {
    use http::HeaderValue;
    Some(match method {
        "tools/call" => HeaderValue::from_static("tools/call"),
        "tools/list" => HeaderValue::from_static("tools/list"),
        "prompts/get" => HeaderValue::from_static("prompts/get"),
        "prompts/list" => HeaderValue::from_static("prompts/list"),
        "resources/read" => HeaderValue::from_static("resources/read"),
        "resources/list" => HeaderValue::from_static("resources/list"),
        other => return HeaderValue::from_str(other).ok(),
    })
}

/// `Mcp-Name` header built straight from the name (see [`header_value`]).
pub(crate) fn name_header(s: &str) -> Option<http::HeaderValue> {
    if is_plain(s) {
        http::HeaderValue::from_str(s).ok()
    } else {
        http::HeaderValue::from_str(&header_value(s)).ok()
    }
}

fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.starts_with("=?")
}

/// `Mcp-Name` value: plain when it is safe visible ASCII, else `=?base64?…?=` of its UTF-8.
pub(crate) fn header_value(s: &str) -> String {
    use base64::Engine as _;
    if is_plain(s) {
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
