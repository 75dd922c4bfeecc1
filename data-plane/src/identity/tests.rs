//! Every refusal of the issue's list, with keys generated here.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine;
use canopy_core::TokenHasher;
use canopy_proto::v1 as pb;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pb::change::Kind;
use serde_json::{json, Value};
use std::sync::OnceLock;

use super::*;

pub(crate) const ISSUER: &str = "https://idp.example.com";
pub(crate) const ORIGIN: &str = "https://mcp.example.com";

pub(crate) struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// The public key's DER bytes, for the HMAC-confusion forgery.
    pub public_der: Vec<u8>,
}

/// PKCS#8 wraps the PKCS#1 key jsonwebtoken signs with in an OCTET STRING: the last
/// element of the outer SEQUENCE.
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    fn len_at(b: &[u8], i: usize) -> (usize, usize) {
        let first = b[i];
        if first < 0x80 {
            return (first as usize, i + 1);
        }
        let n = (first & 0x7f) as usize;
        let mut len = 0usize;
        for k in 0..n {
            len = (len << 8) | b[i + 1 + k] as usize;
        }
        (len, i + 1 + n)
    }
    // SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }
    let (_, mut i) = len_at(pkcs8, 1);
    for _ in 0..2 {
        let (l, start) = len_at(pkcs8, i + 1);
        i = start + l;
    }
    assert_eq!(pkcs8[i], 0x04, "OCTET STRING");
    let (l, start) = len_at(pkcs8, i + 1);
    pkcs8[start..start + l].to_vec()
}

fn jwk_of(encoding: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut v = serde_json::to_value(Jwk::from_encoding_key(encoding, alg).unwrap()).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    v
}

fn rsa_key(kid: &str) -> TestKey {
    use aws_lc_rs::signature::KeyPair as _;
    let kp = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
    let encoding = EncodingKey::from_rsa_der(&pkcs1_of(pkcs8.as_ref()));
    let public_der = kp.public_key().as_ref().to_vec();
    TestKey {
        alg: Algorithm::RS256,
        kid: kid.into(),
        jwk: jwk_of(&encoding, Algorithm::RS256, kid),
        encoding,
        public_der,
    }
}

fn ec_key(kid: &str) -> TestKey {
    use aws_lc_rs::signature::KeyPair as _;
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let encoding = EncodingKey::from_ec_der(kp.to_pkcs8v1().unwrap().as_ref());
    TestKey {
        alg: Algorithm::ES256,
        kid: kid.into(),
        jwk: jwk_of(&encoding, Algorithm::ES256, kid),
        public_der: kp.public_key().as_ref().to_vec(),
        encoding,
    }
}

fn ed_key(kid: &str) -> TestKey {
    use aws_lc_rs::signature::KeyPair as _;
    let kp = Ed25519KeyPair::generate().unwrap();
    let encoding = EncodingKey::from_ed_der(kp.to_pkcs8v1().unwrap().as_ref());
    TestKey {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        jwk: jwk_of(&encoding, Algorithm::EdDSA, kid),
        public_der: kp.public_key().as_ref().to_vec(),
        encoding,
    }
}

/// RSA key generation is slow in debug builds: one set of keys for every test.
pub(crate) fn keys() -> &'static [TestKey; 3] {
    static KEYS: OnceLock<[TestKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| [rsa_key("rsa-1"), ec_key("ec-1"), ed_key("ed-1")])
}

pub(crate) fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

pub(crate) fn provider_def(name: &str, issuer: &str, jwks: String) -> pb::IdentityProviderState {
    pb::IdentityProviderState {
        name: name.into(),
        issuer: issuer.into(),
        audiences: vec!["api://canopy".into()],
        algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
        leeway_ms: 30_000,
        subject_claim: "sub".into(),
        groups_claim: "groups".into(),
        required_scopes: Vec::new(),
        jwks_json: jwks,
        keys_revision: 1,
    }
}

