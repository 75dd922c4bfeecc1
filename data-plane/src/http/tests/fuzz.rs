//! Fuzz harness (proptest; see `testing/fuzz`) for what parses untrusted request bytes: the
//! JSON-RPC envelope, the header checks (bearer, `MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`), and the whole `/mcp` path behind them. Each property replays the checked-in
//! corpus and a few oversized inputs, then fuzzes mutations of it.
//! Properties: no input panics or gets a 500; an error reply repeats at most what the
//! request carried plus a constant; valid requests round-trip (id, method, params).

use super::{env, ALICE};
use crate::http::checks;
use crate::http::envelope::{Envelope, Message};
use axum::body::Body;
use canopy_fuzz::{config, corpus, json_text, mutated, quote, Seed};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::de::IgnoredAny;
use std::sync::Arc;
use tower::ServiceExt;

use crate::app::DataPlane;

/// What an error reply may add to the bytes of the request it answers.
const ERROR_OVERHEAD: usize = 1024;
const BIG: usize = 3 << 20;

fn seeds(target: &str) -> Vec<Seed> {
    corpus(target)
}

fn oversized_bodies() -> Vec<Seed> {
    let m = "m".repeat(BIG);
    let t = "t".repeat(BIG);
    vec![
        Seed {
            name: "3 MB method name".into(),
            bytes: format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#).into_bytes(),
        },
        Seed {
            name: "3 MB tool name".into(),
            bytes: format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{t}"}}}}"#
            )
            .into_bytes(),
        },
    ]
}

fn run<S: Strategy>(what: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = TestRunner::new(config()).run(&strategy, test) {
        panic!("{what}: {e}");
    }
}

// ------------------------------------------------------------------ envelope

fn check_envelope(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(envelope) = Envelope::parse(bytes) {
        if let Ok(Message::Request { id, .. }) = envelope.classify() {
            // A request's id is JSON on its own (grammar only: `1e999` is JSON too).
            prop_assert!(serde_json::from_str::<IgnoredAny>(id.get()).is_ok());
        }
    }
    Ok(())
}

#[test]
fn fuzz_envelope() {
    let mut all = seeds("envelope");
    all.extend(oversized_bodies());
    for seed in &all {
        if let Err(e) = check_envelope(&seed.bytes) {
            panic!("envelope corpus input {}: {e}", seed.name);
        }
    }
    run("envelope", mutated(&seeds("envelope")), |b| {
        check_envelope(&b)
    });
    run("envelope of arbitrary JSON", json_text(), |t| {
        check_envelope(t.as_bytes())
    });
}

fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<String>().prop_map(|s| quote(&s)),
    ]
}

#[test]
fn valid_envelopes_round_trip() {
    let strategy = (id_text(), any::<String>(), prop::option::of(json_text()));
    run("valid envelopes", strategy, |(id, method, params)| {
        let params_member = params
            .as_ref()
            .map(|p| format!(r#","params":{p}"#))
            .unwrap_or_default();
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{}{params_member}}}"#,
            quote(&method)
        );
        let envelope =
            Envelope::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        match envelope.classify() {
            Ok(Message::Request {
                id: got_id,
                method: got_method,
                params: got_params,
            }) => {
                prop_assert_eq!(got_id.get(), id.as_str());
                prop_assert_eq!(got_method.as_ref(), method.as_str());
                // `"params": null` reads as no params.
                let expected = params.as_deref().filter(|p| *p != "null");
                prop_assert_eq!(got_params.map(|p| p.get()), expected);
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "not a request: {}",
                    other.is_ok()
                )))
            }
        }
        Ok(())
    });
}

// ------------------------------------------------------------------ headers

fn headers_with(name: &'static str, value: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut h = HeaderMap::new();
    h.insert(HeaderName::from_static(name), value);
    Some(h)
}

