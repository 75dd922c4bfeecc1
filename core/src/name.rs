//! Names of servers, clients and users, and the `server__tool` names clients see.

use thiserror::Error;

/// Separator between a server name and an upstream tool or prompt name.
pub const SEPARATOR: &str = "__";
/// Longest tool name the MCP spec allows.
pub const MAX_TOOL_NAME: usize = 128;
const MAX_ENTITY_NAME: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name '{name}' is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        name: String,
        max: usize,
    },
    #[error("{kind} name '{name}' may contain only letters, digits, '_' and '-'")]
    BadCharacter { kind: &'static str, name: String },
    #[error("server name '{0}' must not contain '__' (it separates server and tool names)")]
    DoubleUnderscore(String),
    #[error("server name '{0}' must not end with '_'")]
    TrailingUnderscore(String),
}

fn check_charset(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_ENTITY_NAME {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
            max: MAX_ENTITY_NAME,
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NameError::BadCharacter {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A server name: `[A-Za-z0-9_-]+`, no `__`, not ending in `_`, at most 64 characters.
pub fn validate_server_name(name: &str) -> Result<(), NameError> {
    check_charset("server", name)?;
    if name.contains(SEPARATOR) {
        return Err(NameError::DoubleUnderscore(name.to_owned()));
    }
    if name.ends_with('_') {
        return Err(NameError::TrailingUnderscore(name.to_owned()));
    }
    Ok(())
}

/// A client or user name: `[A-Za-z0-9_-]+`, at most 64 characters.
pub fn validate_principal_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    check_charset(kind, name)
}

/// The name a client sees for `tool` of `server`: `server__tool`.
///
/// Names longer than 128 characters are shortened deterministically: the tool part is cut
/// so that `server__<cut>-<8 hex digits of BLAKE3(full name)>` is exactly 128 characters.
/// The same inputs always give the same name, so every data plane agrees on it.
pub fn qualify(server: &str, tool: &str) -> String {
    let full_len = server.len() + SEPARATOR.len() + tool.len();
    if full_len <= MAX_TOOL_NAME {
        let mut out = String::with_capacity(full_len);
        out.push_str(server);
        out.push_str(SEPARATOR);
        out.push_str(tool);
        return out;
    }
    let full = format!("{server}{SEPARATOR}{tool}");
    let digest = blake3::hash(full.as_bytes()).to_hex();
    let keep = MAX_TOOL_NAME - server.len() - SEPARATOR.len() - 9;
    let mut cut = keep.min(tool.len());
    while !tool.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{server}{SEPARATOR}{}-{}", &tool[..cut], &digest[..8])
}

/// Splits `server__tool` at the first separator. Server names never contain `__` and
/// never end in `_`, so the first `__` is always the boundary.
pub fn split_qualified(name: &str) -> Option<(&str, &str)> {
    let (server, tool) = name.split_once(SEPARATOR)?;
    if server.is_empty() || tool.is_empty() {
        return None;
    }
    Some((server, tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(validate_server_name("github").is_ok());
        assert!(validate_server_name("my-server_2").is_ok());
        assert_eq!(
            validate_server_name(""),
            Err(NameError::Empty { kind: "server" })
        );
        assert!(matches!(
            validate_server_name("a__b"),
            Err(NameError::DoubleUnderscore(_))
        ));
        assert!(matches!(
            validate_server_name("a_"),
            Err(NameError::TrailingUnderscore(_))
        ));
        assert!(matches!(
            validate_server_name("a b"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            validate_server_name("a.b"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            validate_server_name(&"x".repeat(65)),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn qualify_and_split_round_trip() {
        assert_eq!(qualify("gh", "search"), "gh__search");
        assert_eq!(split_qualified("gh__search"), Some(("gh", "search")));
        // A tool whose own name starts with '_' still splits at the server boundary.
        assert_eq!(split_qualified(&qualify("a", "_b")), Some(("a", "_b")));
        assert_eq!(split_qualified("gh__a__b"), Some(("gh", "a__b")));
        assert_eq!(split_qualified("nosep"), None);
        assert_eq!(split_qualified("__x"), None);
        assert_eq!(split_qualified("x__"), None);
    }

    #[test]
    fn long_names_are_shortened_deterministically() {
        let tool = "t".repeat(200);
        let a = qualify("srv", &tool);
        assert_eq!(a.len(), MAX_TOOL_NAME);
        assert_eq!(a, qualify("srv", &tool));
        assert!(a.starts_with("srv__ttt"));
        assert_ne!(a, qualify("srv", &"t".repeat(201)));
    }
}
