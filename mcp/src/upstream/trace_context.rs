//! The W3C trace context an upstream call carries as its `traceparent` header: set by the
//! caller around the call (the data plane's CLIENT span), read where the HTTP request is
//! built. A task-local, so the transports' signatures stay as they are and a call made
//! without one sends no header.

use http::HeaderValue;
use std::future::Future;

tokio::task_local! {
    static TRACEPARENT: HeaderValue;
}

/// Runs `call` with `traceparent` (when one is given and is a valid header value) sent as
/// the `traceparent` header of the HTTP requests it makes.
pub async fn with_traceparent<F: Future>(traceparent: Option<&str>, call: F) -> F::Output {
    match traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
        Some(v) => TRACEPARENT.scope(v, call).await,
        None => call.await,
    }
}

/// The current call's `traceparent`, if its caller set one.
pub(crate) fn current() -> Option<HeaderValue> {
    TRACEPARENT.try_with(HeaderValue::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_only_inside_the_call() {
        assert!(current().is_none());
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let seen = with_traceparent(Some(tp), async { current() }).await;
        assert_eq!(seen.as_ref().map(|v| v.as_bytes()), Some(tp.as_bytes()));
        assert!(with_traceparent(None, async { current() }).await.is_none());
        assert!(current().is_none());
    }
}
