//! The trace context an upstream call carries: a `traceparent` value, and the same value in
//! `params._meta.traceparent` (SEP-414) for transports without headers (stdio).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json::{span_in, RawObject};

/// `params` with `_meta.traceparent` set to `traceparent` (other `_meta` members kept).
/// `None` when params are not an object or `_meta` is not one: they go unchanged.
pub(crate) fn with_meta_traceparent(
    params: Option<&RawValue>,
    traceparent: &str,
) -> Option<Box<RawValue>> {
    if let Some(spliced) = splice(params, traceparent) {
        return Some(spliced);
    }
    // What the splice leaves (duplicate keys, a key spelt with escapes, …): parsed and
    // written again.
    let mut top: Map<String, Value> = match params {
        Some(p) => serde_json::from_str(p.get()).ok()?,
        None => Map::new(),
    };
    let meta = top
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else {
        return None;
    };
    meta.insert(
        "traceparent".to_owned(),
        Value::String(traceparent.to_owned()),
    );
    serde_json::value::to_raw_value(&top).ok()
}

/// Params' `_meta`, when the top level is an object that names it at most once.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<&'a RawValue>,
}

/// `{"traceparent":"<tp>"` + (`}` when `rest`, an object's text after its `{`, is empty,
/// else `,` + `rest`): the object with the member added first, the rest byte for byte.
fn open_with_traceparent(out: &mut String, traceparent: &str, rest: &str) {
    out.push_str("{\"traceparent\":\"");
    out.push_str(traceparent);
    out.push('"');
    if rest.trim_start().starts_with('}') {
        out.push('}');
    } else {
        out.push(',');
        out.push_str(rest);
    }
}

