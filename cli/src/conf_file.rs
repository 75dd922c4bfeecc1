//! `--conf FILE` / `-c FILE` definitions: MCP clients, users and upstream servers as JSON
//! files an admin keeps in version control.
//!
//! Parsing is strict (`deny_unknown_fields`: a misspelt `allowed_server` must not silently
//! create a client with no access) and every error starts with the file's name. Tokens are
//! taken from exactly one of `access_token`, `access_token_ref.env` or
//! `access_token_ref.file`, and are never echoed in an error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use canopy_core::{name, token, AllowList};
use canopy_proto::v1 as pb;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::args::{Role, Transport};

#[derive(Debug, thiserror::Error)]
pub enum ConfFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {}", .path.display(), bounded(.message))]
    Parse { path: PathBuf, message: String },
    #[error("{}: {}", .path.display(), bounded(.message))]
    Invalid { path: PathBuf, message: String },
}

/// Most characters of a parse or validation message shown: errors quote names, URLs and
/// unknown field names from the file, which may be of any length.
const MAX_MESSAGE_CHARS: usize = 300;

/// The message as one bounded line: what it quotes from the file may hold newlines or
/// terminal escape sequences, which are shown escaped.
fn bounded(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS + 20));
    for (i, c) in message.chars().enumerate() {
        if i == MAX_MESSAGE_CHARS {
            out.push_str("… (message cut)");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An MCP client as `create mcp-client --conf` reads it, validated.
#[derive(Debug)]
pub struct ClientDef {
    pub name: String,
    pub description: String,
    pub allowed: AllowList,
    pub access_token: String,
}

/// A user as `create user --conf` reads it, validated.
#[derive(Debug)]
pub struct UserDef {
    pub name: String,
    pub role: Role,
    /// `None`: the control plane's default (`*`).
    pub allowed: Option<AllowList>,
    pub access_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    allowed_servers: Vec<String>,
    access_token: Option<String>,
    access_token_ref: Option<TokenRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    name: String,
    // Not on the reference page, but an admin defining users in files needs it too.
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    allowed_servers: Option<Vec<String>>,
    access_token: Option<String>,
    access_token_ref: Option<TokenRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRef {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    name: String,
    transport: Option<Transport>,
    #[serde(default)]
    description: String,
    url: Option<String>,
    bearer_token: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    audit_payload: Option<crate::args::AuditPayload>,
}

pub fn load_client(path: &Path) -> Result<ClientDef, ConfFileError> {
    let f: ClientFile = read_json(path)?;
    let invalid = |message: String| ConfFileError::Invalid {
        path: path.to_owned(),
        message,
    };
    name::validate_principal_name("client", &f.name).map_err(|e| invalid(e.to_string()))?;
    let allowed = AllowList::from_entries(&f.allowed_servers)
        .map_err(|e| invalid(format!("allowed_servers: {e}")))?;
    let access_token = resolve_token(path, f.access_token, f.access_token_ref)?;
    Ok(ClientDef {
        name: f.name,
        description: f.description,
        allowed,
        access_token,
    })
}

pub fn load_user(path: &Path) -> Result<UserDef, ConfFileError> {
    let f: UserFile = read_json(path)?;
    let invalid = |message: String| ConfFileError::Invalid {
        path: path.to_owned(),
        message,
    };
    name::validate_principal_name("user", &f.name).map_err(|e| invalid(e.to_string()))?;
    let allowed = f
        .allowed_servers
        .map(|entries| AllowList::from_entries(&entries))
        .transpose()
        .map_err(|e| invalid(format!("allowed_servers: {e}")))?;
    let access_token = resolve_token(path, f.access_token, f.access_token_ref)?;
    Ok(UserDef {
        name: f.name,
        role: f.role.unwrap_or(Role::User),
        allowed,
        access_token,
    })
}

pub fn load_server(path: &Path) -> Result<pb::ServerSpec, ConfFileError> {
    let f: ServerFile = read_json(path)?;
    // Without an explicit transport, a command means a child process and anything else HTTP.
    let transport = f.transport.unwrap_or(if f.command.is_some() {
        Transport::Stdio
    } else {
        Transport::StreamableHttp
    });
    let spec = pb::ServerSpec {
        name: f.name,
        transport: transport.to_proto() as i32,
        description: f.description,
        url: f.url.unwrap_or_default(),
        bearer_token: f.bearer_token.unwrap_or_default(),
        headers: f.headers.into_iter().collect::<HashMap<_, _>>(),
        command: f.command.unwrap_or_default(),
        args: f.args,
        env: f.env.into_iter().collect::<HashMap<_, _>>(),
        timeout_ms: f.timeout_ms.unwrap_or(0),
        audit_payload: f
            .audit_payload
            .map_or(pb::AuditPayload::Off, |p| p.to_proto()) as i32,
    };
    check_server_spec(&spec).map_err(|message| ConfFileError::Invalid {
        path: path.to_owned(),
        message,
    })?;
    Ok(spec)
}

/// Rules a server definition must meet whether it came from flags or a file, checked
/// before the control plane spends a discovery round trip on it.
pub fn check_server_spec(spec: &pb::ServerSpec) -> Result<(), String> {
    name::validate_server_name(&spec.name).map_err(|e| e.to_string())?;
    let stdio = spec.transport == pb::Transport::Stdio as i32;
    if stdio {
        if spec.command.trim().is_empty() {
            return Err("transport stdio needs a command".into());
        }
        if !spec.url.is_empty() || !spec.bearer_token.is_empty() || !spec.headers.is_empty() {
            return Err(
                "transport stdio takes command/args/env, not url, bearer_token or headers".into(),
            );
        }
    } else {
        if spec.url.is_empty() {
            return Err(
                "an HTTP server needs a url (or set transport to stdio with a command)".into(),
            );
        }
        if !(spec.url.starts_with("http://") || spec.url.starts_with("https://")) {
            return Err(format!(
                "url '{}' must start with http:// or https://",
                spec.url
            ));
        }
        if !spec.command.is_empty() || !spec.args.is_empty() || !spec.env.is_empty() {
            return Err("command, args and env apply only to transport stdio".into());
        }
    }
    if spec
        .bearer_token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("bearer_token must not contain whitespace".into());
    }
    Ok(())
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ConfFileError> {
    // Bytes, not a String: a file that is not UTF-8 gets serde's line and column.
    let bytes = std::fs::read(path).map_err(|source| ConfFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ConfFileError::Parse {
        path: path.to_owned(),
        message: redact_serde(&e.to_string()),
    })
}

/// serde quotes a string it found where another type was expected
/// (`invalid type: string "…", expected struct TokenRef`). That string could be a token
/// put in the wrong field, so it is cut out; line and column still say where it is.
fn redact_serde(msg: &str) -> String {
    const OPEN: &str = "string \"";
    const CLOSE: &str = "\", expected";
    if let Some(start) = msg.find(OPEN) {
        if let Some(len) = msg[start + OPEN.len()..].find(CLOSE) {
            let end = start + OPEN.len() + len + 1;
            return format!("{}a string{}", &msg[..start], &msg[end..]);
        }
    }
    msg.to_owned()
}

/// Exactly one token source, resolved and checked against the custom-token rules.
fn resolve_token(
    path: &Path,
    inline: Option<String>,
    reference: Option<TokenRef>,
) -> Result<String, ConfFileError> {
    let invalid = |message: String| ConfFileError::Invalid {
        path: path.to_owned(),
        message,
    };
    let (env, file) = match reference {
        Some(TokenRef {
            env: None,
            file: None,
        }) => {
            return Err(invalid(
                "access_token_ref needs either \"env\" or \"file\"".into(),
            ));
        }
        Some(r) => (r.env, r.file),
        None => (None, None),
    };
    let (token, source) = match (inline, env, file) {
        (None, None, None) => return Err(invalid(
            "an access token is required with --conf: set access_token, access_token_ref.env or \
                 access_token_ref.file"
                .into(),
        )),
        (Some(t), None, None) => {
            if t.is_empty() {
                return Err(invalid("access_token is empty".into()));
            }
            (t, "access_token".to_owned())
        }
        (None, Some(var), None) => {
            let source = format!("access_token_ref.env ({var})");
            match std::env::var(&var) {
                Ok(v) if !v.trim().is_empty() => (v.trim().to_owned(), source),
                Ok(_) => {
                    return Err(invalid(format!(
                        "environment variable {var} (access_token_ref.env) is empty"
                    )))
                }
                Err(std::env::VarError::NotPresent) => {
                    return Err(invalid(format!(
                        "environment variable {var} (access_token_ref.env) is not set"
                    )))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(invalid(format!(
                        "environment variable {var} (access_token_ref.env) is not UTF-8"
                    )))
                }
            }
        }
        (None, None, Some(file)) => {
            // A relative path is relative to the conf file, so a definition and the secret
            // beside it work from any working directory.
            let token_path = match path.parent() {
                Some(dir) if file.is_relative() => dir.join(&file),
                _ => file.clone(),
            };
            let source = format!("access_token_ref.file ({})", token_path.display());
            let text = std::fs::read_to_string(&token_path).map_err(|e| {
                invalid(format!(
                    "cannot read token file {} (access_token_ref.file): {e}",
                    token_path.display()
                ))
            })?;
            // Files written by editors and `echo` end in a newline; that is not part of the token.
            let t = text.trim();
            if t.is_empty() {
                return Err(invalid(format!(
                    "token file {} (access_token_ref.file) is empty",
                    token_path.display()
                )));
            }
            (t.to_owned(), source)
        }
        _ => {
            return Err(invalid(
                "set exactly one of access_token, access_token_ref.env and access_token_ref.file"
                    .into(),
            ))
        }
    };
    token::validate_custom(&token).map_err(|e| invalid(format!("token from {source}: {e}")))?;
    Ok(token)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn client_with_inline_token() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "c.json",
            r#"{"name":"claude","description":"d","allowed_servers":["github"," jira__search"],"access_token":"abcdefghijklmnop"}"#,
        );
        let c = load_client(&p).unwrap();
        assert_eq!(c.name, "claude");
        assert_eq!(c.allowed.to_strings(), vec!["github", "jira__search"]);
        assert_eq!(c.access_token, "abcdefghijklmnop");
    }

    #[test]
    fn user_allow_list() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "u.json",
            r#"{"name":"carol","allowed_servers":["gh__search","gh__search"],"access_token":"abcdefghijklmnop"}"#,
        );
        let u = load_user(&p).unwrap();
        assert_eq!(u.allowed.unwrap().to_strings(), vec!["gh__search"]);
        let none = write(
            d.path(),
            "n.json",
            r#"{"name":"carol","allowed_servers":[],"access_token":"abcdefghijklmnop"}"#,
        );
        assert!(load_user(&none).unwrap().allowed.unwrap().is_empty());
        let bad = write(
            d.path(),
            "b.json",
            r#"{"name":"carol","allowed_servers":["a b"],"access_token":"abcdefghijklmnop"}"#,
        );
        let e = load_user(&bad).unwrap_err().to_string();
        assert!(e.contains("b.json") && e.contains("allowed_servers"), "{e}");
    }

    #[test]
    fn token_from_env() {
        let d = tempfile::tempdir().unwrap();
        let var = "CANOPY_CLI_TEST_TOKEN_FROM_ENV";
        let p = write(
            d.path(),
            "c.json",
            &format!(r#"{{"name":"a","access_token_ref":{{"env":"{var}"}}}}"#),
        );
        // SAFETY of the test: the variable name is unique to this test.
        std::env::set_var(var, "env-token-0123456789\n");
        assert_eq!(
            load_client(&p).unwrap().access_token,
            "env-token-0123456789"
        );
        std::env::set_var(var, "  ");
        let e = load_client(&p).unwrap_err().to_string();
        assert!(e.contains(var) && e.contains("is empty"), "{e}");
        std::env::remove_var(var);
        let e = load_client(&p).unwrap_err().to_string();
        assert!(
            e.contains(var) && e.contains("not set") && e.contains("c.json"),
            "{e}"
        );
    }

    #[test]
    fn token_from_file_relative_to_conf() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "tok", "file-token-0123456789\n");
        let p = write(
            d.path(),
            "u.json",
            r#"{"name":"alice","access_token_ref":{"file":"tok"}}"#,
        );
        let u = load_user(&p).unwrap();
        assert_eq!(u.access_token, "file-token-0123456789");
        assert_eq!(u.role, Role::User);
        assert_eq!(u.allowed, None, "no list: the control plane's default");

        let missing = write(
            d.path(),
            "m.json",
            r#"{"name":"alice","access_token_ref":{"file":"nope"}}"#,
        );
        let e = load_user(&missing).unwrap_err().to_string();
        assert!(
            e.contains("nope") && e.contains("cannot read token file"),
            "{e}"
        );

        write(d.path(), "empty", "\n");
        let empty = write(
            d.path(),
            "e.json",
            r#"{"name":"alice","access_token_ref":{"file":"empty"}}"#,
        );
        let e = load_user(&empty).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("is empty"), "{e}");
    }

    #[test]
    fn token_required_and_exactly_one() {
        let d = tempfile::tempdir().unwrap();
        let none = write(d.path(), "n.json", r#"{"name":"alice"}"#);
        assert!(load_user(&none)
            .unwrap_err()
            .to_string()
            .contains("an access token is required"));
        let two = write(
            d.path(),
            "t.json",
            r#"{"name":"alice","access_token":"abcdefghijklmnop","access_token_ref":{"env":"X"}}"#,
        );
        assert!(load_user(&two)
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        let empty_ref = write(
            d.path(),
            "r.json",
            r#"{"name":"alice","access_token_ref":{}}"#,
        );
        assert!(load_user(&empty_ref)
            .unwrap_err()
            .to_string()
            .contains("needs either"));
    }

    #[test]
    fn short_token_is_rejected_without_echo() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "u.json",
            r#"{"name":"alice","access_token":"tiny-secret"}"#,
        );
        let e = load_user(&p).unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
        assert!(!e.contains("tiny-secret"), "{e}");
    }

    #[test]
    fn strict_parsing_names_file_and_position() {
        let d = tempfile::tempdir().unwrap();
        let typo = write(
            d.path(),
            "typo.json",
            "{\n  \"name\": \"a\",\n  \"allowed_server\": []\n}",
        );
        let e = load_client(&typo).unwrap_err().to_string();
        assert!(
            e.contains("typo.json") && e.contains("unknown field `allowed_server`"),
            "{e}"
        );
        assert!(e.contains("line 3"), "{e}");
        let bad = write(d.path(), "bad.json", "{\"name\": ");
        let e = load_client(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("line 1 column"), "{e}");
        // A token put where an object belongs is not echoed.
        let wrong = write(
            d.path(),
            "w.json",
            r#"{"name":"a","access_token_ref":"super-secret-token-1"}"#,
        );
        let e = load_client(&wrong).unwrap_err().to_string();
        assert!(!e.contains("super-secret"), "{e}");
        assert!(e.contains("invalid type: a string"), "{e}");
    }

    #[test]
    fn bad_names_and_allow_entries() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "c.json",
            r#"{"name":"a b","access_token":"abcdefghijklmnop"}"#,
        );
        assert!(load_client(&p)
            .unwrap_err()
            .to_string()
            .contains("may contain only"));
        let p = write(
            d.path(),
            "c2.json",
            r#"{"name":"a","allowed_servers":["bad_"],"access_token":"abcdefghijklmnop"}"#,
        );
        assert!(load_client(&p)
            .unwrap_err()
            .to_string()
            .contains("allowed_servers"));
    }

    #[test]
    fn server_files() {
        let d = tempfile::tempdir().unwrap();
        let http = write(
            d.path(),
            "s.json",
            r#"{"name":"gh","url":"https://x/mcp","bearer_token":"t","headers":{"X-A":"1"},"timeout_ms":500}"#,
        );
        let s = load_server(&http).unwrap();
        assert_eq!(s.transport, pb::Transport::StreamableHttp as i32);
        assert_eq!(s.timeout_ms, 500);
        let stdio = write(
            d.path(),
            "p.json",
            r#"{"name":"fs","command":"npx","args":["-y","srv"],"env":{"A":"b"}}"#,
        );
        assert_eq!(
            load_server(&stdio).unwrap().transport,
            pb::Transport::Stdio as i32
        );
        let sse = write(
            d.path(),
            "e.json",
            r#"{"name":"old","transport":"sse","url":"http://x/sse"}"#,
        );
        assert_eq!(
            load_server(&sse).unwrap().transport,
            pb::Transport::Sse as i32
        );
        let mixed = write(
            d.path(),
            "m.json",
            r#"{"name":"x","transport":"stdio","command":"a","url":"http://x"}"#,
        );
        assert!(load_server(&mixed)
            .unwrap_err()
            .to_string()
            .contains("stdio"));
        let bad = write(
            d.path(),
            "b.json",
            r#"{"name":"x","transport":"grpc","url":"http://x"}"#,
        );
        assert!(load_server(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown variant"));
        let nourl = write(d.path(), "n.json", r#"{"name":"x"}"#);
        assert!(load_server(&nourl)
            .unwrap_err()
            .to_string()
            .contains("needs a url"));
        let badname = write(d.path(), "bn.json", r#"{"name":"a__b","url":"http://x"}"#);
        assert!(load_server(&badname)
            .unwrap_err()
            .to_string()
            .contains("__"));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_serde(
                r#"invalid type: string "s3cret", expected struct TokenRef at line 1 column 9"#
            ),
            "invalid type: a string, expected struct TokenRef at line 1 column 9"
        );
        assert_eq!(redact_serde("missing field `name`"), "missing field `name`");
    }
}
