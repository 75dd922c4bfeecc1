//! The checks of one token against one provider's rules and keys.
//!
//! What counts as an access token (and not an ID token): the header's `typ` must be
//! `at+jwt` (RFC 9068), or `JWT` or absent for providers that still mint such access tokens
//! (Entra ID, Okta's org server, Auth0, Keycloak); any other type (logout tokens, DPoP
//! proofs…) is refused. Whatever the `typ`, a token carrying a mark of an OpenID Connect ID
//! token is refused: a `nonce`, `at_hash` or `c_hash` claim, or Keycloak's `typ: ID`
//! claim. An ID token also names its client, not the resource, in `aud`, so it usually
//! fails the audience check first.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::{Map, Value};

use crate::keys::{Key, ASYMMETRIC};

/// Why a token is refused. Never carries the token or its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("algorithm not allowed for this identity provider")]
    Algorithm(Algorithm),
    /// The header's `kid` (as sent) names no key held for the provider.
    #[error("no key with the token's key id (yet)")]
    UnknownKid(String),
    #[error("no key for this algorithm")]
    NoKey,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("audience not accepted")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("not an access token (an ID token, or another type of JWT)")]
    IdToken,
    #[error("claim '{0}' missing")]
    MissingClaim(String),
    #[error("invalid claims: {0}")]
    Invalid(String),
}

/// What a provider's tokens must say, for one verification.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The exact `iss`.
    pub issuer: &'a str,
    /// `aud` must name one of these.
    pub audiences: &'a [&'a str],
    /// Allowed clock skew on `exp` and `nbf`, in whole seconds.
    pub leeway_secs: u64,
}

/// The token's header; `alg: none` (and anything unparsable) is malformed.
pub fn decode_header(token: &str) -> Result<Header, Refusal> {
    jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)
}

/// The token's `iss`, unverified: which provider to check it against.
pub fn unverified_issuer(token: &str) -> Result<Option<String>, Refusal> {
    #[derive(serde::Deserialize)]
    struct Peek {
        iss: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Peek>(token)
        .map(|p| p.iss)
        .map_err(|_| Refusal::Malformed)
}

/// Verifies `token` (whose decoded `header` the caller has) as an access token signed with
/// one of `keys` under an algorithm of `allowed`, following `rules`; its claims.
pub fn verify(
    token: &str,
    header: &Header,
    allowed: &[Algorithm],
    keys: &[Key],
    rules: &Rules<'_>,
) -> Result<Map<String, Value>, Refusal> {
    let alg = header.alg;
    if !allowed.contains(&alg) || !ASYMMETRIC.contains(&alg) {
        return Err(Refusal::Algorithm(alg));
    }
    let candidates: Vec<&Key> = match header.kid.as_deref() {
        Some(kid) => {
            let Some(k) = keys.iter().find(|k| k.kid.as_deref() == Some(kid)) else {
                return Err(Refusal::UnknownKid(kid.to_owned()));
            };
            if !k.fits(alg) {
                return Err(Refusal::Signature);
            }
            vec![k]
        }
        None => keys.iter().filter(|k| k.fits(alg)).collect(),
    };
    if candidates.is_empty() {
        return Err(Refusal::NoKey);
    }
    let validation = validation(alg, rules);
    let mut last = Refusal::Signature;
    for k in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &validation) {
            Ok(data) => {
                if !access_token_type(header.typ.as_deref()) || looks_like_id_token(&data.claims) {
                    return Err(Refusal::IdToken);
                }
                return Ok(data.claims);
            }
            Err(e) => {
                last = refusal(e.kind());
                if last != Refusal::Signature {
                    // The signature held; the claims are what is wrong.
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

fn validation(alg: Algorithm, rules: &Rules<'_>) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = rules.leeway_secs;
    v.validate_nbf = true;
    v.validate_exp = true;
    v.validate_aud = true;
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.set_issuer(&[rules.issuer]);
    v.set_audience(rules.audiences);
    v
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Refusal::Signature,
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidAudience => Refusal::Audience,
        ErrorKind::InvalidIssuer => Refusal::Issuer,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => Refusal::Malformed,
        ErrorKind::MissingRequiredClaim(c) => Refusal::MissingClaim(c.clone()),
        other => Refusal::Invalid(format!("{other:?}")),
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

#[cfg(test)]
mod tests;