pub(crate) fn group_rule(name: &str, group: &str, allow: &[&str]) -> pb::AccessRuleState {
    pb::AccessRuleState {
        name: name.into(),
        idp: "corp".into(),
        matches: vec![pb::AccessMatch {
            kind: Some(pb::access_match::Kind::Group(group.into())),
        }],
        allowed: allow.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn revocation(subject: &str) -> pb::RevokedSubject {
    pb::RevokedSubject {
        idp: "corp".into(),
        subject: subject.into(),
        revoked_at_ms: 1,
    }
}

impl Identities {
    fn upsert_provider(&self, p: pb::IdentityProviderState) {
        assert!(self.apply(&Kind::IdentityProviderUpsert(p)));
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": format!("{ORIGIN}/mcp"),
        "exp": now() + 600,
        "iat": now(),
        "scope": "mcp",
        "client_id": "c1",
        "groups": ["eng"],
        "email": format!("{sub}@example.com"),
    })
}

pub(crate) fn sign(key: &TestKey, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.typ = Some("at+jwt".into());
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
}

struct Fixture {
    ids: Identities,
    resource: Resource,
    hasher: TokenHasher,
}

impl Fixture {
    fn new() -> Self {
        let k = keys();
        let ids = Identities::default();
        ids.replace_all(Sources {
            providers: vec![provider_def("corp", ISSUER, jwks(&[&k[0], &k[1], &k[2]]))],
            rules: vec![group_rule("eng", "eng", &["github"])],
            revoked: vec![],
        });
        Self {
            ids,
            resource: Resource::new(ORIGIN).unwrap(),
            hasher: TokenHasher::new([7; 32]),
        }
    }

    fn check_at(&self, token: &str, target: Option<&str>) -> Result<Arc<Scope>, Denied> {
        let hash = self.hasher.hash(token);
        self.ids
            .authorize(token, &hash, &self.resource, target, now() * 1000)
    }

    fn check(&self, token: &str) -> Result<Arc<Scope>, Denied> {
        self.check_at(token, None)
    }

    fn refused(&self, token: &str) -> Rejection {
        match self.check(token) {
            Err(Denied::Unauthorized(r)) => r,
            other => panic!("expected a 401, got {other:?}"),
        }
    }
}

#[test]
fn every_algorithm_verifies_and_the_rules_give_the_scope() {
    let f = Fixture::new();
    for k in keys() {
        let scope = f.check(&sign(k, &claims("alice"))).unwrap();
        assert_eq!(scope.allow().to_strings(), ["github"], "{:?}", k.alg);
    }
    // The same grants share one scope (and its cached lists).
    let a = f.check(&sign(&keys()[0], &claims("bob"))).unwrap();
    let b = f.check(&sign(&keys()[1], &claims("carol"))).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // No rule matches: a valid token that sees nothing.
    let mut c = claims("dave");
    c["groups"] = json!(["sales"]);
    assert!(f.check(&sign(&keys()[0], &c)).unwrap().allow().is_empty());
}

#[test]
fn audiences_this_resource_or_extra() {
    let f = Fixture::new();
    let k = &keys()[1];
    for aud in [
        json!(ORIGIN),
        json!("api://canopy"),
        json!(["x", format!("{ORIGIN}/mcp")]),
    ] {
        let mut c = claims("alice");
        c["aud"] = aud.clone();
        f.check(&sign(k, &c))
            .unwrap_or_else(|e| panic!("{aud}: {e:?}"));
    }
    // A token for one server's endpoint works there and nowhere else.
    let mut c = claims("alice");
    c["aud"] = json!(format!("{ORIGIN}/servers/github/mcp"));
    let t = sign(k, &c);
    f.check_at(&t, Some("github")).unwrap();
    assert_eq!(
        f.check_at(&t, Some("other")).unwrap_err(),
        Denied::Unauthorized(Rejection::Audience)
    );
    assert_eq!(
        f.check(&t).unwrap_err(),
        Denied::Unauthorized(Rejection::Audience)
    );
}

#[test]
fn refusals() {
    let f = Fixture::new();
    let [rsa, ec, ed] = keys();
    let with = |k: &TestKey, key: &str, v: Value| {
        let mut c = claims("alice");
        c[key] = v;
        sign(k, &c)
    };
    assert_eq!(
        f.refused(&with(rsa, "aud", json!("https://other.example.com/mcp"))),
        Rejection::Audience
    );
    assert_eq!(
        f.refused(&with(ec, "aud", json!(format!("{ORIGIN}/other")))),
        Rejection::Audience
    );
    // An issuer no provider has, and a token whose iss claim disagrees with its provider
    // cannot be told apart: both are unknown issuers.
    assert_eq!(
        f.refused(&with(rsa, "iss", json!("https://evil.example.com"))),
        Rejection::UnknownIssuer
    );
    assert_eq!(
        f.refused(&with(rsa, "exp", json!(now() - 3600))),
        Rejection::Expired
    );
    // Within the leeway (30 s) an expired token still passes.
    f.check(&with(ed, "exp", json!(now() - 5))).unwrap();
    assert_eq!(
        f.refused(&with(ec, "nbf", json!(now() + 3600))),
        Rejection::NotYetValid
    );
    let mut no_aud = claims("alice");
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        f.refused(&sign(rsa, &no_aud)),
        Rejection::Claim("aud".into())
    );
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        f.refused(&sign(ec, &no_sub)),
        Rejection::Claim("sub".into())
    );
    assert_eq!(f.refused("not.a.jwt"), Rejection::Malformed);
    for t in [
        "canopy_mcp_abc",
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.b+c.d",
        "a.b.c=",
    ] {
        assert!(!looks_like_jwt(t), "{t}");
        assert_eq!(f.refused(t), Rejection::Malformed);
    }
}

