//! The trace context an upstream call carries: a `traceparent` value, and the same value in
//! `params._meta.traceparent` (SEP-414) for transports without headers (stdio).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// `params` with `_meta.traceparent` set to `traceparent` (other `_meta` members kept).
/// `None` when params are not an object or `_meta` is not one: they go unchanged.
pub(crate) fn with_meta_traceparent(
    params: Option<&RawValue>,
    traceparent: &str,
) -> Option<Box<RawValue>> {
    if let Some(spliced) = splice(params, traceparent) {
        return Some(spliced);
    }
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

/// The common case without parsing: params (valid JSON, from the client's parsed request)
/// that are an object with no `_meta` get `"_meta":{"traceparent":…}` spliced in after the
/// opening brace, the rest copied byte for byte. `None` for anything else.
fn splice(params: Option<&RawValue>, traceparent: &str) -> Option<Box<RawValue>> {
    // Only ids and hex reach here; anything needing escapes takes the general path.
    if !traceparent
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let text = params.map_or("{}", RawValue::get);
    if text.contains("\"_meta\"") {
        return None;
    }
    let rest = text.trim_start().strip_prefix('{')?;
    let empty = rest.trim_start().starts_with('}');
    let mut out = String::with_capacity(text.len() + traceparent.len() + 32);
    out.push_str("{\"_meta\":{\"traceparent\":\"");
    out.push_str(traceparent);
    out.push_str("\"}");
    if !empty {
        out.push(',');
    }
    out.push_str(rest);
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
    fn leaves_what_it_cannot_extend() {
        assert!(with_meta_traceparent(Some(&raw("[1]")), TP).is_none());
        assert!(with_meta_traceparent(Some(&raw(r#"{"_meta":3}"#)), TP).is_none());
    }
}
