//! TLS for the gRPC listener: loads and checks `--tls-cert` / `--tls-key` before anything
//! else starts, so a wrong file is one clear startup error naming that file.
//!
//! Errors name files and say what is wrong with them; they never quote a key file's
//! contents (not even a PEM parser's message about it, which may echo a line).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;
use tonic::transport::{Identity, ServerTlsConfig};

/// A TLS handshake that has not finished by then is dropped (it holds a socket and a task).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key the gRPC listener serves with (both PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate file {}: {source}", .path.display())]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read TLS key file {}: {source}", .path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "TLS certificate file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        .path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error("TLS certificate file {} is not valid PEM: {reason}", .path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "TLS key file {} holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1: \
         -----BEGIN [RSA |EC ]PRIVATE KEY-----)",
        .path.display()
    )]
    NoKey { path: PathBuf },
    #[error("TLS key file {} holds a private key that cannot be used (unsupported type or corrupt)", .path.display())]
    BadKey { path: PathBuf },
    #[error(
        "TLS key file {} does not belong to the certificate in {} (their public keys differ)",
        .key.display(), .cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS certificate file {}: the first certificate cannot be parsed: {reason}", .path.display())]
    Unparsable { path: PathBuf, reason: String },
}

/// What the listener needs, checked: the PEM as tonic wants it.
pub struct LoadedTls {
    config: ServerTlsConfig,
}

impl LoadedTls {
    pub fn server_config(&self) -> ServerTlsConfig {
        self.config.clone()
    }
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTls").finish_non_exhaustive()
    }
}

/// Reads both files and checks that the certificate parses, that there is a private key
/// and that it matches the certificate.
pub fn load(files: &TlsFiles) -> Result<LoadedTls, TlsError> {
    let cert_pem = std::fs::read(&files.cert).map_err(|source| TlsError::ReadCert {
        path: files.cert.clone(),
        source,
    })?;
    let key_pem = std::fs::read(&files.key).map_err(|source| TlsError::ReadKey {
        path: files.key.clone(),
        source,
    })?;
    let chain = parse_certificates(&files.cert, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: files.key.clone(),
        },
        // Any other PEM error may quote part of the file: do not pass it on.
        _ => TlsError::BadKey {
            path: files.key.clone(),
        },
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider);
    match certified {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        Err(rustls::Error::InvalidCertificate(e)) => {
            return Err(TlsError::Unparsable {
                path: files.cert.clone(),
                reason: format!("{e:?}"),
            })
        }
        // The key provider could not load the key: wrong algorithm or a damaged key.
        Err(_) => {
            return Err(TlsError::BadKey {
                path: files.key.clone(),
            })
        }
    }
    // tonic's acceptor uses rustls' process-wide provider; make it the one we checked with.
    // Err only means another provider was installed first (then that one is used).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert_pem, key_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    Ok(LoadedTls { config })
}

