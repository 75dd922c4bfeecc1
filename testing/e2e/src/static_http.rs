//! A tiny HTTP/1.1 server on loopback that answers fixed bodies by path, for tests that need
//! an identity provider's discovery document and key set without a real provider. Routes
//! can be changed while it runs (key rotation, an issuer that starts answering garbage).
//! [`StaticHttpServer::start_tls`] serves the same over https with a given certificate (an
//! issuer behind a private CA).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Routes = Arc<Mutex<HashMap<String, (u16, String)>>>;

/// Serves `(status, JSON body)` per request path; unknown paths get 404. Each connection
/// answers one request. Stops serving when dropped (its thread stays parked in `accept`
/// until the process exits, which is harmless in a test binary).
#[derive(Debug)]
pub struct StaticHttpServer {
    addr: SocketAddr,
    routes: Routes,
    scheme: &'static str,
}

impl StaticHttpServer {
    pub fn start() -> Self {
        Self::serve(None)
    }

    /// The same over https, with the PEM certificate chain and key in these files.
    pub fn start_tls(cert_pem: &Path, key_pem: &Path) -> Self {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_pem)
            .and_then(|certs| certs.collect())
            .unwrap_or_else(|e| panic!("cannot read {}: {e:?}", cert_pem.display()));
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .unwrap_or_else(|e| panic!("cannot read {}: {e:?}", key_pem.display()));
        // An explicit provider: the test binary links more than one rustls backend.
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .unwrap_or_else(|e| panic!("test TLS server configuration: {e}"));
        Self::serve(Some(Arc::new(config)))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0")
            .expect("cannot bind a loopback port for the test HTTP server");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let routes: Routes = Arc::default();
        let served = Arc::clone(&routes);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = Arc::clone(&served);
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => answer(stream, &routes),
                    Some(config) => {
                        // A client that refuses the certificate just ends the handshake.
                        if let Ok(conn) = rustls::ServerConnection::new(config) {
                            answer(rustls::StreamOwned::new(conn, stream), &routes);
                        }
                    }
                });
            }
        });
        Self {
            addr,
            routes,
            scheme,
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` from [`Self::start_tls`]; no trailing slash).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Answers `path` with `status` and `body` (as `application/json`) from now on.
    pub fn set(&self, path: &str, status: u16, body: &str) {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), (status, body.to_owned()));
    }

    /// Serves an OpenID discovery document for issuer [`Self::url`] whose `jwks_uri` is
    /// `/jwks`, and `jwks` there.
    pub fn serve_provider(&self, jwks: &str) {
        let issuer = self.url();
        let discovery = format!(
            r#"{{"issuer":"{issuer}","jwks_uri":"{issuer}/jwks","authorization_endpoint":"{issuer}/auth","token_endpoint":"{issuer}/token","response_types_supported":["code"]}}"#
        );
        self.set("/.well-known/openid-configuration", 200, &discovery);
        self.set("/jwks", 200, jwks);
    }
}

fn answer(stream: impl Read + Write, routes: &Routes) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers; GET requests carry no body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let (status, body) = routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&path)
        .cloned()
        .unwrap_or((404, r#"{"error":"not found"}"#.to_owned()));
    let stream = reader.get_mut();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
