//! Header checks that come before the body is read: Origin, Content-Type, Accept,
//! bearer token; and decoding of the 2026-07-28 `Mcp-*` header values.

use base64::Engine;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use http::HeaderMap;
use std::borrow::Cow;

use super::reply::Failure;

/// Absent, loopback, or listed origins pass (DNS-rebinding protection).
pub(crate) fn origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Failure> {
    let Some(v) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let Ok(o) = v.to_str() else {
        return Err(Failure::OriginForbidden);
    };
    if allowed.iter().any(|a| a == o || a == "*") || is_loopback_origin(o) {
        Ok(())
    } else {
        Err(Failure::OriginForbidden)
    }
}

fn is_loopback_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, tail)) if tail.is_empty() || tail.starts_with(':') => return h == "::1",
            _ => return false,
        }
    } else {
        rest.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
}

pub(crate) fn content_type(headers: &HeaderMap) -> Result<(), Failure> {
    let ok = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
        });
    if ok {
        Ok(())
    } else {
        Err(Failure::UnsupportedMediaType)
    }
}

/// Accept absent = anything. Present: some range must cover application/json.
/// Returns whether the client also takes `text/event-stream`.
pub(crate) fn accept(headers: &HeaderMap) -> Result<bool, Failure> {
    let mut json = headers.get(ACCEPT).is_none();
    let mut sse = false;
    for v in headers.get_all(ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for range in v.split(',') {
            let mime = range.split(';').next().unwrap_or("").trim();
            if mime.eq_ignore_ascii_case("application/json")
                || mime == "*/*"
                || mime.eq_ignore_ascii_case("application/*")
            {
                json = true;
            }
            if mime.eq_ignore_ascii_case("text/event-stream") {
                sse = true;
            }
        }
    }
    if json {
        Ok(sse)
    } else {
        Err(Failure::NotAcceptable)
    }
}

/// The token of `Authorization: Bearer <token>`, if well-formed ([`canopy_core::bearer`]).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    canopy_core::bearer::token(headers.get(AUTHORIZATION)?.to_str().ok()?)
}

/// A 2026-07-28 header value: trimmed, with the `=?base64?…?=` form decoded.
/// `Err` = present but invalid.
pub(crate) fn mcp_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Option<Result<Cow<'a, str>, ()>> {
    let v = headers.get(name)?;
    Some(decode_header_value(v.as_bytes()))
}

fn decode_header_value(raw: &[u8]) -> Result<Cow<'_, str>, ()> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| ())?
        .trim_matches(|c| c == ' ' || c == '\t');
    if let Some(b64) = s
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ())?;
        return String::from_utf8(bytes).map(Cow::Owned).map_err(|_| ());
    }
    if !s.is_ascii() {
        return Err(());
    }
    Ok(Cow::Borrowed(s))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn loopback_origins() {
        for o in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8080",
            "http://LOCALHOST",
        ] {
            assert!(is_loopback_origin(o), "{o}");
        }
        for o in [
            "http://evil.com",
            "http://localhost.evil.com",
            "null",
            "http://127.0.0.1.nip.io",
            "file://x",
        ] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(
            decode_header_value(b"  tools/call \t").unwrap(),
            "tools/call"
        );
        assert_eq!(
            decode_header_value(b"=?base64?w6lsw6h2ZQ==?=").unwrap(),
            "élève"
        );
        assert!(decode_header_value(b"=?base64?***?=").is_err());
        assert!(decode_header_value("é".as_bytes()).is_err());
    }
}
