use super::*;

#[tokio::test]
async fn routes_response_and_progress_to_the_right_waiter() {
    let mux = Mux::new("s".into());
    let mut a = mux.register(1, Some("\"ta\"".into())).expect("open");
    let mut b = mux.register(2, None).expect("open");
    mux.deliver(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"ta","progress":1}}"#);
    mux.deliver(r#"{"jsonrpc":"2.0","id":2,"result":{"b":true}}"#);
    mux.deliver(r#"{"jsonrpc":"2.0","id":1,"result":{"a":true}}"#);
    let ra = a.wait().await.expect("reply");
    let rb = b.wait().await.expect("reply");
    assert_eq!(ra.notifications.len(), 1);
    assert_eq!(ra.outcome.expect("ok").get(), r#"{"a":true}"#);
    assert!(rb.notifications.is_empty());
    assert_eq!(rb.outcome.expect("ok").get(), r#"{"b":true}"#);
}

#[tokio::test]
async fn close_fails_pending_and_refuses_new() {
    let mux = Mux::new("s".into());
    let mut a = mux.register(1, None).expect("open");
    mux.close("child exited".into());
    assert_eq!(a.wait().await.err().as_deref(), Some("child exited"));
    assert!(mux.register(2, None).is_err());
    assert!(mux.is_closed());
}

#[test]
fn dropped_ticket_unregisters() {
    let mux = Mux::new("s".into());
    drop(mux.register(1, Some("5".into())).expect("open"));
    let inner = mux.lock();
    assert!(inner.waiters.is_empty() && inner.tokens.is_empty());
}

#[test]
fn server_request_gets_an_error_reply() {
    let mux = Mux::new("s".into());
    match mux.deliver(r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{}}"#) {
        Action::Reply(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(v["id"], 9);
            assert_eq!(v["error"]["code"], -32601);
        }
        Action::None => panic!("expected a reply"),
    }
}
