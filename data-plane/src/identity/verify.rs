//! Verifying one JWT access token from memory: the provider named by its `iss`, a key of
//! that provider that fits the header's `alg`, then the claims.
//!
//! What counts as an access token (and not an ID token): the header's `typ` must be
//! `at+jwt` (RFC 9068), or `JWT` or absent for providers that still mint such access tokens
//! (Entra ID, Okta's org server, Auth0, Keycloak); any other type (logout tokens, DPoP
//! proofs…) is refused. Whatever the `typ`, a token carrying a mark of an OpenID Connect ID
//! token is refused: a `nonce`, `at_hash` or `c_hash` claim, or Keycloak's `typ: ID`
//! claim. An ID token also names its client, not this resource, in `aud`, so it usually
//! fails the audience check first.

use canopy_core::access::ClaimView;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;

use super::provider::Provider;
use super::Directory;

/// Why a token is refused. Never carries the token or its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("no identity provider has issuer of this token")]
    UnknownIssuer,
    #[error("algorithm {0} is not allowed for this identity provider")]
    Algorithm(String),
    #[error("identity provider '{provider}' has no key '{kid}' (yet)")]
    UnknownKid {
        provider: Arc<str>,
        issuer: String,
        kid: String,
    },
    #[error("identity provider '{0}' has no key for this algorithm")]
    NoKey(Arc<str>),
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("audience does not name this resource")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("not an access token (an ID token, or another type of JWT)")]
    IdToken,
    #[error("claim '{0}' missing or not text")]
    Claim(String),
    #[error("subject is revoked")]
    Revoked,
    #[error("invalid claims: {0}")]
    Invalid(String),
    /// Valid token, but a scope the provider requires is missing: 403, not 401.
    #[error("insufficient scope")]
    InsufficientScope,
}

/// What a verified token establishes about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub provider: Arc<str>,
    /// What access rules look at: subject, email, groups.
    pub claims: ClaimView,
    /// Unix seconds.
    pub exp: u64,
    /// `None`: the token names this data plane as a whole (valid on every endpoint);
    /// `Some(name)`: only `/servers/<name>/mcp`'s resource URL.
    pub only_server: Option<String>,
}

/// The audiences a request accepts: the data plane's own (valid everywhere), and the one of
/// the `/servers/<name>/mcp` endpoint it came to.
pub struct Audiences<'a> {
    pub gateway: &'a [String],
    pub server: Option<(&'a str, String)>,
}

#[derive(serde::Deserialize)]
struct Peek {
    iss: Option<String>,
}

pub(crate) fn verify(
    dir: &Directory,
    token: &str,
    aud: &Audiences<'_>,
) -> Result<Principal, Rejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
    let peek: Peek =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| Rejection::Malformed)?;
    let iss = peek.iss.ok_or(Rejection::UnknownIssuer)?;
    let provider = dir
        .provider_by_issuer(&iss)
        .ok_or(Rejection::UnknownIssuer)?;
    let alg = header.alg;
    if !provider.algorithms.contains(&alg) {
        return Err(Rejection::Algorithm(super::provider::alg_name(alg)));
    }
    let validation = validation(provider, alg, aud);
    let claims = check_signature(provider, token, header.kid.as_deref(), alg, &validation)?;
    if !access_token_type(header.typ.as_deref()) || looks_like_id_token(&claims) {
        return Err(Rejection::IdToken);
    }
    let view = ClaimView::from_claims(&claims, &provider.subject_claim, &provider.groups_claim);
    let Some(subject) = view.subject.as_deref().filter(|s| !s.is_empty()) else {
        return Err(Rejection::Claim(provider.subject_claim.clone()));
    };
    if dir.is_revoked(&provider.name, subject) {
        return Err(Rejection::Revoked);
    }
    if !provider.required_scopes.is_empty() {
        let granted = token_scopes(&claims);
        if !provider
            .required_scopes
            .iter()
            .all(|s| granted.contains(s.as_str()))
        {
            return Err(Rejection::InsufficientScope);
        }
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let only_server = match &aud.server {
        Some((name, _)) if !names_any(&claims, aud.gateway, &provider.audiences) => {
            Some((*name).to_owned())
        }
        _ => None,
    };
    Ok(Principal {
        provider: provider.name.clone(),
        claims: view,
        exp,
        only_server,
    })
}

fn validation(provider: &Provider, alg: Algorithm, aud: &Audiences<'_>) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = provider.leeway_secs;
    v.validate_nbf = true;
    v.validate_exp = true;
    v.validate_aud = true;
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.set_issuer(&[&provider.issuer]);
    let mut audiences: Vec<&str> = aud.gateway.iter().map(String::as_str).collect();
    audiences.extend(provider.audiences.iter().map(String::as_str));
    if let Some((_, url)) = &aud.server {
        audiences.push(url);
    }
    v.set_audience(&audiences);
    v
}

/// Picks the key by `kid` (or, without one, tries the provider's keys of that family) and
/// checks signature and registered claims.
fn check_signature(
    provider: &Provider,
    token: &str,
    kid: Option<&str>,
    alg: Algorithm,
    validation: &Validation,
) -> Result<Map<String, Value>, Rejection> {
    let candidates: Vec<_> = match kid {
        Some(kid) => {
            let Some(k) = provider.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) else {
                return Err(Rejection::UnknownKid {
                    provider: provider.name.clone(),
                    issuer: provider.issuer.clone(),
                    kid: kid.to_owned(),
                });
            };
            if !k.fits(alg) {
                return Err(Rejection::Signature);
            }
            vec![k]
        }
        None => provider.keys.iter().filter(|k| k.fits(alg)).collect(),
    };
    if candidates.is_empty() {
        return Err(Rejection::NoKey(provider.name.clone()));
    }
    let mut last = Rejection::Signature;
    for k in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                last = rejection(e.kind());
                if last != Rejection::Signature {
                    // The signature held; the claims are what is wrong.
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Rejection::Signature,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => Rejection::Malformed,
        ErrorKind::MissingRequiredClaim(c) => Rejection::Claim(c.clone()),
        other => Rejection::Invalid(format!("{other:?}")),
    }
}

fn access_token_type(typ: Option<&str>) -> bool {
    typ.is_none_or(|t| {
        ["at+jwt", "application/at+jwt", "JWT"]
            .iter()
            .any(|a| t.eq_ignore_ascii_case(a))
    })
}

fn looks_like_id_token(claims: &Map<String, Value>) -> bool {
    ["nonce", "at_hash", "c_hash"]
        .iter()
        .any(|c| claims.contains_key(*c))
        || claims.get("typ").and_then(Value::as_str) == Some("ID")
}

/// OAuth scopes granted: `scope` (space-separated, RFC 9068) or Entra's `scp`.
fn token_scopes(claims: &Map<String, Value>) -> HashSet<&str> {
    let mut out = HashSet::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// Whether `aud` names the data plane as a whole or one of the provider's extra audiences.
fn names_any(claims: &Map<String, Value>, gateway: &[String], extra: &[String]) -> bool {
    let hit = |a: &str| gateway.iter().chain(extra).any(|g| g == a);
    match claims.get("aud") {
        Some(Value::String(s)) => hit(s),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(hit),
        _ => false,
    }
}
