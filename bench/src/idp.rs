//! A loopback identity provider for the JWT figures: an OpenID discovery document and a
//! JWKS with one ES256 key generated here, served on 127.0.0.1 (the control plane accepts
//! plain http on loopback), and the access tokens the harness presents, minted with that key.

use anyhow::Context;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use canopy_proto::v1 as pb;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::admin::Admin;
use crate::fixture;

/// The group the provider's access rule matches.
pub const GROUP: &str = "bench";
const KID: &str = "bench-es256";

pub struct LoopbackIdp {
    pub issuer: String,
    key: EncodingKey,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for LoopbackIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl LoopbackIdp {
    pub async fn start() -> anyhow::Result<Self> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| anyhow::anyhow!("generating the ES256 key: {e}"))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|e| anyhow::anyhow!("encoding the ES256 key: {e}"))?;
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256)?)?;
        jwk["kid"] = json!(KID);
        jwk["use"] = json!("sig");
        let jwks = json!({ "keys": [jwk] }).to_string();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
        })
        .to_string();
        let json = |body: String| {
            move || {
                let body = body.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
            }
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(json(discovery)),
            )
            .route("/jwks", axum::routing::get(json(jwks)));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("loopback identity provider stopped: {e}");
            }
        });
        Ok(Self {
            issuer,
            key,
            server,
        })
    }

    /// Registers this provider as `name`, and a rule of the same name giving its `GROUP`
    /// the bench server.
    pub async fn register(&self, admin: &Admin, name: &str) -> anyhow::Result<()> {
        admin
            .client()
            .create_identity_provider(admin.req(pb::CreateIdentityProviderRequest {
                spec: Some(pb::IdentityProviderSpec {
                    name: name.into(),
                    issuer: self.issuer.clone(),
                    algorithms: vec!["ES256".into()],
                    ..Default::default()
                }),
            }))
            .await
            .context("creating the loopback identity provider")?;
        admin
            .client()
            .create_access_rule(admin.req(pb::CreateAccessRuleRequest {
                rule: Some(pb::AccessRule {
                    name: name.into(),
                    idp: name.into(),
                    matches: vec![pb::AccessMatch {
                        kind: Some(pb::access_match::Kind::Group(GROUP.into())),
                    }],
                    allowed: vec![fixture::SERVER.into()],
                }),
            }))
            .await
            .context("creating the bench access rule")?;
        Ok(())
    }

    /// An access token for `subject` whose audience is the data planes at `origins`
    /// (`http://127.0.0.1:PORT`), valid for an hour.
    pub fn mint(&self, subject: &str, origins: &[String]) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": origins.iter().map(|o| format!("{o}/mcp")).collect::<Vec<_>>(),
            "exp": now + 3600,
            "iat": now,
            "client_id": "canopy-bench",
            "groups": [GROUP],
        });
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(KID.into());
        Ok(jsonwebtoken::encode(&h, &claims, &self.key)?)
    }
}