/// Every certificate of a PEM file, at least one.
fn parse_certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The host name a client on this machine that trusts exactly the certificates in `cert`
/// (used as its CA file) can verify this listener with when it connects to `addr`: the
/// address itself (an IP SAN), else `localhost`. The error says why neither works.
///
/// `canopy start` uses it so its in-process data plane trusts its own control plane: a
/// self-signed certificate works, and so does a CA-signed one when the file also holds
/// the CA's certificate.
pub fn local_trust_name(cert: &Path, addr: std::net::IpAddr) -> Result<String, String> {
    use rustls::client::danger::ServerCertVerifier;
    let pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read TLS certificate file {}: {e}", cert.display()))?;
    let chain = parse_certificates(cert, &pem).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(chain.iter().cloned());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| {
        format!(
            "TLS certificate file {}: no certificate in it can be trusted as a CA ({e})",
            cert.display()
        )
    })?;
    let ip = if addr.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr
    };
    let (leaf, intermediates) = chain.split_first().ok_or_else(|| {
        TlsError::NoCertificate {
            path: cert.to_owned(),
        }
        .to_string()
    })?;
    let mut last = String::new();
    for name in [ip.to_string(), "localhost".to_owned()] {
        let Ok(server_name) = ServerName::try_from(name.as_str()) else {
            continue;
        };
        match verifier.verify_server_cert(
            leaf,
            intermediates,
            &server_name,
            &[],
            rustls::pki_types::UnixTime::now(),
        ) {
            Ok(_) => return Ok(name),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "TLS certificate file {}: a client trusting only this file cannot verify it for {ip} \
         or localhost ({last}); use a certificate for {ip} or localhost that is self-signed, \
         or add its CA's certificate to the file after it",
        cert.display()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn self_signed(names: &[&str]) -> Pair {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        Pair {
            cert: c.cert.pem(),
            key: c.signing_key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            cert: write(dir, "cert.pem", cert),
            key: write(dir, "key.pem", key),
        }
    }

    #[test]
    fn loads_a_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        let p = self_signed(&["localhost", "127.0.0.1"]);
        load(&files(dir.path(), &p.cert, &p.key)).unwrap();
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = self_signed(&["localhost"]);
        let key = write(dir.path(), "key.pem", &p.key);
        let err = load(&TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: key.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("cannot read TLS certificate file"), "{err}");
        assert!(err.contains("nope.pem"), "{err}");

        let cert = write(dir.path(), "cert.pem", &p.cert);
        let err = load(&TlsFiles {
            cert,
            key: dir.path().join("nokey.pem"),
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("cannot read TLS key file"), "{err}");
        assert!(err.contains("nokey.pem"), "{err}");
    }

    #[test]
    fn swapped_or_garbage_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = self_signed(&["localhost"]);
        // Key where the certificate belongs and the reverse.
        let err = load(&files(dir.path(), &p.key, &p.cert))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains("cert.pem"), "{err}");

        let err = load(&files(dir.path(), &p.cert, &p.cert))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM private key"), "{err}");
        assert!(err.contains("key.pem"), "{err}");
    }

    #[test]
    fn mismatched_key_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed(&["localhost"]);
        let b = self_signed(&["localhost"]);
        let err = load(&files(dir.path(), &a.cert, &b.key))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not belong to the certificate"), "{err}");
        assert!(err.contains("key.pem") && err.contains("cert.pem"), "{err}");
        let body: String = b.key.lines().nth(1).unwrap().to_owned();
        assert!(!err.contains(&body), "{err}");
    }

    #[test]
    fn corrupt_key_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = self_signed(&["localhost"]);
        let corrupt = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
        let err = load(&files(dir.path(), &p.cert, corrupt))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key.pem"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn local_trust_name_prefers_the_ip_then_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        let both = write(
            dir.path(),
            "both.pem",
            &self_signed(&["localhost", "127.0.0.1"]).cert,
        );
        assert_eq!(local_trust_name(&both, lo).unwrap(), "127.0.0.1");
        let any = std::net::IpAddr::from([0, 0, 0, 0]);
        assert_eq!(local_trust_name(&both, any).unwrap(), "127.0.0.1");
        let name = write(dir.path(), "name.pem", &self_signed(&["localhost"]).cert);
        assert_eq!(local_trust_name(&name, lo).unwrap(), "localhost");
        let other = write(
            dir.path(),
            "other.pem",
            &self_signed(&["cp.example.com"]).cert,
        );
        let err = local_trust_name(&other, lo).unwrap_err();
        assert!(
            err.contains("other.pem") && err.contains("localhost"),
            "{err}"
        );
    }

    #[test]
    fn local_trust_name_needs_the_ca_in_the_file_for_a_ca_signed_cert() {
        let dir = tempfile::tempdir().unwrap();
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let alone = write(dir.path(), "leaf.pem", &leaf.pem());
        assert!(local_trust_name(&alone, lo).is_err());
        let with_ca = write(
            dir.path(),
            "chain.pem",
            &format!("{}{}", leaf.pem(), ca.pem()),
        );
        assert_eq!(local_trust_name(&with_ca, lo).unwrap(), "127.0.0.1");
    }
}