#[test]
fn bad_signature() {
    let f = Fixture::new();
    let t = sign(&keys()[0], &claims("alice"));
    // Same header and claims, the signature of other claims.
    let other = sign(&keys()[0], &claims("mallory"));
    let forged = format!(
        "{}.{}",
        t.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    assert_eq!(f.refused(&forged), Rejection::Signature);
    // Claims changed under a valid signature.
    let (head, rest) = t.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = b64.encode(claims("mallory").to_string());
    assert_eq!(
        f.refused(&format!("{head}.{payload}.{sig}")),
        Rejection::Signature
    );
    // A key of another provider, under a kid this provider has.
    let stranger = ec_key("ec-1");
    assert_eq!(
        f.refused(&sign(&stranger, &claims("alice"))),
        Rejection::Signature
    );
}

#[test]
fn alg_none_and_hmac_with_the_public_key() {
    let f = Fixture::new();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = b64.encode(claims("alice").to_string());
    for header in [
        json!({"alg": "none", "typ": "at+jwt"}),
        json!({"alg": "None", "typ": "at+jwt", "kid": "rsa-1"}),
    ] {
        let t = format!("{}.{payload}.", b64.encode(header.to_string()));
        assert_eq!(f.refused(&t), Rejection::Malformed, "{header}");
    }
    // HS256 "signed" with each public key, as an attacker who read the JWKS would.
    for k in keys() {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(k.kid.clone());
        let key = EncodingKey::from_secret(&k.public_der).unwrap();
        let t = jsonwebtoken::encode(&h, &claims("alice"), &key).unwrap();
        assert_eq!(f.refused(&t), Rejection::Algorithm("HS256".into()));
    }
    // An algorithm the provider does not allow, with a real key.
    let ids = Identities::default();
    let mut def = provider_def("corp", ISSUER, jwks(&[&keys()[0]]));
    def.algorithms = vec!["ES256".into()];
    ids.upsert_provider(def);
    let t = sign(&keys()[0], &claims("alice"));
    let hash = f.hasher.hash(&t);
    assert_eq!(
        ids.authorize(&t, &hash, &f.resource, None, now() * 1000)
            .unwrap_err(),
        Denied::Unauthorized(Rejection::Algorithm("RS256".into()))
    );
    // HMAC can be neither allowed nor keyed from a JWKS.
    let mut def = provider_def("corp", ISSUER, jwks(&[&keys()[0]]));
    def.algorithms = vec!["HS256".into(), "none".into()];
    assert!(Provider::new(def).algorithms.is_empty());
    let secret = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}).to_string();
    assert_eq!(
        Provider::new(provider_def("corp", ISSUER, secret)).key_count(),
        0
    );
    // An unreadable JWKS leaves the provider without keys (fail closed).
    let broken = Provider::new(provider_def("corp", ISSUER, "garbage".into()));
    assert_eq!(broken.key_count(), 0);
}

