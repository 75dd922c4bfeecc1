//! Every refusal, with keys generated here.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use crate::keys::parse_jwks;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::EncodingKey;
use serde_json::json;

const ISSUER: &str = "https://idp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const ALLOWED: &[Algorithm] = &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

struct TestKey {
    alg: Algorithm,
    kid: &'static str,
    encoding: EncodingKey,
    public_der: Vec<u8>,
}

impl TestKey {
    fn ec(kid: &'static str) -> Self {
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            alg: Algorithm::ES256,
            kid,
            encoding: EncodingKey::from_ec_der(kp.to_pkcs8v1().unwrap().as_ref()),
            public_der: kp.public_key().as_ref().to_vec(),
        }
    }

    fn ed(kid: &'static str) -> Self {
        let kp = Ed25519KeyPair::generate().unwrap();
        Self {
            alg: Algorithm::EdDSA,
            kid,
            encoding: EncodingKey::from_ed_der(kp.to_pkcs8v1().unwrap().as_ref()),
            public_der: kp.public_key().as_ref().to_vec(),
        }
    }

    fn jwk(&self) -> Value {
        let mut v = serde_json::to_value(Jwk::from_encoding_key(&self.encoding, self.alg).unwrap())
            .unwrap();
        v["kid"] = json!(self.kid);
        v["use"] = json!("sig");
        v
    }

    fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.into());
        h
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": AUD, "exp": now() + 600, "iat": now()})
}

fn with(extra: Value) -> Value {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

struct Fixture {
    ec: TestKey,
    ed: TestKey,
    keys: Vec<Key>,
}

impl Fixture {
    fn new() -> Self {
        let ec = TestKey::ec("ec-1");
        let ed = TestKey::ed("ed-1");
        let jwks = json!({"keys": [ec.jwk(), ed.jwk()]}).to_string();
        let keys = parse_jwks("corp", &jwks).unwrap();
        assert_eq!(keys.len(), 2);
        Self { ec, ed, keys }
    }

    fn check(&self, token: &str) -> Result<Map<String, Value>, Refusal> {
        let header = decode_header(token)?;
        let rules = Rules {
            issuer: ISSUER,
            audiences: &[AUD, "api://canopy"],
            leeway_secs: 30,
        };
        verify(token, &header, ALLOWED, &self.keys, &rules)
    }
}

#[test]
fn good_tokens_verify_with_either_key() {
    let f = Fixture::new();
    for k in [&f.ec, &f.ed] {
        let got = f.check(&k.sign(&claims())).unwrap();
        assert_eq!(got["sub"], "alice");
    }
    // An extra audience; `typ` absent or `JWT`; no `kid` (each key of the family is tried).
    assert!(f
        .check(&f.ec.sign(&with(json!({"aud": "api://canopy"}))))
        .is_ok());
    let mut h = Header::new(Algorithm::ES256);
    h.typ = None;
    assert!(f.check(&f.ec.sign_with(h.clone(), &claims())).is_ok());
    h.typ = Some("JWT".into());
    assert!(f.check(&f.ec.sign_with(h, &claims())).is_ok());
    // Within the leeway.
    assert!(f
        .check(&f.ec.sign(&with(json!({"exp": now() - 10}))))
        .is_ok());
}

#[test]
fn alg_none_is_malformed() {
    let f = Fixture::new();
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for header in [
        json!({"alg": "none", "typ": "at+jwt"}),
        json!({"alg": "None", "typ": "at+jwt", "kid": "ec-1"}),
    ] {
        let t = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header.to_string()));
        assert_eq!(f.check(&t).unwrap_err(), Refusal::Malformed, "{header}");
    }
    assert_eq!(f.check("not.a.jwt").unwrap_err(), Refusal::Malformed);
}

#[test]
fn hmac_keyed_with_the_public_key_is_refused_even_if_allowed() {
    let f = Fixture::new();
    for k in [&f.ec, &f.ed] {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(k.kid.into());
        let forged = jsonwebtoken::encode(
            &h,
            &claims(),
            &EncodingKey::from_secret(&k.public_der).unwrap(),
        )
        .unwrap();
        assert_eq!(
            f.check(&forged).unwrap_err(),
            Refusal::Algorithm(Algorithm::HS256)
        );
        // A caller that lets HS256 through its own list still gets a refusal.
        let header = decode_header(&forged).unwrap();
        let rules = Rules {
            issuer: ISSUER,
            audiences: &[AUD],
            leeway_secs: 0,
        };
        assert_eq!(
            verify(&forged, &header, &[Algorithm::HS256], &f.keys, &rules).unwrap_err(),
            Refusal::Algorithm(Algorithm::HS256)
        );
    }
    // An asymmetric algorithm the provider does not allow, with a real key.
    let header = f.ec.header();
    let t = f.ec.sign(&claims());
    let rules = Rules {
        issuer: ISSUER,
        audiences: &[AUD],
        leeway_secs: 0,
    };
    assert_eq!(
        verify(&t, &header, &[Algorithm::RS256], &f.keys, &rules).unwrap_err(),
        Refusal::Algorithm(Algorithm::ES256)
    );
}

