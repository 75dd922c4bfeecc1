use super::*;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).expect("test JSON")
}

#[test]
fn meta_added_and_values_kept_verbatim() {
    let p = raw(r#"{"name":"echo","arguments":{"b": 1.50,"a":[ 1 ]}}"#);
    let s = shape("tools/call", Some(&p)).expect("shaped");
    assert_eq!(s.name.as_deref(), Some("echo"));
    assert_eq!(
        s.params,
        format!(r#"{{"_meta":{DEFAULT_META},"name":"echo","arguments":{{"b": 1.50,"a":[ 1 ]}}}}"#)
    );
}

#[test]
fn meta_created_for_absent_params() {
    let s = shape("tools/list", None).expect("shaped");
    let v: serde_json::Value = serde_json::from_str(&s.params).expect("json");
    assert_eq!(v["_meta"][META_PROTOCOL_VERSION], MODERN_VERSION);
    assert_eq!(v["_meta"][META_CLIENT_CAPABILITIES], serde_json::json!({}));
    assert!(s.name.is_none());
}

#[test]
fn existing_meta_is_merged() {
    let p = raw(
        r#"{"uri":"file:///x","_meta":{"progressToken":"p1","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}"#,
    );
    let s = shape("resources/read", Some(&p)).expect("shaped");
    assert_eq!(s.name.as_deref(), Some("file:///x"));
    let v: serde_json::Value = serde_json::from_str(&s.params).expect("json");
    assert_eq!(v["_meta"]["progressToken"], "p1");
    assert_eq!(v["_meta"][META_PROTOCOL_VERSION], MODERN_VERSION);
    assert!(s.params.starts_with(r#"{"uri":"file:///x","_meta":"#));
}

#[test]
fn bad_params_are_rejected() {
    assert!(shape("tools/list", Some(&raw("[1]"))).is_err());
    assert!(shape("tools/call", Some(&raw(r#"{"arguments":{}}"#))).is_err());
    assert!(shape("tools/list", Some(&raw(r#"{"_meta":3}"#))).is_err());
}

#[test]
fn header_values() {
    assert_eq!(header_value("get_weather"), "get_weather");
    assert_eq!(header_value("héllo"), "=?base64?aMOpbGxv?=");
    assert_eq!(header_value(" x"), "=?base64?IHg=?=");
}

#[test]
fn envelope_removed_for_handshake_upstreams() {
    // No envelope: unchanged, no copy.
    assert!(without_envelope(None).is_none());
    let plain = raw(r#"{"name":"echo","_meta":{"progressToken":7}}"#);
    assert!(without_envelope(Some(&plain)).is_none());
    // Envelope only: `_meta` disappears, the rest stays byte for byte.
    let p = raw(
        r#"{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"c"}},"arguments":{"b": 1.50}}"#,
    );
    let out = without_envelope(Some(&p)).expect("stripped");
    assert_eq!(out.get(), r#"{"name":"echo","arguments":{"b": 1.50}}"#);
    // Other `_meta` members survive, in order.
    let p = raw(
        r#"{"_meta":{"progressToken":"t","io.modelcontextprotocol/protocolVersion":"2026-07-28","x":{"k": 1.0}},"name":"n"}"#,
    );
    let out = without_envelope(Some(&p)).expect("stripped");
    assert_eq!(
        out.get(),
        r#"{"_meta":{"progressToken":"t","x":{"k": 1.0}},"name":"n"}"#
    );
    // Other reserved keys are not part of the envelope.
    let p = raw(r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"1"}}}"#);
    assert!(without_envelope(Some(&p)).is_none());
}

#[test]
fn meta_spliced_without_reserializing() {
    // Whitespace and key spelling survive: only `"_meta":{…},` is inserted.
    let p = raw(r#"{ "name" : "ech\u006f", "arguments":{"x":1} }"#);
    let s = shape("tools/call", Some(&p)).expect("shaped");
    assert_eq!(s.name.as_deref(), Some("echo"));
    assert_eq!(
        s.params,
        format!(r#"{{"_meta":{DEFAULT_META}, "name" : "ech\u006f", "arguments":{{"x":1}} }}"#)
    );
    let empty_params = raw("{ }");
    let empty = shape("tools/list", Some(&empty_params)).expect("shaped");
    assert_eq!(empty.params, format!(r#"{{"_meta":{DEFAULT_META} }}"#));
    serde_json::from_str::<serde_json::Value>(&empty.params).expect("json");
}

#[test]
fn existing_meta_rewritten_in_place() {
    // Only `_meta` is re-emitted (its values byte for byte, blanks between members dropped).
    let p = raw(
        r#"{"name":"t","_meta":{"progressToken": 7,"io.modelcontextprotocol/protocolVersion":"2025-11-25"},"arguments":{}}"#,
    );
    let s = shape("tools/call", Some(&p)).expect("shaped");
    assert_eq!(
        s.params,
        r#"{"name":"t","_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"arguments":{}}"#
    );
    let caller_caps = raw(r#"{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"a":1}}}"#);
    let s = shape("tools/list", Some(&caller_caps)).expect("shaped");
    assert_eq!(
        s.params,
        r#"{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"a":1},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#
    );
    let empty_meta_params = raw(r#"{"_meta":{}}"#);
    let empty_meta = shape("tools/list", Some(&empty_meta_params)).expect("shaped");
    assert_eq!(empty_meta.params, format!(r#"{{"_meta":{DEFAULT_META}}}"#));
    assert!(shape("tools/list", Some(&raw(r#"{"_meta":null}"#))).is_err());
    assert!(shape("tools/call", Some(&raw(r#"{"name":3}"#))).is_err());
    assert!(shape("tools/call", None).is_err());
}
