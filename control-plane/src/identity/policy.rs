//! What the control plane accepts from an admin for a provider: URLs it may fetch and JWS
//! algorithms data planes may verify with.

use reqwest::Url;

/// Algorithms accepted when the admin names none.
pub const DEFAULT_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// Asymmetric JWS algorithms data planes verify. `none` and the HMAC family are never
/// allowed: with a public key as the HMAC secret anyone could sign.
const SUPPORTED: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Canonical algorithm names (sorted, de-duplicated), or why one is refused.
pub fn check_algorithms(names: &[String]) -> Result<Vec<String>, String> {
    if names.iter().all(|n| n.trim().is_empty()) {
        let mut all: Vec<String> = DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect();
        all.sort();
        return Ok(all);
    }
    let mut out = Vec::with_capacity(names.len());
    for raw in names.iter().flat_map(|n| n.split(',')) {
        let name = raw.trim();
        if name.is_empty() {
            continue;
        }
        match SUPPORTED.iter().find(|s| s.eq_ignore_ascii_case(name)) {
            Some(s) => out.push((*s).to_owned()),
            None if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") => {
                return Err(format!(
                    "algorithm '{name}' is never accepted (tokens must be signed with the provider's private key)"
                ))
            }
            None => {
                return Err(format!(
                    "unknown algorithm '{name}' (supported: {})",
                    SUPPORTED.join(", ")
                ))
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses `raw` as a URL the control plane may fetch keys or discovery from: https, or
/// plain http to a loopback address (a local test provider).
pub fn check_url(what: &str, raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{what} '{raw}' is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{what} '{raw}' must use https (plain http is accepted only on loopback)"
            ))
        }
        other => return Err(format!("{what} '{raw}' has scheme '{other}'; use https")),
    }
    if url.host().is_none() {
        return Err(format!("{what} '{raw}' has no host"));
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err(format!("{what} '{raw}' must not have a query or fragment"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!(
            check_algorithms(&[]).unwrap(),
            vec!["ES256", "EdDSA", "RS256"]
        );
        assert_eq!(
            check_algorithms(&["es256,rs256".into(), "RS256".into()]).unwrap(),
            vec!["ES256", "RS256"]
        );
        assert!(check_algorithms(&["none".into()])
            .unwrap_err()
            .contains("never"));
        assert!(check_algorithms(&["HS256".into()])
            .unwrap_err()
            .contains("never"));
        assert!(check_algorithms(&["XY1".into()])
            .unwrap_err()
            .contains("unknown"));
    }

    #[test]
    fn urls() {
        assert!(check_url("issuer", "https://idp.example/realms/x").is_ok());
        assert!(check_url("issuer", "http://127.0.0.1:8080").is_ok());
        assert!(check_url("issuer", "http://localhost:8080/x").is_ok());
        assert!(check_url("issuer", "http://[::1]:8080").is_ok());
        assert!(check_url("issuer", "http://idp.example")
            .unwrap_err()
            .contains("https"));
        assert!(check_url("issuer", "ftp://idp.example").is_err());
        assert!(check_url("issuer", "not a url").is_err());
        assert!(check_url("issuer", "https://idp.example/?q=1").is_err());
    }
}
