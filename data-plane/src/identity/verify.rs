//! Verifying one JWT access token from memory: the provider named by its `iss`, then the
//! shared checks of `canopy-jwt` (algorithm, key, signature, `iss`/`aud`/`exp`/`nbf`, access
//! tokens only) with this data plane's audiences, then what only a data plane asks: the
//! subject, revocations, required scopes, and which endpoints the audience covers.

use canopy_core::access::ClaimView;
use canopy_jwt::{Refusal, Rules};
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

pub(crate) fn verify(
    dir: &Directory,
    token: &str,
    aud: &Audiences<'_>,
) -> Result<Principal, Rejection> {
    let header = canopy_jwt::decode_header(token).map_err(|_| Rejection::Malformed)?;
    let iss = canopy_jwt::unverified_issuer(token)
        .map_err(|_| Rejection::Malformed)?
        .ok_or(Rejection::UnknownIssuer)?;
    let provider = dir
        .provider_by_issuer(&iss)
        .ok_or(Rejection::UnknownIssuer)?;
    let mut audiences: Vec<&str> = aud.gateway.iter().map(String::as_str).collect();
    audiences.extend(provider.audiences.iter().map(String::as_str));
    if let Some((_, url)) = &aud.server {
        audiences.push(url);
    }
    let rules = Rules {
        issuer: &provider.issuer,
        audiences: &audiences,
        leeway_secs: provider.leeway_secs,
    };
    let claims = canopy_jwt::verify(token, &header, &provider.algorithms, &provider.keys, &rules)
        .map_err(|r| rejection(r, provider))?;
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

/// The shared refusal in this data plane's terms (naming the provider where it helps).
fn rejection(r: Refusal, provider: &Provider) -> Rejection {
    match r {
        Refusal::Malformed => Rejection::Malformed,
        Refusal::Algorithm(alg) => Rejection::Algorithm(canopy_jwt::alg_name(alg)),
        Refusal::UnknownKid(kid) => Rejection::UnknownKid {
            provider: provider.name.clone(),
            issuer: provider.issuer.clone(),
            kid,
        },
        Refusal::NoKey => Rejection::NoKey(provider.name.clone()),
        Refusal::Signature => Rejection::Signature,
        Refusal::Issuer => Rejection::Issuer,
        Refusal::Audience => Rejection::Audience,
        Refusal::Expired => Rejection::Expired,
        Refusal::NotYetValid => Rejection::NotYetValid,
        Refusal::IdToken => Rejection::IdToken,
        Refusal::MissingClaim(c) => Rejection::Claim(c),
        Refusal::Invalid(why) => Rejection::Invalid(why),
    }
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
