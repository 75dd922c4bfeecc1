//! The one rule for reading `Authorization: Bearer <token>`, used by `/mcp`, the Admin
//! service and the Sync service alike.
//!
//! RFC 6750 §2.1: the scheme is case-insensitive; the token follows after a space. Canopy
//! accepts exactly one space and a token without whitespace; anything else (two spaces, a
//! tab, a second word) is refused rather than guessed at, so every surface agrees on which
//! header values carry a token. Whitespace around the whole value is the header's own
//! padding (RFC 9110 OWS) and is ignored.

const SCHEME: &str = "bearer";

/// The token of a `Bearer` credential, or `None` when `value` is not one.
pub fn token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value.get(SCHEME.len()..)?.strip_prefix(' ')?;
    let well_formed = !token.is_empty() && !token.chars().any(char::is_whitespace);
    well_formed.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR abc"] {
            assert_eq!(token(v), Some("abc"), "{v}");
        }
    }

    #[test]
    fn exactly_one_separator_and_one_word() {
        assert_eq!(token("  Bearer abc \t"), Some("abc"));
        for v in [
            "Bearer  abc",
            &format!("Bearer{}abc", " ".repeat(100)),
            "Bearer\tabc",
            "Bearer abc def",
            "Bearer ",
            "Bearer",
            "Bearerabc",
            "Basic abc",
            "",
            "Bearé abc",
        ] {
            assert_eq!(token(v), None, "{v:?}");
        }
    }
}
