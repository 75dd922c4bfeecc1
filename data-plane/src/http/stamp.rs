//! What a 2026-07-28 client gets on top of an upstream's result: `resultType`
//! (`complete` unless the upstream set one, e.g. `input_required`, which passes
//! unchanged) and the gateway's serverInfo in `_meta`. Everything else is copied
//! byte for byte.
//!
//! A handshake-era client gets the result unchanged, except that a serverInfo an upstream
//! put in `_meta` is replaced by the gateway's: a result names the server that answered
//! the client, Canopy, in both eras (as `initialize` and `server/discover` do).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::{push_str, span_in, RawObject};
use canopy_mcp::protocol::META_SERVER_INFO;

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<&'a RawValue>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<&'a RawValue>,
}

/// Writes `result` stamped; `member` is `"io.modelcontextprotocol/serverInfo":{…}`.
pub(crate) fn write_stamped(out: &mut Vec<u8>, result: &str, member: &[u8]) {
    let text = result.trim();
    let top = match serde_json::from_str::<Top<'_>>(text) {
        Ok(t) if text.starts_with('{') => t,
        // Not an object (or duplicate keys): relay untouched rather than guess.
        _ => return out.extend_from_slice(result.as_bytes()),
    };
    let inner = &text[1..];
    out.push(b'{');
    if top.result_type.is_none() {
        out.extend_from_slice(b"\"resultType\":\"complete\",");
    }
    match top
        .meta
        .and_then(|m| span_in(text, m.get()).map(|r| (m, r)))
    {
        None => {
            out.extend_from_slice(b"\"_meta\":{");
            out.extend_from_slice(member);
            out.push(b'}');
            if !inner.trim_start().starts_with('}') {
                out.push(b',');
            }
            out.extend_from_slice(inner.as_bytes());
        }
        Some((meta, range)) => {
            out.extend_from_slice(&text.as_bytes()[1..range.start]);
            write_meta(out, meta.get(), member);
            out.extend_from_slice(&text.as_bytes()[range.end..]);
        }
    }
}

/// A handshake-era result: byte for byte, unless its `_meta` carries a serverInfo (an
/// upstream's), which becomes `member`, the gateway's.
pub(crate) fn write_identified(out: &mut Vec<u8>, result: &str, member: &[u8]) {
    // Most results carry no serverInfo: no parse on that path.
    if !result.contains(META_SERVER_INFO) {
        return out.extend_from_slice(result.as_bytes());
    }
    let text = result.trim();
    let meta = match serde_json::from_str::<Top<'_>>(text) {
        Ok(t) if text.starts_with('{') => t.meta,
        _ => None,
    };
    match meta.and_then(|m| span_in(text, m.get()).map(|r| (m, r))) {
        Some((meta, range)) if meta.get().trim_start().starts_with('{') => {
            out.extend_from_slice(&text.as_bytes()[..range.start]);
            write_meta(out, meta.get(), member);
            out.extend_from_slice(&text.as_bytes()[range.end..]);
        }
        _ => out.extend_from_slice(result.as_bytes()),
    }
}

/// `_meta` with our serverInfo first and the upstream's other members after it.
fn write_meta(out: &mut Vec<u8>, meta: &str, member: &[u8]) {
    let Ok(obj) = RawObject::parse(meta) else {
        return out.extend_from_slice(meta.as_bytes());
    };
    out.push(b'{');
    out.extend_from_slice(member);
    for (k, v) in obj.0.iter().filter(|(k, _)| k != META_SERVER_INFO) {
        out.push(b',');
        push_str(out, k);
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const M: &[u8] = br#""io.modelcontextprotocol/serverInfo":{"name":"canopy"}"#;

    fn stamp(s: &str) -> String {
        let mut out = Vec::new();
        write_stamped(&mut out, s, M);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn adds_result_type_and_meta() {
        assert_eq!(
            stamp(r#"{"content":[],"x-y":1.50}"#),
            r#"{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"canopy"}},"content":[],"x-y":1.50}"#
        );
        assert_eq!(
            stamp("{}"),
            r#"{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"canopy"}}}"#
        );
    }

    #[test]
    fn keeps_upstream_result_type_and_merges_meta() {
        let out = stamp(
            r#"{"resultType":"input_required","_meta":{"a":1,"io.modelcontextprotocol/serverInfo":{"name":"up"}},"z":2}"#,
        );
        assert_eq!(
            out,
            r#"{"resultType":"input_required","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"canopy"},"a":1},"z":2}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["resultType"], "input_required");
    }

    #[test]
    fn non_objects_pass_through() {
        assert_eq!(stamp("[1]"), "[1]");
    }

    fn identify(s: &str) -> String {
        let mut out = Vec::new();
        write_identified(&mut out, s, M);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn handshake_era_replaces_only_an_upstream_server_info() {
        let plain = r#"{"content":[],"_meta":{"a":1}}"#;
        assert_eq!(identify(plain), plain);
        assert_eq!(
            identify(
                r#"{"content":[],"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"up"},"a":1}}"#
            ),
            r#"{"content":[],"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"canopy"},"a":1}}"#
        );
        // The key elsewhere (inside content) is the upstream's data, not its identity.
        let text = r#"{"content":[{"type":"text","text":"io.modelcontextprotocol/serverInfo"}]}"#;
        assert_eq!(identify(text), text);
    }
}
