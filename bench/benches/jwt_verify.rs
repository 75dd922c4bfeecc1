//! JWT access tokens on the data plane's request path (`Identities::authorize`), keys
//! generated here:
//! - `first/<alg>`: the first request with a new token — signature, claims, rules, scope
//!   (the cache is given no room, so every call verifies);
//! - `cached_prehashed` / `hash_and_cached`: a token seen before, with and without the keyed
//!   hash, next to `static_prehashed` / `hash_and_static`, the static-token lookup of the
//!   same data plane (1k clients), which is the figure the cache promises to match.
//! - `revoke/…`: what `revoke subject` costs a data plane, with 1,000 subjects already
//!   revoked: `apply` (the sync writer applying one revocation, then lifting it again so
//!   the set keeps its size), `refuse_revoked` (the revoked subject's cached token after the
//!   revocation: the poll the revocation benchmark makes) and `other_after_revoke` (another
//!   person's cached token, first request after someone else was revoked).
#![allow(clippy::unwrap_used)] // benches: a panic is the failure report

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use canopy_bench::fixture;
use canopy_bench::harness::inproc;
use canopy_core::TokenHasher;
use canopy_data_plane::identity::{Identities, Resource, Sources};
use canopy_proto::v1 as pb;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::hint::black_box;

const ISSUER: &str = "https://idp.bench.example";
const ORIGIN: &str = "https://mcp.bench.example";

/// PKCS#8 wraps the PKCS#1 key jsonwebtoken signs RSA with in an OCTET STRING: the last
/// element of the outer SEQUENCE.
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    fn len_at(b: &[u8], i: usize) -> (usize, usize) {
        let first = b[i];
        if first < 0x80 {
            return (first as usize, i + 1);
        }
        let n = (first & 0x7f) as usize;
        let len = (0..n).fold(0usize, |l, k| (l << 8) | b[i + 1 + k] as usize);
        (len, i + 1 + n)
    }
    let (_, mut i) = len_at(pkcs8, 1);
    for _ in 0..2 {
        let (l, start) = len_at(pkcs8, i + 1);
        i = start + l;
    }
    let (l, start) = len_at(pkcs8, i + 1);
    pkcs8[start..start + l].to_vec()
}

fn keys() -> Vec<(Algorithm, EncodingKey)> {
    let rsa = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ed = Ed25519KeyPair::generate().unwrap();
    vec![
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_der(&pkcs1_of(rsa_pkcs8.as_ref())),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_der(ec.to_pkcs8v1().unwrap().as_ref()),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(ed.to_pkcs8v1().unwrap().as_ref()),
        ),
    ]
}

fn kid(alg: Algorithm) -> String {
    format!("{alg:?}").to_lowercase()
}

