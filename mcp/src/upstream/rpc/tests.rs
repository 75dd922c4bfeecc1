use super::*;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).expect("test JSON")
}

#[test]
fn encode_keeps_params_bytes() {
    let p = raw(r#"{ "b":1,  "a" : [1.50, "x"] }"#);
    let out = encode(Some(7), "tools/call", Some(p.get()));
    assert_eq!(
        std::str::from_utf8(&out).expect("utf8"),
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{ "b":1,  "a" : [1.50, "x"] }}"#
    );
    let n = encode(None, "notifications/initialized", None);
    assert_eq!(
        n,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    );
}

#[test]
fn ids_are_unique() {
    let g = IdGen::new();
    let a = g.next();
    let b = g.next();
    assert_ne!(a, b);
}

#[test]
fn classify_kinds() {
    match classify(r#"{"jsonrpc":"2.0","id":"12","result":{"x":1}}"#) {
        Ok(Incoming::Response {
            id: Some(12),
            outcome: Ok(r),
        }) => assert_eq!(r.get(), r#"{"x":1}"#),
        other => panic!("unexpected {other:?}"),
    }
    match classify(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}"#) {
        Ok(Incoming::Response {
            id: Some(3),
            outcome: Err(e),
        }) => assert_eq!(e.code, -32601),
        other => panic!("unexpected {other:?}"),
    }
    match classify(" {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\"}}\n") {
        Ok(Incoming::Notification { method, raw }) => {
            assert_eq!(method, "notifications/progress");
            assert_eq!(notification_progress_token(&raw).as_deref(), Some("\"t\""));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        classify(r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage"}"#),
        Ok(Incoming::Request { .. })
    ));
    assert!(classify("<html>").is_err());
    assert!(classify(r#"{"jsonrpc":"2.0","id":1}"#).is_err());
}

#[test]
fn progress_token_from_request() {
    let p = raw(r#"{"name":"x","_meta":{"progressToken":42}}"#);
    assert_eq!(request_progress_token(Some(&p)).as_deref(), Some("42"));
    assert_eq!(request_progress_token(Some(&raw(r#"{"name":"x"}"#))), None);
}

#[test]
fn reply_to_server_request() {
    let out = method_not_found_reply(&raw(r#""abc""#), "roots/list");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["id"], "abc");
    assert_eq!(v["error"]["code"], -32601);
}
