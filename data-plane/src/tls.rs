//! TLS towards the control plane's gRPC API, shared by the sync client and the `canopy`
//! CLI: the client configuration for `https://` URLs (a CA file, else the system's and
//! the webpki roots) and the one place that turns a failed handshake into a sentence.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig};

/// A TLS handshake that has not finished by then fails (a peer that accepts TCP but never
/// speaks TLS must not hang a connect forever).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum CaFileError {
    #[error("cannot read CA file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {} is not valid PEM: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "CA file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        .path.display()
    )]
    Empty { path: PathBuf },
}

/// Whether `url` asks for TLS (`https://`, any case).
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The TLS client configuration for an `https://` control-plane URL.
///
/// With `ca_file`, exactly the certificates in it are trusted (a private CA, or the
/// server's own self-signed certificate). Without, the operating system's trust store
/// (when it has any certificates) plus the webpki (Mozilla) roots.
/// `domain` overrides the name the certificate is checked against (default: the URL's host).
pub fn client_config(
    ca_file: Option<&Path>,
    domain: Option<&str>,
) -> Result<ClientTlsConfig, CaFileError> {
    let mut config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
                path: path.to_owned(),
                source,
            })?;
            check_ca_pem(path, &pem)?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        None => {
            // tonic fails the whole connection when asked for native roots and the system
            // has none (minimal containers), so only ask when there are some.
            if !rustls_native_certs::load_native_certs().certs.is_empty() {
                config = config.with_native_roots();
            }
            config = config.with_webpki_roots();
        }
    }
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    Ok(config)
}

fn check_ca_pem(path: &Path, pem: &[u8]) -> Result<(), CaFileError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Why a connection to the control plane failed, when TLS (or its absence) is the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate chain does not lead to a trusted CA.
    Untrusted,
    /// The certificate is not valid for the host name in the URL.
    WrongName,
    /// The certificate (or one in its chain) has expired or is not valid yet.
    Expired,
    /// The peer did not answer with TLS: most likely an `https://` URL for a plaintext
    /// listener.
    NotTls,
    /// Anything else rustls reported (its own words).
    Other(String),
}

impl TlsFailure {
    /// A sentence for people; `ca_flag` is the option that names a CA file for this program
    /// (`--ca-file`, `--control-plane-ca-file`).
    pub fn describe(&self, ca_flag: &str) -> String {
        match self {
            TlsFailure::Untrusted => format!(
                "certificate not trusted: pass {ca_flag} with the CA certificate that signed the \
                 control plane's certificate"
            ),
            TlsFailure::WrongName => "the control plane's certificate is not valid for this host \
                 name: use a URL whose host is in the certificate's subject alternative names"
                .to_owned(),
            TlsFailure::Expired => {
                "the control plane's certificate has expired or is not valid yet".to_owned()
            }
            TlsFailure::NotTls => "the control plane did not answer with TLS: if it serves \
                 plaintext gRPC, use an http:// URL"
                .to_owned(),
            TlsFailure::Other(e) => format!("TLS handshake with the control plane failed: {e}"),
        }
    }
}

/// Looks through an error and its sources for a TLS failure (rustls errors travel inside
/// `std::io::Error`s, which `source()` skips over, so those are unwrapped too).
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = from_rustls(e) {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.get_ref().and_then(|inner| from_rustls(inner)) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}

fn from_rustls(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    use rustls::CertificateError as C;
    let e = e.downcast_ref::<rustls::Error>()?;
    Some(match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::WrongName,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => TlsFailure::Expired,
            C::Revoked => TlsFailure::Other("the control plane's certificate is revoked".into()),
            // Unknown issuer, a signature no trusted certificate verifies (a root of the same
            // name with another key), a CA certificate used as the server's: all mean that
            // what this client trusts does not vouch for this certificate.
            _ => TlsFailure::Untrusted,
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsFailure::NotTls
        }
        other => TlsFailure::Other(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn https_detection() {
        assert!(is_https("https://cp:9090"));
        assert!(is_https("HTTPS://cp:9090"));
        assert!(!is_https("http://cp:9090"));
        assert!(!is_https("http"));
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let err = client_config(Some(&missing), None).unwrap_err().to_string();
        assert!(err.starts_with("cannot read CA file"), "{err}");
        assert!(err.contains("missing-ca.pem"), "{err}");

        let empty = dir.path().join("empty-ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty), None).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains("empty-ca.pem"), "{err}");

        let good = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&good, cert.cert.pem()).unwrap();
        client_config(Some(&good), Some("localhost")).unwrap();
    }

    #[test]
    fn classifies_rustls_errors_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        // Wrapped once more, as hyper/tonic do.
        #[derive(Debug, Error)]
        #[error("transport error")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(io);
        assert_eq!(classify(&outer), Some(TlsFailure::Untrusted));
        assert!(TlsFailure::Untrusted
            .describe("--ca-file")
            .starts_with("certificate not trusted: pass --ca-file"));

        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify(&plain), None);

        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert_eq!(classify(&name), Some(TlsFailure::WrongName));
    }
}