fn identities(capacity: usize, keys: &[(Algorithm, EncodingKey)]) -> Identities {
    let jwks: Vec<Value> = keys
        .iter()
        .map(|(alg, k)| {
            let mut v = serde_json::to_value(Jwk::from_encoding_key(k, *alg).unwrap()).unwrap();
            v["kid"] = json!(kid(*alg));
            v["use"] = json!("sig");
            v
        })
        .collect();
    let ids = Identities::with_capacity(capacity);
    ids.replace_all(Sources {
        providers: vec![pb::IdentityProviderState {
            name: "corp".into(),
            issuer: ISSUER.into(),
            audiences: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            leeway_ms: 30_000,
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            required_scopes: Vec::new(),
            jwks_json: json!({ "keys": jwks }).to_string(),
            keys_revision: 1,
        }],
        rules: vec![pb::AccessRuleState {
            name: "eng".into(),
            idp: "corp".into(),
            matches: vec![pb::AccessMatch {
                kind: Some(pb::access_match::Kind::Group("eng".into())),
            }],
            allowed: vec![fixture::SERVER.into()],
        }],
        revoked: Vec::new(),
    });
    ids
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(alg: Algorithm, key: &EncodingKey) -> String {
    mint_for("alice", alg, key)
}

fn mint_for(sub: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let now = now_s();
    let claims = json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": format!("{ORIGIN}/mcp"),
        "exp": now + 3600,
        "iat": now,
        "scope": "mcp",
        "client_id": "bench",
        "groups": ["eng"],
        "email": "alice@example.com",
    });
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid(alg));
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let resource = Resource::new(ORIGIN).unwrap();
    let hasher = TokenHasher::new([7; 32]);
    let now_ms = now_s() * 1000;
    let mut g = c.benchmark_group("jwt_verify");
    g.throughput(Throughput::Elements(1));

    // No room in the cache: every call is a first verification.
    let uncached = identities(0, &keys);
    for (alg, key) in &keys {
        let token = mint(*alg, key);
        let hash = hasher.hash(&token);
        assert!(uncached
            .authorize(&token, &hash, &resource, None, now_ms)
            .is_ok());
        g.bench_with_input(
            BenchmarkId::new("first", format!("{alg:?}")),
            &token,
            |b, t| {
                b.iter(|| {
                    black_box(
                        uncached
                            .authorize(black_box(t), &hash, &resource, None, now_ms)
                            .is_ok(),
                    )
                })
            },
        );
    }

    let cached = identities(canopy_data_plane::identity::DEFAULT_CAPACITY, &keys);
    let (alg, key) = &keys[1];
    let token = mint(*alg, key);
    let hash = hasher.hash(&token);
    assert!(cached
        .authorize(&token, &hash, &resource, None, now_ms)
        .is_ok());
    g.bench_function("cached_prehashed", |b| {
        b.iter(|| {
            black_box(
                cached
                    .authorize(&token, black_box(&hash), &resource, None, now_ms)
                    .is_ok(),
            )
        })
    });
    g.bench_function("hash_and_cached", |b| {
        b.iter(|| {
            let h = hasher.hash(black_box(&token));
            black_box(
                cached
                    .authorize(&token, &h, &resource, None, now_ms)
                    .is_ok(),
            )
        })
    });

    let state = inproc::state_with(1_000).unwrap();
    let view = state.load_view().unwrap();
    let static_token = fixture::client_token(500);
    let static_hash = view.hasher.hash(&static_token);
    assert!(view.tokens.lookup(&static_hash, now_ms).is_some());
    g.bench_function("static_prehashed", |b| {
        b.iter(|| {
            black_box(
                view.tokens
                    .lookup(black_box(&static_hash), now_ms)
                    .is_some(),
            )
        })
    });
    g.bench_function("hash_and_static", |b| {
        b.iter(|| {
            let h = view.hasher.hash(black_box(&static_token));
            black_box(view.tokens.lookup(&h, now_ms).is_some())
        })
    });
    g.finish();
}

fn revocation(idp: &str, subject: &str) -> pb::RevokedSubject {
    pb::RevokedSubject {
        idp: idp.into(),
        subject: subject.into(),
        revoked_at_ms: 1,
    }
}

fn bench_revoke(c: &mut Criterion) {
    use pb::change::Kind;
    let keys = keys();
    let resource = Resource::new(ORIGIN).unwrap();
    let hasher = TokenHasher::new([7; 32]);
    let now_ms = now_s() * 1000;
    let mut g = c.benchmark_group("revoke");
    g.throughput(Throughput::Elements(1));
    let ids = identities(canopy_data_plane::identity::DEFAULT_CAPACITY, &keys);
    for i in 0..1_000 {
        ids.apply(&Kind::SubjectRevoke(revocation(
            "corp",
            &format!("gone-{i}"),
        )));
    }
    g.bench_function("apply", |b| {
        b.iter(|| {
            ids.apply(&Kind::SubjectRevoke(revocation("corp", "bob")));
            ids.apply(&Kind::SubjectUnrevoke(revocation("corp", "bob")));
        })
    });
    let (alg, key) = &keys[1];
    let mallory = mint_for("mallory", *alg, key);
    let mallory_hash = hasher.hash(&mallory);
    assert!(ids
        .authorize(&mallory, &mallory_hash, &resource, None, now_ms)
        .is_ok());
    ids.apply(&Kind::SubjectRevoke(revocation("corp", "mallory")));
    g.bench_function("refuse_revoked", |b| {
        b.iter(|| {
            black_box(
                ids.authorize(&mallory, black_box(&mallory_hash), &resource, None, now_ms)
                    .is_err(),
            )
        })
    });
    let alice = mint(*alg, key);
    let alice_hash = hasher.hash(&alice);
    g.bench_function("other_after_revoke", |b| {
        b.iter_batched(
            || {
                assert!(ids
                    .authorize(&alice, &alice_hash, &resource, None, now_ms)
                    .is_ok());
                ids.apply(&Kind::SubjectRevoke(revocation("corp", "bob")));
                ids.apply(&Kind::SubjectUnrevoke(revocation("corp", "bob")));
            },
            |()| {
                black_box(
                    ids.authorize(&alice, black_box(&alice_hash), &resource, None, now_ms)
                        .is_ok(),
                )
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench, bench_revoke);
criterion_main!(benches);
