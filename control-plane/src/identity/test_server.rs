//! A loopback HTTP server answering fixed JSON by path, for the identity tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, (u16, String)>>,
    /// Requests served per path.
    hits: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

pub struct TestServer {
    pub url: String,
    shared: Arc<Shared>,
}

impl TestServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .unwrap_or_else(|e| panic!("addr: {e}"))
        );
        let shared = Arc::new(Shared::default());
        let served = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = Arc::clone(&served);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    shared.total.fetch_add(1, Ordering::SeqCst);
                    *shared
                        .hits
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(path.clone())
                        .or_default() += 1;
                    let (status, body) = shared
                        .routes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&path)
                        .cloned()
                        .unwrap_or((404, "{}".into()));
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { url, shared }
    }

    pub fn set(&self, path: &str, status: u16, body: &str) {
        self.shared
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.into(), (status, body.into()));
    }

    /// OpenID discovery at the root naming `/jwks`, and `jwks` there.
    pub fn provider(&self, jwks: &str) {
        let doc = format!(
            r#"{{"issuer":"{0}","jwks_uri":"{0}/jwks","token_endpoint":"{0}/token"}}"#,
            self.url
        );
        self.set("/.well-known/openid-configuration", 200, &doc);
        self.set("/jwks", 200, jwks);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.shared
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}