#[test]
fn claims_refusals() {
    let f = Fixture::new();
    let cases = [
        (json!({"iss": "https://evil.example"}), Refusal::Issuer),
        (
            json!({"aud": "https://other.example/mcp"}),
            Refusal::Audience,
        ),
        (json!({"exp": now() - 3600}), Refusal::Expired),
        (json!({"nbf": now() + 3600}), Refusal::NotYetValid),
        (json!({"exp": null}), Refusal::MissingClaim("exp".into())),
        (json!({"aud": null}), Refusal::MissingClaim("aud".into())),
    ];
    for (extra, want) in cases {
        let t = f.ec.sign(&with(extra.clone()));
        assert_eq!(f.check(&t).unwrap_err(), want, "{extra}");
    }
}

#[test]
fn id_tokens_are_refused() {
    let f = Fixture::new();
    for extra in [
        json!({"nonce": "n"}),
        json!({"at_hash": "x"}),
        json!({"c_hash": "x"}),
        json!({"typ": "ID"}),
    ] {
        let t = f.ed.sign(&with(extra.clone()));
        assert_eq!(f.check(&t).unwrap_err(), Refusal::IdToken, "{extra}");
    }
    let mut h = f.ec.header();
    h.typ = Some("id_token+jwt".into());
    assert_eq!(
        f.check(&f.ec.sign_with(h, &claims())).unwrap_err(),
        Refusal::IdToken
    );
}

#[test]
fn keys_by_kid_and_family() {
    let f = Fixture::new();
    let mut h = f.ec.header();
    h.kid = Some("never-published".into());
    assert_eq!(
        f.check(&f.ec.sign_with(h, &claims())).unwrap_err(),
        Refusal::UnknownKid("never-published".into())
    );
    // A kid of a key of another family.
    let mut h = f.ec.header();
    h.kid = Some("ed-1".into());
    assert_eq!(
        f.check(&f.ec.sign_with(h, &claims())).unwrap_err(),
        Refusal::Signature
    );
    // Signed by a key nobody published, under a published kid.
    let stranger = TestKey::ec("ec-1");
    assert_eq!(
        f.check(&stranger.sign(&claims())).unwrap_err(),
        Refusal::Signature
    );
    // No kid and no key of the algorithm's family.
    let only_ed = parse_jwks("corp", &json!({"keys": [f.ed.jwk()]}).to_string()).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    let t = f.ec.sign_with(h.clone(), &claims());
    let rules = Rules {
        issuer: ISSUER,
        audiences: &[AUD],
        leeway_secs: 0,
    };
    assert_eq!(
        verify(&t, &h, ALLOWED, &only_ed, &rules).unwrap_err(),
        Refusal::NoKey
    );
}

#[test]
fn unusable_keys_are_left_out() {
    let f = Fixture::new();
    let mut enc = f.ec.jwk();
    enc["use"] = json!("enc");
    let mut wrong_alg = f.ed.jwk();
    wrong_alg["alg"] = json!("ES256");
    let set = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
        {"kty": "RSA", "kid": "broken"},
        enc,
        wrong_alg,
        f.ec.jwk(),
    ]});
    let keys = parse_jwks("corp", &set.to_string()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid.as_deref(), Some("ec-1"));
    assert!(keys[0].fits(Algorithm::ES256) && !keys[0].fits(Algorithm::EdDSA));
    assert!(parse_jwks("corp", "garbage").is_err());
    assert!(parse_jwks("corp", r#"{"keys": 1}"#).is_err());
}

#[test]
fn issuer_is_read_unverified() {
    let f = Fixture::new();
    let t = f.ec.sign(&claims());
    assert_eq!(unverified_issuer(&t).unwrap().as_deref(), Some(ISSUER));
    let t = f.ec.sign(&with(json!({"iss": null})));
    assert_eq!(unverified_issuer(&t).unwrap(), None);
    assert_eq!(
        unverified_issuer("canopy_usr_x").unwrap_err(),
        Refusal::Malformed
    );
}

#[test]
fn algorithms_by_name() {
    assert_eq!(crate::algorithm(" ES256 "), Some(Algorithm::ES256));
    assert_eq!(crate::algorithm("HS256"), None);
    assert_eq!(crate::algorithm("none"), None);
    assert_eq!(crate::alg_name(Algorithm::EdDSA), "EdDSA");
}

#[test]
fn id_tokens_and_other_types_are_not_access_tokens() {
    assert!(access_token_type(None) && access_token_type(Some("at+JWT")));
    assert!(access_token_type(Some("application/at+jwt")) && access_token_type(Some("JWT")));
    assert!(!access_token_type(Some("id_token+jwt")));
    let claims = |json: &str| serde_json::from_str::<Map<String, Value>>(json).unwrap_or_default();
    assert!(looks_like_id_token(&claims(r#"{"nonce":"n"}"#)));
    assert!(looks_like_id_token(&claims(r#"{"typ":"ID"}"#)));
    assert!(!looks_like_id_token(&claims(r#"{"scope":"openid"}"#)));
}
