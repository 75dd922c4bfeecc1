use super::*;

#[tokio::test]
async fn routes_response_and_progress_to_the_right_waiter() {
    let mux = Mux::new("s".into());
    let mut a = mux
        .register(1, Some("\"ta\"".into()), CallLimits::default())
        .expect("open");
    let mut b = mux.register(2, None, CallLimits::default()).expect("open");
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
    let mut a = mux.register(1, None, CallLimits::default()).expect("open");
    mux.close("child exited".into());
    assert_eq!(
        a.wait().await.err(),
        Some(Failed::Closed("child exited".into()))
    );
    assert!(mux.register(2, None, CallLimits::default()).is_err());
    assert!(mux.is_closed());
}

#[test]
fn dropped_ticket_unregisters() {
    let mux = Mux::new("s".into());
    drop(
        mux.register(1, Some("5".into()), CallLimits::default())
            .expect("open"),
    );
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

#[tokio::test]
async fn a_waiter_past_its_limits_fails_and_frees_what_it_kept() {
    let mux = Mux::new("s".into());
    let limits = CallLimits {
        max_bytes: 1024 * 1024,
        max_notifications: 3,
        keep_notifications: true,
    };
    let mut a = mux
        .register(1, Some("\"ta\"".into()), limits)
        .expect("open");
    let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"ta","progress":1}}"#;
    for _ in 0..5 {
        mux.deliver(note);
    }
    match a.wait().await {
        Err(Failed::Limit(reason)) => assert!(reason.contains("3 notifications"), "{reason}"),
        other => panic!("expected the limit, got {other:?}"),
    }
    let inner = mux.lock();
    assert!(inner.waiters.is_empty() && inner.tokens.is_empty());
}

#[tokio::test]
async fn a_waiter_that_keeps_no_notifications_still_counts_them() {
    let mux = Mux::new("s".into());
    let limits = CallLimits {
        keep_notifications: false,
        ..CallLimits::default()
    };
    let mut a = mux
        .register(1, Some("\"ta\"".into()), limits)
        .expect("open");
    mux.deliver(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"ta","progress":1}}"#);
    mux.deliver(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    let r = a.wait().await.expect("reply");
    assert!(r.notifications.is_empty());
}
