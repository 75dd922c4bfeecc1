//! This data plane's resource identifiers (RFC 8707 / RFC 9728), built from its
//! configured public URL and never from a request's `Host` header.

use thiserror::Error;

/// Where the metadata lives, path-inserted after the origin (RFC 9728 §3.1).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("public URL '{0}' must be http:// or https:// followed by a host")]
    Scheme(String),
    #[error(
        "public URL '{0}' must be an origin (scheme://host[:port]) without path, query or fragment"
    )]
    NotOrigin(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    origin: String,
    /// The origin and `<origin>/mcp`: audiences that name the data plane as a whole.
    gateway: [String; 2],
}

impl Resource {
    /// `url` is an origin such as `https://mcp.example.com` (a trailing `/` is dropped).
    pub fn new(url: &str) -> Result<Self, ResourceError> {
        let trimmed = url.trim().trim_end_matches('/');
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(ResourceError::Scheme(url.to_owned()));
        };
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
            || rest.is_empty()
        {
            return Err(ResourceError::Scheme(url.to_owned()));
        }
        if rest.contains(['/', '?', '#', ' ', '@']) {
            return Err(ResourceError::NotOrigin(url.to_owned()));
        }
        let origin = format!("{}://{rest}", scheme.to_ascii_lowercase());
        let mcp = format!("{origin}/mcp");
        Ok(Self {
            gateway: [origin.clone(), mcp],
            origin,
        })
    }

    /// For development: the listen address (an unspecified address becomes loopback).
    pub fn from_listen(addr: std::net::SocketAddr) -> Self {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        let host = std::net::SocketAddr::new(ip, addr.port());
        let origin = format!("http://{host}");
        let mcp = format!("{origin}/mcp");
        Self {
            gateway: [origin.clone(), mcp],
            origin,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn gateway_audiences(&self) -> &[String] {
        &self.gateway
    }

    /// The resource of an endpoint: `<origin>/mcp` or `<origin>/servers/<name>/mcp`;
    /// the origin itself for the root metadata.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn server_url(&self, name: &str) -> String {
        format!("{}/servers/{name}/mcp", self.origin)
    }

    /// The metadata URL of the resource at `path` (`/mcp`, `/servers/x/mcp`, or `""`).
    pub fn metadata_url(&self, path: &str) -> String {
        format!("{}{WELL_KNOWN}{path}", self.origin)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let r = Resource::new("https://mcp.example.com/").unwrap();
        assert_eq!(r.url("/mcp"), "https://mcp.example.com/mcp");
        assert_eq!(
            r.metadata_url("/servers/gh/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/servers/gh/mcp"
        );
        assert_eq!(
            r.gateway_audiences(),
            ["https://mcp.example.com", "https://mcp.example.com/mcp"]
        );
        for bad in [
            "mcp.example.com",
            "ftp://x",
            "https://",
            "https://x/mcp",
            "https://x?a",
        ] {
            assert!(Resource::new(bad).is_err(), "{bad}");
        }
        let dev = Resource::from_listen("0.0.0.0:8080".parse().unwrap());
        assert_eq!(dev.origin(), "http://127.0.0.1:8080");
    }
}