#[test]
fn unknown_kid_is_reported_once_per_cooldown_and_accepted_after_refresh() {
    let f = Fixture::new();
    let fresh = rsa_key("rsa-2");
    let t = sign(&fresh, &claims("alice"));
    let expected = Rejection::UnknownKid {
        provider: Arc::from("corp"),
        issuer: ISSUER.into(),
        kid: "rsa-2".into(),
    };
    assert_eq!(f.refused(&t), expected);
    assert_eq!(f.refused(&t), expected);
    assert_eq!(
        f.ids.take_unknown_kids(),
        vec![(ISSUER.to_owned(), "rsa-2".to_owned())]
    );
    assert!(f.ids.take_unknown_kids().is_empty());
    // The control plane fetched the new JWKS and streamed it.
    let k = keys();
    f.ids
        .upsert_provider(provider_def("corp", ISSUER, jwks(&[&k[0], &fresh])));
    f.check(&t).unwrap();
}

#[test]
fn id_tokens_are_refused() {
    let f = Fixture::new();
    let k = &keys()[0];
    let mut c = claims("alice");
    c["nonce"] = json!("n-0S6_WzA2Mj");
    assert_eq!(f.refused(&sign(k, &c)), Rejection::IdToken);
    let mut h = Header::new(k.alg);
    h.typ = Some("logout+jwt".into());
    h.kid = Some(k.kid.clone());
    let t = jsonwebtoken::encode(&h, &claims("alice"), &k.encoding).unwrap();
    assert_eq!(f.refused(&t), Rejection::IdToken);
    // typ JWT: accepted as an access token unless it carries an ID-token mark.
    let plain = |c: &Value| {
        let mut h = Header::new(k.alg);
        h.kid = Some(k.kid.clone());
        jsonwebtoken::encode(&h, c, &k.encoding).unwrap()
    };
    f.check(&plain(&claims("alice"))).unwrap();
    for (claim, v) in [
        ("at_hash", json!("x")),
        ("typ", json!("ID")),
        ("nonce", json!("n")),
    ] {
        let mut c = claims("alice");
        c[claim] = v;
        assert_eq!(f.refused(&plain(&c)), Rejection::IdToken, "{claim}");
    }
}

#[test]
fn revoked_subject_and_deleted_provider_beat_the_cache() {
    let f = Fixture::new();
    let t = sign(&keys()[1], &claims("alice"));
    f.check(&t).unwrap();
    assert_eq!(f.ids.cached_tokens(), 1);
    f.ids.apply(&Kind::SubjectRevoke(revocation("alice")));
    assert_eq!(f.refused(&t), Rejection::Revoked);
    // Others of the provider are unaffected.
    f.check(&sign(&keys()[1], &claims("bob"))).unwrap();
    f.ids.apply(&Kind::SubjectUnrevoke(revocation("alice")));
    f.check(&t).unwrap();
    let mut page = String::new();
    f.ids.render_metrics(&mut page);
    // The unrevoked token came back from the cache, not from a second verification.
    for line in [
        "canopy_jwt_verified_total 2",
        "canopy_jwt_refused_total 1",
        "canopy_jwt_cached 2",
        "canopy_identity_providers 1",
    ] {
        assert!(page.contains(line), "{line} in {page}");
    }
    f.ids.apply(&Kind::IdentityProviderDelete("corp".into()));
    assert!(!f.ids.is_enabled());
    assert_eq!(f.refused(&t), Rejection::UnknownIssuer);
}

fn metric(ids: &Identities, name: &str) -> u64 {
    let mut page = String::new();
    ids.render_metrics(&mut page);
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {page}"))
}

/// The same claims under a signature of other claims: refused as a forgery unless
/// something refuses it before the signature is checked.
fn forged(claims_of: &Value) -> String {
    let k = &keys()[1];
    let real = sign(k, claims_of);
    let other = sign(k, &claims("someone-else"));
    format!(
        "{}.{}",
        real.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    )
}

#[test]
fn revoked_subject_is_refused_from_the_cache_and_unrevoke_lets_it_back() {
    let f = Fixture::new();
    let t = sign(&keys()[1], &claims("alice"));
    let bob = sign(&keys()[1], &claims("bob"));
    f.check(&t).unwrap();
    f.check(&bob).unwrap();
    assert_eq!(metric(&f.ids, "canopy_jwt_verified_total"), 2);
    f.ids.apply(&Kind::SubjectRevoke(revocation("alice")));
    for _ in 0..3 {
        assert_eq!(f.refused(&t), Rejection::Revoked);
    }
    // Refused from the cache (no signature checked), and everybody else's token stays
    // cached across the revocation.
    f.check(&bob).unwrap();
    assert_eq!(metric(&f.ids, "canopy_jwt_verified_total"), 2);
    assert_eq!(metric(&f.ids, "canopy_jwt_refused_total"), 3);
    f.ids.apply(&Kind::SubjectUnrevoke(revocation("alice")));
    f.check(&t).unwrap();
    f.check(&bob).unwrap();
    assert_eq!(metric(&f.ids, "canopy_jwt_verified_total"), 2);
    // Revoked again: refused again, however many generations came between.
    f.ids.apply(&Kind::SubjectRevoke(revocation("carol")));
    f.ids.apply(&Kind::SubjectRevoke(revocation("alice")));
    f.ids.apply(&Kind::SubjectUnrevoke(revocation("carol")));
    assert_eq!(f.refused(&t), Rejection::Revoked);
    f.check(&bob).unwrap();
}