fn check_headers(value: &[u8]) -> Result<(), TestCaseError> {
    let Some(h) = headers_with("authorization", value) else {
        return Ok(());
    };
    if let Some(token) = checks::bearer(&h) {
        let raw = h["authorization"].to_str().unwrap_or_default();
        prop_assert!(!token.is_empty() && token == token.trim());
        prop_assert!(raw.contains(token));
        prop_assert!(raw
            .split_once(' ')
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")));
    }
    for name in ["mcp-protocol-version", "mcp-method", "mcp-name"] {
        let Some(h) = headers_with(name, value) else {
            continue;
        };
        if let Some(Ok(decoded)) = checks::mcp_header(&h, name) {
            let plain = !h[name].as_bytes().trim_ascii().starts_with(b"=?base64?");
            if plain {
                prop_assert!(decoded.is_ascii());
                prop_assert!(!decoded.starts_with([' ', '\t']) && !decoded.ends_with([' ', '\t']));
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_header_checks() {
    let mut all = seeds("headers");
    all.push(Seed {
        name: "Bearer and a 3 MB token".into(),
        bytes: format!("Bearer {}", "x".repeat(BIG)).into_bytes(),
    });
    for seed in &all {
        if let Err(e) = check_headers(&seed.bytes) {
            panic!("headers corpus input {}: {e}", seed.name);
        }
    }
    run("headers", mutated(&seeds("headers")), |b| check_headers(&b));
}

#[test]
fn valid_header_values_round_trip() {
    let token =
        prop::collection::vec(prop::char::range('!', '~'), 1..64).prop_map(String::from_iter);
    run("bearer tokens", token, |token| {
        for scheme in ["Bearer", "bearer"] {
            let h = headers_with("authorization", format!("{scheme} {token}").as_bytes())
                .ok_or_else(|| TestCaseError::fail("not a header value"))?;
            prop_assert_eq!(checks::bearer(&h), Some(token.as_str()));
        }
        Ok(())
    });
    run("Mcp-Name values", any::<String>(), |name| {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        let h = headers_with("mcp-name", format!("=?base64?{encoded}?=").as_bytes())
            .ok_or_else(|| TestCaseError::fail("not a header value"))?;
        let decoded = checks::mcp_header(&h, "mcp-name")
            .ok_or_else(|| TestCaseError::fail("header lost"))?
            .map_err(|()| TestCaseError::fail("valid base64 form refused"))?;
        prop_assert_eq!(decoded.as_ref(), name.as_str());
        Ok(())
    });
}

// ------------------------------------------------------------------ /mcp

#[derive(Debug, Clone)]
struct Input {
    body: Vec<u8>,
    authorization: Option<Vec<u8>>,
    version: Option<Vec<u8>>,
    method: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
}

fn input() -> impl Strategy<Value = Input> {
    let headers = seeds("headers");
    let header = move || prop::option::of(mutated(&headers));
    (
        mutated(&seeds("envelope")),
        header(),
        header(),
        header(),
        header(),
    )
        .prop_map(|(body, authorization, version, method, name)| Input {
            body,
            authorization,
            version,
            method,
            name,
        })
}

struct Reply {
    status: StatusCode,
    json: bool,
    body: Vec<u8>,
}

async fn send(dp: &Arc<DataPlane>, input: &Input) -> Reply {
    let mut request = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in [
        ("authorization", &input.authorization),
        ("mcp-protocol-version", &input.version),
        ("mcp-method", &input.method),
        ("mcp-name", &input.name),
    ] {
        if let Some(v) = value
            .as_deref()
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            request = request.header(name, v);
        }
    }
    let response = crate::http::router(dp.clone())
        .oneshot(request.body(Body::from(input.body.clone())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        json,
        body: body.to_vec(),
    }
}

fn check_reply(input: &Input, reply: &Reply) -> Result<(), TestCaseError> {
    prop_assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    if !reply.json || reply.body.is_empty() {
        return Ok(());
    }
    // Only the members looked at are decoded: an echoed id may be a number beyond f64.
    #[derive(serde::Deserialize)]
    struct Shape {
        jsonrpc: Option<String>,
        error: Option<IgnoredAny>,
    }
    let v: Shape = serde_json::from_slice(&reply.body)
        .map_err(|e| TestCaseError::fail(format!("reply is not JSON: {e}")))?;
    prop_assert_eq!(v.jsonrpc.as_deref(), Some("2.0"));
    if v.error.is_some() {
        let carried = input.body.len()
            + [
                &input.authorization,
                &input.version,
                &input.method,
                &input.name,
            ]
            .iter()
            .map(|h| h.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
        prop_assert!(
            reply.body.len() <= carried + ERROR_OVERHEAD,
            "error reply of {} bytes for a request of {carried}",
            reply.body.len()
        );
    }
    Ok(())
}

#[test]
fn fuzz_mcp_requests() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(env());
    let alice = format!("Bearer {ALICE}").into_bytes();
    let mut replay: Vec<(String, Input)> = seeds("envelope")
        .into_iter()
        .chain(oversized_bodies())
        .map(|s| {
            (
                s.name,
                Input {
                    body: s.bytes,
                    authorization: Some(alice.clone()),
                    version: None,
                    method: None,
                    name: None,
                },
            )
        })
        .collect();
    for h in seeds("headers") {
        replay.push((
            format!("headers/{} in every header", h.name),
            Input {
                body: br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec(),
                authorization: Some(h.bytes.clone()),
                version: Some(h.bytes.clone()),
                method: Some(h.bytes.clone()),
                name: Some(h.bytes),
            },
        ));
    }
    for (name, input) in &replay {
        let reply = rt.block_on(send(&e.dp, input));
        if let Err(err) = check_reply(input, &reply) {
            panic!("/mcp corpus input {name}: {err}");
        }
    }
    run("/mcp", input(), |input| {
        let reply = rt.block_on(send(&e.dp, &input));
        check_reply(&input, &reply)
    });

    // Valid requests get their own id back with a result.
    run("/mcp round trip", id_text(), |id| {
        let input = Input {
            body: format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#).into_bytes(),
            authorization: Some(alice.clone()),
            version: None,
            method: None,
            name: None,
        };
        let reply = rt.block_on(send(&e.dp, &input));
        prop_assert_eq!(reply.status, StatusCode::OK);
        let v: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let sent: serde_json::Value = serde_json::from_str(&id).unwrap();
        prop_assert_eq!(&v["id"], &sent);
        prop_assert!(v.get("result").is_some(), "{v}");
        Ok(())
    });
}
