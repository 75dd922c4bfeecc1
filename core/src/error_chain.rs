//! One-line error messages with their causes, for logs and CLI output.

/// `e` and each of its sources, joined by `": "`. A cause whose text the message already
/// contains is skipped: hyper, tonic and reqwest often repeat an inner message one level up.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = inner.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: connection refused")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn joins_causes_once() {
        let e = Outer(Middle(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        assert_eq!(error_chain(&e), "outer failed: middle: connection refused");
    }
}