#[test]
fn a_new_generation_does_not_resurrect_a_refused_token() {
    let f = Fixture::new();
    let k = keys();
    let t = sign(&k[1], &claims("alice"));
    f.check(&t).unwrap();
    f.ids.apply(&Kind::SubjectRevoke(revocation("alice")));
    assert_eq!(f.refused(&t), Rejection::Revoked);
    // Unrelated revocations, a rule change and new keys (new epochs: verified again)
    // all start new generations; none lets the revoked subject back in.
    f.ids.apply(&Kind::SubjectRevoke(revocation("bob")));
    f.ids.apply(&Kind::SubjectUnrevoke(revocation("bob")));
    assert_eq!(f.refused(&t), Rejection::Revoked);
    f.ids
        .apply(&Kind::AccessRuleUpsert(group_rule("ops", "eng", &["jira"])));
    assert_eq!(f.refused(&t), Rejection::Revoked);
    f.ids
        .upsert_provider(provider_def("corp", ISSUER, jwks(&[&k[0], &k[1], &k[2]])));
    assert_eq!(f.refused(&t), Rejection::Revoked);
    // A snapshot that still names the revocation keeps it; one that does not lifts it.
    let sources = f.ids.sources();
    assert_eq!(sources.revoked, vec![revocation("alice")]);
    f.ids.replace_all(sources.clone());
    assert_eq!(f.refused(&t), Rejection::Revoked);
    f.ids.replace_all(Sources {
        revoked: vec![],
        ..sources
    });
    f.check(&t).unwrap();
    // A lifted revocation of a provider that is deleted and created again under the same
    // name does not come back with it, and a revocation of another provider's subject of
    // the same name does not refuse this one.
    f.ids.apply(&Kind::SubjectRevoke(pb::RevokedSubject {
        idp: "other".into(),
        ..revocation("alice")
    }));
    f.check(&t).unwrap();
    f.ids.apply(&Kind::SubjectRevoke(revocation("alice")));
    f.ids.apply(&Kind::IdentityProviderDelete("corp".into()));
    f.ids
        .upsert_provider(provider_def("corp", ISSUER, jwks(&[&k[0], &k[1], &k[2]])));
    f.check(&t).unwrap();
}

#[test]
fn revoked_subject_is_refused_before_its_signature_is_checked() {
    let f = Fixture::new();
    // Never seen before (not cached): a forgery in the name of a revoked subject is
    // refused as revoked, without a signature check...
    f.ids.apply(&Kind::SubjectRevoke(revocation("alice")));
    assert_eq!(f.refused(&forged(&claims("alice"))), Rejection::Revoked);
    assert_eq!(
        f.refused(&sign(&keys()[0], &claims("alice"))),
        Rejection::Revoked
    );
    assert_eq!(metric(&f.ids, "canopy_jwt_verified_total"), 0);
    // ...while anybody else's forgery is still a bad signature, and a token of a subject
    // of the same name from an issuer no provider has is still an unknown issuer.
    assert_eq!(f.refused(&forged(&claims("bob"))), Rejection::Signature);
    let mut stranger = claims("alice");
    stranger["iss"] = json!("https://evil.example.com");
    assert_eq!(
        f.refused(&sign(&keys()[0], &stranger)),
        Rejection::UnknownIssuer
    );
    // A custom subject claim is the one looked at.
    let mut def = provider_def("corp", ISSUER, jwks(&[&keys()[1]]));
    def.subject_claim = "oid".into();
    f.ids.upsert_provider(def);
    let mut c = claims("not-alice");
    c["oid"] = json!("alice");
    assert_eq!(f.refused(&forged(&c)), Rejection::Revoked);
}