/// Without re-encoding: params (valid JSON, from the client's parsed request) that are an
/// object get `"_meta":{"traceparent":…}` spliced in after the opening brace when they have
/// no `_meta`; with a `_meta` object, its `traceparent` member's value is replaced, or the
/// member added first. Everything else is copied byte for byte. `None` for what it cannot
/// do this way.
fn splice(params: Option<&RawValue>, traceparent: &str) -> Option<Box<RawValue>> {
    // Only ids and hex reach here; anything needing escapes takes the general path.
    if !traceparent
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let text = params.map_or("{}", RawValue::get);
    let mut out = String::with_capacity(text.len() + traceparent.len() + 32);
    // `_meta` first, then the rest of `text` (an object) after its `{`.
    let prepend = |mut out: String| {
        let rest = text.trim_start().strip_prefix('{')?;
        out.push_str("{\"_meta\":");
        open_with_traceparent(&mut out, traceparent, "}");
        if !rest.trim_start().starts_with('}') {
            out.push(',');
        }
        out.push_str(rest);
        RawValue::from_string(out).ok()
    };
    if !text.contains("\"_meta\"") {
        // The common case, without parsing: no `_meta` anywhere in the text.
        return prepend(out);
    }
    let top: Top<'_> = serde_json::from_str(text).ok()?;
    let Some(meta) = top.meta else {
        // `"_meta"` only inside some value: the top level has none.
        return prepend(out);
    };
    let meta_at = span_in(text, meta.get())?;
    let members = RawObject::parse(meta.get()).ok()?;
    let mut found = members.0.iter().filter(|(k, _)| k == "traceparent");
    let old = found.next();
    if found.next().is_some() {
        return None;
    }
    match old {
        Some((_, value)) => {
            let at = span_in(text, value.get())?;
            out.push_str(&text[..at.start]);
            out.push('"');
            out.push_str(traceparent);
            out.push('"');
            out.push_str(&text[at.end..]);
        }
        None => {
            let rest = meta.get().trim_start().strip_prefix('{')?;
            out.push_str(&text[..meta_at.start]);
            open_with_traceparent(&mut out, traceparent, rest);
            out.push_str(&text[meta_at.end..]);
        }
    }
    RawValue::from_string(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parsed(v: Option<Box<RawValue>>) -> Value {
        let v = v.unwrap_or_else(|| panic!("params rewritten"));
        serde_json::from_str(v.get()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sets_meta_traceparent_keeping_the_rest() {
        let p = raw(
            r#"{"name":"echo","arguments":{"x":1},"_meta":{"progressToken":7,"traceparent":"old"}}"#,
        );
        let v = parsed(with_meta_traceparent(Some(&p), TP));
        assert_eq!(v["name"], "echo");
        assert_eq!(v["arguments"]["x"], 1);
        assert_eq!(v["_meta"]["progressToken"], 7);
        assert_eq!(v["_meta"]["traceparent"], TP);
    }

    #[test]
    fn adds_meta_when_absent_or_params_absent() {
        let p = raw(r#"{"name":"echo"}"#);
        assert_eq!(
            parsed(with_meta_traceparent(Some(&p), TP))["_meta"]["traceparent"],
            TP
        );
        assert_eq!(
            parsed(with_meta_traceparent(None, TP))["_meta"]["traceparent"],
            TP
        );
    }

    #[test]
    fn splices_without_reserializing() {
        let p = raw(r#"{ "name":"echo","arguments":{"b":2,"a":1}}"#);
        let out = with_meta_traceparent(Some(&p), TP).unwrap_or_else(|| panic!("spliced"));
        assert_eq!(
            out.get(),
            format!(
                r#"{{"_meta":{{"traceparent":"{TP}"}}, "name":"echo","arguments":{{"b":2,"a":1}}}}"#
            )
        );
        let empty = raw(" { } ");
        assert_eq!(
            parsed(with_meta_traceparent(Some(&empty), TP))["_meta"]["traceparent"],
            TP
        );
        // `_meta` present: the general path keeps its members.
        let p = raw(r#"{"_meta":{"progressToken":"t"}}"#);
        let v = parsed(with_meta_traceparent(Some(&p), TP));
        assert_eq!(v["_meta"]["progressToken"], "t");
        assert_eq!(v["_meta"]["traceparent"], TP);
    }

    #[test]
    fn splices_into_an_existing_meta_byte_for_byte() {
        let spliced = |p: &str| {
            splice(Some(&raw(p)), TP)
                .unwrap_or_else(|| panic!("spliced: {p}"))
                .get()
                .to_owned()
        };
        // Added first in `_meta`, the rest (order, spacing, number forms) kept.
        assert_eq!(
            spliced(
                r#"{"name":"e", "_meta" : { "progressToken":1.50 },"arguments":{"b":2,"a":1}}"#
            ),
            format!(
                r#"{{"name":"e", "_meta" : {{"traceparent":"{TP}", "progressToken":1.50 }},"arguments":{{"b":2,"a":1}}}}"#
            )
        );
        assert_eq!(
            spliced(r#"{"_meta":{ },"x":1}"#),
            format!(r#"{{"_meta":{{"traceparent":"{TP}"}},"x":1}}"#)
        );
        // A caller's value replaced in place.
        assert_eq!(
            spliced(r#"{"_meta":{"a":[1],"traceparent":"old","z":2}}"#),
            format!(r#"{{"_meta":{{"a":[1],"traceparent":"{TP}","z":2}}}}"#)
        );
        // `"_meta"` only in the arguments: a top-level one is added.
        assert_eq!(
            spliced(r#"{"arguments":{"_meta":{}}}"#),
            format!(r#"{{"_meta":{{"traceparent":"{TP}"}},"arguments":{{"_meta":{{}}}}}}"#)
        );
        // Duplicates are left to the general path (last one wins, as when parsed).
        assert!(splice(Some(&raw(r#"{"_meta":{},"_meta":{}}"#)), TP).is_none());
        let dup = raw(r#"{"_meta":{"traceparent":"a","traceparent":"b"}}"#);
        assert!(splice(Some(&dup), TP).is_none());
        assert_eq!(
            parsed(with_meta_traceparent(Some(&dup), TP))["_meta"]["traceparent"],
            TP
        );
    }

    #[test]
    fn leaves_what_it_cannot_extend() {
        assert!(with_meta_traceparent(Some(&raw("[1]")), TP).is_none());
        assert!(with_meta_traceparent(Some(&raw(r#"{"_meta":3}"#)), TP).is_none());
    }
}