#[test]
fn rule_changes_apply_to_cached_tokens() {
    let f = Fixture::new();
    let t = sign(&keys()[2], &claims("alice"));
    assert_eq!(f.check(&t).unwrap().allow().to_strings(), ["github"]);
    f.ids.apply(&Kind::AccessRuleUpsert(group_rule(
        "eng",
        "eng",
        &["github", "jira__search"],
    )));
    assert_eq!(
        f.check(&t).unwrap().allow().to_strings(),
        ["github", "jira__search"]
    );
    f.ids.apply(&Kind::AccessRuleDelete("eng".into()));
    assert!(f.check(&t).unwrap().allow().is_empty());
}

#[test]
fn required_scope_missing_is_403() {
    let ids = Identities::default();
    let mut def = provider_def("corp", ISSUER, jwks(&[&keys()[0]]));
    def.required_scopes = vec!["mcp".into()];
    ids.upsert_provider(def);
    let resource = Resource::new(ORIGIN).unwrap();
    let hasher = TokenHasher::new([1; 32]);
    let mut c = claims("alice");
    c["scope"] = json!("openid profile");
    let t = sign(&keys()[0], &c);
    assert_eq!(
        ids.authorize(&t, &hasher.hash(&t), &resource, None, now() * 1000)
            .unwrap_err(),
        Denied::InsufficientScope
    );
    c["scope"] = json!("openid mcp");
    let t = sign(&keys()[0], &c);
    assert!(ids
        .authorize(&t, &hasher.hash(&t), &resource, None, now() * 1000)
        .is_ok());
    assert_eq!(ids.directory().required_scopes(), ["mcp"]);
}

#[test]
fn cache_is_bounded() {
    let ids = Identities::with_capacity(2);
    ids.upsert_provider(provider_def("corp", ISSUER, jwks(&[&keys()[1]])));
    let resource = Resource::new(ORIGIN).unwrap();
    let hasher = TokenHasher::new([1; 32]);
    for who in ["a", "b", "c", "d"] {
        let t = sign(&keys()[1], &claims(who));
        ids.authorize(&t, &hasher.hash(&t), &resource, None, now() * 1000)
            .unwrap();
    }
    assert_eq!(ids.cached_tokens(), 2);
}

#[test]
fn synced_by_snapshot_and_changes_and_kept_in_the_cache_file() {
    use crate::metrics::Metrics;
    use crate::state::tests_support::{install, snapshot};
    use crate::state::State;
    let k = keys();
    let state = State::new(Arc::new(Metrics::default()));
    let mut snap = snapshot(5, vec![], vec![]);
    snap.identity_providers = vec![provider_def("corp", ISSUER, jwks(&[&k[0]]))];
    snap.access_rules = vec![group_rule("eng", "eng", &["gh"])];
    snap.revoked_subjects = vec![revocation("mallory")];
    install(&state, snap);
    let ids = &state.identities;
    let dir = ids.directory();
    assert_eq!(dir.issuers(), [ISSUER]);
    assert!(dir.is_revoked("corp", "mallory"));
    let change = |revision, kind| pb::Change {
        revision,
        kind: Some(kind),
    };
    state
        .apply_changes(vec![
            change(6, Kind::SubjectRevoke(revocation("alice"))),
            change(7, Kind::SubjectUnrevoke(revocation("mallory"))),
            change(
                8,
                Kind::AccessRuleUpsert(group_rule("ops", "ops", &["jira"])),
            ),
        ])
        .unwrap();
    let dir = ids.directory();
    assert!(dir.is_revoked("corp", "alice") && !dir.is_revoked("corp", "mallory"));

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.cache");
    crate::cache::write(&state, &path).unwrap();
    let restored = State::new(Arc::new(Metrics::default()));
    crate::cache::load(&restored, &path).unwrap();
    let mut a = ids.sources();
    let mut b = restored.identities.sources();
    for s in [&mut a, &mut b] {
        s.rules.sort_by(|x, y| x.name.cmp(&y.name));
    }
    assert_eq!(a, b);
    assert_eq!(b.rules.len(), 2);

    // A deleted provider takes its rules and revocations along.
    state
        .apply_changes(vec![change(9, Kind::IdentityProviderDelete("corp".into()))])
        .unwrap();
    assert_eq!(ids.sources(), Sources::default());
}
